"""Interferon scores per sample, positivity against a reference, and how the methods agree.

Every method reads normalized values, never raw counts, so library size cannot move a score.

* ``median_fold_change`` (Rice et al., Lancet Neurol 2013): per gene, the fold change of
  DESeq2-normalized counts against the median of the reference samples; the score is the
  median over the signature's genes.
* ``zscore_sum`` / ``zscore_mean`` (Kirou et al., Arthritis Rheum 2005; Feng et al.,
  Arthritis Rheum 2006; Kim et al., J Interferon Cytokine Res 2018): per gene, the z-score
  of VST values against the reference mean and SD; summed or averaged over genes.
* ``singscore`` (Foroutan et al., BMC Bioinformatics 2018): the mean rank of the
  signature's genes among all genes of the same sample, scaled to its theoretical range and
  centred, so a sample's score depends on that sample alone.
* ``ssgsea`` (Barbie et al., Nature 2009) through :func:`gseapy.ssgsea`: the single-sample
  enrichment score (ES) of the signature in the sample's ranked genes, no permutations.
* ``score_genes`` (Satija et al., Nat Biotechnol 2015) as :func:`scanpy.tl.score_genes`
  computes it: mean VST of the signature's genes minus that of expression-matched control
  genes drawn once, seeded (:func:`score_genes_controls`).
* ``module_activity`` (Chiche et al., Arthritis Rheumatol 2014; the BloodGen3 fingerprint of
  Altman et al., Nat Commun 2021): the percentage of the module's genes whose VST value is
  above the reference mean + 2 reference SDs minus the percentage below mean - 2 SD
  (-100 to 100); :func:`module_activity_table` gives both percentages and
  :func:`active_modules` counts the active modules per sample.

Every reference-based method reads only per-gene statistics of the reference samples
(:class:`ReferenceStatistics`), so a cohort's statistics can be frozen and new samples
scored against them (:mod:`ifnsig.reference`).

A sample is IFN-positive when its score exceeds the reference mean plus ``positivity_sd``
reference SDs (Rice 2013 used mean + 2 SD of healthy controls); the threshold is derived per
signature and method from the cohort's own reference samples, checked against the highest
score the method can reach (:mod:`ifnsig.positivity`), and written next to each score with
the rule that made it.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig import positivity
from ifnsig.lazy import lazy_module
from ifnsig.tables import LIST_SEPARATOR

# Jobs that only read the configured signatures from here: scipy.stats on first use.
stats = lazy_module("scipy.stats")
log = logging.getLogger(__name__)

# Layer each method reads. Within one sample, normalized counts, VST values and raw counts
# have the same gene order (size factors and the blind VST are monotone and shared by all
# genes), so the rank-based methods give the same score on any of them.
METHOD_LAYERS = {
    "median_fold_change": "normalized",
    "zscore_sum": "vst",
    "zscore_mean": "vst",
    "singscore": "normalized",
    "ssgsea": "normalized",
    "score_genes": "vst",
    "module_activity": "vst",
}


def scored_signatures(settings: dict) -> list[str]:
    """The gene sets a run scores: ``scores.signatures``, the type II one if set, then the
    co-expression ``modules``."""
    names = list(settings["signatures"])
    if settings.get("type2_signature"):
        names.append(settings["type2_signature"])
    names.extend(settings.get("modules", []))
    return list(dict.fromkeys(names))


REFERENCE_LABELS = {
    "controls": "healthy controls",
    "baseline": "all baseline samples (no healthy controls)",
}


@dataclass
class ReferenceStatistics:
    """Per-gene statistics of the reference samples: all that the reference-based methods use.

    Arrays are in the gene order of the cohort (``adata.var_names``).

    Attributes
    ----------
    depth_scale
        Geometric mean of the reference samples' size factors (1 without size factors).
        Normalized counts are multiplied by it before the fold change, so the pseudocount
        of 1 means one read at reference depth.
    normalized_median
        Median over the reference samples of normalized counts x ``depth_scale``.
    vst_mean, vst_sd
        Mean and SD (ddof 1) over the reference samples of the VST values.
    n_reference
        Number of reference samples.
    """

    depth_scale: float
    normalized_median: np.ndarray
    vst_mean: np.ndarray
    vst_sd: np.ndarray
    n_reference: int


def reference_statistics(adata: ad.AnnData, reference: np.ndarray) -> ReferenceStatistics:
    """Per-gene reference statistics of a cohort with ``normalized`` and ``vst`` layers."""
    reference = np.asarray(reference, dtype=bool)
    size_factor = adata.obs.get("size_factor")
    # A change in one patient's depth shifts every DESeq2 size factor by the same factor, so
    # values on the reference's depth scale cannot move with it.
    depth_scale = (
        float(np.exp(np.log(size_factor.to_numpy(dtype=float)[reference]).mean()))
        if size_factor is not None
        else 1.0
    )
    # A layer the cohort lacks leaves its statistics NaN (the methods reading it cannot run).
    missing = np.full(adata.n_vars, np.nan)
    normalized = vst = None
    if "normalized" in adata.layers:
        normalized = np.asarray(adata.layers["normalized"], dtype=float)[reference]
    if "vst" in adata.layers:
        vst = np.asarray(adata.layers["vst"], dtype=float)[reference]
    return ReferenceStatistics(
        depth_scale=depth_scale,
        normalized_median=(
            missing if normalized is None else np.median(normalized * depth_scale, axis=0)
        ),
        vst_mean=missing if vst is None else vst.mean(axis=0),
        vst_sd=missing if vst is None else vst.std(axis=0, ddof=1),
        n_reference=int(reference.sum()),
    )


def fold_change_score(
    values: np.ndarray, reference_median: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """Median over genes of ``(scale * x + 1) / (reference_median + 1)`` per sample.

    Parameters
    ----------
    values
        Samples x genes normalized counts.
    reference_median
        Per gene, the reference median of ``scale`` x normalized counts.
    scale
        Depth scale of the reference (:attr:`ReferenceStatistics.depth_scale`).
    """
    # A pseudocount of 1 keeps genes silent in the reference from giving infinite ratios.
    fold = (np.asarray(values, dtype=float) * scale + 1.0) / (reference_median + 1.0)
    return np.median(fold, axis=1)


def median_fold_change(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Median over genes of each sample's fold change against the reference median.

    Parameters
    ----------
    values
        Samples x genes normalized counts.
    reference
        Boolean mask of the reference samples.
    """
    return fold_change_score(values, np.median(values[reference], axis=0))


def zscores_from(values: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Per-gene z-scores against a reference mean and SD; genes with SD 0 get z = 0."""
    # A gene constant in the reference carries no scale; it is left out (z = 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, (np.asarray(values, dtype=float) - mean) / sd, 0.0)


def _zscores(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    ref = values[reference]
    return zscores_from(values, ref.mean(axis=0), ref.std(axis=0, ddof=1))


def zscore_sum(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Sum over genes of z-scores against the reference samples."""
    return _zscores(values, reference).sum(axis=1)


def zscore_mean(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Mean over genes of z-scores against the reference samples."""
    return _zscores(values, reference).mean(axis=1)


def singscore(
    values: np.ndarray, columns: Mapping[str, np.ndarray], chunk: int = 1000, threads: int = 1
) -> dict[str, np.ndarray]:
    """Single-sample rank score of each gene set (singscore, up-set only, centred).

    Follows ``rankGenes`` and ``simpleScore`` of the Bioconductor package singscore
    (Foroutan et al., BMC Bioinformatics 2018): genes are ranked within each sample from the
    lowest (rank 1) to the highest expression, ties taking the minimum rank; the score is the
    mean rank of the set's ``k`` genes, scaled from its lowest possible value (k + 1) / 2 to
    its highest (2N - k + 1) / 2 over ``N`` genes, minus 0.5 (range -0.5 to 0.5).

    Parameters
    ----------
    values
        Samples x genes expression of every gene (normalized counts or VST).
    columns
        Gene-set name -> column indices of its genes in ``values``.
    chunk
        Samples sorted at a time, to bound the memory of large cohorts.
    threads
        Chunks sorted in parallel (numpy releases the GIL while sorting).

    Returns
    -------
    dict of str to numpy.ndarray
        Gene-set name -> score per sample.
    """
    n_samples, n_genes = values.shape
    union = np.unique(np.concatenate([np.asarray(c, dtype=int) for c in columns.values()]))

    def set_gene_ranks(start: int) -> np.ndarray:
        # Only the set genes need a rank: 1 + the number of genes strictly below them in
        # the same sample, by binary search in the sorted sample (ties: the minimum rank).
        block = np.asarray(values[start : start + chunk], dtype=float)
        ordered = np.sort(block, axis=1)
        queries = block[:, union]
        ranks = np.empty(queries.shape)
        for i in range(len(block)):
            ranks[i] = np.searchsorted(ordered[i], queries[i], side="left") + 1
        return ranks

    starts = range(0, n_samples, chunk)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            blocks = list(pool.map(set_gene_ranks, starts))
    else:
        blocks = [set_gene_ranks(start) for start in starts]
    ranks = np.concatenate(blocks) if blocks else np.empty((0, len(union)))
    scores = {}
    for name, cols in columns.items():
        k = len(cols)
        mean_rank = ranks[:, np.searchsorted(union, cols)].mean(axis=1)
        low, high = (k + 1) / 2, (2 * n_genes - k + 1) / 2
        scores[name] = (mean_rank - low) / (high - low) - 0.5
    return scores


def ssgsea(
    values: np.ndarray, columns: Mapping[str, np.ndarray], seed: int = 0, threads: int = 1
) -> dict[str, np.ndarray]:
    """Single-sample GSEA enrichment score of each gene set, computed by gseapy.

    gseapy's defaults of ssGSEA are kept (genes ranked within each sample, weight 0.25,
    Barbie et al., Nature 2009). The raw enrichment score (ES) is returned: gseapy's NES
    divides by the range of ES over the whole cohort, which would make a sample's score
    depend on the other samples.

    Parameters
    ----------
    values
        Samples x genes expression of every gene.
    columns
        Gene-set name -> column indices of its genes in ``values``.
    seed, threads
        Passed to :func:`gseapy.ssgsea` (no permutations are run, so the seed is not used).
    """
    import gseapy

    # Positional gene and sample labels: gseapy needs unique string labels and must not
    # reinterpret gene IDs (upper-casing, Enrichr library names).
    genes = pd.Index([f"g{i}" for i in range(values.shape[1])])
    samples = pd.Index([f"s{i}" for i in range(values.shape[0])])
    data = pd.DataFrame(np.asarray(values, dtype=float).T, index=genes, columns=samples)
    result = gseapy.ssgsea(
        data=data,
        gene_sets={name: list(genes[cols]) for name, cols in columns.items()},
        outdir=None,
        sample_norm_method="rank",
        min_size=1,
        max_size=len(genes),
        permutation_num=0,
        threads=threads,
        seed=seed,
        no_plot=True,
        verbose=False,
    )
    es = result.res2d.pivot(index="Name", columns="Term", values="ES")
    es = es.reindex(index=samples).astype(float)
    return {name: es[name].to_numpy() for name in columns}


def score_genes_controls(
    values: np.ndarray,
    columns: Mapping[str, np.ndarray],
    seed: int = 0,
    ctrl_size: int = 50,
    n_bins: int = 25,
) -> dict[str, np.ndarray]:
    """Control genes of each gene set, drawn as :func:`scanpy.tl.score_genes` draws them.

    scanpy (1.11, defaults ``ctrl_as_ref=True``, 25 bins, 50 genes per bin): genes are
    binned by their mean over all samples (``rank(method="min") // round(n / 24)``); from
    each bin holding a set gene, ``ctrl_size`` genes are drawn without replacement
    (``numpy.random`` seeded with ``seed`` once per set), and the set's own genes are then
    removed. Drawn once here, the control genes can be frozen with a reference.

    Returns
    -------
    dict of str to numpy.ndarray
        Gene-set name -> sorted column indices of its control genes.
    """
    average = pd.Series(np.nanmean(np.asarray(values, dtype=float), axis=0))
    average = average[np.isfinite(average)]
    n_items = int(np.round(len(average) / (n_bins - 1)))
    cut = average.rank(method="min") // n_items
    controls = {}
    for name, cols in columns.items():
        rng = np.random.RandomState(seed)
        members = np.asarray(cols, dtype=int)
        chosen: set[int] = set()
        for level in np.unique(cut.reindex(members).dropna()):
            candidates = cut.index[cut == level].to_numpy()
            if ctrl_size < len(candidates):
                # pandas Series.sample draws random_state.choice(n, size, replace=False).
                candidates = candidates[rng.choice(len(candidates), ctrl_size, replace=False)]
            chosen.update(int(g) for g in np.setdiff1d(candidates, members))
        controls[name] = np.array(sorted(chosen), dtype=int)
    return controls


def score_genes(
    values: np.ndarray, columns: Mapping[str, np.ndarray], seed: int = 0
) -> dict[str, np.ndarray]:
    """scanpy's ``score_genes`` of each gene set (Seurat's module score).

    The mean of the set's genes minus the mean of control genes drawn from the same
    expression bins (:func:`score_genes_controls`, seeded with ``seed`` so reruns choose the
    same control genes).
    """
    return _score_genes_with(values, columns, score_genes_controls(values, columns, seed))


def _score_genes_with(values, columns, controls) -> dict[str, np.ndarray]:
    values = np.asarray(values, dtype=float)
    return {
        name: np.nanmean(values[:, cols], axis=1) - np.nanmean(values[:, controls[name]], axis=1)
        for name, cols in columns.items()
    }


def module_activity_table(
    values: np.ndarray,
    columns: Mapping[str, np.ndarray],
    statistics: ReferenceStatistics,
    n_sd: float = 2.0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per module and sample, the percentages of genes up and down against the reference.

    A gene is up in a sample when its VST value is above the reference mean + ``n_sd``
    reference SDs, down when below mean - ``n_sd`` SDs (Chiche et al., Arthritis
    Rheumatol 2014); percentages are of the module's genes found in the data. A gene
    constant in the reference (SD 0) is neither up nor down.

    Returns
    -------
    dict of str to (numpy.ndarray, numpy.ndarray)
        Module name -> (percent up, percent down) per sample.
    """
    values = np.asarray(values, dtype=float)
    out = {}
    for name, cols in columns.items():
        mean, sd = statistics.vst_mean[cols], statistics.vst_sd[cols]
        block = values[:, cols]
        usable = sd > 0
        up = (block > mean + n_sd * sd) & usable
        down = (block < mean - n_sd * sd) & usable
        out[name] = (100.0 * up.mean(axis=1), 100.0 * down.mean(axis=1))
    return out


def module_percentages(
    adata: ad.AnnData, modules: Mapping[str, list[str]], reference: np.ndarray, n_sd: float = 2.0
) -> pd.DataFrame:
    """Tidy percent up, percent down and activity of each module in each sample.

    Parameters
    ----------
    adata
        Cohort with a ``vst`` layer and ``symbol`` in var.
    modules
        Module name -> symbols present in ``adata`` (from ``genesets.match_gene_sets``).
    reference
        Mask of the reference samples whose mean and SD define up and down.

    Returns
    -------
    pandas.DataFrame
        One row per sample and module: ``n_genes``, ``percent_up``, ``percent_down`` and
        ``activity`` (up minus down), as :func:`module_activity_table` computes them.
    """
    columns = set_columns(scoring_symbols(adata), modules)
    statistics = reference_statistics(adata, reference)
    return module_percentage_table(
        adata.obs_names, np.asarray(adata.layers["vst"]), columns, statistics, n_sd
    )


def module_percentage_table(
    samples,
    values: np.ndarray,
    columns: Mapping[str, np.ndarray],
    statistics: ReferenceStatistics,
    n_sd: float = 2.0,
) -> pd.DataFrame:
    """The table of :func:`module_percentages` from VST values, module columns and reference
    statistics (those of a frozen reference, for instance)."""
    table = module_activity_table(values, columns, statistics, n_sd)
    frames = [
        pd.DataFrame(
            {
                "sample": pd.Index(samples).astype(str),
                "module": name,
                "n_genes": len(columns[name]),
                "percent_up": up,
                "percent_down": down,
                "activity": up - down,
            }
        )
        for name, (up, down) in table.items()
    ]
    return pd.concat(frames, ignore_index=True)


def active_modules(scores: pd.DataFrame, modules: list[str], cutoff: float = 15.0) -> pd.DataFrame:
    """Number of active modules per sample, from ``module_activity`` scores.

    A module is active in a sample when its activity (percent up minus percent down) is at
    least ``cutoff`` percent. Chiche et al. (Arthritis Rheumatol 2014) stratified SLE
    patients by the number of active IFN modules M1.2, M3.4 and M5.12 (0 to 3); the default
    of 15 % is the cut-off of the BloodGen3 fingerprint plots (BloodGen3Module
    ``fingerprintplot``, Rinchai et al., Bioinformatics 2021), because the activity
    threshold of Chiche et al. could not be confirmed from the paper.

    Returns
    -------
    pandas.DataFrame
        One row per sample: ``n_active``, ``n_modules`` and ``active`` (the active modules,
        comma-separated in the order given).
    """
    part = scores[(scores["method"] == "module_activity") & scores["signature"].isin(modules)]
    wide = part.pivot(index="sample", columns="signature", values="score")
    wide = wide.reindex(index=scores["sample"].drop_duplicates(), columns=modules)
    active = wide >= cutoff
    return pd.DataFrame(
        {
            "sample": wide.index,
            "n_active": active.sum(axis=1).to_numpy(dtype=int),
            "n_modules": wide.notna().sum(axis=1).to_numpy(dtype=int),
            "active": [
                LIST_SEPARATOR.join(m for m in modules if row[m]) for _, row in active.iterrows()
            ],
        }
    ).reset_index(drop=True)


def _fold_change(values, columns, statistics, **_):
    return {
        name: fold_change_score(
            values[:, cols], statistics.normalized_median[cols], statistics.depth_scale
        )
        for name, cols in columns.items()
    }


def _zscore(reduce: str) -> Callable:
    def scorer(values, columns, statistics, **_):
        return {
            name: getattr(
                zscores_from(values[:, cols], statistics.vst_mean[cols], statistics.vst_sd[cols]),
                reduce,
            )(axis=1)
            for name, cols in columns.items()
        }

    return scorer


def _singscore(values, columns, statistics, threads=1, **_):
    return singscore(values, columns, threads=threads)


def _ssgsea(values, columns, statistics, seed=0, threads=1, **_):
    return ssgsea(values, columns, seed=seed, threads=threads)


def _score_genes(values, columns, statistics, controls=None, seed=0, **_):
    if controls is None:
        controls = score_genes_controls(values, columns, seed)
    return _score_genes_with(values, columns, controls)


def _module_activity(values, columns, statistics, **_):
    return {
        name: up - down
        for name, (up, down) in module_activity_table(values, columns, statistics).items()
    }


# Method name -> scorer(values of every gene, set columns, ReferenceStatistics, controls=,
# seed=, threads=) returning set name -> score per sample. ``controls`` are the frozen
# control genes of score_genes (drawn from ``values`` when None).
METHODS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "median_fold_change": _fold_change,
    "zscore_sum": _zscore("sum"),
    "zscore_mean": _zscore("mean"),
    "singscore": _singscore,
    "ssgsea": _ssgsea,
    "score_genes": _score_genes,
    "module_activity": _module_activity,
}


def check_methods(methods: list[str]) -> None:
    """Raise for method names not in :data:`METHODS`."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown IFN-score method(s) {unknown}; choose from {list(METHODS)}.")


def scoring_symbols(adata: ad.AnnData) -> pd.Series:
    """The cohort's symbols with only one gene ID per symbol left (the others empty).

    The gene ID kept is the one with the highest mean normalized count
    (:func:`ifnsig.data.one_gene_per_symbol`), so a signature gene is scored once, from its
    best-measured gene ID.
    """
    from ifnsig.data import one_gene_per_symbol

    symbols = adata.var["symbol"].astype(str)
    if symbols.is_unique:
        return symbols
    means = np.asarray(adata.layers["normalized"], dtype=float).mean(axis=0)
    keep = one_gene_per_symbol(symbols, means)
    return symbols.where(keep, "")


def symbol_positions(symbols, genes: list[str]) -> np.ndarray:
    """Column of each of ``genes`` among ``symbols`` (-1 if absent; first of a repeat)."""
    symbols = pd.Index(pd.Series(symbols).astype(str))
    return symbols.get_indexer(genes) if symbols.is_unique else _first_positions(symbols, genes)


def set_columns(symbols, gene_sets: Mapping[str, list[str]]) -> dict[str, np.ndarray]:
    """Column index of each matched gene of each set (first gene of a repeated symbol).

    Give :func:`scoring_symbols` to score each symbol from the gene ID chosen for it.
    """
    symbols = pd.Index(pd.Series(symbols).astype(str))
    columns = {}
    for signature, genes in gene_sets.items():
        found = (
            symbols.get_indexer(genes) if symbols.is_unique else _first_positions(symbols, genes)
        )
        columns[signature] = found[found >= 0]
    return columns


def _first_positions(symbols: pd.Index, genes: list[str]) -> np.ndarray:
    first = pd.Series(np.arange(len(symbols)), index=symbols)
    first = first[~first.index.duplicated()]
    return first.reindex(genes).fillna(-1).to_numpy(dtype=int)


def compute_scores(
    layers: Mapping[str, np.ndarray],
    columns: Mapping[str, np.ndarray],
    methods: list[str],
    statistics: ReferenceStatistics,
    controls: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    threads: int = 1,
) -> dict[tuple[str, str], np.ndarray]:
    """Raw scores of every set and method: (signature, method) -> score per sample.

    ``layers`` maps ``normalized`` and ``vst`` (as :data:`METHOD_LAYERS` needs them) to
    samples x genes matrices in the gene order of ``statistics``.
    """
    check_methods(methods)
    out = {}
    for method in methods:
        values = np.asarray(layers[METHOD_LAYERS[method]])
        by_set = METHODS[method](
            values, columns, statistics, controls=controls, seed=seed, threads=threads
        )
        for signature in columns:
            out[signature, method] = np.asarray(by_set[signature], dtype=float)
    return out


def attainable_range(
    method: str, columns: np.ndarray, n_genes: int, seed: int = 0
) -> tuple[float, float]:
    """Lowest and highest score ``method`` can give a set of these genes among ``n_genes``.

    Rank-based scores are bounded: singscore of an up-set by -0.5 and 0.5, ssGSEA by the
    enrichment of a sample whose set genes are its lowest or highest genes (computed),
    module activity by -100 and 100. Fold changes are positive and unbounded above; z-score
    sums and score_genes are unbounded.
    """
    if method == "singscore":
        return -0.5, 0.5
    if method == "module_activity":
        return -100.0, 100.0
    if method == "median_fold_change":
        return 0.0, math.inf
    if method == "ssgsea":
        cols = np.asarray(columns, dtype=int)
        others = np.setdiff1d(np.arange(n_genes), cols)
        ideal = np.empty((2, n_genes))
        ideal[0, np.r_[others, cols]] = np.arange(n_genes)  # set genes highest
        ideal[1, np.r_[cols, others]] = np.arange(n_genes)  # set genes lowest
        es = ssgsea(ideal, {"set": cols}, seed=seed)["set"]
        return float(es[1]), float(es[0])
    return -math.inf, math.inf


def choose_cutoffs(
    raw: Mapping[tuple[str, str], np.ndarray],
    columns: Mapping[str, np.ndarray],
    n_genes: int,
    reference: np.ndarray,
    positivity_sd: float = 2.0,
    rule: str = "reference_mean_sd",
    fallback: str = "quantile",
    quantile: float = 0.975,
    mixture_samples: np.ndarray | None = None,
    seed: int = 0,
) -> dict[tuple[str, str], positivity.Cutoff]:
    """The positivity cut-off of every (signature, method), see :mod:`ifnsig.positivity`."""
    cutoffs = {}
    for (signature, method), score in raw.items():
        cutoffs[signature, method], _ = positivity.choose_cutoff(
            score[reference],
            attainable_range(method, columns[signature], n_genes, seed),
            positivity_sd=positivity_sd,
            rule=rule,
            fallback=fallback,
            quantile=quantile,
            mixture_scores=None if mixture_samples is None else score[mixture_samples],
            seed=seed,
            label=f"{signature} / {method}",
        )
    return cutoffs


SCORE_COLUMNS = [
    "sample", "subject", "group", "timepoint", "signature", "method", "n_genes", "score",
    "threshold", "positive", "positivity_rule", "reference", "reference_group",
]  # fmt: skip


def score_table(
    obs: pd.DataFrame,
    raw: Mapping[tuple[str, str], np.ndarray],
    cutoffs: Mapping[tuple[str, str], positivity.Cutoff],
    n_genes: Mapping[str, int],
    reference: np.ndarray,
    reference_group: str,
) -> pd.DataFrame:
    """The tidy scores table: one row per sample, signature and method, set-major."""
    frames = []
    signatures = list(dict.fromkeys(s for s, _ in raw))
    methods = list(dict.fromkeys(m for _, m in raw))
    for signature in signatures:
        for method in methods:
            score = raw[signature, method]
            cutoff = cutoffs[signature, method]
            frames.append(
                pd.DataFrame(
                    {
                        "sample": obs.index.astype(str),
                        "subject": obs["subject"].astype(str).to_numpy(),
                        "group": obs["group"].astype(str).to_numpy(),
                        "timepoint": obs["timepoint"].astype(str).to_numpy(),
                        "signature": signature,
                        "method": method,
                        "n_genes": n_genes[signature],
                        "score": score,
                        "threshold": cutoff.threshold,
                        "positive": score > cutoff.threshold,
                        "positivity_rule": cutoff.rule,
                        "reference": np.asarray(reference, dtype=bool),
                        "reference_group": reference_group,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[SCORE_COLUMNS]


def baseline_patients(obs: pd.DataFrame, patient: str, baseline: str) -> np.ndarray:
    """Mask of the baseline samples of patients, the samples a mixture cut-off is fitted to."""
    return (
        (obs["group"].astype(str) == patient) & (obs["timepoint"].astype(str) == baseline)
    ).to_numpy()


def reference_mask(obs: pd.DataFrame, reference: str, control: str, baseline: str) -> np.ndarray:
    """Samples that define 'normal': healthy controls, or all baseline samples as fallback."""
    if reference == "controls":
        mask = (obs["group"] == control).to_numpy()
        if mask.sum() < 2:
            raise ValueError(
                f"The IFN-score reference needs at least 2 samples of group '{control}'; "
                f"found {mask.sum()}. Add controls or set scores.reference: baseline."
            )
        return mask
    log.warning(
        "IFN scores use all %s samples as reference (scores.reference: baseline): scores are "
        "relative to the cohort's own baseline, not to healthy people, and positivity calls "
        "mean 'above the baseline distribution'.",
        baseline,
    )
    return (obs["timepoint"].astype(str) == baseline).to_numpy()


def score_samples(
    adata: ad.AnnData,
    gene_sets: dict[str, list[str]],
    methods: list[str],
    reference: np.ndarray,
    positivity_sd: float = 2.0,
    seed: int = 0,
    threads: int = 1,
    reference_group: str = "controls",
    rule: str = "reference_mean_sd",
    fallback: str = "quantile",
    quantile: float = 0.975,
    mixture_samples: np.ndarray | None = None,
) -> pd.DataFrame:
    """Score every sample for every gene set and method.

    Parameters
    ----------
    adata
        Cohort with ``normalized`` and ``vst`` layers and a ``symbol`` column in var.
    gene_sets
        Signature name -> symbols present in ``adata`` (from ``genesets.match_gene_sets``).
    methods
        Names from :data:`METHODS`.
    reference
        Boolean mask of reference samples.
    positivity_sd
        Positive above reference mean + this many reference SDs.
    seed, threads
        For the methods that draw random numbers or run in parallel.
    reference_group
        ``controls`` or ``baseline``: which samples ``reference`` holds, written to the table.
    rule, fallback, quantile
        Positivity rule and its fallback when the cut-off cannot be exceeded
        (:func:`ifnsig.positivity.choose_cutoff`).
    mixture_samples
        Mask of the samples a mixture cut-off is fitted to (:func:`baseline_patients`);
        None: no mixture rule.

    Returns
    -------
    pandas.DataFrame
        Tidy: one row per sample, signature and method, with the threshold, the call and
        the rule that made it (``positivity_rule``).
    """
    check_methods(methods)
    reference = np.asarray(reference, dtype=bool)
    columns = set_columns(scoring_symbols(adata), gene_sets)
    statistics = reference_statistics(adata, reference)
    controls = (
        score_genes_controls(np.asarray(adata.layers["vst"]), columns, seed)
        if "score_genes" in methods
        else None
    )
    raw = compute_scores(adata.layers, columns, methods, statistics, controls, seed, threads)
    cutoffs = choose_cutoffs(
        raw,
        columns,
        adata.n_vars,
        reference,
        positivity_sd,
        rule=rule,
        fallback=fallback,
        quantile=quantile,
        mixture_samples=mixture_samples,
        seed=seed,
    )
    n_genes = {name: len(cols) for name, cols in columns.items()}
    return score_table(adata.obs, raw, cutoffs, n_genes, reference, reference_group)


def mixture_fits(
    scores: pd.DataFrame, samples: np.ndarray | list[str], seed: int = 0
) -> pd.DataFrame:
    """Two-component mixture fit of every signature and method on the given samples.

    Parameters
    ----------
    scores
        The tidy scores table.
    samples
        Sample IDs the mixture is fitted to (the baseline patients).

    Returns
    -------
    pandas.DataFrame
        One row per signature and method with the fields of
        :class:`ifnsig.positivity.MixtureFit` (weights, means and SDs of both components,
        BIC of one and two components, Ashman's D, ``bimodal`` and the ``cutoff``).
    """
    chosen = scores["sample"].astype(str).isin(set(map(str, samples)))
    rows = []
    # Every signature and method gets a row, n = 0 (and NaN) when no sample was given.
    for (signature, method), part in scores.groupby(["signature", "method"], sort=False):
        fit = positivity.mixture_cutoff(
            part.loc[chosen[part.index], "score"].to_numpy(),
            seed=seed,
            label=f"{signature} / {method}",
        )
        rows.append({"signature": signature, "method": method, **fit.as_dict()})
    return pd.DataFrame(rows)


def scores_wide(scores: pd.DataFrame) -> pd.DataFrame:
    """Samples x (signature, method) scores and calls, for the AnnData obs.

    Columns are ``ifn_<signature>_<method>`` (score) and ``..._positive`` (call).
    """
    score = scores.pivot(index="sample", columns=["signature", "method"], values="score")
    positive = scores.pivot(index="sample", columns=["signature", "method"], values="positive")
    parts = {}
    for sig, method in scores[["signature", "method"]].drop_duplicates().itertuples(index=False):
        parts[f"ifn_{sig}_{method}"] = score[(sig, method)]
        parts[f"ifn_{sig}_{method}_positive"] = positive[(sig, method)].astype(bool)
    return pd.DataFrame(parts).reindex(scores["sample"].drop_duplicates())


def annotate_obs(obs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The cohort's obs with every score and call added as columns (index: sample)."""
    wide = scores_wide(scores)
    # The index is the sample ID, so a 'sample' column would only repeat it.
    kept = obs.drop(columns=[c for c in [*wide.columns, "sample"] if c in obs.columns])
    out = kept.join(wide)
    out.index.name = "sample"
    return out


def method_agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation and call agreement between every two methods, per signature.

    Returns
    -------
    pandas.DataFrame
        One row per signature and pair of methods: ``n`` samples, Spearman ``rho`` and its
        ``pvalue`` (unrounded), and ``call_agreement``, the fraction of samples given the
        same positivity call by both methods.
    """
    rows = []
    for signature, group in scores.groupby("signature", sort=False):
        score = group.pivot(index="sample", columns="method", values="score")
        positive = group.pivot(index="sample", columns="method", values="positive")
        methods = list(dict.fromkeys(group["method"]))
        for a, b in itertools.combinations(methods, 2):
            both = score[[a, b]].dropna()
            rho, pvalue = stats.spearmanr(both[a], both[b]) if len(both) >= 3 else (np.nan, np.nan)
            rows.append(
                {
                    "signature": signature,
                    "method_a": a,
                    "method_b": b,
                    "n": len(both),
                    "rho": float(rho),
                    "pvalue": float(pvalue),
                    "call_agreement": float(
                        (positive.loc[both.index, a] == positive.loc[both.index, b]).mean()
                    ),
                }
            )
    return pd.DataFrame(
        rows, columns=["signature", "method_a", "method_b", "n", "rho", "pvalue", "call_agreement"]
    )


def standardized(scores: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.Series:
    """Each score in reference SDs from the reference mean of its signature and method.

    ``reference`` gives ``signature``, ``method``, ``reference_mean`` and ``reference_sd``
    (the cut-offs of a frozen reference); without it they come from the table's own
    reference samples.
    """
    if reference is not None:
        keys = pd.MultiIndex.from_frame(scores[["signature", "method"]])
        stats_ = reference.set_index(["signature", "method"])
        mean = stats_["reference_mean"].reindex(keys).to_numpy(dtype=float)
        sd = stats_["reference_sd"].reindex(keys).to_numpy(dtype=float)
        return (scores["score"] - mean) / sd
    keys = [scores["signature"], scores["method"]]
    ref = scores["score"].where(scores["reference"].astype(bool))
    mean = ref.groupby(keys).transform("mean")
    sd = ref.groupby(keys).transform("std")
    return (scores["score"] - mean) / sd


def type_contrast(
    scores: pd.DataFrame, type2_signature: str | None, reference: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per sample and method: each signature against the IFN-gamma-biased one, both standardized.

    Scores of different signatures live on different scales, so both are expressed in
    reference SDs from the reference mean (a z-score of the score) before subtracting; a
    positive ``difference`` means the sample leans towards type I over type II signalling,
    relative to the reference samples (or to the frozen ``reference``, as in
    :func:`standardized`).

    Returns
    -------
    pandas.DataFrame
        One row per sample, method and signature other than ``type2_signature``:
        ``type1_z``, ``type2_z`` and ``difference`` (type1_z - type2_z); no rows when
        ``type2_signature`` is None or was not scored.
    """
    columns = [
        "sample", "subject", "group", "timepoint", "signature", "method",
        "type1_z", "type2_signature", "type2_z", "difference",
    ]  # fmt: skip
    if type2_signature is None or type2_signature not in set(scores["signature"]):
        return pd.DataFrame(columns=columns)
    z = scores.assign(z=standardized(scores, reference))
    keys = ["sample", "method"]
    type2 = z[z["signature"] == type2_signature].set_index(keys)["z"]
    out = z[z["signature"] != type2_signature][
        ["sample", "subject", "group", "timepoint", "signature", "method", "z"]
    ].rename(columns={"z": "type1_z"})
    out["type2_signature"] = type2_signature
    out["type2_z"] = type2.reindex(pd.MultiIndex.from_frame(out[keys])).to_numpy()
    out["difference"] = out["type1_z"] - out["type2_z"]
    return out[columns].reset_index(drop=True)


def score_shift(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """How far the scores and calls of the same samples moved between two scores tables.

    For instance ``before`` from a cohort scored alone and ``after`` from the same samples
    scored within a larger cohort, each normalized and referenced on its own. Shifts are
    also given in reference SDs of ``after`` (the SD of its reference samples' scores).

    Returns
    -------
    pandas.DataFrame
        One row per signature and method: ``n`` shared samples, ``max_abs_shift``,
        ``median_abs_shift``, the same in reference SDs (``max_shift_sd``,
        ``median_shift_sd``), both thresholds, and ``calls_changed`` (samples whose call
        differs).
    """
    keys = ["sample", "signature", "method"]
    merged = before.merge(after, on=keys, suffixes=("_before", "_after"))
    reference_sd = (
        after[after["reference"].astype(bool)].groupby(["signature", "method"])["score"].std()
    )
    rows = []
    for (signature, method), part in merged.groupby(["signature", "method"], sort=False):
        shift = (part["score_after"] - part["score_before"]).abs()
        sd = float(reference_sd.get((signature, method), np.nan))
        rows.append(
            {
                "signature": signature,
                "method": method,
                "n": len(part),
                "max_abs_shift": float(shift.max()),
                "median_abs_shift": float(shift.median()),
                "max_shift_sd": float(shift.max() / sd) if sd > 0 else np.nan,
                "median_shift_sd": float(shift.median() / sd) if sd > 0 else np.nan,
                "threshold_before": float(part["threshold_before"].iloc[0]),
                "threshold_after": float(part["threshold_after"].iloc[0]),
                "calls_changed": int((part["positive_before"] != part["positive_after"]).sum()),
            }
        )
    return pd.DataFrame(rows)
