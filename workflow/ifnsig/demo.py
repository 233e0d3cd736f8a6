"""The shipped demo cohort, read and processed as the workflow's first stages do.

Tests and benchmarks share these set-ups, so a change to how the stages normalize, filter or
score reaches both at once. Paths are those of the repository the package sits in.
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
