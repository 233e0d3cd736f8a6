"""Import time of each job of the demo run: what every Python job pays before its stage works.

Runs the shipped demo end to end in a scratch folder on one core (jobs one after another),
with ``PYTHONPROFILEIMPORTTIME`` set, so that each job's interpreter prints its imports
(``python -X importtime``) below the rule's header in Snakemake's output. For each job it
prints the seconds its interpreter spent importing (the top-level imports' cumulative time,
the stage's own imports on first use included; ``-X importtime`` counts wall time, so it
means something only on an idle machine), beside the job's wall and CPU time from its
``benchmark:`` file (CPU time holds under load), the totals, and the critical path: the
longest chain of dependent rules, each costing its longest job
(``run_benchmarks.critical_path``), as the run would take with enough cores.

With ``--replay``, the run is not repeated: each job's top-level imports, read from the
Snakemake log a run left in ``--workdir``, are imported again in order in a fresh
interpreter (with this checkout's ``ifnsig`` first on the path), three times, and the
median CPU time (user + system) of that interpreter is printed per job: the import cost of
each job, measured in CPU seconds, which a loaded machine changes little.

Examples
--------
python benchmarks/bench_job_imports.py
python benchmarks/bench_job_imports.py --workdir /tmp/demo_imports --top 5
python benchmarks/bench_job_imports.py --workdir /tmp/demo_imports --replay
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from run_benchmarks import critical_path, rule_graph, rule_of  # noqa: E402

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
RULE_HEADER = re.compile(r"^(?:local)?rule (\w+):")
WILDCARDS = re.compile(r"^\s+wildcards: (.+)")


def job_imports(log: str) -> list[dict]:
    """Each job's imports from Snakemake's output of a one-core run: the lines after its
    ``rule`` header (its wildcards, if any, name the job), summed over top-level imports."""
    jobs: list[dict] = []
    for line in log.splitlines():
        header = RULE_HEADER.match(line)
        if header:
            jobs.append({"job": header.group(1), "import_s": 0.0, "modules": Counter()})
            continue
        if not jobs:
            continue
        wildcards = WILDCARDS.match(line)
        if wildcards and jobs[-1]["import_s"] == 0.0:
            jobs[-1]["job"] += f" ({wildcards.group(1)})"
        match = IMPORT_LINE.match(line)
        if match and match.group(3) == " ":  # one space: imported by the job itself
            cumulative = int(match.group(2)) / 1e6
            jobs[-1]["import_s"] += cumulative
            jobs[-1]["modules"][match.group(4)] += cumulative
    return jobs


def replay_cpu(modules: list[str], repeat: int = 3) -> float:
    """Median CPU seconds of a fresh interpreter that imports ``modules`` in order."""
    code = "import importlib\n" + "".join(
        f"importlib.import_module({name!r})\n" for name in modules
    )
    paths = [REPO / "workflow", REPO / "workflow" / "scripts"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    times = []
    for _ in range(repeat):
        before = os.times()
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
        after = os.times()
        times.append(
            after.children_user
            - before.children_user
            + after.children_system
            - before.children_system
        )
    return sorted(times)[len(times) // 2]


def replay(folder: Path) -> None:
    jobs = [job for job in job_imports((folder / "snakemake.log").read_text()) if job["modules"]]
    baseline = replay_cpu([])
    print(f"{'job':<48} {'import CPU s':>12}  (an interpreter that imports nothing: "
          f"{baseline:.2f} s)")  # fmt: skip
    total = 0.0
    for job in jobs:
        modules = [m for m in job["modules"] if not m.startswith(("encodings", "site"))]
        seconds = replay_cpu(modules)
        total += seconds
        print(f"{job['job']:<48} {seconds:12.2f}")
    print(f"{len(jobs)} jobs: {total:.1f} s CPU importing ({total / len(jobs):.2f} s a job); "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ifnsig_job_imports"))
    parser.add_argument("--top", type=int, default=3, help="costliest imports shown per job")
    parser.add_argument(
        "--replay", action="store_true", help="the CPU time of each job's imports, again"
    )
    args = parser.parse_args()
    if args.replay:
        replay(args.workdir / "demo")
        return

    folder = args.workdir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(REPO / "config", folder / "config")
    (folder / "resources").symlink_to(REPO / "resources")
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
    command += ["--directory", str(folder), "--cores", "1"]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    wall = time.perf_counter() - started
    (folder / "snakemake.log").write_text(run.stderr)
    if run.returncode != 0:
        sys.exit(f"the demo failed; see {folder / 'snakemake.log'}")

    jobs = job_imports(run.stderr)
    cpu = {}
    for path in (folder / "benchmarks" / "out").glob("*.tsv"):
        record = pd.read_csv(path, sep="\t").iloc[-1]
        cpu[path.stem] = (float(record["s"]), float(record["cpu_time"]))
    print(f"{'job':<48} {'imports s':>9} {'wall s':>7} {'CPU s':>6}  costliest imports")
    imports: dict[str, float] = {}
    for job in jobs:
        top = ", ".join(f"{name} {s:.2f}" for name, s in job["modules"].most_common(args.top))
        step = re.sub(r" \(\w+=(\w+)\)$", r"_\1", job["job"])
        job_wall, job_cpu = cpu.get(step, (float("nan"), float("nan")))
        print(f"{job['job']:<48} {job['import_s']:9.2f} {job_wall:7.1f} {job_cpu:6.1f}  {top}")
        rule = job["job"].split(" ")[0]
        imports[rule] = max(imports.get(rule, 0.0), job["import_s"])
    walls: dict[str, float] = {}
    for step, (job_wall, _) in cpu.items():
        walls[rule_of(step)] = max(walls.get(rule_of(step), 0.0), job_wall)
    dot = rule_graph(folder)
    print(
        f"critical path: {critical_path(dot, walls):.1f} s of job wall time; the longest "
        f"chain in import time: {critical_path(dot, imports):.1f} s"
    )
    total = sum(job["import_s"] for job in jobs)
    print(
        f"{len(jobs)} jobs: {total:.1f} s importing in all ({total / len(jobs):.2f} s a job); "
        f"their benchmark files: {sum(w for w, _ in cpu.values()):.1f} s wall, "
        f"{sum(c for _, c in cpu.values()):.1f} s CPU; the run {wall:.0f} s on one core; "
        f"load {load:.1f} at start, {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
