"""The AnnData files of a finished run open cleanly in scanpy and pandas: integer counts,
a description of X and every layer, IFN scores and QC results in the cohort's obs."""

from __future__ import annotations

import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

# The session's small run is shared by both pytest-xdist workers (see conftest.small_run).
pytestmark = pytest.mark.e2e


def test_counts_are_integers_stored_once(small_run):
    counts = ad.read_h5ad(small_run / "results" / "data" / "counts.h5ad")
    assert counts.X.dtype == np.int64 and not counts.layers
    table = pd.read_csv(small_run / "inputs" / "counts.tsv.gz", sep="\t", index_col=0)
    expected = table.loc[counts.var_names, counts.obs_names].to_numpy().T
    np.testing.assert_array_equal(counts.X, expected)
    assert "raw integer read counts" in counts.uns["description"]["X"]


def test_cohort_holds_scores_qc_and_says_what_x_is(small_run):
    cohort = ad.read_h5ad(small_run / "results" / "data" / "cohort.h5ad")
    description = cohort.uns["description"]
    assert "variance-stabilizing" in description["X"]
    for layer in ("counts", "normalized", "vst", "logcpm"):
        assert description["layers"][layer], layer
    assert cohort.layers["counts"].dtype == np.int64
    np.testing.assert_allclose(cohort.X, cohort.layers["vst"], rtol=1e-6)
    scores = pd.read_csv(small_run / "results" / "scores" / "ifn_scores.tsv", sep="\t")
    primary = scores[(scores.signature == "RICE2013_6") & (scores.method == "median_fold_change")]
    column = "ifn_RICE2013_6_median_fold_change"
    np.testing.assert_allclose(
        cohort.obs.loc[primary["sample"], column].to_numpy(), primary["score"], rtol=1e-9
    )
    assert cohort.obs[f"{column}_positive"].dtype == bool
    assert {"library_size", "qc_pairing", "neutrophil_score"} <= set(cohort.obs.columns)
    assert cohort.obsm["X_qc_pca"].shape[0] == cohort.n_obs
    # No clash between the var index and its gene_id column.
    assert list(cohort.var.reset_index()["gene_id"]) == list(cohort.var_names)


def test_qc_anndata_has_the_genes_of_its_pca(small_run):
    qc = ad.read_h5ad(small_run / "results" / "qc" / "qc.h5ad")
    assert qc.n_vars >= 50 and {"gene_id", "symbol"} <= set(qc.var.columns)
    assert qc.obsm["X_pca"].shape[0] == qc.n_obs
    qc.var.reset_index()


SCANPY = """
import anndata as ad, matplotlib, scanpy as sc
matplotlib.use("Agg")
cohort = ad.read_h5ad("results/data/cohort.h5ad")
sc.pp.pca(cohort, n_comps=5)
sc.pl.pca(cohort, color="ifn_RICE2013_6_median_fold_change", show=False, save=False)
print(cohort.obsm["X_pca"].shape)
"""


def test_cohort_opens_in_a_fresh_scanpy_process(small_run):
    run = subprocess.run(
        [sys.executable, "-c", SCANPY], cwd=small_run, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert ", 5)" in run.stdout
