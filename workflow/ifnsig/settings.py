"""The settings each stage reads from the configuration: one table, one place.

Every rule receives its stage's settings as ``params`` (a plain, sorted dict, so Snakemake
records it and reruns the job when one of them changes) and nothing else of the config: a
stage that reads a key not listed here fails with a ``KeyError`` in its tests. Files are
never settings: a path the job reads is an ``input`` (counts, sheets, gene sets, markers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The keys that plan the DE fits (designs, samples, backend, gene shards): read by the DE
#: rule and by each job of the DE split by genes.
_DE_PLAN: tuple[str, ...] = (
    "de.covariates",
    "de.inference",
    "de.blocked_min_subjects",
    "de.keep_unpaired_subjects",
    "de.contrasts",
    "de.shards",
    "timepoints",
    "groups.patient",
)

#: Stage (rule) -> the config keys it uses, dotted for nested keys.
STAGE_SETTINGS: dict[str, tuple[str, ...]] = {
    "build_anndata": (
        "counts_format",
        "tximport.counts_from_abundance",
        "h5ad",
        "timepoints",
        "groups",
        "exclude_samples",
    ),
    "geneset_coverage": (
        "scores.signatures",
        "scores.type2_signature",
        "scores.modules",
        "scores.min_genes",
    ),
    "filter_genes": ("filtering.min_count", "filtering.min_samples"),
    "normalize": (),
    "quality_control": (
        "qc.metric_mads",
        "qc.thresholds",
        "qc.trait_min_gap",
        "qc.trait_min_log2",
        "qc.n_top_genes",
        "qc.n_pcs",
        "qc.outlier_support",
        "qc.outlier_alpha",
        "qc.correlation_mads",
        "tissue",
        "timepoints",
        "groups.patient",
        "seed",
    ),
    "score_ifn": (
        "scores.signatures",
        "scores.methods",
        "scores.type2_signature",
        "scores.min_genes",
        "scores.reference",
        "scores.positivity_sd",
        "scores.positivity_rule",
        "scores.positivity_fallback",
        "scores.positivity_quantile",
        "scores.modules",
        "scores.module_active_percent",
        "scores.reference_max_missing",
        "scores.primary_signature",
        "scores.primary_method",
        "scores.compare",
        "linkage.confidence",
        "timepoints",
        "groups",
        "seed",
    ),
    "differential_expression": (
        *_DE_PLAN,
        "de.alpha",
        "de.shrink_max_coefficients",
        "de.wald_distribution",
        "de.size_factor_genes",
    ),
    # de.shards: the jobs of the DE split by genes (ifnsig.de.shards).
    "de_size_factors": (*_DE_PLAN, "de.size_factor_genes"),
    "de_genewise_dispersions": _DE_PLAN,
    "de_dispersion_prior": _DE_PLAN,
    "de_shard_tests": (*_DE_PLAN, "de.alpha", "de.wald_distribution"),
    "plot_de": ("de.alpha", "scores.primary_signature"),
    "export_matrices": (),
    "annotate_cohort": (),
    "enrichment": (
        "enrichment.blood_modules",
        "enrichment.permutations",
        "enrichment.set_test_permutations",
        "enrichment.min_size",
        "enrichment.max_size",
        "de.alpha",
        "de.contrasts",
        "timepoints",
        "groups.patient",
        "seed",
    ),
    "call_responses": ("clinical_measures", "linkage.responses", "timepoints"),
    "clinical_linkage": (
        "clinical_measures",
        "linkage.primary_response",
        "linkage.groups",
        "linkage.covariates",
        "linkage.bootstrap",
        "linkage.confidence",
        "scores.primary_signature",
        "scores.primary_method",
        "timepoints",
        "groups.patient",
        "seed",
    ),
    "summarize_findings": (
        "clinical_measures",
        "de.alpha",
        "findings.top_gene_sets",
        "groups",
        "linkage.primary_response",
        "scores.positivity_sd",
        "scores.primary_method",
        "scores.primary_signature",
        "scores.reference",
        "timepoints",
    ),
}


#: Keys a stage reads only when one of its keys has a given value: (key, value) -> keys.
#: With ``de.size_factor_genes: exclude_signatures`` the size factors leave out the genes of
#: the scored signatures, so the stages computing them read which signatures are scored
#: (and rerun when they change); with any other value an edit of the signatures leaves them.
WHEN_SETTINGS: dict[tuple[str, str], tuple[str, ...]] = {
    ("de.size_factor_genes", "exclude_signatures"): (
        "scores.signatures",
        "scores.type2_signature",
        "scores.modules",
    ),
}


def _value(config: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        config = config[key]
    return config


def stage_keys(config: dict, stage: str) -> tuple[str, ...]:
    """The config keys ``stage`` reads with this ``config``: its :data:`STAGE_SETTINGS` and
    the :data:`WHEN_SETTINGS` its values call for."""
    keys = STAGE_SETTINGS[stage]
    extra = [
        key
        for (when, value), wanted in WHEN_SETTINGS.items()
        if when in keys and _value(config, when) == value
        for key in wanted
    ]
    return tuple(dict.fromkeys([*keys, *extra]))


def _sorted(value: Any) -> Any:
    """Mappings with sorted keys, recursively: the same settings give the same record."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def stage_settings(config: dict, stage: str) -> dict:
    """The part of the validated ``config`` that ``stage`` uses, shaped like the config.

    ``stage_settings(config, "filter_genes")`` is ``{"filtering": {"min_count": 10,
    "min_samples": 3}}``: stage code indexes it exactly as it would index the config.
    """
    picked: dict = {}
    for dotted in stage_keys(config, stage):
        *parents, leaf = dotted.split(".")
        source, target = config, picked
        for key in parents:
            source = source[key]
            target = target.setdefault(key, {})
        target[leaf] = source[leaf]
    return _sorted(picked)


# --- the files each stage reads (the rules' inputs) ---------------------------------------------


def sheet_files(config: dict) -> dict[str, str]:
    """What the first rule reads: counts, sample sheet, optional annotation and tx2gene."""
    files = {"counts": config["counts"], "samples": config["samples"]}
    if config.get("annotation"):
        files["annotation"] = config["annotation"]
    if config["tximport"].get("tx2gene"):
        files["tx2gene"] = config["tximport"]["tx2gene"]
    return files


def score_gene_set_files(config: dict) -> list[str]:
    """The GMT files of the IFN scores: the shipped one first, then the user's."""
    from ifnsig.genesets import SHIPPED_GMT

    return [str(SHIPPED_GMT), *config["scores"]["gene_sets"]]


def frozen_reference_files(config: dict) -> dict[str, str]:
    """The files of the saved IFN-score reference the scores use (none without one)."""
    from ifnsig.reference import FILES

    folder = config["scores"].get("frozen_reference")
    if not folder:
        return {}
    return {f"reference_{key}": str(Path(folder) / name) for key, name in FILES.items()}


def enrichment_gene_set_files(config: dict) -> list[str]:
    """The GMT files of the enrichment: the shipped one first, then the user's."""
    from ifnsig.genesets import SHIPPED_GMT

    return [str(SHIPPED_GMT), *config["enrichment"]["gene_sets"]]


def size_factor_gene_files(config: dict) -> dict[str, str | list[str]]:
    """What the DE's size factors read besides the cohort (``de.size_factor_genes``): the
    score GMT files and the alias table to match the scored signatures, or the gene list and
    the alias table; nothing for ``all``."""
    from ifnsig.de.size_factors import EXCLUDE_SIGNATURES, is_gene_list

    setting = config["de"]["size_factor_genes"]
    if setting == EXCLUDE_SIGNATURES:
        return {"gene_sets": score_gene_set_files(config), "aliases": aliases_file()}
    if is_gene_list(setting):
        return {"size_factor_genes": setting, "aliases": aliases_file()}
    return {}


def aliases_file() -> str:
    """The shipped table of renamed gene symbols."""
    from ifnsig.genesets import SHIPPED_ALIASES

    return str(SHIPPED_ALIASES)


def marker_file(config: dict) -> str | None:
    """The cell-type marker table of the QC stage: the config's, or the shipped blood panel
    for blood (other tissues without a table of their own get no composition scores)."""
    from ifnsig.qc import SHIPPED_MARKERS

    if config["qc"]["markers"]:
        return config["qc"]["markers"]
    return str(SHIPPED_MARKERS) if is_blood(config) else None


#: ``tissue`` values read as whole blood, after lower-casing and reading ``_``/``-`` as spaces.
BLOOD_NAMES = ("blood", "whole blood", "peripheral blood")


def is_blood(config: dict) -> bool:
    """Whether the samples are blood (``tissue``), for the blood-specific QC."""
    tissue = str(config.get("tissue", "blood")).lower().replace("_", " ").replace("-", " ")
    return " ".join(tissue.split()) in BLOOD_NAMES
