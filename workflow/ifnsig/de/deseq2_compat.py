"""The steps where pydeseq2 0.5 departs from R DESeq2, done the DESeq2 way.

pydeseq2 follows DESeq2's model, but on airway (``~ cell + dex``) it calls 4,703 genes at
padj < 0.1 against DESeq2 1.38's 4,819. These steps make the difference:

- gene-wise and MAP dispersions (``fitDisp``): DESeq2 runs an Armijo line search that
  stops once a step gains less than 1e-6 in log posterior, keeps the starting value when
  the gain is below a millionth of the log posterior, and starts the MAP fit from the
  gene-wise value; pydeseq2 runs L-BFGS-B to the optimum. DESeq2 also floors the fitted
  means at 0.5 (``minmu``) for the dispersion fit and the Wald test;
- the parametric dispersion trend (``parametricDispersionFit``): a gamma GLM with identity
  link on the genes whose gene-wise dispersion is above ``100 * minDisp``, choosing afresh
  at every iteration the genes within 1e-4 to 15 times the current curve; pydeseq2 starts
  from every gene and drops genes for good;
- the prior variance of log dispersions for 1 to 3 residual degrees of freedom
  (``estimateDispersionsPriorVar``), which DESeq2 estimates by matching simulated residual
  distributions and pydeseq2 floors at 0.25;
- independent filtering (``pvalueAdjustment`` with genefilter's ``filtered_p``), whose
  lowess smoother differs from R's ``lowess`` in span and robustness iterations;
- Cook's filtering in ``results()``: DESeq2 spares a gene whose largest-Cook's count is
  exceeded by three or more other counts only when the design is a single two-level
  factor; pydeseq2 spares it in every design.

With these, ifnsig calls 4,849 airway genes; given R's own prior variance (its Monte Carlo
draws use R's random number generator) it calls R's 4,819, with Wald statistics equal to
a median relative difference of 1e-6.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from ifnsig.de.dispersion import (  # noqa: F401 (part of this module's interface)
    BLOCK_CELLS,
    deseq2_dispersions,
    line_search_log_dispersion,
    nb_negative_loglik,
)
from ifnsig.de.pydeseq2_base import DefaultInference
from ifnsig.lazy import without_modules

log = logging.getLogger(__name__)

MIN_DISPERSION = 1e-8


def parametric_dispersion_trend(
    means: np.ndarray, dispersions: np.ndarray, min_disp: float = MIN_DISPERSION
) -> np.ndarray | None:
    """Coefficients ``(asymptDisp, extraPois)`` of DESeq2's curve ``a0 + a1 / mean``.

    Returns None where DESeq2 gives up on the parametric fit (a coefficient not positive,
    or no convergence in 10 iterations), so the caller can fall back.
    """
    # The GLM modules alone: statsmodels.api imports every model (seconds of a fit).
    with without_modules("polars"):
        from statsmodels.genmod import families
        from statsmodels.genmod.generalized_linear_model import GLM

    means = np.asarray(means, dtype=float)
    dispersions = np.asarray(dispersions, dtype=float)
    use = (dispersions >= 100 * min_disp) & np.isfinite(dispersions) & (means > 0)
    means, dispersions = means[use], dispersions[use]
    design = np.column_stack([np.ones_like(means), 1 / means])
    family = families.Gamma(families.links.Identity())
    coefficients = np.array([0.1, 1.0])
    for _ in range(11):
        ratio = dispersions / (design @ coefficients)
        good = (ratio > 1e-4) & (ratio < 15)
        if good.sum() < 3:
            # DESeq2 stops here ("all gene-wise dispersion estimates are within 2 orders
            # of magnitude from the minimum value"); the caller falls back to the mean.
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = GLM(dispersions[good], design[good], family=family).fit(start_params=coefficients)
        previous, coefficients = coefficients, np.asarray(fit.params)
        if not (coefficients > 0).all():
            return None
        if np.sum(np.log(coefficients / previous) ** 2) < 1e-6 and fit.converged:
            return coefficients
    return None


def monte_carlo_prior_variance(residuals: np.ndarray, df: int, seed: int = 2) -> float:
    """DESeq2's prior variance of log dispersions for 1 to 3 residual degrees of freedom.

    With so few degrees of freedom the log-dispersion residuals are too skewed for the
    MAD-based estimate; DESeq2 instead finds the prior variance whose simulated residual
    distribution, log(chi2_df / df) + N(0, var), is closest in Kullback-Leibler divergence
    to the observed one, smooths the divergence over the grid (local regression, span 0.2)
    and takes its minimum, floored at 0.25. The same steps are followed here with a seeded
    numpy generator, so the value agrees with DESeq2's to Monte Carlo error, not exactly.
    """
    from skmisc.loess import loess

    rng = np.random.default_rng(seed)
    breaks = np.arange(-20, 21) / 2
    observed = residuals[(residuals > breaks[0]) & (residuals < breaks[-1])]
    observed_density, _ = np.histogram(observed, bins=breaks, density=True)
    grid = np.linspace(0, 8, 200)
    divergences = []
    for variance in grid:
        simulated = np.log(rng.chisquare(df, 10_000)) + rng.normal(0, np.sqrt(variance), 10_000)
        simulated -= np.log(df)
        simulated = simulated[(simulated > breaks[0]) & (simulated < breaks[-1])]
        simulated_density, _ = np.histogram(simulated, bins=breaks, density=True)
        both = np.r_[observed_density, simulated_density]
        small = both[both > 0].min()
        divergences.append(
            np.sum(
                observed_density
                * (np.log(observed_density + small) - np.log(simulated_density + small))
            )
        )
    # scikit-misc wraps the Fortran behind R's loess: a local linear smoother moves the
    # minimum by about 0.1 here (airway: 0.68 against DESeq2's 0.53).
    smoother = loess(grid, np.asarray(divergences), span=0.2)
    smoother.fit()
    fine = np.linspace(0, 8, 1000)
    best = fine[np.argmin(smoother.predict(fine).values)]
    return float(max(best, 0.25))


def independent_filtering(
    base_mean: np.ndarray, pvalues: np.ndarray, alpha: float
) -> tuple[np.ndarray, float]:
    """Adjusted p-values after DESeq2's independent filtering on the base mean.

    Tries 50 base-mean quantiles as filters, counts rejections at ``alpha`` for each,
    smooths the counts with R's ``lowess`` (span 1/5, as DESeq2) and takes the first
    filter whose count is within one residual SD of the smoothed maximum. Genes below the
    chosen filter get NaN. Returns the adjusted p-values and the base-mean threshold.
    """
    with without_modules("polars"):
        from statsmodels.nonparametric.smoothers_lowess import lowess

    base_mean = np.asarray(base_mean, dtype=float)
    pvalues = np.asarray(pvalues, dtype=float)
    lower = np.mean(base_mean == 0)
    theta = np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50)
    cutoffs = np.quantile(base_mean, theta)
    adjusted = np.full((base_mean.size, theta.size), np.nan)
    tested = ~np.isnan(pvalues)
    for i, cutoff in enumerate(cutoffs):
        use = (base_mean >= cutoff) & tested
        if use.any():
            adjusted[use, i] = false_discovery_control(pvalues[use], method="bh")
    rejections = (adjusted < alpha).sum(axis=0)
    chosen = 0
    if rejections.max() > 10:
        smoothed = lowess(
            rejections,
            theta,
            frac=1 / 5,
            it=3,
            delta=0.01 * (theta[-1] - theta[0]),
            return_sorted=False,
        )
        positive = rejections > 0
        residual_sd = np.sqrt(np.mean((rejections[positive] - smoothed[positive]) ** 2))
        above = np.flatnonzero(rejections > smoothed.max() - residual_sd)
        chosen = int(above[0]) if above.size else 0
    return adjusted[:, chosen], float(cutoffs[chosen])


def wald_t_pvalues(stat: np.ndarray, df: int) -> np.ndarray:
    """Two-sided Wald p-values against Student's t, as ``nbinomWaldTest(useT = TRUE)``.

    DESeq2's default degrees of freedom are the number of samples minus the number of
    design coefficients; NaN statistics (untested genes) stay NaN.
    """
    from scipy.stats import t

    if df < 1:
        return np.full(np.shape(stat), np.nan)
    return 2 * t.sf(np.abs(np.asarray(stat, dtype=float)), df)


def n_or_more_replicates(design_matrix: pd.DataFrame, min_replicates: int) -> pd.Series:
    """Whether each sample's design row is shared by at least ``min_replicates`` samples.

    pydeseq2's ``utils.n_or_more_replicates`` by :func:`ifnsig.de.indicators.row_groups`
    (each row's few nonzero entries) instead of ``DataFrame.value_counts`` and a
    MultiIndex, which group the rows column by column: seconds at hundreds of columns (one
    per subject of a paired design), minutes at thousands.
    """
    from ifnsig.de.indicators import row_groups

    group, sizes = row_groups(design_matrix)
    return pd.Series(sizes[group] >= min_replicates, index=design_matrix.index)


class _DistinctRows(pd.DataFrame):
    """A design whose ``value_counts()`` counts its equal rows by
    :func:`ifnsig.de.indicators.row_groups`: the group sizes, largest first, without the
    rows as a MultiIndex (pydeseq2's gene-wise step reads only how many groups there are)."""

    @property
    def _constructor(self):
        return pd.DataFrame

    def value_counts(self, *args, **kwargs) -> pd.Series:
        if args or kwargs:
            return pd.DataFrame(self).value_counts(*args, **kwargs)
        from ifnsig.de.indicators import row_groups

        _, sizes = row_groups(self)
        return pd.Series(np.sort(sizes)[::-1], name="count")


def n_distinct_rows(design_matrix: pd.DataFrame) -> int:
    """Number of distinct rows of a design: pydeseq2's ``len(design.value_counts())``, by
    :func:`ifnsig.de.indicators.row_groups`, without pandas' grouping of thousands of
    columns."""
    from ifnsig.de.indicators import row_groups

    return len(row_groups(design_matrix)[1])


def cooks_distances(
    counts: np.ndarray,
    normed_counts: np.ndarray,
    mu: np.ndarray,
    hat_diagonals: np.ndarray,
    design_matrix: pd.DataFrame,
    n_cpus: int = 1,
) -> np.ndarray:
    """Cook's distances as pydeseq2's ``DeseqDataSet.calculate_cooks``, by gene chunks on
    ``n_cpus`` threads.

    The dispersions are pydeseq2's ``robust_method_of_moments_disp`` (trimmed variances
    within the design cells of three or more samples, or over every sample). Every step is
    a sort, a mean over samples or an elementwise operation of one gene's column, so a
    gene gets the same bits in any chunk; the sorts and array operations release the GIL.
    Arrays are samples x genes (the genes with a count).
    """
    from concurrent.futures import ThreadPoolExecutor

    from pydeseq2.utils import trimmed_cell_variance, trimmed_variance

    num_vars = design_matrix.shape[-1]
    three_or_more = n_or_more_replicates(design_matrix, 3)
    cells = None
    if three_or_more.any():
        use = three_or_more.to_numpy()
        filtered = design_matrix.loc[three_or_more, :]
        cells = pd.Series(
            filtered.groupby(filtered.columns.values.tolist()).ngroup(), index=filtered.index
        )
    out = np.empty(np.shape(mu))

    def chunk(genes: slice) -> None:
        # Views, not copies: a mean over samples sums a column pairwise where the samples
        # of a gene are adjacent in memory (as in the column-masked arrays pydeseq2 gets)
        # and row after row otherwise, so a chunk keeps the layout of the whole array.
        normed = normed_counts[:, genes]
        v = trimmed_variance(normed) if cells is None else trimmed_cell_variance(normed[use], cells)
        m = normed.mean(axis=0)
        dispersions = (v - m) / m**2
        np.maximum(dispersions, 0.04, out=dispersions)
        m_lfc = mu[:, genes]
        squared_pearson_res = counts[:, genes] - m_lfc
        squared_pearson_res **= 2
        v = m_lfc**2
        v *= dispersions[None, :]
        v += m_lfc
        squared_pearson_res /= v
        squared_pearson_res /= num_vars
        hat = hat_diagonals[:, genes]
        diag_mul = 1 - hat
        diag_mul **= 2
        diag_mul = hat / diag_mul
        squared_pearson_res *= diag_mul
        out[:, genes] = squared_pearson_res

    n_genes = out.shape[1]
    # Chunks of two genes or more: numpy sums a single column in another order.
    size = max(2, math.ceil(n_genes / max(n_cpus, 1)))
    chunks = [slice(i, min(i + size, n_genes)) for i in range(0, n_genes, size)]
    if len(chunks) > 1 and chunks[-1].stop - chunks[-1].start < 2:
        chunks[-2:] = [slice(chunks[-2].start, n_genes)]
    if len(chunks) == 1:
        chunk(chunks[0])
    else:
        with ThreadPoolExecutor(len(chunks)) as pool:
            list(pool.map(chunk, chunks))
    return out


def _check_full_rank_design(self) -> None:
    """pydeseq2's ``DeseqDataSet._check_full_rank_design``, the rank taken through the
    subject block (:func:`ifnsig.de.indicators.design_rank`) instead of an SVD of the whole
    design."""
    from ifnsig.de.indicators import design_rank

    design = self.obsm["design_matrix"]
    if design_rank(design) < design.shape[1]:
        warnings.warn(
            "The design matrix is not full rank, so the model cannot be fitted, but some "
            "operations like design-free VST remain possible. To perform differential "
            "expression analysis, please remove the design variables that are linear "
            "combinations of others.",
            UserWarning,
            stacklevel=2,
        )


def _genewise_counting_rows(genewise):
    """pydeseq2's ``fit_genewise_dispersions``, its count of distinct design rows (which
    chooses the start of the means) by :class:`_DistinctRows`."""

    if getattr(genewise, "counts_rows", False):
        return genewise

    def fit_genewise_dispersions(self, vst=False) -> None:
        design = self.obsm["design_matrix"]
        self.obsm["design_matrix"] = _DistinctRows(design)
        try:
            genewise(self, vst)
        finally:
            self.obsm["design_matrix"] = design

    fit_genewise_dispersions.counts_rows = True
    return fit_genewise_dispersions


@contextlib.contextmanager
def _fast_replicates():
    """While the block runs, pydeseq2's Cook's steps use :func:`n_or_more_replicates`, the
    datasets of its Cook's refits :func:`_check_full_rank_design`, and its gene-wise step
    counts distinct design rows by :class:`_DistinctRows`: each reads the design's cells
    once instead of grouping its rows column by column."""
    import pydeseq2.dds
    import pydeseq2.utils

    dataset = pydeseq2.dds.DeseqDataSet
    saved = (
        pydeseq2.dds.n_or_more_replicates,
        pydeseq2.utils.n_or_more_replicates,
        dataset._check_full_rank_design,
        dataset.fit_genewise_dispersions,
    )
    pydeseq2.dds.n_or_more_replicates = n_or_more_replicates
    pydeseq2.utils.n_or_more_replicates = n_or_more_replicates
    dataset._check_full_rank_design = _check_full_rank_design
    dataset.fit_genewise_dispersions = _genewise_counting_rows(saved[3])
    try:
        yield
    finally:
        (
            pydeseq2.dds.n_or_more_replicates,
            pydeseq2.utils.n_or_more_replicates,
            dataset._check_full_rank_design,
            dataset.fit_genewise_dispersions,
        ) = saved


def deseq_dataset_class():
    """pydeseq2's DeseqDataSet with DESeq2's dispersion trend, prior variance and MAP start,
    and DESeq2's Cook's filtering (``uns["cooks_count_heuristic"]``: whether the design is a
    single two-level factor, where ``results()`` spares genes with three larger counts; True,
    pydeseq2's behaviour, when unset)."""
    from pydeseq2.dds import DeseqDataSet
    from scipy.stats import f

    class DESeq2DispersionDataSet(DeseqDataSet):
        _check_full_rank_design = _check_full_rank_design

        # The steps a gene shard runs one by one (ifnsig.de.shards) as deseq2() runs them.
        def deseq2(self, fit_type=None) -> None:
            with _fast_replicates():
                super().deseq2(fit_type)

        def refit(self) -> None:
            # The Cook's refit's own dataset runs pydeseq2's steps (and its row grouping).
            with _fast_replicates():
                super().refit()

        def fit_genewise_dispersions(self, vst: bool = False) -> None:
            # pydeseq2's, the design's distinct rows counted by n_distinct_rows instead of
            # DataFrame.value_counts (seconds for a paired design of thousands of samples),
            # and no hat diagonals from the blocked IRLS, whose fitted means alone are kept.
            if "size_factors" not in self.obs:
                self.fit_size_factors(fit_type=self.size_factors_fit_type)
            self.var["non_zero"] = ~(self.X == 0).all(axis=0)
            self.non_zero_idx = np.arange(self.n_vars)[self.var["non_zero"]]
            self.non_zero_genes = self.var_names[self.var["non_zero"]]
            if isinstance(self.non_zero_genes, pd.MultiIndex):
                raise ValueError("non_zero_genes should not be a MultiIndex")
            self._fit_MoM_dispersions()
            design = self.obsm["design_matrix"]
            design_matrix = design.values
            size_factors = self.obs["size_factors"].values
            counts = self.X[:, self.non_zero_idx]
            mom = self.var.loc[self.var["non_zero"], "_MoM_dispersions"].values
            if n_distinct_rows(design) == design.shape[-1]:
                mu_hat = self.inference.lin_reg_mu(
                    counts=counts,
                    size_factors=size_factors,
                    design_matrix=design_matrix,
                    min_mu=self.min_mu,
                )
            else:
                # Only the fitted means are kept: the blocked fit leaves the hat diagonals out.
                hat = getattr(self.inference, "hat_diagonals", None)
                if hat is not None:
                    self.inference.hat_diagonals = False
                try:
                    _, mu_hat, _, _ = self.inference.irls(
                        counts=counts,
                        size_factors=size_factors,
                        design_matrix=design_matrix,
                        disp=mom,
                        min_mu=self.min_mu,
                        beta_tol=self.beta_tol,
                    )
                finally:
                    if hat is not None:
                        self.inference.hat_diagonals = hat
            mu_name = "_vst_mu_hat" if vst else "_mu_hat"
            disp_name = "vst_genewise_dispersions" if vst else "genewise_dispersions"
            self.layers[mu_name] = np.full((self.n_obs, self.n_vars), np.nan)
            self.layers[mu_name][:, self.var["non_zero"]] = mu_hat
            del mu_hat
            if not self.quiet:
                print("Fitting dispersions...", file=sys.stderr)
            start = time.time()
            dispersions, converged = self.inference.alpha_mle(
                counts=self.X[:, self.non_zero_idx],
                design_matrix=design_matrix,
                mu=self.layers[mu_name][:, self.non_zero_idx],
                alpha_hat=mom,
                min_disp=self.min_disp,
                max_disp=self.max_disp,
            )
            if not self.quiet:
                print(f"... done in {time.time() - start:.2f} seconds.\n", file=sys.stderr)
            self.var[disp_name] = np.full(self.n_vars, np.nan)
            self.var.loc[self.var["non_zero"], disp_name] = np.clip(
                dispersions, self.min_disp, self.max_disp
            )
            self.var["_genewise_converged"] = pd.array([pd.NA] * self.n_vars, dtype="boolean")
            self.var.loc[self.var["non_zero"], "_genewise_converged"] = converged

        def fit_LFC(self) -> None:  # noqa: N802 (pydeseq2's name)
            # pydeseq2's, with the coefficients assigned at once: its DataFrame.update
            # loops over the columns, seconds for a paired design's hundreds.
            if "dispersions" not in self.var:
                self.fit_MAP_dispersions()
            design = self.obsm["design_matrix"]
            lfc, mu, hat_diagonals, converged = self.inference.irls(
                counts=self.X[:, self.non_zero_idx],
                size_factors=self.obs["size_factors"].values,
                design_matrix=design.values,
                disp=self.var.loc[self.var["non_zero"], "dispersions"].values,
                min_mu=self.min_mu,
                beta_tol=self.beta_tol,
            )
            values = np.full((self.n_vars, design.shape[1]), np.nan)
            values[self.non_zero_idx] = lfc
            self.varm["LFC"] = pd.DataFrame(values, index=self.var_names, columns=design.columns)
            self.obsm["_mu_LFC"] = mu
            self.obsm["_hat_diagonals"] = hat_diagonals
            self.var["_LFC_converged"] = pd.array([pd.NA] * self.n_vars, dtype="boolean")
            self.var.loc[self.var["non_zero"], "_LFC_converged"] = converged

        def calculate_cooks(self) -> None:
            # pydeseq2's, by gene chunks on the inference's threads (cooks_distances).
            if "dispersions" not in self.var:
                self.fit_MAP_dispersions()
            non_zero = self.var["non_zero"].to_numpy()
            cooks = cooks_distances(
                self.X[:, non_zero],
                self.layers["normed_counts"][:, non_zero],
                self.obsm["_mu_LFC"],
                self.obsm["_hat_diagonals"],
                self.obsm["design_matrix"],
                getattr(self.inference, "n_cpus", 1) or 1,
            )
            if self.low_memory:
                del self.obsm["_mu_LFC"]
                del self.obsm["_hat_diagonals"]
            self.layers["cooks"] = np.full((self.n_obs, self.n_vars), np.nan)
            self.layers["cooks"][:, non_zero] = cooks

        def cooks_outlier(self):
            if self.uns.get("cooks_count_heuristic", True) or "_pvalue_cooks_outlier" in self.var:
                with _fast_replicates():
                    return super().cooks_outlier()
            n, p = self.obsm["design_matrix"].shape
            cutoff = f.ppf(0.99, p, n - p)
            # Only samples with 3 or more replicates in their design cell count (recordMaxCooks).
            use = n_or_more_replicates(self.obsm["design_matrix"], 3).to_numpy(dtype=bool)
            refitted = (
                self.refit_cooks
                and "replace_cooks" in self.layers
                and self.var["refitted"].sum() > 0
            )
            cooks = self.layers["replace_cooks" if refitted else "cooks"]
            outlier = (cooks[use, :] > cutoff).any(axis=0)
            self.var["_pvalue_cooks_outlier"] = outlier
            return self.var["_pvalue_cooks_outlier"]

        def near_poisson(self) -> bool:
            """Whether every gene-wise dispersion is below 100 x the minimum (DESeq2's test
            before its trend fit): no trend, prior or MAP step can be fitted to them.

            Decided once, over every gene, and kept in ``uns``: a shard of the genes reads
            the cohort's decision, not one of its own genes alone."""
            if "near_poisson" not in self.uns:
                genewise = self.var.loc[self.var["non_zero"], "genewise_dispersions"]
                near = bool(len(genewise)) and bool((genewise < 100 * self.min_disp).all())
                self.uns["near_poisson"] = near
            return bool(self.uns["near_poisson"])

        def fit_dispersion_trend(self, vst: bool = False) -> None:
            # pydeseq2's VST calls its own trend fit directly, so only the DE path is here.
            if not vst and "genewise_dispersions" not in self.var:
                self.fit_genewise_dispersions()
            if not vst and self.near_poisson():
                # DESeq2 stops here and advises the gene-wise estimates as final
                # dispersions; pydeseq2 would take the trimmed mean of an empty selection
                # (NaN) and carry it through the prior and MAP steps.
                log.warning(
                    "all %d gene-wise dispersions are below 100 x the minimum %.0e (counts "
                    "close to Poisson, as with few genes or samples): no dispersion trend or "
                    "prior can be fitted, so the gene-wise estimates are the final "
                    "dispersions, as DESeq2 advises",
                    int(self.var["non_zero"].sum()),
                    self.min_disp,
                )
                genewise = self.var["genewise_dispersions"]
                self.uns["disp_function_type"] = "mean"
                self.uns["mean_disp"] = float(genewise[self.var["non_zero"]].mean())
                self.var["fitted_dispersions"] = genewise.where(self.var["non_zero"])
                return None
            if vst or self.fit_type != "parametric":
                return super().fit_dispersion_trend(vst)
            genes = self.var.loc[self.non_zero_genes]
            coefficients = parametric_dispersion_trend(
                genes["_normed_means"].to_numpy(),
                genes["genewise_dispersions"].to_numpy(),
                self.min_disp,
            )
            if coefficients is None:  # pydeseq2's own fit, with its fallback to the mean
                return super().fit_dispersion_trend()
            self.uns["trend_coeffs"] = pd.Series(coefficients, index=["a0", "a1"])
            self.uns["disp_function_type"] = "parametric"
            self.var["fitted_dispersions"] = np.nan
            non_zero = self.var["non_zero"]
            self.var.loc[non_zero, "fitted_dispersions"] = self.disp_function(
                self.var.loc[non_zero, "_normed_means"]
            )
            return None

        def fit_dispersion_prior(self) -> None:
            if "fitted_dispersions" not in self.var:
                self.fit_dispersion_trend()
            if self.near_poisson():
                # No residual to fit a prior to: the prior is left at DESeq2's floor and
                # the MAP step keeps the gene-wise estimates (fit_MAP_dispersions).
                self.uns["_squared_logres"] = 0.0
                self.uns["prior_disp_var"] = np.float64(0.25)
                return
            df = self.n_obs - self.obsm["design_matrix"].shape[-1]
            with warnings.catch_warnings():
                # pydeseq2 warns that the MAD estimate is poor below 4 df; DESeq2's
                # simulation-based estimate replaces it just below.
                if 1 <= df <= 3:
                    warnings.filterwarnings("ignore", message="As the residual degrees")
                super().fit_dispersion_prior()
            if 1 <= df <= 3:
                genes = self.var.loc[self.non_zero_genes]
                genes = genes[genes["genewise_dispersions"] >= 100 * self.min_disp]
                residuals = np.log(genes["genewise_dispersions"]) - np.log(
                    genes["fitted_dispersions"]
                )
                variance = monte_carlo_prior_variance(residuals.to_numpy(), df)
                self.uns["prior_disp_var"] = np.float64(variance)

        def fit_MAP_dispersions(self) -> None:  # noqa: N802 (pydeseq2's name)
            if "prior_disp_var" not in self.uns:
                self.fit_dispersion_prior()
            if self.near_poisson():
                genewise = self.var["genewise_dispersions"].where(self.var["non_zero"])
                self.var["MAP_dispersions"] = genewise
                self.var["dispersions"] = genewise.copy()
                self.var["_MAP_converged"] = pd.array(self.var["non_zero"], dtype="boolean")
                self.var["_outlier_genes"] = False
                return
            genewise = self.var.loc[self.var["non_zero"], "genewise_dispersions"].to_numpy()
            trend = self.var.loc[self.var["non_zero"], "fitted_dispersions"].to_numpy()
            start = np.where(genewise > 0.1 * trend, genewise, trend)
            self.inference.map_start = start
            try:
                super().fit_MAP_dispersions()
            finally:
                self.inference.map_start = None

    return DESeq2DispersionDataSet


def deseq_stats_class():
    """pydeseq2's DeseqStats whose Wald test takes the fitted means from the inference
    backend (``fitted_means``) instead of forming ``design_matrix @ LFC.T``: on a paired
    design that product is samples^2 x genes (about a minute per contrast at 10,000
    samples), while the subject-blocked backend forms the same means in O(n) per gene."""
    from pydeseq2.ds import DeseqStats

    class FittedMeansStats(DeseqStats):
        def run_wald_test(self) -> None:
            if not hasattr(self.inference, "fitted_means"):
                return super().run_wald_test()
            # pydeseq2's run_wald_test (quiet), the means aside.
            num_vars = self.design_matrix.shape[1]
            mu = self.inference.fitted_means(
                self.design_matrix, self.LFC.to_numpy(), self.dds.obs["size_factors"].to_numpy()
            )
            if self.prior_LFC_var is not None:
                ridge_factor = np.diag(1 / self.prior_LFC_var**2)
            else:
                ridge_factor = np.diag(np.repeat(1e-6, num_vars))
            pvals, stats, se = self.inference.wald_test(
                design_matrix=self.design_matrix.values,
                disp=self.dds.var["dispersions"].values,
                lfc=self.LFC.values,
                mu=mu,
                ridge_factor=ridge_factor,
                contrast=self.contrast_vector,
                lfc_null=np.log(2) * self.lfc_null,  # log2 to natural log
                alt_hypothesis=self.alt_hypothesis,
            )
            self.p_values = pd.Series(pvals, index=self.dds.var_names)
            self.statistics = pd.Series(stats, index=self.dds.var_names)
            self.SE = pd.Series(se, index=self.dds.var_names)
            # Genes whose counts became all zero after outlier replacement.
            if self.dds.refit_cooks and self.dds.var["replaced"].sum() > 0:
                self.SE.loc[self.dds.new_all_zeroes_genes] = 0.0
                self.statistics.loc[self.dds.new_all_zeroes_genes] = 0.0
                self.p_values.loc[self.dds.new_all_zeroes_genes] = 1.0
            return None

    return FittedMeansStats


def dense_dispersion_objective(
    counts: np.ndarray,
    mu: np.ndarray,
    design: np.ndarray,
    prior_mean: np.ndarray | None,
    prior_var: float | None,
    cox_reid: bool = True,
):
    """Negative log posterior of log(alpha) and its derivative, for genes x samples arrays.

    The NB log likelihood, the Cox-Reid term ``-0.5 log det X'WX`` and an optional normal
    prior on log(alpha), as DESeq2's ``log_posterior`` and ``dlog_posterior``.
    """

    # Genes per step, so that the genes x p x p arrays stay near 128 MB whatever the design.
    chunk = int(np.clip(2**24 // design.shape[1] ** 2, 16, 4096))

    def objective(
        idx: np.ndarray, log_alpha: np.ndarray, value: bool = True, slope: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        loss = np.empty(idx.size)
        grad = np.empty(idx.size)
        for start in range(0, idx.size, chunk):
            part = slice(start, start + chunk)
            genes = idx[part]
            m = mu[genes]
            v, d = nb_negative_loglik(counts[genes], m, log_alpha[part])
            alpha = np.exp(log_alpha[part])[:, None]
            if cox_reid:
                w = 1 / (1 / m + alpha)
                normal = np.einsum("ni,gn,nj->gij", design, w, design)
                v = v + 0.5 * np.linalg.slogdet(normal)[1]
                if slope:
                    d_normal = np.einsum("ni,gn,nj->gij", design, -(w**2), design)
                    trace = np.einsum("gij,gji->g", np.linalg.inv(normal), d_normal)
                    d = d + 0.5 * trace * alpha[:, 0]
            if prior_var is not None:
                diff = log_alpha[part] - prior_mean[genes]
                v = v + diff**2 / (2 * prior_var)
                d = d + diff / prior_var
            loss[part], grad[part] = v, d
        return (loss if value else None), (grad if slope else None)

    return objective


class DESeq2Inference(DefaultInference):
    """pydeseq2's default inference with DESeq2's dispersion line search (dense designs).

    ``map_start`` is set by :func:`deseq_dataset_class` around the MAP step: DESeq2 starts
    it from the gene-wise estimate where that is above a tenth of the trend.
    """

    map_start: np.ndarray | None = None
    #: DESeq2's ``minmu``: fitted means are floored for the dispersion fit and the Wald
    #: test. pydeseq2 floors them inside its IRLS but hands the unfloored ones on, which
    #: inflates the standard errors of genes with a few counts.
    min_mu: float = 0.5

    def fitted_means(
        self, design_matrix: pd.DataFrame | np.ndarray, lfc: np.ndarray, size_factors: np.ndarray
    ) -> np.ndarray:
        """Fitted means ``sf * exp(X beta)``, samples x genes, for coefficients ``lfc``
        (genes x design columns): the product ``DeseqStats.run_wald_test`` forms before the
        Wald test (a subclass may form it from the design's structure)."""
        x = np.asarray(design_matrix, dtype=float)
        eta = x @ np.asarray(lfc, dtype=float).T
        return np.asarray(size_factors, dtype=float)[:, None] * np.exp(eta)

    def wald_test(self, design_matrix, disp, lfc, mu, *args, **kwargs):
        mu = np.maximum(np.asarray(mu, dtype=float), self.min_mu)
        return super().wald_test(design_matrix, disp, lfc, mu, *args, **kwargs)

    def alpha_mle(
        self,
        counts: np.ndarray,
        design_matrix: np.ndarray,
        mu: np.ndarray,
        alpha_hat: np.ndarray,
        min_disp: float,
        max_disp: float,
        prior_disp_var: float | None = None,
        cr_reg: bool = True,
        prior_reg: bool = False,
        optimizer: str = "L-BFGS-B",
    ) -> tuple[np.ndarray, np.ndarray]:
        from pydeseq2.grid_search import grid_fit_alpha

        counts = np.asarray(counts, dtype=float)
        mu = np.maximum(np.asarray(mu, dtype=float), self.min_mu)
        design = np.asarray(design_matrix, dtype=float)
        alpha_hat = np.asarray(alpha_hat, dtype=float)
        objective = dense_dispersion_objective(
            np.ascontiguousarray(counts.T),
            np.ascontiguousarray(mu.T),
            design,
            np.log(alpha_hat) if prior_reg else None,
            prior_disp_var if prior_reg else None,
            cr_reg,
        )

        def grid_fit(j: int) -> float:
            return grid_fit_alpha(
                counts[:, j], design, mu[:, j], alpha_hat[j], min_disp, max_disp,
                prior_disp_var, cr_reg, prior_reg, grid_length=20,
            )  # fmt: skip

        start = self.map_start if prior_reg else None
        return deseq2_dispersions(
            objective, alpha_hat, min_disp, max_disp, prior_reg, grid_fit, start=start
        )
