"""What a second core buys the paired DE fit, and what the serial steps cost.

``--cores 1 2``: the blocked fit of ``bench_blocked_de.py`` (``DeseqDataSet.deseq2()`` and
the Wald test, ``~ subject + timepoint``, simulated paired counts) with each number of
threads (``n_cpus``), each in a fresh child process; prints wall and CPU time, the speed-up
over the first entry, and the 1-minute load average before and after each run (the machine
may be shared: a loaded machine gives the second thread less than a core).

``--serial N``: the design checks that run once per fit in the main process, on a paired
design of N samples, numpy's and pydeseq2's way against ifnsig's: the column rank
(``np.linalg.matrix_rank``, an SVD of the whole design, done by the plan and again by
pydeseq2's dataset) and the count of samples sharing a design row (pydeseq2's
``n_or_more_replicates``, used by the Cook's steps).

Examples
--------
python benchmarks/bench_parallel_fit.py --samples 1000 --genes 4000 --cores 1 2
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


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--genes", type=int, default=4000)
    parser.add_argument("--cores", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serial", type=int, default=0, help="samples of the serial checks")
    args = parser.parse_args(argv)
    if args.serial:
        serial_spots(args.serial)
    if not args.cores:
        return
    sys.path.insert(0, str(HERE))
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
