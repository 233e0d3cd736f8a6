"""A benchmark's step measured in a child process: wall time, the step's own time, peak memory.

The child is a fresh interpreter (its start and imports in the wall time); it reports the
time of the step itself with :func:`report_step_time` as the last line of its standard
output. Its peak resident memory is read with ``os.wait4``: that child's own, not the largest
of all children so far (``RUSAGE_CHILDREN``), nor its parent's at fork.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd


def report_step_time(seconds: float) -> None:
    """In the child: print the step's own time, in seconds, for :func:`measure_child`."""
    print(json.dumps({"stage_s": seconds}), flush=True)


def measure_child(command: list[str], env: dict | None = None) -> dict:
    """Run ``command`` and return its ``wall_s``, ``stage_s`` and ``peak_rss_mb``; a failed
    child stops the benchmark with its exit code and the end of its standard error."""
    start = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as errors:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        child.stdout.close()
        if child.returncode != 0:
            errors.seek(0)
            raise SystemExit(
                f"{' '.join(command)} failed with exit code {child.returncode}:\n"
                + errors.read()[-4000:]
            )
    return {
        "wall_s": round(time.perf_counter() - start, 1),
        "stage_s": round(json.loads(output.strip().splitlines()[-1])["stage_s"], 1),
        # ru_maxrss is in kilobytes on Linux.
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append ``rows`` to the TSV at ``path`` (created with its folder; new columns added)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    if path.exists():
        table = pd.concat([pd.read_csv(path, sep="\t"), table])
    table.to_csv(path, sep="\t", index=False)
