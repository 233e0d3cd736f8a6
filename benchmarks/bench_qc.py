"""Time the QC stage on a large simulated cohort (default 1,000 samples x 20,000 genes).

The package's simulator writes a demo-shaped cohort (patients at three timepoints, a tenth
healthy controls) with a sex flip, a label swap and a globin-dominated library planted. Its
``counts.h5ad`` and ``cohort.h5ad`` are built as the workflow builds them (not timed against
the budget, but reported), then the QC stage (:func:`ifnsig.stages.quality_control`, every
table, plot and MultiQC file) runs in a child process with ``--threads`` BLAS threads, as
Snakemake runs the script. Reported (``_measure.measure_child``): the child's wall time
(interpreter start and imports included), the stage's own time, its peak resident memory,
and whether exactly the planted samples were flagged. One row per run is appended to
``benchmarks/out/qc_stage.tsv``.

Example
-------
python benchmarks/bench_qc.py --patients 300 --controls 100 --genes 20000 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from _measure import append_rows, measure_child, report_step_time

OUT = Path(__file__).resolve().parent / "out" / "qc_stage.tsv"
NAMES = {
    "metrics": "qc_metrics.tsv",
    "flags": "qc_flags.tsv",
    "composition": "composition.tsv",
    "composition_changes": "composition_changes.tsv",
    "composition_markers": "composition_markers.tsv",
    "h5ad": "qc.h5ad",
    "multiqc_metrics": "qc_metrics_mqc.tsv",
    "multiqc_flags": "qc_flags_mqc.yaml",
    "multiqc_identity": "qc_identity_mqc.tsv",
    "multiqc_composition": "qc_composition_mqc.tsv",
    "pca": "pca.png",
    "correlation": "sample_correlation.png",
    "metric_bars": "metrics.png",
    "sex": "sex_check.png",
    "composition_plot": "composition_over_time.png",
}


def build_inputs(folder: Path, patients: int, controls: int, genes: int, threads: int, seed: int):
    """Simulate the cohort and write counts.h5ad, cohort.h5ad and the planted truth."""
    from ifnsig import data
    from ifnsig.simulate import CohortSpec, simulate_cohort

    timings = {}
    start = time.perf_counter()
    spec = CohortSpec(
        n_patients=patients,
        n_controls=controls,
        n_genes=genes,
        plant_sex_flip=True,
        plant_swap=True,
        plant_globin=True,
        seed=seed,
    )
    cohort = simulate_cohort(spec)
    timings["simulate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    samples = cohort.samples.set_index("sample", drop=False).rename_axis(None)
    raw = data.build_anndata(cohort.counts, samples, timepoints=list(spec.timepoints))
    data.write_h5ad(raw, folder / "counts.h5ad")
    normalized = data.filter_genes(raw, 10, 3)
    data.normalize(normalized, n_cpus=threads)
    data.write_h5ad(normalized, folder / "cohort.h5ad")
    timings["build_and_normalize_s"] = time.perf_counter() - start
    cohort.truth_samples.to_csv(folder / "truth_samples.tsv", sep="\t", index=False)
    return timings, raw.n_obs, raw.n_vars, normalized.n_vars


def run_stage(folder: Path, threads: int) -> None:
    """Child process: the QC stage on the files in ``folder``; prints its own time as JSON."""
    import yaml

    from ifnsig import stages
    from ifnsig.settings import marker_file, stage_settings
    from ifnsig.validation import validate_config

    repo = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((repo / "config" / "config.yaml").read_text())
    config.update(counts="unused", samples="unused", clinical=None)
    validate_config(config)
    outputs = {key: str(folder / "out" / name) for key, name in NAMES.items()}
    (folder / "out").mkdir(exist_ok=True)
    start = time.perf_counter()
    inputs = {
        "counts": str(folder / "counts.h5ad"),
        "normalized": str(folder / "cohort.h5ad"),
        "markers": marker_file(config),
    }
    settings = stage_settings(config, "quality_control")
    stages.quality_control(inputs, outputs, settings, threads=threads)
    report_step_time(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--controls", type=int, default=100)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", help="keep inputs and outputs here (default: temporary)")
    parser.add_argument(
        "--reuse", action="store_true", help="time the stage on the inputs already in --workdir"
    )
    parser.add_argument("--run-stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_stage:
        run_stage(Path(args.run_stage), args.threads)
        return

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.workdir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if args.reuse and (folder / "cohort.h5ad").exists():
            import anndata as ad

            timings = {}
            n_samples, n_genes = ad.read_h5ad(folder / "counts.h5ad", backed="r").shape
            n_kept = ad.read_h5ad(folder / "cohort.h5ad", backed="r").n_vars
        else:
            timings, n_samples, n_genes, n_kept = build_inputs(
                folder, args.patients, args.controls, args.genes, args.threads, args.seed
            )
        print(f"{n_samples} samples x {n_genes} genes ({n_kept} after filtering); setup {timings}")
        # BLAS and OpenMP threads are bounded inside the stage (threadpoolctl); the variables
        # bound the libraries that start threads at import.
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        command = [sys.executable, __file__, "--run-stage", str(folder)]
        measured = measure_child([*command, "--threads", str(args.threads)], env=env)
        truth = pd.read_csv(folder / "truth_samples.tsv", sep="\t", keep_default_na=False)
        flags = pd.read_csv(folder / "out" / "qc_flags.tsv", sep="\t", keep_default_na=False)
        planted = set(truth.loc[truth["planted"] != "", "sample"])
        row = {
            "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "n_samples": n_samples,
            "n_genes": n_genes,
            "n_genes_filtered": n_kept,
            "threads": args.threads,
            "cpus_on_machine": os.cpu_count(),
            **measured,
            "n_flags": len(flags),
            "planted_flagged": planted <= set(flags["sample"]),
            "clean_flagged": len(set(flags["sample"]) - planted),
            **{key: round(value, 1) for key, value in timings.items()},
        }
    print(pd.Series(row).to_string())
    append_rows(OUT, [row])


if __name__ == "__main__":
    main()
