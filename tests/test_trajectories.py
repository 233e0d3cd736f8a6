"""Score trajectories by group, time to normalisation, the score between groups, the
ACR/EULAR myositis response definition, and the outputs a cohort does not allow."""

from __future__ import annotations

import copy
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from sklearn.metrics import roc_auc_score
from test_clinical import cohort_scores

from ifnsig import analyses, comparisons, plots, response, stages, stats, trajectories
from ifnsig.errors import InputError
from ifnsig.settings import stage_settings
from ifnsig.simulate import CohortSpec, simulate_cohort
from ifnsig.validation import check_inputs, validate_config

DEMO_CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


# --- Hodges-Lehmann estimates and intervals, against R's wilcox.test -----------------------------


def test_hodges_lehmann_exact_intervals_equal_r():
    # R 4.2: wilcox.test(x, y, conf.int = TRUE) and wilcox.test(x, conf.int = TRUE).
    x = np.array([1.2, -0.4, 2.5, 3.1, 0.7, 1.9, -1.1, 2.2])
    y = np.array([0.3, -0.9, 0.1, 1.4, -2.0, 0.5])
    assert np.allclose(stats.hodges_lehmann_shift(x, y), (1.6, -0.5, 3.0))
    assert np.allclose(stats.hodges_lehmann_one_sample(x), (1.325, -0.2, 2.5))
    x = np.array([0.8, -1.3, 2.9, 0.4, 1.7, -0.2, 3.3, 1.1, 0.9, 2.4, -0.7])
    y = np.array([0.1, -2.2, 0.6, -0.9, 1.5, -1.4, 0.2])
    assert np.allclose(stats.hodges_lehmann_shift(x, y, 0.9), (1.3, 0.2, 2.6))
    assert np.allclose(stats.hodges_lehmann_one_sample(x, 0.9), (1.0, 0.1, 1.9))


def test_hodges_lehmann_large_samples_close_to_r_normal_approximation():
    # R: wilcox.test(..., exact = FALSE, correct = FALSE) finds its bounds by root finding
    # on the normal statistic; the critical order statistic lands within 0.01 of them.
    x, y = np.sin(np.arange(60)) * 2, np.cos(np.arange(55)) * 2 + 0.5
    assert np.allclose(stats.hodges_lehmann_shift(x, y), (-0.4777, -0.8563, 0.0410), atol=0.01)
    assert np.allclose(stats.hodges_lehmann_one_sample(x), (0.0322, -0.2798, 0.4306), atol=0.01)
    assert np.isnan(stats.hodges_lehmann_shift([1.0], [2.0, 3.0])).all()


# --- the score between two groups ----------------------------------------------------------------


def _two_group_scores():
    rng = np.random.default_rng(4)
    rows = []
    for _i in range(9):
        rows.append(("A", rng.normal(3.0)))
    for _i in range(7):
        rows.append(("B", rng.normal(0.0)))
    frame = pd.DataFrame(
        {
            "sample": [f"S{i}" for i in range(len(rows))],
            "subject": [f"S{i}" for i in range(len(rows))],
            "group": "patient",
            "timepoint": "baseline",
            "signature": "SIG",
            "method": "m",
            "score": [r[1] for r in rows],
        }
    )
    samples = frame[["sample", "subject", "group", "timepoint"]].assign(
        disease=[r[0] for r in rows]
    )
    return frame, samples


def test_group_score_tests_auc_mann_whitney_and_shift():
    frame, samples = _two_group_scores()
    comparison = comparisons.ScoreComparison("disease", "A", "B")
    table = comparisons.group_score_tests(frame, samples, comparison, ["baseline"])
    row = table.iloc[0]
    labels = (samples["disease"] == "A").to_numpy()
    assert np.isclose(row["estimate"], roc_auc_score(labels, frame["score"]))
    a, b = frame["score"][labels], frame["score"][~labels]
    assert np.isclose(row["shift"], np.median(np.subtract.outer(a.to_numpy(), b.to_numpy())))
    assert row["ci_low"] < row["estimate"] <= row["ci_high"]
    assert row["n_test"] == 9 and row["n_reference"] == 7 and row["pvalue"] < 0.05
    assert row["direction"] == "higher in A than in B"


def test_score_comparison_defaults_to_patients_vs_controls_and_is_checked():
    _, samples = _two_group_scores()
    groups = {"patient": "JDM", "control": "healthy"}
    reason = comparisons.score_comparison(None, groups, samples)
    assert isinstance(reason, str) and "healthy" in reason
    with_controls = samples.assign(group=["JDM"] * 9 + ["healthy"] * 7)
    chosen = comparisons.score_comparison(None, groups, with_controls)
    assert chosen == comparisons.ScoreComparison("group", "JDM", "healthy")
    config = {"scores": {"compare": {"column": "disease", "test": "A", "reference": "C"}}}
    with pytest.raises(InputError, match="scores.compare.reference is 'C'.*A, B"):
        comparisons.check_score_comparison(config, samples)
    config["scores"]["compare"] = {"column": "drug", "test": "A", "reference": "B"}
    with pytest.raises(InputError, match="not a sample-sheet column"):
        comparisons.check_score_comparison(config, samples)


def _cross_sectional_table(reference_group: str) -> pd.DataFrame:
    """Scores of 3 JDM patients and 2 healthy controls at one timepoint, as the stage
    writes them."""
    groups = ["JDM"] * 3 + ["healthy"] * 2
    return pd.DataFrame(
        {
            "sample": [f"s{i}" for i in range(5)],
            "subject": [f"s{i}" for i in range(5)],
            "group": groups,
            "timepoint": "baseline",
            "signature": "SIG",
            "method": "median_fold_change",
            "score": [3.0, 2.5, 4.0, 0.1, -0.2],
            "threshold": 1.0,
            "reference": [g == "healthy" for g in groups],
            "reference_group": reference_group,
        }
    )


def _drawn(monkeypatch) -> list:
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    return figures


def _texts(fig) -> set[str]:
    texts = set()
    for ax in fig.axes:
        texts |= {t.get_text() for t in ax.get_xticklabels()}
        legend = ax.get_legend()
        if legend is not None:
            texts |= {t.get_text() for t in legend.get_texts()}
    return texts


def test_score_plots_name_the_groups_as_the_configuration_does(monkeypatch):
    groups = {"patient": "JDM", "control": "healthy"}
    figures = _drawn(monkeypatch)
    table = _cross_sectional_table("controls")
    plots.scores_over_time(table, ["baseline"], "SIG", "median_fold_change", "x.png", groups)
    plots.score_distributions(table, ["baseline"], "y.png", groups)
    over_time, distributions = (_texts(fig) for fig in figures)
    assert {"healthy", "JDM", "JDM\nbaseline"} <= over_time, over_time
    assert "positive above 1 (reference: healthy)" in over_time
    assert {"healthy", "JDM"} <= distributions, distributions
    # Not the sheet's internal words of before ("reference", "patients" at "baseline").
    for texts in (over_time, distributions):
        assert not texts & {"reference", "patients", "patients\nbaseline", "control"}, texts
    # Two patient groups of scores.compare colour the patients and name the ticks.
    figures.clear()
    levels = pd.Series({"s0": "SLE", "s1": "SLE", "s2": "JDM"})
    plots.scores_over_time(
        table, ["baseline"], "SIG", "median_fold_change", "x.png", groups, levels
    )
    assert {"SLE", "JDM", "JDM / SLE\nbaseline"} <= _texts(figures[0])
    plt.close("all")


# --- groupings and the nonparametric trajectory tests --------------------------------------------


def _changes(falls: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for group, values in falls.items():
        for i, change in enumerate(values):
            subject = f"{group}{i}"
            for timepoint, score in [("baseline", 10.0), ("month3", 10.0 + change)]:
                rows.append(
                    {
                        "subject": subject,
                        "signature": "S",
                        "method": "m",
                        "timepoint": timepoint,
                        "score": score,
                        "baseline_score": 10.0,
                        "change": score - 10.0,
                    }
                )
    return pd.DataFrame(rows)


def test_within_and_between_group_tests_with_directions_in_words():
    falls = {"R": [-5.0, -4.2, -6.1, -3.3, -4.8, -5.5], "N": [0.4, -0.8, 1.1, -0.2, 0.3]}
    changes = _changes(falls)
    labels = pd.Series({s: s[0] for s in changes["subject"].unique()})
    labels = labels.map({"R": trajectories.RESPONDER, "N": trajectories.NON_RESPONDER})
    grouping = trajectories.Grouping("CMAS", labels, trajectories.NON_RESPONDER, ("responder",))
    within = trajectories.within_group_tests(changes, [grouping], ["baseline", "month3"])
    resp = within.set_index("group").loc["responder"]
    assert resp["n"] == 6 and resp["estimate"] < -3 and resp["ci_high"] < 0
    assert resp["direction"] == "lower at month3 than at baseline in responder"
    assert np.isclose(resp["pvalue"], 2 / 2**6)  # every one of 6 falls: exact two-sided
    between = trajectories.between_group_tests(changes, [grouping], ["baseline", "month3"])
    row = between.iloc[0]
    expected = np.median(np.subtract.outer(falls["R"], falls["N"]))
    assert np.isclose(row["estimate"], expected) and row["ci_high"] < 0
    assert row["n_test"] == 6 and row["n_reference"] == 5 and row["pvalue"] < 0.01
    assert row["direction"] == "change lower in responder than in non_responder"


def test_groups_are_checked_at_parse_time():
    samples = pd.DataFrame(
        {
            "sample": ["a0", "a3", "b0", "b3"],
            "subject": ["a", "a", "b", "b"],
            "group": "patient",
            "timepoint": ["baseline", "month3"] * 2,
            "drug": ["rux", "tofa", "rux", "rux"],
            "site": "one",
        }
    )
    config = {
        "samples": "samples.tsv",
        "groups": {"patient": "patient"},
        "linkage": {"groups": ["drug"]},
    }
    with pytest.raises(InputError, match="changes between the samples of subject 'a'"):
        trajectories.check_groups(config, samples)
    config["linkage"]["groups"] = ["site"]
    with pytest.raises(InputError, match="has 1 value"):
        trajectories.check_groups(config, samples)
    config["linkage"]["groups"] = ["dose"]
    with pytest.raises(InputError, match="not a sample-sheet column; use one of: drug, site"):
        trajectories.check_groups(config, samples)


def test_labels_only_cohort_is_checked_whole_at_parse_time(tmp_path):
    """A clinical table of labels alone (no measure) passes the parse-time checks, which
    parse every label as the job will: a bad one fails there, before any job."""
    spec = CohortSpec(n_patients=4, n_controls=2, n_genes=400, n_treatment_genes=10, seed=3)
    cohort = simulate_cohort(spec)
    cohort.write(tmp_path)
    labels = cohort.clinical[["subject", "timepoint"]].assign(responder="yes")
    config = copy.deepcopy(DEMO_CONFIG)
    config.update(
        counts=str(tmp_path / "counts.tsv.gz"),
        samples=str(tmp_path / "samples.tsv"),
        clinical=str(tmp_path / "clinical.tsv"),
        clinical_measures={},
    )
    config["linkage"].update(
        responses=[{"name": "called", "type": "column", "column": "responder"}],
        primary_response="called",
        covariates=[],
        groups=["drug"],
    )
    config["de"]["contrasts"] = []
    config = validate_config(config)
    labels.to_csv(config["clinical"], sep="\t", index=False)
    check_inputs(config)
    labels.loc[labels.index[5], "responder"] = "partly"
    labels.to_csv(config["clinical"], sep="\t", index=False)
    with pytest.raises(InputError, match=r"clinical.tsv: line 7, column 'responder' holds 'partl"):
        check_inputs(config)


# --- time to normalisation -----------------------------------------------------------------------


def test_time_to_normalisation_statuses_and_fisher_by_visit():
    timepoints = ["baseline", "month3", "month6"]
    courses = {
        "P1": [5, 0.5, 0.4],  # normal at month3
        "P2": [5, 4, 0.5],  # at month6
        "P3": [5, 4, 4],  # never
        "P4": [5, 4, None],  # censored after month3
        "P5": [0.5, 0.4, 0.3],  # not positive at baseline
    }
    rows = []
    for subject, values in courses.items():
        for timepoint, score in zip(timepoints, values, strict=True):
            if score is not None:
                rows.append(
                    {
                        "subject": subject,
                        "group": "patient",
                        "timepoint": timepoint,
                        "signature": "S",
                        "method": "m",
                        "score": score,
                        "threshold": 1.0,
                        "positive": score > 1.0,
                    }
                )
    table = trajectories.time_to_normalisation(pd.DataFrame(rows), timepoints, "patient", "S", "m")
    status = table.set_index("subject")[["status", "first_normal"]]
    assert status.loc["P1"].tolist() == ["normalised", "month3"]
    assert status.loc["P2"].tolist() == ["normalised", "month6"]
    assert status.loc["P3"].tolist() == ["never normalised", "never"]
    assert status.loc["P4"].tolist() == ["censored", "after month3"]
    assert status.loc["P5", "status"] == "not positive at baseline"
    labels = pd.Series({"P1": "responder", "P2": "responder", "P3": "non_responder"})
    labels["P4"] = "non_responder"
    grouping = trajectories.Grouping("R", labels, "non_responder", ("responder",))
    tests = trajectories.normalisation_tests(table, [grouping], timepoints).set_index("timepoint")
    # By month3: P1 of 2 responders, none of P3, P4; by month6 P4 is unknown (censored).
    assert tests.loc["month3", ["normalised_test", "n_test", "n_reference"]].tolist() == [1, 2, 2]
    assert tests.loc["month6", ["normalised_test", "n_test", "n_reference"]].tolist() == [2, 2, 1]
    assert np.isclose(tests.loc["month6", "estimate"], 1.0)
    assert np.isclose(tests.loc["month6", "pvalue"], 1 / 3)  # Fisher, [[2, 0], [0, 1]]
    assert tests.loc["month6", "direction"].startswith("normal by month6 more often in responder")


def test_newcombe_interval_matches_published_example():
    # Newcombe 1998, Table II, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    diff, low, high = trajectories.newcombe_difference(56, 70, 48, 80)
    assert np.isclose(diff, 0.2) and np.isclose(low, 0.0524, atol=1e-4)
    assert np.isclose(high, 0.3339, atol=1e-4)


# --- the ACR/EULAR myositis response criteria as a response definition ---------------------------

TIS_MEASURES = {
    "PhGA": {"higher_is_better": False, "min": 0, "max": 10},
    "PtGA": {"higher_is_better": False, "min": 0, "max": 10},
    "MMT8": {"higher_is_better": True, "min": 0, "max": 80},
    "CHAQ": {"higher_is_better": False, "min": 0, "max": 3},
    "CK": {"higher_is_better": False, "min": 0, "max": None},
    "aldolase": {"higher_is_better": False, "min": 0, "max": None},
    "EMA": {"higher_is_better": False, "min": 0, "max": 10},
}
TIS_DEFINITION = {
    "name": "TIS_moderate",
    "type": "acr_eular_myositis",
    "population": "juvenile",
    "at_least": "moderate",
    "roles": {
        "physician_global": "PhGA",
        "patient_global": "PtGA",
        "mmt": "MMT8",
        "haq": "CHAQ",
        "enzyme": ["CK", "aldolase"],
        "extramuscular": "EMA",
    },
    "enzyme_upper_limits": {"CK": 200, "aldolase": 8},
}


def test_myositis_response_definition_scores_calls_and_traces_each_measure():
    clinical = pd.DataFrame(
        [
            ["P1", "baseline", 6.0, 6.0, 50, 1.5, 400, 10, 6.0],
            # PhGA -3 on 0-10 (30%: 17.5), PtGA -1 (10%: 2.5), MMT8 +12 of 80 (15%: 20),
            # CHAQ -0.25 of 3 (8.3%: 5), CK the most abnormal (2.0 x ULN vs 1.25), 400 -> 100
            # (75%: 7.5), EMA -2 (20%: 12.5): TIS 65, moderate.
            ["P1", "month3", 3.0, 5.0, 62, 1.25, 100, 9, 4.0],
            ["P2", "baseline", 6.0, 6.0, 50, 1.5, 100, 20, 6.0],
            # Nothing improves but aldolase (the most abnormal for P2, 20 -> 10, 50%: 7.5).
            ["P2", "month3", 6.0, 6.5, 50, 1.5, 100, 10, None],
        ],
        columns=["subject", "timepoint", "PhGA", "PtGA", "MMT8", "CHAQ", "CK", "aldolase", "EMA"],
    )
    timepoints = ["baseline", "month3"]
    changes = response.measure_changes(clinical, TIS_MEASURES, timepoints)
    calls = response.call_responses(clinical, changes, [TIS_DEFINITION], TIS_MEASURES, timepoints)
    calls = calls.set_index("subject")
    p1 = calls.loc["P1"]
    assert bool(p1["responder"]) and p1["criteria_met"] == 6 and p1["criteria_evaluable"] == 6
    assert p1["inputs"].startswith("TIS 65 (moderate; juvenile: minimal >= 30, moderate >= 45")
    assert "mmt (MMT8): 50 -> 62, 15% of range, 20 points" in p1["inputs"]
    assert "enzyme (CK): 400 -> 100, 75% of baseline, 7.5 points" in p1["inputs"]
    assert "Total Improvement Score >= 45 (at least moderate improvement" in p1["rule"]
    p2 = calls.loc["P2"]
    # EMA missing at month3: no TIS, no call, and the missing measure named.
    assert pd.isna(p2["responder"]) and "missing: extramuscular (month3)" in p2["inputs"]
    assert "enzyme (aldolase): 20 -> 10, 50% of baseline, 7.5 points" in p2["inputs"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d, m: d["roles"].pop("haq"), "no column for the core set role 'haq'"),
        (lambda d, m: m["CHAQ"].update(max=None), "'CHAQ' (haq of"),
        (lambda d, m: d["enzyme_upper_limits"].pop("CK"), "add enzyme_upper_limits for CK"),
        (lambda d, m: d["roles"].update(mmt="CMAS"), "names measure 'CMAS'"),
    ],
)
def test_myositis_response_definition_is_checked_at_parse_time(change, fragment):
    definition, measures = copy.deepcopy(TIS_DEFINITION), copy.deepcopy(TIS_MEASURES)
    change(definition, measures)
    config = {"clinical_measures": measures, "linkage": {"responses": [definition]}}
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")):
        response.check_responses(config, pd.DataFrame(columns=["subject", "timepoint"]))


def test_myositis_at_least_must_be_a_category():
    config = copy.deepcopy(DEMO_CONFIG)
    tis = next(r for r in config["linkage"]["responses"] if r["type"] == "acr_eular_myositis")
    tis["at_least"] = 45
    with pytest.raises(InputError, match="at_least"):
        validate_config(config)


# --- outputs a cohort does not allow -------------------------------------------------------------


def test_missing_outputs_name_their_reasons():
    config = validate_config(copy.deepcopy(DEMO_CONFIG))
    assert analyses.not_computed(config, "", ["month3_vs_baseline"]) == {}
    cross = {**config, "timepoints": ["baseline"], "clinical": None}
    plan = analyses.not_computed(cross, "", [])
    assert set(plan["clinical_linkage"]) == set(analyses.REQUIREMENTS["clinical_linkage"])
    assert plan["differential_expression"]["every output"].startswith("one timepoint")
    labels_only = {**config, "clinical_measures": {}}
    plan = analyses.not_computed(labels_only, "", ["month3_vs_baseline"])
    assert plan["call_responses"] == {"changes": analyses.REASONS["measures"]}
    assert "trajectory_models" not in plan["clinical_linkage"]
    assert "correlations" in plan["clinical_linkage"]
    line = analyses.describe("call_responses", plan["call_responses"])
    assert line == f"call_responses: not computed: changes ({analyses.REASONS['measures']})"


# --- done when: the planted larger fall is found, and the interaction test is calibrated ---------

TRAJECTORY_OUTPUTS = ["trajectory_within", "trajectory_between", "trajectory_models"]


def linkage_tables(folder, cohort, config, outputs=TRAJECTORY_OUTPUTS) -> dict[str, pd.DataFrame]:
    """The clinical stages in-process on a simulated cohort; the score stage's table comes
    from the package's median fold change (fast), the rest from the stages themselves."""
    cohort.write(folder)
    stages.write_tsv(cohort_scores(cohort), folder / "scores.tsv")
    config = {
        **config,
        "counts": str(folder / "counts.tsv.gz"),
        "samples": str(folder / "samples.tsv"),
        "clinical": str(folder / "clinical.tsv"),
    }
    sheet = {"samples": config["samples"], "clinical": config["clinical"]}
    clinical = {name: str(folder / f"{name}.tsv") for name in ("changes", "response")}
    settings = partial(stage_settings, config)
    stages.call_responses(sheet, clinical, settings("call_responses"))
    inputs = {"scores": str(folder / "scores.tsv"), "samples": config["samples"], **clinical}
    paths = {name: str(folder / f"{name}.tsv") for name in outputs}
    stages.clinical_linkage(inputs, paths, settings("clinical_linkage"))
    return {name: pd.read_csv(path, sep="\t") for name, path in paths.items()}


def _config(**linkage) -> dict:
    """The demo's configuration, validated once (the stages then get exactly their rules'
    settings from it, as ``run_stage`` gives them, without validating it per call)."""
    config = copy.deepcopy(DEMO_CONFIG)
    config["scores"]["signatures"] = ["RICE2013_6"]
    config["linkage"].update(bootstrap=0, **linkage)
    return validate_config(config)


def test_planted_larger_fall_in_responders_is_found(tmp_path):
    """The demo's plan (seed, sizes): the ISGs fall more in responders (CMAS_gain_3)."""
    tables = linkage_tables(tmp_path, simulate_cohort(CohortSpec(n_genes=1000)), _config())
    between = tables["trajectory_between"].set_index(["grouping", "timepoint"])
    row = between.loc[("CMAS_gain_3", "month6")]
    assert row["estimate"] < 0 and row["ci_high"] < 0 and row["pvalue"] < 0.05
    assert row["direction"].startswith("larger fall in responder")
    models = tables["trajectory_models"].set_index(["grouping", "timepoint"])
    for timepoint in ["month6", trajectories.POOLED]:
        model = models.loc[("CMAS_gain_3", timepoint)]
        assert model["estimate"] < 0 and model["pvalue"] < 0.05, timepoint
        assert model["vcov"] == "CR2" and model["covariates"] == "prednisone_mg_kg_day, drug"
    # Drug is a grouping too, and left out of its own model's covariates.
    assert models.loc[("drug", "month6"), "covariates"] == "prednisone_mg_kg_day"
    within = tables["trajectory_within"].set_index(["grouping", "group", "timepoint"])
    assert within.loc[("CMAS_gain_3", "responder", "month6"), "pvalue"] < 0.05


def test_interaction_test_is_calibrated_on_null_cohorts(tmp_path):
    """Null cohorts (nothing planted over time) over 20 seeds: the interaction of the last
    follow-up and the pooled one, for responders (CMAS_gain_3) and for drug, reject at
    p < 0.05 in at most 10 % of the cohorts."""
    rejected, tests = 0, 0
    # Only the primary response is called: the others are not tested here.
    primary = DEMO_CONFIG["linkage"]["responses"][0]
    assert primary["name"] == DEMO_CONFIG["linkage"]["primary_response"]
    config = _config(responses=[primary])
    for seed in range(1, 21):
        spec = CohortSpec(n_genes=400, n_controls=8, n_treatment_genes=20, null=True, seed=seed)
        folder = tmp_path / f"null{seed}"
        models = linkage_tables(folder, simulate_cohort(spec), config, ["trajectory_models"])
        models = models["trajectory_models"]
        rows = models[models["timepoint"].isin(["month6", trajectories.POOLED])]
        rejected += int((rows["pvalue"] < 0.05).sum())
        tests += len(rows)
    assert tests == 20 * 4
    assert rejected / tests <= 0.10, f"{rejected} of {tests}"
