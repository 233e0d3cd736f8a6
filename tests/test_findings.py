"""The findings page on tiny tables: its numbers, the tables it links them to, the viewer's
copies of the tables, and the per-patient panels."""

from __future__ import annotations

import base64
import gzip
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ifnsig import findings, patient_view, tableview

SETTINGS = {
    "groups": {"patient": "patient", "control": "control"},
    "timepoints": ["baseline", "month3"],
    "scores": {
        "primary_signature": "RICE",
        "primary_method": "median_fold_change",
        "positivity_sd": 2,
        "reference": "controls",
    },
    "de": {"alpha": 0.1},
    "findings": {"top_gene_sets": 2},
    "linkage": {"primary_response": "R"},
    "clinical_measures": {"CMAS": {"higher_is_better": True, "min": 0, "max": 52}},
}


def frames() -> dict[str, pd.DataFrame]:
    samples = pd.DataFrame(
        {
            "sample": ["P1_0", "P1_3", "P2_0", "P2_3", "C1"],
            "subject": ["P1", "P1", "P2", "P2", "C1"],
            "group": ["patient"] * 4 + ["control"],
            "timepoint": ["baseline", "month3"] * 2 + ["baseline"],
            "drug": ["tofa", "tofa", "ruxo", "ruxo", np.nan],
        }
    )
    scores = samples.assign(
        signature="RICE",
        method="median_fold_change",
        score=[9.0, 2.0, 1.0, 1.2, 0.5],
        threshold=1.5,
        positive=[True, True, False, False, False],
        reference_group="controls",
    )
    paired = pd.DataFrame(
        [["RICE", "median_fold_change", "month3", "baseline", 2, 5.0, 1.6, -3.4, -7, 0.2]]
        + [[None] * 10],
        columns=["signature", "method", "timepoint", "reference", "n", "median_baseline",
                 "median_followup", "estimate", "ci_low", "ci_high"],
    ).dropna(how="all").assign(pvalue=0.5, qvalue=0.5)  # fmt: skip
    de = pd.DataFrame(
        {
            "gene_id": ["G1", "G2", "G3", "G4"],
            "log2FoldChange": [-2.0, 1.0, 0.5, 0.1],
            "pvalue": [1e-6, 1e-3, 0.2, np.nan],
            "padj": [4e-6, 0.002, 0.27, np.nan],
        }
    )
    prerank = pd.DataFrame(
        {"gene_set": ["B", "A", "C"], "nes": [-2.0, -2.5, 1.0], "fdr": [0.0, 0.0, 0.3]}
    )
    link = {"signature": "RICE", "method": "median_fold_change", "measure": "CMAS", "n": 2}
    link |= {"estimate": -0.9, "ci_low": -1, "ci_high": 0.2, "pvalue": 0.3, "qvalue": 0.3}
    correlations = pd.DataFrame([{**link, "timepoint": "month3"}])
    mixed = pd.DataFrame([link])
    response = pd.DataFrame(
        {
            "response": ["R", "R"],
            "subject": ["P1", "P2"],
            "timepoint": ["month3", "month3"],
            "responder": [True, False],
        }
    )
    prediction = pd.DataFrame(
        [
            {**link, "response": "R", "timepoint": "month3", "predictor": "baseline_score",
             "analysis": "mann_whitney", "estimate": 1.0}
        ]
    )  # fmt: skip
    sets = pd.DataFrame(
        {"gene_set": ["B", "A"], "direction": ["down", "down"], "estimate": [-1.0, -0.5]}
    ).assign(fdr=[0.01, 0.2])
    flags = pd.DataFrame({"sample": ["P1_3", "P1_3"], "check": ["sex", "pairing"]})
    return {
        "samples": samples,
        "scores": scores,
        "paired_tests": paired,
        "de:m3": de,
        "prerank:m3": prerank,
        "sets:m3": sets,
        "correlations": correlations,
        "mixed_models": mixed,
        "response": response,
        "baseline_prediction": prediction,
        "qc_flags": flags,
    }


PATHS = {name: f"results/{name.replace(':', '/')}.tsv" for name in frames()}


def test_the_page_counts_what_the_tables_hold():
    page = findings.findings_page(frames(), PATHS, SETTINGS, ["m3"])
    values = page.values
    assert values["cohort.samples"] == 5 and values["cohort.subjects"] == 3
    assert values["cohort.patients"] == 2 and values["cohort.controls"] == 1
    assert values["cohort.timepoint.month3"] == 2
    assert values["positivity.positive"] == 1 and values["positivity.patients"] == 2
    assert values["change.month3.estimate"] == -3.4
    assert values["de.m3.significant"] == 2 and values["de.m3.tested"] == 3
    assert values["de.m3.up"] == 1 and values["de.m3.down"] == 1
    # Ties at FDR 0 broken by |NES|: both listed, the stronger first.
    assert values["enrichment.m3.1.gene_set"] == "A"
    assert values["enrichment.m3.2.gene_set"] == "B"
    assert values["set_tests.m3.1.gene_set"] == "B" and values["set_tests.m3.1.adjusted"] == 0.01
    assert values["response.R.responders"] == 1 and values["response.R.called"] == 2
    assert values["prediction.R.baseline_score.auc"] == 1.0
    assert values["qc.flags"] == 2 and values["qc.flagged_samples"] == 1


def test_every_number_names_its_table_and_its_key():
    page = findings.findings_page(frames(), PATHS, SETTINGS, ["m3"])
    text = page.html()
    links = re.findall(r'<a class="num" href="#" data-table="([^"]+)" data-key="([^"]+)"', text)
    assert len(links) == len([k for k in page.values if not k.endswith(".gene_set")])
    assert {table for table, _ in links} <= set(PATHS.values())
    assert dict((k, t) for t, k in links)["de.m3.significant"] == "results/de/m3.tsv"


def test_adjusted_p_is_found_under_each_name():
    for name in ["padj", "fdr", "qvalue"]:
        assert findings.adjusted_p(pd.DataFrame(columns=["x", name])) == name
    with pytest.raises(KeyError):
        findings.adjusted_p(pd.DataFrame(columns=["pvalue"]))


@pytest.mark.parametrize(
    "value, shown",
    [(87, "87"), (3.0, "3"), (0.8455, "0.846"), (1.2e-11, "1.20e-11"), (np.nan, "NA"), (0, "0")],
)
def test_numbers_are_shown_briefly(value, shown):
    assert findings.fmt(value) == shown


def unpacked(page: str, name: str) -> bytes:
    found = re.search(rf'data-tsv="{re.escape(name)}"[^>]*>([^<]+)</script>', page)
    assert found, name
    return gzip.decompress(base64.b64decode(found.group(1)))


def test_the_viewer_holds_each_table_once_byte_for_byte(tmp_path, monkeypatch):
    small = tmp_path / "small.tsv"
    small.write_bytes(b"gene_id\tpvalue\nG1\t1.234567891e-300\n")
    large = tmp_path / "large.tsv"
    monkeypatch.setattr(tableview, "FULL_PRECISION_ROWS", 3)
    large.write_text("gene_id\tpvalue\n" + "".join(f"G{i}\t0.123456789{i}\n" for i in range(5)))
    tables = {"results/small.tsv": (small, "small"), "results/large.tsv": (large, "large")}
    page = tableview.page("t", '<a data-table="results/small.tsv">1</a>', tables)
    assert unpacked(page, "results/small.tsv") == small.read_bytes()
    shown = unpacked(page, "results/large.tsv").decode()
    assert shown.splitlines()[1] == "G0\t0.1235"
    assert "4 significant digits" in page
    assert page.count('id="dt-js"') == 1 and "ITable" in page
    # The same tables give the same page.
    assert tableview.page("t", "", tables) == tableview.page("t", "", tables)


def test_the_page_holds_its_tables_compressed_and_the_bundle_once(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    table = tmp_path / "de.tsv"
    pd.DataFrame(
        {
            "gene_id": [f"G{i:05d}" for i in range(n)],
            "log2FoldChange": rng.normal(size=n),
            "pvalue": rng.random(n),
        }
    ).to_csv(table, sep="\t", index=False)
    page = tableview.page("t", "<p>body</p>", {"results/de.tsv": (table, "DE")})
    without = tableview.page("t", "<p>body</p>", {})
    # The table adds its gzip bytes in base64 and a few tags, nothing else (no JSON copy).
    added = len(page.encode()) - len(without.encode())
    assert added < len(tableview._packed(table.read_bytes())) + 500
    assert added < 0.7 * table.stat().st_size
    # The DataTables bundle (0.7 MB of JavaScript and CSS) is held compressed.
    assert len(without.encode()) < 350_000


def test_patient_panels_one_per_patient(tmp_path):
    scores = pd.DataFrame(
        {
            "subject": ["P1", "P1", "P2", "P2"],
            "timepoint": ["baseline", "month3"] * 2,
            "score": [9.0, 2.0, 1.0, 1.2],
        }
    )
    changes = pd.DataFrame(
        {
            "subject": ["P1", "P1", "P2", "P2"],
            "timepoint": ["baseline", "month3"] * 2,
            "measure": "CMAS",
            "value": [26.0, 52.0, 10.0, 12.0],
        }
    )
    scaled = patient_view.scaled_measures(changes, SETTINGS["clinical_measures"])
    assert scaled["percent"].tolist() == [50.0, 100.0, pytest.approx(19.23, abs=0.01),
                                          pytest.approx(23.08, abs=0.01)]  # fmt: skip
    path = tmp_path / "patients.png"
    calls = pd.Series({"P1": True, "P2": False})
    patient_view.patient_panels(
        scores, changes, SETTINGS["clinical_measures"], pd.Series({"P1": "tofa"}), calls,
        "R at month3", "RICE", ["baseline", "month3"], path,
    )  # fmt: skip
    width, height = Image.open(path).size
    assert width > height > 100


def test_patient_panels_of_a_large_cohort_show_an_even_spread(tmp_path, monkeypatch):
    subjects = [f"P{i:04d}" for i in range(1000)]
    assert patient_view.shown_subjects(subjects[:96]) == subjects[:96]
    shown = patient_view.shown_subjects(subjects)
    assert len(shown) == patient_view.MAX_PANELS and shown[0] == "P0000"
    assert shown[-1] == "P0999" and shown == sorted(set(shown))
    scores = pd.DataFrame(
        {"subject": np.repeat(subjects[:300], 2), "timepoint": ["baseline", "month3"] * 300}
    ).assign(score=1.0)
    changes = pd.DataFrame(columns=["subject", "timepoint", "measure", "value"])
    figures = []
    monkeypatch.setattr(
        patient_view.plots, "write_figure", lambda fig, *a, **k: figures.append(fig)
    )
    patient_view.patient_panels(
        scores, changes, {}, pd.Series(dtype=str), None, "", "RICE", ["baseline", "month3"],
        tmp_path / "patients.png",
    )  # fmt: skip
    (fig,) = figures
    assert fig._suptitle.get_text().endswith("(96 of 300 patients, evenly spaced by ID)")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 96 and titles[0].startswith("P0000") and titles[-1].startswith("P0299")
