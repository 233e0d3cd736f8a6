"""The Snakemake HTML report of a small demo run: every stage's tables and figures, with
captions, the workflow description with its parameters and citations, the findings page
first (its numbers equal the tables', every table viewable), small enough to email, and a
browser that renders it (headless Chromium, installed from Debian when missing; skipped if
impossible).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import snakemake

# The report of the session's small run is this module's own: one pytest-xdist worker takes
# the whole module.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("report")]

FINDINGS = "At a glance: findings"
CATEGORIES = [
    FINDINGS,
    "Quality control",
    "IFN scores",
    "Differential expression",
    "Enrichment",
    "Clinical linkage",
]
BROWSERS = ["chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"]


@pytest.fixture(scope="module")
def demo_report(small_run, tmp_path_factory):
    """The report of the shared small run (written outside it, so the run stays as it was)."""
    report = tmp_path_factory.mktemp("report") / "report.html"
    run = snakemake(small_run, "--report", str(report))
    assert run.returncode == 0, run.stderr[-4000:]
    return small_run, report.read_text(), report


def embedded(html: str, name: str):
    """A data object the report embeds as `<script id=...> var name = {...};`."""
    found = re.search(rf"<script id=\"[\w-]+\">\s*var {name} = (.*?);\s*</script>", html, re.S)
    assert found, f"report has no embedded '{name}'"
    return json.loads(found.group(1))


def test_every_category_has_its_outputs(demo_report):
    _, html, _ = demo_report
    categories = embedded(html, "categories")
    for category in CATEGORIES:
        assert category in categories, sorted(categories)
        assert any(categories[category].values()), f"category {category} is empty"


# Large genes x samples matrices stay files outside the report.
MATRICES = {"results/de/normalized_counts.tsv", "results/de/vst.tsv"}
FINDINGS_PAGE = "results/findings/findings.html"


def findings_page(html: str) -> str:
    """The findings page as the report embeds it."""
    uri = embedded(html, "results")[FINDINGS_PAGE]["data_uri"]
    return base64.b64decode(uri.split("base64,", 1)[1]).decode("utf-8")


def viewer_tables(page: str) -> dict[str, bytes]:
    """The tables of the findings page's viewer: path -> the bytes it holds."""
    found = re.findall(r'data-tsv="([^"]+)"[^>]*>([^<]+)</script>', page)
    return {path: gzip.decompress(base64.b64decode(data)) for path, data in found}


def test_the_findings_category_comes_first(demo_report):
    _, html, _ = demo_report
    categories = embedded(html, "categories")
    # The report's menu lists categories alphabetically.
    assert sorted(categories)[0] == FINDINGS, sorted(categories)
    assert FINDINGS_PAGE in embedded(html, "results")


def test_every_table_and_figure_is_in_the_report_with_a_caption(demo_report):
    folder, html, _ = demo_report
    results = embedded(html, "results")
    viewed = viewer_tables(findings_page(html))
    # MultiQC custom-content files (*_mqc.*) are exports for MultiQC, not report items.
    written = {
        p.relative_to(folder).as_posix()
        for p in (folder / "results").rglob("*")
        if p.suffix in (".tsv", ".png") and "_mqc." not in p.name
    }
    tables = {path for path in written if path.endswith(".tsv")} - MATRICES
    assert tables and tables == set(viewed), sorted(tables ^ set(viewed))
    figures = {path for path in written if path.endswith(".png")}
    assert figures and figures <= set(results), sorted(figures - set(results))
    assert not MATRICES & set(results)
    in_report = set(results) | set(viewed)
    assert written - MATRICES <= in_report, sorted(written - MATRICES - in_report)
    for path, entry in results.items():
        assert re.sub(r"<[^>]+>", "", entry["caption"]).strip(), f"{path}: empty caption"
        assert entry["labels"], f"{path}: no labels"


def test_ifn_scores_and_de_tables_are_embedded_byte_for_byte(demo_report):
    folder, html, _ = demo_report
    results = embedded(html, "results")
    categories = embedded(html, "categories")

    def in_category(path):
        return next(c for c, subs in categories.items() if any(path in v for v in subs.values()))

    def payload(path):
        return base64.b64decode(results[path]["data_uri"].split("base64,", 1)[1])

    scores = "results/scores/ifn_scores.tsv"
    assert in_category(scores) == "IFN scores"
    assert payload(scores) == (folder / scores).read_bytes()
    # The per-gene tables are held once, by the findings page's viewer.
    viewed = viewer_tables(findings_page(html))
    reference = "results/scores/reference/genes.tsv"
    assert reference not in results and viewed[reference] == (folder / reference).read_bytes()
    contrasts = ["month3_vs_baseline", "month6_vs_baseline"]
    for contrast in contrasts:
        table = f"results/de/{contrast}.tsv"
        assert table not in results
        assert viewed[table] == (folder / table).read_bytes()
        assert viewed[table].startswith(b"gene_id\t")


def test_workflow_description_gives_parameters_and_citations(demo_report):
    folder, html, _ = demo_report
    description = embedded(html, "workflow_desc")
    text = re.sub(r"<[^>]+>", " ", description)
    text = re.sub(r"\s+", " ", text)
    # Parameters of this run, as set in its config.
    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    assert config["counts"] in text
    assert f"{config['enrichment']['permutations']} permutations" in text
    assert f"seed {config['seed']}" in text
    filtering = config["filtering"]
    assert (
        f"fewer than {filtering['min_count']} reads in fewer than {filtering['min_samples']} "
        "samples"
    ) in text
    for signature in ["RICE2013_6", "NIH28", "FENG2006_5"]:
        assert signature in text
    # Citations rendered as a reference list the text links to.
    for reference in ["Rice GI", "Love MI", "Muzellec B", "Kim H", "Fang Z", "Benjamini Y"]:
        assert reference in text, reference
    assert 'href="#rice2013"' in description.lower()
    assert "System Message" not in text, "reStructuredText errors in workflow.rst"


def test_captions_carry_the_run_numbers(demo_report):
    folder, html, _ = demo_report
    results = embedded(html, "results")
    numbers = pd.read_csv(folder / "results/findings/run_numbers.tsv", sep="\t", dtype=str)
    run = dict(zip(numbers["key"], numbers["value"], strict=True))

    def caption(path: str) -> str:
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", results[path]["caption"]))

    assert f"{run['cohort.samples']} samples of {run['cohort.subjects']} subjects" in caption(
        "results/data/samples.tsv"
    )
    contrast = "month3_vs_baseline"
    volcano = caption(f"results/plots/de/{contrast}.volcano.png")
    assert (
        f"{run[f'de.{contrast}.significant']} of {run[f'de.{contrast}.tested']} genes tested"
    ) in volcano
    scores = caption("results/scores/ifn_scores.tsv")
    assert f"{run['positivity.positive']} of {run['positivity.patients']} patients" in scores
    for path, entry in results.items():
        assert "System Message" not in entry["caption"], path


@pytest.fixture(scope="module")
def browser():
    """Path of a headless Chromium; installed from Debian when missing and possible."""
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("no Chromium, and no root apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", BROWSERS[0]]):
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"could not install {BROWSERS[0]}: {proc.stderr.strip()[-300:]}")
    return shutil.which(BROWSERS[0]) or pytest.skip("Chromium installed but not on PATH")


def chromium(browser: str, *args: str, budget_ms: int = 15000) -> subprocess.CompletedProcess:
    # --virtual-time-budget lets the report's scripts run before the page is captured.
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += [f"--virtual-time-budget={budget_ms}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def test_report_renders_in_a_browser_with_every_category(demo_report, browser, tmp_path):
    _, _, report = demo_report
    url = report.as_uri()
    dom = chromium(browser, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    app = dom.stdout[dom.stdout.index('id="app"') :]
    menu = re.sub(r"<[^>]+>", "\n", app)
    shown = {line.strip() for line in menu.splitlines()}
    for category in CATEGORIES:
        assert category in shown, f"{category} not in the rendered menu"

    from PIL import Image

    png = tmp_path / "report.png"
    # On a loaded machine a screenshot can come before the page is drawn (the DOM above is
    # already complete): a second one waits four times longer.
    for budget_ms in (15000, 60000):
        shot = chromium(
            browser, "--window-size=1400,1000", f"--screenshot={png}", url, budget_ms=budget_ms
        )
        assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
        pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
        navigation_dark = (pixels[:, :200] < 120).mean() > 0.5
        if navigation_dark:
            break
    assert pixels.shape == (1000, 1400)
    # A rendered page: the dark navigation bar beside light text pages, not a blank canvas.
    assert pixels.std() > 30
    assert navigation_dark and (pixels[:, 400:] > 200).mean() > 0.5


def test_the_report_is_small_enough_to_email(demo_report):
    _, html, report = demo_report
    assert report.stat().st_size < 10 * 2**20
    # Every figure is written by ifnsig.plots.write_figure: a palette or RGB PNG (never
    # matplotlib's own RGBA, three times the bytes), with no text chunks.
    for path, entry in embedded(html, "results").items():
        if path.endswith(".png"):
            data = base64.b64decode(entry["data_uri"].split("base64,", 1)[1])
            assert data[25] in (2, 3) and b"tEXt" not in data, path


def adjusted(frame: pd.DataFrame) -> pd.Series:
    return frame[next(c for c in ("padj", "fdr", "qvalue") if c in frame.columns)]


def test_findings_page_in_a_browser_gives_the_tables_numbers(demo_report, browser, tmp_path):
    folder, html, _ = demo_report
    page = tmp_path / "findings.html"
    page.write_text(findings_page(html), encoding="utf-8")
    # "#all" opens every table of the viewer at once.
    dom = chromium(browser, "--dump-dom", page.as_uri() + "#all")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-rendered="all"' in dom.stdout, "the viewer did not finish"
    shown = {
        key: text for key, text in re.findall(r'data-key="([^"]+)"[^>]*>([^<]*)</a>', dom.stdout)
    }

    def number(key):
        assert key in shown, f"{key} not on the page"
        return float(shown[key])

    config = yaml.safe_load((folder / "config" / "config.yaml").read_text())
    results = folder / "results"
    samples = pd.read_csv(results / "data" / "samples.tsv", sep="\t")
    assert number("cohort.samples") == len(samples)
    assert number("cohort.subjects") == samples["subject"].nunique()
    assert number("cohort.controls") == samples.query("group == 'control'")["subject"].nunique()
    scores = pd.read_csv(results / "scores" / "ifn_scores.tsv", sep="\t")
    primary = scores[
        (scores["signature"] == config["scores"]["primary_signature"])
        & (scores["method"] == config["scores"]["primary_method"])
        & (scores["group"] == "patient")
        & (scores["timepoint"] == config["timepoints"][0])
    ]
    assert number("positivity.positive") == primary["positive"].sum()
    assert number("positivity.patients") == len(primary)
    alpha = config["de"]["alpha"]
    for contrast in ["month3_vs_baseline", "month6_vs_baseline"]:
        de = pd.read_csv(results / "de" / f"{contrast}.tsv", sep="\t")
        assert number(f"de.{contrast}.significant") == (adjusted(de) < alpha).sum()
        assert number(f"de.{contrast}.tested") == adjusted(de).notna().sum()
    flags = pd.read_csv(results / "qc" / "qc_flags.tsv", sep="\t")
    assert number("qc.flags") == len(flags)
    tests = pd.read_csv(results / "clinical" / "paired_tests.tsv", sep="\t")
    row = tests[
        (tests["signature"] == config["scores"]["primary_signature"])
        & (tests["method"] == config["scores"]["primary_method"])
    ].iloc[0]
    assert number(f"change.{row['timepoint']}.n") == row["n"]
    assert number(f"change.{row['timepoint']}.pvalue") == pytest.approx(row["pvalue"], rel=5e-3)

    # Every table rendered by DataTables, with all its rows.
    viewed = viewer_tables(findings_page(html))
    boxes = re.findall(
        r'<div class="viewed" data-path="([^"]+)">.*?Showing \d+ to \d+ of ([\d,]+) entr',
        dom.stdout,
        re.S,
    )
    rendered = {path: int(n.replace(",", "")) for path, n in boxes}
    empty = {p for p, data in viewed.items() if data.count(b"\n") <= 1}
    assert set(rendered) | empty == set(viewed), sorted(set(viewed) - set(rendered) - empty)
    for path, n in rendered.items():
        assert n == viewed[path].count(b"\n") - 1, path
