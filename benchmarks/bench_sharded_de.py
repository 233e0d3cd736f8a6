"""Benchmark the DE split by gene shards (``de.shards``) against the one-job fit.

Simulates a paired cohort (``bench_blocked_de.simulate_paired``: n/2 subjects x 2
timepoints, ``~ subject + timepoint``, subject-blocked backend), writes it as an ``.h5ad``
and runs, each in its own child process as the workflow's jobs would be: the one-job
stage (``differential_expression``), then the sharded jobs (size factors, gene-wise
dispersions per shard, trend and prior, tests per shard, gather). Writes each step's wall
time, CPU time (user + system of the child and its workers) and peak resident memory (the
child's own ``ru_maxrss``), checks that the sharded table is the one-job table byte for
byte, and appends to ``benchmarks/out/sharded_de.tsv``. ``--no-one-job`` runs the sharded
jobs alone (cohorts whose one-job fit would not fit in memory; no comparison then).
``--parallel 2`` runs the shards' jobs two at a time, as ``snakemake --cores 2`` would
(each job one thread), and prints the wall time of the whole sharded DE.

Examples
--------
python benchmarks/bench_sharded_de.py --samples 200 --genes 5000 --shards 4
python benchmarks/bench_sharded_de.py --samples 10000 --genes 20000 --shards 10 --no-one-job
python benchmarks/bench_sharded_de.py --samples 10000 --genes 20000 --shards 10 --no-one-job \
    --parallel 2
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "sharded_de.tsv"
TABLE = "T1_vs_T0"


def config(shards: int) -> dict:
    from ifnsig.validation import validate_config

    return validate_config(
        {
            "timepoints": ["T0", "T1"],
            "de": {
                "shards": shards,
                # apeGLM refits every coefficient per gene: skipped, as for large cohorts.
                "shrink_max_coefficients": 0,
                "contrasts": [{"name": TABLE, "test": "T1", "reference": "T0"}],
            },
        }
    )


def write_cohort(path: Path, n_samples: int, n_genes: int) -> None:
    import anndata as ad

    sys.path.insert(0, str(HERE))
    from bench_blocked_de import simulate_paired

    from ifnsig import data

    counts, meta = simulate_paired(n_samples, n_genes, seed=1)
    obs = meta.assign(sample=meta.index, group="patient")
    var = pd.DataFrame({"symbol": counts.columns}, index=counts.columns)
    data.write_h5ad(ad.AnnData(X=counts.to_numpy(), obs=obs, var=var), path)


def step(work: Path, name: str, shard: int | None, n_shards: int) -> None:
    """One job of the sharded DE (or the one-job stage), in this process."""
    from ifnsig import stages
    from ifnsig.settings import stage_settings

    cfg = config(n_shards)
    cohort = str(work / "cohort.h5ad")
    factors = {"filtered": cohort, "size_factors": str(work / "size_factors.pkl")}
    genewise = [str(work / f"genewise.{i}.pkl") for i in range(n_shards)]
    tests = [str(work / f"tests.{i}.pkl") for i in range(n_shards)]
    prior = str(work / "prior.pkl")
    stage = name if name.startswith("de_") else "differential_expression"
    settings = stage_settings(copy.deepcopy(cfg), stage)
    if shard is not None:
        settings["shard"] = {"index": shard, "count": n_shards}

    def tables(folder: str) -> dict[str, str]:
        return {
            TABLE: str(work / f"{folder}.tsv"),
            f"{TABLE}.samples": str(work / "s.tsv"),
            "design_checks": str(work / f"{folder}.design_checks.tsv"),
        }

    stage_de = stage_settings(copy.deepcopy(cfg), "differential_expression")
    if name == "one_job":
        stages.differential_expression({"filtered": cohort}, tables("one"), stage_de, 1)
    elif name == "de_size_factors":
        stages.de_size_factors(factors, factors, settings)
    elif name == "de_genewise_dispersions":
        stages.de_genewise_dispersions(factors, {"genewise": genewise[shard]}, settings)
    elif name == "de_dispersion_prior":
        inputs = {"filtered": cohort, "genewise": genewise}
        stages.de_dispersion_prior(inputs, {"prior": prior}, settings)
    elif name == "de_shard_tests":
        inputs = {**factors, "genewise": genewise[shard], "prior": prior}
        stages.de_shard_tests(inputs, {"tests": tests[shard]}, settings)
    elif name == "gather":
        stages.differential_expression({**factors, "tests": tests}, tables("many"), stage_de, 1)


def child(work: Path, name: str, shard: int | None, n_shards: int) -> dict:
    started = time.perf_counter()
    args = [sys.executable, __file__, "--child", str(work), name, str(shard), str(n_shards)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    used = json.loads(done.stdout.strip().splitlines()[-1])
    row = {
        "step": name,
        "shard": shard,
        "wall_s": time.perf_counter() - started,
        "cpu_s": used["cpu_s"],
        "peak_mb": used["peak_mb"],
    }
    # Each job as it ends (a long run read while it goes), with the load beside it.
    print(json.dumps({**row, "load": os.getloadavg()[0]}), flush=True)
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--genes", type=int, default=5000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--no-one-job", action="store_true", help="sharded jobs only")
    parser.add_argument(
        "--parallel", type=int, default=1, help="shard jobs run at a time (as --cores)"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        work, name, shard, n_shards = args.child
        step(Path(work), name, None if shard == "None" else int(shard), int(n_shards))
        own, workers = (
            resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        )
        cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
        print(json.dumps({"peak_mb": own.ru_maxrss / 1024, "cpu_s": cpu}))
        return
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_cohort(work / "cohort.h5ad", args.samples, args.genes)
        n = args.shards
        rows = [] if args.no_one_job else [child(work, "one_job", None, n)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max(1, args.parallel)) as pool:

            def shards(name: str) -> list[dict]:
                return list(pool.map(lambda i: child(work, name, i, n), range(n)))

            sharded = [child(work, "de_size_factors", None, n)]
            sharded += shards("de_genewise_dispersions")
            sharded += [child(work, "de_dispersion_prior", None, n)]
            sharded += shards("de_shard_tests")
            sharded += [child(work, "gather", None, n)]
        sharded_wall = time.perf_counter() - started
        identical = (
            None
            if args.no_one_job
            else all(
                (work / f"one{end}").read_bytes() == (work / f"many{end}").read_bytes()
                for end in (".tsv", ".design_checks.tsv")
            )
        )
    frame = pd.DataFrame(rows + sharded).assign(
        n_samples=args.samples,
        n_genes=args.genes,
        n_shards=args.shards,
        parallel=args.parallel,
        identical=identical,
    )
    print(frame.to_string(index=False))
    one = f"one job: {rows[0]['wall_s']:.1f} s, {rows[0]['cpu_s']:.1f} s CPU; " if rows else ""
    print(
        f"{one}sharded, shard jobs {args.parallel} at a time: {sharded_wall:.1f} s wall, "
        f"jobs' walls summed {sum(r['wall_s'] for r in sharded):.1f} s, "
        f"{sum(r['cpu_s'] for r in sharded):.1f} s CPU, largest job "
        f"{max(r['peak_mb'] for r in sharded):.0f} MB; identical tables: {identical}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    OUT.parent.mkdir(exist_ok=True)
    if OUT.exists():  # rows of earlier runs, whose columns may be fewer
        frame = pd.concat([pd.read_csv(OUT, sep="\t"), frame], ignore_index=True)
    frame.to_csv(OUT, sep="\t", index=False)


if __name__ == "__main__":
    main()
