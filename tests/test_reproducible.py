"""Runs are reproducible and resumable: byte-identical outputs from scratch and after a crash.

Two runs of the real workflow on one small simulated cohort, each from scratch in its own
folder: the session's uninterrupted run in a clone of the workflow, and a run of the
workflow deployed as a Snakemake module (as ``snakedeploy`` does) whose whole process group
is killed (SIGKILL, as when a node dies) while the differential expression job is fitting,
then unlocked and restarted. Every file both write under ``results/`` (tables, AnnData
files, plots) must be identical byte for byte, which shows that a run from scratch repeats,
that a resumed run ends where an uninterrupted one does, and that the deployed module gives
what the clone gives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EVERY_STAGE, small_project, snakemake

# The session's small run is shared by both pytest-xdist workers (see conftest.small_run).
pytestmark = pytest.mark.e2e


def outputs(folder: Path) -> dict[str, bytes]:
    """Every file under results/, by relative path."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted((folder / "results").rglob("*"))
        if p.is_file()
    }


def assert_identical(got: dict[str, bytes], expected: dict[str, bytes]) -> None:
    assert sorted(got) == sorted(expected)
    differing = [path for path in expected if got[path] != expected[path]]
    assert not differing


def de_tables(folder: Path) -> list[Path]:
    return sorted((folder / "results" / "de").glob("*_vs_*.tsv"))


def kill_during_de(folder: Path) -> list[str]:
    """Start the workflow and SIGKILL its process group once the DE job is fitting.

    Returns the DE tables that existed at the moment of the kill.
    """
    command = [sys.executable, "-m", "snakemake", "-s", str(folder / "Snakefile")]
    process = subprocess.Popen(
        [*command, "--directory", str(folder), "--cores", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 900
    # The DE script opens its log when it starts and logs "fitting ..." once pydeseq2 starts.
    log = folder / "logs" / "de" / "differential_expression.log"
    try:
        while not (log.exists() and "fitting" in log.read_text()):
            assert process.poll() is None, "the run ended before the DE fit started"
            assert time.monotonic() < deadline, "the DE fit did not start in time"
            time.sleep(0.05)
        present = [str(p) for p in de_tables(folder)]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return present


def test_run_killed_during_de_resumes_to_identical_tables(small_run, tmp_path):
    first_run = small_run
    folder = small_project(tmp_path, module=True)
    present = kill_during_de(folder)
    expected_de = [p.name for p in de_tables(first_run)]
    assert len(present) < len(expected_de), "the DE job had finished before the kill"
    # The DE job's own input was finished (which other jobs were is up to the scheduler).
    assert (folder / "results" / "data" / "filtered_counts.h5ad").exists()

    # A killed Snakemake leaves its lock behind; --unlock is the documented way out.
    assert snakemake(folder, "--unlock").returncode == 0
    resumed = snakemake(folder)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    # Finished upstream jobs are kept; the interrupted DE job is redone.
    log = resumed.stdout + resumed.stderr
    assert "rule filter_genes:" not in log and "rule differential_expression:" in log
    expected = outputs(first_run)
    assert sum(p.endswith(".tsv") for p in expected) >= 10
    assert_identical(outputs(folder), expected)
    for path in EVERY_STAGE:
        assert expected[path], path
    dry = snakemake(folder, "-n")
    assert dry.returncode == 0
    assert "Nothing to be done" in dry.stdout + dry.stderr


ORA_SCRIPT = """
import sys
import numpy as np
import pandas as pd
from ifnsig.enrichment import over_representation
rng = np.random.default_rng(0)
symbols = [f"G{i}" for i in range(400)]
table = pd.DataFrame({"symbol": symbols, "padj": rng.uniform(0, 1, 400),
                      "log2FoldChange": rng.normal(0, 1, 400)})
table.loc[:39, "padj"] = 0.001
sets = {f"S{k}": symbols[k * 10 : k * 10 + 40] for k in range(20)}
over_representation(table, sets).to_csv(sys.stdout, sep="\\t", index=False)
"""


def test_over_representation_does_not_depend_on_string_hashing():
    # Python salts str hashes per process, so anything built from set order differs
    # between runs unless sorted.
    texts = [
        subprocess.run(
            [sys.executable, "-c", ORA_SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    ]
    assert texts[0].count("\n") > 2 and texts[0] == texts[1]
