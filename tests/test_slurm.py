"""Runs a workflow through a real one-node SLURM cluster (tests/slurm/cluster.sh) with the
profile in profiles/slurm, and checks it gives the same outputs as a local run.

Needs root and apt-get (to install slurm-wlm and munge); skipped otherwise.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from test_workflow import write_project

from ifnsig.simulate import CohortSpec

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
SLURM_PROFILE = REPO / "profiles" / "slurm"
DEFAULT_PROFILE = REPO / "profiles" / "default"
RUN_TIMEOUT_S = 900
START_TIMEOUT_S = 600  # includes apt-get install on a fresh machine

# Settings for the test cluster on top of profiles/slurm:
# - profiles/default would otherwise be loaded as workflow profile and win over the profile;
# - replaces the profile's default-resources, dropping its placeholder account (no accounts
#   exist without slurmdbd) and partition;
# - threads capped at the node's CPUs: sbatch rejects a job asking for more;
# - a first status check after 5 s instead of 20 s keeps the run short.
SLURM_TEST_ARGS = [
    "--workflow-profile",
    "none",
    "--default-resources",
    "slurm_partition=debug",
    "runtime=5",
    "mem_mb=500",
    "--max-threads",
    str(len(os.sched_getaffinity(0))),
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "5",
]

pytestmark = pytest.mark.slurm


def _snakemake(workdir: Path, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", *args]
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


def run_locally(
    workdir: Path, targets: Sequence[str] = (), extra_args: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run snakemake in `workdir` on this machine with profiles/default."""
    return _snakemake(
        workdir,
        [
            "--profile",
            str(DEFAULT_PROFILE),
            "--workflow-profile",
            "none",
            "--cores",
            "2",
            *extra_args,
            *targets,
        ],
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


TOY_SNAKEFILE = r"""
rule all:
    input:
        "results/summary.txt",


rule numbers:
    output:
        "results/numbers.txt",
    log:
        "logs/numbers.log",
    threads: 2
    resources:
        mem_mb=200,
        runtime=5,
    shell:
        "echo job=${{SLURM_JOB_ID:-none}} cpus=${{SLURM_CPUS_PER_TASK:-none}} > {log}; "
        "seq 1 100 > {output}"


rule squares:
    input:
        "results/numbers.txt",
    output:
        "results/squares.tsv",
    log:
        "logs/squares.log",
    run:
        with open(log[0], "w") as fh:
            print("job=" + os.environ.get("SLURM_JOB_ID", "none"), file=fh)
        with open(input[0]) as fin, open(output[0], "w") as fout:
            for line in fin:
                n = int(line)
                print(n, n * n, sep="\t", file=fout)


rule summary:
    input:
        "results/numbers.txt",
        "results/squares.tsv",
    output:
        "results/summary.txt",
    log:
        "logs/summary.log",
    resources:
        mem_mb=100,
    shell:
        "echo job=${{SLURM_JOB_ID:-none}} > {log}; "
        "awk -F'\\t' '{{s += $2}} END {{print \"sum_of_squares\", s}}' {input[1]} > {output}; "
        "wc -l < {input[0]} >> {output}"
"""

TOY_OUTPUTS = ["results/numbers.txt", "results/squares.tsv", "results/summary.txt"]


def _toy_workdir(path: Path) -> Path:
    path.mkdir()
    (path / "Snakefile").write_text(TOY_SNAKEFILE)
    return path


def _job_id(log: Path) -> str:
    return log.read_text().split()[0].removeprefix("job=")


def test_toy_workflow_through_slurm_matches_local(slurm_cluster: Path, tmp_path: Path) -> None:
    local = _toy_workdir(tmp_path / "local")
    run_locally(local)

    cluster = _toy_workdir(tmp_path / "slurm")
    started = time.monotonic()
    run_through_slurm(cluster, ["all"])
    print(f"\ntoy workflow through SLURM: {time.monotonic() - started:.1f} s")

    for name in TOY_OUTPUTS:
        assert (cluster / name).is_file(), name
        assert filecmp.cmp(local / name, cluster / name, shallow=False), name
    assert (cluster / "results/summary.txt").read_text() == "sum_of_squares 338350\n100\n"

    # Each job ran as its own SLURM job, and with the threads the rule asked for.
    job_ids = {_job_id(cluster / f"logs/{rule}.log") for rule in ("numbers", "squares", "summary")}
    assert "none" not in job_ids and len(job_ids) == 3, job_ids
    assert "cpus=2" in (cluster / "logs/numbers.log").read_text()
    assert {_job_id(local / f"logs/{r}.log") for r in ("numbers", "squares", "summary")} == {"none"}


# A cohort just large enough for every stage to have something to do: DE fits on 6 patients
# at 3 timepoints, enrichment finds the shipped sets among 800 genes.
SMALL_COHORT = CohortSpec(n_patients=6, n_controls=4, n_genes=800, n_treatment_genes=80, seed=11)
SNAKEFILE_ARGS = ["-s", str(REPO / "Snakefile")]


def _requested_resources() -> dict[str, tuple[str, str]]:
    """Memory and time limit sbatch gave each rule's job, from squeue (MinJobAge keeps them)."""
    proc = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%k|%m|%l"],
        capture_output=True,
        text=True,
        check=True,
    )
    requested = {}
    for line in proc.stdout.splitlines():
        comment, memory, limit = line.strip().split("|")
        # The plugin puts "rule_<name>_wildcards_..." in the job comment.
        rule = comment.removeprefix("rule_").split("_wildcards")[0]
        requested[rule] = (memory, limit)
    return requested


def test_workflow_through_slurm_matches_local(slurm_cluster: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    write_project(local, SMALL_COHORT)
    cluster = tmp_path / "slurm"
    shutil.copytree(local, cluster)

    started = time.monotonic()
    run_locally(local, extra_args=SNAKEFILE_ARGS)
    local_s = time.monotonic() - started
    tables = sorted(p.relative_to(local).as_posix() for p in local.glob("results/**/*.tsv"))
    assert any(t.startswith("results/de/") for t in tables), tables

    # Only the rules that write tables: the plots add jobs but nothing to compare.
    started = time.monotonic()
    run_through_slurm(cluster, tables, SNAKEFILE_ARGS)
    print(
        f"\nsmall cohort: local {local_s:.0f} s, through SLURM {time.monotonic() - started:.0f} s"
    )

    different = [t for t in tables if not filecmp.cmp(local / t, cluster / t, shallow=False)]
    assert not different, f"outputs differ between local and SLURM runs: {different}"

    # Every rule ran as its own SLURM job, with the memory and time its rule computes from
    # the input size (not the 500 MB / 5 min test defaults), and the profile's fixed request
    # for enrichment.
    requested = _requested_resources()
    for rule in ("build_anndata", "normalize", "differential_expression", "enrichment"):
        assert rule in requested, f"no SLURM job for {rule}: {sorted(requested)}"
    memory, limit = requested["differential_expression"]
    assert memory.endswith("M") and int(memory[:-1]) >= 2000, requested
    assert limit == "10:00", requested
    assert requested["enrichment"][1] == "2:00:00", requested
