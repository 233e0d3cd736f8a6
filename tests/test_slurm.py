"""Runs a workflow through a real one-node SLURM cluster (tests/slurm/cluster.sh) with the
profile in profiles/slurm, its DE split in gene shards, up to the DE tables and one
enrichment, and checks it gives the same tables as a local run with the DE in one job.

Needs root and apt-get (to install slurm-wlm and munge); skipped otherwise.
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from conftest import small_project

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
# ``python -m snakemake`` with the plugin's status checks at most 2 s apart (see the script).
SNAKEMAKE_CAPPED_CHECKS = REPO / "tests" / "slurm" / "snakemake_capped_checks.py"
SLURM_PROFILE = REPO / "profiles" / "slurm"
RUN_TIMEOUT_S = 1800  # a guard against a hung run, not a time limit: loaded machines are slow
START_TIMEOUT_S = 600  # includes apt-get install on a fresh machine

# Settings for the test cluster on top of profiles/slurm (profiles/default is loaded too, as
# it is for users, and holds nothing that conflicts):
# - replaces the profile's default-resources, dropping its placeholder account (no accounts
#   exist without slurmdbd) and partition;
# - threads capped at the node's CPUs: sbatch rejects a job asking for more;
# - status checks 1 s after a job ends instead of 20 s keep the run short: the plugin waits
#   this long after a check that saw a job end, and 10 s more after each check that saw none
#   (capped at 2 s by SNAKEMAKE_CAPPED_CHECKS).
SLURM_TEST_ARGS = [
    "--default-resources",
    "slurm_partition=debug",
    "runtime=5",
    "mem_mb=500",
    "--max-threads",
    str(len(os.sched_getaffinity(0))),
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
]

# Compared with the session's small run (shared by the pytest-xdist workers, see conftest).
pytestmark = pytest.mark.slurm


def _snakemake(workdir: Path, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SNAKEMAKE_CAPPED_CHECKS), *args]
    proc = subprocess.run(
        cmd, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed in {workdir} ({proc.returncode}):\n{proc.stderr[-6000:]}"
    )
    return proc


def run_through_slurm(
    workdir: Path, targets: Sequence[str] = (), extra_args: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run snakemake in `workdir` on the test cluster (which must be up) with profiles/slurm.

    `extra_args` come last and so win over the profile and SLURM_TEST_ARGS (a later
    --default-resources replaces the earlier one as a whole).
    """
    return _snakemake(
        workdir, ["--profile", str(SLURM_PROFILE), *SLURM_TEST_ARGS, *extra_args, *targets]
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A running one-node cluster for the session; stopped at the end whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("SLURM test cluster needs root (SlurmUser=root, writes /etc/slurm)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM not installed and no apt-get to install it")
    cluster_dir = tmp_path_factory.mktemp("slurm-cluster")
    try:
        started = time.monotonic()
        proc = subprocess.run(
            ["bash", str(CLUSTER_SH), "start", str(cluster_dir)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if proc.returncode == 3:
            pytest.skip(f"SLURM unavailable: {proc.stderr.strip()}")
        assert proc.returncode == 0, f"cluster.sh start failed:\n{proc.stdout}{proc.stderr}"
        print(f"\nSLURM test cluster up in {time.monotonic() - started:.1f} s")
        yield cluster_dir
    finally:
        subprocess.run(
            ["bash", str(CLUSTER_SH), "stop", str(cluster_dir)], timeout=120, check=False
        )


SNAKEFILE_ARGS = ["-s", str(REPO / "Snakefile")]


def _slurm_jobs() -> dict[str, list[tuple[str, str, str, str, str]]]:
    """Each rule's jobs (squeue; MinJobAge keeps them): memory, time limit and CPUs sbatch
    gave the job, and its start and end time."""
    proc = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%k|%m|%l|%C|%S|%e"],
        capture_output=True,
        text=True,
        check=True,
    )
    jobs: dict[str, list[tuple[str, str, str, str, str]]] = {}
    for line in proc.stdout.splitlines():
        comment, *fields = line.strip().split("|")
        # The plugin puts "rule_<name>_wildcards_..." in the job comment.
        rule = comment.removeprefix("rule_").split("_wildcards")[0]
        jobs.setdefault(rule, []).append(tuple(fields))
    return jobs


SHARD_RULES = ["de_genewise_dispersions", "de_shard_tests"]


def _shard_threads() -> list[str]:
    """--set-threads: the profile's, with one CPU for each gene-shard job, so that the two
    shards of a step fit side by side on the test node's CPUs."""
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())["set-threads"]
    threads = {**profile, **dict.fromkeys(SHARD_RULES, 1)}
    return ["--set-threads", *(f"{rule}={n}" for rule, n in threads.items())]


def test_every_rule_with_threads_from_cores_has_profile_threads() -> None:
    # Without --cores, heavy_threads() gives 1 CPU to sbatch but --cores' threads to the
    # job's srun inside, which SLURM refuses ("More processors requested than permitted").
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    heavy = set(
        re.findall(r"rule (\w+):(?:(?!\n\s*rule ).)*?threads: heavy_threads\(\)", rules, re.S)
    )
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert {"differential_expression", "de_shard_tests"} <= heavy, heavy
    assert heavy <= set(profile["set-threads"]), sorted(heavy - set(profile["set-threads"]))


def test_workflow_through_slurm_matches_local(
    slurm_cluster: Path, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # The SLURM run starts from the small cohort's project (inputs and configuration as the
    # session's small run has them), but with the DE split in two gene shards, whose jobs
    # (de.smk) all go through the profile.
    cluster = tmp_path / "slurm"
    cluster.mkdir()
    small_project(cluster)
    config_file = cluster / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    assert config["de"]["shards"] == "auto", config["de"]  # one job for the small cohort
    config["de"]["shards"] = 2
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))

    # The DE's tables and one contrast's enrichment (a rule downstream of the sharded DE
    # with a fixed request in the profile): each job waits on the plugin's status checks, so
    # the rules the sharding does not touch stay out.
    targets = [f"results/de/{name}_vs_baseline.tsv" for name in ("month3", "month6")]
    targets.append("results/enrichment/month6_vs_baseline.prerank.tsv")
    started = time.monotonic()
    # (-s ends the list of --set-threads, which would take the targets too.)
    run_through_slurm(cluster, targets, [*_shard_threads(), *SNAKEFILE_ARGS])
    print(f"\nsmall cohort through SLURM: {time.monotonic() - started:.0f} s")

    # The session's local run of the small cohort (its DE one job) is the reference, asked
    # for only now: another pytest-xdist worker builds it while this run waits on the cluster.
    local = request.getfixturevalue("small_run")
    # Every table the SLURM run wrote (the DE's and the enrichment's, those of the rules
    # before them) is the one-job run's, byte for byte.
    tables = sorted(p.relative_to(cluster).as_posix() for p in cluster.glob("results/**/*.tsv"))
    for table in (
        "de/design_checks",
        "de/month3_vs_baseline.samples",
        "enrichment/month6_vs_baseline.ora",
    ):
        assert f"results/{table}.tsv" in tables, tables
    different = [t for t in tables if not filecmp.cmp(local / t, cluster / t, shallow=False)]
    assert not different, f"outputs differ between local and SLURM runs: {different}"
    shards = sorted(p.name for p in (cluster / "results" / "de" / "shards").glob("*.pkl"))
    assert shards == [
        *(f"genewise.{i}.pkl" for i in range(2)),
        "prior.pkl",
        "size_factors.pkl",
        *(f"tests.{i}.pkl" for i in range(2)),
    ], shards

    # Every rule ran as its own SLURM job, with the memory and time its rule computes from
    # the input size (not the 500 MB / 5 min test defaults), and the profile's fixed request
    # for enrichment.
    jobs = _slurm_jobs()
    requested = {rule: runs[-1][:3] for rule, runs in jobs.items()}
    rules = ["build_anndata", "filter_genes", "normalize", "differential_expression", "enrichment"]
    rules += ["de_size_factors", "de_genewise_dispersions", "de_dispersion_prior", "de_shard_tests"]
    for rule in rules:
        assert rule in requested, f"no SLURM job for {rule}: {sorted(requested)}"
    # A shard job's memory, and the gather's, grows with its share of the cohort
    # (memory_per_shard), above the rule's base and not the 500 MB test default.
    memory = requested["de_shard_tests"][0]
    assert memory.endswith("M") and int(memory[:-1]) >= 1000, requested
    memory, limit, cpus = requested["differential_expression"]
    assert memory.endswith("M") and int(memory[:-1]) >= 1000, requested
    assert limit == "10:00", requested
    # The rule's threads (capped at the node's CPUs by --max-threads) reached sbatch.
    assert int(cpus) == min(2, len(os.sched_getaffinity(0))), requested
    assert requested["enrichment"][1] == "2:00:00", requested
    # The two shards of each gene-wise step asked for one CPU each and ran side by side: each
    # started before the other ended.
    for rule in SHARD_RULES:
        runs = jobs[rule]
        assert len(runs) == 2 and all(cpus == "1" for _, _, cpus, _, _ in runs), runs
        starts, ends = [run[3] for run in runs], [run[4] for run in runs]
        assert max(starts) < min(ends), runs
