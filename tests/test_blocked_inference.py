"""BlockedInference reproduces the dense DESeq2Inference on subject-blocked designs.

IRLS and the Wald test are pydeseq2's own (DefaultInference), dispersions DESeq2's line
search. Genes flagged as not converged in either run (dispersion line search out of steps,
IRLS handed to the optimiser) are left out of the numerical comparisons, at most 1 %.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from formulaic import model_matrix
from pydeseq2.dds import DeseqDataSet
from pydeseq2.default_inference import DefaultInference
from pydeseq2.ds import DeseqStats
from threadpoolctl import threadpool_limits

from ifnsig.de import blocked as bi
from ifnsig.de.blocked import BlockedInference, detect_block_design, irls_objective
from ifnsig.de.deseq2_compat import DESeq2Inference, deseq_dataset_class, deseq_stats_class

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("blocked_inference")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
N_CPUS = 2


def simulate_paired(
    n_subjects: int, n_timepoints: int, n_genes: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired NB counts: subject effects, a timepoint effect for 15% of genes."""
    rng = np.random.default_rng(seed)
    subject = np.repeat([f"S{i:02d}" for i in range(n_subjects)], n_timepoints)
    timepoint = np.tile([f"T{t}" for t in range(n_timepoints)], n_subjects)
    names = [f"{s}_{t}" for s, t in zip(subject, timepoint, strict=True)]
    meta = pd.DataFrame({"subject": subject, "timepoint": timepoint}, index=names)
    base = rng.lognormal(5.5, 1.2, n_genes)
    disp = (0.1 + 2.0 / base) * rng.lognormal(0, 0.3, n_genes)
    subject_effect = rng.normal(0, 0.5, (n_subjects, n_genes))
    lfc = np.zeros((n_timepoints, n_genes))
    de = rng.random(n_genes) < 0.15
    lfc[1:, de] = rng.normal(0, 1.0, (n_timepoints - 1, de.sum()))
    sf = rng.lognormal(0, 0.2, len(meta))
    si = np.repeat(np.arange(n_subjects), n_timepoints)
    ti = np.tile(np.arange(n_timepoints), n_subjects)
    mu = sf[:, None] * base * np.exp(subject_effect[si] + lfc[ti])
    counts = rng.negative_binomial(1 / disp, 1 / (1 + mu * disp))
    genes = [f"g{i}" for i in range(n_genes)]
    return pd.DataFrame(counts, index=meta.index, columns=genes), meta


def run_deseq(counts, meta, design, contrast, inference, min_replicates=7):
    """Full run (refit_cooks=True, DESeq2's dispersion trend and prior) and Wald test.

    One BLAS thread in this process: pydeseq2's in-process (n_cpus=1) per-gene optimiser
    calls are several times slower with multithreaded BLAS on a shared machine.
    """
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        dds = deseq_dataset_class()(
            counts=counts,
            metadata=meta,
            design=design,
            refit_cooks=True,
            min_replicates=min_replicates,
            inference=inference,
            quiet=True,
        )
        dds.deseq2()
        ds = DeseqStats(dds, contrast=contrast, inference=inference, quiet=True)
        ds.summary()
    return dds, ds


def converged_in_both(d0: DeseqDataSet, d1: DeseqDataSet) -> np.ndarray:
    """Genes whose IRLS converged in both runs (the rest go to pydeseq2's optimiser).

    Dispersion fits that run out of line-search steps go to a grid search in both paths,
    which is deterministic, so they stay in.
    """
    keep = np.ones(d0.n_vars, dtype=bool)
    for d in (d0, d1):
        keep &= d.var["_LFC_converged"].fillna(True).astype(bool).to_numpy()
    return keep


def rel_diff(a, b) -> np.ndarray:
    """Relative differences over entries finite in both; NaN patterns must agree."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
    ok = np.isfinite(a)
    return np.abs(a[ok] - b[ok]) / np.maximum(np.abs(a[ok]), 1e-300)


def assert_close(a, b, what: str, median: float = 1e-6, q999: float = 1e-3) -> None:
    r = rel_diff(a, b)
    med, top = np.median(r), np.quantile(r, 0.999)
    assert med < median and top < q999, f"{what}: median {med:.2e}, 99.9th pct {top:.2e}"


def assert_pipeline_equivalent(res0, res1, max_excluded: float = 0.01) -> None:
    """The brief's criteria on LFC, stat, dispersions, Cook's distances and padj calls."""
    (d0, s0), (d1, s1) = res0, res1
    keep = converged_in_both(d0, d1)
    assert (~keep).mean() <= max_excluded, f"{(~keep).sum()} genes not converged"
    r0, r1 = s0.results_df[keep], s1.results_df[keep]
    assert_close(r0.log2FoldChange, r1.log2FoldChange, "log2FoldChange")
    assert_close(r0.stat, r1.stat, "stat")
    assert_close(r0.lfcSE, r1.lfcSE, "lfcSE")
    assert_close(d0.var.dispersions[keep], d1.var.dispersions[keep], "dispersions")
    assert_close(d0.var.genewise_dispersions[keep], d1.var.genewise_dispersions[keep], "genewise")
    assert_close(d0.layers["cooks"][:, keep], d1.layers["cooks"][:, keep], "Cook's")
    near = (r0.padj - 0.05).abs() < 1e-3
    calls0, calls1 = r0.padj < 0.05, r1.padj < 0.05
    assert calls0.sum() > 0
    assert ((calls0 != calls1) & ~near).sum() == 0


# --------------------------------------------------------------------------------------
# Structure detection and blocked linear algebra
# --------------------------------------------------------------------------------------


def paired_design(n_subjects: int = 12, n_timepoints: int = 3) -> pd.DataFrame:
    _, meta = simulate_paired(n_subjects, n_timepoints, 5, seed=0)
    return pd.DataFrame(model_matrix("~ subject + timepoint", meta))


def test_detect_block_design_paired() -> None:
    x = paired_design(12, 3)
    bd = detect_block_design(x, min_levels=8)
    assert bd is not None
    cols = np.asarray(x.columns)
    assert all(c.startswith("subject[") for c in cols[bd.block_cols])
    assert list(cols[bd.dense_cols]) == ["Intercept", "timepoint[T.T1]", "timepoint[T.T2]"]
    assert bd.name == "subject" and bd.n_levels == 12 and bd.n_block == 11
    np.testing.assert_array_equal(bd.to_dense(), x.to_numpy())
    # Same answer from the bare ndarray, which is what pydeseq2 passes to inference.
    bd2 = detect_block_design(x.to_numpy(), min_levels=8)
    assert bd2 is not None
    np.testing.assert_array_equal(bd2.block_cols, bd.block_cols)
    np.testing.assert_array_equal(bd2.level, bd.level)
    assert detect_block_design(x, min_levels=13) is None


def test_detect_block_design_rejects_other_designs() -> None:
    rng = np.random.default_rng(1)
    meta = pd.DataFrame(
        {
            "group": np.repeat(["a", "b"], 10),
            "batch": np.tile(["x", "y", "z", "w", "v"], 4),
            "age": rng.normal(50, 10, 20),
        }
    )
    for formula in ["~ group", "~ group + batch", "~ age + group"]:
        assert detect_block_design(pd.DataFrame(model_matrix(formula, meta))) is None
    # A subject-level covariate makes the paired design rank deficient: no blocked path.
    _, meta = simulate_paired(10, 2, 5, seed=0)
    meta["arm"] = np.where(meta.subject < "S05", "A", "B")
    x = pd.DataFrame(model_matrix("~ subject + timepoint + arm", meta))
    assert detect_block_design(x, min_levels=2) is None


def test_design_rank_is_numpys() -> None:
    """The rank through the subject block equals numpy's SVD rank, deficient designs too."""
    from ifnsig.de.indicators import design_rank

    rng = np.random.default_rng(3)
    _, meta = simulate_paired(10, 3, 5, seed=0)
    meta["arm"] = np.where(meta.subject < "S05", "A", "B")
    meta["age"] = rng.normal(50, 10, len(meta))
    meta["visit_age"] = meta["age"] + (meta["timepoint"] != "T0")  # age + timepoint
    meta["batch"] = np.tile(["x", "y", "z"], 10)
    formulas = [
        "~ subject + timepoint",
        "~ subject + timepoint + arm",  # arm is absorbed by the subject term
        "~ subject + timepoint + age",
        "~ subject + timepoint + batch",
        "~ subject + timepoint + age + visit_age",
        "~ timepoint + arm",
        "~ 0 + subject + timepoint",
    ]
    for formula in formulas:
        x = pd.DataFrame(model_matrix(formula, meta)).to_numpy(dtype=float)
        assert design_rank(x) == np.linalg.matrix_rank(x), formula
    x = pd.DataFrame(model_matrix("~ subject + timepoint", meta))
    x["dup"] = x["timepoint[T.T1]"]
    assert design_rank(x) == np.linalg.matrix_rank(x.to_numpy()) == x.shape[1] - 1


def test_chunks_keep_every_process_busy() -> None:
    """Equal chunks, at least two per process and a multiple of the processes."""
    for n_cpus, n_samples, n_genes in [
        (2, 1000, 5000),
        (2, 1000, 20000),
        (3, 200, 100),
        (1, 50, 7),
    ]:
        chunks = BlockedInference(n_cpus=n_cpus)._chunks(n_samples, n_genes)
        sizes = [c.stop - c.start for c in chunks]
        assert chunks[0].start == 0 and chunks[-1].stop == n_genes
        assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))
        assert len(chunks) % n_cpus == 0 and len(chunks) >= 2 * n_cpus
        assert (
            max(sizes) <= max(32, 2**20 // n_samples) and max(sizes) - min(sizes) <= max(sizes) // 2
        )


def test_blocked_normal_equations_match_dense() -> None:
    x = paired_design(9, 3)
    bd = detect_block_design(x, min_levels=2)
    assert bd is not None
    xd = x.to_numpy()
    rng = np.random.default_rng(2)
    n, p, g = xd.shape[0], xd.shape[1], 4
    w = rng.lognormal(0, 1, (n, g))
    ridge = rng.uniform(1e-6, 1e-2, p)
    rhs = rng.normal(size=(p, g))
    nm = bi._normal(bd, w, ridge[bd.block_cols], ridge[bd.dense_cols])
    sol_a, sol_c = nm.solve(*bd.split(rhs.T))
    q = nm.quad_diag(bd)
    for j in range(g):
        m = (xd.T * w[:, j]) @ xd + np.diag(ridge)
        np.testing.assert_allclose(bd.join(sol_a[:, j], sol_c[:, j]), np.linalg.solve(m, rhs[:, j]))
        np.testing.assert_allclose(q[:, j], np.einsum("ij,jk,ik->i", xd, np.linalg.inv(m), xd))
        np.testing.assert_allclose(nm.logdet()[j], np.linalg.slogdet(m)[1])


def test_cox_reid_from_level_sums_matches_normal_equations() -> None:
    """log det X'WX and tr((X'WX)^-1 X'W^2X) from the per-subject sums, on shuffled samples,
    subjects with two and three samples, a continuous covariate and a reference subject."""
    rng = np.random.default_rng(4)
    subject = np.r_[np.repeat(np.arange(15), 2), [3, 7, 11]]
    timepoint = np.r_[np.tile([0, 1], 15), [0, 0, 0]]
    order = rng.permutation(len(subject))
    subject, timepoint = subject[order], timepoint[order]
    x = np.zeros((len(subject), 17))
    x[:, 0] = 1
    x[subject > 0, subject[subject > 0]] = 1
    x[:, 15] = timepoint
    x[:, 16] = rng.normal(size=len(subject))
    bd = detect_block_design(x, min_levels=2)
    assert bd is not None and bd.n_dense == 3
    w = rng.lognormal(0, 1, (len(subject), 6))
    logdet, trace = bi._Levels(bd).cox_reid(np.ascontiguousarray(w.T))
    for j in range(w.shape[1]):
        m = (x.T * w[:, j]) @ x
        np.testing.assert_allclose(logdet[j], np.linalg.slogdet(m)[1], rtol=1e-12)
        d_m = (x.T * w[:, j] ** 2) @ x
        np.testing.assert_allclose(trace[j], np.trace(np.linalg.solve(m, d_m)), rtol=1e-12)


def test_nb_likelihood_value_and_slope_alone_have_the_bits_of_both() -> None:
    from ifnsig.de.dispersion import nb_negative_loglik

    rng = np.random.default_rng(5)
    y = rng.negative_binomial(3, 0.05, (70, 900)).astype(float)
    mu = rng.uniform(0.5, 200, y.shape)
    log_alpha = rng.uniform(-6, 1, 70)
    value, slope = nb_negative_loglik(y, mu, log_alpha)
    assert np.array_equal(nb_negative_loglik(y, mu, log_alpha, slope=False)[0], value)
    assert np.array_equal(nb_negative_loglik(y, mu, log_alpha, value=False)[1], slope)
    # Each gene's bits do not depend on the other genes of the call.
    assert np.array_equal(nb_negative_loglik(y[5:6], mu[5:6], log_alpha[5:6])[0], value[5:6])


def test_nb_likelihood_from_distinct_counts_has_the_bits_of_every_count() -> None:
    from ifnsig.de.dispersion import DistinctCounts, nb_negative_loglik

    rng = np.random.default_rng(6)
    y = rng.negative_binomial(3, 0.1, (40, 600)).astype(float)
    y[7] = 0.0  # a gene without counts: one distinct value
    mu = rng.uniform(0.5, 60, y.shape)
    log_alpha = rng.uniform(-6, 1, 40)
    distinct = DistinctCounts(y)
    assert distinct.fraction < 0.2
    genes = np.array([31, 7, 2, 30])  # any genes, in any order, as the line search asks
    plain = nb_negative_loglik(y[genes], mu[genes], log_alpha[genes])
    shared = nb_negative_loglik(y[genes], mu[genes], log_alpha[genes], distinct=(distinct, genes))
    assert np.array_equal(plain[0], shared[0]) and np.array_equal(plain[1], shared[1])


def test_chunk_kernels_import_neither_pydeseq2_nor_pandas() -> None:
    """What the fit's chunks run imports numpy and scipy only (cheap to start)."""
    import subprocess
    import sys

    code = (
        "import sys, ifnsig.de.kernels; "
        "print(sorted(m for m in ('pydeseq2', 'pandas', 'anndata') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------------------
# Method-level equivalence (same inputs to both backends)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def method_inputs():
    counts, meta = simulate_paired(12, 3, 300, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(counts=counts, metadata=meta, design="~subject + timepoint", quiet=True)
        dds.fit_size_factors()
        dds.fit_genewise_dispersions()
    x = dds.obsm["design_matrix"].to_numpy()
    return {
        "counts": dds.X,
        "sf": dds.obs["size_factors"].to_numpy(),
        "x": x,
        "mu": dds.layers["_mu_hat"],
        "disp": dds.var["genewise_dispersions"].to_numpy(),
        "mom": dds.var["_MoM_dispersions"].to_numpy(),
    }


def test_irls_matches_default(method_inputs) -> None:
    d = method_inputs
    args = (d["counts"], d["sf"], d["x"], d["disp"], 0.5, 1e-8)
    b0, mu0, h0, c0 = DefaultInference(n_cpus=1).irls(*args)
    inf = BlockedInference(n_cpus=1, min_levels=2)
    b1, mu1, h1, c1 = inf.irls(*args)
    assert inf.paths["irls"] == "blocked" and inf.n_irls_fallback == 0
    np.testing.assert_array_equal(c0, c1)
    np.testing.assert_allclose(b1, b0, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(mu1, mu0, rtol=1e-9)
    np.testing.assert_allclose(h1, h0, rtol=1e-9, atol=1e-12)


def test_rough_dispersions_match_default(method_inputs) -> None:
    d = method_inputs
    normed = d["counts"] / d["sf"][:, None]
    inf = BlockedInference(n_cpus=1, min_levels=2)
    got = inf.fit_rough_dispersions(normed, d["x"])
    assert inf.paths["fit_rough_dispersions"] == "blocked"
    np.testing.assert_allclose(got, bi.utils.fit_rough_dispersions(normed, d["x"]), rtol=1e-9)


def test_irls_optimiser_fallback(method_inputs) -> None:
    """maxiter=2 sends every gene to the optimiser branch of irls_solver."""
    d = method_inputs
    sl = slice(0, 20)
    args = (d["counts"][:, sl], d["sf"], d["x"], d["disp"][sl], 0.5, 1e-8)
    inf = BlockedInference(n_cpus=1, min_levels=2)
    b1, mu1, h1, c1 = inf.irls(*args, maxiter=2)
    assert inf.n_irls_fallback == 20
    b0, mu0, h0, c0 = DefaultInference(n_cpus=1).irls(*args, maxiter=2)
    bd = detect_block_design(d["x"], min_levels=2)
    x = d["x"]
    rng = np.random.default_rng(3)
    for j in range(20):
        y, disp = d["counts"][:, j].astype(float), d["disp"][j]
        f, df = irls_objective(bd, y, d["sf"], disp, 0.5)
        # pydeseq2's closures in irls_solver, with the dense design.
        for beta in (b0[j], rng.normal(0, 2, x.shape[1])):
            mu_ = np.maximum(d["sf"] * np.exp(x @ beta), 0.5)
            f0 = bi.utils.nb_nll(y, mu_, disp) + 0.5 * (1e-6 * beta**2).sum()
            g0 = -x.T @ y + ((1 / disp + y) * mu_ / (1 / disp + mu_)) @ x + 1e-6 * beta
            np.testing.assert_allclose(f(beta), f0, rtol=1e-12)
            np.testing.assert_allclose(df(beta), g0, rtol=1e-9, atol=1e-9)
        # L-BFGS-B stops on a noisy objective: both reach the same objective value.
        if c0[j] and c1[j]:
            np.testing.assert_allclose(f(b1[j]), f(b0[j]), rtol=1e-3)
    # Hat diagonals are those of the returned (thresholded) mu.
    w = np.maximum(mu1, 0.5) / (1 + np.maximum(mu1, 0.5) * d["disp"][sl])
    j = 0
    m = (x.T * w[:, j]) @ x + 1e-6 * np.eye(x.shape[1])
    np.testing.assert_allclose(
        h1[:, j], w[:, j] * np.einsum("ij,jk,ik->i", x, np.linalg.inv(m), x), rtol=1e-9
    )


@pytest.mark.parametrize("prior_reg", [False, True])
def test_alpha_mle_matches_dense(method_inputs, prior_reg) -> None:
    d = method_inputs
    kwargs = dict(
        counts=d["counts"],
        design_matrix=d["x"],
        mu=d["mu"],
        alpha_hat=d["mom"],
        min_disp=1e-8,
        max_disp=36.0,
        prior_disp_var=0.5 if prior_reg else None,
        cr_reg=True,
        prior_reg=prior_reg,
    )
    a0, c0 = DESeq2Inference(n_cpus=1).alpha_mle(**kwargs)
    inf = BlockedInference(n_cpus=1, min_levels=2)
    a1, c1 = inf.alpha_mle(**kwargs)
    assert inf.paths["alpha_mle"] == "blocked"
    np.testing.assert_array_equal(c0, c1)
    assert c0.mean() > 0.97
    assert_close(a0, a1, "dispersion", median=1e-10, q999=1e-6)


def test_alpha_mle_on_processes_has_the_bits_of_one_thread(method_inputs) -> None:
    d = method_inputs
    kwargs = dict(
        counts=d["counts"], design_matrix=d["x"], mu=d["mu"], alpha_hat=d["mom"],
        min_disp=1e-8, max_disp=36.0,
    )  # fmt: skip
    one = BlockedInference(n_cpus=1, min_levels=2).alpha_mle(**kwargs)
    for workers in ("processes", "threads"):
        inf = BlockedInference(n_cpus=2, min_levels=2, chunk_size=40, workers=workers)
        both = inf.alpha_mle(**kwargs)
        assert all(np.array_equal(a, b) for a, b in zip(one, both, strict=True)), workers


_PARENT = os.getpid()


def _pid_and_square(i: int) -> tuple[int, int]:
    # This process's task is slow, so that the forked copy takes the others.
    time.sleep(0.5 if os.getpid() == _PARENT else 0.001)
    return os.getpid(), i * i


def _fails_at_three(i: int) -> int:
    if i == 3:
        raise ValueError("three")
    return i


def _warns(i: int) -> int:
    warnings.warn(f"task {i}", RuntimeWarning, stacklevel=1)
    return i


@pytest.fixture
def forked(monkeypatch) -> list[int]:
    """The processes forked during the test; each must be reaped by the end."""
    pids: list[int] = []
    fork = os.fork

    def recorded() -> int:
        pid = fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recorded)
    yield pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_fork_map_keeps_the_order_and_shares_the_tasks(forked) -> None:
    out = bi.fork_map(_pid_and_square, [(i,) for i in range(12)], 2)
    assert [square for _, square in out] == [i * i for i in range(12)]
    assert {pid for pid, _ in out} == {os.getpid(), *forked}


def test_fork_map_raises_and_warns_what_a_copy_did(forked) -> None:
    with pytest.raises(ValueError, match="three"):
        bi.fork_map(_fails_at_three, [(i,) for i in range(8)], 2)
    with pytest.warns(RuntimeWarning) as caught:
        assert bi.fork_map(_warns, [(i,) for i in range(6)], 3) == list(range(6))
    assert sorted(str(w.message) for w in caught) == [f"task {i}" for i in range(6)]
    assert len(forked) == 3


@pytest.mark.parametrize("alt", [None, "greaterAbs", "lessAbs", "greater", "less"])
def test_wald_test_matches_dense(method_inputs, alt) -> None:
    d = method_inputs
    x = d["x"]
    b, mu, _, _ = DefaultInference(n_cpus=1).irls(d["counts"], d["sf"], x, d["disp"], 0.5, 1e-8)
    contrast = np.zeros(x.shape[1])
    contrast[-1] = 1.0
    ridge = np.diag(np.r_[1e-6, np.full(x.shape[1] - 1, 1e-3)])
    args = (x, d["disp"], b, mu, ridge, contrast, 0.0 if alt is None else 0.3, alt)
    p0, s0, se0 = DESeq2Inference(n_cpus=1).wald_test(*args)
    inf = BlockedInference(n_cpus=1, min_levels=2)
    p1, s1, se1 = inf.wald_test(*args)
    assert inf.paths["wald_test"] == "blocked"
    np.testing.assert_allclose(se1, se0, rtol=1e-10)
    np.testing.assert_allclose(s1, s0, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p1, p0, rtol=1e-8, atol=1e-300)


def test_fitted_means_by_the_block_equal_the_dense_product(method_inputs) -> None:
    """The Wald test's and the LRT's means ``sf * exp(X beta)`` in O(n) per gene: the IRLS's
    own means, bit for bit, and the dense product ``run_wald_test`` forms, to rounding."""
    d = method_inputs
    x = d["x"]
    inf = BlockedInference(n_cpus=1, min_levels=2)
    b, mu, _, _ = inf.irls(d["counts"], d["sf"], x, d["disp"], 0.5, 1e-8)
    got = inf.fitted_means(pd.DataFrame(x), b, d["sf"])
    assert inf.paths["fitted_means"] == "blocked"
    np.testing.assert_array_equal(got, mu)
    pydeseq2s = np.exp(pd.DataFrame(x) @ pd.DataFrame(b).T).multiply(d["sf"], 0).to_numpy()
    np.testing.assert_array_equal(DESeq2Inference(n_cpus=1).fitted_means(x, b, d["sf"]), pydeseq2s)
    np.testing.assert_allclose(got, pydeseq2s, rtol=1e-13)
    # A gene's means do not depend on the genes beside it.
    np.testing.assert_array_equal(inf.fitted_means(x, b[3:4], d["sf"]), got[:, 3:4])
    # No block: the dense product itself.
    unpaired = np.column_stack([x[:, 0], np.linspace(-1, 1, len(x))])
    np.testing.assert_array_equal(
        inf.fitted_means(unpaired, b[:, [0, -1]], d["sf"]),
        DESeq2Inference(n_cpus=1).fitted_means(unpaired, b[:, [0, -1]], d["sf"]),
    )
    assert inf.paths["fitted_means"] == "default"


def test_wald_test_of_the_block_means_equals_pydeseq2s() -> None:
    """``deseq_stats_class()`` (means from the backend) gives pydeseq2's DeseqStats tables:
    bit for bit with the dense backend, to rounding with the blocked one."""
    counts, meta = simulate_paired(10, 2, 120, seed=5)
    design = pd.DataFrame(model_matrix("~ subject + timepoint", meta), index=meta.index)
    contrast = np.zeros(design.shape[1])
    contrast[-1] = 1.0
    for inference in (DESeq2Inference(n_cpus=1), BlockedInference(n_cpus=1, min_levels=2)):
        dds, _ = run_deseq(counts, meta, design, contrast, inference)
        tables = []
        for cls in (DeseqStats, deseq_stats_class()):
            stats = cls(dds, contrast=contrast, inference=inference, quiet=True)
            stats.summary()
            tables.append(stats.results_df)
        if isinstance(inference, BlockedInference):
            assert inference.paths["fitted_means"] == "blocked"
            pd.testing.assert_frame_equal(tables[1], tables[0], rtol=1e-10)
        else:
            pd.testing.assert_frame_equal(tables[1], tables[0], check_exact=True)


# --------------------------------------------------------------------------------------
# Full pipeline
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_subjects, n_timepoints, n_genes, min_replicates",
    [(12, 3, 1000, 1), (20, 2, 1500, 7)],
)
def test_pipeline_equivalence_simulated(n_subjects, n_timepoints, n_genes, min_replicates):
    """Full run; min_replicates=1 with planted outliers exercises the Cook's refit."""
    counts, meta = simulate_paired(n_subjects, n_timepoints, n_genes, seed=0)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, len(meta), 15), rng.integers(0, n_genes, 15)
    counts.values[rows, cols] = counts.values[rows, cols] * 30 + 100
    contrast = ["timepoint", "T1", "T0"]
    design = "~subject + timepoint"
    res0 = run_deseq(counts, meta, design, contrast, DESeq2Inference(n_cpus=N_CPUS), min_replicates)
    inf = BlockedInference(n_cpus=N_CPUS)
    res1 = run_deseq(counts, meta, design, contrast, inf, min_replicates)
    assert set(inf.paths) == {"fit_rough_dispersions", "irls", "alpha_mle", "wald_test"}
    assert set(inf.paths.values()) == {"blocked"}
    if min_replicates == 1:
        assert res0[0].var["refitted"].sum() > 0
        np.testing.assert_array_equal(res0[0].var["refitted"], res1[0].var["refitted"])
    assert_pipeline_equivalent(res0, res1)


def interaction_design(meta: pd.DataFrame) -> pd.DataFrame:
    """``~ subject + timepoint + timepoint:arm`` in full-rank coding (as ifnsig.de.plan)."""
    x = pd.DataFrame(model_matrix("~ subject + timepoint", meta), index=meta.index).astype(float)
    for level in sorted(set(meta.timepoint) - {"T0"}):
        x[f"timepoint[T.{level}]:arm[T.B]"] = (
            (meta.timepoint == level) & (meta.arm == "B")
        ).astype(float)
    return x


def with_arms(meta: pd.DataFrame) -> pd.DataFrame:
    return meta.assign(arm=np.where(meta.subject.str[1:].astype(int) % 2 == 0, "A", "B"))


def test_detect_block_design_interaction_and_reduced() -> None:
    """Subjects are the block; the interaction columns are dense; ``~ subject`` (the reduced
    design of the time LRT) is the block and the intercept."""
    _, meta = simulate_paired(12, 3, 5, seed=0)
    x = interaction_design(with_arms(meta))
    bd = detect_block_design(x, min_levels=2)
    assert bd is not None and bd.name == "subject" and bd.n_block == 11
    assert list(x.columns[bd.dense_cols]) == [
        "Intercept",
        "timepoint[T.T1]",
        "timepoint[T.T2]",
        "timepoint[T.T1]:arm[T.B]",
        "timepoint[T.T2]:arm[T.B]",
    ]
    reduced = pd.DataFrame(model_matrix("~ subject", meta))
    bd = detect_block_design(reduced, min_levels=2)
    assert (
        bd is not None
        and bd.n_block == 11
        and list(reduced.columns[bd.dense_cols]) == ["Intercept"]
    )


@pytest.mark.parametrize("min_replicates", [7, 1])
def test_pipeline_equivalence_interaction_and_lrt(min_replicates) -> None:
    """The differential response design and the LRT of its interaction and of time: the
    blocked backend reproduces the dense one (min_replicates=1 with planted outliers: the
    LRT on replaced counts)."""
    from ifnsig.de.lrt import likelihood_ratio_test

    counts, meta = simulate_paired(16, 3, 1000, seed=4)
    meta = with_arms(meta)
    # A differential response: arm B's counts at T2 tripled in 100 genes.
    later_b = ((meta.timepoint == "T2") & (meta.arm == "B")).to_numpy()
    counts.iloc[later_b, :100] *= 3
    if min_replicates == 1:
        rng = np.random.default_rng(2)
        rows, cols = rng.integers(0, len(meta), 15), rng.integers(0, counts.shape[1], 15)
        counts.values[rows, cols] = counts.values[rows, cols] * 30 + 100
    design = interaction_design(meta)
    contrast = (design.columns == "timepoint[T.T2]:arm[T.B]").astype(float)
    runs = {}
    for name, inference in [
        ("dense", DESeq2Inference(n_cpus=N_CPUS)),
        ("blocked", BlockedInference(n_cpus=N_CPUS, min_levels=2)),
    ]:
        dds, ds = run_deseq(counts, meta, design, contrast, inference, min_replicates)
        reduced = {
            "interaction": design.drop(columns=[c for c in design.columns if ":" in c]),
            "time": design[[c for c in design.columns if not c.startswith("timepoint")]],
        }
        with threadpool_limits(limits=1):
            lrt = {k: likelihood_ratio_test(dds, r, inference) for k, r in reduced.items()}
        runs[name] = (dds, ds, lrt, inference)
    (d0, s0, lrt0, _), (d1, s1, lrt1, blocked) = runs["dense"], runs["blocked"]
    assert set(blocked.paths.values()) == {"blocked"}
    if min_replicates == 1:
        assert d0.var["refitted"].sum() > 0
        np.testing.assert_array_equal(d0.var["refitted"], d1.var["refitted"])
    assert_pipeline_equivalent((d0, s0), (d1, s1))
    keep = converged_in_both(d0, d1)
    for key in ("interaction", "time"):
        assert lrt0[key].attrs["df"] == (2 if key == "interaction" else 4)
        assert_close(lrt0[key]["stat"][keep], lrt1[key]["stat"][keep], f"LRT {key}")
        np.testing.assert_array_equal(lrt0[key]["pvalue"].isna(), lrt1[key]["pvalue"].isna())


def test_non_blocked_design_falls_back_identically() -> None:
    counts, meta = simulate_paired(6, 2, 300, seed=5)
    meta = meta.assign(group=np.where(meta.subject < "S03", "a", "b"))
    cases = [("~group + timepoint", 8), ("~subject + timepoint", 7)]  # no block; 6 < 7 levels
    for design, min_levels in cases:
        contrast = ["timepoint", "T1", "T0"]
        _, s0 = run_deseq(counts, meta, design, contrast, DESeq2Inference(n_cpus=1))
        inf = BlockedInference(n_cpus=1, min_levels=min_levels)
        _, s1 = run_deseq(counts, meta, design, contrast, inf)
        assert set(inf.paths.values()) == {"default"}
        pd.testing.assert_frame_equal(s0.results_df, s1.results_df, check_exact=True)


# --------------------------------------------------------------------------------------
# Real data (skipped when ../shared/data is absent)
# --------------------------------------------------------------------------------------


def _subset_genes(counts: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    idx = np.sort(np.random.default_rng(seed).choice(counts.shape[1], n, replace=False))
    return counts.iloc[:, idx]


def test_kang2018_pseudobulk_pipeline() -> None:
    folder = DATA / "kang2018_ifnb"
    if not (folder / "pseudobulk_counts_donor_x_stim.csv.gz").exists():
        pytest.skip(f"{folder} not present")
    counts = pd.read_csv(folder / "pseudobulk_counts_donor_x_stim.csv.gz", index_col=0)
    meta = pd.read_csv(folder / "pseudobulk_samples.csv", index_col=0, dtype={"donor": str})
    counts = counts.loc[counts.sum(axis=1) >= 10].T.loc[meta.index]
    contrast = ["stim", "STIM", "CTRL"]
    res0 = run_deseq(counts, meta, "~ donor + stim", contrast, DESeq2Inference(n_cpus=N_CPUS))
    inf = BlockedInference(n_cpus=N_CPUS)  # 8 donors: blocked with the default min_levels
    res1 = run_deseq(counts, meta, "~ donor + stim", contrast, inf)
    assert set(inf.paths.values()) == {"blocked"}
    assert_pipeline_equivalent(res0, res1)


# Airway genes the suite fits (a seeded subset of the ~33,000 expressed): both paths fit the
# same genes, so the comparison is as strict as on all of them, which
# benchmarks/airway_blocked_inference.py runs (about ten times longer).
AIRWAY_GENES = 3000


def airway_pipelines(n_genes: int | None = None) -> tuple[tuple, tuple, BlockedInference]:
    """Airway, ~ cell + dex, fitted by DESeq2Inference and by BlockedInference with the
    blocked path forced (4 cell lines); every expressed gene, or a seeded ``n_genes`` of them.
    """
    folder = DATA / "airway"
    if not (folder / "airway_counts.csv.gz").exists():
        pytest.skip(f"{folder} not present")
    counts = pd.read_csv(folder / "airway_counts.csv.gz", index_col=0)
    meta = pd.read_csv(folder / "airway_coldata.csv", index_col=0)[["cell", "dex"]]
    counts = counts.loc[counts.sum(axis=1) > 0].T.loc[meta.index]
    if n_genes is not None:
        counts = _subset_genes(counts, n_genes)
    contrast = ["dex", "trt", "untrt"]
    res0 = run_deseq(counts, meta, "~ cell + dex", contrast, DESeq2Inference(n_cpus=N_CPUS))
    inf = BlockedInference(n_cpus=N_CPUS, min_levels=2)
    res1 = run_deseq(counts, meta, "~ cell + dex", contrast, inf)
    return res0, res1, inf


def test_airway_pipeline() -> None:
    res0, res1, inf = airway_pipelines(AIRWAY_GENES)
    assert set(inf.paths.values()) == {"blocked"}
    assert_pipeline_equivalent(res0, res1)
