"""Clinical linkage: does the IFN score fall on treatment, and does the fall track response?

All tables are tidy, with the number of subjects used in every row (pairwise complete).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests


def bh(pvalues: pd.Series) -> np.ndarray:
    """Benjamini-Hochberg q-values; missing p-values stay missing."""
    p = pd.to_numeric(pvalues, errors="coerce").to_numpy(dtype=float)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return q


def measure_changes(
    clinical: pd.DataFrame, measures: dict[str, dict], timepoints: list[str]
) -> pd.DataFrame:
    """Change and percent change of each measure from baseline, per subject and timepoint.

    ``improvement`` is the change signed so that positive means better (for measures where
    lower is better, such as CAT-BM or steroid dose, the sign is flipped).
    """
    baseline = timepoints[0]
    long = clinical.melt(
        id_vars=["subject", "timepoint"],
        value_vars=list(measures),
        var_name="measure",
        value_name="value",
    )
    base = long[long["timepoint"] == baseline].set_index(["subject", "measure"])["value"]
    long["baseline_value"] = base.reindex(
        pd.MultiIndex.from_frame(long[["subject", "measure"]])
    ).to_numpy()
    long["change"] = long["value"] - long["baseline_value"]
    with np.errstate(divide="ignore", invalid="ignore"):
        long["percent_change"] = np.where(
            long["baseline_value"] != 0, 100 * long["change"] / long["baseline_value"], np.nan
        )
    direction = long["measure"].map(lambda m: 1.0 if measures[m]["higher_is_better"] else -1.0)
    long["improvement"] = long["change"] * direction
    order = {tp: i for i, tp in enumerate(timepoints)}
    long = long.sort_values(
        ["measure", "subject", "timepoint"],
        key=lambda s: s.map(order) if s.name == "timepoint" else s,
    )
    return long.reset_index(drop=True)


def score_changes(scores: pd.DataFrame, timepoints: list[str], patient: str) -> pd.DataFrame:
    """Per patient, signature and method: the score at each timepoint and its change."""
    baseline = timepoints[0]
    patients = scores[scores["group"] == patient]
    keys = ["subject", "signature", "method"]
    base = patients[patients["timepoint"] == baseline].set_index(keys)["score"]
    out = patients[keys + ["timepoint", "score"]].copy()
    out["baseline_score"] = base.reindex(pd.MultiIndex.from_frame(out[keys])).to_numpy()
    out["change"] = out["score"] - out["baseline_score"]
    return out.reset_index(drop=True)


def paired_tests(changes: pd.DataFrame, timepoints: list[str]) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each follow-up score against baseline.

    The effect size is the matched-pairs rank-biserial correlation (Kerby 2014):
    (sum of positive ranks - sum of negative ranks) / total rank sum, from -1 (every
    subject falls) to 1 (every subject rises).
    """
    rows = []
    for (signature, method), group in changes.groupby(["signature", "method"], sort=True):
        for timepoint in timepoints[1:]:
            pairs = group[(group["timepoint"] == timepoint)].dropna(
                subset=["score", "baseline_score"]
            )
            diff = pairs["change"].to_numpy()
            row = {
                "signature": signature,
                "method": method,
                "timepoint": timepoint,
                "reference": timepoints[0],
                "n": len(diff),
                "median_baseline": pairs["baseline_score"].median(),
                "median_followup": pairs["score"].median(),
                "estimate": np.median(diff) if len(diff) else np.nan,
                "effect_size": np.nan,
                "statistic": np.nan,
                "pvalue": np.nan,
            }
            nonzero = diff[diff != 0]
            if len(nonzero) >= 2:
                test = stats.wilcoxon(diff, zero_method="wilcox")
                ranks = stats.rankdata(np.abs(nonzero))
                positive = ranks[nonzero > 0].sum()
                negative = ranks[nonzero < 0].sum()
                row.update(
                    statistic=float(test.statistic),
                    pvalue=float(test.pvalue),
                    effect_size=(positive - negative) / ranks.sum(),
                )
            rows.append(row)
    table = pd.DataFrame(rows)
    table["qvalue"] = bh(table["pvalue"])
    return table


def change_correlations(
    score_change: pd.DataFrame, measure_change: pd.DataFrame, timepoints: list[str]
) -> pd.DataFrame:
    """Spearman correlation of score change with each measure's change, per timepoint.

    BH q-values are computed across all signatures x methods x measures x timepoints.
    """
    scores = score_change[score_change["timepoint"] != timepoints[0]]
    measures = measure_change[measure_change["timepoint"] != timepoints[0]]
    merged = scores.merge(
        measures[["subject", "timepoint", "measure", "change", "improvement"]],
        on=["subject", "timepoint"],
        suffixes=("_score", "_measure"),
    )
    rows = []
    for (signature, method, timepoint, measure), group in merged.groupby(
        ["signature", "method", "timepoint", "measure"], sort=True
    ):
        pairs = group.dropna(subset=["change_score", "change_measure"])
        row = {
            "signature": signature,
            "method": method,
            "timepoint": timepoint,
            "measure": measure,
            "n": len(pairs),
            "estimate": np.nan,
            "pvalue": np.nan,
        }
        if (
            len(pairs) >= 4
            and pairs["change_score"].nunique() > 1
            and pairs["change_measure"].nunique() > 1
        ):
            rho, p = stats.spearmanr(pairs["change_score"], pairs["change_measure"])
            row.update(estimate=float(rho), pvalue=float(p))
        rows.append(row)
    table = pd.DataFrame(rows)
    order = {tp: i for i, tp in enumerate(timepoints)}
    table["qvalue"] = bh(table["pvalue"])
    table["_t"] = table["timepoint"].map(order)
    return (
        table.sort_values(["signature", "method", "_t", "measure"])
        .drop(columns="_t")
        .reset_index(drop=True)
    )
