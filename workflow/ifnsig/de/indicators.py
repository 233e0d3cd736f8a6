"""The block of disjoint indicator columns of a design (one per subject in a paired design).

Found without forming ``X'X`` or an SVD of the whole design: a paired design of 4,000
samples has 2,001 columns, and ``np.linalg.matrix_rank`` of it takes tens of seconds, while
its indicator block and the rank through it take milliseconds. Only numpy and scipy.sparse
are imported, so the plan's checks (run when the workflow is parsed) stay cheap.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["design_rank", "indicator_block"]


def indicator_block(x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Columns of ``x`` forming a block of 0/1 indicators with disjoint supports.

    Candidate columns are non-constant 0/1 indicators. The block is a set of candidates with
    pairwise disjoint support, chosen greedily from the candidates that overlap the fewest
    others (subject indicators overlap only the timepoint/covariate indicators, while a
    timepoint indicator overlaps every subject). Rows outside every chosen indicator form the
    reference level, so indicators and reference partition the samples.

    Parameters
    ----------
    x : ndarray
        Design matrix (n_samples, n_vars), finite.

    Returns
    -------
    (block_cols, level) or None
        Design columns of the block, in design order, and per sample the index into
        ``block_cols`` of its indicator (``len(block_cols)`` for reference rows); None when
        no column is a candidate.
    """
    n, p = x.shape
    support = (x == 1).sum(axis=0)
    binary = ((x == 0) | (x == 1)).all(axis=0)
    cand = np.flatnonzero(binary & (support > 0) & (support < n))
    if len(cand) == 0:
        return None
    indicators = sparse.csc_matrix(x[:, cand] == 1, dtype=np.int64)
    # Which candidates share a sample: sparse, as a subject overlaps only a few others.
    overlap = (indicators.T @ indicators).tocsr()
    overlap.setdiag(0)
    overlap.eliminate_zeros()
    n_overlaps = np.diff(overlap.indptr)
    order = np.lexsort((cand, n_overlaps))
    excluded = np.zeros(len(cand), dtype=bool)
    chosen = []
    for j in order:
        if not excluded[j]:
            chosen.append(j)
            excluded[overlap.indices[overlap.indptr[j] : overlap.indptr[j + 1]]] = True
    chosen = np.sort(chosen)
    block_cols = cand[chosen]
    level = np.full(n, len(block_cols), dtype=np.intp)
    rows, which = indicators[:, chosen].nonzero()
    level[rows] = which
    return block_cols, level


def design_rank(design) -> int:
    """Column rank of a design matrix, through its indicator block where it has one.

    The indicators of a block have disjoint supports, so they are independent, and the rank
    of ``[D U]`` is the number of indicators plus the rank of ``U`` less its projection on
    them (each column of ``U`` minus its mean within each indicator's samples): an SVD of
    an (n, k) matrix, k the columns outside the block, instead of one of (n, p).

    Parameters
    ----------
    design : array-like
        Design matrix (n_samples, n_vars).

    Returns
    -------
    int
        ``np.linalg.matrix_rank(design)`` (up to its tolerance on near-singular designs).
    """
    x = np.asarray(design, dtype=float)
    if x.ndim != 2 or x.size == 0 or not np.isfinite(x).all():
        return int(np.linalg.matrix_rank(x))
    found = indicator_block(x)
    if found is None or len(found[0]) < 2:
        return int(np.linalg.matrix_rank(x))
    block_cols, level = found
    m = len(block_cols)
    dense = np.delete(x, block_cols, axis=1)
    sums = np.zeros((m + 1, dense.shape[1]))
    np.add.at(sums, level, dense)
    sizes = np.bincount(level, minlength=m + 1).astype(float)
    means = sums / np.maximum(sizes, 1)[:, None]
    means[m] = 0.0  # reference rows lie outside every indicator
    residual = dense - means[level]
    return m + (int(np.linalg.matrix_rank(residual)) if dense.shape[1] else 0)
