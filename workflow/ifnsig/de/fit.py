"""Fitting a planned design with pydeseq2 and DESeq2's own steps.

The inference backend is chosen per fit: the subject-blocked one (:mod:`ifnsig.de.blocked`)
for paired designs (differential response designs included: the interaction columns are
among its few dense columns), the dense DESeq2-compatible one
(:mod:`ifnsig.de.deseq2_compat`) otherwise; both give the same tables to rounding. The
design matrix is built by :func:`ifnsig.de.plan.design_matrix` and contrasts are numeric
vectors over its columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig.data import raw_counts
from ifnsig.de.plan import Fit, contrast_vectors, design_matrix, reduced_design

log = logging.getLogger(__name__)


def choose_inference(fit: Fit, samples: pd.DataFrame, setting: str, min_subjects: int, n_cpus: int):
    """pydeseq2 inference for a fit: the subject-blocked backend for large paired fits.

    ``setting`` is ``auto`` (blocked when the fit is paired with at least ``min_subjects``
    subjects), ``blocked`` or ``default``. Both follow the same algorithms (pydeseq2's, with
    DESeq2's dispersion fit from :mod:`ifnsig.deseq2_compat`) and agree to rounding.
    """
    from ifnsig.de.blocked import BlockedInference
    from ifnsig.de.deseq2_compat import DESeq2Inference

    n_subjects = samples.loc[fit.samples, "subject"].nunique()
    use_blocked = fit.paired and (
        setting == "blocked" or (setting == "auto" and n_subjects >= min_subjects)
    )
    if use_blocked:
        log.info("%s: subject-blocked inference (%d subjects)", fit.formula, n_subjects)
        return BlockedInference(n_cpus=n_cpus, min_levels=2)
    log.info("%s: dense inference (%d subjects)", fit.formula, n_subjects)
    return DESeq2Inference(n_cpus=n_cpus)


def deseq_dataset(counts: pd.DataFrame, fit: Fit, backend, control_genes=None):
    """The DESeq2-compatible dataset of ``counts`` (the fit's samples x genes), no step run.

    The one place the fit's dataset is set up: the one-job fit and each gene shard of a
    sharded one (:mod:`ifnsig.de.shards`) start from it. ``control_genes`` (a mask over the
    genes, :func:`ifnsig.de.size_factors.size_factor_genes`; None for all) are the genes its
    size factors are computed from, as DESeq2's ``estimateSizeFactors(controlGenes = )``.
    """
    from ifnsig.de.deseq2_compat import deseq_dataset_class

    dds = deseq_dataset_class()(
        counts=counts,
        metadata=fit.metadata,
        design=design_matrix(fit),
        control_genes=control_genes,
        refit_cooks=True,
        inference=backend,
        quiet=True,
    )
    # results() spares outliers exceeded by three other counts only in one-factor,
    # two-level designs (DESeq2's R/results.R).
    dds.uns["cooks_count_heuristic"] = (
        not fit.paired and not fit.covariates and fit.between is None and len(fit.levels) == 2
    )
    return dds


def fit_dataset(
    adata: ad.AnnData,
    fit: Fit,
    samples: pd.DataFrame,
    n_cpus: int = 1,
    inference: str = "auto",
    blocked_min_subjects: int = 2,
    control_genes: np.ndarray | None = None,
):
    """The fitted pydeseq2 dataset of one design (``deseq2()`` done) and its backend.

    ``control_genes``: the genes of the size factors (a mask over ``adata``'s genes, None
    for all; :func:`ifnsig.de.size_factors.size_factor_genes`).
    """
    from ifnsig.de.size_factors import check_usable

    sub = adata[fit.samples]
    counts = pd.DataFrame(np.asarray(raw_counts(sub)), index=sub.obs_names, columns=sub.var_names)
    backend = choose_inference(fit, samples, inference, blocked_min_subjects, n_cpus)
    log.info("fitting %s on %d samples x %d genes", fit.formula, *counts.shape)
    if control_genes is not None:
        check_usable(control_genes, (counts.to_numpy() > 0).all(axis=0), len(counts))
        log.info("size factors from %d of the %d genes", control_genes.sum(), counts.shape[1])
    dds = deseq_dataset(counts, fit, backend, control_genes)
    dds.deseq2()
    return dds, backend


class ContrastTest(NamedTuple):
    """One DE table of a fit before filtering: what :func:`contrast_tests` yields."""

    #: Table name (:func:`ifnsig.de.plan.table_names`).
    name: str
    #: pydeseq2's ``DeseqStats`` of the contrast, ``summary()`` done.
    stats: object
    #: ``results_df`` with the statistic and p-value of the test used.
    table: pd.DataFrame
    #: The test used: ``lrt``, ``wald_normal`` or ``wald_t``.
    test: str
    #: The design column that is the contrast alone (what apeGLM shrinks), or None.
    coefficient: str | None


def contrast_tests(
    dds, fit: Fit, backend, alpha: float, wald_distribution: str
) -> Iterator[ContrastTest]:
    """Test every contrast of a fitted dataset (the whole fit's, or a gene shard's).

    Wald tests, their statistic referred to Student's t with samples minus coefficients
    degrees of freedom for ``wald_distribution="t"`` (``DESeq(useT = TRUE)``); an LRT fit
    replaces its contrast's statistic and p-value by DESeq2's likelihood-ratio test.
    """
    from ifnsig.de.deseq2_compat import deseq_stats_class, wald_t_pvalues
    from ifnsig.de.lrt import likelihood_ratio_test

    design = design_matrix(fit)
    lrt = None
    if fit.lrt:
        log.info("likelihood-ratio test: %s vs %s", fit.formula, fit.reduced_formula)
        lrt = likelihood_ratio_test(dds, reduced_design(fit, design), backend)
    n_samples, n_coefficients = design.shape
    columns = list(design.columns)
    stats_class = deseq_stats_class()
    for contrast in fit.contrasts:
        for name, vector in contrast_vectors(fit, contrast, columns).items():
            stats = stats_class(
                dds,
                contrast=vector,
                alpha=alpha,
                independent_filter=False,
                inference=backend,
                quiet=True,
            )
            stats.summary()
            table = stats.results_df.copy()
            is_lrt = lrt is not None and name == contrast.name
            if is_lrt:
                table["stat"], table["pvalue"] = lrt["stat"], lrt["pvalue"]
                log.info(
                    "%s: LRT on %d degree(s) of freedom; log2FoldChange is %s vs %s",
                    name,
                    lrt.attrs["df"],
                    contrast.test,
                    fit.reference,
                )
            elif wald_distribution == "t":
                tested = table["pvalue"].notna()
                table.loc[tested, "pvalue"] = wald_t_pvalues(
                    table.loc[tested, "stat"], n_samples - n_coefficients
                )
            one = np.count_nonzero(vector) == 1 and vector.sum() == 1
            coefficient = columns[int(np.argmax(vector))] if one else None
            # Which test gave stat and pvalue: the enrichment ranks an LRT's statistic
            # (which has no sign) by the direction of the fold change.
            test = "lrt" if is_lrt else f"wald_{wald_distribution}"
            yield ContrastTest(name, stats, table, test, coefficient)


def reported_table(
    name: str, table: pd.DataFrame, symbols: pd.Series, alpha: float
) -> pd.DataFrame:
    """A contrast's table as reported: gene ID and symbol, DESeq2's columns, ``padj``.

    ``padj`` is BH after DESeq2's independent filtering at ``alpha``, over every gene of
    ``table`` (a barrier over all genes when the DE is split by gene shards).
    """
    from ifnsig.de.deseq2_compat import independent_filtering

    out = table[["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue"]].copy()
    out["padj"], threshold = independent_filtering(out["baseMean"], out["pvalue"], alpha)
    log.info("%s: independent filtering keeps base mean >= %.3g", name, threshold)
    out.insert(0, "gene_id", out.index.astype(str))
    out.insert(1, "symbol", symbols.loc[out.index].astype(str).to_numpy())
    return out


def shrunk_column(
    name: str,
    coefficient: str | None,
    n_coefficients: int,
    shrink_max_coefficients: int,
    shrunk: Callable[[str], np.ndarray],
    n_genes: int,
) -> np.ndarray:
    """``log2FoldChange_shrunk``: ``shrunk(coefficient)``, or empty.

    Empty for a change that is not one coefficient alone, and (with a warning) for designs
    of more than ``shrink_max_coefficients`` coefficients.
    """
    if n_coefficients > shrink_max_coefficients:
        log.warning(
            "%s: no apeGLM shrinkage for a design with %d coefficients (more than "
            "de.shrink_max_coefficients = %d); log2FoldChange_shrunk is left empty",
            name,
            n_coefficients,
            shrink_max_coefficients,
        )
        return np.full(n_genes, np.nan)
    if coefficient is None:
        return np.full(n_genes, np.nan)
    return shrunk(coefficient)


def run_fit(
    adata: ad.AnnData,
    fit: Fit,
    samples: pd.DataFrame,
    alpha: float = 0.1,
    n_cpus: int = 1,
    shrink: bool = True,
    inference: str = "auto",
    blocked_min_subjects: int = 2,
    shrink_max_coefficients: int = 5000,
    wald_distribution: str = "normal",
    control_genes: np.ndarray | None = None,
) -> dict[str, pd.DataFrame]:
    """Fit one design with pydeseq2 and test each of its contrasts.

    Wald tests with DESeq2's defaults: Cook's distance outlier refit, Cook's filtering and
    independent filtering at ``alpha``; ``wald_distribution="t"`` refers the Wald statistic
    to Student's t with samples minus coefficients degrees of freedom
    (``DESeq(useT = TRUE)``). An LRT fit (``fit.lrt``) replaces the statistic and p-value
    of its contrast by DESeq2's likelihood-ratio test against ``fit.reduced_formula``
    (:func:`ifnsig.de.lrt.likelihood_ratio_test`) and keeps, as DESeq2's ``results()``
    does, the full design's Wald fold change and standard error of the reported level.
    A differential response contrast also gives the change within each group (Wald).
    The apeGLM-shrunk fold change of the contrast's coefficient is added as
    ``log2FoldChange_shrunk`` (empty for a change that is a sum of coefficients): pydeseq2's
    ``lfc_shrink`` model, fitted for all genes at once (:func:`ifnsig.de.shrink.shrunk_lfc`;
    on paired designs by the subject block, linear in the samples). Designs with more than
    ``shrink_max_coefficients`` coefficients leave the column empty. ``control_genes`` (a
    mask over the genes, None for all) are the genes of the size factors.

    Returns
    -------
    dict
        Table name (:func:`ifnsig.de.plan.table_names`) -> results table (columns
        :data:`RESULT_COLUMNS`, plus the shrunk LFC).
    """
    from ifnsig.de.shrink import shrunk_lfc

    if wald_distribution not in {"normal", "t"}:
        raise ValueError(f"wald_distribution must be normal or t, not {wald_distribution!r}")
    dds, backend = fit_dataset(
        adata, fit, samples, n_cpus, inference, blocked_min_subjects, control_genes
    )
    n_coefficients = dds.obsm["design_matrix"].shape[1]
    results = {}
    for name, stats, table, test, coefficient in contrast_tests(
        dds, fit, backend, alpha, wald_distribution
    ):
        out = reported_table(name, table, adata.var["symbol"], alpha)
        if shrink:
            out["log2FoldChange_shrunk"] = shrunk_column(
                name,
                coefficient,
                n_coefficients,
                shrink_max_coefficients,
                lambda c, stats=stats: shrunk_lfc(stats, c, n_cpus),
                len(out),
            )
        out["test"] = test
        results[name] = out.reset_index(drop=True)
    return results
