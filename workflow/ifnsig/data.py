"""The cohort as one AnnData: samples x genes, raw counts and normalized layers.

``obs`` holds the sample sheet joined with the clinical table, ``var`` the gene ID and
symbol, and the layers ``counts``, ``normalized`` (DESeq2 median-of-ratios), ``vst``
(DESeq2 variance-stabilizing transformation) and ``logcpm`` (log2 of counts per million
plus one).
"""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig.errors import InputError
from ifnsig.io import read_sheet, require_file

log = logging.getLogger(__name__)


def read_annotation(path: str | Path) -> pd.DataFrame:
    """Read a gene annotation: a GTF (gzip ok) or a TSV with gene_id and symbol [, biotype].

    From a GTF the ``gene`` records give ``gene_id``, ``gene_name`` (symbol) and
    ``gene_biotype`` or ``gene_type`` (Ensembl and GENCODE spellings), so the annotation
    comes offline from the same file the counts were made with.
    """
    path = require_file(path, "gene annotation", "annotation")
    name = path.name.lower()
    if name.endswith((".gtf", ".gtf.gz", ".gff", ".gff.gz")):
        return read_gtf_genes(path)
    frame = read_sheet(path, ["gene_id", "symbol", "biotype"])
    missing = [c for c in ["gene_id", "symbol"] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: column(s) {', '.join(missing)} missing; the annotation table needs "
            "gene_id and symbol columns (biotype optional), or give a GTF file."
        )
    duplicated = frame["gene_id"][frame["gene_id"].duplicated()]
    if not duplicated.empty:
        raise InputError(
            f"{path}: gene_id '{duplicated.iloc[0]}' appears more than once; keep one row per "
            "gene ID."
        )
    return frame.set_index("gene_id")


_GTF_ATTRIBUTE = re.compile(r'(\w+) "([^"]*)"')


def read_gtf_genes(path: Path) -> pd.DataFrame:
    """Gene ID, symbol and biotype of every ``gene`` record of a GTF."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 9:
                raise InputError(
                    f"{path}: line {line_number} has {len(fields)} tab-separated fields, not "
                    "the 9 of a GTF; give a GTF file or a gene_id/symbol table."
                )
            if fields[2] != "gene":
                continue
            attributes = dict(_GTF_ATTRIBUTE.findall(fields[8]))
            if "gene_id" not in attributes:
                continue
            rows.append(
                {
                    "gene_id": attributes["gene_id"],
                    "symbol": attributes.get("gene_name", attributes["gene_id"]),
                    "biotype": attributes.get("gene_biotype", attributes.get("gene_type", "")),
                }
            )
    if not rows:
        raise InputError(
            f"{path}: no 'gene' records with a gene_id attribute; give the GTF the counts "
            "were made with (Ensembl or GENCODE)."
        )
    return pd.DataFrame(rows).drop_duplicates("gene_id").set_index("gene_id")


def _without_version(ids: pd.Index) -> pd.Index:
    # Ensembl IDs carry a version suffix (ENSG00000141510.17) in some files and not others.
    return pd.Index([i.split(".")[0] if i.startswith("ENS") else i for i in ids])


def join_clinical(samples: pd.DataFrame, clinical: pd.DataFrame) -> pd.DataFrame:
    """The sample sheet with the clinical measures of each sample's subject and timepoint.

    A measure whose name the sheet already uses gets the suffix ``_clinical``.
    """
    return samples.merge(
        clinical, on=["subject", "timepoint"], how="left", suffixes=("", "_clinical")
    ).set_index(samples.index)


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
        obs = join_clinical(obs, clinical)
        log.info("joined %d clinical measures to %d samples", clinical.shape[1] - 2, len(obs))
    if timepoints is not None:
        obs["timepoint"] = pd.Categorical(obs["timepoint"], categories=timepoints, ordered=True)
    # An unnamed index beside the gene_id column: var.reset_index() gives "index", no clash.
    var = pd.DataFrame(index=counts.index.astype(str).rename(None))
    var["gene_id"] = var.index
    if annotation is not None:
        if not var.index.isin(annotation.index).any():
            annotation = annotation.set_axis(_without_version(annotation.index))
            annotation = annotation[~annotation.index.duplicated()]
            keys = _without_version(var.index)
        else:
            keys = var.index
        var["symbol"] = annotation["symbol"].reindex(keys).to_numpy()
        if "biotype" in annotation.columns:
            var["biotype"] = annotation["biotype"].reindex(keys).fillna("").to_numpy()
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
    # The raw counts are X, as integers (a float32 copy would round 20,000,001 to 2e7).
    adata = ad.AnnData(X=counts.to_numpy(dtype=np.int64).T, obs=obs, var=var)
    adata.obs_names = obs.index.astype(str)
    adata.uns["description"] = describe(adata)
    for column in adata.obs.columns:
        if adata.obs[column].dtype == object:
            adata.obs[column] = adata.obs[column].fillna("").astype(str)
    return adata


def raw_counts(adata: ad.AnnData) -> np.ndarray:
    """The raw integer counts: ``layers["counts"]`` of the cohort, ``X`` of counts.h5ad."""
    return adata.layers["counts"] if "counts" in adata.layers else adata.X


#: What each part of the workflow's AnnData files holds (written to ``uns["description"]``).
DESCRIPTIONS = {
    "X_counts": "raw integer read counts (samples x genes), every gene of the count input",
    "X_vst": (
        "DESeq2 variance-stabilizing transformation (blind, as vst(blind=TRUE)), float32, "
        "the same values as layers['vst']"
    ),
    "counts": "raw integer read counts of the genes kept by filtering",
    "normalized": "DESeq2 median-of-ratios normalized counts (counts / size_factor)",
    "vst": "DESeq2 variance-stabilizing transformation, log2-like scale, float64",
    "logcpm": "log2(counts per million + 1), library size over the kept genes",
    "X_pca": "PCA of the VST values of the QC stage's most variable genes (see uns['pca'])",
    "ifn": "obs ifn_<signature>_<method>: IFN score; ..._positive: the positivity call",
}


def describe(adata: ad.AnnData) -> dict:
    """``uns["description"]``: what X, each layer, obs and obsm of ``adata`` hold.

    Nested by part (``{"X": ..., "layers": {name: ...}, "obsm": {...}}``): h5ad keys cannot
    hold slashes."""
    x_kind = "X_counts" if "counts" not in adata.layers and "vst" not in adata.layers else "X_vst"
    description: dict = {"X": DESCRIPTIONS[x_kind]}
    if adata.layers:
        description["layers"] = {name: DESCRIPTIONS.get(name, name) for name in adata.layers}
    if adata.obsm:
        description["obsm"] = {key: DESCRIPTIONS.get(key, key) for key in adata.obsm}
    if any(str(c).startswith("ifn_") for c in adata.obs.columns):
        description["obs"] = DESCRIPTIONS["ifn"]
    return description


def filter_genes(adata: ad.AnnData, min_count: int, min_samples: int) -> ad.AnnData:
    """Keep genes with at least ``min_count`` raw counts in at least ``min_samples`` samples."""
    counts = raw_counts(adata)
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

    raw = np.asarray(raw_counts(adata), dtype=np.int64)
    adata.layers["counts"] = raw
    counts = pd.DataFrame(raw, index=adata.obs_names, columns=adata.var_names)
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
    adata.uns["description"] = describe(adata)
    return adata


def log_geometric_means(counts: np.ndarray) -> np.ndarray:
    """Per gene, the mean over samples of log counts (DESeq2's ``log(geoMeans)``).

    ``-inf`` for a gene with a zero count in any sample: such genes do not take part in the
    median of ratios (pydeseq2 ``deseq2_norm_fit``, DESeq2 ``estimateSizeFactorsForMatrix``).
    """
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(counts)).mean(axis=0)


def size_factors_from(counts: np.ndarray, log_geo_means: np.ndarray) -> np.ndarray:
    """Median-of-ratios size factors of samples against a frozen pseudo-reference.

    As DESeq2's ``estimateSizeFactors(dds, geoMeans=...)``: per sample, the exponential of
    the median over genes with a finite log geometric mean and a positive count of
    ``log(count) - log_geo_mean``. Unlike DESeq2 with incoming ``geoMeans``, the factors are
    not rescaled to a geometric mean of 1 over the new samples: that rescaling would make a
    sample's factor depend on the samples normalized with it (one sample alone would always
    get 1). For the samples the pseudo-reference was computed from, every such count is
    positive and the factors equal pydeseq2's.

    Parameters
    ----------
    counts
        Samples x genes raw counts, genes in the order of ``log_geo_means``.
    log_geo_means
        From :func:`log_geometric_means` of the reference cohort.
    """
    usable = np.isfinite(log_geo_means)
    block = np.asarray(counts, dtype=float)[:, usable]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(block > 0, np.log(block) - log_geo_means[usable], np.nan)
    empty = np.isnan(ratios).all(axis=1)
    if empty.any():
        raise InputError(
            f"sample {int(np.flatnonzero(empty)[0]) + 1} of the new counts has no read in any "
            "of the reference's size-factor genes; check that the sample's counts are not "
            "empty and use the same gene IDs as the reference."
        )
    return np.exp(np.nanmedian(ratios, axis=1))


def vst_parametric(normalized: np.ndarray, asympt_disp: float, extra_pois: float) -> np.ndarray:
    """DESeq2's closed-form VST for a parametric dispersion trend a0 + a1 / mean.

    ``log2((1 + a1 + 2 a0 q + 2 sqrt(a0 q (1 + a1 + a0 q))) / (4 a0))`` of normalized counts
    ``q``, with ``a0`` = ``asymptDisp`` and ``a1`` = ``extraPois`` (DESeq2
    ``getVarianceStabilizedData``; pydeseq2 ``vst_transform`` with ``vst_trend_coeffs``).
    Applied with a cohort's frozen trend it is ``varianceStabilizingTransformation(newdata,
    blind=FALSE)`` after ``dispersionFunction(newdata) <- dispersionFunction(dds)``.
    """
    q = np.asarray(normalized, dtype=float)
    a0, a1 = asympt_disp, extra_pois
    return np.log2((1 + a1 + 2 * a0 * q + 2 * np.sqrt(a0 * q * (1 + a1 + a0 * q))) / (4 * a0))


def log_cpm(counts: np.ndarray) -> np.ndarray:
    """log2(counts per million + 1), library size = column total of the kept genes."""
    library = counts.sum(axis=1, keepdims=True).astype(float)
    return np.log2(counts / np.maximum(library, 1.0) * 1e6 + 1.0)


def layer_table(adata: ad.AnnData, layer: str) -> pd.DataFrame:
    """One layer as a gene x sample table, with the gene ID and symbol first."""
    frame = pd.DataFrame(
        np.asarray(adata.layers[layer]).T, index=adata.var_names, columns=adata.obs_names
    )
    frame.insert(0, "symbol", adata.var["symbol"].astype(str).to_numpy())
    frame.insert(0, "gene_id", adata.var_names)
    return frame


def annotate_cohort(adata: ad.AnnData, scores: pd.DataFrame, qc: ad.AnnData) -> ad.AnnData:
    """Add the IFN scores and calls (``ifn_<signature>_<method>[_positive]``) and the QC
    metrics, composition scores and flag status of ``qc`` (the QC stage's AnnData) to obs,
    and the QC PCA as ``obsm["X_qc_pca"]`` (in place)."""
    from ifnsig.scores import scores_wide

    wide = scores_wide(scores).reindex(adata.obs_names)
    extra = qc.obs.reindex(adata.obs_names)
    extra = extra[[c for c in extra.columns if c not in adata.obs.columns]]
    adata.obs = adata.obs.join(extra).join(wide)
    adata.obsm["X_qc_pca"] = np.asarray(qc.obsm["X_pca"])[qc.obs_names.get_indexer(adata.obs_names)]
    adata.uns["qc_pca"] = dict(qc.uns.get("pca", {}))
    description = describe(adata)
    description["obsm"]["X_qc_pca"] = DESCRIPTIONS["X_pca"] + " (uns['qc_pca'])"
    description["obs"] = "sample sheet, size_factor, QC metrics and flags; " + DESCRIPTIONS["ifn"]
    adata.uns["description"] = description
    return adata


def write_h5ad(adata: ad.AnnData, path: str | Path) -> None:
    """Write AnnData compressed; obs columns are made h5ad-safe first."""
    adata.write_h5ad(path, compression="gzip")
