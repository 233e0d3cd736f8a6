"""DESeq2's dispersion fit (``fitDisp``): the Armijo line search in log(alpha), the NB
log likelihood it climbs, and the gene-wise and MAP rules around it.

Only numpy and scipy.special are imported, so the chunks of the blocked fit
(:mod:`ifnsig.de.kernels`) run it without importing pydeseq2.
"""

from __future__ import annotations

import numpy as np


def line_search_log_dispersion(
    objective,
    start: np.ndarray,
    min_disp: float,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """DESeq2's dispersion fit (``fitDisp``): Armijo line search along the gradient in log(alpha).

    ``objective(idx, log_alpha, value=True, slope=True)`` returns the negative log
    posterior of genes ``idx`` and its derivative in log(alpha) (None for what is not
    asked). The derivative at a proposed step is only needed where the step is accepted,
    under half of the proposals (a seventh in the MAP fit), so it is asked for those alone;
    the bits are those of one call for both. DESeq2 stops a gene as soon as an accepted
    step gains less than ``tol``; where the posterior is flat that is short of the optimum,
    and the trend and prior fitted to the estimates carry that stop, so it is reproduced
    step for step, for all genes at once. Returns log(alpha), the number of steps, and the
    objective at the start and at the end.
    """
    log_alpha = np.asarray(start, dtype=float).copy()
    n = log_alpha.size
    loss, grad = objective(np.arange(n), log_alpha)
    initial_loss = loss.copy()
    kappa = np.ones(n)
    steps = np.zeros(n, dtype=int)
    accepted = np.zeros(n, dtype=int)
    active = np.ones(n, dtype=bool)
    min_log_alpha = np.log(min_disp / 10)
    while active.any():
        idx = np.flatnonzero(active)
        steps[idx] += 1
        direction = -grad[idx]
        k = kappa[idx]
        proposal = log_alpha[idx] + k * direction
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(proposal < -30, (-30 - log_alpha[idx]) / direction, k)
            k = np.where(proposal > 10, (10 - log_alpha[idx]) / direction, k)
        proposal = log_alpha[idx] + k * direction
        new_loss, _ = objective(idx, proposal, slope=False)
        armijo = new_loss <= loss[idx] - k * 1e-4 * direction**2
        kappa[idx] = np.where(armijo, k, k / 2)
        good = idx[armijo]
        gain = loss[good] - new_loss[armijo]
        log_alpha[good] = proposal[armijo]
        loss[good] = new_loss[armijo]
        if good.size:
            grad[good] = objective(good, proposal[armijo], value=False)[1]
        accepted[good] += 1
        stop = (gain < tol) | (proposal[armijo] < min_log_alpha)
        going = good[~stop]
        kappa[going] = np.minimum(kappa[going] * 1.1, 1.0)
        kappa[going[accepted[going] % 5 == 0]] /= 2
        active[good[stop]] = False
        active[steps >= max_iter] = False
    return log_alpha, steps, initial_loss, loss


#: Cells (genes x samples) per block of :func:`nb_negative_loglik`: its dozen float
#: temporaries then stay in the processor's cache instead of streaming through memory.
BLOCK_CELLS = 2**15


class DistinctCounts:
    """Each gene's distinct counts, so that a function of ``count + 1/alpha`` is evaluated
    once per distinct count of a gene instead of once per sample.

    ``gammaln`` and ``digamma`` cost ten times a logarithm, and a gene of 10,000 samples
    holds a few hundred distinct counts; an elementwise function of the same operands
    gives the same bits, so the values gathered back are those of the whole-array call.

    Parameters
    ----------
    counts : ndarray
        Counts, genes x samples (no NaN).
    """

    def __init__(self, counts: np.ndarray) -> None:
        counts = np.asarray(counts, dtype=float)
        g, n = counts.shape
        order = np.argsort(counts, axis=1, kind="stable")
        ordered = np.take_along_axis(counts, order, axis=1)
        first = np.ones((g, n), dtype=bool)
        first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        #: The distinct counts, gene after gene; gene ``j``'s are ``offsets[j]:offsets[j+1]``.
        self.values = ordered[first]
        self.offsets = np.concatenate([[0], np.cumsum(first.sum(axis=1))])
        #: Per gene and sample, the position of its count in ``values``.
        self.inverse = np.empty((g, n), dtype=np.intp)
        np.put_along_axis(self.inverse, order, np.cumsum(first).reshape(g, n) - 1, axis=1)
        self._scratch = np.empty(len(self.values))

    @property
    def fraction(self) -> float:
        """Distinct counts per sample and gene (1 when every count of a gene differs)."""
        return len(self.values) / max(self.inverse.size, 1)

    def evaluate(self, func, genes: np.ndarray, size: np.ndarray) -> np.ndarray:
        """``func(counts[genes] + size[:, None])`` (genes x samples), ``func`` elementwise."""
        starts = self.offsets[genes]
        lengths = self.offsets[genes + 1] - starts
        before = np.cumsum(lengths) - lengths
        where = np.arange(lengths.sum()) + np.repeat(starts - before, lengths)
        self._scratch[where] = func(self.values[where] + np.repeat(size, lengths))
        return self._scratch[self.inverse[genes]]


def nb_negative_loglik(
    counts: np.ndarray,
    mu: np.ndarray,
    log_alpha: np.ndarray,
    value: bool = True,
    slope: bool = True,
    distinct: tuple[DistinctCounts, np.ndarray] | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """DESeq2's negative NB log likelihood per gene (genes x samples) and its log(alpha) slope.

    DESeq2 drops ``lgamma(y + 1) - y log(mu)`` from the log likelihood; its "no increase"
    test is relative to the value without them, so the same form is used here.

    Evaluated in blocks of genes of about :data:`BLOCK_CELLS` cells, with each of
    ``y + 1/alpha``, ``mu + 1/alpha`` and ``mu alpha`` formed once; every gene gets the
    bits of the whole-array expression (row sums are per gene, whatever the block).
    ``value=False`` or ``slope=False`` leaves that one out (None). ``distinct``: the
    :class:`DistinctCounts` of genes holding these counts and the rows of ``counts`` in it,
    so that ``gammaln`` and ``digamma`` of ``y + 1/alpha`` are taken once per distinct count
    (the same bits).
    """
    from scipy.special import digamma, gammaln

    counts = np.asarray(counts)
    mu = np.asarray(mu)
    g, n = counts.shape
    out_value = np.empty(g) if value else None
    out_slope = np.empty(g) if slope else None
    step = max(1, BLOCK_CELLS // max(n, 1))
    for start in range(0, g, step):
        rows = slice(start, start + step)
        y, m = counts[rows], mu[rows]
        alpha = np.exp(log_alpha[rows])[:, None]
        size = 1 / alpha
        t = m + size
        genes = None if distinct is None else distinct[1][rows]
        if out_value is not None:
            ys = y + size
            # gammaln(y + size) - gammaln(size) - (y + size) log(mu + size) + size log(size)
            v = gammaln(ys) if genes is None else distinct[0].evaluate(gammaln, genes, size[:, 0])
            v -= gammaln(size)
            ys *= np.log(t)
            v -= ys
            v += size * np.log(size)
            out_value[rows] = -v.sum(axis=1)
        if out_slope is not None:
            # digamma(size) + log(1 + mu alpha) - mu alpha / (1 + mu alpha)
            #   - digamma(y + size) + y / (mu + size)
            ma = m * alpha
            q = 1 + ma
            d = digamma(size) + np.log(q)
            ma /= q
            d -= ma
            if genes is None:
                ys = y + size
                d -= digamma(ys, out=ys)
            else:
                d -= distinct[0].evaluate(digamma, genes, size[:, 0])
            np.divide(y, t, out=t)
            d += t
            out_slope[rows] = -(size[:, 0] * d.sum(axis=1))
    return out_value, out_slope


def deseq2_dispersions(
    objective,
    alpha_hat: np.ndarray,
    min_disp: float,
    max_disp: float,
    prior: bool,
    grid_fit,
    start: np.ndarray | None = None,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Gene-wise (``prior=False``) or MAP dispersions as DESeq2 1.38 estimates them.

    Line search from ``start`` (default ``alpha_hat``). Gene-wise: a fit whose log posterior
    rose by less than a millionth of its starting value keeps the starting value, and a
    fit that took one step or all ``max_iter`` is redone on a grid unless it is at the
    floor. MAP: fits that took all ``max_iter`` steps are redone on the grid.
    ``grid_fit(j)`` returns the grid estimate of log(alpha) for gene ``j``; ``objective``
    must be DESeq2's negative log posterior, constants included (:func:`nb_negative_loglik`).
    """
    initial = np.log(alpha_hat if start is None else start)
    log_alpha, steps, initial_loss, final_loss = line_search_log_dispersion(
        objective, initial, min_disp, max_iter=max_iter
    )
    alpha = np.minimum(np.exp(log_alpha), max_disp)
    if prior:
        converged = steps < max_iter
        refit = ~converged
    else:
        no_increase = -final_loss < -initial_loss + np.abs(initial_loss) / 1e6
        alpha[no_increase] = alpha_hat[no_increase]
        converged = (steps < max_iter) & (steps != 1)
        refit = ~converged & (alpha > 10 * min_disp)
    for j in np.flatnonzero(refit):
        alpha[j] = np.exp(grid_fit(j))
    return np.clip(alpha, min_disp, max_disp), converged
