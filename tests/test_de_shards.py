"""The DE split by gene shards (``de.shards``) gives the one-job tables, byte for byte.

Every step runs in-process on tiny cohorts written as ``.h5ad``: the library functions shard
after shard, and the stage functions of the shard jobs (a failed shard rerun alone).
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ifnsig import data, de, stages
from ifnsig.de import shards
from ifnsig.errors import InputError
from ifnsig.settings import stage_settings
from ifnsig.validation import validate_config

TIMEPOINTS = ["baseline", "month3"]


def cohort(n_subjects: int, n_genes: int, seed: int, outliers: int = 0) -> ad.AnnData:
    """Negative binomial counts of patients at two timepoints; the first 10 genes change.

    ``outliers`` genes get one count multiplied by 50 (Cook's outliers to replace and refit).
    """
    rng = np.random.default_rng(seed)
    rows = [
        {"sample": f"P{i}_{tp}", "subject": f"P{i}", "group": "patient", "timepoint": tp}
        for i in range(n_subjects)
        for tp in TIMEPOINTS
    ]
    obs = pd.DataFrame(rows).set_index("sample", drop=False).rename_axis(None)
    base = np.exp(rng.normal(4, 1.5, n_genes))
    subject = np.exp(rng.normal(0, 0.3, (n_subjects, 1))).repeat(2, axis=0)
    effect = np.ones(n_genes)
    effect[:10] = 3.0
    later = (obs["timepoint"] == "month3").to_numpy()[:, None]
    mu = base * subject * np.where(later, effect, 1.0) * rng.uniform(0.7, 1.4, (len(obs), 1))
    dispersion = 0.05 + 1 / base
    counts = rng.negative_binomial(1 / dispersion, 1 / (1 + mu * dispersion))
    for gene in range(n_genes - outliers, n_genes):
        counts[gene % len(obs), gene] = counts[:, gene].max() * 50 + 100
    counts[:, n_genes // 2] = 0  # an all-zero gene
    genes = [f"ENSG{i:05d}" for i in range(n_genes)]
    var = pd.DataFrame({"symbol": [f"G{i}" for i in range(n_genes)]}, index=genes)
    return ad.AnnData(X=counts.astype(np.int64), obs=obs, var=var)


def settings_for(**de_settings) -> dict:
    return validate_config({"timepoints": TIMEPOINTS, "de": de_settings})


def one_job_and_sharded(
    adata, config, folder: Path, n_shards: int, control_genes=None
) -> tuple[dict, dict]:
    """Tables of run_fit and of the sharded steps, written as the workflow writes them."""
    path = folder / "cohort.h5ad"
    data.write_h5ad(adata, path)
    samples = de.cohort_samples(adata.obs)
    fits = de.plan_fits(samples, config)
    s = config["de"]
    one = {}
    for fit in fits:
        one.update(
            de.run_fit(
                adata,
                fit,
                samples,
                alpha=s["alpha"],
                inference=s["inference"],
                shrink_max_coefficients=s["shrink_max_coefficients"],
                wald_distribution=s["wald_distribution"],
                control_genes=control_genes,
            )  # fmt: skip
        )
    many = shards.run_sharded(str(path), fits, samples, s, n_shards, control_genes=control_genes)
    return as_bytes(one, folder / "one"), as_bytes(many, folder / "many")


def assert_same_tables(one: dict[str, bytes], many: dict[str, bytes]) -> None:
    assert one.keys() == many.keys()
    different = [name for name in one if one[name] != many[name]]
    assert not different, different


def as_bytes(tables: dict, folder: Path) -> dict[str, bytes]:
    folder.mkdir(exist_ok=True)
    for name, table in tables.items():
        stages.write_tsv(table, folder / f"{name}.tsv")
    return {name: (folder / f"{name}.tsv").read_bytes() for name in tables}


def test_shard_count_and_gene_ranges():
    assert shards.shard_count("auto", 87) == 1
    assert shards.shard_count("auto", 4000) == 4
    assert shards.shard_count(8, 10, n_genes=5) == 5
    ranges = shards.gene_ranges(10, 3)
    assert ranges[0][0] == 0 and ranges[-1][1] == 10
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:], strict=True))


def test_size_factors_read_in_blocks_are_pydeseq2s(tmp_path, monkeypatch):
    from pydeseq2.preprocessing import deseq2_norm_fit, deseq2_norm_transform

    adata = cohort(6, 50, seed=1)
    data.write_h5ad(adata, tmp_path / "c.h5ad")
    monkeypatch.setattr(shards, "BLOCK_CELLS", 40)  # several blocks of genes and of samples
    rows = np.array([5, 0, 3, 2, 11, 7])
    counts = pd.DataFrame(adata.X[rows]).astype(int).to_numpy()
    logmeans, finite = deseq2_norm_fit(counts)
    _, expected = deseq2_norm_transform(counts, logmeans, finite)
    found = shards.fit_size_factors(str(tmp_path / "c.h5ad"), rows, adata.n_vars)
    assert np.array_equal(found, expected)


def test_shard_memory_grows_with_the_shards_cells_and_the_design(tmp_path):
    adata = cohort(6, 40, seed=3)
    data.write_h5ad(adata, tmp_path / "c.h5ad")
    path = str(tmp_path / "c.h5ad")
    assert shards.matrix_shape(path) == (adata.n_obs, adata.n_vars)
    assert shards.shard_memory_mb(str(tmp_path / "absent.h5ad"), 4, 900) == 900
    n = adata.n_obs
    design = shards.DESIGN_COPIES * 8 * n * (n // 2 + 2)
    expected = 1000 + (shards.SHARD_BYTES_PER_CELL * n * 20 + design) / 2**20
    assert shards.shard_memory_mb(path, 2) == int(expected)
    assert shards.shard_memory_mb(path, 4) <= shards.shard_memory_mb(path, 2)


def test_size_factors_when_every_gene_has_a_zero_ask_for_one_job(tmp_path):
    # pydeseq2 switches to iterative size factors over all genes at once: not shardable.
    adata = cohort(6, 30, seed=1)
    adata.X[np.arange(30) % adata.n_obs, np.arange(30)] = 0
    data.write_h5ad(adata, tmp_path / "c.h5ad")
    with pytest.raises(InputError) as caught:
        shards.fit_size_factors(str(tmp_path / "c.h5ad"), np.arange(adata.n_obs), adata.n_vars)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'c.h5ad'}: every gene has a zero count"), message
    assert "of the 12 samples" in message and "set de.shards: 1 in config/" in message, message


def test_paired_blocked_sharded_tables_are_the_one_job_tables(tmp_path):
    # ~subject + timepoint, subject-blocked backend, apeGLM shrinkage on (11 coefficients).
    one, many = one_job_and_sharded(cohort(10, 60, seed=2), settings_for(), tmp_path, 3)
    assert one.keys() == many.keys() == {"month3_vs_baseline"}
    assert_same_tables(one, many)


def test_sharded_tables_with_control_genes_are_the_one_job_tables(tmp_path):
    # de.size_factor_genes: the size factors from every other gene, in both.
    adata = cohort(10, 60, seed=2)
    control = np.arange(adata.n_vars) % 2 == 1
    one, many = one_job_and_sharded(adata, settings_for(), tmp_path, 3, control)
    assert_same_tables(one, many)
    path, rows = str(tmp_path / "cohort.h5ad"), np.arange(adata.n_obs)
    every_gene = shards.fit_size_factors(path, rows, adata.n_vars)
    assert not np.allclose(shards.fit_size_factors(path, rows, adata.n_vars, control), every_gene)


def test_sharded_tables_with_cooks_refits_are_the_one_job_tables(tmp_path, caplog):
    # Unpaired (8 samples per level: replaceable), dense backend, planted outliers refitted;
    # LRT beside a Wald contrast, t reference.
    adata = cohort(8, 40, seed=3, outliers=4)
    config = settings_for(
        contrasts=[
            {"name": "wald", "test": "month3", "reference": "baseline", "paired": False},
            {"name": "lrt", "reference": "baseline", "paired": False, "lrt": True},
        ],
        wald_distribution="t",
    )
    with caplog.at_level(logging.INFO, logger="ifnsig.de.shards"):
        one, many = one_job_and_sharded(adata, config, tmp_path, 4)
    refitted = [int(n) for n in re.findall(r"(\d+) gene\(s\) with Cook's outliers", caplog.text)]
    assert sum(refitted) >= 4
    assert one.keys() == many.keys() == {"wald", "lrt"}
    assert_same_tables(one, many)


def test_a_failed_shard_rerun_alone_gives_the_one_job_tables(tmp_path, monkeypatch):
    # The shard jobs' stage functions in turn, as Snakemake runs them for de.shards: 3; the
    # second shard's tests fail once, leave no output, and are rerun alone.
    adata = cohort(10, 60, seed=2)
    path = str(tmp_path / "filtered_counts.h5ad")
    data.write_h5ad(adata, path)
    config = settings_for(shards=3)
    n = config["de"]["shards"]

    def settings(stage: str, shard: int | None = None) -> dict:
        picked = stage_settings(copy.deepcopy(config), stage)
        return picked if shard is None else {**picked, "shard": {"index": shard, "count": n}}

    def tables(folder: Path) -> dict[str, str]:
        folder.mkdir()
        name = "month3_vs_baseline"
        return {
            name: str(folder / f"{name}.tsv"),
            f"{name}.samples": str(folder / "s.tsv"),
            "design_checks": str(folder / "design_checks.tsv"),
        }

    one = tables(tmp_path / "one")
    stages.differential_expression({"filtered": path}, one, settings("differential_expression"))
    work = tmp_path / "shards"
    work.mkdir()
    factors = {"filtered": path, "size_factors": str(work / "size_factors.pkl")}
    stages.de_size_factors(factors, factors, settings("de_size_factors"))
    genewise = [str(work / f"genewise.{i}.pkl") for i in range(n)]
    for i in range(n):
        stages.de_genewise_dispersions(
            factors, {"genewise": genewise[i]}, settings("de_genewise_dispersions", i)
        )
    prior = str(work / "prior.pkl")
    gathered = {"filtered": path, "genewise": genewise}
    stages.de_dispersion_prior(gathered, {"prior": prior}, settings("de_dispersion_prior"))
    tests = [str(work / f"tests.{i}.pkl") for i in range(n)]
    real_step = shards.test_step

    def failing_step(counts, genes, *args, **kwargs):
        if genes[0] == adata.var_names[20]:
            raise MemoryError("the node ran out of memory")
        return real_step(counts, genes, *args, **kwargs)

    def run_shard(i: int) -> None:
        inputs = {**factors, "genewise": genewise[i], "prior": prior}
        stages.de_shard_tests(inputs, {"tests": tests[i]}, settings("de_shard_tests", i))

    monkeypatch.setattr(shards, "test_step", failing_step)
    for i in range(n):
        if i == 1:
            with pytest.raises(MemoryError):
                run_shard(i)
        else:
            run_shard(i)
    assert not Path(tests[1]).exists()
    monkeypatch.setattr(shards, "test_step", real_step)
    run_shard(1)
    many = tables(tmp_path / "many")
    stages.differential_expression(
        {**factors, "tests": tests}, many, settings("differential_expression")
    )
    read = {name: Path(one[name]).read_bytes() for name in one}
    assert_same_tables(read, {name: Path(many[name]).read_bytes() for name in read})
