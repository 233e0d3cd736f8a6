"""The report's captions carry the run's numbers: rendered as Snakemake renders them (Jinja
with the job's ``snakemake`` object and the report's ``files``), they quote the findings
page's numbers from ``results/findings/run_numbers.tsv``, and render without them."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from docutils.core import publish_parts
from jinja2 import Environment
from test_findings import PATHS, SETTINGS, frames

from ifnsig import findings
from ifnsig.validation import validate_config

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = REPO / "workflow" / "report"
NUMBERS = "results/findings/run_numbers.tsv"


@pytest.fixture
def config() -> dict:
    with open(REPO / "config" / "config.yaml") as handle:
        return validate_config(copy.deepcopy(yaml.safe_load(handle)))


def render(name: str, config: dict, files: list, **wildcards) -> str:
    """A caption as Snakemake's report renders it (same Jinja options), as plain text."""
    env = Environment(trim_blocks=True, lstrip_blocks=True)
    job = SimpleNamespace(config=config, wildcards=wildcards, params={}, input=[], output=[])
    text = env.from_string((CAPTIONS / name).read_text()).render(
        snakemake=job, categories={}, files=files
    )
    return publish_parts(text, writer="html")["body"]


@pytest.fixture
def numbers(tmp_path, monkeypatch) -> list:
    """The report's file list holding the findings page's numbers of the tiny tables."""
    monkeypatch.chdir(tmp_path)
    page = findings.findings_page(frames(), PATHS, SETTINGS, ["m3"])
    Path(NUMBERS).parent.mkdir(parents=True)
    page.numbers().to_csv(NUMBERS, sep="\t", index=False)
    return [SimpleNamespace(path=Path(NUMBERS), target="run_numbers.tsv")]


def test_the_numbers_table_holds_every_number_with_its_table():
    page = findings.findings_page(frames(), PATHS, SETTINGS, ["m3"])
    table = page.numbers()
    assert list(table.columns) == ["key", "value", "table"]
    assert list(table["key"]) == [*page.values, *page.extra]
    row = table.set_index("key").loc["cohort.samples"]
    assert row["value"] == "5" and row["table"] == PATHS["samples"]
    assert table.set_index("key").loc["scores.signatures", "table"] == PATHS["scores"]
    unsourced = table.loc[table["table"] == "", "key"].tolist()
    assert not unsourced, unsourced


def test_captions_quote_the_run_numbers(config, numbers):
    page = findings.findings_page(frames(), PATHS, SETTINGS, ["m3"])
    v = dict(page.numbers()[["key", "value"]].to_numpy())
    samples = render("samples.rst", config, numbers)
    assert f"{v['cohort.samples']} samples of {v['cohort.subjects']} subjects" in samples
    volcano = render("volcano.rst", config, numbers, contrast="m3")
    assert f"{v['de.m3.significant']} of {v['de.m3.tested']} genes tested" in volcano
    assert f"({v['de.m3.up']} up, {v['de.m3.down']} down)" in volcano
    scores = render("ifn_scores.rst", config, numbers)
    assert f"{v['positivity.positive']} of {v['positivity.patients']} patients" in scores
    flags = render("qc_flags.rst", config, numbers)
    assert f"{v['qc.flags']} flags on {v['qc.flagged_samples']} samples" in flags


def test_captions_render_without_the_numbers(config):
    for name in ["samples.rst", "ifn_scores.rst", "paired_tests.rst", "qc_flags.rst"]:
        assert "This run" not in render(name, config, [])
    assert "This run" not in render("volcano.rst", config, [], contrast="m3")


EDITED = [
    "samples.rst",
    "ifn_scores.rst",
    "ifn_scores_over_time.rst",
    "paired_tests.rst",
    "score_changes.rst",
    "volcano.rst",
    "ma.rst",
    "pvalue_histogram.rst",
    "top_gene_heatmap.rst",
    "set_tests.rst",
    "prerank.rst",
    "enrichment_dotplot.rst",
    "qc_flags.rst",
    "response.rst",
    "response_roc.rst",
    "baseline_prediction.rst",
    "findings.rst",
    "patients.rst",
]


@pytest.mark.parametrize("name", EDITED)
def test_every_caption_with_run_numbers_renders(name, config, numbers):
    # The tiny tables' timepoints and response, in the demo configuration.
    config["timepoints"] = SETTINGS["timepoints"]
    config["linkage"]["responses"] = [{"name": "R", "type": "column", "column": "R"}]
    text = render(name, config, numbers, contrast="m3")
    assert "This run" in text and "NA" not in text.split("This run", 1)[1], text
