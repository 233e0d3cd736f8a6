"""pydeseq2's gene-wise dispersion fit of the blind VST, with the same bits in less time.

The VST of :func:`ifnsig.data.normalize` is pydeseq2's ``vst(use_design=False)``: gene-wise
dispersions with an intercept-only design (a mean from a linear fit, then one L-BFGS-B
per gene), the parametric trend through them, and the closed-form transformation. The
trend, and so every VST value, moves with the last bit of any dispersion, so this module
runs pydeseq2's own steps (scipy's ``lstsq`` and ``minimize``, the same objective
expression) and changes only what does not touch the bits:

- the mean of each gene comes from ``scipy.linalg.lstsq`` as scikit-learn's
  ``LinearRegression`` calls it, without the estimator's checks (a tenth of the time);
- the terms of the negative log likelihood that do not depend on the dispersion
  (``lgamma(y + 1)``, ``y log(mu)``, ``y - mu``) are computed once per gene instead of at
  every step, and ``lgamma`` and ``digamma`` of ``y + 1/alpha`` once per distinct count
  (genes of 4,000 samples have a third to two thirds as many distinct counts);
- ``digamma`` is called as itself (``polygamma(0, x)`` also evaluates a zeta function
  and keeps ``digamma``'s value);
- genes are fitted in blocks per worker, with one BLAS thread (the L-BFGS-B of a single
  parameter took ten times as long with OpenBLAS threads waking for each step).

``tests/test_blind_vst.py`` checks that dispersions, trend and VST equal pydeseq2's
bit for bit.
"""

from __future__ import annotations

import numpy as np
from pydeseq2.default_inference import DefaultInference

#: Genes per task of the parallel fit.
GENES_PER_TASK = 500
# Below this many counts (samples x genes) the fit runs in the calling process: starting
# worker processes (each imports pydeseq2) cost more than they save. Measured with
# ``stages.normalize`` (one worker against two): 22 x 1,433 took 6.4 s against 8.5 s,
# 60 x 8,000 15.0 s against 16.0 s, 100 x 20,000 35.7 s against 32.5 s.
PARALLEL_MIN_COUNTS = 2_000_000


def _mean_block(counts: np.ndarray, size_factors: np.ndarray, design: np.ndarray, min_mu):
    """pydeseq2's ``fit_lin_mu`` of each column of ``counts`` (samples x genes)."""
    from scipy import linalg

    # LinearRegression(fit_intercept=False): float64 X, lstsq with cond = its tol (1e-6),
    # prediction X @ coef + 0.0.
    x = np.asarray(design, dtype=np.float64)
    out = np.empty(counts.shape, dtype=np.float64)
    for j in range(counts.shape[1]):
        coef = linalg.lstsq(x, counts[:, j] / size_factors, cond=1e-6)[0]
        out[:, j] = np.maximum(size_factors * (x @ coef + 0.0), min_mu)
    return out


def _alpha_gene(counts, design, mu, alpha_hat, min_disp, max_disp) -> tuple[float, bool]:
    """pydeseq2's ``fit_alpha_mle`` (Cox-Reid, no prior, L-BFGS-B) for one gene."""
    from pydeseq2.grid_search import grid_fit_alpha
    from scipy.optimize import minimize
    from scipy.special import gammaln, psi

    n = len(counts)
    distinct, where = np.unique(counts, return_inverse=True)
    lgamma_y1 = gammaln(counts + 1)
    y_log_mu = counts * np.log(mu)
    y_minus_mu = counts - mu
    y = counts.astype(np.float64)

    def loss(log_alpha: float) -> float:
        alpha = np.exp(log_alpha)
        w = mu / (1 + mu * alpha)
        reg = 0
        reg += 0.5 * np.linalg.slogdet((design.T * w) @ design)[1]
        alpha_neg1 = 1 / alpha
        logbinom = gammaln(distinct + alpha_neg1)[where] - lgamma_y1 - gammaln(alpha_neg1)
        nll = (
            n * alpha_neg1 * np.log(alpha)
            + (-logbinom + (y + alpha_neg1) * np.log(alpha_neg1 + mu) - y_log_mu).sum()
        )
        return nll + reg

    def dloss(log_alpha: float) -> float:
        alpha = np.exp(log_alpha)
        reg_grad = 0
        w = mu / (1 + mu * alpha)
        dw = -(w**2)
        reg_grad += (
            0.5 * (np.linalg.inv((design.T * w) @ design) * ((design.T * dw) @ design)).sum()
        ) * alpha
        alpha_neg1 = 1 / alpha
        ll_part = (
            alpha_neg1**2
            * (
                psi(np.asarray(alpha_neg1))
                - psi(distinct + alpha_neg1)[where]
                + np.log(1 + mu * alpha)
                + y_minus_mu / (mu + alpha_neg1)
            ).sum()
        )
        return alpha * -ll_part + reg_grad

    res = minimize(
        lambda x: loss(x[0]),
        x0=np.asarray([np.log(alpha_hat)]),
        jac=lambda x: np.asarray([dloss(x[0])]),
        method="L-BFGS-B",
        bounds=[(np.log(min_disp), np.log(max_disp))],
    )
    if res.success:
        return np.exp(res.x[0]), res.success
    grid = grid_fit_alpha(counts, design, mu, alpha_hat, min_disp, max_disp)
    return np.exp(grid), res.success


def _alpha_block(counts, design, mu, alpha_hat, min_disp, max_disp):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        fits = [
            _alpha_gene(counts[:, j], design, mu[:, j], alpha_hat[j], min_disp, max_disp)
            for j in range(counts.shape[1])
        ]
    return fits


class BlindVSTInference(DefaultInference):
    """pydeseq2's default inference with the faster gene-wise steps described above.

    Only the calls of the gene-wise fit (``lin_reg_mu``; ``alpha_mle`` without a prior)
    change; everything else, and ``alpha_mle`` with a prior, is pydeseq2's.
    """

    def _blocks(self, n_genes: int) -> list[slice]:
        return [slice(s, s + GENES_PER_TASK) for s in range(0, n_genes, GENES_PER_TASK)]

    def _map(self, function, tasks) -> list:
        from joblib import Parallel, delayed, parallel_backend

        # Each task's first argument is its block of counts.
        n_counts = sum(np.size(task[0]) for task in tasks)
        if self.n_cpus == 1 or len(tasks) == 1 or n_counts < PARALLEL_MIN_COUNTS:
            return [function(*task) for task in tasks]
        # One BLAS thread per worker process (threads share the limit of _alpha_block).
        limit = {} if self._backend == "threading" else {"inner_max_num_threads": 1}
        with parallel_backend(self._backend, **limit):
            return Parallel(n_jobs=self.n_cpus)(delayed(function)(*task) for task in tasks)

    def lin_reg_mu(self, counts, size_factors, design_matrix, min_mu):  # noqa: D102
        counts = np.asarray(counts)
        size_factors = np.asarray(size_factors)
        blocks = self._blocks(counts.shape[1])
        parts = self._map(
            _mean_block, [(counts[:, b], size_factors, design_matrix, min_mu) for b in blocks]
        )
        return np.concatenate(parts, axis=1) if parts else np.empty(counts.shape)

    def alpha_mle(  # noqa: D102
        self,
        counts,
        design_matrix,
        mu,
        alpha_hat,
        min_disp,
        max_disp,
        prior_disp_var=None,
        cr_reg=True,
        prior_reg=False,
        optimizer="L-BFGS-B",
    ):
        if prior_reg or not cr_reg or optimizer != "L-BFGS-B":
            return super().alpha_mle(
                counts, design_matrix, mu, alpha_hat, min_disp, max_disp,
                prior_disp_var, cr_reg, prior_reg, optimizer,
            )  # fmt: skip
        counts, mu = np.asarray(counts), np.asarray(mu)
        design = np.asarray(design_matrix)
        alpha_hat = np.asarray(alpha_hat)
        tasks = [
            (counts[:, b], design, mu[:, b], alpha_hat[b], min_disp, max_disp)
            for b in self._blocks(counts.shape[1])
        ]
        fits = [fit for part in self._map(_alpha_block, tasks) for fit in part]
        if not fits:
            return np.empty(0), np.empty(0, dtype=bool)
        dispersions, converged = zip(*fits, strict=True)
        return np.array(dispersions), np.array(converged)
