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
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.io import atomic_output, read_sheet, readable, require_file

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
    frame = read_sheet(
        path, ["gene_id", "symbol", "biotype"], id_columns=("gene_id",), separators="\t,"
    )
    missing = [c for c in ["gene_id", "symbol"] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: column(s) {', '.join(missing)} missing from the header "
            f"({', '.join(frame.columns[:5])}); the annotation table needs gene_id and symbol "
            "columns (biotype optional), tab- or comma-separated, or give a GTF file."
        )
    if frame.empty:
        raise InputError(
            f"{path}: the annotation table has a header but no gene rows; write one row per "
            "gene ID with its symbol."
        )
    empty = frame["gene_id"] == ""
    if empty.any():
        raise InputError(
            f"{path}: line {int(empty.to_numpy().nonzero()[0][0]) + 2}, column 'gene_id' is "
            "empty; give every row a gene ID or remove the row."
        )
    duplicated = frame["gene_id"][frame["gene_id"].duplicated()]
    if not duplicated.empty:
        lines = [str(i + 2) for i in frame.index[frame["gene_id"] == duplicated.iloc[0]][:3]]
        raise InputError(
            f"{path}: gene_id '{duplicated.iloc[0]}' appears on lines {', '.join(lines)}; keep "
            "one row per gene ID."
        )
    return frame.set_index("gene_id")


def check_annotation(path: str | Path) -> None:
    """The parse-time check of the annotation: a table is read in full, a GTF's first lines.

    A gene table is small (one row per gene); a GTF holds every exon and takes a minute to
    read, so only its format is checked here and the first rule reads it in full.
    """
    path = require_file(path, "gene annotation", "annotation")
    if not path.name.lower().endswith((".gtf", ".gtf.gz", ".gff", ".gff.gz")):
        read_annotation(path)
        return
    read_gtf_genes(path, max_lines=1000, require_genes=False)


_GTF_ATTRIBUTE = re.compile(r'(\w+) "([^"]*)"')


def read_gtf_genes(
    path: Path, max_lines: int | None = None, require_genes: bool = True
) -> pd.DataFrame:
    """Gene ID, symbol and biotype of every ``gene`` record of a GTF.

    ``max_lines`` reads only the first lines (a format check); ``require_genes`` makes a
    file without gene records an error.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    rows = []
    with readable(path), opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if max_lines is not None and line_number > max_lines:
                break
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
    if not rows and require_genes:
        raise InputError(
            f"{path}: no 'gene' records with a gene_id attribute; give the GTF the counts "
            "were made with (Ensembl or GENCODE)."
        )
    if not rows:
        return pd.DataFrame(columns=["gene_id", "symbol", "biotype"]).set_index("gene_id")
    return pd.DataFrame(rows).drop_duplicates("gene_id").set_index("gene_id")


#: A library with fewer reads than this fraction of the cohort's median library size has
#: failed: its size factor would rest on a handful of genes and its values on counts of 0 or 1.
FAILED_LIBRARY_FRACTION = 0.01


def _exclude_fix() -> str:
    return f"list it under exclude_samples in {origin('exclude_samples')} (a failed library)"


def check_libraries(counts: pd.DataFrame, where: str) -> None:
    """Stop on a failed library: no reads, far fewer than the cohort, or no size factor.

    ``counts`` is genes x samples (raw counts). DESeq2's median of ratios needs genes with a
    read in every sample ("every gene contains at least one zero" is DESeq2's error): a
    sample with none of the genes that every other sample has would leave it none. The
    first rule checks every gene, the normalize job the genes kept by the filter.
    """
    if counts.shape[1] == 0 or counts.shape[0] == 0:
        return
    values = counts.to_numpy()
    library = values.sum(axis=0).astype(float)
    median = float(np.median(library))
    names = [str(c) for c in counts.columns]
    for i in np.argsort(library, kind="stable"):
        if library[i] == 0:
            raise InputError(
                f"{where}: sample '{names[i]}' has no reads (library size 0, cohort median "
                f"{median:,.0f}); {_exclude_fix()}."
            )
        if library[i] < FAILED_LIBRARY_FRACTION * median:
            raise InputError(
                f"{where}: sample '{names[i]}' has {library[i]:,.0f} reads, below "
                f"{FAILED_LIBRARY_FRACTION:.0%} of the cohort's median library size "
                f"({median:,.0f}); {_exclude_fix()}."
            )
        break
    positive = values > 0
    if positive.all(axis=1).any():
        return
    # The sample whose exclusion leaves the most genes with a read everywhere.
    others = np.array([np.delete(positive, i, axis=1).all(axis=1).sum() for i in range(len(names))])
    i = int(np.argmax(others))
    if others[i] > 0:
        raise InputError(
            f"{where}: sample '{names[i]}' has no read in any of the {others[i]} genes every "
            f"other sample has (library size {library[i]:,.0f}, cohort median {median:,.0f}), "
            f"so no median-of-ratios size factor can be computed; {_exclude_fix()}."
        )
    raise InputError(
        f"{where}: every gene has a zero count in at least one sample, so DESeq2's median-of-"
        f"ratios size factors cannot be computed; check the samples with the fewest reads "
        f"(e.g. '{names[int(np.argmin(library))]}', {library.min():,.0f} reads) and list "
        "failed libraries under exclude_samples, or lower filtering.min_samples."
    )


def gene_id_kind(ids) -> str:
    """What most gene IDs look like: ``ensembl`` (ENSG..., with or without version),
    ``entrez`` (NCBI Gene numbers) or ``symbol``."""
    ids = pd.Series(list(ids), dtype=str)
    if ids.empty:
        return "symbol"
    if ids.str.match(r"^ENS[A-Z]*G\d{6,}(\.\d+)?(_PAR_Y)?$").mean() > 0.5:
        return "ensembl"
    if ids.str.fullmatch(r"\d+").mean() > 0.5:
        return "entrez"
    return "symbol"


def symbol_summary(var: pd.DataFrame) -> dict[str, object]:
    """Gene IDs without a symbol and symbols shared by several gene IDs, for the log and
    the coverage table."""
    annotated = var["annotated"].astype(bool) if "annotated" in var else None
    without = [] if annotated is None or not annotated.any() else list(var.index[~annotated])
    symbols = var["symbol"].astype(str)
    shared = symbols[symbols.duplicated(keep=False)]
    return {
        "ids_without_symbol": without,
        "shared_symbols": sorted(set(shared)),
        "n_ids_sharing": int(len(shared)),
    }


def log_symbols(var: pd.DataFrame, annotated: bool) -> None:
    """Say in the log which gene IDs have no symbol and which symbols several IDs share."""
    summary = symbol_summary(var)
    without = summary["ids_without_symbol"]
    if annotated:
        log.info(
            "annotation: %d of %d gene IDs have no symbol and keep their ID as symbol%s",
            len(without),
            len(var),
            f" (e.g. {', '.join(map(str, without[:5]))})" if without else "",
        )
    shared = summary["shared_symbols"]
    if shared:
        log.info(
            "%d symbols are shared by %d gene IDs (e.g. %s): the tables keep every gene ID; the "
            "scores and the enrichment use, per symbol, the gene ID with the highest mean "
            "normalized count",
            len(shared),
            summary["n_ids_sharing"],
            ", ".join(shared[:5]),
        )


def one_gene_per_symbol(symbols, means) -> np.ndarray:
    """Mask of the gene ID kept for each symbol: the one with the highest mean count.

    Ensembl and GENCODE give some symbols several gene IDs (readthrough and patch loci, PAR
    copies, retired IDs); gene sets name symbols, so the scores and the enrichment use each
    symbol once, as the gene ID with the highest mean normalized count (ties: the first in
    the count matrix). The tables keep every gene ID. Empty symbols are never kept.
    """
    symbols = pd.Series(symbols).astype(str).to_numpy()
    frame = pd.DataFrame(
        {"symbol": symbols, "mean": np.asarray(means, dtype=float), "pos": np.arange(len(symbols))}
    )
    frame = frame.sort_values(["mean", "pos"], ascending=[False, True], kind="mergesort")
    keep = np.zeros(len(symbols), dtype=bool)
    keep[frame.drop_duplicates("symbol")["pos"].to_numpy()] = True
    return keep & (symbols != "")


def without_ensembl_version(ids) -> pd.Index:
    """Gene IDs with the version suffix of Ensembl IDs removed (ENSG00000141510.17 ->
    ENSG00000141510); other IDs unchanged."""
    # Some files carry the suffix and others not, so matching compares IDs without it.
    return pd.Index([i.split(".")[0] if i.startswith("ENS") else i for i in map(str, ids)])


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
    annotation_file: str | None = None,
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
            annotation = annotation.set_axis(without_ensembl_version(annotation.index))
            annotation = annotation[~annotation.index.duplicated()]
            keys = without_ensembl_version(var.index)
        else:
            keys = var.index
        var["symbol"] = annotation["symbol"].reindex(keys).to_numpy()
        if "biotype" in annotation.columns:
            var["biotype"] = annotation["biotype"].reindex(keys).fillna("").to_numpy()
        unmatched = var["symbol"].isna().sum()
        if unmatched == len(var):
            where = annotation_file or f"annotation in {origin('annotation')}"
            raise InputError(
                f"{where}: none of the count matrix's gene IDs (e.g. '{var.index[0]}') is in "
                f"its gene_id column (e.g. '{annotation.index[0]}'); give the annotation of the "
                "same IDs (Ensembl IDs match with or without version suffix)."
            )
        var["annotated"] = var["symbol"].notna()
        var["symbol"] = var["symbol"].fillna(var["gene_id"])
    else:
        var["symbol"] = var["gene_id"]
        var["annotated"] = False
    log_symbols(var, annotation is not None)
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
    plots use the same normalization as the differential expression. Its gene-wise
    dispersion fit runs through :class:`ifnsig.blind_vst.BlindVSTInference`: pydeseq2's
    values bit for bit, in a third of the time.
    """
    from pydeseq2.dds import DeseqDataSet

    from ifnsig.blind_vst import BlindVSTInference

    raw = np.asarray(raw_counts(adata), dtype=np.int64)
    adata.layers["counts"] = raw
    counts = pd.DataFrame(raw, index=adata.obs_names, columns=adata.var_names)
    metadata = pd.DataFrame({"all": "all"}, index=adata.obs_names)
    dds = DeseqDataSet(
        counts=counts,
        metadata=metadata,
        design="~1",
        inference=BlindVSTInference(n_cpus=n_cpus),
        quiet=True,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dds.vst(use_design=False)
    for warning in caught:
        if "did not converge" in str(warning.message):
            continue
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    adata.obs["size_factor"] = np.asarray(dds.obs["size_factors"], dtype=float)
    adata.layers["normalized"] = np.asarray(dds.layers["normed_counts"], dtype=np.float64)
    adata.layers["vst"] = np.asarray(dds.layers["vst_counts"], dtype=np.float64)
    fit_type, trend = str(dds.vst_fit_type), dds.uns.get("vst_trend_coeffs")
    mean_disp = dds.uns.get("mean_disp")
    # The fitted means and pydeseq2's copy of the counts (a samples x genes matrix each) are
    # freed before the log-CPM layer is made.
    del dds, counts
    adata.layers["logcpm"] = log_cpm(adata.layers["counts"])
    if fit_type == "mean":
        # pydeseq2 falls back to a constant dispersion (DESeq2's fitType "mean") when the
        # parametric trend does not converge, as with few genes or near-Poisson counts. The
        # closed form of the parametric VST with a1 = 0 is the same transformation, so the
        # trend is stored as (a0, a1) = (mean dispersion, 0) for the frozen reference.
        mean_disp = float(mean_disp)
        log.warning(
            "the VST's parametric dispersion trend a0 + a1 / mean did not converge on these "
            "%d genes (as happens with few genes or dispersions close to Poisson); the VST "
            "uses their mean dispersion %.4g instead, as DESeq2's fitType = 'mean'",
            adata.n_vars,
            mean_disp,
        )
        adata.uns["vst_trend_coeffs"] = np.array([mean_disp, 0.0])
    else:
        adata.uns["vst_trend_coeffs"] = np.asarray(trend, dtype=float)
    adata.uns["vst_fit_type"] = fit_type
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
    # In place: one matrix of temporaries instead of three, the same values.
    out = counts / np.maximum(library, 1.0)
    out *= 1e6
    out += 1.0
    return np.log2(out, out=out)


def read_layers(path: str | Path, layers: list[str]) -> ad.AnnData:
    """``obs``, ``var`` and ``uns`` of an ``.h5ad`` with only the named ``layers`` (no ``X``).

    The same values as ``ad.read_h5ad(path)`` for what it holds; the cohort's other layers
    (four matrices of samples x genes besides ``X``) are never read.
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(path, "r") as handle:
        adata = ad.AnnData(
            obs=read_elem(handle["obs"]),
            var=read_elem(handle["var"]),
            uns=read_elem(handle["uns"]) if "uns" in handle else {},
        )
        for layer in layers:
            adata.layers[layer] = read_elem(handle[f"layers/{layer}"])
    return adata


def layer_table(adata: ad.AnnData, layer: str) -> pd.DataFrame:
    """One layer as a gene x sample table, with the gene ID and symbol first."""
    frame = pd.DataFrame(
        np.asarray(adata.layers[layer]).T, index=adata.var_names, columns=adata.obs_names
    )
    frame.insert(0, "symbol", adata.var["symbol"].astype(str).to_numpy())
    frame.insert(0, "gene_id", adata.var_names)
    return frame


#: Values of a layer that :func:`write_layer_tsv` holds at once (genes x samples).
LAYER_BLOCK_VALUES = 2_000_000
_QUOTED = re.compile(r'[\t"\n\r]')


def write_layer_tsv(h5ad: str | Path, layer: str, path: str | Path) -> None:
    """One layer of an ``.h5ad`` as the TSV of :func:`layer_table` (``%.10g``), a block of
    genes at a time.

    The bytes are those of ``layer_table(...).to_csv(sep="\t", index=False,
    float_format="%.10g")``; a block of whole HDF5 chunks of genes is read from the file
    and each row formatted by one ``%`` of a format holding every sample (0.8 s for 2
    million values, against 1.4 s formatting each value apart and about 4 s for pandas),
    and memory holds one block instead of two copies of the matrix. Blocks with a missing
    or infinite value, and labels that the CSV writer would quote, are written by pandas.
    """
    import h5py
    from anndata.io import read_elem

    with h5py.File(h5ad, "r") as handle, atomic_output(path) as partial:
        obs, var = read_elem(handle["obs"]), read_elem(handle["var"])
        stored = handle[f"layers/{layer}"]
        matrix = stored if isinstance(stored, h5py.Dataset) else read_elem(stored)
        samples = obs.index.astype(str).to_numpy()
        genes = var.index.astype(str).to_numpy()
        symbols = var["symbol"].astype(str).to_numpy()
        plain_samples = not any(_QUOTED.search(name) for name in samples)
        block = max(1, LAYER_BLOCK_VALUES // max(len(samples), 1))
        chunks = getattr(matrix, "chunks", None)
        if chunks and block >= chunks[1]:
            # Whole chunks of genes a block: each compressed chunk is decoded once.
            block = block // chunks[1] * chunks[1]
        # One format of all the samples a row: the bytes of "%.10g" % value for each.
        row_format = "\t".join(["%.10g"] * len(samples))
        with open(partial, "w", newline="") as out:
            header = pd.DataFrame(columns=["gene_id", "symbol", *samples])
            header.to_csv(out, sep="\t", index=False)
            for start in range(0, len(genes), block):
                part = slice(start, start + block)
                values = np.asarray(matrix[:, part]).T
                ids, names = genes[part], symbols[part]
                labels_plain = not any(_QUOTED.search(x) for x in [*ids, *names])
                if plain_samples and labels_plain and np.isfinite(values).all():
                    out.writelines(
                        f"{gene}\t{symbol}\t" + row_format % tuple(row.tolist()) + "\n"
                        for gene, symbol, row in zip(ids, names, values, strict=True)
                    )
                else:
                    frame = pd.DataFrame(values, columns=obs.index)
                    frame.insert(0, "symbol", names)
                    frame.insert(0, "gene_id", var.index[part])
                    frame.to_csv(out, sep="\t", index=False, header=False, float_format="%.10g")


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
    # X and the layers are described by the normalized file (which may be read without them).
    description = dict(adata.uns.get("description") or describe(adata))
    description["obsm"] = {
        **description.get("obsm", {}),
        "X_qc_pca": DESCRIPTIONS["X_pca"] + " (uns['qc_pca'])",
    }
    description["obs"] = "sample sheet, size_factor, QC metrics and flags; " + DESCRIPTIONS["ifn"]
    adata.uns["description"] = description
    return adata


#: zlib level of the matrices in the ``.h5ad`` files: h5py's default for ``compression="gzip"``.
GZIP_LEVEL = 4


def write_h5ad(adata: ad.AnnData, path: str | Path, threads: int = 1) -> None:
    """Write AnnData compressed (gzip, h5py's chunk shapes); obs columns are made h5ad-safe.

    With ``threads`` > 1, the dense matrices (``X`` and the layers) are compressed a chunk at
    a time on that many threads and written as stored chunks (:func:`_write_compressed`):
    HDF5 runs its own gzip filter under h5py's lock, one chunk after another, while
    Python's zlib lets other threads run as it compresses. Each chunk is the same bytes
    HDF5 would store (the same zlib at the same level), so the file holds the same values
    and chunks; only the order of its elements differs. An AnnData with ``raw`` is written
    by anndata alone.
    """
    import h5py

    dense = {}
    if threads > 1 and adata.raw is None:
        dense = {
            key: matrix
            for key, matrix in [
                ("X", adata.X),
                *((f"layers/{k}", v) for k, v in adata.layers.items()),
            ]
            if isinstance(matrix, np.ndarray) and matrix.dtype.kind in "biuf" and matrix.size
        }
    with atomic_output(path) as partial:
        if not dense:
            adata.write_h5ad(partial, compression="gzip")
            return
        shell = ad.AnnData(
            X=None if "X" in dense else adata.X,
            obs=adata.obs,
            var=adata.var,
            uns=adata.uns,
            obsm=adata.obsm,
            varm=adata.varm,
            obsp=adata.obsp,
            varp=adata.varp,
            layers={k: v for k, v in adata.layers.items() if f"layers/{k}" not in dense},
        )
        shell.write_h5ad(partial, compression="gzip")
        with h5py.File(partial, "r+") as out, ThreadPoolExecutor(threads) as pool:
            for key, matrix in dense.items():
                _write_compressed(out, key, matrix, pool)


def _write_compressed(out, key: str, matrix: np.ndarray, pool: ThreadPoolExecutor) -> None:
    """``matrix`` as the gzip-compressed dataset ``key`` of the open HDF5 file ``out``, as
    anndata writes a dense array (h5py's guessed chunks, gzip at :data:`GZIP_LEVEL`), its
    chunks compressed on the threads of ``pool``.

    HDF5 stores edge chunks whole, the part outside the matrix filled with zeros (the fill
    value), and so are they here.
    """
    import itertools
    import zlib

    from h5py._hl.filters import guess_chunk

    chunks = guess_chunk(matrix.shape, None, matrix.dtype.itemsize)
    dataset = out.create_dataset(
        key,
        shape=matrix.shape,
        dtype=matrix.dtype,
        chunks=chunks,
        compression="gzip",
        compression_opts=GZIP_LEVEL,
    )
    dataset.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})

    def compressed(offset: tuple[int, ...]) -> bytes:
        block = matrix[tuple(slice(o, o + c) for o, c in zip(offset, chunks, strict=True))]
        if block.shape != chunks:
            whole = np.zeros(chunks, dtype=matrix.dtype)
            whole[tuple(slice(0, n) for n in block.shape)] = block
            block = whole
        return zlib.compress(np.ascontiguousarray(block), GZIP_LEVEL)

    offsets = list(
        itertools.product(*(range(0, n, c) for n, c in zip(matrix.shape, chunks, strict=True)))
    )
    for offset, data in zip(offsets, pool.map(compressed, offsets), strict=True):
        dataset.id.write_direct_chunk(offset, data)


def write_h5ad_with_matrices_of(adata: ad.AnnData, source: str | Path, path: str | Path) -> None:
    """Write ``adata`` (obs, var, uns, obsm; no X or layers) with X and the layers of the
    ``.h5ad`` file ``source``, copied as stored.

    HDF5 copies the compressed chunks as they are, so the matrices are neither decoded nor
    compressed again: the values of reading ``source`` whole and writing it with
    :func:`write_h5ad`, in a tenth of the time.
    """
    import h5py

    if adata.X is not None or adata.layers:
        raise ValueError("adata must hold no X or layers: they are copied from the source")
    with atomic_output(path) as partial:
        adata.write_h5ad(partial, compression="gzip")
        with h5py.File(source, "r") as stored, h5py.File(partial, "r+") as out:
            for key in ("X", "layers"):
                if key in stored:
                    if key in out:
                        del out[key]
                    stored.copy(stored[key], out, key)
