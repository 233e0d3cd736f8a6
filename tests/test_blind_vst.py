"""The normalize stage's VST is pydeseq2's blind VST bit for bit, with the faster gene-wise fit;
the cohort file copies the normalized file's matrices as they are."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from pydeseq2.dds import DeseqDataSet
from pydeseq2.default_inference import DefaultInference
from threadpoolctl import threadpool_limits

from ifnsig import blind_vst, data


def nb_counts(n_samples: int, n_genes: int, seed: int) -> pd.DataFrame:
    """Negative binomial counts: gene means from 1 to 5,000, dispersions around DESeq2's
    trend 0.05 + 3 / mean, library sizes spread over a factor of 3, a few zeros."""
    rng = np.random.default_rng(seed)
    means = np.exp(rng.uniform(0, np.log(5000), n_genes))
    dispersion = (0.05 + 3 / means) * np.exp(rng.normal(0, 0.3, n_genes))
    depth = np.exp(rng.uniform(-0.5, 0.6, n_samples))[:, None]
    mu = means * depth
    counts = rng.negative_binomial(1 / dispersion, 1 / (1 + mu * dispersion))
    counts[:, 0] = rng.poisson(0.3, n_samples) + 1  # a near-Poisson, low-count gene
    return pd.DataFrame(
        counts,
        index=[f"s{i}" for i in range(n_samples)],
        columns=[f"g{j}" for j in range(n_genes)],
    )


def blind_vst_of(counts: pd.DataFrame, inference) -> DeseqDataSet:
    metadata = pd.DataFrame({"all": "all"}, index=counts.index)
    dds = DeseqDataSet(
        counts=counts, metadata=metadata, design="~1", inference=inference, quiet=True
    )
    # One BLAS thread: the same values, and pydeseq2's one-parameter L-BFGS-B is not slowed
    # by OpenBLAS threads waking at each step.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        dds.vst(use_design=False)
    return dds


@pytest.mark.parametrize(
    "n_samples, n_genes, n_cpus, per_task",
    [(40, 120, 1, 7), (25, 60, 2, 16), (12, 4, 1, 500)],
)
def test_blind_vst_equals_pydeseq2_bit_for_bit(monkeypatch, n_samples, n_genes, n_cpus, per_task):
    # Blocks of 7 or 16 genes: several tasks, their order kept (two workers: threads, the
    # same calls as pydeseq2's loky processes without starting them); 4 Poisson genes: the
    # trend falls back to the mean dispersion. Workers are used however few the counts.
    monkeypatch.setattr(blind_vst, "GENES_PER_TASK", per_task)
    monkeypatch.setattr(blind_vst, "PARALLEL_MIN_COUNTS", 0)
    counts = nb_counts(n_samples, n_genes, seed=n_genes)
    if n_genes < 5:
        counts.loc[:, :] = np.random.default_rng(0).poisson(50, counts.shape)
    ours = blind_vst_of(counts, blind_vst.BlindVSTInference(n_cpus=n_cpus, backend="threading"))
    theirs = blind_vst_of(counts, DefaultInference(n_cpus=1))
    for column in ("vst_genewise_dispersions", "_genewise_converged", "_MoM_dispersions"):
        np.testing.assert_array_equal(ours.var[column], theirs.var[column])
    np.testing.assert_array_equal(ours.layers["_vst_mu_hat"], theirs.layers["_vst_mu_hat"])
    assert ours.vst_fit_type == theirs.vst_fit_type
    key = "vst_trend_coeffs" if theirs.vst_fit_type == "parametric" else "mean_disp"
    np.testing.assert_array_equal(np.asarray(ours.uns[key]), np.asarray(theirs.uns[key]))
    np.testing.assert_array_equal(ours.layers["vst_counts"], theirs.layers["vst_counts"])


def test_normalize_layers_are_pydeseq2s():
    counts = nb_counts(30, 200, seed=5)
    adata = ad.AnnData(X=counts.to_numpy(dtype=np.int64), obs=pd.DataFrame(index=counts.index))
    adata.var_names = counts.columns
    with threadpool_limits(1):
        data.normalize(adata, n_cpus=1)
    dds = blind_vst_of(counts, DefaultInference(n_cpus=1))
    np.testing.assert_array_equal(adata.obs["size_factor"], dds.obs["size_factors"])
    np.testing.assert_array_equal(adata.layers["normalized"], dds.layers["normed_counts"])
    np.testing.assert_array_equal(adata.layers["vst"], dds.layers["vst_counts"])
    assert adata.uns["vst_fit_type"] == dds.vst_fit_type == "parametric"
    np.testing.assert_array_equal(adata.uns["vst_trend_coeffs"], dds.uns["vst_trend_coeffs"])
    np.testing.assert_array_equal(adata.X, dds.layers["vst_counts"].astype(np.float32))
    raw = counts.to_numpy()
    library = raw.sum(axis=1, keepdims=True).astype(float)
    expected = np.log2(raw / np.maximum(library, 1.0) * 1e6 + 1.0)
    np.testing.assert_array_equal(adata.layers["logcpm"], expected)


def test_matrices_copied_as_stored_read_as_the_whole_file_written(tmp_path):
    rng = np.random.default_rng(3)
    whole = ad.AnnData(
        X=rng.normal(size=(5, 3)).astype(np.float32),
        obs=pd.DataFrame({"subject": list("aabbc")}, index=[f"s{i}" for i in range(5)]),
        var=pd.DataFrame({"symbol": list("XYZ")}, index=[f"g{i}" for i in range(3)]),
        uns={"description": {"X": "x", "layers": {"counts": "c", "vst": "v"}}},
    )
    whole.layers["counts"] = rng.integers(0, 100, size=(5, 3))
    whole.layers["vst"] = rng.normal(size=(5, 3))
    data.write_h5ad(whole, tmp_path / "normalized.h5ad")
    part = data.read_layers(tmp_path / "normalized.h5ad", [])
    for target in (whole, part):
        target.obs["score"] = np.arange(5.0)
        target.obsm["X_qc_pca"] = np.ones((5, 2))
    data.write_h5ad(whole, tmp_path / "expected.h5ad")
    data.write_h5ad_with_matrices_of(part, tmp_path / "normalized.h5ad", tmp_path / "c.h5ad")
    expected, copied = ad.read_h5ad(tmp_path / "expected.h5ad"), ad.read_h5ad(tmp_path / "c.h5ad")
    assert (
        copied.X.dtype == np.float32
        and copied.layers["counts"].dtype == expected.layers["counts"].dtype
    )
    np.testing.assert_array_equal(copied.X, expected.X)
    assert set(copied.layers) == set(expected.layers)
    for layer in expected.layers:
        np.testing.assert_array_equal(copied.layers[layer], expected.layers[layer])
    pd.testing.assert_frame_equal(copied.obs, expected.obs)
    pd.testing.assert_frame_equal(copied.var, expected.var)
    np.testing.assert_array_equal(copied.obsm["X_qc_pca"], expected.obsm["X_qc_pca"])
    assert copied.uns["description"] == expected.uns["description"]
    with pytest.raises(ValueError, match="no X or layers"):
        data.write_h5ad_with_matrices_of(whole, tmp_path / "normalized.h5ad", tmp_path / "d.h5ad")


def test_matrices_compressed_on_threads_are_the_chunks_hdf5_stores(tmp_path):
    import h5py

    rng = np.random.default_rng(4)
    # 101 x 1,001: h5py's guessed chunks leave partial chunks at both edges.
    whole = ad.AnnData(
        X=rng.normal(size=(101, 1001)).astype(np.float32),
        obs=pd.DataFrame({"subject": rng.integers(0, 9, 101)}, index=[f"s{i}" for i in range(101)]),
        var=pd.DataFrame(
            {"symbol": [f"S{i}" for i in range(1001)]}, index=[f"g{i}" for i in range(1001)]
        ),
        uns={"description": {"X": "x"}},
    )
    whole.layers["counts"] = rng.poisson(5, size=whole.shape)
    whole.layers["vst"] = rng.normal(size=whole.shape)
    data.write_h5ad(whole, tmp_path / "one.h5ad")
    data.write_h5ad(whole, tmp_path / "threads.h5ad", threads=2)
    with h5py.File(tmp_path / "one.h5ad") as one, h5py.File(tmp_path / "threads.h5ad") as threads:
        for key in ("X", "layers/counts", "layers/vst"):
            expected, written = one[key], threads[key]
            assert written.chunks == expected.chunks and dict(written.attrs) == dict(expected.attrs)
            assert written.shape[1] % written.chunks[1] and written.shape[0] % written.chunks[0]
            for chunk in expected.iter_chunks():
                offset = tuple(part.start for part in chunk)
                assert written.id.read_direct_chunk(offset) == expected.id.read_direct_chunk(offset)
    expected, read = ad.read_h5ad(tmp_path / "one.h5ad"), ad.read_h5ad(tmp_path / "threads.h5ad")
    np.testing.assert_array_equal(read.X, expected.X)
    assert set(read.layers) == {"counts", "vst"}
    pd.testing.assert_frame_equal(read.obs, expected.obs)
    pd.testing.assert_frame_equal(read.var, expected.var)
    assert read.uns == expected.uns


def test_small_fits_start_no_workers(monkeypatch):
    # Below PARALLEL_MIN_COUNTS two CPUs fit in the calling process: no joblib call at all.
    import joblib

    def refuse(*args, **kwargs):
        raise AssertionError("workers were started for a small fit")

    monkeypatch.setattr(joblib, "Parallel", refuse)
    monkeypatch.setattr(blind_vst, "GENES_PER_TASK", 16)
    counts = nb_counts(25, 60, seed=60)
    ours = blind_vst_of(counts, blind_vst.BlindVSTInference(n_cpus=2))
    theirs = blind_vst_of(counts, DefaultInference(n_cpus=1))
    np.testing.assert_array_equal(ours.layers["vst_counts"], theirs.layers["vst_counts"])
