"""Benchmark apeGLM shrinkage: pydeseq2's ``lfc_shrink`` against ``ifnsig.de.shrink``.

On the shipped demo (the configured contrasts, as the DE rule fits them) or on a simulated
paired cohort (``--sizes``: n samples = n/2 subjects x 2 timepoints, ``~ subject +
timepoint``, the simulator of ``bench_blocked_de.py``), each contrast's fit
(``deseq2()`` + Wald test) is timed, then its shrinkage by ifnsig and, unless
``--no-pydeseq2``, by pydeseq2 (per gene L-BFGS-B). Printed: wall and CPU seconds of each
step (CPU of this process and its finished workers), the DE rule's time with either
shrinkage (fit + tests + shrinkage) and their ratio, the differences between the shrunk
fold changes, the load average before and after, and the date.

Examples
--------
python benchmarks/bench_shrink.py --demo --cores 2
python benchmarks/bench_shrink.py --sizes 1000 --genes 2000 --cores 2 --no-pydeseq2
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def cpu_seconds() -> float:
    """User + system CPU of this process, its waited-for children and its live ones.

    joblib's loky workers stay alive between calls: their CPU is read from
    ``/proc/<pid>/stat`` (Linux), so a step's CPU includes what its workers spent.
    """
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # parent pid; fields 14 and 15 of stat: utime, stime
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Timer:
    """Wall and CPU seconds of a ``with`` block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu


def demo_designs():
    """(label, AnnData, fit, samples) of each configured demo contrast, as the DE rule plans."""
    from ifnsig import de, demo, response

    adata, design, cfg = demo.filtered_cohort()
    samples = de.cohort_samples(adata.obs)
    calls = None
    if de.uses_responses(cfg):
        calls = response.clinical_responses(design.clinical, cfg)[1]
    for fit in de.plan_fits(samples, cfg, design.clinical, calls):
        yield f"demo {fit.formula}", adata, fit, samples


def simulated_designs(n_samples: int, n_genes: int, seed: int):
    """(label, AnnData, fit, samples) of a simulated paired cohort, ``~ subject + timepoint``."""
    import anndata as ad

    sys.path.insert(0, str(HERE))
    from bench_blocked_de import simulate_paired

    from ifnsig import de, demo

    counts, meta = simulate_paired(n_samples, n_genes, seed)
    obs = meta.assign(
        sample=meta.index,
        group="patient",
        timepoint=meta["timepoint"].map({"T0": "baseline", "T1": "month3"}),
    )
    adata = ad.AnnData(counts.to_numpy(dtype=float), obs=obs)
    adata.layers["counts"] = counts.to_numpy()
    adata.var_names = list(counts.columns)
    samples = de.cohort_samples(adata.obs)
    cfg = demo.config()
    cfg = {**cfg, "timepoints": ["baseline", "month3"], "de": {**cfg["de"], "contrasts": []}}
    (fit,) = de.plan_fits(samples, cfg)
    yield f"simulated {n_samples} x {n_genes}", adata, fit, samples


def bench(label, adata, fit, samples, cores: int, pydeseq2: bool) -> None:
    from pydeseq2.ds import DeseqStats

    from ifnsig import de
    from ifnsig.de.shrink import shrunk_lfc

    with Timer() as t_fit:
        dds, backend = de.fit_dataset(adata, fit, samples, n_cpus=cores)
    columns = list(de.design_matrix(fit).columns)
    print(f"\n{label}: {dds.n_obs} samples x {dds.n_vars} genes, {len(columns)} coefficients")
    print(f"  fit (deseq2): wall {t_fit.wall:.2f} s, cpu {t_fit.cpu:.2f} s")
    rule = {"ifnsig": t_fit.wall, "pydeseq2": t_fit.wall}
    for contrast in fit.contrasts:
        vector = next(iter(de.contrast_vectors(fit, contrast, columns).values()))
        if np.count_nonzero(vector) != 1:
            continue
        coefficient = columns[int(np.argmax(np.abs(vector)))]
        with Timer() as t_wald:
            stats = DeseqStats(dds, contrast=vector, inference=backend, quiet=True)
            stats.summary()
        with Timer() as t_ours:
            ours = shrunk_lfc(stats, coefficient, n_cpus=cores)
        rule = {k: v + t_wald.wall for k, v in rule.items()}
        rule["ifnsig"] += t_ours.wall
        print(f"  {contrast.name}: Wald wall {t_wald.wall:.2f} s")
        print(f"    ifnsig shrinkage: wall {t_ours.wall:.2f} s, cpu {t_ours.cpu:.2f} s")
        if not pydeseq2:
            continue
        with Timer() as t_theirs, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats.lfc_shrink(coeff=coefficient)
        rule["pydeseq2"] += t_theirs.wall
        theirs = stats.results_df["log2FoldChange"].to_numpy()
        diff = np.abs(ours - theirs)
        print(f"    pydeseq2 lfc_shrink: wall {t_theirs.wall:.2f} s, cpu {t_theirs.cpu:.2f} s")
        median, q99, top = np.nanmedian(diff), np.nanquantile(diff, 0.99), np.nanmax(diff)
        print(f"    |ifnsig - pydeseq2| (log2): median {median:.1e}, 99% {q99:.1e}, max {top:.1e}")
    print(f"  DE rule (fit + tests + shrinkage), ifnsig shrinkage: {rule['ifnsig']:.2f} s")
    if pydeseq2:
        print(f"  DE rule, pydeseq2 shrinkage: {rule['pydeseq2']:.2f} s")
        print(f"  ratio pydeseq2 / ifnsig: {rule['pydeseq2'] / rule['ifnsig']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", action="store_true", help="the shipped demo's contrasts")
    parser.add_argument("--sizes", type=int, nargs="*", default=[], help="simulated samples")
    parser.add_argument("--genes", type=int, default=2000, help="simulated genes")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-pydeseq2", action="store_true", help="skip pydeseq2's shrinkage")
    args = parser.parse_args(argv)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()}")
    designs = []
    if args.demo:
        designs.append(demo_designs())
    designs += [simulated_designs(n, args.genes, args.seed) for n in args.sizes]
    for group in designs:
        for design in group:
            bench(*design, cores=args.cores, pydeseq2=not args.no_pydeseq2)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
