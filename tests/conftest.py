"""Shared fixtures: paths to the reference data and small simulated cohorts."""

from __future__ import annotations

from pathlib import Path

import pytest

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
