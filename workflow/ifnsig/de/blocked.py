"""pydeseq2 inference for designs blocked by one many-level factor (paired designs).

A paired design ``~ subject + timepoint`` has one coefficient per subject, so the generic
per-gene Newton step of pydeseq2 costs O(n p^2) with p growing like n. The subject columns
are indicators with disjoint support, hence

.. math::

    X^T W X = \\begin{pmatrix} A & B \\\\ B^T & C \\end{pmatrix},

with ``A`` diagonal (one entry per indicator column), ``B`` (m x k) and ``C`` (k x k) for the
k other ("dense") columns: intercept, timepoint, covariates. With the Schur complement
:math:`S = C - B^T A^{-1} B` the solve, the log-determinant (Cox-Reid term), the hat
diagonals (Cook's distances) and the contrast variance (Wald test) cost O(n k^2) per gene.

:class:`BlockedInference` computes the same quantities as its parent
:class:`~ifnsig.deseq2_compat.DESeq2Inference` (pydeseq2's IRLS steps, stopping rule and
Wald test; DESeq2's dispersion line search; the grid-search fallbacks), in pydeseq2's own
parametrisation (intercept + treatment-coded indicators), vectorised across genes; results
agree up to floating-point rounding. It falls back to the parent class whenever the design
has no such block.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import signal
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from ifnsig.de.deseq2_compat import DESeq2Inference
from ifnsig.de.kernels import (  # noqa: F401 (the kernels' names, as before the split)
    _CHUNK_CELLS,
    IRLS_RIDGE,
    BlockDesign,
    _alpha_mle_chunk,
    _colsum,
    _irls_chunk,
    _Levels,
    _matmul,
    _normal,
    _rough_dispersions_chunk,
    _solve,
    _unweighted_schur,
    _wald_chunk,
    detect_block_design,
    irls_objective,
)
from ifnsig.de.pydeseq2_base import utils

__all__ = ["BlockDesign", "BlockedInference", "detect_block_design", "irls_objective"]

#: Bytes of a task number in the queue of :func:`fork_map`.
_TASK_BYTES = 4


def _run_queue(
    func: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], queue: int
) -> dict[int, Any]:
    """Run the tasks whose numbers this process reads from the pipe ``queue`` until it is empty."""
    done = {}
    while True:
        number = os.read(queue, _TASK_BYTES)
        if not number:
            return done
        i = int.from_bytes(number, "little")
        done[i] = func(*tasks[i])


#: Sample x gene cells of an IRLS chunk: a quarter of the other steps' chunks. Its arrays
#: then stay in the processor's cache between the passes of an iteration, which made the
#: IRLS a fifth faster on one thread and a ninth on two (1,000 samples x 4,000 genes: chunks
#: of 250 genes instead of 1,000; ``bench_parallel_fit.py --steps``). A gene's bits do not
#: depend on its chunk.
IRLS_CHUNK_CELLS = 2**18


def _can_fork(n_tasks: int) -> bool:
    """Whether :func:`fork_map` may run: POSIX fork, no other thread of this interpreter
    (a copy forked beside a running thread may inherit a lock it holds), and a queue of
    task numbers that fits a pipe's buffer."""
    return hasattr(os, "fork") and threading.active_count() == 1 and n_tasks * _TASK_BYTES <= 4096


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int) -> bytearray:
    data = bytearray(size)
    view, done = memoryview(data), 0
    while done < size:
        got = os.readv(fd, [view[done:]])
        if not got:
            raise RuntimeError("a forked worker of the blocked fit ended without its results")
        done += got
    return data


def _send(fd: int, obj: Any) -> None:
    """Pickle ``obj`` into the pipe ``fd``, its arrays' memory written as it is (pickle
    protocol 5 out-of-band buffers): no copy of the arrays on either side."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raw = [b.raw() for b in buffers]
    sizes = [len(header)] + [r.nbytes for r in raw]
    _write_all(fd, len(sizes).to_bytes(8, "little"))
    _write_all(fd, b"".join(n.to_bytes(8, "little") for n in sizes))
    for part in [header, *raw]:
        _write_all(fd, part)


def _receive(fd: int) -> Any:
    """What :func:`_send` wrote, the arrays built on the received bytes (writable)."""
    count = int.from_bytes(_read_exact(fd, 8), "little")
    table = _read_exact(fd, 8 * count)
    sizes = [int.from_bytes(table[8 * i : 8 * i + 8], "little") for i in range(count)]
    parts = [_read_exact(fd, n) for n in sizes]
    return pickle.loads(parts[0], buffers=parts[1:])


def fork_map(
    func: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], n_workers: int
) -> list[Any]:
    """``[func(*t) for t in tasks]`` in this process and ``n_workers - 1`` forked copies.

    A forked copy sees the tasks' arrays where they are (no pickled copy, no import); each
    process takes the next task from a pipe of task numbers as it becomes free, and the
    copies send their results back pickled when the queue is empty. Separate processes
    share no interpreter lock: the chunks of the dispersion fit make thousands of numpy
    calls on a few thousand cells each, and on threads of one process those calls wait for
    each other (a fifth to a third of the fit's time on two threads). The warnings of a
    copy are issued again here; an exception in a copy is raised here.
    """
    queue, feed = os.pipe()
    os.write(feed, b"".join(i.to_bytes(_TASK_BYTES, "little") for i in range(len(tasks))))
    os.close(feed)
    children: list[tuple[int, int]] = []
    try:
        for _ in range(n_workers - 1):
            out, into = os.pipe()
            with contextlib.suppress(AttributeError, OSError):  # Linux: fewer, larger reads
                import fcntl

                fcntl.fcntl(into, fcntl.F_SETPIPE_SZ, 1 << 20)
            with warnings.catch_warnings():
                # Python 3.12+ warns when the process has other OS threads: here BLAS's
                # idle pool (held to one thread while the chunks run); no Python thread runs.
                warnings.filterwarnings("ignore", "This process", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # pragma: no cover (runs in the copy)
                status = 0
                try:
                    os.close(out)
                    with warnings.catch_warnings(record=True) as caught:
                        try:
                            reply: tuple[Any, ...] = ("ok", _run_queue(func, tasks, queue))
                        except BaseException as error:  # noqa: BLE001 (raised in the parent)
                            reply = ("error", error)
                    shown = [(w.message, w.category, w.filename, w.lineno) for w in caught]
                    try:
                        _send(into, (*reply, shown))
                    except Exception as error:  # noqa: BLE001 (an unpicklable result or error)
                        _send(into, ("error", RuntimeError(repr(error)), []))
                except BaseException:  # noqa: BLE001
                    status = 1
                finally:
                    os._exit(status)
            os.close(into)
            children.append((pid, out))
        results = _run_queue(func, tasks, queue)
        while children:
            pid, out = children[0]
            try:
                reply = _receive(out)
            finally:
                os.close(out)
                os.waitpid(pid, 0)
                children.pop(0)
            for message, category, filename, lineno in reply[2]:
                warnings.warn_explicit(message, category, filename, lineno)
            if reply[0] == "error":
                raise reply[1]
            results.update(reply[1])
    finally:
        os.close(queue)
        for pid, out in children:
            os.close(out)
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    return [results[i] for i in range(len(tasks))]


# --------------------------------------------------------------------------------------
# Inference class
# --------------------------------------------------------------------------------------


class BlockedInference(DESeq2Inference):
    """pydeseq2 inference exploiting a many-level blocking factor (paired designs).

    ``irls`` (LFCs, mu, hat diagonals for Cook's distances), ``alpha_mle`` (gene-wise and
    MAP dispersions, Cox-Reid term), ``wald_test`` and ``fit_rough_dispersions`` use the
    Schur complement of the indicator block, vectorised across genes and split into gene
    chunks run by ``n_cpus`` workers. IRLS, the Wald test and the rough dispersions run on
    threads of this process: their chunks spend their time in numpy loops over whole
    chunks, which release the GIL, and threads share the counts and fitted means without
    copies. The dispersion fits run on this process and forked copies of it
    (:func:`fork_map`): their line search makes thousands of numpy calls on cache-sized gene
    blocks, which wait for each other's interpreter lock on threads; a fork shares the
    arrays as they are, without pickled inputs or imports. Designs without a block
    of at least ``min_levels`` levels, and every other method (``lin_reg_mu``,
    ``fit_moments_dispersions``, the trend fit, LFC shrinkage), use the parent
    :class:`~ifnsig.deseq2_compat.DESeq2Inference`.

    Parameters
    ----------
    n_cpus : int, optional
        Number of threads (of processes for the parent's per-gene tasks). If None, all
        available cpus. (default: ``None``).
    joblib_verbosity : int
        Verbosity of joblib. (default: ``0``).
    batch_size : int
        Joblib batch size for the parent's per-gene tasks. (default: ``128``).
    min_levels : int
        Minimum number of levels of the blocking factor (reference included) to use the
        blocked path. (default: ``8``).
    backend : str
        Joblib backend of the parent's per-gene tasks. (default: ``"loky"``).
    chunk_size : int, optional
        Genes per vectorised chunk at most. If None, about 2**20 / n_samples genes; the
        genes are then split into equal chunks, at least two per worker and a multiple of
        the workers. (default: ``None``).
    workers : str
        ``"processes"``: the dispersion fits on forked processes where the system can fork
        and no other thread of this interpreter runs (otherwise on threads); ``"threads"``:
        every step on threads. The results have the same bits. (default: ``"processes"``).

    Attributes
    ----------
    hat_diagonals : bool
        Whether the blocked ``irls`` computes the hat diagonals (Cook's distances need
        them; the gene-wise dispersion step, which keeps only the fitted means, sets it to
        False around its call; None from ``irls`` when False). (default: ``True``).
    paths : dict
        Which path ran for the last call of each method: ``"blocked"`` or ``"default"``.
    n_irls_fallback : int
        Genes of the last ``irls`` call that left the vectorised IRLS for the optimiser
        (|beta| > max_beta or maxiter reached), as in ``utils.irls_solver``.
    """

    def __init__(
        self,
        n_cpus: int | None = None,
        joblib_verbosity: int = 0,
        batch_size: int = 128,
        min_levels: int = 8,
        backend: str = "loky",
        chunk_size: int | None = None,
        workers: Literal["processes", "threads"] = "processes",
    ) -> None:
        super().__init__(
            joblib_verbosity=joblib_verbosity,
            batch_size=batch_size,
            n_cpus=n_cpus,
            backend=backend,
        )
        self.min_levels = min_levels
        self.chunk_size = chunk_size
        self.workers = workers
        self.hat_diagonals = True
        self.paths: dict[str, str] = {}
        self.n_irls_fallback = 0
        self._cache: tuple[int, BlockDesign | tuple[Any, ...]] | None = None

    def block_design(self, design_matrix: pd.DataFrame | np.ndarray) -> BlockDesign | None:
        """Return the block structure of ``design_matrix`` (cached), or None.

        Parameters
        ----------
        design_matrix : pandas.DataFrame or ndarray
            Design matrix.

        Returns
        -------
        BlockDesign or None
            See :func:`detect_block_design`.
        """
        x = np.asarray(design_matrix, dtype=float)
        if self._cache is not None and self._cache[0] == self.min_levels:
            cached = self._cache[1]
            # A design with a block is checked against it (no copy of the design); one
            # without (few columns) by its bytes.
            if isinstance(cached, BlockDesign) and cached.describes(x):
                return cached
            if isinstance(cached, tuple) and cached == (x.shape, hash(x.tobytes())):
                return None
        found = detect_block_design(design_matrix, self.min_levels)
        key = found if found is not None else (x.shape, hash(x.tobytes()))
        self._cache = (self.min_levels, key)
        return found

    def _chunks(self, n_samples: int, n_genes: int, cells: int = _CHUNK_CELLS) -> list[slice]:
        size = self.chunk_size or max(32, cells // max(n_samples, 1))
        # At least two chunks per thread and a multiple of the threads (as far as the
        # genes allow), of equal size: with 5 chunks on 2 threads one thread runs 3
        # while the other waits after 2.
        n_chunks = math.ceil(n_genes / max(size, 1))
        n_chunks = max(2 * self.n_cpus, math.ceil(n_chunks / self.n_cpus) * self.n_cpus)
        size = max(1, math.ceil(n_genes / n_chunks))
        return [slice(i, min(i + size, n_genes)) for i in range(0, n_genes, size)]

    def _map(
        self, func: Callable[..., Any], tasks: Sequence[tuple[Any, ...]], fork: bool = False
    ) -> list[Any]:
        # One BLAS thread, as in the parent's workers: multithreaded BLAS makes the many
        # tiny calls (scipy's L-BFGS-B, k x k solves) several times slower.
        with threadpool_limits(limits=1):
            n_workers = min(self.n_cpus, len(tasks))
            if n_workers == 1:
                return [func(*t) for t in tasks]
            if fork and self.workers == "processes" and _can_fork(len(tasks)):
                return fork_map(func, tasks, n_workers)
            with ThreadPoolExecutor(n_workers) as pool:
                return list(pool.map(lambda t: func(*t), tasks))

    def fit_rough_dispersions(
        self, normed_counts: np.ndarray, design_matrix: pd.DataFrame | np.ndarray
    ) -> np.ndarray:
        """Rough dispersions (see ``utils.fit_rough_dispersions``), least squares by blocks.

        Same estimator as pydeseq2 (ordinary least-squares fit of the normalised counts,
        fitted values floored at 1, DESeq2's ``roughDispEstimate``); the least-squares fit
        uses the Schur complement of X'X instead of a dense lstsq with p columns.
        """
        bd = self.block_design(design_matrix)
        n, p = np.shape(design_matrix)
        if bd is None or n == p:
            self.paths["fit_rough_dispersions"] = "default"
            return utils.fit_rough_dispersions(normed_counts, design_matrix)
        self.paths["fit_rough_dispersions"] = "blocked"
        y = np.asarray(normed_counts, dtype=float)
        tasks = [(bd, y[:, sl], n - p) for sl in self._chunks(*y.shape)]
        return np.maximum(np.concatenate(self._map(_rough_dispersions_chunk, tasks)), 0)

    def irls(
        self,
        counts: np.ndarray,
        size_factors: np.ndarray,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        min_mu: float,
        beta_tol: float,
        min_beta: float = -30,
        max_beta: float = 30,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
        maxiter: int = 250,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Fit the NB GLM by IRLS (see :meth:`pydeseq2.inference.Inference.irls`).

        Blocked path: the steps of ``utils.irls_solver`` (least-squares start, ridge 1e-6,
        convergence on the relative change of -2 * nll, optimiser fallback from the start
        when |beta| > max_beta or at maxiter) for all genes of a chunk at once; returns
        beta in the design's parametrisation, unthresholded mu, hat diagonals and
        convergence flags.
        """
        bd = self.block_design(design_matrix)
        if bd is None:
            self.paths["irls"] = "default"
            return super().irls(
                counts, size_factors, design_matrix, disp, min_mu, beta_tol,
                min_beta, max_beta, optimizer, maxiter,
            )  # fmt: skip
        self.paths["irls"] = "blocked"
        counts = np.asarray(counts)
        disp = np.broadcast_to(np.asarray(disp, dtype=float), (counts.shape[1],))
        sf = np.asarray(size_factors, dtype=float)
        tasks = [
            (bd, counts[:, s], sf, disp[s], min_mu, beta_tol, min_beta, max_beta, optimizer,
             maxiter, self.hat_diagonals)
            for s in self._chunks(*counts.shape, cells=IRLS_CHUNK_CELLS)
        ]  # fmt: skip
        res = self._map(_irls_chunk, tasks)
        beta, mu, converged, fallback = (
            np.concatenate([r[i] for r in res], axis=ax)
            for i, ax in ((0, 0), (1, 1), (3, 0), (4, 0))
        )
        hat = np.concatenate([r[2] for r in res], axis=1) if self.hat_diagonals else None
        self.n_irls_fallback = int(fallback.sum())
        return beta, mu, hat, converged

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
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fit dispersions (see :meth:`pydeseq2.inference.Inference.alpha_mle`).

        Blocked path: DESeq2's line search on the NB likelihood + Cox-Reid term + optional
        log-normal prior, with the log-determinant and its derivative from the Schur
        complement.
        """
        bd = self.block_design(design_matrix)
        if bd is None:
            self.paths["alpha_mle"] = "default"
            return super().alpha_mle(
                counts, design_matrix, mu, alpha_hat, min_disp, max_disp,
                prior_disp_var, cr_reg, prior_reg, optimizer,
            )  # fmt: skip
        self.paths["alpha_mle"] = "blocked"
        counts = np.asarray(counts)
        mu = np.maximum(np.asarray(mu, dtype=float), self.min_mu)
        alpha_hat = np.asarray(alpha_hat, dtype=float)
        start = self.map_start if prior_reg else None
        tasks = [
            (bd, counts[:, s], mu[:, s], alpha_hat[s], None if start is None else start[s],
             min_disp, max_disp, prior_disp_var, cr_reg, prior_reg)
            for s in self._chunks(*counts.shape)
        ]  # fmt: skip
        res = self._map(_alpha_mle_chunk, tasks, fork=True)
        return np.concatenate([r[0] for r in res]), np.concatenate([r[1] for r in res])

    def fitted_means(
        self, design_matrix: pd.DataFrame | np.ndarray, lfc: np.ndarray, size_factors: np.ndarray
    ) -> np.ndarray:
        """Fitted means ``sf * exp(X beta)`` of every gene (see
        :meth:`~ifnsig.deseq2_compat.DESeq2Inference.fitted_means`), samples x genes.

        Blocked path: ``X beta`` by :meth:`BlockDesign.xmul` (the block coefficient of each
        sample's level plus the dense columns), O(n k) per gene instead of the O(n p) of the
        dense product; the means of the IRLS (``sf * exp(xmul)``), the same bits per gene
        whatever the genes beside it.
        """
        bd = self.block_design(design_matrix)
        if bd is None:
            self.paths["fitted_means"] = "default"
            return super().fitted_means(design_matrix, lfc, size_factors)
        self.paths["fitted_means"] = "blocked"
        lfc = np.asarray(lfc, dtype=float)
        sf = np.asarray(size_factors, dtype=float)[:, None]
        out = np.empty((bd.n_samples, len(lfc)))
        for s in self._chunks(bd.n_samples, len(lfc)):
            out[:, s] = sf * np.exp(bd.xmul(*bd.split(lfc[s])))
        return out

    def wald_test(
        self,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        lfc: np.ndarray,
        mu: np.ndarray,
        ridge_factor: np.ndarray,
        contrast: np.ndarray,
        lfc_null: np.ndarray,
        alt_hypothesis: Literal["greaterAbs", "lessAbs", "greater", "less"] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Wald test (see :meth:`pydeseq2.inference.Inference.wald_test`).

        Blocked path (diagonal ridge, scalar ``lfc_null``): ``utils.wald_test`` with
        ``H c = (X'WX + ridge)^-1 c`` by block elimination, vectorised over genes.
        """
        bd = self.block_design(design_matrix)
        ridge = np.asarray(ridge_factor, dtype=float)
        diagonal = ridge.ndim == 2 and np.array_equal(ridge, np.diag(np.diag(ridge)))
        if bd is None or not diagonal or np.ndim(lfc_null) != 0:
            self.paths["wald_test"] = "default"
            return super().wald_test(
                design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis
            )
        self.paths["wald_test"] = "blocked"
        mu = np.maximum(np.asarray(mu, dtype=float), self.min_mu)
        lfc = np.asarray(lfc, dtype=float)
        disp = np.asarray(disp, dtype=float)
        contrast = np.asarray(contrast, dtype=float)
        tasks = [
            (bd, disp[s], lfc[s], mu[:, s], np.diag(ridge), contrast, float(lfc_null),
             alt_hypothesis)
            for s in self._chunks(*mu.shape)
        ]  # fmt: skip
        res = self._map(_wald_chunk, tasks)
        return tuple(np.concatenate([r[i] for r in res]) for i in range(3))  # type: ignore[return-value]
