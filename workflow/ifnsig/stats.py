"""Statistics shared by the stages: multiple testing, bootstrap intervals, ROC AUC.

Every function is small and vectorized where it pays; the clinical linkage and the QC
stage use the same Benjamini-Hochberg and the same per-row seeding.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from ifnsig.lazy import lazy_module

# The workflow imports this module when it parses the Snakefile: scipy.stats on first use.
stats = lazy_module("scipy.stats")
log = logging.getLogger(__name__)
#: Fewest subjects (or pairs) a bootstrap interval is computed from.
BOOTSTRAP_MIN_N = 3
# Reasons an interval was left empty, each logged once per process (a job is a process).
_EMPTY_INTERVAL_REASONS: set[str] = set()


def new_job() -> None:
    """Log the reasons for empty intervals afresh, as a new job's process would (for stages
    run one after another in one process, as the tests do)."""
    _EMPTY_INTERVAL_REASONS.clear()


def _left_empty(reason: str) -> tuple[float, float]:
    if reason not in _EMPTY_INTERVAL_REASONS:
        _EMPTY_INTERVAL_REASONS.add(reason)
        log.info("bootstrap interval %s; left empty (this and any other such interval)", reason)
    return np.nan, np.nan


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


#: Values (resamples x observations) scipy's bootstrap holds per batch at most: the
#: resamples and the jackknife (n x n - 1 values) are then made a batch at a time.
BOOTSTRAP_BATCH_VALUES = 2_000_000


def bootstrap_ci(
    data: tuple[np.ndarray, ...],
    statistic: Callable,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
    paired: bool = False,
) -> tuple[float, float]:
    """BCa bootstrap interval (scipy.stats.bootstrap; Efron 1987); NaN when not computable.

    scipy's ``batch`` keeps memory linear in the observations (batches of
    :data:`BOOTSTRAP_BATCH_VALUES` values; the random draws and the interval do not depend
    on it). Spearman's rho is bootstrapped from the observations' ranks among the distinct
    values (:func:`codes_spearman`), which gives each resample's mid-ranks by counting
    rather than sorting: the same values as :func:`spearman_rho` of the resampled data.

    Not computed, with one log line saying why, below :data:`BOOTSTRAP_MIN_N` observations
    or when the statistic does not vary between the jackknife samples (degenerate data, as
    when every one of a handful of subjects changes the same way): BCa's acceleration is
    then 0 / 0, and scipy would warn and return NaN.
    """
    if n_resamples <= 0:
        return np.nan, np.nan
    n = len(data[0])
    if n < BOOTSTRAP_MIN_N:
        return _left_empty(f"needs >= {BOOTSTRAP_MIN_N} subjects, {n} here")
    if statistic is spearman_rho and len(data) == 2:
        codes = [_dense_codes(np.asarray(d, dtype=float)) for d in data]
        data = tuple(code for code, _ in codes)
        statistic = codes_spearman(*(n_distinct for _, n_distinct in codes))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.bootstrap(
            data,
            statistic,
            n_resamples=n_resamples,
            batch=max(1, BOOTSTRAP_BATCH_VALUES // n),
            vectorized=True,
            paired=paired,
            confidence_level=confidence,
            method="BCa",
            rng=rng,
        )
    degenerate = any(issubclass(w.category, stats.DegenerateDataWarning) for w in caught)
    for warning in caught:
        # The 0 / 0 of the acceleration comes with the degenerate-data warning.
        explained = issubclass(warning.category, stats.DegenerateDataWarning) or (
            "_resampling" in warning.filename
        )
        if not (degenerate and explained):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if degenerate:
        return _left_empty(
            f"not computable from {n} subjects: the statistic does not vary "
            "between the jackknife samples, so BCa's acceleration is undefined"
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _dense_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Each value's position among the distinct values, and how many distinct values."""
    distinct, codes = np.unique(values, return_inverse=True)
    return codes.ravel(), len(distinct)


def codes_ranks(codes: np.ndarray, n_distinct: int) -> np.ndarray:
    """Mid-ranks along the last axis of values given by their dense codes.

    A value's mid-rank in its row is the count of the row's smaller values plus half of
    (1 + the count of its equal values): cumulative counts of the codes give it without
    sorting, exactly (half-integers), the same as ``scipy.stats.rankdata(values,
    axis=-1)``.
    """
    codes = np.asarray(codes).astype(np.intp, copy=False)
    rows = codes.reshape(-1, codes.shape[-1])
    flat = (rows + np.arange(rows.shape[0])[:, None] * n_distinct).ravel()
    counts = np.bincount(flat, minlength=rows.shape[0] * n_distinct)
    cumulative = counts.reshape(rows.shape[0], n_distinct).cumsum(axis=1).ravel()
    return (cumulative - (counts - 1) / 2)[flat].reshape(codes.shape)


def codes_spearman(x_distinct: int, y_distinct: int) -> Callable:
    """Spearman's rho of two samples given as dense codes (:func:`codes_ranks`)."""

    def rho(x_codes: np.ndarray, y_codes: np.ndarray, axis: int = -1) -> np.ndarray:
        x, y = np.moveaxis(x_codes, axis, -1), np.moveaxis(y_codes, axis, -1)
        return _pearson(codes_ranks(x, x_distinct), codes_ranks(y, y_distinct))

    return rho


def spearman_rho(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along ``axis`` (Pearson correlation of mid-ranks), vectorized."""
    return _pearson(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis)


def _pearson(rx: np.ndarray, ry: np.ndarray, axis: int = -1) -> np.ndarray:
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


# --- Hodges-Lehmann estimators with distribution-free intervals ------------------------------
# Exact null distributions are used, as R's wilcox.test(conf.int = TRUE) does, below this
# many observations (per group for two samples) and without ties; above it, or with ties,
# the critical order statistic comes from the normal approximation of the rank statistic
# (Hollander, Wolfe & Chicken, Nonparametric Statistical Methods, 3rd ed., 2014, sections
# 3.3 and 4.3).
EXACT_BELOW = 50


@functools.lru_cache(maxsize=64)
def _signrank_counts(n: int) -> np.ndarray:
    """Number of sign patterns of n ranks giving each signed-rank sum V = 0..n(n+1)/2."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return counts


@functools.lru_cache(maxsize=64)
def _ranksum_counts(m: int, n: int) -> np.ndarray:
    """Number of rank arrangements giving each Mann-Whitney U = 0..m*n (Gaussian binomial)."""
    # f[i][j][u] via the recursion f(m, n) = f(m - 1, n)[u - n] + f(m, n - 1)[u].
    table = [[None] * (n + 1) for _ in range(m + 1)]
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                counts = np.zeros(i * j + 1)
                counts[0] = 1.0
            else:
                counts = np.zeros(i * j + 1)
                left = table[i - 1][j]
                counts[j : j + len(left)] += left
                up = table[i][j - 1]
                counts[: len(up)] += up
            table[i][j] = counts
    return table[m][n]


def _lower_quantile(counts: np.ndarray, alpha: float) -> int:
    """R's ``qsignrank`` / ``qwilcox`` at ``alpha / 2``: the smallest q with P(S <= q) >= p."""
    cdf = np.cumsum(counts) / counts.sum()
    return int(np.searchsorted(cdf, alpha / 2 - 1e-12, side="left"))


def _critical_index(
    total: int, mean: float, sd: float, confidence: float, exact_counts: np.ndarray | None
) -> tuple[int, int]:
    """1-based positions (lower, upper) of the interval among ``total`` sorted values."""
    alpha = 1 - confidence
    if exact_counts is not None:
        q = max(_lower_quantile(exact_counts, alpha), 1)
        return q, total - q + 1
    z = stats.norm.ppf(1 - alpha / 2)
    q = max(int(math.floor(mean - z * sd)), 1)
    return q, total - q + 1


def hodges_lehmann_one_sample(
    x: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Pseudomedian of ``x`` (median of the Walsh averages) with its Wilcoxon interval.

    The estimator and interval that go with the signed-rank test (Hodges & Lehmann, Ann Math
    Stat 1963): the interval runs between the q-th smallest and the q-th largest Walsh
    average, q the lower critical value of the signed-rank sum; exact below ``EXACT_BELOW``
    observations without ties or zeros (R's ``wilcox.test(x, conf.int = TRUE)`` gives the
    same numbers), the normal approximation otherwise. NaN with fewer than 2 values.
    """
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n < 2:
        return (float(x[0]) if n else np.nan), np.nan, np.nan
    i, j = np.triu_indices(n)
    walsh = np.sort((x[i] + x[j]) / 2)
    estimate = float(np.median(walsh))
    total = len(walsh)
    tied = len(np.unique(np.abs(x))) < n or (x == 0).any()
    counts = _signrank_counts(n) if n < EXACT_BELOW and not tied else None
    mean = n * (n + 1) / 4
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    low, high = _critical_index(total, mean, sd, confidence, counts)
    return estimate, float(walsh[low - 1]), float(walsh[high - 1])


def hodges_lehmann_shift(
    x: np.ndarray, y: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Hodges-Lehmann shift ``x - y`` (median of all pairwise differences) with its interval.

    The estimator and interval that go with the Mann-Whitney test (Hodges & Lehmann 1963;
    Bauer, J Am Stat Assoc 1972): the interval runs between the q-th smallest and the q-th
    largest pairwise difference, q the lower critical value of U; exact below
    ``EXACT_BELOW`` per group without ties (R's ``wilcox.test(x, y, conf.int = TRUE)``),
    the normal approximation otherwise. NaN when a group has fewer than 2 values.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return np.nan, np.nan, np.nan
    diffs = np.sort((x[:, None] - y[None, :]).ravel())
    estimate = float(np.median(diffs))
    tied = len(np.unique(np.r_[x, y])) < m + n
    exact = max(m, n) < EXACT_BELOW and not tied
    counts = _ranksum_counts(m, n) if exact else None
    mean = m * n / 2
    sd = math.sqrt(m * n * (m + n + 1) / 12)
    low, high = _critical_index(m * n, mean, sd, confidence, counts)
    return estimate, float(diffs[low - 1]), float(diffs[high - 1])
