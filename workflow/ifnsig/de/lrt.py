"""DESeq2's likelihood-ratio test (``nbinomLRT``) on a fitted pydeseq2 dataset.

DESeq2 fits the full and the reduced design with the full design's dispersions and
compares them by ``2 * (logLik(full) - logLik(reduced))`` against a chi-square with as many
degrees of freedom as the designs differ in coefficients (Love et al., Genome Biol 2014;
``nbinomLRT`` in DESeq2's R/core.R). Cook's distances come from the full fit, so outliers
are flagged, replaced and refitted exactly as for the Wald test; genes whose counts were
replaced are tested on the replaced counts (``refitWithoutOutliers`` reruns the LRT on them).
The full fit is the one pydeseq2 already made; only the reduced design is fitted here, with
the same inference backend, so on a paired design the subject-blocked backend fits
``~ subject`` (the block and the intercept) in O(n) per gene.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import xlogy
from scipy.stats import chi2

__all__ = ["fitted_counts", "likelihood_ratio_test", "nb_log_likelihood_ratio"]


def nb_log_likelihood_ratio(
    counts: np.ndarray, mu_full: np.ndarray, mu_reduced: np.ndarray, dispersions: np.ndarray
) -> np.ndarray:
    """``2 * (log L(mu_full) - log L(mu_reduced))`` per gene, negative binomial likelihood.

    Parameters
    ----------
    counts, mu_full, mu_reduced
        Samples x genes.
    dispersions
        One per gene.

    Returns
    -------
    ndarray
        The LRT statistic per gene. The terms of the log likelihood that do not depend on
        the mean cancel, so only ``y log mu - (y + 1/alpha) log(1/alpha + mu)`` enters, as
        ratios (no cancellation of two large sums).
    """
    y = np.asarray(counts, dtype=float)
    size = 1.0 / np.asarray(dispersions, dtype=float)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = xlogy(y, mu_full / mu_reduced) - (y + size) * (
            np.log1p(mu_full / size) - np.log1p(mu_reduced / size)
        )
    return 2.0 * terms.sum(axis=0)


def fitted_counts(dds) -> np.ndarray:
    """The counts the fits used: the original ones, with Cook's outliers replaced in the
    genes pydeseq2 refitted (DESeq2's ``replaceCounts``)."""
    counts = np.array(dds.X, copy=True)
    if "refitted" in dds.var and dds.var["refitted"].to_numpy(dtype=bool).any():
        refitted = dds.var_names[dds.var["refitted"].to_numpy(dtype=bool)]
        columns = dds.var_names.get_indexer(refitted)
        counts[:, columns] = np.asarray(dds.counts_to_refit[:, refitted].X)
    return counts


def likelihood_ratio_test(dds, reduced: pd.DataFrame, inference) -> pd.DataFrame:
    """DESeq2's LRT of the fitted design of ``dds`` against the ``reduced`` design.

    Parameters
    ----------
    dds
        A pydeseq2 ``DeseqDataSet`` after ``deseq2()`` (dispersions, full-design LFCs,
        Cook's distances and refit).
    reduced
        Reduced design matrix (samples x coefficients), nested in the full one.
    inference
        The inference backend of the full fit; its ``irls`` fits the reduced design.

    Returns
    -------
    pandas.DataFrame
        Per gene: ``stat`` (LRT statistic), ``pvalue`` (chi-square, ``df`` in
        ``attrs["df"]``; NaN for Cook's outliers, as ``results()`` sets them) and
        ``reduced_converged``. Genes with only zero counts get NaN; genes whose counts
        became all zero after outlier replacement get statistic 0 and p-value 1, as in
        DESeq2's ``results()``.
    """
    full = dds.obsm["design_matrix"]
    x_reduced = reduced.loc[dds.obs_names].to_numpy(dtype=float)
    df = full.shape[1] - x_reduced.shape[1]
    if df < 1:
        raise ValueError("the reduced design must have fewer coefficients than the full one")
    genes = np.asarray(dds.non_zero_idx)
    counts = fitted_counts(dds)[:, genes]
    sf = dds.obs["size_factors"].to_numpy(dtype=float)
    dispersions = dds.var["dispersions"].to_numpy(dtype=float)[genes]
    beta = dds.varm["LFC"].to_numpy(dtype=float)[genes]
    # DESeq2's log likelihood takes the fitted means unfloored (minmu only bounds the IRLS);
    # the backend forms them (by the subject block on a paired design, linear in samples).
    if hasattr(inference, "fitted_means"):
        mu_full = inference.fitted_means(full, beta, sf)
    else:
        mu_full = sf[:, None] * np.exp(full.to_numpy(dtype=float) @ beta.T)
    if x_reduced.shape[1] == 1 and (x_reduced == 1).all():
        # fitNbinomGLMs fits an intercept-only design in closed form: the mean of the
        # normalised counts (not the NB maximum likelihood when size factors differ).
        mu_reduced = sf[:, None] * (counts / sf[:, None]).mean(axis=0)
        converged = np.ones(len(genes), dtype=bool)
    else:
        _, mu_reduced, _, converged = inference.irls(
            counts=counts,
            size_factors=sf,
            design_matrix=x_reduced,
            disp=dispersions,
            min_mu=dds.min_mu,
            beta_tol=dds.beta_tol,
        )
    stat = np.full(dds.n_vars, np.nan)
    stat[genes] = nb_log_likelihood_ratio(counts, mu_full, mu_reduced, dispersions)
    pvalue = chi2.sf(stat, df)
    reduced_converged = pd.array([pd.NA] * dds.n_vars, dtype="boolean")
    reduced_converged[genes] = np.asarray(converged, dtype=bool)
    table = pd.DataFrame(
        {"stat": stat, "pvalue": pvalue, "reduced_converged": reduced_converged},
        index=dds.var_names,
    )
    table.loc[dds.cooks_outlier().to_numpy(dtype=bool), "pvalue"] = np.nan
    if dds.refit_cooks and dds.var["replaced"].sum() > 0:
        table.loc[dds.new_all_zeroes_genes, ["stat", "pvalue"]] = [0.0, 1.0]
    table.attrs["df"] = df
    return table
