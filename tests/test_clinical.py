import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run_stage
from sklearn.metrics import roc_auc_score

from ifnsig import linkage, response, simulate, stages, stats
from ifnsig.errors import InputError
from ifnsig.simulate import CohortSpec, simulate_cohort
from ifnsig.validation import load_design

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("clinical")

TIMEPOINTS = ["baseline", "month3"]
MEASURES = {
    "CMAS": {"higher_is_better": True},
    "CAT": {"higher_is_better": False},
}
SIM_TIMEPOINTS = ["baseline", "month3", "month6"]
SIM_MEASURES = {
    "CMAS": {"higher_is_better": True, "min": 0, "max": 52},
    "MMT8": {"higher_is_better": True, "min": 0, "max": 80},
    "CAT_BM_activity": {"higher_is_better": False, "min": 0, "max": 17},
    "physician_global": {"higher_is_better": False, "min": 0, "max": 10},
    "prednisone_mg_kg_day": {"higher_is_better": False, "min": 0, "max": 2},
    "CK": {"higher_is_better": False, "min": 0, "max": None},
}


def scores_table(baseline, followup):
    rows = []
    for i, (b, f) in enumerate(zip(baseline, followup, strict=True)):
        for tp, value in [("baseline", b), ("month3", f)]:
            rows.append(
                {
                    "sample": f"P{i}_{tp}",
                    "subject": f"P{i}",
                    "group": "patient",
                    "timepoint": tp,
                    "signature": "S",
                    "method": "m",
                    "score": value,
                }
            )
    rows.append(
        {
            "sample": "C",
            "subject": "C",
            "group": "control",
            "timepoint": "baseline",
            "signature": "S",
            "method": "m",
            "score": 1.0,
        }
    )
    return pd.DataFrame(rows)


def cohort_scores(cohort, signatures=("RICE2013_6",)) -> pd.DataFrame:
    """Median-fold-change scores of a simulated cohort, straight from the package."""
    return simulate.median_fold_change_scores(cohort, tuple(signatures))


# --- changes and paired tests ----------------------------------------------------------------


def test_score_changes_and_signed_rank_test():
    table = scores_table([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 11])
    changes = linkage.score_changes(table, TIMEPOINTS, "patient")
    followup = changes[changes["timepoint"] == "month3"].set_index("subject")["change"]
    assert followup.tolist() == [-4, -4, -4, -4, -4, 1]
    tests = linkage.paired_tests(changes, TIMEPOINTS)
    row = tests.iloc[0]
    assert row["n"] == 6
    assert row["estimate"] == -4 and row["direction"] == "higher at month3 than at baseline"
    # Ranks: five ties at 4 (mean rank 3.5) negative, one positive of rank 1.
    assert row["effect_size"] == pytest.approx((1.0 - 20.0) / 21.0)
    assert row["pvalue"] < 0.1
    assert np.isnan(row["ci_low"])  # no bootstrap asked for


def test_paired_bootstrap_interval_is_seeded_and_covers_the_median():
    rng = np.random.default_rng(3)
    table = scores_table(rng.normal(8, 1, 30), rng.normal(5, 1, 30))
    changes = linkage.score_changes(table, TIMEPOINTS, "patient")
    first = linkage.paired_tests(changes, TIMEPOINTS, n_bootstrap=500, seed=11).iloc[0]
    again = linkage.paired_tests(changes, TIMEPOINTS, n_bootstrap=500, seed=11).iloc[0]
    other = linkage.paired_tests(changes, TIMEPOINTS, n_bootstrap=500, seed=12).iloc[0]
    assert first["ci_low"] < first["estimate"] < first["ci_high"] < 0
    assert (first["ci_low"], first["ci_high"]) == (again["ci_low"], again["ci_high"])
    assert (first["ci_low"], first["ci_high"]) != (other["ci_low"], other["ci_high"])


def test_measure_changes_sign_improvement_by_direction():
    clin = pd.DataFrame(
        {"subject": ["A", "A"], "timepoint": TIMEPOINTS, "CMAS": [30, 40], "CAT": [10, 4]}
    )
    changes = response.measure_changes(clin, MEASURES, TIMEPOINTS).set_index(
        ["measure", "timepoint"]
    )
    assert changes.loc[("CMAS", "month3"), "change"] == 10
    assert changes.loc[("CMAS", "month3"), "improvement"] == 10
    assert changes.loc[("CAT", "month3"), "change"] == -6
    assert changes.loc[("CAT", "month3"), "improvement"] == 6
    assert changes.loc[("CAT", "month3"), "percent_change"] == pytest.approx(-60)


def test_change_correlation_finds_planted_negative_link_and_counts_pairs():
    rng = np.random.default_rng(1)
    fall = rng.uniform(0, 5, 20)
    table = scores_table(np.full(20, 8.0), 8.0 - fall)
    changes = linkage.score_changes(table, TIMEPOINTS, "patient")
    cmas_gain = 3 * fall + rng.normal(0, 1, 20)
    clin = pd.DataFrame(
        {
            "subject": [f"P{i}" for i in range(20)] * 2,
            "timepoint": ["baseline"] * 20 + ["month3"] * 20,
            "CMAS": np.r_[np.full(20, 30.0), 30 + cmas_gain],
            "CAT": np.r_[np.full(20, 8.0), np.full(20, np.nan)],
        }
    )
    measure = response.measure_changes(clin, MEASURES, TIMEPOINTS)
    result = linkage.change_correlations(
        changes, measure, TIMEPOINTS, n_bootstrap=1000, seed=5
    ).set_index("measure")
    assert result.loc["CMAS", "estimate"] < -0.8
    assert result.loc["CMAS", "fdr"] < 0.01
    assert result.loc["CMAS", "n"] == 20
    assert result.loc["CMAS", "direction"] == "CMAS rises as the score rises"
    low, high = result.loc["CMAS", ["ci_low", "ci_high"]]
    assert -1 <= low < result.loc["CMAS", "estimate"] < high < 0
    # No follow-up CAT values: no pairs, no test.
    assert result.loc["CAT", "n"] == 0 and np.isnan(result.loc["CAT", "pvalue"])


def test_vectorized_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 12))
    y = np.round(x + rng.normal(size=(5, 12)))  # ties in y
    expected = [spearmanr(a, b)[0] for a, b in zip(x, y, strict=True)]
    assert stats.spearman_rho(x, y) == pytest.approx(expected)


@pytest.mark.parametrize("batch", [stats.BOOTSTRAP_BATCH_VALUES, 40])
def test_bootstrap_intervals_equal_scipy_to_the_bit(monkeypatch, batch):
    """Spearman from dense codes and scipy's batches (40 values: 1-8 resamples a batch)
    give scipy's interval of the data itself, without batches, to the last bit."""
    from scipy.stats import bootstrap

    monkeypatch.setattr(stats, "BOOTSTRAP_BATCH_VALUES", batch)
    computed = 0
    for trial in range(12):
        rng = np.random.default_rng(trial)
        n = int(rng.integers(5, 40))
        x = np.round(rng.normal(size=n), 1)  # ties
        y = np.round(x + rng.normal(size=n))
        for data, statistic, paired in [
            ((x, y), stats.spearman_rho, True),
            ((x,), np.median, False),
        ]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy's degenerate intervals: NaN
                expected = bootstrap(
                    data,
                    statistic,
                    n_resamples=199,
                    vectorized=True,
                    paired=paired,
                    confidence_level=0.9,
                    method="BCa",
                    rng=np.random.default_rng(trial),
                ).confidence_interval
            got = stats.bootstrap_ci(
                data, statistic, 199, 0.9, np.random.default_rng(trial), paired=paired
            )
            assert np.array_equal(got, (expected.low, expected.high), equal_nan=True)
            computed += not np.isnan(got[0])
    assert computed >= 20  # of 24


def test_ranks_from_codes_are_rankdata_of_the_values():
    from scipy.stats import rankdata

    values = np.array([3.0, 1.0, 3.0, 2.0, 5.0])
    distinct, codes = np.unique(values, return_inverse=True)
    index = np.random.default_rng(0).integers(0, 5, size=(7, 5))
    ranks = stats.codes_ranks(codes[index], len(distinct))
    assert np.array_equal(ranks, rankdata(values[index], axis=-1))
    assert np.array_equal(stats.codes_ranks(codes, 4), rankdata(values))
    rho = stats.codes_spearman(4, 4)(codes[index].T, codes[index[::-1]].T, axis=0)
    assert np.array_equal(rho, stats.spearman_rho(values[index], values[index[::-1]]))


def test_bh_keeps_missing_values():
    q = stats.bh(pd.Series([0.01, np.nan, 0.04]))
    assert np.isnan(q[1])
    assert q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.04)


def test_bootstrap_intervals_left_empty_say_why_without_library_warnings(caplog):
    import logging
    import warnings

    caplog.set_level(logging.INFO)
    stats.new_job()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Four subjects changing alike: every jackknife mean is the same (degenerate).
        same = stats.bootstrap_ci((np.ones(4),), np.mean, 99, 0.95, np.random.default_rng(0))
        again = stats.bootstrap_ci((np.ones(4),), np.mean, 99, 0.95, np.random.default_rng(1))
        few = stats.bootstrap_ci((np.ones(2),), np.mean, 99, 0.95, np.random.default_rng(0))
        low, high = stats.bootstrap_ci(
            (np.arange(6.0),), np.mean, 99, 0.95, np.random.default_rng(0)
        )
    assert np.isnan([*same, *again, *few]).all() and low < 2.5 < high
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # each reason once
    assert "not computable from 4 subjects" in lines[0] and "needs >= 3 subjects" in lines[1]


def test_auc_delong_by_hand():
    positive, negative = np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.5])
    auc, low, high = stats.auc_delong(positive, negative, confidence=0.5)
    # Pairs won: 1>0, 2>0, 3>0, 3>2.5 -> 4 of 6. Structural components V10 = (.5, .5, 1),
    # V01 = (1, 1/3): variance = var(V10)/3 + var(V01)/2 = (1/12)/3 + (2/9)/2 = 5/36.
    half = 0.6744897501960817 * np.sqrt(5 / 36)
    assert auc == pytest.approx(4 / 6)
    assert (low, high) == pytest.approx((4 / 6 - half, 4 / 6 + half))
    assert auc == pytest.approx(roc_auc_score([1, 1, 1, 0, 0], [1, 2, 3, 0, 2.5]))


# --- response definitions ----------------------------------------------------------------------


PRINTO_MEASURES = {
    "CK": {"higher_is_better": False, "min": 0},
    "CMAS": {"higher_is_better": True, "min": 0, "max": 52},
    "MMT8": {"higher_is_better": True, "min": 0, "max": 80},
    "physician_global": {"higher_is_better": False, "min": 0, "max": 1},
    "pred": {"higher_is_better": False, "min": 0, "max": 2},
}


def response_clinical() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": ["A", "A", "B", "B", "C", "C", "D", "D"],
            "timepoint": TIMEPOINTS * 4,
            # A: all four PRINTO criteria met at month3 (PG 0.01 on a 0-1 scale).
            # B: 2 met + 2 missing -> undecided. C: 2 met, 1 not met, 1 missing -> undecided.
            # D: 2 met + 2 not met -> not inactive.
            "CK": [400, 100, 300, 120, 500, 90, 500, 90],
            "CMAS": [30, 50, 30, 49, 30, 33, 30, 49],
            "MMT8": [60, 79, 60, np.nan, 60, 79, 60, 60],
            "physician_global": [0.5, 0.01, 0.5, np.nan, 0.5, np.nan, 0.5, 0.1],
            "pred": [1.0, 0.4, 0.0, 0.0, 1.0, 0.6, 1.0, np.nan],
            "investigator": ["", "yes", "", "no", "", "", "", "1"],
        }
    )


def test_response_definitions_calls_and_traceable_inputs():
    clin = response_clinical()
    changes = response.measure_changes(clin, PRINTO_MEASURES, TIMEPOINTS)
    definitions = [
        {"name": "cmas3", "type": "improvement", "measure": "CMAS", "at_least": 3},
        {
            "name": "ck50",
            "type": "improvement",
            "measure": "CK",
            "at_least": 50,
            "scale": "percent",
        },
        {"name": "cid", "type": "printo_inactive"},
        {
            "name": "spared",
            "type": "steroid_sparing",
            "measure": "pred",
            "reduction_percent": 50,
        },
        {"name": "inv", "type": "column", "column": "investigator"},
        {"name": "both", "type": "all_of", "of": ["cmas3", "spared"]},
        {"name": "either", "type": "any_of", "of": ["cmas3", "spared"]},
    ]
    table = response.call_responses(clin, changes, definitions, PRINTO_MEASURES, TIMEPOINTS)
    assert list(table.columns) == response.RESPONSE_COLUMNS
    calls = table.set_index(["response", "subject", "timepoint"])["responder"]

    def call(name, subject, timepoint="month3"):
        value = calls.loc[(name, subject, timepoint)]
        return None if pd.isna(value) else bool(value)

    # CMAS gains 20, 19, 3 (exactly the threshold counts), 19.
    assert [call("cmas3", s) for s in "ABCD"] == [True, True, True, True]
    # CK falls by 75%, 60%, 82%, 82%: lower is better, so a fall is an improvement.
    assert [call("ck50", s) for s in "ABCD"] == [True, True, True, True]
    assert [call("cid", s) for s in "ABCD"] == [True, None, None, False]
    assert call("cid", "A", "baseline") is False  # state definitions exist at baseline too
    # 60%, no dose at baseline, 40%, missing follow-up dose.
    assert [call("spared", s) for s in "ABCD"] == [True, None, False, None]
    assert [call("inv", s) for s in "ABCD"] == [True, False, None, True]
    assert [call("both", s) for s in "ABCD"] == [True, None, False, None]
    assert [call("either", s) for s in "ABCD"] == [True, True, True, True]
    # Change-based calls exist at follow-ups only.
    assert ("cmas3", "A", "baseline") not in calls.index

    rows = table.set_index(["response", "subject", "timepoint"])
    # PRINTO's 0.2 on a 10 cm VAS becomes 0.02 on the declared 0-1 scale.
    assert "physician_global <= 0.02" in rows.loc[("cid", "A", "month3"), "rule"]
    assert rows.loc[("cid", "A", "month3"), "criteria_met"] == 4
    assert rows.loc[("cid", "B", "month3"), "criteria_evaluable"] == 2
    assert "physician_global=0.1 (<=0.02: not met)" in rows.loc[("cid", "D", "month3"), "inputs"]
    assert rows.loc[("cmas3", "C", "month3"), "inputs"] == (
        "CMAS: baseline 30, month3 33, improvement 3"
    )
    assert "no dose at baseline" in rows.loc[("spared", "B", "month3"), "inputs"]
    assert rows.loc[("both", "C", "month3"), "inputs"] == "cmas3=yes;spared=no"


def test_physician_cutoff_can_be_given_on_the_users_scale():
    definition = {"name": "cid", "type": "printo_inactive", "physician_global_cutoff": 0.2}
    assert response.printo_physician_cutoff(definition, PRINTO_MEASURES) == 0.2
    ten = {**PRINTO_MEASURES, "physician_global": {"higher_is_better": False, "max": 10}}
    assert response.printo_physician_cutoff({"type": "printo_inactive"}, ten) == 0.2


def test_bad_response_column_names_file_line_and_column():
    values = pd.Series(["yes", "", "maybe"])
    with pytest.raises(InputError, match=r"clin.tsv: line 4, column 'inv' holds 'maybe'"):
        response.parse_response_column(values, "clin.tsv", "inv")


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        (
            {"responses": [{"name": "x", "type": "improvement", "measure": "CMAZ"}]},
            r"linkage.responses\[0\] \('x'\) names measure 'CMAZ'",
        ),
        (
            {"responses": [{"name": "x", "type": "all_of", "of": ["a", "b"]}]},
            "combines 'a', which is not defined above it",
        ),
        (
            {"responses": [{"name": "x", "type": "column", "column": "nope"}]},
            "column 'nope' named by",
        ),
        ({"covariates": ["steroids"]}, "linkage.covariates names 'steroids'"),
        ({"primary_response": "x"}, "linkage.primary_response 'x' is not a defined"),
        (
            {"responses": [{"name": "x", "type": "printo_inactive"}]},
            "declare its max under clinical_measures",
        ),
    ],
)
def test_linkage_config_errors_name_the_key(settings, fragment):
    measures = {**PRINTO_MEASURES, "physician_global": {"higher_is_better": False}}
    config = {"clinical_measures": measures, "clinical": "clin.tsv", "linkage": settings}
    samples = pd.DataFrame({"sample": ["a"], "subject": ["A"], "drug": ["rux"]})
    with pytest.raises(InputError, match=fragment):
        response.check_responses(config, response_clinical())
        linkage.check_covariates(config, samples)


# --- score vs response, mixed models ------------------------------------------------------------


def test_baseline_prediction_auc_logistic_and_separation():
    rng = np.random.default_rng(4)
    n = 40
    responder = np.arange(n) % 2 == 0
    base = np.where(responder, 8.0, 6.0) + rng.normal(0, 1.0, n)
    table = scores_table(base, base - np.where(responder, 5.0, 0.0))
    changes = linkage.score_changes(table, TIMEPOINTS, "patient")
    subjects = [f"P{i}" for i in range(n)]
    responses = pd.DataFrame(
        {
            "response": "r",
            "subject": subjects,
            "timepoint": "month3",
            "responder": pd.array(responder, dtype="boolean"),
        }
    )
    responses.loc[0, "responder"] = pd.NA  # not evaluable: left out, n says so
    covariates = pd.DataFrame(
        {
            "subject": subjects,
            "timepoint": "baseline",
            "dose": rng.uniform(0, 1, n),
            "drug": np.where(np.arange(n) % 3 == 0, "tofa", "rux"),
        }
    )
    result = linkage.baseline_prediction(
        changes, responses, TIMEPOINTS, covariates, ["dose", "drug"]
    ).set_index(["predictor", "analysis"])
    mw = result.loc[("baseline_score", "mann_whitney")]
    assert mw["n"] == n - 1 and mw["n_responders"] == n // 2 - 1
    x = pd.Series(base, index=subjects).drop("P0")
    y = pd.Series(responder, index=subjects).drop("P0")
    assert mw["estimate"] == pytest.approx(roc_auc_score(y, x))
    assert mw["ci_low"] < mw["estimate"] < mw["ci_high"] and mw["pvalue"] < 0.001
    logistic = result.loc[("baseline_score", "logistic")]
    assert logistic["covariates"] == "dose;drug"
    assert logistic["estimate"] > 1 and logistic["ci_low"] > 1 and logistic["pvalue"] < 0.05
    assert mw["direction"] == logistic["direction"] == "higher in responders"
    # The change separates perfectly: it falls in every responder and in no non-responder,
    # and its AUC is read as "lower in responders": 1; no odds ratio.
    change = result.loc[("score_change", "mann_whitney")]
    assert change["estimate"] == 1 and change["direction"] == "lower in responders"
    assert change["statistic"] == change["n_responders"] * (change["n"] - change["n_responders"])
    assert "perfect separation" in result.loc[("score_change", "logistic"), "note"]
    assert np.isnan(result.loc[("score_change", "logistic"), "estimate"])


@pytest.mark.parametrize("covariates", [[], ["dose", "drug"], ["sex", "flat", "dose"], ["flag"]])
def test_logistic_design_is_patsys_and_gives_the_formula_fit(covariates):
    import statsmodels.formula.api as smf
    from patsy import dmatrix

    rng = np.random.default_rng(len(covariates))
    n = 30
    frame = pd.DataFrame(
        {
            "z": rng.normal(size=n),
            "y": (rng.random(n) < 0.5).astype(int),
            "dose": rng.gamma(2.0, size=n),
            "drug": rng.choice(["tofa", "rux", "bari"], n),
            "sex": rng.choice(["F", "M"], n),
            "flat": 1.0,
            "flag": rng.random(n) < 0.4,
        }
    )
    design, used = linkage._design(frame, covariates)
    renamed = frame.rename(columns={c: f"covariate_{i}" for i, c in enumerate(covariates)})
    terms = [
        f"C(covariate_{i})" if frame[c].dtype == bool or frame[c].dtype == object
        else f"covariate_{i}"
        for i, c in enumerate(covariates)
        if frame[c].nunique() > 1
    ]  # fmt: skip
    formula = " + ".join(["z", *terms])
    expected = dmatrix(formula, renamed, return_type="dataframe")
    assert list(design.columns) == list(expected.columns)
    assert np.array_equal(design.to_numpy(), expected.to_numpy())
    assert used == ";".join(c for c in covariates if frame[c].nunique() > 1)
    # The same bits as the formula interface, which builds that design for every model.
    fitted, _, note = linkage._logistic(
        frame.assign(x=frame["z"], responder=frame["y"].astype(bool)), covariates, 0.95
    )
    by_formula = smf.logit("y ~ " + formula, renamed.assign(
        z=(frame["z"] - frame["z"].mean()) / frame["z"].std(ddof=1)
    )).fit(disp=0)  # fmt: skip
    assert note == "" and fitted["pvalue"] == by_formula.pvalues["z"]
    assert fitted["estimate"] == np.exp(by_formula.params["z"])


def test_mixed_model_recovers_planted_slope_and_needs_three_timepoints():
    rng = np.random.default_rng(6)
    timepoints = ["t0", "t1", "t2"]
    rows = []
    for i in range(30):
        intercept = rng.normal(30, 5)
        for t, tp in enumerate(timepoints):
            score = rng.normal(5 - t, 1.5)
            rows.append(
                {
                    "subject": f"S{i}",
                    "timepoint": tp,
                    "group": "patient",
                    "signature": "S",
                    "method": "m",
                    "score": score,
                    "CMAS": intercept - 2.0 * score + 1.5 * t + rng.normal(0, 1),
                    "dose": rng.uniform(0, 1),
                }
            )
    frame = pd.DataFrame(rows)
    clin = frame[["subject", "timepoint", "CMAS", "dose"]].copy()
    clin.loc[3, "CMAS"] = np.nan  # pairwise complete: one visit fewer
    measures = {"CMAS": {"higher_is_better": True}}
    covariates = clin[["subject", "timepoint", "dose"]]
    table = linkage.mixed_models(frame, clin, measures, timepoints, "patient", covariates, ["dose"])
    row = table.iloc[0]
    assert row["n"] == 30 and row["n_obs"] == 89 and row["covariates"] == "dose"
    assert row["ci_low"] < -2.0 < row["ci_high"] and row["pvalue"] < 1e-6
    assert bool(row["converged"])
    two = linkage.mixed_models(frame, clin, measures, timepoints[:2], "patient")
    assert two.empty and list(two.columns) == linkage.MIXED_COLUMNS


# --- done when: the planted links are found, and the test is calibrated under no link -----------


@pytest.fixture(scope="module")
def demo_like():
    """The demo cohort's patients and plan (same seed), with fewer genes for speed."""
    cohort = simulate_cohort(CohortSpec(n_genes=1000))
    table = cohort_scores(cohort, ("RICE2013_6", "NIH28"))
    return cohort, linkage.score_changes(table, SIM_TIMEPOINTS, "patient")


def test_demo_score_change_tracks_cmas_change_with_planted_sign(demo_like):
    cohort, changes = demo_like
    measure = response.measure_changes(cohort.clinical, SIM_MEASURES, SIM_TIMEPOINTS)
    result = linkage.change_correlations(
        changes, measure, SIM_TIMEPOINTS, n_bootstrap=500, seed=1
    ).set_index(["signature", "timepoint", "measure"])
    # The simulator plants a CMAS gain proportional to the IFN fall: the score change and
    # the CMAS change are negatively correlated; q is BH over all rows of the table.
    row = result.loc[("RICE2013_6", "month6", "CMAS")]
    assert row["estimate"] < 0 and row["fdr"] < 0.05 and row["ci_high"] < 0
    assert row["n"] == 25


def test_demo_planted_responders_separated_by_score_change(demo_like):
    cohort, changes = demo_like
    truth = cohort.truth_subjects[["subject", "responder"]]
    clin = cohort.clinical.merge(truth, on="subject")
    measure = response.measure_changes(clin, SIM_MEASURES, SIM_TIMEPOINTS)
    responses = response.call_responses(
        clin,
        measure,
        [{"name": "planted", "type": "column", "column": "responder"}],
        SIM_MEASURES,
        SIM_TIMEPOINTS,
    )
    result = linkage.baseline_prediction(changes, responses, SIM_TIMEPOINTS)
    row = result[
        (result["signature"] == "RICE2013_6")
        & (result["timepoint"] == "month6")
        & (result["predictor"] == "score_change")
        & (result["analysis"] == "mann_whitney")
    ].iloc[0]
    # AUC is P(responder's change < non-responder's): the score falls more in responders.
    assert row["direction"] == "lower in responders"
    assert row["estimate"] >= 0.8 and row["fdr"] < 0.05
    assert row["n"] == 25 and row["n_responders"] == truth["responder"].sum()


def test_change_correlation_is_calibrated_without_a_link():
    # A true null needs the clinical course independent of the IFN course. With
    # clinical_link=0 alone the simulator still gives responders (whose IFN falls) a general
    # clinical gain, so score and CMAS changes stay linked through responder status (about
    # 10% of 200 such cohorts reach p < 0.05). Making every patient a responder gives all
    # the same general gain: CMAS change is then independent of the score change, while the
    # score still falls in IFN-high patients and not in IFN-low ones.
    significant = 0
    measures = {"CMAS": SIM_MEASURES["CMAS"]}
    for seed in range(1, 21):
        spec = CohortSpec(
            n_genes=400,
            n_controls=8,
            n_treatment_genes=20,
            clinical_link=0.0,
            frac_responders=1.0,
            seed=seed,
        )
        cohort = simulate_cohort(spec)
        changes = linkage.score_changes(cohort_scores(cohort), SIM_TIMEPOINTS, "patient")
        measure = response.measure_changes(cohort.clinical, measures, SIM_TIMEPOINTS)
        result = linkage.change_correlations(changes, measure, SIM_TIMEPOINTS)
        pvalue = result.set_index("timepoint").loc["month6", "pvalue"]
        significant += pvalue < 0.05
    assert significant <= 3


# --- the stage, and validation of the clinical table -------------------------------------------


def test_stage_writes_every_table_with_n_estimate_ci_p_q(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cohort = simulate_cohort(
        CohortSpec(n_patients=12, n_controls=6, n_genes=400, n_treatment_genes=20, seed=3)
    )
    cohort.write(tmp_path / "inputs")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        counts="inputs/counts.tsv.gz", samples="inputs/samples.tsv", clinical="inputs/clinical.tsv"
    )
    config["scores"]["signatures"] = ["RICE2013_6"]
    config["linkage"]["bootstrap"] = 200
    stages.write_tsv(cohort_scores(cohort), "scores.tsv")
    names = {
        **{k: f"{k}.tsv" for k in ["score_changes", "changes", "response", "paired_tests"]},
        **{k: f"{k}.tsv" for k in ["correlations", "baseline_prediction", "mixed_models"]},
        **{k: f"{k}.png" for k in ["change_scatter", "trajectories", "roc"]},
    }
    sheet = {"samples": "inputs/samples.tsv", "clinical": "inputs/clinical.tsv"}
    run_stage("call_responses", config, sheet, names)
    inputs = {"scores": "scores.tsv", "samples": "inputs/samples.tsv"}
    run_stage(
        "clinical_linkage",
        config,
        {**inputs, "changes": "changes.tsv", "response": "response.tsv"},
        names,
    )
    for name in ["paired_tests", "correlations", "baseline_prediction", "mixed_models"]:
        table = pd.read_csv(names[name], sep="\t")
        assert {"n", "estimate", "ci_low", "ci_high", "pvalue", "fdr"} <= set(table.columns)
        assert table["estimate"].notna().any(), name
        assert table["ci_low"].notna().any() and table["fdr"].notna().any(), name
    response = pd.read_csv(names["response"], sep="\t")
    defined = [d["name"] for d in config["linkage"]["responses"]]
    assert list(dict.fromkeys(response["response"])) == defined
    assert response["inputs"].notna().all() and response["rule"].notna().all()
    for name in ["change_scatter", "trajectories", "roc"]:
        assert (tmp_path / names[name]).stat().st_size > 10_000


def test_column_responses_are_called_without_any_clinical_measure(tmp_path, monkeypatch):
    # A label column of the clinical table is a response of its own: no measure needed.
    monkeypatch.chdir(tmp_path)
    Path("samples.tsv").write_text(
        "sample\tsubject\tgroup\ttimepoint\n"
        + "".join(f"P{i}_{t}\tP{i}\tpatient\t{t}\n" for i in (1, 2) for t in ("m0", "m3"))
    )
    Path("clinical.tsv").write_text(
        "subject\ttimepoint\tresponded\nP1\tm0\t\nP1\tm3\tyes\nP2\tm0\t\nP2\tm3\tno\n"
    )
    config = {
        "counts": "counts.tsv",
        "samples": "samples.tsv",
        "clinical": "clinical.tsv",
        "timepoints": ["m0", "m3"],
        "clinical_measures": {},
        "linkage": {"responses": [{"name": "call", "type": "column", "column": "responded"}]},
    }
    outputs = {"changes": "changes.tsv", "response": "response.tsv"}
    inputs = {"samples": "samples.tsv", "clinical": "clinical.tsv"}
    run_stage("call_responses", config, inputs, outputs)
    calls = response.read_calls("response.tsv").set_index(["subject", "timepoint"])
    assert calls.loc[("P1", "m3"), "responder"] and not calls.loc[("P2", "m3"), "responder"]
    assert pd.read_csv("changes.tsv", sep="\t").empty


@pytest.mark.parametrize(
    ("new", "where"),
    [
        ("P3\tmonth3\t60", "clinical.tsv: line 7, column 'CMAS'"),
        ("P9\tmonth3\t40", "clinical.tsv: line 7, column 'subject'"),
        ("P3\tweek2\t40", "clinical.tsv: line 7, column 'timepoint'"),
    ],
)
def test_bad_clinical_value_fails_in_validation_naming_file_line_column(
    tiny_inputs, base_config, new, where
):
    path = tiny_inputs / "clinical.tsv"
    path.write_text(path.read_text().replace("P3\tmonth3\t40", new))
    with pytest.raises(InputError, match=where):
        load_design(base_config)
