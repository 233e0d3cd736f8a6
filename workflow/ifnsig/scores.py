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
* ``score_genes`` (Satija et al., Nat Biotechnol 2015) through :func:`scanpy.tl.score_genes`:
  mean VST of the signature's genes minus that of expression-matched control genes.

A sample is IFN-positive when its score exceeds the reference mean plus ``positivity_sd``
reference SDs (Rice 2013 used mean + 2 SD of healthy controls); the threshold is derived per
signature and method from the cohort's own reference samples and written next to each score.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats

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
}


def scored_signatures(settings: dict) -> list[str]:
    """The signatures a run scores (``scores.signatures``), then the type II one if set."""
    names = list(settings["signatures"])
    if settings.get("type2_signature"):
        names.append(settings["type2_signature"])
    return list(dict.fromkeys(names))


REFERENCE_LABELS = {
    "controls": "healthy controls",
    "baseline": "all baseline samples (no healthy controls)",
}


def median_fold_change(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Median over genes of each sample's fold change against the reference median.

    Parameters
    ----------
    values
        Samples x genes normalized counts.
    reference
        Boolean mask of the reference samples.
    """
    # A pseudocount of 1 keeps genes silent in the reference from giving infinite ratios.
    ref_median = np.median(values[reference], axis=0)
    fold = (values + 1.0) / (ref_median + 1.0)
    return np.median(fold, axis=1)


def _zscores(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    mean = values[reference].mean(axis=0)
    sd = values[reference].std(axis=0, ddof=1)
    # A gene constant in the reference carries no scale; it is left out (z = 0).
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (values - mean) / sd, 0.0)
    return z


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


def score_genes(
    values: np.ndarray, columns: Mapping[str, np.ndarray], seed: int = 0
) -> dict[str, np.ndarray]:
    """scanpy's ``score_genes`` of each gene set (Seurat's module score).

    The mean of the set's genes minus the mean of control genes drawn from the same
    expression bins (scanpy defaults: 25 bins, 50 control genes per bin), seeded with
    ``seed`` so reruns choose the same control genes.
    """
    import scanpy as sc

    genes = pd.Index([f"g{i}" for i in range(values.shape[1])])
    view = ad.AnnData(X=np.asarray(values, dtype=float), var=pd.DataFrame(index=genes))
    scores = {}
    for name, cols in columns.items():
        sc.tl.score_genes(view, genes[cols], random_state=seed, score_name="score")
        scores[name] = view.obs["score"].to_numpy(dtype=float, copy=True)
    return scores


def _per_set(function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable:
    """Turn a score over one set's genes into a scorer of every set."""

    def scorer(
        values: np.ndarray,
        columns: Mapping[str, np.ndarray],
        reference: np.ndarray,
        scale: float = 1.0,
        **_,
    ) -> dict[str, np.ndarray]:
        return {
            name: function(np.asarray(values[:, cols], dtype=float) * scale, reference)
            for name, cols in columns.items()
        }

    scorer.__doc__ = function.__doc__
    return scorer


def _singscore(values, columns, reference, threads=1, **_):
    return singscore(values, columns, threads=threads)


def _ssgsea(values, columns, reference, seed=0, threads=1, **_):
    return ssgsea(values, columns, seed=seed, threads=threads)


def _score_genes(values, columns, reference, seed=0, **_):
    return score_genes(values, columns, seed=seed)


# Method name -> scorer(values of every gene, set columns, reference mask, scale=, seed=,
# threads=) returning set name -> score per sample. Only the first three use the reference;
# ``scale`` multiplies the values first (the depth scale of the fold change).
METHODS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "median_fold_change": _per_set(median_fold_change),
    "zscore_sum": _per_set(zscore_sum),
    "zscore_mean": _per_set(zscore_mean),
    "singscore": _singscore,
    "ssgsea": _ssgsea,
    "score_genes": _score_genes,
}


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

    Returns
    -------
    pandas.DataFrame
        Tidy: one row per sample, signature and method, with the threshold and the call.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown IFN-score method(s) {unknown}; choose from {list(METHODS)}.")
    symbols = pd.Index(adata.var["symbol"].astype(str))
    columns = {}
    for signature, genes in gene_sets.items():
        found = symbols.get_indexer(genes)
        columns[signature] = found[found >= 0]
    # Counts are put on the depth scale of the reference samples, so the pseudocount of the
    # fold change means one read at reference depth, and a change in one patient's depth
    # (which shifts every DESeq2 size factor by the same factor) cannot move the scores.
    size_factor = adata.obs.get("size_factor")
    depth_scale = (
        float(np.exp(np.log(size_factor.to_numpy(dtype=float)[reference]).mean()))
        if size_factor is not None
        else 1.0
    )
    frames = []
    for method in methods:
        values = np.asarray(adata.layers[METHOD_LAYERS[method]])
        scale = depth_scale if method == "median_fold_change" else 1.0
        by_set = METHODS[method](
            values, columns, reference, scale=scale, seed=seed, threads=threads
        )
        for signature, score in by_set.items():
            ref_scores = score[reference]
            threshold = ref_scores.mean() + positivity_sd * ref_scores.std(ddof=1)
            frames.append(
                pd.DataFrame(
                    {
                        "sample": adata.obs_names,
                        "subject": adata.obs["subject"].astype(str).to_numpy(),
                        "group": adata.obs["group"].astype(str).to_numpy(),
                        "timepoint": adata.obs["timepoint"].astype(str).to_numpy(),
                        "signature": signature,
                        "method": method,
                        "n_genes": len(columns[signature]),
                        "score": score,
                        "threshold": threshold,
                        "positive": score > threshold,
                        "reference": reference,
                        "reference_group": reference_group,
                    }
                )
            )
    table = pd.concat(frames, ignore_index=True)
    # Signature-major order, as the configuration lists them.
    order = {name: i for i, name in enumerate(gene_sets)}
    return table.sort_values(
        ["signature", "method"],
        key=lambda s: s.map(order) if s.name == "signature" else s.map(methods.index),
        kind="stable",
    ).reset_index(drop=True)


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


def standardized(scores: pd.DataFrame) -> pd.Series:
    """Each score in reference SDs from the reference mean of its signature and method."""
    keys = [scores["signature"], scores["method"]]
    ref = scores["score"].where(scores["reference"].astype(bool))
    mean = ref.groupby(keys).transform("mean")
    sd = ref.groupby(keys).transform("std")
    return (scores["score"] - mean) / sd


def type_contrast(scores: pd.DataFrame, type2_signature: str | None) -> pd.DataFrame:
    """Per sample and method: each signature against the IFN-gamma-biased one, both standardized.

    Scores of different signatures live on different scales, so both are expressed in
    reference SDs from the reference mean (a z-score of the score) before subtracting; a
    positive ``difference`` means the sample leans towards type I over type II signalling,
    relative to the reference samples.

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
    z = scores.assign(z=standardized(scores))
    keys = ["sample", "method"]
    type2 = z[z["signature"] == type2_signature].set_index(keys)["z"]
    out = z[z["signature"] != type2_signature][
        ["sample", "subject", "group", "timepoint", "signature", "method", "z"]
    ].rename(columns={"z": "type1_z"})
    out["type2_signature"] = type2_signature
    out["type2_z"] = type2.reindex(pd.MultiIndex.from_frame(out[keys])).to_numpy()
    out["difference"] = out["type1_z"] - out["type2_z"]
    return out[columns].reset_index(drop=True)
