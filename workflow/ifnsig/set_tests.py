"""Gene-set tests that respect the correlation between genes: the set tested as one variable.

Prerank GSEA permutes gene labels, which treats the genes of a set as independent. The genes
of an IFN set are strongly correlated (they move together from person to person and from
visit to visit), so a set of them reaches a small p-value under gene permutation even when
nothing changed between the conditions compared: on demo-shaped cohorts with nothing planted
over time, prerank put an IFN set at FDR < 0.05 in most null contrasts (README, Calibration).
Tests that permute or rotate samples instead keep the genes of each sample together, so the
correlation between genes enters the null distribution (Goeman & Buehlmann, Bioinformatics
2007; Wu et al., ROAST, Bioinformatics 2010; Wu & Smyth, CAMERA, Nucleic Acids Res 2012).

Here each set is summarised per sample by its **set score**, the mean VST value of its genes,
and the score is compared between the contrast's samples with a permutation scheme that
respects the design; every set uses the same permutations. These are self-contained tests
(does the set's expression change?), as ROAST and fry are, not competitive ones (does it
change more than other genes?). With two levels per subject the test is fry's directional
test with ``standardize = "none"`` (the t-statistic of the set mean's change; Giner & Smyth
2016, limma ``fry``), its p-value taken from sign flips of the subjects' changes rather than
from the t distribution, so it needs neither normality nor equal variances across genes.

Kinds of comparison (:data:`METHODS`), one per kind of DE table:

``sign_flip`` (a paired contrast; the change within one group of a differential response)
    Per subject, the change of the set score from the reference to the test level. Under no
    change the two visits of a subject are exchangeable, so each change is as likely to have
    either sign: the p-value counts the sign patterns whose mean change is at least as far
    from 0 as the observed one, over all ``2^n`` patterns when that is no more than the
    permutations asked for (exact), else over random ones.
``label_permutation`` (an unpaired contrast: responders vs non-responders at baseline)
    Welch's t of the set score between the two levels, the labels permuted (exactly, over
    every split, when there are few). A label constant within subjects (a response call, a
    drug) is permuted between subjects, a subject's samples averaged first; a label that
    varies within subjects in an unpaired design is permuted between samples, which treats
    them as independent, as the unpaired DE design does. Studentizing keeps the test
    asymptotically valid when the two groups' variances differ (Janssen, Stat Probab Lett
    1997; Chung & Romano, Ann Stat 2013).
``group_permutation`` (a differential response: the change in one group minus the other)
    Per subject, the change of the set score; Welch's t between the two groups, the group
    labels permuted between subjects.
``within_subject_permutation`` (a paired LRT: any change over the levels)
    Scores centred on each subject's mean; the statistic is the between-level sum of squares
    of the centred scores, reported as an F ratio; levels permuted within each subject.
``level_permutation`` (an unpaired LRT)
    The one-way between-level sum of squares (as an F ratio), labels permuted as for
    ``label_permutation``.
``trajectory_permutation`` (an LRT of a differential response: do the trajectories differ)
    Per subject with every level, the scores centred on the subject's mean (its trajectory);
    the statistic is the between-group sum of squares of the trajectories (as an F ratio),
    group labels permuted between subjects.

``estimate`` is in log2 units of the VST: the mean change of the set score (test minus
reference), the difference of the two levels' means, or the difference of the two groups'
mean changes; for an LRT, as the DE table's log2FoldChange, the reported level against the
reference. ``direction`` is ``up`` or ``down`` by its sign. A Monte Carlo p-value is
``(1 + b) / (1 + B)`` for ``b`` of ``B`` random arrangements at least as extreme (Phipson &
Smyth, Stat Appl Genet Mol Biol 2010), never 0; ``fdr`` is Benjamini-Hochberg over the sets.
Covariates of the DE design are not adjusted for.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ifnsig.de.plan import RESPONDER, Contrast, reported_level
from ifnsig.stats import bh

log = logging.getLogger(__name__)

SET_TEST_COLUMNS = [
    "gene_set",
    "n_genes",
    "n",
    "direction",
    "estimate",
    "statistic",
    "pvalue",
    "fdr",
    "method",
    "exact",
    "arrangements",
    "note",
]
METHODS = {
    "sign_flip": "paired: sign flips of the subjects' changes of the set score",
    "label_permutation": "two levels, unpaired: Welch t of the set score, labels permuted",
    "group_permutation": "differential response: Welch t of the changes, groups permuted",
    "within_subject_permutation": "paired LRT: between-level F, levels permuted within subjects",
    "level_permutation": "unpaired LRT: one-way F of the set score, labels permuted",
    "trajectory_permutation": "LRT of a differential response: trajectories, groups permuted",
}
# Sets x arrangements evaluated at once (bounds memory to tens of MB).
CHUNK_CELLS = 4_000_000


# --- set scores --------------------------------------------------------------------------------


def set_scores(
    values: pd.DataFrame,
    symbols: Sequence[str],
    gene_sets: dict[str, list[str]],
    min_size: int = 5,
    max_size: int = 500,
    means: pd.Series | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """The mean of each set's genes per sample (the set score), and each set's gene count.

    Parameters
    ----------
    values
        Samples x genes (VST values).
    symbols
        The symbol of each gene (column). A symbol carried by several genes stands for the one
        with the highest of ``means`` (ties: the first column), a choice that does not
        depend on the contrast's result.
    gene_sets
        Set name -> symbols (already restricted to, and translated into, the data's symbols).
    min_size, max_size
        Sets with fewer or more genes present are left out, as in prerank.
    means
        A value per gene (column) that picks the gene of a shared symbol; the enrichment
        stage gives the DE table's ``baseMean``, so the set tests and prerank use the same
        gene ID per symbol. Default: the mean of ``values``; genes without one come last.
    """
    symbols = pd.Series(list(symbols), index=values.columns, dtype=str)
    if means is None:
        means = values.mean(axis=0)
    means = pd.Series(means, dtype=float).reindex(values.columns)
    order = means.sort_values(ascending=False, kind="mergesort", na_position="last").index
    first = symbols.loc[order].drop_duplicates()
    column_of = pd.Series(first.index, index=first.to_numpy())
    scores, sizes = {}, {}
    for name, genes in gene_sets.items():
        present = list(dict.fromkeys(g for g in genes if g in column_of.index))
        if not min_size <= len(present) <= max_size:
            continue
        scores[name] = values[column_of.loc[present].to_numpy()].mean(axis=1)
        sizes[name] = len(present)
    frame = pd.DataFrame(scores, index=values.index)
    return frame, pd.Series(sizes, dtype=int, name="n_genes")


# --- the comparison a DE table makes -----------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """What one DE table compares, in the terms the set tests need.

    ``frame`` has one row per sample used: ``sample``, ``subject``, ``level`` (the compared
    level) and, for a differential response, ``group``. ``kind`` is a key of :data:`METHODS`.
    """

    kind: str
    frame: pd.DataFrame
    test: str
    reference: str
    group_test: str | None = None
    group_reference: str | None = None
    note: str = ""


def comparison_for(
    contrast: Contrast,
    within_group: str | None,
    fitted: pd.DataFrame,
    timepoints: list[str],
) -> Comparison:
    """The comparison of a DE table from its contrast and its fitted samples.

    Parameters
    ----------
    contrast, within_group
        The table's contrast and, for ``<name>.within_<group>``, the group
        (:func:`ifnsig.de.plan.table_contrasts`).
    fitted
        The table's ``<table>.samples.tsv`` (:func:`ifnsig.de.plan.fitted_samples`).
    timepoints
        The configured timepoints (order of an LRT's levels).
    """
    level_column = "response" if contrast.response is not None else contrast.variable
    frame = pd.DataFrame(
        {
            "sample": fitted["sample"].astype(str).to_numpy(),
            "subject": fitted["subject"].astype(str).to_numpy(),
            "level": fitted[level_column].astype(str).to_numpy(),
        }
    )
    groups = contrast.between
    if groups is not None:
        frame["group"] = fitted[groups.label].astype(str).to_numpy()
    levels = sorted(set(frame["level"]))
    test = contrast.test
    if contrast.lrt:
        test = reported_level(contrast, levels, timepoints)
    elif test is None:  # pragma: no cover - planned contrasts always have one
        test = RESPONDER
    kinds = {"paired": "sign_flip", "unpaired": "label_permutation"}
    if contrast.lrt:
        kinds = {"paired": "within_subject_permutation", "unpaired": "level_permutation"}
    if groups is not None and within_group is not None:
        frame = frame[frame["group"] == within_group].drop(columns="group")
        kind = "sign_flip"
    elif groups is not None:
        kind = "trajectory_permutation" if contrast.lrt else "group_permutation"
    else:
        kind = kinds["paired" if contrast.paired else "unpaired"]
    if not contrast.lrt:
        frame = frame[frame["level"].isin([test, contrast.reference])]
    return Comparison(
        kind=kind,
        frame=frame.reset_index(drop=True),
        test=str(test),
        reference=str(contrast.reference),
        group_test=None if groups is None else groups.test,
        group_reference=None if groups is None else groups.reference,
    )


# --- the tests ---------------------------------------------------------------------------------


def set_tests(
    scores: pd.DataFrame,
    n_genes: pd.Series,
    comparison: Comparison,
    permutations: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """Test every set score for the comparison; one row per set (:data:`SET_TEST_COLUMNS`).

    Parameters
    ----------
    scores
        Samples x sets (:func:`set_scores`); must hold every sample of the comparison.
    n_genes
        Genes per set.
    comparison
        What is compared (:func:`comparison_for`).
    permutations
        Random arrangements when the exact distribution has more than ``permutations + 1``.
    seed
        Seed of the random arrangements; all sets share them.
    """
    if scores.shape[1] == 0:
        return pd.DataFrame(columns=SET_TEST_COLUMNS)
    rng = np.random.default_rng(seed)
    frame = comparison.frame
    y = scores.loc[frame["sample"]].to_numpy(float).T  # sets x samples
    tester = {
        "sign_flip": _paired,
        "label_permutation": _two_levels,
        "group_permutation": _changes_between_groups,
        "within_subject_permutation": _levels_within_subjects,
        "level_permutation": _levels_between_units,
        "trajectory_permutation": _trajectories_between_groups,
    }[comparison.kind]
    result = tester(y, comparison, permutations, rng)
    table = pd.DataFrame(
        {
            "gene_set": scores.columns,
            "n_genes": n_genes.reindex(scores.columns).to_numpy(),
            "n": result.n,
            "direction": np.where(
                np.isnan(result.estimate), "", np.where(result.estimate < 0, "down", "up")
            ),
            "estimate": result.estimate,
            "statistic": result.statistic,
            "pvalue": result.pvalue,
            "method": comparison.kind,
            "exact": result.exact,
            "arrangements": result.arrangements,
            "note": result.note or comparison.note,
        }
    )
    table["fdr"] = bh(table["pvalue"])
    table = table[SET_TEST_COLUMNS].sort_values(["pvalue", "gene_set"], kind="mergesort")
    return table.reset_index(drop=True)


@dataclass
class _Result:
    n: int
    estimate: np.ndarray
    statistic: np.ndarray
    pvalue: np.ndarray
    exact: bool
    arrangements: int
    note: str = ""


def _empty(n_sets: int, n: int, note: str) -> _Result:
    nan = np.full(n_sets, np.nan)
    return _Result(n, nan, nan.copy(), nan.copy(), False, 0, note)


def _mean_by(y: np.ndarray, keys: pd.Series) -> tuple[np.ndarray, list]:
    """Columns of ``y`` (sets x samples) averaged by ``keys``; returns the means and the keys."""
    codes, uniques = pd.factorize(keys, sort=True)
    sums = np.zeros((y.shape[0], len(uniques)))
    np.add.at(sums.T, codes, y.T)
    return sums / np.bincount(codes)[None, :], list(uniques)


def _changes(y: np.ndarray, frame: pd.DataFrame, test: str, reference: str):
    """Per subject with both levels: score at ``test`` minus score at ``reference``."""
    keys = frame["subject"] + "\t" + frame["level"]
    means, names = _mean_by(y, keys)
    at = dict(zip(names, range(len(names)), strict=True))
    subjects = [
        s
        for s in sorted(set(frame["subject"]))
        if f"{s}\t{test}" in at and f"{s}\t{reference}" in at
    ]
    changes = np.stack(
        [means[:, at[f"{s}\t{test}"]] - means[:, at[f"{s}\t{reference}"]] for s in subjects],
        axis=1,
    ) if subjects else np.empty((y.shape[0], 0))  # fmt: skip
    return changes, subjects


def _paired(y, comparison: Comparison, permutations: int, rng) -> _Result:
    changes, subjects = _changes(y, comparison.frame, comparison.test, comparison.reference)
    n = len(subjects)
    if n < 2:
        return _empty(y.shape[0], n, "fewer than 2 subjects with both levels")
    pvalue, exact, arrangements = sign_flip_pvalues(changes, permutations, rng)
    mean = changes.mean(axis=1)
    sd = changes.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = mean / (sd / math.sqrt(n))
    return _Result(n, mean, statistic, pvalue, exact, arrangements)


def sign_flip_pvalues(
    changes: np.ndarray, permutations: int, rng: np.random.Generator
) -> tuple[np.ndarray, bool, int]:
    """Two-sided sign-flip p-values of the mean of each row of ``changes`` (sets x subjects).

    Exact (every one of the ``2^n`` sign patterns, the observed one included) when
    ``2^n <= permutations + 1``; otherwise ``(1 + b) / (1 + permutations)`` over random
    patterns. Returns the p-values, whether they are exact and the patterns used.
    """
    n_sets, n = changes.shape
    observed = np.abs(changes.mean(axis=1))
    # Patterns whose mean equals the observed one up to rounding count as extreme.
    tolerance = 1e-9 * (np.abs(changes).mean(axis=1) + 1e-300)
    exact = 2**n <= permutations + 1
    total = 2**n if exact else permutations
    hits = np.zeros(n_sets)
    step = max(1, CHUNK_CELLS // max(n_sets, 1))
    bits = np.arange(n)
    for start in range(0, total, step):
        stop = min(start + step, total)
        if exact:
            codes = np.arange(start, stop, dtype=np.int64)[:, None]
            signs = 1.0 - 2.0 * ((codes >> bits) & 1)
        else:
            signs = rng.choice(np.array([-1.0, 1.0]), size=(stop - start, n))
        means = np.abs(changes @ signs.T) / n
        hits += (means >= (observed - tolerance)[:, None]).sum(axis=1)
    pvalue = hits / total if exact else (1.0 + hits) / (1.0 + total)
    return pvalue, exact, total


def _units(frame: pd.DataFrame, column: str) -> tuple[pd.Series, str]:
    """The units labels are permuted between: subjects when ``column`` is constant within
    every subject, else samples (with a note)."""
    if (frame.groupby("subject")[column].nunique() <= 1).all():
        return frame["subject"], ""
    note = "levels vary within subjects in an unpaired design: samples permuted as independent"
    return frame["sample"], note


def _two_levels(y, comparison: Comparison, permutations: int, rng) -> _Result:
    frame = comparison.frame
    units, note = _units(frame, "level")
    means, names = _mean_by(y, units)
    level = frame.groupby(units.to_numpy())["level"].first().loc[names].to_numpy()
    in_test = level == comparison.test
    result = two_group_test(means, in_test, permutations, rng)
    result.note = note
    return result


def _changes_between_groups(y, comparison: Comparison, permutations: int, rng) -> _Result:
    frame = comparison.frame
    changes, subjects = _changes(y, frame, comparison.test, comparison.reference)
    group = frame.groupby("subject")["group"].first().loc[subjects].to_numpy()
    return two_group_test(changes, group == comparison.group_test, permutations, rng)


def two_group_test(
    values: np.ndarray, in_test: np.ndarray, permutations: int, rng: np.random.Generator
) -> _Result:
    """Welch's t between the units in and out of the test group, labels permuted.

    Exact over every split of the units into groups of the observed sizes when there are no
    more than ``permutations + 1`` of them.
    """
    n_sets, n = values.shape
    k = int(in_test.sum())
    if k < 2 or n - k < 2:
        return _empty(n_sets, n, "fewer than 2 units in a level")
    values = values - values.mean(axis=1, keepdims=True)
    estimate = values[:, in_test].mean(axis=1) - values[:, ~in_test].mean(axis=1)
    observed = np.abs(_welch(values, in_test[None, :].astype(float)))[:, 0]
    splits = math.comb(n, k)
    exact = splits <= permutations + 1
    total = splits if exact else permutations
    combinations = itertools.combinations(range(n), k) if exact else None
    hits = np.zeros(n_sets)
    step = max(1, CHUNK_CELLS // max(n_sets * n, 1))
    for start in range(0, total, step):
        size = min(step, total - start)
        if exact:
            labels = np.zeros((size, n))
            for row, chosen in enumerate(itertools.islice(combinations, size)):
                labels[row, list(chosen)] = 1.0
        else:
            labels = rng.permuted(np.tile(in_test.astype(float), (size, 1)), axis=1)
        t = np.abs(_welch(values, labels))
        hits += (t >= observed[:, None] * (1 - 1e-9)).sum(axis=1)
    pvalue = hits / total if exact else (1.0 + hits) / (1.0 + total)
    statistic = _welch(values, in_test[None, :].astype(float))[:, 0]
    return _Result(n, estimate, statistic, pvalue, exact, total)


def _welch(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Welch's t (test minus reference) for every row of ``values`` x row of ``labels``."""
    n1 = labels.sum(axis=1)[None, :]
    n0 = labels.shape[1] - n1
    s1 = values @ labels.T
    q1 = (values**2) @ labels.T
    s = values.sum(axis=1, keepdims=True)
    q = (values**2).sum(axis=1, keepdims=True)
    s0, q0 = s - s1, q - q1
    m1, m0 = s1 / n1, s0 / n0
    v1 = np.maximum(q1 - n1 * m1**2, 0.0) / (n1 - 1)
    v0 = np.maximum(q0 - n0 * m0**2, 0.0) / (n0 - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (m1 - m0) / np.sqrt(v1 / n1 + v0 / n0)


def _levels_within_subjects(y, comparison: Comparison, permutations: int, rng) -> _Result:
    frame = comparison.frame
    codes, _ = pd.factorize(frame["subject"], sort=True)
    blocks = [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]
    blocks = [b for b in blocks if len(b) > 1]
    used = np.sort(np.concatenate(blocks)) if blocks else np.array([], int)
    if len(blocks) < 2:
        return _empty(y.shape[0], len(blocks), "fewer than 2 subjects with repeated samples")
    sub = frame.iloc[used].reset_index(drop=True)
    values = y[:, used]
    codes = pd.factorize(sub["subject"], sort=True)[0]
    centred = values - _mean_by(values, sub["subject"])[0][:, codes]
    blocks = [np.flatnonzero(codes == b) for b in range(codes.max() + 1)]
    n_params = len(blocks) + sub["level"].nunique() - 1
    result = _between_levels(centred, sub["level"], blocks, n_params, permutations, rng)
    changes, subjects = _changes(y, frame, comparison.test, comparison.reference)
    result.estimate = changes.mean(axis=1) if subjects else np.full(y.shape[0], np.nan)
    result.n = len(blocks)
    return result


def _levels_between_units(y, comparison: Comparison, permutations: int, rng) -> _Result:
    frame = comparison.frame
    units, note = _units(frame, "level")
    means, names = _mean_by(y, units)
    level = pd.Series(frame.groupby(units.to_numpy())["level"].first().loc[names].to_numpy())
    centred = means - means.mean(axis=1, keepdims=True)
    result = _between_levels(
        centred, level, [np.arange(len(names))], level.nunique(), permutations, rng
    )
    in_test, in_reference = (
        (level == comparison.test).to_numpy(),
        (level == comparison.reference).to_numpy(),
    )
    result.estimate = means[:, in_test].mean(axis=1) - means[:, in_reference].mean(axis=1)
    result.n, result.note = len(names), note
    return result


def _between_levels(
    centred: np.ndarray,
    level: pd.Series,
    blocks: list[np.ndarray],
    n_params: int,
    permutations: int,
    rng: np.random.Generator,
) -> _Result:
    """Between-level sum of squares of ``centred`` (sets x units, centred within blocks),
    levels permuted within blocks; reported as an F ratio.

    Within-block permutations leave each block's centred values, and so the total sum of
    squares, unchanged: the F ratio is a monotone function of the between-level sum of
    squares, and testing either is the same test.
    """
    n_sets, n = centred.shape
    codes, uniques = pd.factorize(level, sort=True)
    n_levels = len(uniques)
    if n_levels < 2 or n - n_params < 1:
        return _empty(n_sets, n, "too few samples for the levels compared")
    indicator = np.eye(n_levels)[codes]  # units x levels
    sizes = indicator.sum(axis=0)

    def between(data: np.ndarray) -> np.ndarray:  # data: sets x arrangements x units
        sums = data @ indicator
        return (sums**2 / sizes).sum(axis=-1)

    observed = between(centred[:, None, :])[:, 0]
    total_ss = (centred**2).sum(axis=1)
    hits = np.zeros(n_sets)
    step = max(1, CHUNK_CELLS // max(n_sets * n, 1))
    for start in range(0, permutations, step):
        size = min(step, permutations - start)
        order = np.tile(np.arange(n), (size, 1))
        for block in blocks:
            order[:, block] = block[rng.permuted(np.tile(np.arange(len(block)), (size, 1)), axis=1)]
        hits += (between(centred[:, order]) >= observed[:, None] * (1 - 1e-9)).sum(axis=1)
    pvalue = (1.0 + hits) / (1.0 + permutations)
    df_between, df_within = n_levels - 1, n - n_params
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = (observed / df_between) / ((total_ss - observed) / df_within)
    return _Result(n, np.full(n_sets, np.nan), statistic, pvalue, False, permutations)


def _trajectories_between_groups(y, comparison: Comparison, permutations: int, rng) -> _Result:
    frame = comparison.frame
    levels = sorted(set(frame["level"]))
    keys = frame["subject"] + "\t" + frame["level"]
    means, names = _mean_by(y, keys)
    at = dict(zip(names, range(len(names)), strict=True))
    subjects = [
        s for s in sorted(set(frame["subject"])) if all(f"{s}\t{lv}" in at for lv in levels)
    ]
    n_sets = y.shape[0]
    group = frame.groupby("subject")["group"].first()
    in_test = (group.loc[subjects] == comparison.group_test).to_numpy()
    if in_test.sum() < 2 or (~in_test).sum() < 2:
        return _empty(n_sets, len(subjects), "fewer than 2 subjects with every level in a group")
    # sets x subjects x levels, centred on each subject's mean, then on the mean trajectory.
    paths = np.stack(
        [np.stack([means[:, at[f"{s}\t{lv}"]] for lv in levels], axis=1) for s in subjects],
        axis=1,
    )
    paths = paths - paths.mean(axis=2, keepdims=True)
    paths = paths - paths.mean(axis=1, keepdims=True)
    n, k = len(subjects), int(in_test.sum())
    factor = 1.0 / k + 1.0 / (n - k)

    def between(labels: np.ndarray) -> np.ndarray:  # labels: arrangements x subjects
        sums = np.einsum("sul,au->sal", paths, labels)
        return (sums**2).sum(axis=-1) * factor

    observed = between(in_test[None, :].astype(float))[:, 0]
    total_ss = (paths**2).sum(axis=(1, 2))
    hits = np.zeros(n_sets)
    step = max(1, CHUNK_CELLS // max(n_sets * n * len(levels), 1))
    for start in range(0, permutations, step):
        size = min(step, permutations - start)
        labels = rng.permuted(np.tile(in_test.astype(float), (size, 1)), axis=1)
        hits += (between(labels) >= observed[:, None] * (1 - 1e-9)).sum(axis=1)
    pvalue = (1.0 + hits) / (1.0 + permutations)
    df_between, df_within = len(levels) - 1, (n - 2) * (len(levels) - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = (observed / df_between) / ((total_ss - observed) / df_within)
    change = np.stack(
        [
            means[:, at[f"{s}\t{comparison.test}"]] - means[:, at[f"{s}\t{comparison.reference}"]]
            for s in subjects
        ],
        axis=1,
    )
    estimate = change[:, in_test].mean(axis=1) - change[:, ~in_test].mean(axis=1)
    return _Result(n, estimate, statistic, pvalue, False, permutations)
