"""What a second core buys the paired DE fit, and what the serial steps cost.

``--cores 1 2``: the blocked fit of ``bench_blocked_de.py`` (``DeseqDataSet.deseq2()`` and
the Wald test, ``~ subject + timepoint``, simulated paired counts) with each number of
threads (``n_cpus``), each in a fresh child process; prints wall and CPU time, the speed-up
over the first entry, and the 1-minute load average before and after each run (the machine
may be shared: a loaded machine gives the second thread less than a core).

``--steps``: the same fit once per number of threads, with the wall and CPU time of each
step (the dataset's methods and the inference's gene-chunk calls, each step's own time
without the steps it calls): where a fit's CPU goes, and which steps a second thread speeds
up.

``--serial N``: the design checks that run once per fit in the main process, on a paired
design of N samples, numpy's and pydeseq2's way against ifnsig's: the column rank
(``np.linalg.matrix_rank``, an SVD of the whole design, done by the plan and again by
pydeseq2's dataset) and the count of samples sharing a design row (pydeseq2's
``n_or_more_replicates``, used by the Cook's steps).

Examples
--------
python benchmarks/bench_parallel_fit.py --samples 1000 --genes 4000 --cores 1 2
python benchmarks/bench_parallel_fit.py --samples 4000 --genes 1000 --cores 1 --steps
python benchmarks/bench_parallel_fit.py --serial 4000
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def serial_spots(n_samples: int) -> pd.DataFrame:
    """Seconds of the rank and replicate checks on a paired design of ``n_samples``."""
    from formulaic_contrasts import FormulaicContrasts
    from pydeseq2.utils import n_or_more_replicates as pydeseq2s

    from ifnsig.de.deseq2_compat import n_or_more_replicates
    from ifnsig.de.indicators import design_rank

    subjects = [f"S{i:05d}" for i in range(n_samples // 2)]
    meta = pd.DataFrame(
        {"subject": np.repeat(subjects, 2), "timepoint": np.tile(["T0", "T1"], len(subjects))}
    )
    design = FormulaicContrasts(meta, "~subject + timepoint").design_matrix
    x = pd.DataFrame(design).astype(float)
    steps = [
        ("rank", "np.linalg.matrix_rank", lambda: np.linalg.matrix_rank(x.to_numpy())),
        ("rank", "ifnsig design_rank", lambda: design_rank(x.to_numpy())),
        ("replicates", "pydeseq2", lambda: int(pydeseq2s(x, 3).sum())),
        (
            "replicates",
            "ifnsig n_or_more_replicates",
            lambda: int(n_or_more_replicates(x, 3).sum()),
        ),
    ]
    rows = []
    for step, how, func in steps:
        before = os.getloadavg()[0]
        t0 = time.perf_counter()
        value = func()
        seconds = time.perf_counter() - t0
        rows.append({"step": step, "how": how, "value": value, "seconds": round(seconds, 2),
                     "load_before": round(before, 1)})  # fmt: skip
        print(pd.DataFrame([rows[-1]]).to_string(index=False, header=len(rows) == 1), flush=True)
    return pd.DataFrame(rows)


#: What ``--steps`` times: (class, method) pairs, named ``dataset.<method>`` and
#: ``inference.<method>``.
STEPS = {
    "dataset": ["deseq2", "fit_size_factors", "fit_genewise_dispersions", "_fit_MoM_dispersions",
                "fit_dispersion_trend", "fit_dispersion_prior", "fit_MAP_dispersions",
                "fit_LFC", "calculate_cooks", "refit", "cooks_outlier"],
    "inference": ["fit_rough_dispersions", "fit_moments_dispersions", "irls", "alpha_mle",
                  "wald_test"],
    "stats": ["summary", "run_wald_test", "_cooks_filtering", "_independent_filtering",
              "_p_value_adjustment"],
}  # fmt: skip


def timed_steps(n_samples: int, n_genes: int, n_cpus: int, seed: int) -> list[dict]:
    """Fit and test one simulated cohort, timing each step of :data:`STEPS` (own time)."""
    import warnings

    from bench_blocked_de import design_of, simulate_paired
    from pydeseq2.ds import DeseqStats

    from ifnsig.de.blocked import BlockedInference
    from ifnsig.de.deseq2_compat import deseq_dataset_class

    counts, meta = simulate_paired(n_samples, n_genes, seed)
    matrix, contrast, _ = design_of(meta, "paired")
    dataset = deseq_dataset_class()
    totals: dict[str, list[float]] = {}
    stack: list[list[float]] = []  # per open step: [wall, cpu] of the steps it called

    def timer(name, func):
        def wrapper(*args, **kwargs):
            stack.append([0.0, 0.0])
            w0, c0 = time.perf_counter(), time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                inner = stack.pop()
                row = totals.setdefault(name, [0, 0.0, 0.0])
                row[0] += 1
                row[1] += wall - inner[0]
                row[2] += cpu - inner[1]
                if stack:
                    stack[-1][0] += wall
                    stack[-1][1] += cpu

        return wrapper

    for kind, cls in (("dataset", dataset), ("inference", BlockedInference),
                      ("stats", DeseqStats)):  # fmt: skip
        for method in STEPS[kind]:
            wrapped = timer(f"{kind}.{method}", getattr(cls, method))
            static = isinstance(inspect.getattr_static(cls, method), staticmethod)
            setattr(cls, method, staticmethod(wrapped) if static else wrapped)
    inference = BlockedInference(n_cpus=n_cpus, min_levels=2)
    w0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = timer("dataset.__init__", dataset)(
            counts=counts, metadata=meta, design=matrix, refit_cooks=True,
            inference=inference, n_cpus=n_cpus, quiet=True,
        )  # fmt: skip
        dds.deseq2()
        stats = timer("stats.__init__", DeseqStats)(
            dds, contrast=contrast, inference=inference, quiet=True
        )
        stats.summary()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    rows = [{"step": k, "calls": v[0], "wall_s": v[1], "cpu_s": v[2]} for k, v in totals.items()]
    rows.append({"step": "total", "calls": 1, "wall_s": wall, "cpu_s": cpu})
    return rows


def steps_table(args: argparse.Namespace) -> pd.DataFrame:
    """:func:`timed_steps` for each of ``args.cores``, each in a fresh child process."""
    tables = []
    for n_cpus in args.cores:
        child = json.dumps({"n_samples": args.samples, "n_genes": args.genes,
                            "n_cpus": n_cpus, "seed": args.seed})  # fmt: skip
        before = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, __file__, "--steps-child", child],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows = pd.DataFrame(json.loads(proc.stdout.strip().splitlines()[-1])).set_index("step")
        rows.columns = [f"{c}_{n_cpus}" if c != "calls" else c for c in rows.columns]
        print(f"{n_cpus} thread(s): load average {before:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after", flush=True)  # fmt: skip
        tables.append(rows if not tables else rows.drop(columns="calls"))
    table = pd.concat(tables, axis=1).round(2)
    first = f"cpu_s_{args.cores[0]}"
    table = table.sort_values(first, ascending=False)
    return table


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=4000)
    parser.add_argument("--cores", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serial", type=int, default=0, help="samples of the serial checks")
    parser.add_argument("--steps", action="store_true", help="time each step of the fit")
    parser.add_argument("--steps-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.steps_child:
        print(json.dumps(timed_steps(**json.loads(args.steps_child))))
        return
    if args.steps:
        print(steps_table(args).to_string())
        return
    if args.serial:
        serial_spots(args.serial)
    if not args.cores:
        return
    from bench_blocked_de import run_child

    rows = []
    for n_cpus in args.cores:
        child = argparse.Namespace(genes=args.genes, n_cpus=n_cpus, seed=args.seed, timeout=None)
        before = os.getloadavg()[0]
        row = run_child(child, args.samples, "blocked")
        row["load_before"], row["load_after"] = round(before, 1), round(os.getloadavg()[0], 1)
        rows.append(row)
    table = pd.DataFrame(rows)[
        ["n_samples", "n_genes", "n_cpus", "fit_s", "wald_s", "wall_s", "cpu_s", "status",
         "load_before", "load_after"]
    ]  # fmt: skip
    table["speed_up"] = (table["wall_s"].iloc[0] / table["wall_s"]).round(2)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
