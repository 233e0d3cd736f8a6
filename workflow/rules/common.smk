# Validation at parse time, the contrast plan, and input functions.
import sys
from pathlib import Path

# The package lives beside the rules, so the workflow runs from a clone without installing
# it; scripts find it through the workflow/scripts/ifnsig link (Snakemake puts a script's
# folder on sys.path), in any environment: pip, --sdm conda, a cluster node.
sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from ifnsig.de import composition_covariates, contrasts_from_config, uses_responses
from ifnsig.errors import InputError
from ifnsig.qc import marker_table
from ifnsig.validation import check_inputs

# Everything except the count values is checked here, before any job is scheduled; the
# first rule checks the counts in full before writing anything.
try:
    check_inputs(config)
except InputError as err:
    sys.exit(f"Input error: {err}")

CONTRASTS = [c.name for c in contrasts_from_config(config)]


wildcard_constraints:
    contrast="|".join(CONTRASTS) or "NO_CONTRAST",


def all_outputs():
    """Every table and plot of every stage."""
    return [
        "results/data/cohort.h5ad",
        *qc_outputs().values(),
        *score_outputs().values(),
        *expand("results/de/{contrast}.tsv", contrast=CONTRASTS),
        "results/de/normalized_counts.tsv",
        "results/de/vst.tsv",
        *expand(
            "results/plots/de/{contrast}.{plot}.png",
            contrast=CONTRASTS,
            plot=["volcano", "ma", "pvalues", "heatmap"],
        ),
        *expand(
            "results/enrichment/{contrast}.{kind}.tsv",
            contrast=CONTRASTS,
            kind=["prerank", "ora"],
        ),
        *expand(
            "results/plots/enrichment/{contrast}.{plot}.png",
            contrast=CONTRASTS,
            plot=["dotplot", "ifn_running_scores"],
        ),
        *clinical_outputs().values(),
    ]


def score_outputs():
    """Named outputs of the IFN scoring stage."""
    return {
        "scores": "results/scores/ifn_scores.tsv",
        "coverage": "results/scores/geneset_coverage.tsv",
        "obs": "results/scores/cohort_obs.tsv",
        "agreement": "results/scores/method_agreement.tsv",
        "type_contrast": "results/scores/type1_vs_type2.tsv",
        "over_time": "results/plots/scores/ifn_scores_over_time.png",
        "heatmap": "results/plots/scores/signature_heatmap.png",
        "distributions": "results/plots/scores/score_distributions.png",
        "type1_vs_type2": "results/plots/scores/type1_vs_type2.png",
    }


def qc_outputs():
    """Named outputs of the quality-control stage."""
    return {
        "metrics": "results/qc/qc_metrics.tsv",
        "flags": "results/qc/qc_flags.tsv",
        "composition": "results/qc/composition.tsv",
        "composition_changes": "results/qc/composition_changes.tsv",
        "composition_markers": "results/qc/composition_markers.tsv",
        "h5ad": "results/qc/qc.h5ad",
        "multiqc_metrics": "results/qc/qc_metrics_mqc.tsv",
        "multiqc_flags": "results/qc/qc_flags_mqc.yaml",
        "pca": "results/plots/qc/pca.png",
        "correlation": "results/plots/qc/sample_correlation.png",
        "metric_bars": "results/plots/qc/metrics.png",
        "sex": "results/plots/qc/sex_check.png",
        "composition_plot": "results/plots/qc/composition_over_time.png",
    }


def qc_marker_table():
    """The cell-type marker table of the QC stage: the config's, or the shipped one."""
    return str(marker_table(config))


def clinical_outputs():
    """Named outputs of the clinical linkage stage."""
    return {
        "score_changes": "results/clinical/score_changes.tsv",
        "changes": "results/clinical/changes.tsv",
        "response": "results/clinical/response.tsv",
        "paired_tests": "results/clinical/paired_tests.tsv",
        "correlations": "results/clinical/correlations.tsv",
        "baseline_prediction": "results/clinical/baseline_prediction.tsv",
        "mixed_models": "results/clinical/mixed_models.tsv",
        "change_scatter": "results/plots/clinical/change_vs_change.png",
        "trajectories": "results/plots/clinical/trajectories.png",
        "roc": "results/plots/clinical/baseline_score_roc.png",
    }


def sheet_inputs():
    """The user's input files, so that editing one reruns what depends on it."""
    files = {"counts": config["counts"], "samples": config["samples"]}
    if config.get("clinical"):
        files["clinical"] = config["clinical"]
    if config.get("annotation"):
        files["annotation"] = config["annotation"]
    if config["tximport"]["tx2gene"]:
        files["tx2gene"] = config["tximport"]["tx2gene"]
    return files


def de_extra_inputs():
    """What DE jobs read besides the cohort: the clinical table for responder contrasts,
    the QC composition scores when they are covariates."""
    files = {}
    if uses_responses(config) and config.get("clinical"):
        files["clinical"] = config["clinical"]
    if composition_covariates(config):
        files["composition"] = qc_outputs()["composition"]
    return files


def memory_for_inputs(base_mb, per_input_mb):
    """Memory (MB) that grows with the size of a rule's inputs, so large cohorts need no edits."""

    def mem_mb(wildcards, input):
        return int(base_mb + per_input_mb * input.size_mb)

    return mem_mb


def runtime_for_inputs(base_min, per_input_mb_min):
    """Wall time (minutes) that grows with the size of a rule's inputs, like memory_for_inputs.

    Calibrated on the demo cohort (87 samples x 15,000 genes, cohort.h5ad 22 MB): in the
    benchmark files of `snakemake --cores 2` on a loaded 2-core machine,
    differential_expression took 265 s and normalize 62 s; the factors leave several-fold
    headroom so a slow node does not hit the limit.
    """

    def runtime(wildcards, input):
        return int(base_min + per_input_mb_min * input.size_mb)

    return runtime
