"""The gene-chunk computations of the subject-blocked fit (:mod:`ifnsig.de.blocked`).

What each gene chunk of :class:`~ifnsig.de.blocked.BlockedInference` runs: the block
structure of the design, IRLS, the dispersion line search and the Wald test for a chunk of
genes. Only numpy and scipy are imported at the top (pydeseq2, scipy.optimize and
scipy.stats by the fallbacks and steps that need them): a process that runs chunks (a
joblib worker would) starts in a fraction of the seconds that importing pydeseq2 and the
DE package takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse
from scipy.special import gammaln

from ifnsig.de.dispersion import (
    BLOCK_CELLS,
    DistinctCounts,
    deseq2_dispersions,
    nb_negative_loglik,
)
from ifnsig.de.indicators import indicator_block

if TYPE_CHECKING:
    import pandas as pd

#: Ridge added to X'WX by pydeseq2's ``utils.irls_solver`` (``np.diag(np.repeat(1e-6, p))``).
IRLS_RIDGE = 1e-6

#: Target number of sample x gene cells per vectorised chunk (bounds the memory of a chunk).
_CHUNK_CELLS = 2**20


# Every product and sum over samples below gives a gene the same bits whatever the other
# genes of its chunk: BLAS kernels (and numpy's sums over a single column) change their
# order of summation with the number of columns, and the DE split by gene shards
# (ifnsig.de.shards) must reproduce the one-job tables to the byte.


def _colsum(x: np.ndarray) -> np.ndarray:
    """``x.sum(axis=0)`` for (r, g) arrays, summed row after row for every g (g = 1 too)."""
    x = np.ascontiguousarray(x)
    if x.ndim == 2 and x.shape[1] == 1:
        return np.repeat(x, 2, axis=1).sum(axis=0)[:1]
    return x.sum(axis=0)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for ``b`` of shape (r, g) without BLAS, the same bits per column for every g."""
    if b.ndim == 2 and b.shape[1] == 1:
        return np.einsum("ij,jg->ig", a, np.repeat(b, 2, axis=1))[:, :1]
    return np.einsum("ij,jg->ig", a, b)


def _solve(s: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``np.linalg.solve(s, rhs)`` for (k, g) right-hand sides, one gene at a time."""
    return np.linalg.solve(s, rhs.T[..., None])[..., 0].T


@dataclass(eq=False)
class BlockDesign:
    """A design matrix split into a block of disjoint indicators and a few dense columns.

    Parameters
    ----------
    block_cols : ndarray
        Design columns (indices) of the indicator block, one per non-reference level.
    dense_cols : ndarray
        Remaining design columns (intercept, timepoint, covariates).
    level : ndarray
        Per-sample index into ``block_cols``; ``len(block_cols)`` for reference-level rows.
    dense : ndarray
        The design restricted to ``dense_cols``, shape (n_samples, k).
    name : str or None
        Name of the blocking factor when it can be read from formulaic column names.
    """

    block_cols: np.ndarray
    dense_cols: np.ndarray
    level: np.ndarray
    dense: np.ndarray
    name: str | None = None
    _indicator_t: sparse.csr_matrix = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n, m = len(self.level), self.n_block
        rows = np.flatnonzero(self.level < m)
        # (m x n) sparse indicator transpose: segment sums over levels in O(n) per gene.
        self._indicator_t = sparse.csr_matrix(
            (np.ones(len(rows)), (self.level[rows], rows)), shape=(m, n)
        )

    @property
    def n_samples(self) -> int:
        """Number of samples (design rows)."""
        return len(self.level)

    @property
    def n_block(self) -> int:
        """Number of indicator columns in the block (m)."""
        return len(self.block_cols)

    @property
    def n_dense(self) -> int:
        """Number of dense columns (k)."""
        return len(self.dense_cols)

    @property
    def n_vars(self) -> int:
        """Number of design columns (p = m + k)."""
        return self.n_block + self.n_dense

    @property
    def n_levels(self) -> int:
        """Number of levels of the blocking factor, reference level included."""
        return self.n_block + int(bool((self.level == self.n_block).any()))

    def segsum(self, v: np.ndarray) -> np.ndarray:
        """Sum ``v`` over the samples of each indicator level (``D^T v``).

        Parameters
        ----------
        v : ndarray
            Shape (n,) or (n, g).

        Returns
        -------
        ndarray
            Shape (m,) or (m, g).
        """
        if v.ndim == 1:
            return np.bincount(self.level, v, minlength=self.n_block + 1)[: self.n_block]
        return np.asarray(self._indicator_t @ v)

    def xmul(self, beta_a: np.ndarray, beta_c: np.ndarray) -> np.ndarray:
        """Linear predictor ``X beta`` from block and dense coefficients.

        Parameters
        ----------
        beta_a : ndarray
            Block coefficients, shape (m,) or (m, g).
        beta_c : ndarray
            Dense coefficients, shape (k,) or (k, g).

        Returns
        -------
        ndarray
            Shape (n,) or (n, g).
        """
        pad = np.zeros((1, *beta_a.shape[1:]))
        dense = self.dense @ beta_c if beta_c.ndim == 1 else _matmul(self.dense, beta_c)
        return dense + np.concatenate([beta_a, pad])[self.level]

    def split(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Split coefficients of shape (g, p) or (p,) into (block, dense) with genes last."""
        beta = np.asarray(beta, dtype=float)
        return beta[..., self.block_cols].T, beta[..., self.dense_cols].T

    def join(self, beta_a: np.ndarray, beta_c: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`split`: coefficients of shape (g, p) (or (p,)) in design order."""
        out = np.empty((*beta_a.shape[1:], self.n_vars))
        out[..., self.block_cols] = beta_a.T
        out[..., self.dense_cols] = beta_c.T
        return out

    def describes(self, x: np.ndarray) -> bool:
        """Whether ``x`` is this design: its shape, the dense columns bit for bit, a one at
        each sample's indicator and no other nonzero entry.

        Reads ``x`` once without copying it, a fraction of what hashing its bytes costs (a
        paired design of 10,000 samples holds 400 MB).
        """
        if x.shape != (self.n_samples, self.n_vars):
            return False
        dense = np.ascontiguousarray(x[:, self.dense_cols])
        if dense.tobytes() != np.ascontiguousarray(self.dense).tobytes():
            return False
        rows = np.flatnonzero(self.level < self.n_block)
        if not (x[rows, self.block_cols[self.level[rows]]] == 1).all():
            return False
        return int(np.count_nonzero(x)) == len(rows) + int(np.count_nonzero(dense))

    def to_dense(self) -> np.ndarray:
        """Rebuild the full design matrix (n, p)."""
        x = np.zeros((self.n_samples, self.n_vars))
        rows = np.flatnonzero(self.level < self.n_block)
        x[rows, self.block_cols[self.level[rows]]] = 1.0
        x[:, self.dense_cols] = self.dense
        return x


def detect_block_design(
    design_matrix: pd.DataFrame | np.ndarray, min_levels: int = 8
) -> BlockDesign | None:
    """Detect "intercept + one blocking factor's indicators + few other columns".

    The block is :func:`ifnsig.de.indicators.indicator_block`: disjoint 0/1 indicators,
    chosen greedily from those that overlap the fewest others; rows outside every chosen
    indicator form the reference level.

    Parameters
    ----------
    design_matrix : pandas.DataFrame or ndarray
        Design matrix (n_samples, n_vars), e.g. pydeseq2's formulaic design.
    min_levels : int
        Minimum number of levels of the blocking factor (reference included) for the
        block to be used. (default: ``8``).

    Returns
    -------
    BlockDesign or None
        The block structure, or None if the design has no usable block (too few levels,
        no dense column, or not full rank).
    """
    names = list(map(str, design_matrix.columns)) if hasattr(design_matrix, "columns") else None
    x = np.asarray(design_matrix, dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all():
        return None
    p = x.shape[1]
    found = indicator_block(x)
    if found is None or len(found[0]) + 1 < min_levels:
        return None
    block_cols, level = found
    dense_cols = np.setdiff1d(np.arange(p), block_cols)
    name = None
    if names is not None:
        prefixes = {names[c].split("[", 1)[0] for c in block_cols}
        name = prefixes.pop() if len(prefixes) == 1 else None
    bd = BlockDesign(block_cols, dense_cols, level, x[:, dense_cols].copy(), name)
    if bd.n_levels < min_levels or bd.n_dense == 0:
        return None
    # Full rank <=> the Schur complement of X'X is (numerically) non-singular; pydeseq2's
    # irls_solver uses a different initialisation for rank-deficient designs.
    _, ba, s = _unweighted_schur(bd)
    if np.linalg.matrix_rank(s, hermitian=True) < bd.n_dense:
        return None
    return bd


def _unweighted_schur(bd: BlockDesign) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks of X'X: diagonal ``a``, ``A^{-1} B`` and Schur complement ``S``."""
    u = bd.dense
    a = bd.segsum(np.ones(bd.n_samples))
    b = bd.segsum(u)
    ba = b / a[:, None]
    return a, ba, u.T @ u - b.T @ ba


@dataclass
class _Normal:
    """Blocked ``X'WX + ridge`` for a batch of g genes.

    ``a`` (m, g): diagonal block; ``ba`` (m, k, g): ``A^{-1} B``; ``s`` (g, k, k): Schur
    complement ``C - B^T A^{-1} B``.
    """

    a: np.ndarray
    ba: np.ndarray
    s: np.ndarray

    def solve(self, r_a: np.ndarray, r_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``(X'WX + ridge) beta = r`` by block elimination; returns (beta_a, beta_c)."""
        k = self.ba.shape[1]
        rhs = r_c - np.stack([_colsum(self.ba[:, c] * r_a) for c in range(k)])
        beta_c = np.linalg.solve(self.s, rhs.T[..., None])[..., 0].T
        beta_a = r_a / self.a - sum(self.ba[:, c] * beta_c[c] for c in range(k))
        return beta_a, beta_c

    def quad_diag(self, bd: BlockDesign) -> np.ndarray:
        """Diagonal of ``X (X'WX + ridge)^{-1} X'``, shape (n, g).

        For a row ``x = (e_j, u)``: ``x' M^{-1} x = 1/a_j + v' S^{-1} v`` with
        ``v = u - B_j / a_j`` (``v = u`` and no ``1/a`` term on reference rows).
        """
        g, k = self.a.shape[1], bd.n_dense
        inv_a = np.concatenate([1.0 / self.a, np.zeros((1, g))])[bd.level]
        ba = np.concatenate([self.ba, np.zeros((1, k, g))])[bd.level]
        v = [bd.dense[:, c, None] - ba[:, c] for c in range(k)]
        s_inv = np.linalg.inv(self.s)
        # k is small: explicit sums over (c, d) beat einsum on (n, k, g) arrays.
        q = inv_a
        for c in range(k):
            q = q + s_inv[:, c, c] * v[c] ** 2
            for d in range(c + 1, k):
                q = q + (s_inv[:, c, d] + s_inv[:, d, c]) * (v[c] * v[d])
        return q

    def logdet(self) -> np.ndarray:
        """``log|det(X'WX + ridge)|`` per gene, as ``np.linalg.slogdet(...)[1]``."""
        return _colsum(np.log(np.abs(self.a))) + np.linalg.slogdet(self.s)[1]


def _normal(
    bd: BlockDesign, w: np.ndarray, ridge_a: np.ndarray | float, ridge_c: np.ndarray | float
) -> _Normal:
    """Blocked ``X' diag(w) X + diag(ridge)`` for weights ``w`` of shape (n, g)."""
    u, k = bd.dense, bd.n_dense
    a = bd.segsum(w) + np.reshape(ridge_a, (-1, 1))
    b = np.stack([bd.segsum(w * u[:, c, None]) for c in range(k)], axis=1)
    uu = (u[:, :, None] * u[:, None, :]).reshape(len(u), k * k)
    c_mat = _matmul(uu.T, w).T.reshape(-1, k, k) + np.diag(np.broadcast_to(ridge_c, (k,)))
    ba = b / a[:, None, :]
    s = c_mat
    for c in range(k):
        for d in range(c, k):
            s[:, c, d] -= _colsum(b[:, c] * ba[:, d])
            s[:, d, c] = s[:, c, d]
    return _Normal(a, ba, s)


class _Levels:
    """Sums over the samples of each level for (genes, samples) arrays, and the Cox-Reid
    term of the dispersion fit from them.

    The samples are ordered once so that the levels of each size ``r`` are adjacent runs of
    ``r`` columns (reference rows last); a level sum is then ``r - 1`` additions of strided
    column slices, several times faster than ``np.add.reduceat`` or a sparse product for the
    two samples of a subject. Each gene's sums depend on its own row only.
    """

    def __init__(self, bd: BlockDesign) -> None:
        m, level = bd.n_block, bd.level
        size = np.bincount(level, minlength=m + 1)
        self.groups: list[tuple[int, int, int]] = []  # (first column, levels, size)
        cols, done = [], 0
        for r in np.unique(size[:m]):
            js = np.flatnonzero(size[:m] == r)
            members = np.argsort(level, kind="stable")
            members = members[np.isin(level[members], js)]
            cols.append(members)
            self.groups.append((done, len(js), int(r)))
            done += len(members)
        cols.append(np.flatnonzero(level == m))
        self.ref_start = done
        order = np.concatenate(cols)
        self.order = None if np.array_equal(order, np.arange(len(level))) else order
        u = bd.dense if self.order is None else bd.dense[self.order]
        k = u.shape[1]
        # Distinct columns among 1, u_c and u_c u_d (a 0/1 timepoint is its own square).
        feats: list[np.ndarray] = [np.ones(len(level))]

        def index(v: np.ndarray) -> int:
            for i, f in enumerate(feats):
                if np.array_equal(f, v):
                    return i
            feats.append(v)
            return len(feats) - 1

        self.col = [index(u[:, c]) for c in range(k)]
        self.pair = [[index(u[:, c] * u[:, d]) for d in range(k)] for c in range(k)]
        self.feats = feats
        self.k = k

    def sums(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per feature ``f``: block-level sums of ``x * f`` (g, m) and the reference sum (g,)."""
        if self.order is not None:
            x = x[:, self.order]
        out = []
        for i, f in enumerate(self.feats):
            xf = x if i == 0 else x * f
            parts = []
            for first, n_levels, r in self.groups:
                seg = xf[:, first : first + n_levels * r]
                total = seg[:, 0::r].copy()
                for j in range(1, r):
                    total += seg[:, j::r]
                parts.append(total)
            block = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
            out.append((block, xf[:, self.ref_start :].sum(axis=1)))
        return out

    def cox_reid(self, w: np.ndarray, trace: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``log det(X'WX)`` and ``tr((X'WX)^-1 X'W^2X)`` per gene, for weights ``w`` (g, n).

        ``trace=False`` leaves the trace out (None).

        With ``a`` the block diagonal, ``ba = A^-1 B`` and ``S`` the Schur complement:
        ``log det = sum log a + log det S``, and the trace is
        ``sum_j L(w^2)_j / a_j + tr(S^-1 Q)`` with ``Q = sum_i w_i^2 v_i v_i'``,
        ``v_i = u_i - ba_j``, summed level by level from the level sums of ``w^2``.
        """
        k, col, pair = self.k, self.col, self.pair
        lw = self.sums(w)
        a = lw[0][0]
        ba = [lw[col[c]][0] / a for c in range(k)]
        g = w.shape[0]
        s = np.empty((g, k, k))
        for c in range(k):
            for d in range(c, k):
                block, ref = lw[pair[c][d]]
                s[:, c, d] = block.sum(axis=1) + ref - (lw[col[c]][0] * ba[d]).sum(axis=1)
                s[:, d, c] = s[:, c, d]
        logdet = np.log(np.abs(a)).sum(axis=1) + np.linalg.slogdet(s)[1]
        if not trace:
            return logdet, None
        l2 = self.sums(w * w)
        s_inv = np.linalg.inv(s)
        out = (l2[0][0] / a).sum(axis=1)
        for c in range(k):
            for d in range(c, k):
                block, ref = l2[pair[c][d]]
                q = block - ba[c] * l2[col[d]][0] - ba[d] * l2[col[c]][0] + ba[c] * ba[d] * l2[0][0]
                both = s_inv[:, c, d] if c == d else s_inv[:, c, d] + s_inv[:, d, c]
                out += both * (q.sum(axis=1) + ref)
        return logdet, out


def _rough_dispersions_chunk(bd: BlockDesign, y: np.ndarray, df: int) -> np.ndarray:
    """DESeq2's ``roughDispEstimate`` for a chunk of genes (y: (n, g) normalised counts),
    from the least-squares fit by blocks; not yet floored at 0."""
    a, ba, s = _unweighted_schur(bd)
    r_a = bd.segsum(y)
    beta_c = _solve(s, _matmul(bd.dense.T, y) - _matmul(ba.T, r_a))
    beta_a = r_a / a[:, None] - _matmul(ba, beta_c)
    y_hat = np.maximum(bd.xmul(beta_a, beta_c), 1)
    return _colsum(((y - y_hat) ** 2 - y_hat) / (df * y_hat**2))


# --------------------------------------------------------------------------------------
# IRLS (mirrors pydeseq2.utils.irls_solver, vectorised across genes)
# --------------------------------------------------------------------------------------


def irls_objective(
    bd: BlockDesign,
    counts: np.ndarray,
    size_factors: np.ndarray,
    disp: float,
    min_mu: float,
) -> tuple[Callable[[np.ndarray], float], Callable[[np.ndarray], np.ndarray]]:
    """Objective and gradient of the optimiser fallback of ``utils.irls_solver``, by blocks.

    ``f(beta) = nb_nll(counts, mu, disp) + 0.5 * 1e-6 * |beta|^2`` with
    ``mu = max(sf * exp(X beta), min_mu)``, and pydeseq2's ``df`` (which ignores the
    clipping of mu), with ``X beta`` and ``X' v`` in O(n k) instead of O(n p).

    Parameters
    ----------
    bd : BlockDesign
        Block structure of the design.
    counts : ndarray
        Counts of one gene, shape (n,).
    size_factors : ndarray
        Size factors, shape (n,).
    disp : float
        Dispersion of the gene.
    min_mu : float
        Lower bound on mu.

    Returns
    -------
    f, df : callable
        Objective and gradient in pydeseq2's parametrisation (design column order).
    """
    xty = bd.join(bd.segsum(counts), bd.dense.T @ counts)

    def mu_of(beta: np.ndarray) -> np.ndarray:
        beta_a, beta_c = bd.split(beta)
        return np.maximum(size_factors * np.exp(bd.xmul(beta_a, beta_c)), min_mu)

    from pydeseq2 import utils

    def f(beta: np.ndarray) -> float:
        return float(utils.nb_nll(counts, mu_of(beta), disp) + 0.5 * (IRLS_RIDGE * beta**2).sum())

    def df(beta: np.ndarray) -> np.ndarray:
        mu_ = mu_of(beta)
        v = (1 / disp + counts) * mu_ / (1 / disp + mu_)
        return -xty + bd.join(bd.segsum(v), bd.dense.T @ v) + IRLS_RIDGE * beta

    return f, df


def _irls_optimiser_gene(
    bd: BlockDesign,
    counts: np.ndarray,
    size_factors: np.ndarray,
    disp: float,
    beta_init: np.ndarray,
    min_mu: float,
    min_beta: float,
    max_beta: float,
    optimizer: str,
) -> tuple[np.ndarray, bool]:
    """Optimiser fallback of ``utils.irls_solver`` for one gene (same start, bounds, method)."""
    from pydeseq2.grid_search import grid_fit_beta
    from scipy.optimize import minimize

    p = bd.n_vars
    f, df = irls_objective(bd, counts, size_factors, disp, min_mu)
    res = minimize(
        f,
        beta_init,
        jac=df,
        method=optimizer,
        bounds=[(min_beta, max_beta)] * p if optimizer == "L-BFGS-B" else None,
    )
    beta, success = res.x, bool(res.success)
    if not success and p <= 2:
        beta = grid_fit_beta(counts, size_factors, bd.to_dense(), disp)
    return beta, success


def _irls_chunk(
    bd: BlockDesign,
    counts: np.ndarray,
    size_factors: np.ndarray,
    disp: np.ndarray,
    min_mu: float,
    beta_tol: float,
    min_beta: float,
    max_beta: float,
    optimizer: str,
    maxiter: int,
    hat_diagonals: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """IRLS for a chunk of genes; returns beta (g, p), mu, H (n, g), converged, fallback.

    ``hat_diagonals=False`` leaves H out (None).
    """
    y = np.asarray(counts, dtype=float)
    n, g = y.shape
    sf = np.asarray(size_factors, dtype=float)[:, None]
    disp = np.asarray(disp, dtype=float)
    u = bd.dense

    # Start: least squares on log(counts / sf + 0.1) (irls_solver's QR solve), by blocks.
    a0, ba0, s0 = _unweighted_schur(bd)
    ylog = np.log(y / sf + 0.1)
    r_a = bd.segsum(ylog)
    beta_c = _solve(s0, _matmul(u.T, ylog) - _matmul(ba0.T, r_a))
    beta_a = r_a / a0[:, None] - _matmul(ba0, beta_c)
    init_a, init_c = beta_a.copy(), beta_c.copy()

    mu = np.maximum(sf * np.exp(bd.xmul(beta_a, beta_c)), min_mu)
    inv_disp = 1.0 / disp
    # Constant part of utils.nb_nll (does not depend on mu): n/alpha log(alpha) - log binom.
    nll_const = n * inv_disp * np.log(disp) - _colsum(
        gammaln(y + inv_disp) - gammaln(y + 1) - gammaln(inv_disp)
    )
    dev = np.full(g, 1000.0)
    active = np.ones(g, dtype=bool)
    fallback = np.zeros(g, dtype=bool)
    it = 0
    while active.any():
        idx = np.flatnonzero(active)
        # While every gene iterates, views instead of gathered copies (same values).
        every = len(idx) == g
        mu_i, d_i = (mu, disp) if every else (mu[:, idx], disp[idx])
        y_i = y if every else y[:, idx]
        w = mu_i / (1.0 + mu_i * d_i)
        wz = w * (np.log(mu_i / sf) + (y_i - mu_i) / mu_i)
        new_a, new_c = _normal(bd, w, IRLS_RIDGE, IRLS_RIDGE).solve(bd.segsum(wz), _matmul(u.T, wz))
        it += 1
        # irls_solver switches to the optimiser when |beta| exceeds max_beta or at maxiter.
        diverged = (np.abs(new_a) > max_beta).any(axis=0) | (np.abs(new_c) > max_beta).any(axis=0)
        if it >= maxiter:
            diverged[:] = True
        fallback[idx[diverged]] = True
        active[idx[diverged]] = False
        ok = ~diverged
        if not ok.all():
            idx, y_i = idx[ok], y_i[:, ok]
            new_a, new_c = new_a[:, ok], new_c[:, ok]
        if len(idx) == 0:
            continue
        beta_a[:, idx], beta_c[:, idx] = new_a, new_c
        mu_new = np.maximum(sf * np.exp(bd.xmul(new_a, new_c)), min_mu)
        mu[:, idx] = mu_new
        a1 = inv_disp[idx]
        # Deviance as -2 * utils.nb_nll, convergence on its relative change.
        new_dev = -2 * (
            nll_const[idx] + _colsum((y_i + a1) * np.log(a1 + mu_new) - y_i * np.log(mu_new))
        )
        ratio = np.abs(new_dev - dev[idx]) / (np.abs(new_dev) + 0.1)
        dev[idx] = new_dev
        active[idx] = ratio > beta_tol

    converged = np.ones(g, dtype=bool)
    for j in np.flatnonzero(fallback):
        beta_j, converged[j] = _irls_optimiser_gene(
            bd,
            y[:, j],
            sf[:, 0],
            float(disp[j]),
            bd.join(init_a[:, j], init_c[:, j]),
            min_mu,
            min_beta,
            max_beta,
            optimizer,
        )
        beta_a[:, j], beta_c[:, j] = bd.split(beta_j)
        mu[:, j] = np.maximum(sf[:, 0] * np.exp(bd.xmul(beta_a[:, j], beta_c[:, j])), min_mu)

    # Hat diagonals W^1/2 X (X'WX + ridge)^-1 X' W^1/2, from the thresholded mu.
    hat = None
    if hat_diagonals:
        w = mu / (1.0 + mu * disp)
        hat = w * _normal(bd, w, IRLS_RIDGE, IRLS_RIDGE).quad_diag(bd)
    # Unthresholded mu is returned, as in irls_solver (and the R code).
    mu_out = sf * np.exp(bd.xmul(beta_a, beta_c))
    return bd.join(beta_a, beta_c), mu_out, hat, converged, fallback


# --------------------------------------------------------------------------------------
# Dispersion MLE (mirrors pydeseq2.utils.fit_alpha_mle)
# --------------------------------------------------------------------------------------


def _grid_fit_alpha_blocked(
    bd: BlockDesign,
    counts: np.ndarray,
    mu: np.ndarray,
    min_disp: float,
    max_disp: float,
    prior_mean: float | None = None,
    prior_var: float | None = None,
    grid_length: int = 20,
) -> float:
    """``pydeseq2.grid_search.grid_fit_alpha`` with the blocked Cox-Reid term.

    A coarse grid of ``grid_length`` points in log(alpha), then as many around its best
    point, as DESeq2's ``fitDispGrid``; the normal prior on log(alpha) is optional.
    """
    from pydeseq2.grid_search import vec_nb_nll

    def loss(log_alpha: np.ndarray) -> np.ndarray:
        alpha = np.exp(log_alpha)
        w = mu[:, None] / (1 + mu[:, None] * alpha)
        reg = 0.5 * _normal(bd, w, 0.0, 0.0).logdet()
        if prior_var is not None:
            reg = reg + (log_alpha - prior_mean) ** 2 / (2 * prior_var)
        return vec_nb_nll(counts, mu, alpha) + reg

    grid = np.linspace(np.log(min_disp), np.log(max_disp), grid_length)
    best = np.argmin(loss(grid))
    delta = grid[1] - grid[0]
    fine = np.linspace(grid[best] - delta, grid[best] + delta, grid_length)
    return float(fine[np.argmin(loss(fine))])


#: Distinct counts per sample and gene up to which the dispersion fit takes ``gammaln`` and
#: ``digamma`` once per distinct count (:class:`~ifnsig.de.dispersion.DistinctCounts`):
#: above it, gathering the values back costs about what it saves.
DISTINCT_COUNTS_AT_MOST = 0.5


def _alpha_mle_chunk(
    bd: BlockDesign,
    counts: np.ndarray,
    mu: np.ndarray,
    alpha_hat: np.ndarray,
    start: np.ndarray | None,
    min_disp: float,
    max_disp: float,
    prior_disp_var: float | None,
    cr_reg: bool,
    prior_reg: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Dispersions for a chunk of genes, as :class:`~ifnsig.de.deseq2_compat.DESeq2Inference`.

    DESeq2's line search (:func:`~ifnsig.de.dispersion.deseq2_dispersions`) on the same
    objective, with the Cox-Reid log-determinant and its derivative from the Schur
    complement, evaluated for all genes of the chunk at once.
    """
    counts = np.asarray(counts, dtype=float)
    mu = np.asarray(mu, dtype=float)
    alpha_hat = np.asarray(alpha_hat, dtype=float)
    if prior_reg and prior_disp_var is None:
        raise ValueError("Sigma_prior is required for prior regularization")
    y_t, mu_t = np.ascontiguousarray(counts.T), np.ascontiguousarray(mu.T)
    prior_mean = np.log(alpha_hat)
    levels = _Levels(bd) if cr_reg else None
    step = max(1, BLOCK_CELLS // max(bd.n_samples, 1))
    distinct = DistinctCounts(y_t)
    if distinct.fraction > DISTINCT_COUNTS_AT_MOST:
        distinct = None

    def objective(
        idx: np.ndarray, log_alpha: np.ndarray, value: bool = True, slope: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        # Blocks of genes small enough for the processor's cache (see nb_negative_loglik).
        out_value = np.empty(len(idx)) if value else None
        out_slope = np.empty(len(idx)) if slope else None
        for first in range(0, len(idx), step):
            part = slice(first, first + step)
            m_ = mu_t[idx[part]]
            genes = None if distinct is None else (distinct, idx[part])
            v, d = nb_negative_loglik(y_t[idx[part]], m_, log_alpha[part], value, slope, genes)
            if levels is not None:
                alpha = np.exp(log_alpha[part])
                logdet, trace = levels.cox_reid(m_ / (1 + m_ * alpha[:, None]), slope)
                if v is not None:
                    v = v + 0.5 * logdet
                if d is not None:
                    d = d - 0.5 * trace * alpha
            if out_value is not None:
                out_value[part] = v
            if out_slope is not None:
                out_slope[part] = d
        if prior_reg:
            diff = log_alpha - prior_mean[idx]
            if out_value is not None:
                out_value = out_value + diff**2 / (2 * prior_disp_var)
            if out_slope is not None:
                out_slope = out_slope + diff / prior_disp_var
        return out_value, out_slope

    def grid_fit(j: int) -> float:
        prior = (prior_mean[j], prior_disp_var) if prior_reg else (None, None)
        return _grid_fit_alpha_blocked(bd, counts[:, j], mu[:, j], min_disp, max_disp, *prior)

    return deseq2_dispersions(
        objective, alpha_hat, min_disp, max_disp, prior_reg, grid_fit, start=start
    )


# --------------------------------------------------------------------------------------
# Wald test (mirrors pydeseq2.utils.wald_test, vectorised across genes)
# --------------------------------------------------------------------------------------


def _wald_chunk(
    bd: BlockDesign,
    disp: np.ndarray,
    lfc: np.ndarray,
    mu: np.ndarray,
    ridge: np.ndarray,
    contrast: np.ndarray,
    lfc_null: float,
    alt_hypothesis: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wald p-values, statistics and SE for a chunk of genes (lfc: (g, p), mu: (n, g))."""
    from scipy.stats import norm

    g = mu.shape[1]
    w = mu / (1 + mu * disp)
    # se^2 = c' H M H c with M = X'WX, H = (M + ridge)^-1: solve for Hc, then
    # (Hc)' M (Hc) = sum_i W_i (x_i' Hc)^2.
    nm = _normal(bd, w, ridge[bd.block_cols], ridge[bd.dense_cols])
    c_a, c_c = bd.split(contrast)
    hc_a, hc_c = nm.solve(np.repeat(c_a[:, None], g, 1), np.repeat(c_c[:, None], g, 1))
    se = np.sqrt(_colsum(w * bd.xmul(hc_a, hc_c) ** 2))

    def scaled(shift: float) -> np.ndarray:
        return (lfc - shift) / se[:, None]

    def greater(shift: float) -> tuple[np.ndarray, np.ndarray]:
        stat = np.einsum("gp,p->g", np.fmax(scaled(shift), 0), contrast)
        return stat, norm.sf(stat)

    def less(shift: float) -> tuple[np.ndarray, np.ndarray]:
        stat = np.einsum("gp,p->g", np.fmin(scaled(shift), 0), contrast)
        return stat, norm.sf(np.abs(stat))

    if alt_hypothesis is None:
        stat = np.einsum("gp,p->g", scaled(lfc_null), contrast)
        pval = 2 * norm.sf(np.abs(stat))
    elif alt_hypothesis == "greaterAbs":
        shifted = np.sign(lfc) * np.fmax((np.abs(lfc) - lfc_null) / se[:, None], 0)
        stat = np.einsum("gp,p->g", shifted, contrast)
        pval = 2 * norm.sf(np.abs(stat))
    elif alt_hypothesis == "lessAbs":
        stat_above, pval_above = greater(-abs(lfc_null))
        stat_below, pval_below = less(abs(lfc_null))
        # min(..., key=abs) keeps the first argument on ties.
        stat = np.where(np.abs(stat_above) <= np.abs(stat_below), stat_above, stat_below)
        pval = np.maximum(pval_above, pval_below)
    elif alt_hypothesis == "greater":
        stat, pval = greater(lfc_null)
    elif alt_hypothesis == "less":
        stat, pval = less(lfc_null)
    else:
        raise KeyError(alt_hypothesis)
    return pval, stat, se
