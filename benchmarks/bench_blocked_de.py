"""Benchmark paired DE backends: pydeseq2's DefaultInference, ifnsig's dense and blocked.

Simulates paired negative-binomial cohorts (n samples = n/2 subjects x 2 timepoints,
``~ subject + timepoint``), runs the DE fit (``DeseqDataSet.deseq2()``, refit_cooks=True)
and the Wald test (``DeseqStats.summary()``) with each backend, each run in its own child
process, and writes wall times and peak resident memory to a TSV. ``--designs`` adds the
designs of the other contrast kinds (ifnsig's backends only; subjects alternate between two
arms): ``interaction`` (``~ subject + timepoint + timepoint:arm``, Wald test of the
interaction), ``lrt_time`` (LRT of ``~ subject + timepoint`` against ``~ subject``) and
``lrt_interaction`` (LRT of the interaction design against ``~ subject + timepoint``); an
LRT run also makes the Wald test of its reported coefficient, as ``run_fit`` does.
Backends: ``default`` is pydeseq2 as released (DefaultInference, its DeseqDataSet);
``dense`` and ``blocked`` are what the workflow runs for ``de.inference: default`` and
``blocked`` (DESeq2's dispersion steps from ``ifnsig.deseq2_compat``; the blocked one
forced from 2 subjects on).

Peak memory: the child process reports its own ``ru_maxrss`` (RUSAGE_SELF) and its largest
joblib/loky worker's peak, read from ``/proc/<pid>/status`` (VmHWM) before the workers are
shut down; the workers' ``ru_maxrss`` (RUSAGE_CHILDREN, after shutdown) is also written but
overstates them: a worker is forked from the child before it execs, and ``ru_maxrss``
keeps the resident size of that fork, i.e. of the child at the time. CPU time
(user + system, child and its workers, fit + test only) is reported beside wall time: on a
shared machine it is the steadier figure.

Examples
--------
python benchmarks/bench_blocked_de.py --sizes 100 400 1000 --backends blocked
python benchmarks/bench_blocked_de.py --sizes 100 400 --backends default
python benchmarks/bench_blocked_de.py --sizes 8 16 24 40 --backends dense blocked
python benchmarks/bench_blocked_de.py --sizes 1000 --backends blocked \
    --designs paired interaction lrt_time lrt_interaction
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "out" / "blocked_de.tsv"
KEY = ["n_samples", "n_genes", "backend", "design", "n_cpus"]
DESIGNS = ["paired", "interaction", "lrt_time", "lrt_interaction"]


def simulate_paired(n_samples: int, n_genes: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired NB counts: n/2 subjects x 2 timepoints, subject effects, 15% DE genes.

    Parameters
    ----------
    n_samples : int
        Number of samples (even).
    n_genes : int
        Number of genes.
    seed : int
        Seed of the numpy generator.

    Returns
    -------
    counts : pandas.DataFrame
        Samples x genes.
    metadata : pandas.DataFrame
        Columns ``subject`` and ``timepoint``.
    """
    rng = np.random.default_rng(seed)
    n_subjects = n_samples // 2
    subject = np.repeat([f"S{i:04d}" for i in range(n_subjects)], 2)
    timepoint = np.tile(["T0", "T1"], n_subjects)
    names = [f"{s}_{t}" for s, t in zip(subject, timepoint, strict=True)]
    meta = pd.DataFrame({"subject": subject, "timepoint": timepoint}, index=names)
    base = rng.lognormal(5.0, 1.5, n_genes)
    disp = (0.1 + 2.0 / base) * rng.lognormal(0, 0.3, n_genes)
    lfc = np.where(rng.random(n_genes) < 0.15, rng.normal(0, 1.0, n_genes), 0.0)
    sf = rng.lognormal(0, 0.2, 2 * n_subjects)
    counts = np.empty((2 * n_subjects, n_genes), dtype=np.int64)
    # Row blocks (of whole subjects: both samples of a subject are adjacent and blocks start
    # at even rows) keep the float temporaries small for large cohorts. One effect per
    # subject and gene, shared by its two samples: what makes the samples paired.
    for start in range(0, 2 * n_subjects, 100):
        rows = slice(start, min(start + 100, 2 * n_subjects))
        effects = rng.normal(0, 0.5, ((rows.stop - rows.start) // 2, n_genes))
        subject_effect = np.repeat(effects, 2, axis=0)
        t = np.arange(rows.start, rows.stop) % 2
        mu = sf[rows, None] * base * np.exp(subject_effect + t[:, None] * lfc)
        counts[rows] = rng.negative_binomial(1 / disp, 1 / (1 + mu * disp))
    genes = [f"g{i:05d}" for i in range(n_genes)]
    return pd.DataFrame(counts, index=names, columns=genes), meta


def _worker_peaks_mb() -> list[float]:
    """VmHWM (peak resident size since exec) of this process's live children, Linux only."""
    me, peaks = str(os.getpid()), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] != me:  # field 4 of /proc/<pid>/stat: parent pid
                continue
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        except (OSError, IndexError, ValueError):
            continue
    return peaks


def design_of(meta: pd.DataFrame, design: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Design matrix, contrast vector and the columns an LRT drops, for one benchmark design."""
    from formulaic_contrasts import FormulaicContrasts

    frame = pd.DataFrame(FormulaicContrasts(meta, "~subject + timepoint").design_matrix)
    frame = frame.astype(float)
    tested = "timepoint[T.T1]"
    if design in ("interaction", "lrt_interaction"):
        tested = "timepoint[T.T1]:arm[T.B]"
        frame[tested] = ((meta["timepoint"] == "T1") & (meta["arm"] == "B")).astype(float)
    contrast = (frame.columns == tested).astype(float)
    return frame, contrast, [tested] if design.startswith("lrt") else []


def run_one(
    n_samples: int, n_genes: int, backend: str, n_cpus: int, seed: int, design: str = "paired"
) -> dict:
    """Simulate, fit and test in this process; return timings and peak memory."""
    from joblib.externals.loky import get_reusable_executor
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.default_inference import DefaultInference
    from pydeseq2.ds import DeseqStats

    from ifnsig.de.blocked import BlockedInference
    from ifnsig.de.deseq2_compat import DESeq2Inference, deseq_dataset_class
    from ifnsig.de.lrt import likelihood_ratio_test

    def cpu_seconds() -> float:
        return sum(
            r.ru_utime + r.ru_stime
            for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        )

    counts, meta = simulate_paired(n_samples, n_genes, seed)
    meta["arm"] = np.where(meta["subject"].str[1:].astype(int) % 2 == 0, "A", "B")
    matrix, contrast, dropped = design_of(meta, design)
    if backend == "default" and design != "paired":
        raise ValueError("pydeseq2 as released is benchmarked on the paired design only")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = cpu_seconds()
    inference = {
        "blocked": lambda: BlockedInference(n_cpus=n_cpus, min_levels=2),
        "dense": lambda: DESeq2Inference(n_cpus=n_cpus),
        "default": lambda: DefaultInference(n_cpus=n_cpus),
    }[backend]()
    dataset = DeseqDataSet if backend == "default" else deseq_dataset_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        dds = dataset(
            counts=counts,
            metadata=meta,
            design="~subject + timepoint" if backend == "default" else matrix,
            refit_cooks=True,
            inference=inference,
            n_cpus=n_cpus,
            quiet=True,
        )
        dds.deseq2()
        t1 = time.perf_counter()
        ds = DeseqStats(dds, contrast=contrast, inference=inference, quiet=True)
        ds.summary()
        t2 = time.perf_counter()
        calls = int((ds.results_df["padj"] < 0.05).sum())
        if dropped:
            lrt = likelihood_ratio_test(dds, matrix.drop(columns=dropped), inference)
            calls = int((lrt["pvalue"] < 0.05 / n_genes).sum())  # Bonferroni, a sanity count
        t3 = time.perf_counter()
    worker_peaks = _worker_peaks_mb()
    get_reusable_executor().shutdown(wait=True)  # reap the workers: RUSAGE_CHILDREN
    return {
        "fit_s": round(t1 - t0, 2),
        "wald_s": round(t2 - t1, 2),
        "lrt_s": round(t3 - t2, 2),
        "wall_s": round(t3 - t0, 2),
        "cpu_s": round(cpu_seconds() - cpu0, 2),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_sim_mb": round(rss_before / 1024, 1),
        "peak_rss_worker_mb": round(max(worker_peaks), 1) if worker_peaks else None,
        "worker_maxrss_incl_fork_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1
        ),
        "n_padj_lt_0.05": calls,
        "paths": ",".join(f"{k}={v}" for k, v in getattr(inference, "paths", {}).items()),
    }


def run_child(args: argparse.Namespace, n: int, backend: str, design: str = "paired") -> dict:
    """Run :func:`run_one` in a fresh Python process (isolated timing and ru_maxrss)."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps({"n_samples": n, "n_genes": args.genes, "backend": backend,
                    "n_cpus": args.n_cpus, "seed": args.seed, "design": design}),
    ]  # fmt: skip
    row = {"n_samples": n, "n_subjects": n // 2, "n_genes": args.genes, "backend": backend}
    row["design"] = design
    row["n_cpus"] = args.n_cpus
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": f"timeout>{args.timeout}s"}
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return {**row, "status": f"error rc={proc.returncode}"}
    return {**row, **json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok"}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--backends", nargs="+", choices=["blocked", "dense", "default"],
                        default=["blocked", "default"])  # fmt: skip
    parser.add_argument(
        "--skip-default-above",
        type=int,
        default=400,
        help="skip the default backend for cohorts larger than this (it takes over an hour "
        "at 1000 samples); 0 never skips",
    )
    parser.add_argument("--designs", nargs="+", choices=DESIGNS, default=["paired"])
    parser.add_argument("--n-cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_one(**json.loads(args.child))))
        return

    args.out.parent.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(args.out, sep="\t") if args.out.exists() else pd.DataFrame()
    if not table.empty and "design" not in table:
        table.insert(table.columns.get_loc("backend") + 1, "design", "paired")
    runs = [(n, b, d) for n in args.sizes for b in args.backends for d in args.designs]
    for n, backend, design in runs:
        if backend == "default" and (design != "paired" or 0 < args.skip_default_above < n):
            print(f"skip default backend at n={n}, design {design}", file=sys.stderr)
            continue
        row = run_child(args, n, backend, design)
        row["date"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(json.dumps(row), file=sys.stderr)
        new = pd.DataFrame([row])
        if not table.empty:
            same = (table[KEY].astype(str) == new[KEY].astype(str).iloc[0]).all(axis=1)
            table = table[~same]
        table = pd.concat([table, new], ignore_index=True)
        table = table.sort_values(KEY, kind="stable")
        table.to_csv(args.out, sep="\t", index=False)


if __name__ == "__main__":
    main()
