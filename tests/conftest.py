"""Shared fixtures: paths to the reference data and small simulated cohorts."""

from __future__ import annotations

import atexit
import copy
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from matplotlib.text import Text

from ifnsig import plots, stages, stats
from ifnsig.settings import aliases_file, score_gene_set_files, sheet_files, stage_settings
from ifnsig.simulate import CohortSpec, simulate_cohort
from ifnsig.validation import validate_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips the test when the reference data are absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} not present (it is only in the development tree)")
    return path


@pytest.fixture
def base_config() -> dict:
    """A minimal valid configuration (before schema defaults are filled in)."""
    return {
        "counts": "counts.tsv",
        "samples": "samples.tsv",
        "clinical": "clinical.tsv",
        "timepoints": ["baseline", "month3"],
        "clinical_measures": {"CMAS": {"higher_is_better": True, "min": 0, "max": 52}},
    }


@pytest.fixture
def tiny_inputs(tmp_path, monkeypatch, base_config):
    """Three patients at two timepoints plus two controls, 6 genes; cwd is the folder."""
    monkeypatch.chdir(tmp_path)
    samples = ["P1_0", "P1_3", "P2_0", "P2_3", "P3_0", "P3_3", "C1", "C2"]
    header = "gene_id\t" + "\t".join(samples)
    rows = [
        f"G{i}\t" + "\t".join(str(10 * (i + 1) + j) for j in range(len(samples))) for i in range(6)
    ]
    (tmp_path / "counts.tsv").write_text("\n".join([header, *rows]) + "\n")
    sheet = ["sample\tsubject\tgroup\ttimepoint\tsex"]
    for s in samples[:6]:
        subject, tp = s.split("_")
        sheet.append(f"{s}\t{subject}\tpatient\t{'baseline' if tp == '0' else 'month3'}\tF")
    sheet += ["C1\tC1\tcontrol\tbaseline\tM", "C2\tC2\tcontrol\tbaseline\tF"]
    (tmp_path / "samples.tsv").write_text("\n".join(sheet) + "\n")
    clinical = ["subject\ttimepoint\tCMAS"]
    for subject in ["P1", "P2", "P3"]:
        clinical += [f"{subject}\tbaseline\t30", f"{subject}\tmonth3\t40"]
    (tmp_path / "clinical.tsv").write_text("\n".join(clinical) + "\n")
    return tmp_path


def run_stage(name: str, config: dict, inputs: dict, outputs: dict, threads: int = 1) -> None:
    """Run stage ``name`` in-process as its rule would: with exactly the settings the rule
    passes (a stage reading any other key fails) and the given input and output paths."""
    settings = stage_settings(validate_config(copy.deepcopy(config)), name)
    stats.new_job()
    getattr(stages, name)(inputs=inputs, outputs=outputs, settings=settings, threads=threads)


FIRST_OUTPUTS = {
    "counts": "results/data/counts.h5ad",
    "samples": "results/data/samples.tsv",
    "coverage": "results/scores/geneset_coverage.tsv",
}


def first_rules(config: dict, folder: Path | str = ".") -> dict:
    """The workflow's first rules in-process: ``build_anndata`` (every input read and checked,
    the counts in full), then ``geneset_coverage``; returns their outputs (paths in
    ``folder``)."""
    outputs = {name: str(Path(folder) / path) for name, path in FIRST_OUTPUTS.items()}
    Path(outputs["counts"]).parent.mkdir(parents=True, exist_ok=True)
    Path(outputs["coverage"]).parent.mkdir(parents=True, exist_ok=True)
    config = validate_config(copy.deepcopy(config))
    run_stage("build_anndata", config, sheet_files(config), outputs)
    coverage_inputs = {
        "counts": outputs["counts"],
        "gene_sets": score_gene_set_files(config),
        "aliases": aliases_file(),
    }
    run_stage("geneset_coverage", config, coverage_inputs, outputs)
    return outputs


def write_project(folder: Path, spec: CohortSpec, permutations: int = 200, **overrides) -> None:
    """A working directory with simulated inputs, truth and a config pointing at them."""
    cohort = simulate_cohort(spec)
    cohort.write(folder / "inputs")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config.update(
        counts="inputs/counts.tsv.gz",
        samples="inputs/samples.tsv",
        clinical="inputs/clinical.tsv",
        timepoints=list(spec.timepoints),
    )
    config["enrichment"]["permutations"] = permutations
    config.update(overrides)
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


# What a clone holds of the workflow itself (its own demo data and tests aside).
WORKFLOW_FILES = [
    "Snakefile", "workflow", "envs", "resources/genesets", "resources/markers", "profiles",
]  # fmt: skip


def clone_workflow(folder: Path) -> Path:
    """Copy the workflow into ``folder``, as a user's clone holds it: the project's inputs,
    config and results then live beside the workflow's own files."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(
                source,
                folder / name,
                ignore=shutil.ignore_patterns("__pycache__"),
                dirs_exist_ok=True,
            )
        else:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    return folder


def snakemake(folder: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real snakemake in ``folder`` on 2 cores: the folder's own Snakefile when it is a
    clone or a deployment, the repository's otherwise."""
    snakefile = folder / "Snakefile" if (folder / "Snakefile").exists() else REPO / "Snakefile"
    arguments = ["-s", str(snakefile), "--directory", str(folder), "--cores", "2", *args]
    if env is None and SERVER.serves(os.environ):
        return SERVER.run(arguments, timeout=1200)
    command = [sys.executable, "-m", "snakemake", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env)


class SnakemakeServer:
    """Snakemake runs forked from one process that imported Snakemake once
    (tests/snakemake_server.py): each is ``python -m snakemake`` without its start-up."""

    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.process: subprocess.Popen | None = None

    def serves(self, env) -> bool:
        """Whether a run with environment ``env`` can be forked from the server: the same
        variables read when an interpreter starts (the fork is given the rest of ``env``;
        imported libraries add variables of their own, and pytest names the current test)."""

        def at_start(variables):
            return {
                name: value
                for name, value in variables.items()
                if name.startswith(("PYTHON", "LD_")) or name.endswith("_NUM_THREADS")
            }

        return at_start(env) == at_start(self.env)

    def start(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            server = Path(__file__).with_name("snakemake_server.py")
            self.process = subprocess.Popen(
                [sys.executable, str(server)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, env=self.env,
            )  # fmt: skip
            atexit.register(self.stop, self.process)
        return self.process

    @staticmethod
    def stop(process: subprocess.Popen) -> None:
        """The server ends when its input does."""
        process.stdin.close()
        process.wait(timeout=60)
        process.stdout.close()

    def answer(self, process: subprocess.Popen, timeout: float) -> dict:
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        if not line:
            raise subprocess.TimeoutExpired(process.args, timeout)
        return json.loads(line)

    def run(self, arguments: list[str], timeout: float) -> subprocess.CompletedProcess:
        process = self.start()
        with tempfile.TemporaryDirectory() as folder:
            stdout, stderr = Path(folder, "stdout"), Path(folder, "stderr")
            request = {"args": arguments, "cwd": os.getcwd(), "env": dict(os.environ),
                       "stdout": str(stdout), "stderr": str(stderr)}  # fmt: skip
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.flush()
            pid = self.answer(process, timeout)["pid"]
            try:
                returncode = self.answer(process, timeout)["returncode"]
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.process = None
                process.kill()
                raise
            command = [sys.executable, "-m", "snakemake", *arguments]
            return subprocess.CompletedProcess(
                command, returncode, stdout.read_text(), stderr.read_text()
            )


SERVER = SnakemakeServer()


# One small cohort run once per test session and shared by the tests that need a finished
# run but not its statistics (report, reproducibility, SLURM): every stage has work to do,
# and the DE fit lasts long enough to be interrupted.
SMALL_SPEC = CohortSpec(n_patients=6, n_controls=4, n_genes=1500, n_treatment_genes=80, seed=11)
SMALL_PERMUTATIONS = 100


USER_GMT = "inputs/my_sets.gmt"


#: One output of each stage at least (plots included), as a finished run writes them.
EVERY_STAGE = [
    "results/data/filtered_counts.h5ad",
    "results/data/normalized.h5ad",
    "results/data/cohort.h5ad",
    "results/scores/ifn_scores.tsv",
    "results/scores/geneset_coverage.tsv",
    "results/de/month3_vs_baseline.tsv",
    "results/de/month6_vs_baseline.tsv",
    "results/enrichment/month6_vs_baseline.set_tests.tsv",
    "results/enrichment/month6_vs_baseline.prerank.tsv",
    "results/enrichment/month6_vs_baseline.ora.tsv",
    "results/clinical/paired_tests.tsv",
    "results/clinical/correlations.tsv",
    "results/clinical/changes.tsv",
    "results/plots/qc/pca.png",
    "results/qc/qc_flags.tsv",
    "results/plots/de/month6_vs_baseline.volcano.png",
    "results/plots/de/month6_vs_baseline.heatmap.png",
    "results/plots/enrichment/month6_vs_baseline.ifn_running_scores.png",
    "results/de/vst.tsv",
    "results/plots/clinical/change_vs_change.png",
]


def small_project(folder: Path, module: bool = False) -> Path:
    """The small cohort in a clone of the workflow (as users run it: ``snakemake`` in the
    clone, config and inputs inside it), with a user GMT among the gene sets; with
    ``module``, in a folder where the workflow is deployed as a Snakemake module instead."""
    if module:
        deploy_module(folder)
    else:
        clone_workflow(folder)
    write_project(folder, SMALL_SPEC, permutations=SMALL_PERMUTATIONS)
    (folder / USER_GMT).write_text("MY_ISGS\tuser set\tIFI27\tIFI44L\tRSAD2\tISG15\tMX1\n")
    config_file = folder / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["scores"]["gene_sets"] = [USER_GMT]
    config["enrichment"]["gene_sets"] = [USER_GMT]
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def deploy_module(folder: Path) -> Path:
    """A deployment of the workflow as a Snakemake module in ``folder`` (the layout
    ``snakedeploy deploy-workflow`` writes, with a local path for the remote source)."""
    snakefile = os.path.relpath(REPO / "Snakefile", folder)
    (folder / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n\n'
        f'module ifnsig:\n    snakefile:\n        "{snakefile}"\n    config:\n        config\n\n\n'
        "use rule * from ifnsig\n"
    )
    return folder


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, worker_id) -> Path:
    """A finished run of the workflow on the small cohort (read it, do not write into it).

    One run for the whole test session: the first pytest-xdist worker to ask builds it under
    a lock in the session's shared temporary folder, the others wait and read it.
    """
    if worker_id == "master":
        return finished_small_run(tmp_path_factory.mktemp("small_run"))
    shared = tmp_path_factory.getbasetemp().parent
    folder = shared / "small_run"
    with open(shared / "small_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "small_run.done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            finished_small_run(folder)
            (shared / "small_run.done").touch()
    return folder


def finished_small_run(folder: Path) -> Path:
    small_project(folder)
    run = snakemake(folder)
    assert run.returncode == 0, run.stderr[-4000:]
    return folder


# Plots are saved at this resolution (ifnsig.plots._save).
PLOT_DPI = 120


@pytest.fixture
def drawn(monkeypatch):
    """File name -> what was drawn: titles, legends (title and entries), and the texts whose
    box is not inside the figure."""
    figures: dict[str, dict] = {}
    texts: list[tuple[str, object]] = []
    draw = Text.draw

    def record_text(self, renderer):
        draw(self, renderer)
        if self.get_visible() and self.get_text().strip():
            texts.append((self.get_text(), self.get_window_extent(renderer)))

    save = plots._save

    def record(fig, path):
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
        info = {
            "titles": [ax.get_title() for ax in fig.axes if ax.get_title()]
            + ([fig._suptitle.get_text()] if fig._suptitle else []),
            "xlabels": [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()],
            "legends": [
                [legend.get_title().get_text()] + [t.get_text() for t in legend.get_texts()]
                for legend in legends
            ],
            "colorbar_labels": [
                ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"
            ],
            "legend_sizes": [t.get_fontsize() for lg in legends for t in lg.get_texts()],
            "axes": fig.axes,
        }
        width, height = fig.get_size_inches() * PLOT_DPI
        texts.clear()
        save(fig, path)
        info["outside"] = [
            text
            for text, box in texts
            if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1
        ]
        info["texts"] = [text for text, _ in texts]
        figures[Path(path).name] = info

    monkeypatch.setattr(Text, "draw", record_text)
    monkeypatch.setattr(plots, "_save", record)
    return figures


# The longest work first, so that the two pytest-xdist workers end together (pyproject.toml
# keeps this order: --no-loadscope-reorder). A module named alone goes whole (its group with
# it); "module::test" moves that test alone. Each worker is handed two units at the start
# and a third once it has at most two tests left: the SLURM run (minutes of waiting on the
# cluster's status checks) and then the interrupted run go to one worker, while the other
# builds the session's small run (the first test that asks for it) and fits the DE group.
LONGEST_FIRST = [
    "test_slurm.py::test_workflow_through_slurm_matches_local",
    "test_anndata.py::test_counts_are_integers_stored_once",
    "test_reproducible.py::test_run_killed_during_de_resumes_to_identical_tables",
    "test_de.py",
    "test_rerun.py::test_an_excluded_sample_leaves_no_trace_in_results",
    "test_blocked_inference.py",
    "test_qc.py",
    "test_cohort_shapes.py",
    "test_report.py",
    "test_reference.py",
    "test_workflow.py::test_response_contrast_splits_patients_as_the_clinical_stage",
    "test_mixed_models.py",
    "test_clinical.py",
    "test_calibration.py",
    "test_fuzz_inputs.py",
    "test_formats.py",
]


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        module, name = Path(item.path).name, item.name.split("@")[0]
        for position, entry in enumerate(LONGEST_FIRST):
            if entry in (module, f"{module}::{name}"):
                return position
        return len(LONGEST_FIRST)

    items.sort(key=rank)


def load_benchmark(name: str):
    """A script of benchmarks/ loaded as a module (benchmarks are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
