"""Statistics shared by the stages: multiple testing, bootstrap intervals, ROC AUC.

Every function is small and vectorized where it pays; the clinical linkage and the QC
stage use the same Benjamini-Hochberg and the same per-row seeding.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats


def bh(pvalues: pd.Series) -> np.ndarray:
    """Benjamini-Hochberg q-values; missing p-values stay missing."""
    # Imported here: statsmodels (and the polars it loads) costs every job a second.
    from statsmodels.stats.multitest import multipletests

    p = pd.to_numeric(pvalues, errors="coerce").to_numpy(dtype=float)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return q


def bh_within(table: pd.DataFrame, by: list[str]) -> np.ndarray:
    q = np.full(len(table), np.nan)
    if table.empty:
        return q
    for _, index in table.groupby(by, sort=False).groups.items():
        positions = table.index.get_indexer(index)
        q[positions] = bh(table["pvalue"].iloc[positions])
    return q


def row_rng(seed: int, *key: object) -> np.random.Generator:
    """Generator seeded by the run's seed and the row's key.

    Each row's bootstrap then depends only on the seed and its own data, not on how many
    other signatures, measures or timepoints are analysed before it.
    """
    digest = zlib.crc32("\t".join(str(k) for k in key).encode())
    return np.random.default_rng([seed, digest])


def bootstrap_ci(
    data: tuple[np.ndarray, ...],
    statistic: Callable,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
    paired: bool = False,
) -> tuple[float, float]:
    """BCa bootstrap interval (scipy.stats.bootstrap; Efron 1987); NaN when not computable."""
    if n_resamples <= 0 or len(data[0]) < 3:
        return np.nan, np.nan
    result = stats.bootstrap(
        data,
        statistic,
        n_resamples=n_resamples,
        vectorized=True,
        paired=paired,
        confidence_level=confidence,
        method="BCa",
        rng=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def spearman_rho(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along ``axis`` (Pearson correlation of mid-ranks), vectorized."""
    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=axis) / np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))


def auc_delong(
    positive: np.ndarray, negative: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """ROC AUC with DeLong's confidence interval.

    AUC is P(value of a responder > value of a non-responder) + P(tie) / 2, the
    Mann-Whitney U divided by n1 * n0; its variance comes from the structural components
    of DeLong, DeLong & Clarke-Pearson (Biometrics 1988), as pROC's default ``ci.auc``.
    The interval is clipped to [0, 1].
    """
    x = np.asarray(positive, dtype=float)[:, None]
    y = np.asarray(negative, dtype=float)[None, :]
    psi = (x > y) + 0.5 * (x == y)
    auc = float(psi.mean())
    m, n = psi.shape
    if m < 2 or n < 2:
        return auc, np.nan, np.nan
    variance = psi.mean(axis=1).var(ddof=1) / m + psi.mean(axis=0).var(ddof=1) / n
    half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(variance)
    return auc, max(0.0, auc - half), min(1.0, auc + half)
