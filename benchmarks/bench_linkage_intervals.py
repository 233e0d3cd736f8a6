"""CPU time of the clinical stage's bootstrap intervals on a finished run's tables.

Runs ``linkage.paired_tests`` and ``linkage.change_correlations`` (2,000 resamples, as
configured) on ``results/clinical/score_changes.tsv`` and ``changes.tsv`` of a run folder,
and writes their tables beside each other for comparing two versions of the code.

``--pairs N`` instead times one Spearman interval of N simulated pairs and prints the
process's peak memory (2,800 pairs: the patients of a 10,000-sample cohort).

Examples
--------
python benchmarks/bench_linkage_intervals.py /tmp/ifnsig-scale-runs/cohort_1000 --out /tmp/new
python benchmarks/bench_linkage_intervals.py --pairs 2800
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ifnsig import linkage, stats


def one_interval(n: int, resamples: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=n)
    y = np.round(x + rng.normal(size=n), 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    start = time.process_time()
    low, high = stats.bootstrap_ci(
        (x, y), stats.spearman_rho, resamples, 0.95, np.random.default_rng(1), paired=True
    )
    cpu = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"{n} pairs: {cpu:.1f} s CPU, peak {peak:.2f} GB ({before:.2f} GB before), "
        f"interval {low:.3f} to {high:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, nargs="?", help="a finished run folder")
    parser.add_argument("--pairs", type=int, help="one interval of this many simulated pairs")
    parser.add_argument("--out", default="intervals", help="prefix of the tables written")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
    if args.pairs:
        one_interval(args.pairs, args.resamples)
        return
    clinical = args.run / "results" / "clinical"
    changes = pd.read_csv(clinical / "score_changes.tsv", sep="\t", dtype={"subject": str})
    measures = pd.read_csv(clinical / "changes.tsv", sep="\t", dtype={"subject": str})
    timepoints = list(dict.fromkeys(changes["timepoint"]))
    start = time.process_time()
    paired = linkage.paired_tests(changes, timepoints, args.resamples, 0.95, 1)
    middle = time.process_time()
    correlations = linkage.change_correlations(
        changes, measures, timepoints, args.resamples, 0.95, 1
    )
    end = time.process_time()
    print(f"paired tests {middle - start:.1f} s CPU, correlations {end - middle:.1f} s CPU")
    paired.to_csv(f"{args.out}_paired.tsv", sep="\t")
    correlations.to_csv(f"{args.out}_correlations.tsv", sep="\t")


if __name__ == "__main__":
    main()
