"""CPU time of one Snakemake dry run: a fresh ``python -m snakemake`` against a run forked
from the tests' Snakemake process (tests/snakemake_server.py), which imported Snakemake once.

The folder must hold a finished run (a clone of the workflow, or the repository itself after
``snakemake --cores 2``), so the dry run has nothing to do; it is copied first. The fresh
command's CPU is its own (children reaped); the forked run's is the server's children's CPU.

```bash
python benchmarks/bench_dry_run.py --run /path/to/finished/run --repeat 3
```
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import SERVER, snakemake  # noqa: E402


def server_cpu() -> float:
    """CPU seconds of the server's reaped children (its forked runs)."""
    fields = Path(f"/proc/{SERVER.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="folder of a finished run")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        shutil.copytree(args.run, folder, symlinks=True)
        snakefile = folder / "Snakefile" if (folder / "Snakefile").exists() else REPO / "Snakefile"
        snakemake(folder, "--list-rules")  # starts the server
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            command = [sys.executable, "-m", "snakemake", "-s", str(snakefile)]
            fresh = subprocess.run(
                [*command, "--directory", str(folder), "--cores", "2", "-n"],
                capture_output=True,
                text=True,
            )
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            wall = time.monotonic() - started
            print(f"fresh process: {cpu:.1f} s CPU, {wall:.1f} s wall, exit {fresh.returncode}")
            before_fork, started = server_cpu(), time.monotonic()
            forked = snakemake(folder, "-n")
            cpu, wall = server_cpu() - before_fork, time.monotonic() - started
            print(f"forked run:    {cpu:.1f} s CPU, {wall:.1f} s wall, exit {forked.returncode}")
            nothing = ["Nothing to be done" in r.stdout + r.stderr for r in (fresh, forked)]
            assert nothing == [True, True], "the folder's run is not finished"
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
