"""What a second core buys the paired DE fit, and what the serial steps cost.

``--cores 1 2``: the blocked fit of ``bench_blocked_de.py`` (``DeseqDataSet.deseq2()`` and
the Wald test, ``~ subject + timepoint``, simulated paired counts) with each number of
threads (``n_cpus``), each in a fresh child process; prints wall and CPU time, the speed-up
over the first entry, and the 1-minute load average before and after each run (the machine
may be shared: a loaded machine gives the second thread less than a core).

``--steps``: with ``--cores``, the wall and CPU time of each step of the fit (the
``DeseqDataSet`` methods, and the inference's IRLS and dispersion fits inside them), one
fit per number of threads, in this process: where the second core's time goes.

``--probe``: what the machine gives a second process, whatever the fit does: three kinds of
work (a Python loop; numpy on cache-sized blocks, like the dispersion fits; numpy on
arrays larger than the cache, like IRLS), each run alone and then twice at once in two
processes; prints how much slower each copy runs beside the other and the speed-up two
cores can give such work at best (2 / that slowdown).

``--serial N``: the design checks that run once per fit in the main process, on a paired
design of N samples, numpy's and pydeseq2's way against ifnsig's: the column rank
(``np.linalg.matrix_rank``, an SVD of the whole design, done by the plan and again by
pydeseq2's dataset) and the count of samples sharing a design row (pydeseq2's
``n_or_more_replicates``, used by the Cook's steps).

Examples
--------
python benchmarks/bench_parallel_fit.py --samples 1000 --genes 4000 --cores 1 2
python benchmarks/bench_parallel_fit.py --samples 1000 --genes 4000 --cores 1 2 --steps
python benchmarks/bench_parallel_fit.py --probe
python benchmarks/bench_parallel_fit.py --serial 4000
"""

from __future__ import annotations

import argparse
import os
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


def _python_loop() -> None:
    total = 0
    for i in range(30_000_000):
        total += i


def _cache_sized_numpy() -> None:
    block = np.random.default_rng(0).random((1000, 32))
    for _ in range(6000):
        np.log1p(block).sum()


def _large_numpy() -> None:
    matrix = np.random.default_rng(0).random((1000, 4000))
    for _ in range(40):
        np.log1p(matrix).sum()


def core_probe() -> pd.DataFrame:
    """Each kind of work alone, then two copies at once in two processes (fork)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    rows = []
    for name, work in [
        ("python loop", _python_loop),
        ("numpy, cache-sized blocks", _cache_sized_numpy),
        ("numpy, large arrays", _large_numpy),
    ]:
        t0 = time.perf_counter()
        work()
        alone = time.perf_counter() - t0
        copies = [context.Process(target=work) for _ in range(2)]
        t0 = time.perf_counter()
        for copy in copies:
            copy.start()
        for copy in copies:
            copy.join()
        both = time.perf_counter() - t0
        rows.append(
            {
                "work": name,
                "alone_s": round(alone, 2),
                "two_at_once_s": round(both, 2),
                "slowdown": round(both / alone, 2),
                "best_speed_up": round(2 * alone / both, 2),
                "load": round(os.getloadavg()[0], 1),
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    return table


#: The fit's steps timed by ``--steps``: ``DeseqDataSet`` methods, then the inference's.
FIT_STEPS = [
    "fit_size_factors", "fit_genewise_dispersions", "fit_dispersion_trend",
    "fit_dispersion_prior", "fit_MAP_dispersions", "fit_LFC", "calculate_cooks", "refit",
]  # fmt: skip
INFERENCE_STEPS = ["fit_rough_dispersions", "irls", "alpha_mle", "wald_test"]


def step_times(n_samples: int, n_genes: int, n_cpus: int, seed: int) -> pd.DataFrame:
    """Wall and CPU seconds of each step of one blocked fit and Wald test, in this process
    (the forked workers' CPU counted once they end)."""
    import resource
    import warnings

    from bench_blocked_de import design_of, simulate_paired
    from pydeseq2.ds import DeseqStats

    from ifnsig.de.blocked import BlockedInference
    from ifnsig.de.deseq2_compat import deseq_dataset_class

    def cpu() -> float:
        return sum(
            r.ru_utime + r.ru_stime
            for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        )

    spent: dict[str, list[float]] = {}

    def timed(owner: type, name: str, label: str) -> None:
        method = getattr(owner, name)

        def run(*args, **kwargs):
            wall, used = time.perf_counter(), cpu()
            try:
                return method(*args, **kwargs)
            finally:
                total = spent.setdefault(label, [0.0, 0.0])
                total[0] += time.perf_counter() - wall
                total[1] += cpu() - used

        setattr(owner, name, run)

    dataset = deseq_dataset_class()
    for name in FIT_STEPS:
        timed(dataset, name, name)
    for name in INFERENCE_STEPS:
        timed(BlockedInference, name, f"  inference.{name}")
    counts, meta = simulate_paired(n_samples, n_genes, seed)
    matrix, contrast, _ = design_of(meta, "paired")
    inference = BlockedInference(n_cpus=n_cpus, min_levels=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, used = time.perf_counter(), cpu()
        dds = dataset(counts=counts, metadata=meta, design=matrix, refit_cooks=True,
                      inference=inference, n_cpus=n_cpus, quiet=True)  # fmt: skip
        dds.deseq2()
        DeseqStats(dds, contrast=contrast, inference=inference, quiet=True).summary()
        spent["whole fit and Wald test"] = [time.perf_counter() - wall, cpu() - used]
    return pd.DataFrame(
        [{"n_cpus": n_cpus, "step": k, "wall_s": round(w, 2), "cpu_s": round(c, 2)}
         for k, (w, c) in spent.items()]
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=4000)
    parser.add_argument("--cores", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serial", type=int, default=0, help="samples of the serial checks")
    parser.add_argument("--steps", action="store_true", help="time each step of the fit")
    parser.add_argument("--probe", action="store_true", help="what a second process gets")
    args = parser.parse_args(argv)
    if args.probe:
        core_probe()
    if args.serial:
        serial_spots(args.serial)
    if not args.cores:
        return
    sys.path.insert(0, str(HERE))
    if args.steps:
        # Each fit in a fresh child process, so that neither inherits the other's state.
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with context.Pool(1, maxtasksperchild=1) as pool:
            parts = [
                pool.apply(step_times, (args.samples, args.genes, n, args.seed)) for n in args.cores
            ]
        table = pd.concat(parts).pivot(index="step", columns="n_cpus", values=["wall_s", "cpu_s"])
        order = [*FIT_STEPS, *(f"  inference.{n}" for n in INFERENCE_STEPS)]
        order.append("whole fit and Wald test")
        print(table.reindex([step for step in order if step in table.index]).to_string())
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
