"""The Snakemake HTML report of a small demo run: every stage's tables and figures, with
captions, the workflow description with its parameters and citations, and a browser that
renders it (headless Chromium, installed from Debian when missing; skipped if impossible).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from conftest import snakemake

# The report of the session's small run is this module's own: one pytest-xdist worker takes
# the whole module.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("report")]

CATEGORIES = [
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


def test_every_table_and_figure_is_in_the_report_with_a_caption(demo_report):
    folder, html, _ = demo_report
    results = embedded(html, "results")
    # MultiQC custom-content files (*_mqc.*) are exports for MultiQC, not report items.
    written = {
        p.relative_to(folder).as_posix()
        for p in (folder / "results").rglob("*")
        if p.suffix in (".tsv", ".png") and "_mqc." not in p.name
    }
    assert written and written <= set(results), sorted(written - set(results))
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
    contrasts = ["month3_vs_baseline", "month6_vs_baseline"]
    for contrast in contrasts:
        table = f"results/de/{contrast}.tsv"
        assert in_category(table) == "Differential expression"
        assert results[table]["labels"]["contrast"] == contrast
        assert payload(table) == (folder / table).read_bytes()
        assert payload(table).startswith(b"gene_id\t")


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


def chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    # --virtual-time-budget lets the report's scripts run before the page is captured.
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--virtual-time-budget=15000", *args]
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

    png = tmp_path / "report.png"
    shot = chromium(browser, "--window-size=1400,1000", f"--screenshot={png}", url)
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape == (1000, 1400)
    # A rendered page: the dark navigation bar beside light text pages, not a blank canvas.
    assert pixels.std() > 30
    assert (pixels[:, :200] < 120).mean() > 0.5 and (pixels[:, 400:] > 200).mean() > 0.5
