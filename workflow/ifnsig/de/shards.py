"""Differential expression split by genes across jobs, with the tables of the one-job fit.

DESeq2's own parallel mode (``DESeq(parallel = TRUE)``, R/core.R ``DESeqParallel``) runs the
gene-wise steps on row shards with two barriers over all genes; the same split is used here,
one job per step and shard:

1. size factors (median of ratios: per gene the mean log count, then per sample the median
   log ratio, over the control genes of ``de.size_factor_genes``), read in gene blocks and
   then in sample blocks (:func:`fit_size_factors`);
2. per shard, gene-wise dispersions and the IRLS means they start from
   (:func:`genewise_step`);
3. over all genes, the dispersion trend and the prior variance of log dispersions
   (:func:`dispersion_prior`);
4. per shard, MAP dispersions, IRLS, Cook's distances, the outlier refits (gene-wise given
   the trend and the prior, as in pydeseq2's ``refit``), the Wald test or LRT
   (:func:`test_step`);
5. over all genes, apeGLM's prior scale (then :func:`ifnsig.de.shrink.shrink_genes`, one
   shard at a time), independent filtering and BH, and the final tables
   (:func:`gather_tables`).

Every step calls the same pydeseq2, :mod:`ifnsig.de.deseq2_compat` and
:mod:`ifnsig.de.fit` functions as :func:`ifnsig.de.fit.run_fit`, on the shard's genes, with
the values of the barriers injected; every product over samples gives a gene the same bits
whatever the other genes beside it, so the tables are those of the one-job fit, byte for
byte (tests/test_de_shards.py).
"""

from __future__ import annotations

import logging
import math

import h5py
import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.de.plan import Fit, design_matrix
from ifnsig.de.size_factors import check_usable
from ifnsig.errors import InputError

log = logging.getLogger(__name__)


def read_elem(element):
    """``anndata.io.read_elem``, with anndata imported on first use: the workflow imports this
    module when it parses the Snakefile."""
    from anndata.io import read_elem as read

    return read(element)


#: Samples per shard that ``de.shards: auto`` aims at: the one-job fit of a paired cohort of
#: 1,000 samples x 20,000 genes peaked at 2.8 GB (benchmarks/bench_blocked_de.py), so a shard
#: of 1,000 samples' worth of cells stays near that whatever the cohort.
AUTO_SHARD_SAMPLES = 1000

#: Genes (sample blocks: samples) read at a time when computing size factors.
BLOCK_CELLS = 2**24

#: The gene-wise step's columns of ``var`` that the later steps take up.
GENEWISE_COLUMNS = ["non_zero", "_MoM_dispersions", "genewise_dispersions", "_genewise_converged"]


def shard_count(setting: str | int, n_samples: int, n_genes: int | None = None) -> int:
    """Number of gene shards: ``setting`` if a number, else one per 1,000 samples (at least 1).

    ``auto`` keeps cohorts of up to :data:`AUTO_SHARD_SAMPLES` samples in one job. Never more
    shards than genes.
    """
    count = max(1, math.ceil(n_samples / AUTO_SHARD_SAMPLES)) if setting == "auto" else int(setting)
    return max(1, min(count, n_genes)) if n_genes is not None else max(1, count)


#: Bytes per sample x gene cell of a shard job at its peak: the counts as read, the
#: normalised counts, the means, Cook's distances, hat diagonals and the Wald test's means,
#: and their temporaries (the test jobs of 4,000 samples x 5,000 genes peaked at 1.2-2.2 GB).
SHARD_BYTES_PER_CELL = 110

#: Copies of a paired design (samples x samples / 2 doubles) a shard job holds at once: the
#: fit's own and the Wald test's (pydeseq2's ``DeseqStats`` copies it).
DESIGN_COPIES = 2


def matrix_shape(path: str) -> tuple[int, int] | None:
    """Samples and genes of the counts in an ``.h5ad`` (None when the file is absent)."""
    try:
        with h5py.File(path, "r") as handle:
            data = _counts_dataset(handle)
            shape = data.shape if isinstance(data, h5py.Dataset) else data.attrs["shape"]
    except (OSError, KeyError):
        return None
    return int(shape[0]), int(shape[1])


def shard_memory_mb(path: str, n_shards: int, base_mb: int = 1000) -> int:
    """Memory (MB) a shard job of the cohort ``path`` declares: its genes' cells and the
    paired design (``samples x samples / 2``, an upper bound for any fit of the cohort).

    ``base_mb`` alone while the file is absent (Snakemake evaluates resources again before it
    starts the job, when the file exists)."""
    shape = matrix_shape(path)
    if shape is None:
        return base_mb
    n_samples, n_genes = shape
    cells = n_samples * math.ceil(n_genes / max(n_shards, 1))
    design = DESIGN_COPIES * 8 * n_samples * (n_samples // 2 + 2)
    return int(base_mb + (SHARD_BYTES_PER_CELL * cells + design) / 2**20)


def gene_ranges(n_genes: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous gene ranges ``[start, stop)`` of nearly equal size, in gene order."""
    bounds = np.linspace(0, n_genes, n_shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


# --- reading the cohort in pieces ------------------------------------------------------------


def read_annotations(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``obs`` and ``var`` of an ``.h5ad`` without any matrix."""
    with h5py.File(path, "r") as handle:
        return read_elem(handle["obs"]), read_elem(handle["var"])


def _counts_dataset(handle: h5py.File):
    """The raw counts (``layers/counts``, else ``X``), as :func:`ifnsig.data.raw_counts`."""
    return handle["layers/counts"] if "layers/counts" in handle else handle["X"]


def read_counts(path: str, rows: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Raw counts of samples ``rows`` (positions in the file, any order), genes ``start:stop``.

    A dense matrix is read by HDF5 hyperslab (only the chunks the genes touch); a sparse one
    is read whole and sliced.
    """
    rows = np.asarray(rows, dtype=np.intp)
    with h5py.File(path, "r") as handle:
        data = _counts_dataset(handle)
        if isinstance(data, h5py.Dataset):
            return np.asarray(data[:, start:stop])[rows]
        matrix = read_elem(data)[:, start:stop]
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)[rows]


def _sample_blocks(path: str, n_genes: int):
    """Contiguous sample blocks ``(first, counts)`` of the file, every gene, bounded in size."""
    with h5py.File(path, "r") as handle:
        data = _counts_dataset(handle)
        n_samples = data.shape[0] if isinstance(data, h5py.Dataset) else None
        if n_samples is None:
            yield 0, np.asarray(read_elem(data).toarray())
            return
        block = max(1, BLOCK_CELLS // max(n_genes, 1))
        for first in range(0, n_samples, block):
            yield first, np.asarray(data[first : first + block])


def fit_size_factors(
    path: str, rows: np.ndarray, n_genes: int, control_genes: np.ndarray | None = None
) -> np.ndarray:
    """DESeq2's median-of-ratios size factors of samples ``rows``, reading pieces of the file.

    The computation of pydeseq2's ``deseq2_norm_fit`` and ``deseq2_norm_transform`` (mean
    log count per gene over the samples, then per sample the median log ratio over the genes
    whose mean is finite, among ``control_genes`` when given: a mask over the genes,
    :func:`ifnsig.de.size_factors.size_factor_genes`), first by gene blocks, then by sample
    blocks, so memory is bounded by :data:`BLOCK_CELLS` cells whatever the cohort.

    Raises
    ------
    InputError
        When every gene has a zero count: pydeseq2 then switches to iterative size factors
        over every gene at once (``fit_size_factors``), which only the one-job DE does.
    """
    rows = np.asarray(rows, dtype=np.intp)
    block = max(1, BLOCK_CELLS // max(len(rows), 1))
    logmeans = np.empty(n_genes)
    for start in range(0, n_genes, block):
        stop = min(start + block, n_genes)
        # Column-major as pydeseq2's counts (from a DataFrame): each gene's mean is then
        # the same pairwise sum whatever the block, so the factors are the one-job ones.
        block_counts = np.asfortranarray(read_counts(path, rows, start, stop))
        with np.errstate(divide="ignore"):
            logmeans[start:stop] = np.log(block_counts).mean(axis=0)
    finite = ~np.isinf(logmeans)
    if not finite.any():
        raise InputError(
            f"{path}: every gene has a zero count in at least one of the {len(rows)} samples "
            "of a fit, so pydeseq2 estimates their size factors iteratively over all genes "
            "at once, which the DE split by gene shards cannot do; set de.shards: 1 in "
            f"{origin('de.shards')} to fit this cohort in one job."
        )
    if control_genes is not None:
        check_usable(control_genes, finite, len(rows))
        finite &= control_genes
    position = pd.Series(np.arange(len(rows)), index=rows)
    medians = np.empty(len(rows))
    for first, counts in _sample_blocks(path, n_genes):
        inside = rows[(rows >= first) & (rows < first + len(counts))]
        if len(inside):
            with np.errstate(divide="ignore"):
                log_ratios = np.log(counts[inside - first])[:, finite] - logmeans[finite]
            medians[position.loc[inside].to_numpy()] = np.median(log_ratios, axis=1)
    return np.exp(medians)


def fit_positions(fit: Fit, obs: pd.DataFrame) -> np.ndarray:
    """Positions in the cohort file of the fit's samples, in the fit's order."""
    return obs.index.get_indexer(pd.Index(fit.samples))


# --- the steps ---------------------------------------------------------------------------------


def _inference(fit: Fit, samples: pd.DataFrame, settings: dict, n_cpus: int):
    from ifnsig.de.fit import choose_inference

    return choose_inference(
        fit, samples, settings["inference"], settings["blocked_min_subjects"], n_cpus
    )


def _dataset(counts: np.ndarray, genes: pd.Index, fit: Fit, size_factors: np.ndarray, inference):
    """The DESeq2-compatible dataset of one shard, with the cohort's size factors."""
    from ifnsig.de.fit import deseq_dataset

    frame = pd.DataFrame(counts, index=fit.metadata.index, columns=genes)
    dds = deseq_dataset(frame, fit, inference)
    # What pydeseq2's fit_size_factors leaves, with factors computed over the whole cohort.
    dds.obs["size_factors"] = size_factors
    dds.layers["normed_counts"] = dds.X / size_factors[:, None]
    dds.var["_normed_means"] = dds.layers["normed_counts"].mean(axis=0)
    return dds


def genewise_step(
    counts: np.ndarray,
    genes: pd.Index,
    fit: Fit,
    samples: pd.DataFrame,
    size_factors: np.ndarray,
    settings: dict,
    n_cpus: int = 1,
) -> dict:
    """Gene-wise dispersions of one shard, and the IRLS means the MAP step starts from."""
    dds = _dataset(counts, genes, fit, size_factors, _inference(fit, samples, settings, n_cpus))
    dds.fit_genewise_dispersions()
    columns = ["_normed_means", *GENEWISE_COLUMNS]
    return {
        "var": dds.var[columns].copy(),
        "mu_hat": np.asarray(dds.layers["_mu_hat"]),
        "n_coefficients": dds.obsm["design_matrix"].shape[1],
    }


def dispersion_prior(
    fit: Fit,
    var: pd.DataFrame,
    samples: pd.DataFrame,
    settings: dict,
    n_coefficients: int | None = None,
) -> dict:
    """Dispersion trend and prior variance over every gene, from the shards' gene-wise steps.

    The dataset's own ``fit_dispersion_trend`` and ``fit_dispersion_prior`` run on a
    stand-in with every gene's ``var`` and an empty (sparse) count matrix: they read only
    ``var``, the number of samples and the design's number of columns, so the design
    stands in as an empty sparse matrix of its shape when ``n_coefficients`` (the gene-wise
    step's) is given.
    """
    import anndata as ad
    from scipy import sparse

    from ifnsig.de.deseq2_compat import deseq_dataset_class

    cls = deseq_dataset_class()
    dds = cls.__new__(cls)
    ad.AnnData.__init__(
        dds, X=sparse.csr_matrix((len(fit.samples), len(var))), obs=fit.metadata, var=var.copy()
    )
    dds.obsm["design_matrix"] = (
        design_matrix(fit)
        if n_coefficients is None
        else sparse.csr_matrix((len(fit.samples), n_coefficients))
    )
    dds.fit_type, dds.min_disp, dds.quiet = "parametric", 1e-8, True
    dds.max_disp = np.maximum(10.0, dds.n_obs)
    dds.inference = _inference(fit, samples, settings, 1)
    dds.non_zero_idx = np.arange(dds.n_vars)[dds.var["non_zero"].to_numpy(dtype=bool)]
    dds.non_zero_genes = dds.var_names[dds.var["non_zero"].to_numpy(dtype=bool)]
    dds.fit_dispersion_trend()
    dds.fit_dispersion_prior()
    keys = [
        "disp_function_type",
        "trend_coeffs",
        "mean_disp",
        "_squared_logres",
        "prior_disp_var",
        "near_poisson",
    ]
    return {
        "uns": {key: dds.uns[key] for key in keys if key in dds.uns},
        "fitted_dispersions": dds.var["fitted_dispersions"].copy(),
    }


def test_step(
    counts: np.ndarray,
    genes: pd.Index,
    fit: Fit,
    samples: pd.DataFrame,
    size_factors: np.ndarray,
    genewise: dict,
    prior: dict,
    settings: dict,
    n_cpus: int = 1,
) -> dict:
    """MAP dispersions, LFCs, Cook's refits and the tests of one shard, per DE table.

    Returns ``tables``: table name -> the shard's rows of ``baseMean``, ``log2FoldChange``,
    ``lfcSE``, ``stat``, ``pvalue``, ``test``, and what apeGLM needs later (natural-log LFC
    of the contrast's coefficient, its SE, the dispersions); ``coefficients``: table name
    -> the coefficient apeGLM shrinks (or None); ``n_coefficients``; ``mle``: the shard's
    maximum likelihood coefficients (genes x coefficients), apeGLM's start.
    """
    from ifnsig.de.fit import contrast_tests

    backend = _inference(fit, samples, settings, n_cpus)
    dds = _dataset(counts, genes, fit, size_factors, backend)
    for column in GENEWISE_COLUMNS:
        dds.var[column] = genewise["var"][column].to_numpy()
    non_zero = dds.var["non_zero"].to_numpy(dtype=bool)
    dds.non_zero_idx = np.arange(dds.n_vars)[non_zero]
    dds.non_zero_genes = dds.var_names[non_zero]
    dds.layers["_mu_hat"] = genewise["mu_hat"]
    dds.uns.update(prior["uns"])
    dds.var["fitted_dispersions"] = prior["fitted_dispersions"].loc[genes].to_numpy()
    # The rest of DeseqDataSet.deseq2() after the prior variance.
    dds.fit_MAP_dispersions()
    dds.fit_LFC()
    dds.calculate_cooks()
    dds.refit()
    dds.cooks_outlier()
    log.info(
        "%s, genes %s to %s: %d gene(s) with Cook's outliers refitted",
        fit.formula,
        genes[0],
        genes[-1],
        int(dds.var["refitted"].sum()),
    )
    tables, coefficients = {}, {}
    for test in contrast_tests(dds, fit, backend, settings["alpha"], settings["wald_distribution"]):
        table = test.table.drop(columns="padj")
        table["test"] = test.test
        if test.coefficient is not None:
            table["_lfc"] = test.stats.LFC[test.coefficient].to_numpy()
            table["_se"] = test.stats.SE.to_numpy()
        table["_dispersions"] = dds.var["dispersions"].to_numpy()
        table["_non_zero"] = non_zero
        tables[test.name] = table
        coefficients[test.name] = test.coefficient
    # The maximum likelihood coefficients apeGLM starts from (the same for every contrast).
    mle = dds.varm["LFC"].to_numpy(dtype=float)
    n_coefficients = dds.obsm["design_matrix"].shape[1]
    return {
        "tables": tables,
        "coefficients": coefficients,
        "n_coefficients": n_coefficients,
        "mle": mle,
    }


def _shrunk(
    parts: list[pd.DataFrame],
    read_mle,
    read_shard,
    fit: Fit,
    size_factors: np.ndarray,
    coefficient: str,
    n_cpus: int,
) -> np.ndarray:
    """apeGLM-shrunk log2 fold changes of ``coefficient``, as :func:`run_fit`'s.

    The prior scale over every gene (:func:`ifnsig.de.shrink.prior_scale`), then
    :func:`ifnsig.de.shrink.shrink_genes` one shard at a time, on its original counts and
    maximum likelihood coefficients (``read_shard(i)``, ``read_mle(i)``).
    """
    from ifnsig.de.shrink import prior_scale, shrink_genes

    whole = pd.concat(parts)
    scale = prior_scale(whole["_lfc"].to_numpy(), whole["_se"].to_numpy())
    design = design_matrix(fit)
    index = list(design.columns).index(coefficient)
    design = design.to_numpy(dtype=float)
    out = []
    for shard, part in enumerate(parts):
        mle = read_mle(shard)
        genes = np.flatnonzero(part["_non_zero"].to_numpy(dtype=bool))
        out.append(
            shrink_genes(
                part["_lfc"].to_numpy(dtype=float),
                genes,
                design,
                read_shard(shard)[:, genes],
                part["_dispersions"].to_numpy(dtype=float)[genes],
                size_factors,
                mle[genes],
                part["_se"].to_numpy(dtype=float)[genes],
                index,
                scale,
                n_cpus,
            )
        )
    return np.concatenate(out)


def gather_tables(
    fit: Fit,
    shard_results: list[dict],
    read_shard,
    var: pd.DataFrame,
    size_factors: np.ndarray,
    settings: dict,
    shrink: bool = True,
    n_cpus: int = 1,
    read_mle=None,
) -> dict[str, pd.DataFrame]:
    """The fit's DE tables from its shards, as :func:`run_fit` writes them.

    ``read_shard(i)`` returns shard ``i``'s raw counts (fit samples x genes) for apeGLM, and
    ``read_mle(i)`` its maximum likelihood coefficients (genes x coefficients; by default
    ``shard_results[i]["mle"]``): read one shard at a time, as they hold genes x samples / 2
    numbers on a paired design.
    """
    from ifnsig.de.fit import reported_table, shrunk_column

    n_coefficients = shard_results[0]["n_coefficients"]
    if read_mle is None:

        def read_mle(shard: int) -> np.ndarray:
            return shard_results[shard]["mle"]

    results = {}
    for name, coefficient in shard_results[0]["coefficients"].items():
        parts = [result["tables"][name] for result in shard_results]
        table = pd.concat(parts)
        out = reported_table(name, table, var["symbol"], settings["alpha"])
        if shrink:
            out["log2FoldChange_shrunk"] = shrunk_column(
                name,
                coefficient,
                n_coefficients,
                settings["shrink_max_coefficients"],
                lambda c, parts=parts: _shrunk(
                    parts, read_mle, read_shard, fit, size_factors, c, n_cpus
                ),
                len(out),
            )
        out["test"] = table["test"].to_numpy()
        results[name] = out.reset_index(drop=True)
    return results


def run_sharded(
    path: str,
    fits: list[Fit],
    samples: pd.DataFrame,
    settings: dict,
    n_shards: int,
    n_cpus: int = 1,
    control_genes: np.ndarray | None = None,
) -> dict[str, pd.DataFrame]:
    """Every step in this process, shard after shard: what the jobs of the sharded DE compute.

    ``settings`` is the ``de`` part of the configuration; ``path`` the cohort ``.h5ad``;
    ``control_genes`` the genes of the size factors (a mask, None for all).
    """
    obs, var = read_annotations(path)
    ranges = gene_ranges(len(var), n_shards)
    results = {}
    for fit in fits:
        rows = fit_positions(fit, obs)
        factors = fit_size_factors(path, rows, len(var), control_genes)

        def read_shard(i: int, rows=rows) -> np.ndarray:
            return read_counts(path, rows, *ranges[i])

        genewise = [
            genewise_step(read_shard(i), var.index[a:b], fit, samples, factors, settings, n_cpus)
            for i, (a, b) in enumerate(ranges)
        ]
        prior = dispersion_prior(
            fit, pd.concat([g["var"] for g in genewise]), samples, settings,
            genewise[0]["n_coefficients"],
        )  # fmt: skip
        tested = [
            test_step(
                read_shard(i),
                var.index[a:b],
                fit,
                samples,
                factors,
                genewise[i],
                prior,
                settings,
                n_cpus,
            )  # fmt: skip
            for i, (a, b) in enumerate(ranges)
        ]
        results.update(
            gather_tables(fit, tested, read_shard, var, factors, settings, n_cpus=n_cpus)
        )
    return results
