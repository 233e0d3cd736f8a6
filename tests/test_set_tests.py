"""Correlation-aware gene-set tests: known answers, exact sign-flip and label-permutation
p-values, the comparison each kind of DE table makes, and calibration under correlated genes."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ifnsig import set_tests
from ifnsig.de.plan import Contrast, Groups

TIMEPOINTS = ["baseline", "month3", "month6"]


def fitted_table(n_subjects=4, levels=("baseline", "month6"), group=None):
    """A ``<table>.samples.tsv`` of a paired fit: every subject at every level."""
    rows = []
    for i in range(n_subjects):
        for level in levels:
            row = {"sample": f"S{i}_{level}", "subject": f"S{i}", "timepoint": level}
            if group is not None:
                row["drug"] = group[i]
            rows.append(row)
    return pd.DataFrame(rows).assign(compared="timepoint")


def scores_for(fitted, values):
    """Samples x one set, the set score of each sample given by ``values`` (sample -> value)."""
    return pd.DataFrame({"SET": [values[s] for s in fitted["sample"]]}, index=fitted["sample"])


PAIRED = Contrast(name="month6_vs_baseline", test="month6", reference="baseline")


def test_sign_flip_known_answer_on_four_subjects():
    fitted = fitted_table()
    # Changes of the set score: 1, 2, 3, -0.5 (sum 5.5). Of the 16 sign patterns, those
    # with |sum| >= 5.5 are the observed one, all positive (6.5), and their mirrors: 4.
    change = {"S0": 1.0, "S1": 2.0, "S2": 3.0, "S3": -0.5}
    values = {f"{s}_baseline": 10.0 + i for i, s in enumerate(change)}
    values.update({f"{s}_month6": 10.0 + i + change[s] for i, s in enumerate(change)})
    comparison = set_tests.comparison_for(PAIRED, None, fitted, TIMEPOINTS)
    assert comparison.kind == "sign_flip"
    table = set_tests.set_tests(
        scores_for(fitted, values), pd.Series({"SET": 7}), comparison, permutations=99
    )
    row = table.iloc[0]
    assert row["pvalue"] == pytest.approx(4 / 16)
    assert bool(row["exact"]) and row["arrangements"] == 16
    assert row["estimate"] == pytest.approx(5.5 / 4) and row["direction"] == "up"
    changes = np.array(list(change.values()))
    t = changes.mean() / (changes.std(ddof=1) / 2)
    assert row["statistic"] == pytest.approx(t)
    assert (row["n"], row["n_genes"], row["method"]) == (4, 7, "sign_flip")
    assert row["fdr"] == pytest.approx(row["pvalue"])


@pytest.mark.parametrize("n", [2, 5, 9])
def test_sign_flip_pvalue_is_exact_for_small_n(n):
    rng = np.random.default_rng(n)
    changes = rng.normal(0.3, 1.0, (6, n))
    changes[0] = np.abs(changes[0])  # every subject changes the same way
    changes[1] = 0.0  # nothing changes: every pattern is as extreme
    pvalue, exact, total = set_tests.sign_flip_pvalues(changes, 2**n, rng)
    assert exact and total == 2**n
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=n)))
    for row, p in zip(changes, pvalue, strict=True):
        means = np.abs(patterns @ row) / n
        expected = np.mean(means >= abs(row.mean()) - 1e-12)
        assert p == pytest.approx(expected, abs=1e-15)
    assert pvalue[0] == pytest.approx(2 / 2**n) and pvalue[1] == 1.0
    # The same p-values as scipy's sign-flip permutation test of the mean.
    for row, p in zip(changes[2:], pvalue[2:], strict=True):
        scipy = stats.permutation_test(
            (row,), np.mean, permutation_type="samples", n_resamples=np.inf
        )
        assert p == pytest.approx(scipy.pvalue, rel=1e-12)


def test_monte_carlo_sign_flips_are_seeded_and_never_zero():
    rng = np.random.default_rng(0)
    changes = rng.normal(2.0, 0.5, (3, 30))  # a strong change: no random pattern reaches it
    first = set_tests.sign_flip_pvalues(changes, 999, np.random.default_rng(7))
    again = set_tests.sign_flip_pvalues(changes, 999, np.random.default_rng(7))
    assert not first[1] and first[2] == 999
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_allclose(first[0], 1 / 1000)


def test_two_group_test_is_exact_welch_label_permutation():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, (4, 9))
    values[0, :4] += 3.0
    in_test = np.arange(9) < 4
    result = set_tests.two_group_test(values, in_test, 200, rng)
    assert result.exact and result.arrangements == 126  # C(9, 4)

    def welch(x, y):
        return stats.ttest_ind(x, y, equal_var=False).statistic

    splits = [np.isin(np.arange(9), chosen) for chosen in itertools.combinations(range(9), 4)]
    for row, p, t in zip(values, result.pvalue, result.statistic, strict=True):
        assert t == pytest.approx(welch(row[in_test], row[~in_test]))
        # Two-sided: splits whose |t| reaches the observed |t| (scipy's permutation_test
        # doubles the smaller tail instead, which differs when the groups differ in size).
        every = np.array([abs(welch(row[m], row[~m])) for m in splits])
        assert p == pytest.approx(np.mean(every >= abs(t) * (1 - 1e-12)))
    assert result.pvalue[0] == pytest.approx(1 / 126)


def test_set_scores_average_the_genes_present_and_keep_sizes():
    values = pd.DataFrame(
        [[1.0, 2.0, 3.0, 9.0], [2.0, 4.0, 6.0, 0.0]],
        index=["a", "b"],
        columns=["g1", "g2", "g3", "g4"],
    )
    # g4 carries the symbol of g3 with a lower mean value: g3 stands for it.
    symbols = ["A", "B", "C", "C"]
    scores, sizes = set_tests.set_scores(
        values, symbols, {"AB": ["A", "B"], "ABC": ["A", "B", "C", "X"], "A": ["A"]}, min_size=2
    )
    assert list(scores.columns) == ["AB", "ABC"] and sizes.to_dict() == {"AB": 2, "ABC": 3}
    np.testing.assert_allclose(scores["ABC"], [2.0, 4.0])
    np.testing.assert_allclose(scores["AB"], [1.5, 3.0])
    # Given the DE table's baseMean, the gene of a shared symbol is the one prerank ranks.
    means = pd.Series({"g1": 5.0, "g2": 5.0, "g3": 10.0, "g4": 20.0})
    scores, _ = set_tests.set_scores(values, symbols, {"ABC": ["A", "B", "C"]}, 2, means=means)
    np.testing.assert_allclose(scores["ABC"], [4.0, 2.0])


def test_each_kind_of_table_gets_its_comparison():
    three = fitted_table(6, levels=TIMEPOINTS, group=["rux", "tofa"] * 3)
    drug = Groups("drug", "rux", "tofa")
    change = Contrast(name="drug_change", test="month6", reference="baseline", between=drug)
    within = set_tests.comparison_for(change, "tofa", three, TIMEPOINTS)
    assert within.kind == "sign_flip" and set(within.frame["subject"]) == {"S1", "S3", "S5"}
    assert set(within.frame["level"]) == {"baseline", "month6"}
    between = set_tests.comparison_for(change, None, three, TIMEPOINTS)
    assert between.kind == "group_permutation" and between.group_test == "rux"
    lrt = Contrast(name="any", test=None, reference="baseline", lrt=True)
    omnibus = set_tests.comparison_for(lrt, None, three, TIMEPOINTS)
    assert omnibus.kind == "within_subject_permutation" and omnibus.test == "month6"
    assert len(omnibus.frame) == 18
    lrt_change = Contrast(name="traj", test=None, reference="baseline", between=drug, lrt=True)
    assert set_tests.comparison_for(lrt_change, None, three, TIMEPOINTS).kind == (
        "trajectory_permutation"
    )
    responders = Contrast(
        name="resp", test="responder", reference="non_responder", variable="response_x",
        paired=False, response=("x", "month6"),
    )  # fmt: skip
    sheet = pd.DataFrame(
        {
            "sample": [f"S{i}_baseline" for i in range(6)],
            "subject": [f"S{i}" for i in range(6)],
            "response": ["responder", "non_responder"] * 3,
            "compared": "response",
        }
    )
    unpaired = set_tests.comparison_for(responders, None, sheet, TIMEPOINTS)
    assert unpaired.kind == "label_permutation" and unpaired.test == "responder"


def correlated_cohort(rng, n_subjects=20, n_genes=40, shift=0.0, drug=None):
    """VST-like values of one gene set whose genes share a person and a visit factor."""
    samples, rows = [], []
    for i in range(n_subjects):
        person = rng.normal(0, 1)
        for level in TIMEPOINTS:
            visit = rng.normal(0, 0.6)  # the whole set moves together at each visit
            effect = shift * (level == "month6") * (drug is None or drug[i] == "rux")
            rows.append(8 + person + visit + effect + rng.normal(0, 0.2, n_genes))
            samples.append(
                {"sample": f"S{i}_{level}", "subject": f"S{i}", "timepoint": level}
                | ({} if drug is None else {"drug": drug[i]})
            )
    fitted = pd.DataFrame(samples).assign(compared="timepoint")
    values = pd.DataFrame(rows, index=fitted["sample"], columns=[f"G{g}" for g in range(n_genes)])
    return fitted, values


def test_calibrated_under_correlated_genes_and_powered_when_the_set_moves():
    """40 correlated null data sets per kind: a 5% test rejects at most 6 (P(X > 6) < 0.01)."""
    rng = np.random.default_rng(21)
    drug = ["rux", "tofa"] * 10
    kinds = {
        "sign_flip": (PAIRED, None),
        "within_subject_permutation": (
            Contrast(name="any", test=None, reference="baseline", lrt=True),
            None,
        ),
        "group_permutation": (
            Contrast(
                name="d", test="month6", reference="baseline", between=Groups("drug", "rux", "tofa")
            ),
            None,
        ),
    }
    for kind, (contrast, group) in kinds.items():
        rejected, powered = 0, 0
        for shift, _ in itertools.product([0.0, 1.0], range(40)):
            groups = drug if kind == "group_permutation" else None
            fitted, values = correlated_cohort(rng, shift=shift, drug=groups)
            symbols = list(values.columns)
            scores, sizes = set_tests.set_scores(values, symbols, {"SET": symbols})
            comparison = set_tests.comparison_for(contrast, group, fitted, TIMEPOINTS)
            assert comparison.kind == kind
            p = set_tests.set_tests(scores, sizes, comparison, permutations=199)["pvalue"].iloc[0]
            if shift == 0.0:
                rejected += p < 0.05
            else:
                powered += p < 0.05
        assert rejected <= 6, (kind, rejected)
        assert powered >= 30, (kind, powered)


def test_comparisons_read_the_samples_tables_the_de_stage_writes():
    import copy

    import yaml
    from conftest import REPO

    from ifnsig.de import plan
    from ifnsig.validation import load_samples, validate_config

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        counts=str(REPO / "resources/demo/counts.tsv.gz"),
        samples=str(REPO / "config/samples.tsv"),
        clinical=str(REPO / "config/clinical.tsv"),
    )
    patients = {"group": ["patient"]}
    config["de"]["contrasts"] = [
        {"name": "m6", "test": "month6", "reference": "baseline", "subset": patients},
        {"name": "drug", "test": "month6", "reference": "baseline", "subset": patients,
         "between": {"column": "drug", "test": "ruxolitinib", "reference": "tofacitinib"}},
        {"name": "any", "lrt": True, "subset": patients},
        {"name": "rux_vs_tofa", "variable": "drug", "test": "ruxolitinib",
         "reference": "tofacitinib", "paired": False,
         "subset": {"group": ["patient"], "timepoint": ["baseline"]}},
    ]  # fmt: skip
    config = validate_config(copy.deepcopy(config))
    samples = load_samples(config).set_index("sample", drop=False)
    tables = plan.table_contrasts(config)
    expected = {
        "m6": ("sign_flip", 25, 50),
        "drug": ("group_permutation", 25, 50),
        "drug.within_tofacitinib": ("sign_flip", 7, 14),
        "drug.within_ruxolitinib": ("sign_flip", 18, 36),
        "any": ("within_subject_permutation", 25, 75),
        "rux_vs_tofa": ("label_permutation", 25, 25),
    }
    seen = {}
    rng = np.random.default_rng(1)
    scores = pd.DataFrame({"SET": rng.normal(size=len(samples))}, index=samples.index)
    for fit in plan.plan_fits(samples, config):
        fitted = plan.fitted_samples(fit, samples).astype(str)
        for contrast in fit.contrasts:
            for name in plan.table_names(contrast):
                comparison = set_tests.comparison_for(*tables[name], fitted, TIMEPOINTS)
                result = set_tests.set_tests(scores, pd.Series({"SET": 5}), comparison, 99)
                seen[name] = (comparison.kind, int(result["n"].iloc[0]), len(comparison.frame))
                assert result["pvalue"].notna().all(), name
    assert seen == expected
