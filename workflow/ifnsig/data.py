"""The cohort as one AnnData: samples x genes, raw counts and normalized layers.

``obs`` holds the sample sheet joined with the clinical table, ``var`` the gene ID and
symbol, and the layers ``counts``, ``normalized`` (DESeq2 median-of-ratios), ``vst``
(DESeq2 variance-stabilizing transformation) and ``logcpm`` (log2 of counts per million
plus one).
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig.errors import InputError
from ifnsig.io import read_sheet, require_file

log = logging.getLogger(__name__)


def read_annotation(path: str | Path) -> pd.DataFrame:
    """Read a gene annotation table with columns gene_id and symbol (optional: biotype)."""
    path = require_file(path, "gene annotation", "annotation")
    frame = read_sheet(path, ["gene_id", "symbol", "biotype"])
    missing = [c for c in ["gene_id", "symbol"] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: column(s) {', '.join(missing)} missing; the annotation table needs "
            "gene_id and symbol columns (biotype optional)."
        )
    duplicated = frame["gene_id"][frame["gene_id"].duplicated()]
    if not duplicated.empty:
        raise InputError(
            f"{path}: gene_id '{duplicated.iloc[0]}' appears more than once; keep one row per "
            "gene ID."
        )
    return frame.set_index("gene_id")


def build_anndata(
    counts: pd.DataFrame,
    samples: pd.DataFrame,
    clinical: pd.DataFrame | None = None,
    annotation: pd.DataFrame | None = None,
    timepoints: list[str] | None = None,
) -> ad.AnnData:
    """Assemble the cohort AnnData from validated inputs.

    Parameters
    ----------
    counts
        Genes x samples raw counts (index gene_id).
    samples
        Validated sample sheet indexed by sample.
    clinical
        Optional clinical table, joined to samples on subject and timepoint.
    annotation
        Optional table indexed by gene_id with symbol (and biotype).
    timepoints
        Ordered timepoint levels, stored as an ordered categorical.
    """
    counts = counts[samples.index]
    obs = samples.copy()
    if clinical is not None:
        measures = [c for c in clinical.columns if c not in ("subject", "timepoint")]
        obs = obs.merge(
            clinical, on=["subject", "timepoint"], how="left", suffixes=("", "_clinical")
        ).set_index(obs.index)
        log.info("joined %d clinical measures to %d samples", len(measures), len(obs))
    if timepoints is not None:
        obs["timepoint"] = pd.Categorical(obs["timepoint"], categories=timepoints, ordered=True)
    var = pd.DataFrame(index=counts.index.astype(str))
    var["gene_id"] = var.index
    if annotation is not None:
        var["symbol"] = annotation["symbol"].reindex(var.index)
        if "biotype" in annotation.columns:
            var["biotype"] = annotation["biotype"].reindex(var.index).fillna("")
        unmatched = var["symbol"].isna().sum()
        if unmatched == len(var):
            raise InputError(
                "config annotation: none of the count matrix's gene IDs is in the annotation "
                "table; check that both use the same IDs (e.g. Ensembl IDs with or without "
                "version suffix)."
            )
        log.info("annotation: %d of %d genes without a symbol keep their ID", unmatched, len(var))
        var["symbol"] = var["symbol"].fillna(var["gene_id"])
    else:
        var["symbol"] = var["gene_id"]
    matrix = counts.to_numpy(dtype=np.int64).T
    adata = ad.AnnData(X=matrix.astype(np.float32), obs=obs, var=var)
    adata.layers["counts"] = matrix
    adata.obs_names = obs.index.astype(str)
    for column in adata.obs.columns:
        if adata.obs[column].dtype == object:
            adata.obs[column] = adata.obs[column].fillna("").astype(str)
    return adata


def filter_genes(adata: ad.AnnData, min_count: int, min_samples: int) -> ad.AnnData:
    """Keep genes with at least ``min_count`` raw counts in at least ``min_samples`` samples."""
    counts = adata.layers["counts"]
    keep = (counts >= min_count).sum(axis=0) >= min(min_samples, adata.n_obs)
    if not keep.any():
        raise InputError(
            f"config filtering: no gene has {min_count} counts in {min_samples} samples; lower "
            "filtering.min_count or filtering.min_samples."
        )
    log.info(
        "kept %d of %d genes (>= %d counts in >= %d samples)",
        keep.sum(),
        adata.n_vars,
        min_count,
        min_samples,
    )
    return adata[:, keep].copy()


def normalize(adata: ad.AnnData, n_cpus: int = 1) -> ad.AnnData:
    """Add size factors and the normalized, VST and log-CPM layers (in place).

    Size factors and VST come from pydeseq2 (median of ratios; VST with a blind,
    intercept-only dispersion trend as DESeq2's ``vst(blind=TRUE)``), so that scores and
    plots use the same normalization as the differential expression.
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference

    counts = pd.DataFrame(adata.layers["counts"], index=adata.obs_names, columns=adata.var_names)
    metadata = pd.DataFrame({"all": "all"}, index=adata.obs_names)
    dds = DeseqDataSet(
        counts=counts,
        metadata=metadata,
        design="~1",
        inference=DefaultInference(n_cpus=n_cpus),
        quiet=True,
    )
    dds.vst(use_design=False)
    adata.obs["size_factor"] = np.asarray(dds.obs["size_factors"], dtype=float)
    adata.layers["normalized"] = np.asarray(dds.layers["normed_counts"], dtype=np.float64)
    adata.layers["vst"] = np.asarray(dds.layers["vst_counts"], dtype=np.float64)
    adata.layers["logcpm"] = log_cpm(adata.layers["counts"])
    adata.uns["vst_trend_coeffs"] = np.asarray(dds.uns["vst_trend_coeffs"], dtype=float)
    adata.X = adata.layers["vst"].astype(np.float32)
    return adata


def log_cpm(counts: np.ndarray) -> np.ndarray:
    """log2(counts per million + 1), library size = column total of the kept genes."""
    library = counts.sum(axis=1, keepdims=True).astype(float)
    return np.log2(counts / np.maximum(library, 1.0) * 1e6 + 1.0)


def write_h5ad(adata: ad.AnnData, path: str | Path) -> None:
    """Write AnnData compressed; obs columns are made h5ad-safe first."""
    adata.write_h5ad(path, compression="gzip")
