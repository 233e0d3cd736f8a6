"""CPU time of the clinical stage's bootstrap intervals on a finished run's tables.

Runs ``linkage.paired_tests`` and ``linkage.change_correlations`` (2,000 resamples, as
configured) on ``results/clinical/score_changes.tsv`` and ``changes.tsv`` of a run folder,
and writes their tables beside each other for comparing two versions of the code.

Example
-------
python benchmarks/bench_linkage_intervals.py /tmp/ifnsig-scale-runs/cohort_1000 --out /tmp/new
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from ifnsig import linkage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder")
    parser.add_argument("--out", default="intervals", help="prefix of the tables written")
    parser.add_argument("--resamples", type=int, default=2000)
    args = parser.parse_args()
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
