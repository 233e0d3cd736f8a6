"""Benchmarks of the whole workflow on simulated cohorts, IFN scoring, and DE against R DESeq2.

For each size N, the package's simulator (``ifnsig.simulate``) writes a cohort of N samples x
``--genes`` genes: patients at three timepoints and about 16% healthy controls, like the
demo. The workflow then runs end to end with ``--cores`` in a scratch folder, with the
repository's configuration (only the input paths changed), and the ``benchmark:`` files that
Snakemake writes for every heavy rule (``benchmarks/out/*.tsv`` in the run folder: wall time,
peak resident memory, CPU time) are collected into one tidy table.

Also measured, when asked:

* ``--demo``: the shipped demo cohort end to end.
* ``--score-samples M``: IFN scoring (signature matching and every configured signature x
  method) of M samples x ``--genes`` genes held in memory.
* ``--r``: the DE fit of each size with pydeseq2 (as the workflow calls it, without the
  apeGLM shrinkage, which Debian's R has no package for) and with R DESeq2 on the same
  filtered counts, design and number of cores. Debian's ``r-bioc-deseq2`` is installed with
  apt-get when ``Rscript`` is missing.
* ``--profile-de``: where the pydeseq2 fit spends its time (cProfile, top functions).

Results are merged into ``benchmarks/results.tsv`` (one row per measurement; rerunning a
size replaces its rows) and the growth of each rule's time with N into
``benchmarks/scaling.tsv``.

Examples
--------
python benchmarks/run_benchmarks.py --sizes 50 200 1000
python benchmarks/run_benchmarks.py --sizes 50 200 --demo --score-samples 10000 --r
"""

from __future__ import annotations

import argparse
import cProfile
import inspect
import io
import json
import os
import platform
import pstats
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results.tsv"
SCALING = HERE / "scaling.tsv"
COLUMNS = [
    "benchmark",
    "n_samples",
    "n_genes",
    "step",
    "wall_s",
    "cpu_s",
    "max_rss_mb",
    "cores",
    "note",
]
KEY = ["benchmark", "n_samples", "n_genes", "step"]


def cohort_spec(n_samples: int, n_genes: int, seed: int):
    """A simulator spec with exactly ``n_samples`` samples: 3 per patient, ~16% controls."""
    from ifnsig.simulate import CohortSpec

    n_controls = max(4, round(0.16 * n_samples))
    n_patients = (n_samples - n_controls) // 3
    n_controls = n_samples - 3 * n_patients
    return CohortSpec(
        n_patients=n_patients,
        n_controls=n_controls,
        n_genes=n_genes,
        n_treatment_genes=max(50, n_genes // 50),
        seed=seed,
    )


def write_config(folder: Path, **overrides) -> None:
    """The repository's configuration with the inputs pointed at ``folder/inputs``."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(overrides)
    (folder / "config").mkdir(parents=True, exist_ok=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


class RunStopped(RuntimeError):
    """The run went above its memory limit and was stopped."""


def _tree_rss_mb(pgid: int) -> float:
    """Resident memory of every process in process group ``pgid`` (the run and its jobs)."""
    total = 0
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: process group
                total += int((stat.parent / "statm").read_text().split()[1]) * page_kb
        except (OSError, IndexError, ValueError):
            continue
    return total / 1024


def run_command(
    command: list[str], log_path: Path, max_rss_gb: float | None = None, interval: float = 5.0
) -> dict:
    """Run ``command`` in its own process group; its wall and CPU time (every process it
    waited for, jobs included, from ``os.wait4``), the largest resident memory of the whole
    group seen every ``interval`` s, and the 1-minute load average at the start and on
    average. Above ``max_rss_gb`` the group is stopped and :class:`RunStopped` raised."""
    start, load_start, loads, peak = time.perf_counter(), os.getloadavg()[0], [], 0.0
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            loads.append(os.getloadavg()[0])
            peak = max(peak, _tree_rss_mb(child.pid))
            if max_rss_gb and peak > max_rss_gb * 1024:
                os.killpg(child.pid, 15)
                os.wait4(child.pid, 0)
                raise RunStopped(f"stopped at {peak / 1024:.1f} GB (limit {max_rss_gb} GB)")
            time.sleep(interval)
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "wall_s": time.perf_counter() - start,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "group_rss_mb": peak,
        "load": f"load {load_start:.1f} at start, {np.mean(loads or [load_start]):.1f} mean",
    }


def snakemake_command(folder: Path, cores: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(folder),
        "--cores",
        str(cores),
        *extra,
    ]


def run_workflow(folder: Path, cores: int, max_rss_gb: float | None = None) -> dict:
    """Run the whole workflow in ``folder`` (see :func:`run_command` for what is returned)."""
    done = run_command(snakemake_command(folder, cores), folder / "snakemake.log", max_rss_gb)
    if done["returncode"] != 0:
        sys.exit(f"the workflow failed in {folder}; see {folder / 'snakemake.log'}")
    return done


def rule_rows(folder: Path, benchmark: str, n_samples: int, n_genes: int, cores: int) -> list:
    """One row per ``benchmark:`` file of the run (rules with wildcards: one per file)."""
    rows = []
    for path in sorted((folder / "benchmarks" / "out").glob("*.tsv")):
        record = pd.read_csv(path, sep="\t").iloc[-1]
        rows.append(
            {
                "benchmark": benchmark,
                "n_samples": n_samples,
                "n_genes": n_genes,
                "step": path.stem,
                "wall_s": float(record["s"]),
                "cpu_s": float(record["cpu_time"]),
                "max_rss_mb": float(record["max_rss"]),
                "cores": cores,
                "note": "rule",
            }
        )
    return rows


# Rules run once per contrast: their benchmark files end with the contrast's name.
CONTRAST_RULES = ["plot_de", "enrichment"]


def rule_of(step: str) -> str:
    """The rule of a ``benchmark:`` file's name: shard number and contrast dropped."""
    step = re.sub(r"\.\d+$", "", step)
    return next((rule for rule in CONTRAST_RULES if step.startswith(f"{rule}_")), step)


def critical_path_row(folder: Path, rows: list[dict], row) -> dict:
    """The ``critical_path`` row of a finished run from its job rows."""
    walls, cpus = {}, {}
    for r in rows:
        rule = rule_of(r["step"])
        walls[rule] = max(walls.get(rule, 0.0), r["wall_s"])
        cpus[rule] = max(cpus.get(rule, 0.0), r["cpu_s"])
    dot = rule_graph(folder)
    return row(
        "critical_path",
        # snakemake --report runs after every job.
        critical_path(dot, walls) + walls.get("report", 0.0),
        critical_path(dot, cpus) + cpus.get("report", 0.0),
        np.nan,
        "longest chain of dependent rules (a rule: its longest job), wall and CPU time "
        "of its jobs; the report after them",
    )


def rule_graph(folder: Path) -> str:
    """The run's rule graph in dot (``snakemake --rulegraph``)."""
    return subprocess.run(
        snakemake_command(folder, 1, "--rulegraph", "--forceall", "--quiet"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def critical_path(dot: str, times: dict[str, float]) -> float:
    """The longest chain of dependent rules of the graph ``dot``, each costing
    ``times[rule]`` (0 if absent).

    Jobs of one rule (gene shards, contrasts) depend on none of each other, so with enough
    cores a rule costs its longest job: ``times`` holds that.
    """
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.M))
    parents: dict[str, list[str]] = {name: [] for name in names.values()}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M):
        parents[names[b]].append(names[a])
    finish: dict[str, float] = {}

    def reach(rule: str) -> float:
        if rule not in finish:
            finish[rule] = times.get(rule, 0.0) + max(
                (reach(p) for p in parents[rule]), default=0.0
            )
        return finish[rule]

    return max(reach(rule) for rule in parents)


def write_cohort(cohort, folder: Path, fmt: str) -> str:
    """The cohort's inputs in ``folder``; returns the counts path for the config.

    ``h5ad``: the counts as a samples x genes AnnData (int32), written in seconds at any size;
    ``tsv``: the simulator's gzipped text table (minutes at thousands of samples).
    """
    if fmt == "tsv":
        cohort.write(folder)
        return "inputs/counts.tsv.gz"
    import anndata as ad

    counts = cohort.counts
    cohort.counts = counts.iloc[:0]  # the sheets and truth tables only
    cohort.write(folder)
    (folder / "counts.tsv.gz").unlink()
    matrix = np.ascontiguousarray(counts.to_numpy(dtype=np.int32).T)
    adata = ad.AnnData(
        X=matrix,
        obs=pd.DataFrame(index=counts.columns.astype(str)),
        var=pd.DataFrame(index=counts.index.astype(str)),
    )
    adata.write_h5ad(folder / "counts.h5ad")
    return "inputs/counts.h5ad"


def bench_workflow(n_samples: int, args: argparse.Namespace) -> list[dict]:
    from ifnsig.simulate import simulate_cohort

    folder = args.workdir / f"cohort_{n_samples}"
    shutil.rmtree(folder, ignore_errors=True)
    spec = cohort_spec(n_samples, args.genes, args.seed)
    start = time.perf_counter()
    counts = write_cohort(simulate_cohort(spec), folder / "inputs", args.counts_format)
    print(f"{n_samples} samples: simulated in {time.perf_counter() - start:.0f} s", flush=True)
    write_config(
        folder,
        counts=counts,
        samples="inputs/samples.tsv",
        clinical="inputs/clinical.tsv",
        timepoints=list(spec.timepoints),
    )

    def row(step: str, wall: float, cpu: float, rss: float, note: str) -> dict:
        return {
            "benchmark": "workflow",
            "n_samples": n_samples,
            "n_genes": args.genes,
            "step": step,
            "wall_s": wall,
            "cpu_s": cpu,
            "max_rss_mb": rss,
            "cores": args.cores,
            "note": note,
        }

    try:
        run = run_workflow(folder, args.cores, args.max_rss_gb)
    except RunStopped as stop:
        print(f"{n_samples} samples: {stop}", flush=True)
        rows = rule_rows(folder, "workflow", n_samples, args.genes, args.cores)
        return rows + [row("total", np.nan, np.nan, np.nan, f"did not finish: {stop}")]
    niceness = os.nice(0)
    print(f"{n_samples} samples: workflow in {run['wall_s']:.0f} s, {run['load']}", flush=True)
    rows = rule_rows(folder, "workflow", n_samples, args.genes, args.cores)
    report = run_command(
        snakemake_command(folder, args.cores, "--report", "report.zip"),
        folder / "report.log",
    )
    if report["returncode"] != 0:
        sys.exit(f"the report failed in {folder}; see {folder / 'report.log'}")
    rows.append(
        row(
            "report",
            report["wall_s"],
            report["cpu_s"],
            # ru_maxrss of the snakemake --report process (it has no jobs).
            report["group_rss_mb"],
            f"snakemake --report; {report['load']}",
        )
    )
    rows.append(critical_path_row(folder, rows, row))
    rows.append(
        row(
            "total",
            run["wall_s"] + report["wall_s"],
            run["cpu_s"] + report["cpu_s"],
            max(r["max_rss_mb"] for r in rows if r["step"] != "report"),
            f"snakemake end to end, then --report; CPU of every process; memory = largest "
            f"job; whole run at most {run['group_rss_mb'] / 1024:.1f} GB at once; "
            f"{run['load']}; nice {niceness}; counts {args.counts_format}",
        )
    )
    return rows


def recomputed_critical_paths(args: argparse.Namespace) -> list[dict]:
    """The ``critical_path`` rows of finished runs (``--workdir``) again, from their rows in
    results.tsv, without running anything."""
    table = pd.read_csv(RESULTS, sep="\t")
    rows = []
    for n in args.sizes:
        runs = table[
            (table["benchmark"] == "workflow")
            & (table["n_samples"] == n)
            & (table["n_genes"] == args.genes)
            & ~table["step"].isin(WHOLE_RUN)
        ]
        old = table[
            (table["benchmark"] == "workflow")
            & (table["n_samples"] == n)
            & (table["n_genes"] == args.genes)
            & (table["step"] == "critical_path")
        ]

        def row(step, wall, cpu, rss, note, n=n, old=old):
            return {
                "benchmark": "workflow",
                "n_samples": n,
                "n_genes": args.genes,
                "step": step,
                "wall_s": wall,
                "cpu_s": cpu,
                "max_rss_mb": rss,
                "cores": int(old["cores"].iat[0]) if len(old) else args.cores,
                "note": note,
            }

        rows.append(critical_path_row(args.workdir / f"cohort_{n}", runs.to_dict("records"), row))
    return rows


def bench_demo(args: argparse.Namespace) -> list[dict]:
    """The shipped demo cohort end to end, exactly as configured."""
    folder = args.workdir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copytree(REPO / "config", folder / "config")
    (folder / "resources").symlink_to(REPO / "resources")
    run = run_workflow(folder, args.cores)
    wall = run["wall_s"]
    print(f"demo: workflow in {wall:.0f} s, {run['load']}", flush=True)
    samples = pd.read_csv(folder / "config" / "samples.tsv", sep="\t")
    n_genes = int(pd.read_csv(REPO / "resources" / "demo" / "counts.tsv.gz", sep="\t").shape[0])
    rows = rule_rows(folder, "demo", len(samples), n_genes, args.cores)
    rows.append(
        {
            "benchmark": "demo",
            "n_samples": len(samples),
            "n_genes": n_genes,
            "step": "total",
            "wall_s": wall,
            "cpu_s": run["cpu_s"],
            "max_rss_mb": max((r["max_rss_mb"] for r in rows), default=np.nan),
            "cores": args.cores,
            "note": f"snakemake end to end; memory = largest rule; {run['load']}",
        }
    )
    return rows


def bench_scoring(n_samples: int, args: argparse.Namespace) -> list[dict]:
    """IFN scores of ``n_samples`` samples in memory: every configured signature and method."""
    import anndata as ad

    from ifnsig import genesets, scores
    from ifnsig.settings import aliases_file, score_gene_set_files
    from ifnsig.simulate import gene_names

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    from ifnsig.validation import validate_config

    validate_config(config)
    rng = np.random.default_rng(args.seed)
    genes, _ = gene_names(args.genes)
    n_controls = n_samples // 6
    obs = pd.DataFrame(
        {
            "subject": [f"S{i}" for i in range(n_samples)],
            "group": ["control"] * n_controls + ["patient"] * (n_samples - n_controls),
            "timepoint": "baseline",
            "size_factor": rng.lognormal(0, 0.2, n_samples),
        },
        index=[f"X{i}" for i in range(n_samples)],
    )
    normalized = rng.gamma(2.0, 50.0, (n_samples, len(genes))).astype(np.float32)
    adata = ad.AnnData(obs=obs, var=pd.DataFrame({"symbol": genes}, index=genes))
    adata.layers["normalized"] = normalized
    adata.layers["vst"] = np.log2(normalized + 1)
    methods = config["scores"]["methods"]
    rows = []

    def row(step: str, wall: float, cpu: float, note: str) -> dict:
        return {
            "benchmark": "ifn_scoring",
            "n_samples": n_samples,
            "n_genes": args.genes,
            "step": step,
            "wall_s": wall,
            "cpu_s": cpu,
            "max_rss_mb": peak_rss_mb(),
            "cores": 1,
            "note": note,
        }

    start, cpu = time.perf_counter(), time.process_time()
    matched, _ = genesets.matched_signatures(
        scores.scored_signatures(config["scores"]),
        adata.var["symbol"].astype(str),
        score_gene_set_files(config),
        aliases_file(),
    )
    reference = scores.reference_mask(adata.obs, "controls", "control", "baseline")
    sd = config["scores"]["positivity_sd"]
    table = scores.score_samples(adata, matched, methods, reference, sd)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"scoring {n_samples} samples: {wall:.2f} s ({len(table)} scores)", flush=True)
    note = f"{len(matched)} signatures x {len(methods)} methods ({', '.join(methods)})"
    rows.append(row("score_samples", wall, cpu, note + ", data in memory"))
    # Each method alone, to show which one the time goes to.
    for method in methods:
        start, cpu = time.perf_counter(), time.process_time()
        scores.score_samples(adata, matched, [method], reference, sd)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        rows.append(row(f"score_samples:{method}", wall, cpu, f"{len(matched)} signatures"))
    return rows


def export_for_r(folder: Path) -> list[dict]:
    """Counts and design of each planned fit, as the DE rule would fit them, for R."""
    import anndata as ad

    from ifnsig import de

    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    from ifnsig.validation import validate_config

    validate_config(config)
    adata = ad.read_h5ad(folder / "results" / "data" / "cohort.h5ad")
    samples = de.cohort_samples(adata.obs)
    fits = []
    for i, fit in enumerate(de.plan_fits(samples, config)):
        sub = adata[fit.samples]
        counts = pd.DataFrame(
            np.asarray(sub.layers["counts"]).T, index=sub.var_names, columns=sub.obs_names
        )
        design = fit.metadata
        counts_path = folder / f"r_counts_{i}.tsv"
        design_path = folder / f"r_design_{i}.tsv"
        counts.to_csv(counts_path, sep="\t")
        design.to_csv(design_path, sep="\t")
        fits.append(
            {
                "counts": str(counts_path),
                "design": str(design_path),
                "formula": fit.formula,
                "variable": fit.variable,
                "reference": fit.reference,
                "tests": ",".join(c.test for c in fit.contrasts),
            }
        )
    return fits


# DESeq2 as its vignette runs it: DESeq() then results() per contrast, BiocParallel workers.
R_SCRIPT = r"""
suppressPackageStartupMessages({library(DESeq2); library(BiocParallel)})
args <- commandArgs(trailingOnly = TRUE)
fits <- read.delim(args[1], colClasses = "character")
cores <- as.integer(args[2])
register(MulticoreParam(cores))
elapsed <- 0
for (i in seq_len(nrow(fits))) {
  fit <- fits[i, ]
  counts <- as.matrix(read.delim(fit$counts, row.names = 1, check.names = FALSE))
  design <- read.delim(fit$design, row.names = 1, colClasses = "character")
  for (column in colnames(design)) design[[column]] <- factor(design[[column]])
  design[[fit$variable]] <- relevel(design[[fit$variable]], ref = fit$reference)
  t <- system.time({
    dds <- DESeqDataSetFromMatrix(counts, design, as.formula(fit$formula))
    dds <- DESeq(dds, parallel = cores > 1, quiet = TRUE)
    for (test in strsplit(fit$tests, ",")[[1]]) {
      res <- results(dds, contrast = c(fit$variable, test, fit$reference), alpha = 0.1,
                     parallel = cores > 1)
    }
  })
  elapsed <- elapsed + t[["elapsed"]]
}
status <- readLines("/proc/self/status")
hwm <- as.numeric(gsub("[^0-9]", "", grep("^VmHWM", status, value = TRUE)))
cat(sprintf("FIT_SECONDS %.3f\nPEAK_KB %.0f\n", elapsed, hwm))
"""


def ensure_r() -> None:
    """Install Debian's DESeq2 (and R) when Rscript or the package is missing."""
    check = ["Rscript", "-e", "library(DESeq2); library(BiocParallel)"]
    if shutil.which("Rscript") and subprocess.run(check, capture_output=True).returncode == 0:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "r-bioc-deseq2"],
        check=True,
        env=env,
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM).

    Not ``ru_maxrss``: Linux keeps that across exec, so a child started by a big parent
    would report the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pydeseq2_child(folder: str, cores: int, profile: str) -> None:
    """Fit every planned design as the DE rule does (no shrinkage); print timings as JSON."""
    start_process = time.perf_counter()
    import anndata as ad

    # Imported before the clock starts, as R's library() calls are outside its timing.
    import pydeseq2.dds  # noqa: F401
    import pydeseq2.default_inference  # noqa: F401
    import pydeseq2.ds  # noqa: F401

    from ifnsig import de
    from ifnsig.validation import validate_config

    config = yaml.safe_load((Path(folder) / "config" / "config.yaml").read_text())
    validate_config(config)
    adata = ad.read_h5ad(Path(folder) / "results" / "data" / "cohort.h5ad")
    samples = de.cohort_samples(adata.obs)
    accepted = inspect.signature(de.run_fit).parameters
    options = {"alpha": config["de"]["alpha"], "n_cpus": cores, "shrink": False}
    for key in ("inference", "blocked_min_subjects"):
        if key in accepted and key in config["de"]:
            options[key] = config["de"][key]
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    for fit in de.plan_fits(samples, config):
        de.run_fit(adata, fit, samples, **options)
    if profiler:
        profiler.disable()
    fit_seconds = time.perf_counter() - start
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        Path(profile).write_text(text.getvalue())
    print(
        json.dumps(
            {
                "fit_s": fit_seconds,
                "process_s": time.perf_counter() - start_process,
                "max_rss_mb": peak_rss_mb(),
                "inference": options.get("inference", "default"),
            }
        )
    )


def bench_de_vs_r(n_samples: int, args: argparse.Namespace) -> list[dict]:
    folder = args.workdir / f"cohort_{n_samples}"
    if not (folder / "results" / "data" / "cohort.h5ad").exists():
        sys.exit(f"run the workflow on {n_samples} samples first (--sizes {n_samples})")
    child = subprocess.run(
        [sys.executable, __file__, "--pydeseq2-child", str(folder), str(args.cores), ""],
        capture_output=True,
        text=True,
        check=True,
    )
    py = json.loads(child.stdout.strip().splitlines()[-1])
    if args.profile_de:
        # On one core, so that the work runs in the profiled process, not in joblib workers.
        profile = HERE / "out" / f"profile_de_{n_samples}.txt"
        profile.parent.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, __file__, "--pydeseq2-child", str(folder), "1", str(profile)],
            capture_output=True,
            check=True,
        )
        print(f"profile of the pydeseq2 fit on 1 core: {profile}", flush=True)
    rows = [
        {
            "benchmark": "de_vs_r",
            "n_samples": n_samples,
            "n_genes": args.genes,
            "step": "pydeseq2_fit",
            "wall_s": py["fit_s"],
            "cpu_s": np.nan,
            "max_rss_mb": py["max_rss_mb"],
            "cores": args.cores,
            "note": f"inference={py['inference']}; fit + Wald tests, no shrinkage; main "
            "process memory (joblib workers apart)",
        }
    ]
    print(f"{n_samples} samples: pydeseq2 fit {py['fit_s']:.1f} s", flush=True)
    if not args.r:
        return rows
    ensure_r()
    fits = export_for_r(folder)
    spec_path = folder / "r_fits.tsv"
    pd.DataFrame(fits).to_csv(spec_path, sep="\t", index=False)
    script = folder / "deseq2.R"
    script.write_text(R_SCRIPT)
    start = time.perf_counter()
    done = subprocess.run(
        ["Rscript", str(script), str(spec_path), str(args.cores)],
        capture_output=True,
        text=True,
    )
    process = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"DESeq2 failed:\n{done.stderr[-3000:]}")
    fit_seconds = float(done.stdout.split("FIT_SECONDS")[-1].split()[0])
    peak_kb = float(done.stdout.split("PEAK_KB")[-1].split()[0])
    r_version = subprocess.run(
        ["Rscript", "-e", "cat(as.character(packageVersion('DESeq2')))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"{n_samples} samples: DESeq2 fit {fit_seconds:.1f} s", flush=True)
    rows.append(
        {
            "benchmark": "de_vs_r",
            "n_samples": n_samples,
            "n_genes": args.genes,
            "step": "DESeq2_fit",
            "wall_s": fit_seconds,
            "cpu_s": np.nan,
            "max_rss_mb": peak_kb / 1024,
            "cores": args.cores,
            "note": f"DESeq2 {r_version}, BiocParallel; Rscript process {process:.1f} s",
        }
    )
    rows.append(
        {
            "benchmark": "de_vs_r",
            "n_samples": n_samples,
            "n_genes": args.genes,
            "step": "ratio_pydeseq2_to_DESeq2",
            "wall_s": py["fit_s"] / fit_seconds,
            "cpu_s": np.nan,
            "max_rss_mb": np.nan,
            "cores": args.cores,
            "note": "fit times; <= 1 means pydeseq2 is as fast or faster",
        }
    )
    return rows


def merge_results(rows: list[dict]) -> pd.DataFrame:
    new = pd.DataFrame(rows, columns=COLUMNS)
    if RESULTS.exists() and new.empty:
        new = pd.read_csv(RESULTS, sep="\t")
    elif RESULTS.exists():
        old = pd.read_csv(RESULTS, sep="\t")
        old = old[~old.set_index(KEY).index.isin(new.set_index(KEY).index)]
        new = pd.concat([old, new], ignore_index=True)
    new = new.sort_values(KEY, kind="stable").reset_index(drop=True)
    new.to_csv(RESULTS, sep="\t", index=False, float_format="%.4g")
    return new


# Rules gathered into one stage: the DE's shard jobs and its gather.
STAGE_OF = {
    "de_size_factors": "differential_expression (all jobs)",
    "de_genewise_dispersions": "differential_expression (all jobs)",
    "de_dispersion_prior": "differential_expression (all jobs)",
    "de_shard_tests": "differential_expression (all jobs)",
    "differential_expression": "differential_expression (all jobs)",
}
WHOLE_RUN = ["critical_path", "total"]


def stages(table: pd.DataFrame, min_samples: int = 0) -> pd.DataFrame:
    """The workflow rows per rule and size: jobs of a rule (gene shards, contrasts) summed for
    time and maxed for memory, plus the whole DE (one job, or the shards and the gather) as
    one stage, comparable across sizes that shard differently."""
    runs = table[(table["benchmark"] == "workflow") & (table["n_samples"] >= min_samples)]
    runs = runs.dropna(subset=["cpu_s"]).copy()
    runs["rule"] = [s if s in WHOLE_RUN else rule_of(s) for s in runs["step"]]
    keys = ["rule", "n_samples", "n_genes"]
    agg = {"wall_s": "sum", "cpu_s": "sum", "max_rss_mb": "max", "step": "size"}
    per_rule = runs.groupby(keys, as_index=False).agg(agg).rename(columns={"step": "jobs"})
    sharded = runs[runs["rule"].isin(STAGE_OF)].copy()
    sharded["rule"] = sharded["rule"].map(STAGE_OF)
    whole = sharded.groupby(keys, as_index=False).agg(agg).rename(columns={"step": "jobs"})
    return pd.concat([per_rule, whole], ignore_index=True)


def scaling(table: pd.DataFrame, min_samples: int = 1000) -> pd.DataFrame:
    """Exponent b of cost ~ n_samples^b per stage (least squares on log-log) for CPU time,
    peak memory and wall time, over the sizes of at least ``min_samples`` samples.

    CPU time and memory are the figures to read: on a shared machine the wall time also
    measures the other jobs.
    """
    per_stage = stages(table, min_samples)
    rows = []
    for (step, n_genes), part in per_stage.groupby(["rule", "n_genes"]):
        if part["n_samples"].nunique() < 2:
            continue
        log_n = np.log(part["n_samples"].astype(float))

        def slope(column: str, part=part, log_n=log_n) -> float:
            values = part[column].astype(float)
            return np.polyfit(log_n, np.log(values), 1)[0] if (values > 0).all() else np.nan

        rows.append(
            {
                "step": step,
                "n_genes": n_genes,
                "sizes": ",".join(str(n) for n in sorted(part["n_samples"])),
                "cpu_exponent": slope("cpu_s"),
                "memory_exponent": slope("max_rss_mb"),
                "wall_exponent": slope("wall_s"),
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame.to_csv(SCALING, sep="\t", index=False, float_format="%.3g")
    return frame


def stage_markdown(table: pd.DataFrame, min_samples: int, n_genes: int) -> str:
    """Per stage and size (cohorts of ``n_genes`` genes): CPU time and peak memory, then the
    exponents (scaling.tsv)."""
    per_stage = stages(table[table["n_genes"] == n_genes], min_samples)
    per_stage["cell"] = [
        f"{c:.0f} s, {m / 1024:.2f} GB" if not np.isnan(m) else f"{c:.0f} s ({w:.0f} s wall)"
        for c, m, w in zip(
            per_stage["cpu_s"], per_stage["max_rss_mb"], per_stage["wall_s"], strict=True
        )
    ]
    per_stage["size"] = "n = " + per_stage["n_samples"].astype(str)
    wide = per_stage.pivot(index="rule", columns="size", values="cell")
    sizes = sorted(per_stage["n_samples"].unique())
    wide = wide.reindex(columns=[f"n = {n}" for n in sizes]).fillna("")
    growth = scaling(table, min_samples)
    growth = growth[growth["n_genes"] == n_genes].set_index("step")
    order = [s for s in wide.index if s not in WHOLE_RUN] + [
        s for s in WHOLE_RUN if s in wide.index
    ]
    header = "| stage | " + " | ".join(wide.columns) + " | CPU exp. | memory exp. |"
    lines = [header, "|---" * (len(wide.columns) + 3) + "|"]
    for step in order:
        exps = ["", ""]
        if step in growth.index:
            exps = [f"{growth.loc[step, c]:.2f}" for c in ("cpu_exponent", "memory_exponent")]
            exps = [e.replace("nan", "") for e in exps]
        lines.append(f"| {step} | " + " | ".join(wide.loc[step]) + " | " + " | ".join(exps) + " |")
    return "\n".join(lines)


def markdown(table: pd.DataFrame) -> str:
    """The workflow rows as a Markdown table: one row per step, one column per cohort size."""
    runs = table[table["benchmark"].isin(["workflow", "demo"])].copy()
    runs["cohort"] = np.where(
        runs["benchmark"] == "demo",
        "demo, n = " + runs["n_samples"].astype(str),
        "n = "
        + runs["n_samples"].astype(str)
        + np.where(runs["n_genes"] == 20000, "", ", " + runs["n_genes"].astype(str) + " genes"),
    )
    # CPU time is left out: Snakemake samples it from the job's processes and misses
    # short-lived workers (joblib, multiprocessing), so it undercounts parallel rules.
    runs["cell"] = [
        ("did not finish" if np.isnan(w) else f"{w:.0f} s") + f", {m / 1024:.1f} GB"
        for w, m in zip(runs["wall_s"], runs["max_rss_mb"], strict=True)
    ]
    order = runs.drop_duplicates("cohort").sort_values(
        ["benchmark", "n_samples"], ascending=[False, True]
    )["cohort"]
    wide = runs.pivot(index="step", columns="cohort", values="cell").reindex(columns=order)
    steps = [s for s in wide.index if s != "total"] + ["total"]
    wide = wide.reindex(steps).fillna("")
    header = "| step | " + " | ".join(wide.columns) + " |"
    lines = [header, "|---" * (len(wide.columns) + 1) + "|"]
    lines += [f"| {step} | " + " | ".join(row) + " |" for step, row in wide.iterrows()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--pydeseq2-child":
        pydeseq2_child(argv[1], int(argv[2]), argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[50, 200, 1000])
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--counts-format",
        choices=["h5ad", "tsv"],
        default="h5ad",
        help="how the simulated counts are written (h5ad: fast at any size)",
    )
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        default=8.0,
        help="stop a run whose processes hold more than this at once (0: no limit)",
    )
    parser.add_argument(
        "--fit-min-samples",
        type=int,
        default=1000,
        help="growth exponents over the sizes of at least this many samples",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ifnsig-benchmarks"))
    parser.add_argument("--demo", action="store_true", help="also time the shipped demo")
    parser.add_argument("--score-samples", type=int, nargs="*", default=[])
    parser.add_argument("--r", action="store_true", help="DE fit against R DESeq2")
    parser.add_argument("--de-sizes", type=int, nargs="*", help="sizes for --r (all)")
    parser.add_argument("--profile-de", action="store_true", help="cProfile the pydeseq2 fit")
    parser.add_argument(
        "--markdown", action="store_true", help="print results.tsv as Markdown and stop"
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="read the benchmark files of runs of --sizes in --workdir (stopped or continued runs)",
    )
    parser.add_argument(
        "--critical-paths",
        action="store_true",
        help="recompute the critical paths of the finished runs of --sizes in --workdir",
    )
    parser.add_argument(
        "--stage-markdown",
        action="store_true",
        help="print the per-stage CPU, memory and exponents as Markdown and stop",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(pd.read_csv(RESULTS, sep="\t")))
        return
    if args.collect:
        note = "rule; collected from the benchmark files alone (the run not timed as a whole)"
        rows = []
        for n in args.sizes:
            folder = args.workdir / f"cohort_{n}"
            for r in rule_rows(folder, "workflow", n, args.genes, args.cores):
                rows.append(r | {"note": note})
        merge_results(rows)
        print(pd.DataFrame(rows).to_string(index=False))
        return
    if args.critical_paths:
        merge_results(recomputed_critical_paths(args))
        print(stage_markdown(pd.read_csv(RESULTS, sep="\t"), args.fit_min_samples, args.genes))
        return
    if args.stage_markdown:
        print(stage_markdown(pd.read_csv(RESULTS, sep="\t"), args.fit_min_samples, args.genes))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"{platform.node()}: {os.cpu_count()} CPUs, --cores {args.cores}", flush=True)
    if args.sizes and args.genes < 20000:
        print(
            f"cohorts of {args.genes} genes, fewer than the 20,000 of a blood transcriptome: "
            "time and memory of the gene-wise stages are lower than with every gene",
            flush=True,
        )
    rows: list[dict] = []
    if args.demo:
        rows += bench_demo(args)
        merge_results(rows)
    for n in args.sizes:
        rows += bench_workflow(n, args)
        merge_results(rows)
    for n in args.score_samples:
        rows += bench_scoring(n, args)
    if args.r or args.profile_de or args.de_sizes:
        for n in args.de_sizes or args.sizes:
            rows += bench_de_vs_r(n, args)
            merge_results(rows)
    table = merge_results(rows)
    print(table.to_string(index=False))
    growth = scaling(table, args.fit_min_samples)
    if not growth.empty:
        print(growth.to_string(index=False))


if __name__ == "__main__":
    main()
