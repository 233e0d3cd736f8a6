"""Pseudobulk of a single-cell .h5ad read in blocks equals the whole matrix summed in memory.

The reference is :func:`scanpy.get.aggregate` of the file read in full (the workflow's former
path, :func:`ifnsig.simulate.summed_in_memory`). Blocks are made a few values long so that the
cells of every sample fall in several blocks.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from ifnsig import formats
from ifnsig.errors import InputError
from ifnsig.formats import _blocks, count_sample_names, pseudobulk
from ifnsig.simulate import summed_in_memory

# Out of alphabetical order, so a sorted result would show.
GENES = ["MX1", "ISG15", "ACTB", "IFI44L", "GAPDH", "RSAD2", "B2M"]


def cells(n: int = 40, seed: int = 0) -> ad.AnnData:
    """Cells of three samples in mixed order, two cell types; sample S3 has only type B."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(1.5, (n, len(GENES))) * (rng.random((n, len(GENES))) < 0.5)
    sample = np.array(["S2", "S1", "S3", "S1", "S2"] * (n // 5))
    cell_type = np.where((np.arange(n) % 3 == 0) | (sample == "S3"), "B", "A")
    obs = pd.DataFrame(
        {"sample": pd.Categorical(sample, categories=["S0", "S1", "S2", "S3"]), "type": cell_type},
        index=[f"cell{i}" for i in range(n)],
    )
    return ad.AnnData(
        X=sp.csr_matrix(counts.astype(np.float32)), obs=obs, var=pd.DataFrame(index=GENES)
    )


def stored(adata: ad.AnnData, storage: str) -> ad.AnnData:
    """The same counts as a dense, CSR or CSC X, or in a layer beside log values in X."""
    adata = adata.copy()
    counts = adata.X
    if storage == "dense":
        adata.X = counts.toarray()
    elif storage == "csc":
        adata.X = sp.csc_matrix(counts)
    elif storage.startswith("layer"):
        adata.layers["counts"] = counts.toarray() if storage == "layer_dense" else counts
        adata.X = np.log1p(counts.toarray())
    return adata


def assert_same_bytes(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.index) == list(expected.index) == GENES
    assert got.index.name == expected.index.name
    assert list(got.columns) == list(expected.columns)
    assert got.dtypes.unique().tolist() == [np.dtype(np.int64)]
    assert got.to_numpy().tobytes() == expected.to_numpy().tobytes()
    assert got.to_csv(sep="\t") == expected.to_csv(sep="\t")


@pytest.fixture
def small_blocks(monkeypatch):
    # 5 values a block: one or two cells of 7 genes (dense), a few cells (sparse).
    monkeypatch.setattr(formats, "BLOCK_VALUES", 5)


@pytest.mark.parametrize("storage", ["csr", "csc", "dense", "layer_csr", "layer_dense"])
@pytest.mark.parametrize("cell_types", [[], ["A"]])
def test_blocks_equal_the_in_memory_sum(tmp_path, small_blocks, storage, cell_types):
    path = tmp_path / "cells.h5ad"
    stored(cells(), storage).write_h5ad(path)
    settings = {"sample_column": "sample", "single_cell": True}
    if storage.startswith("layer"):
        settings["layer"] = "counts"
    if cell_types:
        settings.update(cell_type_column="type", cell_types=cell_types)
    got = pseudobulk(path, settings)
    assert_same_bytes(got, summed_in_memory(path, settings))
    # Samples by first cell (cell0 is of type B); the unused category S0 has no column and
    # S3 has no cell of type A.
    assert list(got.columns) == (["S1", "S2"] if cell_types else ["S2", "S1", "S3"])
    assert count_sample_names({"counts": str(path), "h5ad": settings}) == list(got.columns)


def test_block_size_does_not_change_the_sums(tmp_path, monkeypatch):
    path = tmp_path / "cells.h5ad"
    cells(n=200, seed=3).write_h5ad(path)
    settings = {"single_cell": True}
    results = []
    for size in (1, 7, 64, 1 << 23):
        monkeypatch.setattr(formats, "BLOCK_VALUES", size)
        results.append(pseudobulk(path, settings))
    for other in results[1:]:
        assert_same_bytes(other, results[0])


def test_blocks_cover_every_row_within_the_limit():
    indptr = np.cumsum([0, 3, 0, 9, 1, 1, 2, 0])
    bounds = _blocks(indptr, 4)
    assert bounds == [(0, 2), (2, 3), (3, 7)]
    assert all(indptr[b] - indptr[a] <= 4 or b - a == 1 for a, b in bounds)
    assert _blocks(np.zeros(1, dtype=int), 4) == []


def test_integer_counts_in_float_storage_sum_exactly(tmp_path):
    """Large integer counts stored as float32 sum to exact int64 values."""
    counts = np.full((6, len(GENES)), 2.0**24, dtype=np.float32)
    obs = pd.DataFrame({"sample": ["S1"] * 6}, index=[f"c{i}" for i in range(6)])
    path = tmp_path / "cells.h5ad"
    ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=GENES)).write_h5ad(path)
    got = pseudobulk(path, {"single_cell": True})
    assert (got["S1"] == 6 * 2**24).all()


def bad_file(tmp_path, adata: ad.AnnData):
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    return path


def test_a_fractional_count_names_its_cell_in_a_later_block(tmp_path, small_blocks):
    adata = cells()
    dense = adata.X.toarray()
    dense[33, 2] = 0.5
    adata.X = sp.csr_matrix(dense)
    path = bad_file(tmp_path, adata)
    with pytest.raises(InputError, match="gene 'ACTB' in cell 'cell33' is not an integer"):
        pseudobulk(path, {"single_cell": True})


@pytest.mark.parametrize(
    ("change", "settings", "message"),
    [
        ("none", {"sample_column": "donor"}, "obs has no column 'donor'.*sample, type"),
        ("none", {"layer": "raw"}, "layer 'raw' .* is not in the file"),
        ("negative", {}, "in cell 'cell4' is negative"),
        ("missing_sample", {}, "1 cell.s. have no value in obs column 'sample', the first 'cell7'"),
        ("no_x", {}, "has no X matrix; set h5ad.layer .*layers: counts"),
        ("duplicate_gene", {}, "gene 'MX1' appears more than once"),
    ],
)
def test_bad_single_cell_files_fail_with_one_sentence(tmp_path, change, settings, message):
    adata = cells()
    if change == "negative":
        dense = adata.X.toarray()
        dense[4, 1] = -1
        adata.X = sp.csr_matrix(dense)
    elif change == "missing_sample":
        adata.obs.loc["cell7", "sample"] = np.nan
    elif change == "no_x":
        adata.layers["counts"] = adata.X
        adata.X = None
    elif change == "duplicate_gene":
        adata.var_names = [*GENES[:-1], "MX1"]
    path = bad_file(tmp_path, adata)
    with pytest.raises(InputError, match=message) as error:
        pseudobulk(path, {"single_cell": True, **settings})
    assert "\n" not in str(error.value)


def test_a_file_that_is_not_anndata(tmp_path):
    path = tmp_path / "cells.h5ad"
    path.write_text("sample\tMX1\n")
    with pytest.raises(InputError, match="cannot be read as AnnData"):
        pseudobulk(path, {"single_cell": True})
    with pytest.raises(InputError, match="cannot be read as AnnData"):
        count_sample_names({"counts": str(path), "h5ad": {"single_cell": True}})
