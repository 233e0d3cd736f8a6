"""The shipped demo cohort, read and processed as the workflow's first stages do.

Tests and benchmarks share these set-ups, so a change to how the stages normalize, filter or
score reaches both at once; the functions at the end read a finished run's tables and compare
them with the truth its simulated cohort plants. Paths are those of the repository the
package sits in.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

REPOSITORY: Path = Path(__file__).resolve().parents[2]


def config() -> dict:
    """The repository's ``config/config.yaml``, validated (schema defaults filled in)."""
    import yaml

    from ifnsig.validation import validate_config

    return validate_config(yaml.safe_load((REPOSITORY / "config" / "config.yaml").read_text()))


def read() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo's raw counts (genes x samples) and its sample sheet indexed by sample."""
    counts = pd.read_csv(REPOSITORY / "resources" / "demo" / "counts.tsv.gz", sep="\t", index_col=0)
    samples = pd.read_csv(REPOSITORY / "config" / "samples.tsv", sep="\t", dtype=str)
    return counts, samples.set_index("sample", drop=False)


def filtered_cohort():
    """The demo as the DE stage sees it: (filtered AnnData, design, validated config).

    The design (sheet, clinical table, timepoints) is loaded by ``validation.load_design``,
    whose paths are relative to the repository.
    """
    from ifnsig import data
    from ifnsig.formats import read_count_input
    from ifnsig.validation import load_design

    cwd = Path.cwd()
    os.chdir(REPOSITORY)
    try:
        cfg = config()
        design = load_design(cfg)
        adata = data.build_anndata(
            read_count_input(cfg).counts,
            design.samples,
            design.clinical,
            timepoints=design.timepoints,
        )
    finally:
        os.chdir(cwd)
    filters = cfg["filtering"]
    return data.filter_genes(adata, filters["min_count"], filters["min_samples"]), design, cfg


def score_cohort(counts: pd.DataFrame, samples: pd.DataFrame, cfg: dict, methods: list[str]):
    """Normalize and score a cohort as the normalize and score_ifn stages do, with the
    controls' baseline samples as the score reference.

    Returns (AnnData, matched signatures, reference mask, score table). Library warnings
    of the scoring methods are silenced (the stages log them).
    """
    from ifnsig import data, genesets, scores
    from ifnsig.settings import aliases_file, score_gene_set_files

    adata = data.build_anndata(counts, samples)
    filters = cfg["filtering"]
    adata = data.filter_genes(adata, filters["min_count"], filters["min_samples"])
    data.normalize(adata, n_cpus=1)
    matched, _ = genesets.matched_signatures(
        scores.scored_signatures(cfg["scores"]),
        adata.var["symbol"].astype(str),
        score_gene_set_files(cfg),
        aliases_file(),
        min_genes=cfg["scores"]["min_genes"],
    )
    mask = scores.reference_mask(adata.obs, "controls", "control", "baseline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = scores.score_samples(adata, matched, methods, mask, seed=cfg["seed"])
    return adata, matched, mask, table


def run_table(folder: str | Path, path: str, **where) -> pd.DataFrame:
    """Table ``path`` (TSV) of a finished run in ``folder``; with ``where``, only its rows whose
    columns hold the given values (``signature="RICE2013_6", timepoint="month6"``)."""
    table = pd.read_csv(Path(folder) / path, sep="\t")
    for column, value in where.items():
        table = table[table[column] == value]
    return table


def baseline_positivity(folder: str | Path) -> pd.DataFrame:
    """The baseline patients' positivity calls of the primary score (RICE2013_6, median fold
    change) of a finished run, beside the planted truth (``positive``, ``ifn_high``)."""
    calls = run_table(
        folder,
        "results/scores/ifn_scores.tsv",
        signature="RICE2013_6",
        method="median_fold_change",
        group="patient",
        timepoint="baseline",
    )
    truth = run_table(folder, "inputs/truth_subjects.tsv")[["subject", "ifn_high"]]
    return calls.merge(truth, on="subject")


def planted_de_calls(folder: str | Path, contrast: str, alpha: float = 0.05) -> tuple[float, float]:
    """Of a finished run's DE table of ``contrast``: the genes called (adjusted p below
    ``alpha``) per planted DE gene, and the observed false discovery rate of the calls."""
    truth = run_table(folder, "inputs/truth_genes.tsv")
    table = run_table(folder, f"results/de/{contrast}.tsv").merge(truth, on="gene_id")
    called = table["padj"] < alpha
    false = called & ~table["planted_de"]
    return called.sum() / table["planted_de"].sum(), false.sum() / max(called.sum(), 1)
