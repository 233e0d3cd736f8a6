"""The block of disjoint indicator columns of a design (one per subject in a paired design).

Found without forming ``X'X`` or an SVD of the whole design: a paired design of 4,000
samples has 2,001 columns, and ``np.linalg.matrix_rank`` of it takes tens of seconds, while
its indicator block and the rank through it take milliseconds. Only numpy and scipy.sparse
are imported, so the plan's checks (run when the workflow is parsed) stay cheap.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["design_rank", "indicator_block", "row_groups"]


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
    rows, cols, values = _nonzeros(x)
    one = values == 1
    support = np.bincount(cols[one], minlength=p)
    binary = np.bincount(cols[~one], minlength=p) == 0
    cand = np.flatnonzero(binary & (support > 0) & (support < n))
    if len(cand) == 0:
        return None
    position = np.full(p, -1)
    position[cand] = np.arange(len(cand))
    keep = position[cols] >= 0
    indicators = sparse.csc_matrix(
        (np.ones(int(keep.sum()), dtype=np.int64), (rows[keep], position[cols[keep]])),
        shape=(n, len(cand)),
    )
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


def _nonzeros(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the nonzero entries of ``x``, column after column.

    One pass over the matrix in its memory order: a paired design of 10,000 samples has
    5,001 columns but about three nonzero entries per row.
    """
    if not x.flags.f_contiguous:
        rows, cols = np.nonzero(x != 0)
        order = np.argsort(cols, kind="stable")
        return rows[order], cols[order], x[rows[order], cols[order]]
    # np.nonzero of a boolean mask is several times faster than of the floats; blocks of
    # columns bound the mask's memory.
    xt, step = x.T, max(1, 2**22 // max(len(x), 1))
    firsts = range(0, x.shape[1], step)
    found = [np.nonzero(xt[first : first + step] != 0) for first in firsts]
    cols = np.concatenate([c + first for (c, _), first in zip(found, firsts, strict=True)])
    rows = np.concatenate([r for _, r in found])
    return rows, cols, xt[cols, rows]


def row_groups(design) -> tuple[np.ndarray, np.ndarray]:
    """Groups of equal rows of a design: each row's group and each group's size.

    Rows are equal when their nonzero entries are (columns and values, bit for bit; a zero
    of either sign is a zero), as when ``DataFrame.value_counts`` groups them by every
    column, but compared as the few (column, value) pairs of each row rather than column by
    column: linear in the design's cells.

    Parameters
    ----------
    design : array-like
        Design matrix (n_samples, n_vars), finite.

    Returns
    -------
    (group, sizes)
        ``group``: per row, the index of its group;
        ``sizes``: the number of rows in each group.
    """
    x = np.asarray(design, dtype=float)
    n = x.shape[0]
    rows, cols, values = _nonzeros(x)
    order = np.argsort(rows, kind="stable")  # by row, columns ascending within each row
    rows, cols, values = rows[order], cols[order], values[order]
    per_row = np.bincount(rows, minlength=n)
    width = int(per_row.max()) if n else 0
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    # Per row: how many nonzero entries, their columns (-1 past the last) and their values'
    # bits, side by side in one integer key.
    keys = np.zeros((n, 1 + 2 * width), dtype=np.int64)
    keys[:, 0] = per_row
    keys[:, 1 : 1 + width] = -1
    keys[rows, 1 + slot] = cols
    keys[rows, 1 + width + slot] = values.view(np.int64)
    _, group, sizes = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return group.ravel(), sizes
