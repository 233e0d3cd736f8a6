"""Generated malformed projects never end in a traceback or a half-written output.

Each example derives a project from the demo's own inputs (``config/config.yaml``, the
sample sheet and clinical table it names, and its count table cut to :data:`N_GENES` genes
drawn with a fixed seed, so that every example stays fast) by one to three random edits of
the sample sheet, count table, clinical table or configuration (cells replaced by awkward
values, rows and columns dropped or repeated, files cut short, emptied or deleted, keys set
to odd values). The files keep the demo's paths (the count table gzipped, as the demo's).
It then runs what the workflow runs before any heavy job: the parse-time checks
(``snakemake -n``), then the first rules (``build_anndata``, ``geneset_coverage``). Every
example must either stop with an ``InputError`` of one sentence or finish those rules; a
stop leaves under ``results/`` only the complete outputs of the rules that had finished
before it.

The examples are derandomized (the same ones every run) and cheap, so the test stays within
the suite's time budget (its time is in ``tests/bad_inputs/README.md``).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import logging
import re
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import yaml
from conftest import first_rules
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ifnsig import demo, genesets
from ifnsig.errors import InputError
from ifnsig.validation import check_inputs

CONFIG = yaml.safe_load((demo.REPOSITORY / "config" / "config.yaml").read_text())
COUNTS, SHEET, CLINICAL = CONFIG["counts"], CONFIG["samples"], CONFIG["clinical"]
#: Genes the examples keep of the demo's count table: those of the configured signatures
#: (each must have some in the data) and a seeded draw of the others.
N_GENES = 80
GENE_SEED = 16


def _demo_counts() -> bytes:
    counts = pd.read_csv(demo.REPOSITORY / COUNTS, sep="\t", index_col=0)
    sets = genesets.load_gene_sets(
        [genesets.SHIPPED_GMT], include=list(CONFIG["scores"]["signatures"])
    )
    scored = counts.index.isin([gene for genes in sets.values() for gene in genes])
    others = counts.index[~scored]
    rng = np.random.default_rng(GENE_SEED)
    drawn = counts.index.isin(rng.choice(others, N_GENES - scored.sum(), replace=False))
    return counts[scored | drawn].to_csv(sep="\t").encode("utf-8")


FILES = {
    SHEET: (demo.REPOSITORY / SHEET).read_bytes(),
    CLINICAL: (demo.REPOSITORY / CLINICAL).read_bytes(),
    COUNTS: _demo_counts(),
}
_sheet = pd.read_csv(demo.REPOSITORY / SHEET, sep="\t", dtype=str)
SAMPLES = list(_sheet["sample"])
SUBJECTS = list(dict.fromkeys(_sheet["subject"]))
PATIENT = _sheet.loc[_sheet["group"] == "patient", "subject"].iloc[0]
CONTROL = _sheet.loc[_sheet["group"] == "control", "sample"].iloc[0]
CONTROLS = list(_sheet.loc[_sheet["group"] == "control", "sample"])
BASELINES = list(_sheet.loc[_sheet["timepoint"] == "baseline", "sample"])
OF_PATIENT = list(_sheet.loc[_sheet["subject"] == PATIENT, "sample"])
FIRST = {
    "build_anndata": ["results/data/counts.h5ad", "results/data/samples.tsv"],
    "geneset_coverage": ["results/scores/geneset_coverage.tsv"],
}
N_EXAMPLES = 200

#: Cell values users write by accident or on purpose.
AWKWARD = [
    "", " ", "NA", "n/a", "NaN", "null", "-", "?", "0", "-1", "1.5", "1e3", "inf", "1,000",
    "x", PATIENT, SAMPLES[0], CONTROL, "baseline", "month3", "month6", "control", "patient",
    "gene_id", "symbol", "IFI27", "#", '"', "'", "a b", " " + SUBJECTS[1], SUBJECTS[1] + " ",
    PATIENT + "\u00e9", "\u00a0", "TRUE", "yes", "\t", "female", "b1",
]  # fmt: skip

#: Values a column may well hold, by file: (column, values). Edits with them change the data
#: but mostly keep the project valid, so that the examples also exercise the first rules.
PLAUSIBLE = {
    COUNTS: [(c, ["0", "1", "7", "250", "1000", "123456"]) for c in SAMPLES[::9]],
    SHEET: [
        ("sex", ["female", "male", "", "F", "NA"]),
        ("drug", ["ruxolitinib", "tofacitinib", "baricitinib", "", "NA"]),
        ("group", ["patient", "control"]),
        ("batch", ["b1", "b2", "b3", ""]),
        ("age", ["4.7", "12", "", "NA"]),
    ],
    CLINICAL: [
        ("CMAS", ["0", "12", "33.5", "52", "", "NA", "n/a"]),
        ("MMT8", ["0", "40", "80", "", "NA"]),
        ("prednisone_mg_kg_day", ["0", "0.5", "2", ""]),
    ],
}

#: Configuration keys and odd values for them (a dotted key of a nested mapping).
CONFIG_VALUES = {
    "timepoints": [[], ["baseline"], ["month3", "baseline"], ["baseline", "month6"], "baseline",
                   ["baseline", "month 3"], ["baseline", "month3", "month3"],
                   ["baseline", "month3"]],
    "groups.patient": ["control", "case", ""],
    "groups.control": ["patient", None, "healthy"],
    "exclude_samples": [[SAMPLES[0]], ["JDM99_baseline"], OF_PATIENT + CONTROLS[:1], CONTROLS,
                        BASELINES[:4], BASELINES],
    "clinical_measures": [{}, {"CMAS": {"higher_is_better": True, "min": 30, "max": 52}},
                          {"MMT8": {"higher_is_better": True}}, {"CMAS": {"min": 60, "max": 52}}],
    "clinical": [None, "missing.tsv", SHEET, COUNTS],
    "counts": ["missing.tsv", SHEET, CLINICAL, "config"],
    "samples": [COUNTS, CLINICAL, "missing.tsv"],
    "counts_format": ["salmon", "featurecounts", "h5ad", "kallisto"],
    "annotation": ["missing.tsv", SHEET, COUNTS],
    "tissue": ["muscle", "skin", "blood "],
    "scores.signatures": [[], ["NOPE"], ["RICE2013_6", "RICE2013_6"], ["IFNG_BIASED"]],
    "scores.primary_signature": ["NOPE", "IFNG_BIASED"],
    "scores.min_genes": [0, -1, 100, "3", 2.5],
    "de.covariates": [["sex"], ["drug"], ["nope"], ["neutrophil_score"], ["subject"], ["CMAS"],
                      ["timepoint"], ["batch"], ["age"]],
    "de.alpha": [0, 1.5, "0.05", -0.1],
    "filtering.min_count": [-1, "ten", 1e9],
    "filtering.min_samples": [0, 100, -2],
    "qc.thresholds": [{"min_library_size": "x"}, {"nope": 1}, {}],
    "qc.n_pcs": [0, 50, -1],
    "de.contrasts": [
        [{"name": "m3", "test": "month3", "reference": "baseline"}],
        [{"name": "m3", "test": "month3", "reference": "month3"}],
        [{"name": "m9", "test": "month9", "reference": "baseline"}],
        [{"name": "a b", "test": "month3", "reference": "baseline"}],
        [{"name": "x", "test": "month3", "reference": "baseline", "subset": {"drug": ["nope"]}}],
        [{"name": "x", "test": "month6", "reference": "baseline",
          "subset": {"group": ["patient"], "drug": ["ruxolitinib"]}}],
        [{"name": "x", "test": "month3", "reference": "baseline",
          "between": {"column": "drug", "test": "tofacitinib", "reference": "ruxolitinib"}}],
        [{"name": "x", "test": "month3", "reference": "baseline",
          "between": {"column": "sex", "test": "female", "reference": "male"}}],
        [{"name": "r", "response": "CMAS_gain_3", "response_at": "month6",
          "subset": {"timepoint": ["baseline"]}}],
        [{"name": "any", "variable": "timepoint", "lrt": True, "subset": {"group": ["patient"]}}],
        [{"name": "g", "variable": "group", "test": "patient", "reference": "control",
          "subset": {"timepoint": ["baseline"]}}],
    ],
    "linkage.responses": [
        [{"name": "CMAS_gain_3", "type": "improvement", "measure": "CMAS", "at_least": 3}],
        [{"name": "CMAS_gain_3", "type": "improvement", "measure": "nope", "at_least": 3}],
        [{"name": "CMAS_gain_3", "type": "column", "column": "CMAS"}],
        [{"name": "CMAS_gain_3", "type": "printo_inactive"}],
        [{"name": "CMAS_gain_3", "type": "all_of", "of": ["nope"]}],
    ],
    "linkage.primary_response": ["nope", "TIS_moderate"],
    "linkage.covariates": [["sex"], ["CMAS"], ["nope"], ["drug", "sex"], []],
    "linkage.groups": [[], ["sex"], ["nope"]],
    "seed": ["x", -5, 1.5],
}  # fmt: skip


def _rows(data: bytes) -> list[list[str]]:
    return [line.split("\t") for line in data.decode("utf-8").split("\n")[:-1]]


def _join(rows: list[list[str]]) -> bytes:
    return "".join("\t".join(row) + "\n" for row in rows).encode("utf-8")


#: Rows and columns an edit may pick (taken modulo the table's): every line of the demo's files.
LINES = max(len(_rows(data)) for data in FILES.values())


@st.composite
def table_edit(draw) -> tuple:
    """One edit of a table, as (file, kind, arguments)."""
    name = draw(st.sampled_from(sorted(FILES)))
    kind = draw(
        st.sampled_from(
            ["cell", "cell", "cell", "drop_row", "repeat_row", "drop_column", "repeat_column",
             "extra_cell", "truncate", "empty", "header_only", "delete", "swap_rows",
             "crlf", "bom", "latin1", "utf16", "comma"]
        )
    )  # fmt: skip
    row, column = draw(st.integers(0, LINES)), draw(st.integers(0, LINES))
    value = draw(st.one_of(st.sampled_from(AWKWARD), st.text("ab1_.-JDM ", max_size=6)))
    return name, kind, (row, column, value)


@st.composite
def plausible_edit(draw) -> tuple:
    """An edit that changes the data but mostly keeps the project valid: a cell set to a
    value its column may well hold, or a harmless change of the file's form."""
    name = draw(st.sampled_from(sorted(FILES)))
    kind = draw(st.sampled_from(["plausible"] * 4 + ["crlf", "bom"]))
    column, row = draw(st.integers(0, LINES)), draw(st.integers(0, LINES))
    value = draw(st.sampled_from(PLAUSIBLE[name][column % len(PLAUSIBLE[name])][1]))
    return name, kind, (row, column, value)


@st.composite
def config_edit(draw) -> tuple:
    key = draw(st.sampled_from(sorted(CONFIG_VALUES)))
    return "config.yaml", key, draw(st.sampled_from(CONFIG_VALUES[key]))


#: One example in this many has plausible edits only (the others are malformed): each of
#: those reaches the first rules, at about ten times the cost of an example stopped at parse.
PLAUSIBLE_EVERY = 8


@st.composite
def project_edits(draw) -> list[tuple]:
    """One to three edits: malformed ones, or, one time in :data:`PLAUSIBLE_EVERY`, plausible
    ones and perhaps an awkward count (a malformed edit of another kind stops most examples
    at the parse-time checks)."""
    if draw(st.sampled_from(range(PLAUSIBLE_EVERY))) == 0:
        edits = draw(st.lists(plausible_edit(), min_size=1, max_size=2))
        if draw(st.booleans()):
            # An awkward count value passes the parse-time checks (the counts are read in
            # full by the first rule), so the first rule must stop with a sentence.
            row, column = draw(st.integers(1, LINES)), draw(st.integers(1, LINES))
            value = draw(st.sampled_from(AWKWARD))
            edits.append((COUNTS, "cell", (row, column, value)))
        return edits
    return draw(st.lists(st.one_of(table_edit(), config_edit()), min_size=1, max_size=3))


def apply_table_edit(files: dict[str, bytes | None], name: str, kind: str, args: tuple) -> None:
    data = files[name]
    if data is None:
        return
    row, column, value = args
    try:
        rows = _rows(data)
    except UnicodeDecodeError:
        return  # already re-encoded: later edits leave it as it is
    if not rows:
        return
    if kind == "plausible":
        named = PLAUSIBLE[name][column % len(PLAUSIBLE[name])][0]
        if named not in rows[0] or len(rows) < 2:
            return
        column, row = rows[0].index(named), 1 + row % (len(rows) - 1)
        if column < len(rows[row]):
            rows[row][column] = value
        files[name] = _join(rows)
        return
    row %= len(rows)
    width = max(len(r) for r in rows)
    column %= width
    if kind == "cell" and column < len(rows[row]):
        rows[row][column] = value
    elif kind == "drop_row":
        del rows[row]
    elif kind == "repeat_row":
        rows.insert(row, list(rows[row]))
    elif kind == "swap_rows":
        other = (row + 1) % len(rows)
        rows[row], rows[other] = rows[other], rows[row]
    elif kind == "drop_column":
        rows = [[c for i, c in enumerate(r) if i != column] for r in rows]
    elif kind == "repeat_column":
        rows = [r[: column + 1] + r[column : column + 1] + r[column + 1 :] for r in rows]
    elif kind == "extra_cell":
        rows[row].append(value or "1")
    elif kind == "truncate":
        files[name] = data[: max(1, (row * 37 + column * 11) % len(data))]
        return
    elif kind == "empty":
        files[name] = b""
        return
    elif kind == "header_only":
        rows = rows[:1]
    elif kind == "delete":
        files[name] = None
        return
    elif kind in ("crlf", "bom", "latin1", "utf16"):
        accented = PATIENT + "\u00e9" if kind == "latin1" else PATIENT
        text = data.decode("utf-8-sig").replace(PATIENT, accented)
        files[name] = {
            "crlf": lambda: text.replace("\n", "\r\n").encode("utf-8"),
            "bom": lambda: b"\xef\xbb\xbf" + data,
            "latin1": lambda: text.encode("latin-1", errors="replace"),
            "utf16": lambda: text.encode("utf-16"),
        }[kind]()
        return
    elif kind == "comma":
        rows = [",".join(r).split("\t") for r in rows]
    files[name] = _join(rows)


def apply_config_edit(config: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    target = config
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = copy.deepcopy(value)


def write_project(folder: Path, edits: list[tuple]) -> dict:
    files: dict[str, bytes | None] = dict(FILES)
    config = copy.deepcopy(CONFIG)
    for name, kind, args in edits:
        if name == "config.yaml":
            apply_config_edit(config, kind, args)
        else:
            apply_table_edit(files, name, kind, args)
    (folder / "config").mkdir()
    for name, data in files.items():
        if data is None:
            continue
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            # mtime=0: the same bytes every run.
            with (
                open(folder / name, "wb") as raw,
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz,
            ):
                gz.write(data)
        else:
            (folder / name).write_bytes(data)
    # libyaml's safe dumper and loader: the same documents as the pure-Python ones, faster.
    text = yaml.dump(config, Dumper=yaml.CSafeDumper, sort_keys=False)
    (folder / "config" / "config.yaml").write_text(text)
    return yaml.load(text, Loader=yaml.CSafeLoader)


def assert_one_sentence(error: InputError) -> None:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, message
    assert message.endswith("."), message
    # A second sentence would start after a full stop; file names and "e.g." do not count.
    assert not re.search(r"[a-z)]\. [A-Z]", message), f"more than one sentence: {message}"


def written_files(folder: Path) -> set[str]:
    results = folder / "results"
    return {p.relative_to(folder).as_posix() for p in results.rglob("*") if p.is_file()}


def check_complete(folder: Path, outputs: list[str]) -> None:
    """The outputs of a finished rule are whole: the AnnData and the tables read back."""
    for path in outputs:
        if path.endswith(".h5ad"):
            # Every element of the file read back (h5py: faster than building the AnnData).
            with h5py.File(folder / path, "r") as h5:
                assert {"X", "obs", "var"} <= set(h5), set(h5)
                h5.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
        else:
            pd.read_csv(folder / path, sep="\t")


def run_example(folder: Path, edits: list[tuple]) -> str:
    """Run one generated project; returns the step it stopped at (or ``done``)."""
    config = write_project(folder, edits)
    with contextlib.chdir(folder):
        try:
            check_inputs(config)
        except InputError as error:
            assert_one_sentence(error)
            assert not written_files(folder), written_files(folder)
            return "parse"
        try:
            first_rules(config)
        except InputError as error:
            assert_one_sentence(error)
            written = written_files(folder)
            finished = [p for paths in FIRST.values() for p in paths if p in written]
            assert written == set(finished) and written in ({*FIRST["build_anndata"]}, set()), (
                written
            )
            check_complete(folder, finished)
            return "first_rules"
    written = written_files(folder)
    assert written == {p for paths in FIRST.values() for p in paths}, written
    check_complete(folder, sorted(written))
    return "done"


def test_the_edits_reach_every_step(tmp_path):
    # Without edits the project finishes; the examples below start from there.
    (tmp_path / "none").mkdir()
    assert run_example(tmp_path / "none", []) == "done"
    (tmp_path / "parse").mkdir()
    assert run_example(tmp_path / "parse", [(SHEET, "repeat_row", (1, 0, ""))]) == "parse"


@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(edits=project_edits())
def test_generated_projects_stop_with_a_sentence_or_finish(edits):
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as folder:
            event(f"stopped at: {run_example(Path(folder), edits)}")
    finally:
        logging.disable(logging.NOTSET)
