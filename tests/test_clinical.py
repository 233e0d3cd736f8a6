import numpy as np
import pandas as pd
import pytest

from ifnsig import clinical

TIMEPOINTS = ["baseline", "month3"]
MEASURES = {
    "CMAS": {"higher_is_better": True},
    "CAT": {"higher_is_better": False},
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


def test_score_changes_and_signed_rank_test():
    table = scores_table([5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 11])
    changes = clinical.score_changes(table, TIMEPOINTS, "patient")
    followup = changes[changes["timepoint"] == "month3"].set_index("subject")["change"]
    assert followup.tolist() == [-4, -4, -4, -4, -4, 1]
    tests = clinical.paired_tests(changes, TIMEPOINTS)
    row = tests.iloc[0]
    assert row["n"] == 6
    assert row["estimate"] == -4
    # Ranks: five ties at 4 (mean rank 3.5) negative, one positive of rank 1.
    assert row["effect_size"] == pytest.approx((1.0 - 20.0) / 21.0)
    assert row["pvalue"] < 0.1


def test_measure_changes_sign_improvement_by_direction():
    clin = pd.DataFrame(
        {"subject": ["A", "A"], "timepoint": TIMEPOINTS, "CMAS": [30, 40], "CAT": [10, 4]}
    )
    changes = clinical.measure_changes(clin, MEASURES, TIMEPOINTS).set_index(
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
    changes = clinical.score_changes(table, TIMEPOINTS, "patient")
    cmas_gain = 3 * fall + rng.normal(0, 1, 20)
    clin = pd.DataFrame(
        {
            "subject": [f"P{i}" for i in range(20)] * 2,
            "timepoint": ["baseline"] * 20 + ["month3"] * 20,
            "CMAS": np.r_[np.full(20, 30.0), 30 + cmas_gain],
            "CAT": np.r_[np.full(20, 8.0), np.full(20, np.nan)],
        }
    )
    measure = clinical.measure_changes(clin, MEASURES, TIMEPOINTS)
    result = clinical.change_correlations(changes, measure, TIMEPOINTS).set_index("measure")
    assert result.loc["CMAS", "estimate"] < -0.8
    assert result.loc["CMAS", "qvalue"] < 0.01
    assert result.loc["CMAS", "n"] == 20
    # No follow-up CAT values: no pairs, no test.
    assert result.loc["CAT", "n"] == 0 and np.isnan(result.loc["CAT", "pvalue"])


def test_bh_keeps_missing_values():
    q = clinical.bh(pd.Series([0.01, np.nan, 0.04]))
    assert np.isnan(q[1])
    assert q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.04)
