"""The IFN score between two groups of samples at one timepoint (a cross-sectional question).

By default the patients are compared with the healthy controls at every timepoint where
both were sampled (controls are sampled at baseline); ``scores.compare`` names another
sample-sheet column and its two groups instead (two patient groups, e.g. two diseases or
two drugs), compared at every timepoint where both groups were sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.lazy import lazy_module
from ifnsig.stats import auc_delong, bh, hodges_lehmann_shift

# The workflow imports this module when it parses the Snakefile: scipy.stats on first use.
stats = lazy_module("scipy.stats")

COMPARISON_COLUMNS = [
    "signature",
    "method",
    "timepoint",
    "column",
    "test_group",
    "reference_group",
    "n",
    "n_test",
    "n_reference",
    "median_test",
    "median_reference",
    "estimate",
    "ci_low",
    "ci_high",
    "shift",
    "shift_ci_low",
    "shift_ci_high",
    "statistic",
    "pvalue",
    "qvalue",
    "direction",
    "note",
]


@dataclass(frozen=True)
class ScoreComparison:
    """Samples whose ``column`` is ``test`` compared with those whose value is ``reference``."""

    column: str
    test: str
    reference: str

    def describe(self) -> str:
        return f"{self.test} vs {self.reference} ({self.column})"


def check_score_comparison(config: dict, samples: pd.DataFrame) -> None:
    """``scores.compare``: a sheet column and two of its values, both among the samples."""
    compare = config["scores"].get("compare")
    if not compare:
        return
    where = origin("scores.compare")
    column = compare["column"]
    if column not in samples.columns or column in ("sample", "subject"):
        usable = [c for c in samples.columns if c not in ("sample", "subject")]
        raise InputError(
            f"{where}: scores.compare names column '{column}', which is not a sample-sheet "
            f"column; use one of: {', '.join(usable)}."
        )
    values = sorted(samples[column].dropna().astype(str).unique())
    for key in ("test", "reference"):
        if str(compare[key]) not in values:
            raise InputError(
                f"{where}: scores.compare.{key} is '{compare[key]}', which no sample has in "
                f"column '{column}'; use one of: {', '.join(values)}."
            )
    if str(compare["test"]) == str(compare["reference"]):
        raise InputError(
            f"{where}: scores.compare compares '{compare['test']}' with itself; name two "
            f"different groups of column '{column}'."
        )


def score_comparison(
    compare: dict | None, groups: dict, samples: pd.DataFrame
) -> ScoreComparison | str:
    """The comparison the score stage makes, or the reason it makes none (in words)."""
    if compare:
        return ScoreComparison(
            str(compare["column"]), str(compare["test"]), str(compare["reference"])
        )
    if not (samples["group"] == groups["control"]).any():
        return (
            f"no sample of group '{groups['control']}' to compare the patients with, and "
            "scores.compare is not set"
        )
    return ScoreComparison("group", groups["patient"], groups["control"])


def group_score_tests(
    scores: pd.DataFrame,
    samples: pd.DataFrame,
    comparison: ScoreComparison,
    timepoints: list[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Scores of the two groups at each timepoint where both were sampled.

    Two-sided Mann-Whitney U test (scipy); the estimate is the ROC AUC, the probability
    that a sample of the test group scores higher than one of the reference group (ties
    count half), with DeLong's interval (:func:`ifnsig.stats.auc_delong`); ``shift`` is
    the Hodges-Lehmann shift, test minus reference in score units, with its interval.
    q-values are BH over the table.

    ``samples`` holds the sheet columns of every sample (``sample`` and the compared
    column).
    """
    column = comparison.column
    if column in scores.columns:
        labelled = scores.assign(_level=scores[column].astype(str))
    else:
        levels = samples.set_index("sample")[column].astype(str)
        labelled = scores.assign(_level=scores["sample"].astype(str).map(levels))
    rows = []
    for (signature, method), data in labelled.groupby(["signature", "method"], sort=False):
        for timepoint in timepoints:
            at = data[data["timepoint"] == timepoint]
            x = at.loc[at["_level"] == comparison.test, "score"].dropna().to_numpy(float)
            y = at.loc[at["_level"] == comparison.reference, "score"].dropna().to_numpy(float)
            if not len(x) or not len(y):
                continue
            row = {
                "signature": signature,
                "method": method,
                "timepoint": timepoint,
                "column": column,
                "test_group": comparison.test,
                "reference_group": comparison.reference,
                "n": len(x) + len(y),
                "n_test": len(x),
                "n_reference": len(y),
                "median_test": float(np.median(x)),
                "median_reference": float(np.median(y)),
                **dict.fromkeys(
                    ["estimate", "ci_low", "ci_high", "shift", "shift_ci_low", "shift_ci_high"],
                    np.nan,
                ),
                "statistic": np.nan,
                "pvalue": np.nan,
                "direction": "not tested",
                "note": "",
            }
            if len(x) >= 2 and len(y) >= 2:
                test = stats.mannwhitneyu(x, y, alternative="two-sided")
                auc, low, high = auc_delong(x, y, confidence)
                shift, shift_low, shift_high = hodges_lehmann_shift(x, y, confidence)
                if auc == 0.5:
                    direction = "no difference"
                else:
                    more, less = (
                        (comparison.test, comparison.reference)
                        if auc > 0.5
                        else (comparison.reference, comparison.test)
                    )
                    direction = f"higher in {more} than in {less}"
                row.update(
                    estimate=auc,
                    ci_low=low,
                    ci_high=high,
                    shift=shift,
                    shift_ci_low=shift_low,
                    shift_ci_high=shift_high,
                    statistic=float(test.statistic),
                    pvalue=float(test.pvalue),
                    direction=direction,
                )
            else:
                row["note"] = "fewer than 2 samples in a group"
            rows.append(row)
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    table["qvalue"] = bh(table["pvalue"])
    return table
