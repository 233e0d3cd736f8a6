"""Interferon scores per sample, and positivity against a healthy reference.

Each method takes a samples x genes matrix of normalized values, never raw counts, so
library size cannot move a score.

* ``median_fold_change`` (Rice et al., Lancet Neurol 2013): per gene, the fold change of
  DESeq2-normalized counts against the median of the reference samples; the score is the
  median over the signature's genes.
* ``zscore_sum`` / ``zscore_mean`` (Kirou et al., Arthritis Rheum 2005; Feng et al.,
  Arthritis Rheum 2006; Kim et al., J Interferon Cytokine Res 2018): per gene, the z-score
  of VST values against the reference mean and SD; summed or averaged over genes.

A sample is IFN-positive when its score exceeds the reference mean plus ``positivity_sd``
reference SDs (Rice 2013 used mean + 2 SD of healthy controls).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anndata as ad
import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Method name -> (layer it reads, function(values, reference_mask) -> score per sample).
METHOD_LAYERS = {
    "median_fold_change": "normalized",
    "zscore_sum": "vst",
    "zscore_mean": "vst",
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


METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "median_fold_change": median_fold_change,
    "zscore_sum": zscore_sum,
    "zscore_mean": zscore_mean,
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

    Returns
    -------
    pandas.DataFrame
        Tidy: one row per sample, signature and method, with the threshold and the call.
    """
    symbols = pd.Index(adata.var["symbol"].astype(str))
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
    for signature, genes in gene_sets.items():
        columns = symbols.get_indexer(genes)
        columns = columns[columns >= 0]
        for method in methods:
            values = np.asarray(adata.layers[METHOD_LAYERS[method]][:, columns], dtype=float)
            if METHOD_LAYERS[method] == "normalized":
                values = values * depth_scale
            score = METHODS[method](values, reference)
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
                        "n_genes": len(columns),
                        "score": score,
                        "threshold": threshold,
                        "positive": score > threshold,
                        "reference": reference,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def scores_wide(scores: pd.DataFrame) -> pd.DataFrame:
    """Samples x (signature, method) table, for AnnData obs and correlations."""
    wide = scores.pivot(index="sample", columns=["signature", "method"], values="score")
    wide.columns = [f"ifn_{sig}_{method}" for sig, method in wide.columns]
    return wide
