"""One stage of a finished run, run again in-process on that run's inputs, timed.

The stage gets exactly its rule's settings from the run's ``config/config.yaml`` and its
rule's inputs from the run folder; its outputs go to ``--out``, so they can be compared
with the run's own (``cmp`` for tables; the values of every ``.h5ad`` element for AnnData
files, whose bytes depend on the order HDF5 wrote them in). Prints the wall and CPU time
(the process and its worker processes), the peak resident memory of the process and the
1-minute load average at the end.

Examples
--------
python benchmarks/bench_stage.py /tmp/ifnsig-e2e/cohort_4000 normalize --threads 2 --out /tmp/n
python benchmarks/bench_stage.py /tmp/ifnsig-e2e/cohort_4000 annotate_cohort --out /tmp/n
python benchmarks/bench_stage.py /tmp/ifnsig-e2e/cohort_4000 export_matrices --out /tmp/n
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import time
from pathlib import Path

import yaml

from ifnsig import stages, stats
from ifnsig.settings import stage_settings
from ifnsig.validation import validate_config

#: Inputs (in the run folder) and output file names of the stages this script runs.
STAGES = {
    "filter_genes": (
        {"counts": "results/data/counts.h5ad"},
        {"filtered": "filtered_counts.h5ad"},
    ),
    "normalize": (
        {"filtered": "results/data/filtered_counts.h5ad"},
        {"normalized": "normalized.h5ad"},
    ),
    "annotate_cohort": (
        {
            "normalized": "results/data/normalized.h5ad",
            "scores": "results/scores/ifn_scores.tsv",
            "qc": "results/qc/qc.h5ad",
        },
        {"cohort": "cohort.h5ad"},
    ),
    "export_matrices": (
        {"normalized": "results/data/normalized.h5ad"},
        {"normalized": "normalized_counts.tsv", "vst": "vst.tsv"},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run's folder")
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    run, out = args.run.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    inputs, outputs = STAGES[args.stage]
    inputs = {key: str(run / path) for key, path in inputs.items()}
    outputs = {key: str(out / name) for key, name in outputs.items()}
    os.chdir(run)
    config = validate_config(copy.deepcopy(yaml.safe_load(Path("config/config.yaml").read_text())))
    settings = stage_settings(config, args.stage)
    stats.new_job()
    cpu, wall = time.process_time(), time.time()
    getattr(stages, args.stage)(inputs, outputs, settings, threads=args.threads)
    wall, cpu = time.time() - wall, time.process_time() - cpu
    # joblib's worker processes are kept for reuse: stop them so that their CPU time counts.
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = children.ru_utime + children.ru_stime
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"{args.stage}: {wall:.1f} s wall, {cpu:.1f} s CPU (+ {workers:.1f} s in worker "
        f"processes), peak {peak:.2f} GB, load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
