"""One function per rule, with the rule's name: read the inputs, call the package, write.

Every stage has the same shape, ``stage(inputs, outputs, settings, threads)``: ``inputs`` and
``outputs`` map the rule's names to paths, ``settings`` is the part of the config the stage
uses (:mod:`ifnsig.settings`, the rule's ``params``). The Snakemake scripts only call these
through :func:`run_script`, so every stage runs (and is tested) without Snakemake too.
Tables are written as tidy TSV with full-precision p-values.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path

import anndata as ad
import pandas as pd

from ifnsig import (
    analyses,
    comparisons,
    data,
    genesets,
    linkage,
    plots,
    response,
    scores,
    set_tests,
    trajectories,
)
from ifnsig import qc as quality
from ifnsig.de import fit as de_fit
from ifnsig.de import plan as de_plan
from ifnsig.enrichment import over_representation, prerank, ranking, restrict_to
from ifnsig.errors import InputError
from ifnsig.formats import read_count_input
from ifnsig.validation import clinical_values, load_samples, read_clinical_table

log = logging.getLogger("ifnsig")

Paths = Mapping[str, str]


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """Tidy TSV; floats with 10 significant digits so reruns give identical bytes."""
    frame.to_csv(path, sep="\t", index=False, float_format="%.10g")


def run_script(snakemake, stage: Callable) -> None:
    """Run ``stage`` from a Snakemake script with logging to the rule's log file.

    The stage gets the rule's named inputs and outputs, its ``params.settings`` and its
    threads. An :class:`InputError` is printed as its one-sentence message (to the terminal
    and the log) instead of a traceback, and the job fails.
    """
    handler = logging.FileHandler(snakemake.log[0], mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        stage(
            inputs=dict(snakemake.input.items()),
            outputs=dict(snakemake.output.items()),
            settings=snakemake.params.settings,
            threads=snakemake.threads,
        )
    except InputError as err:
        log.error("%s", err)
        print(f"\nInput error: {err}\n", file=sys.stderr)
        sys.exit(1)
    except Exception:
        log.error("%s", traceback.format_exc())
        raise


# --- data ------------------------------------------------------------------------------------


def build_anndata(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Check every input (counts in full) and write the raw-count AnnData and the samples."""
    config = {
        **settings,
        "counts": inputs["counts"],
        "samples": inputs["samples"],
        "tximport": {**settings["tximport"], "tx2gene": inputs.get("tx2gene")},
    }
    samples = load_samples(config)
    source = read_count_input(config)
    # Without an annotation table, symbols come from the source when it names them (GTF).
    annotation = (
        data.read_annotation(inputs["annotation"]) if "annotation" in inputs else source.annotation
    )
    adata = data.build_anndata(
        source.counts, samples, annotation=annotation, timepoints=settings["timepoints"]
    )
    log.info("cohort: %d samples x %d genes", adata.n_obs, adata.n_vars)
    write_tsv(samples.reset_index(drop=True), outputs["samples"])
    data.write_h5ad(adata, outputs["counts"])


def geneset_coverage(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Match the scored signatures to the cohort's symbols; a set with no gene fails here."""
    var = quality.read_var(inputs["counts"])
    _, coverage = _matched_signatures(inputs, settings, var["symbol"])
    for row in coverage.itertuples():
        log.info(
            "%s: %d of %d genes found; missing: %s",
            row.gene_set,
            row.n_found,
            row.n_genes,
            row.missing or "none",
        )
    write_tsv(coverage, outputs["coverage"])


def _matched_signatures(
    inputs: Paths, settings: dict, symbols: pd.Series
) -> tuple[dict[str, list[str]], pd.DataFrame]:
    chosen = settings["scores"]
    return genesets.matched_signatures(
        scores.scored_signatures(chosen),
        symbols.astype(str),
        inputs["gene_sets"],
        inputs["aliases"],
        min_genes=chosen["min_genes"],
    )


def normalize(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Filter lowly expressed genes and add size factors, normalized, VST and log-CPM layers."""
    adata = ad.read_h5ad(inputs["counts"])
    filtering = settings["filtering"]
    adata = data.filter_genes(adata, filtering["min_count"], filtering["min_samples"])
    data.normalize(adata, n_cpus=threads)
    data.write_h5ad(adata, outputs["normalized"])


def export_matrices(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Normalized counts and VST values as gene x sample tables with ID and symbol."""
    adata = ad.read_h5ad(inputs["normalized"])
    for layer in ("normalized", "vst"):
        write_tsv(data.layer_table(adata, layer), outputs[layer])


def annotate_cohort(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """The normalized cohort with every IFN score and call and the QC results in obs."""
    adata = ad.read_h5ad(inputs["normalized"])
    qc = ad.read_h5ad(inputs["qc"])
    table = pd.read_csv(inputs["scores"], sep="\t", dtype={"sample": str, "subject": str})
    data.annotate_cohort(adata, table, qc)
    data.write_h5ad(adata, outputs["cohort"])


# --- quality control -------------------------------------------------------------------------


def quality_control(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Library metrics, identity checks, outliers and composition; tables, plots, MultiQC.

    Reads only what it needs from the two ``.h5ad`` files: raw counts of every gene (metrics,
    sex and trait genes) and the VST layer of the filtered genes (PCA, correlations,
    composition).
    """
    from threadpoolctl import threadpool_limits

    markers = quality.read_markers(inputs["markers"])
    with threadpool_limits(limits=threads):
        obs, var, counts = quality.read_layer(inputs["counts"], "X")
        cohort_obs, cohort_var, vst = quality.read_layer(inputs["normalized"], "vst")
        if list(obs.index) != list(cohort_obs.index):
            counts_file, normalized_file = inputs["counts"], inputs["normalized"]
            raise ValueError(f"{counts_file} and {normalized_file} hold different samples")
        samples = cohort_obs.assign(sample=cohort_obs.index.astype(str))
        result = quality.run_qc(
            counts,
            var["symbol"],
            vst,
            cohort_var["symbol"],
            samples,
            cohort_obs["size_factor"].to_numpy(),
            markers,
            quality.QCSettings.from_config(settings),
            timepoints=settings["timepoints"],
            patient_group=settings["groups"]["patient"],
            seed=settings["seed"],
        )
    write_tsv(result.samples, outputs["metrics"])
    write_tsv(result.flags, outputs["flags"])
    write_tsv(result.composition, outputs["composition"])
    facts = analyses.Facts(len(settings["timepoints"]), False, False, False)
    analyses.log_missing("quality_control", facts)
    if "composition_changes" in outputs:
        write_tsv(result.composition_changes, outputs["composition_changes"])
    write_tsv(result.composition_coverage, outputs["composition_markers"])
    quality.write_multiqc(result, outputs["multiqc_metrics"], outputs["multiqc_flags"])
    summary = quality.qc_anndata(result, samples, vst, cohort_var)
    summary.write_h5ad(outputs["h5ad"], compression="gzip")

    status = quality.flag_status(result)
    colors = ["timepoint", "group", "batch", "drug", *status.columns.drop("sample")]
    plots.pca(result.pca, result.pca_variance_ratio, summary.obs, colors, outputs["pca"])
    plots.qc_correlation_heatmap(
        result.correlation, samples, set(result.flags["sample"]), outputs["correlation"]
    )
    plots.qc_metric_bars(
        result.samples[["sample", *quality.METRICS]],
        result.bounds,
        result.flags,
        outputs["metric_bars"],
    )
    plots.qc_sex(quality.sex_table(result, samples), outputs["sex"])
    plots.composition_over_time(
        result.composition,
        samples,
        settings["timepoints"],
        settings["groups"]["patient"],
        result.composition_changes,
        outputs["composition_plot"],
    )


# --- IFN scores ------------------------------------------------------------------------------


def score_ifn(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """IFN scores of every signature and method with positivity, agreement and plots."""
    chosen = settings["scores"]
    adata = ad.read_h5ad(inputs["normalized"])
    matched, _ = _matched_signatures(inputs, settings, adata.var["symbol"])
    reference = scores.reference_mask(
        adata.obs, chosen["reference"], settings["groups"]["control"], settings["timepoints"][0]
    )
    log.info(
        "IFN-score reference: %d samples, %s",
        reference.sum(),
        scores.REFERENCE_LABELS[chosen["reference"]],
    )
    table = scores.score_samples(
        adata,
        matched,
        chosen["methods"],
        reference,
        chosen["positivity_sd"],
        seed=settings["seed"],
        threads=threads,
        reference_group=chosen["reference"],
    )
    type2 = chosen["type2_signature"]
    contrast = scores.type_contrast(table, type2)
    write_tsv(table, outputs["scores"])
    write_tsv(scores.annotate_obs(adata.obs, table).reset_index(), outputs["obs"])
    if "agreement" in outputs:
        write_tsv(scores.method_agreement(table), outputs["agreement"])
    if "type_contrast" in outputs:
        write_tsv(contrast, outputs["type_contrast"])
    primary = chosen["primary_signature"], chosen["primary_method"]
    timepoints = settings["timepoints"]
    samples = adata.obs.assign(sample=adata.obs_names.astype(str))
    comparison = comparisons.score_comparison(chosen["compare"], settings["groups"], samples)
    compared = comparison if isinstance(comparison, comparisons.ScoreComparison) else None
    facts = analyses.Facts(
        len(timepoints),
        False,
        False,
        False,
        comparison="" if compared else comparison,
        n_methods=len(chosen["methods"]),
        type2=bool(type2),
    )
    analyses.log_missing("score_ifn", facts)
    if "group_comparison" in outputs and compared is not None:
        log.info("IFN scores compared between groups: %s", compared.describe())
        tests = comparisons.group_score_tests(
            table, samples, compared, timepoints, settings["linkage"]["confidence"]
        )
        write_tsv(tests, outputs["group_comparison"])
    levels = None
    if compared is not None and compared.column != "group":
        levels = samples.set_index("sample")[compared.column].astype(str)
        levels = levels[levels.isin([compared.test, compared.reference])]
    groups = settings["groups"]
    plots.scores_over_time(table, timepoints, *primary, outputs["over_time"], groups, levels)
    plots.signature_heatmap(adata, matched, table, *primary, type2, outputs["heatmap"])
    plots.score_distributions(table, timepoints, outputs["distributions"], groups, levels)
    if "type1_vs_type2" in outputs:
        plots.type1_vs_type2(contrast, *primary, outputs["type1_vs_type2"])


# --- differential expression -----------------------------------------------------------------


def differential_expression(
    inputs: Paths, outputs: Paths, settings: dict, threads: int = 1
) -> None:
    """Fit every planned design once; write one table per contrast and the samples fitted.

    Besides the cohort, ``inputs`` may hold the response calls (``responses``, for
    responder contrasts), the clinical table (``clinical``, for clinical covariates) and
    the QC composition scores (``composition``, when a covariate is one of them).
    """
    adata = ad.read_h5ad(inputs["normalized"])
    samples = de_plan.cohort_samples(adata.obs, inputs.get("composition"))
    clinical = None
    if "clinical" in inputs:
        names = set(pd.read_csv(inputs["clinical"], sep="\t", nrows=0).columns)
        wanted = [c for c in settings["de"]["covariates"] if c in names]
        clinical = clinical_values(inputs["clinical"], wanted)
    responses = (
        pd.read_csv(inputs["responses"], sep="\t", dtype=str) if "responses" in inputs else None
    )
    de_settings = settings["de"]
    for fit in de_plan.plan_fits(samples, settings, clinical, responses):
        results = de_fit.run_fit(
            adata,
            fit,
            samples,
            alpha=de_settings["alpha"],
            n_cpus=threads,
            inference=de_settings["inference"],
            blocked_min_subjects=de_settings["blocked_min_subjects"],
            shrink_max_coefficients=de_settings["shrink_max_coefficients"],
            wald_distribution=de_settings["wald_distribution"],
        )
        fitted = de_plan.fitted_samples(fit, samples)
        for name, table in results.items():
            write_tsv(table, outputs[name])
            write_tsv(fitted, outputs[f"{name}.samples"])


def plot_de(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Volcano (primary signature labelled), MA, p-value histogram and top-gene heatmap."""
    table = pd.read_csv(inputs["de"], sep="\t")
    alpha = settings["de"]["alpha"]
    sets = genesets.load_gene_sets(inputs["gene_sets"])
    highlight = list(sets.get(settings["scores"]["primary_signature"], []))
    plots.volcano(table, outputs["volcano"], highlight=highlight, alpha=alpha)
    plots.ma_plot(table, outputs["ma"], alpha=alpha)
    plots.pvalue_histogram(table, outputs["pvalues"])
    fitted = pd.read_csv(inputs["samples"], sep="\t", dtype=str)
    groups = de_plan.compared_levels(fitted)
    adata = ad.read_h5ad(inputs["normalized"])
    plots.top_gene_heatmap(adata, table, groups, outputs["heatmap"])


# --- enrichment ------------------------------------------------------------------------------


def enrichment_sets(inputs: Paths, settings: dict) -> dict[str, list[str]]:
    """The enrichment's gene sets: the GMT inputs, and the Li 2014 blood modules if asked."""
    sets = dict(genesets.load_gene_sets(inputs["gene_sets"]))
    if settings["enrichment"]["blood_modules"]:
        for name, genes in genesets.li2014_modules().items():
            sets.setdefault(name, genes)
    return sets


def enrichment(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Correlation-aware set tests on the samples, prerank GSEA on the Wald statistic and ORA
    of significant genes, local gene sets only.

    ``inputs["de"]`` is ``results/de/<table>.tsv``: the table's name (its contrast) comes from
    that path, its fitted samples from ``inputs["samples"]``, the VST values from
    ``inputs["normalized"]``.
    """
    table = pd.read_csv(inputs["de"], sep="\t")
    chosen = settings["enrichment"]
    aliases = genesets.read_aliases(inputs["aliases"])
    sets = restrict_to(enrichment_sets(inputs, settings), set(table["symbol"].astype(str)), aliases)

    name = Path(inputs["de"]).name.removesuffix(".tsv")
    contrast, within_group = de_plan.table_contrasts(settings)[name]
    fitted = pd.read_csv(inputs["samples"], sep="\t", dtype=str)
    comparison = set_tests.comparison_for(contrast, within_group, fitted, settings["timepoints"])
    obs, var, vst = quality.read_layer(inputs["normalized"], "vst")
    values = pd.DataFrame(vst, index=obs.index.astype(str), columns=var.index.astype(str))
    scores_by_set, n_genes = set_tests.set_scores(
        values, var["symbol"].astype(str), sets, chosen["min_size"], chosen["max_size"]
    )
    tested = set_tests.set_tests(
        scores_by_set,
        n_genes,
        comparison,
        permutations=chosen["set_test_permutations"],
        seed=settings["seed"],
    )
    log.info(
        "%s: %s over %d sets (%d subjects or units), %d at FDR < 0.05",
        name,
        comparison.kind,
        len(tested),
        int(tested["n"].max()) if len(tested) else 0,
        int((tested["fdr"] < 0.05).sum()),
    )
    write_tsv(tested, outputs["set_tests"])
    result = prerank(
        ranking(table),
        sets,
        permutations=chosen["permutations"],
        min_size=chosen["min_size"],
        max_size=chosen["max_size"],
        seed=settings["seed"],
        threads=threads,
    )
    write_tsv(result, outputs["prerank"])
    ora = over_representation(
        table, sets, alpha=settings["de"]["alpha"], min_size=chosen["min_size"]
    )
    write_tsv(ora, outputs["ora"])
    plots.enrichment_dotplot(result, outputs["dotplot"])
    shipped = genesets.load_gene_sets(inputs["gene_sets"][0])
    plots.running_scores(result, genesets.ifn_sets(shipped)[:6], outputs["running_scores"])


# --- clinical ----------------------------------------------------------------------------------


def call_responses(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Changes of the clinical measures from baseline and the response calls, traced.

    A cohort with response definitions and no measures (calls from a column of the
    clinical table) gets its calls and no change table.
    """
    samples = pd.read_csv(inputs["samples"], sep="\t", dtype=str)
    has_clinical = "clinical" in inputs
    facts = analyses.Facts(
        n_timepoints=len(settings["timepoints"]),
        measures=has_clinical and bool(settings["clinical_measures"]),
        responses=bool(settings["linkage"]["responses"]),
        groups=False,
    )
    analyses.log_missing("call_responses", facts)
    if not has_clinical:
        return
    clinical = read_clinical_table(inputs["clinical"], samples, settings)
    changes, calls = response.clinical_responses(clinical, settings, inputs["clinical"])
    if "changes" in outputs:
        write_tsv(changes, outputs["changes"])
    if "response" in outputs:
        write_tsv(calls, outputs["response"])


def _primary_response(responses: pd.DataFrame, primary: str | None) -> str:
    names = list(dict.fromkeys(responses["response"]))
    return primary or (names[0] if names else "")


def clinical_linkage(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Score changes and every test linking the IFN score to the clinical course.

    ``changes`` (clinical changes) and ``response`` (response calls) are inputs only when
    the cohort has clinical measures and response definitions; the outputs that need them,
    or a follow-up, are then left out (:mod:`ifnsig.analyses`), and the log says why.
    """
    table = pd.read_csv(inputs["scores"], sep="\t", dtype={"subject": str, "sample": str})
    samples = pd.read_csv(inputs["samples"], sep="\t", dtype=str)
    if "changes" in inputs:
        measure_change = pd.read_csv(inputs["changes"], sep="\t", dtype={"subject": str})
    else:
        measure_change = response.empty_tables()[0]
    if "response" in inputs:
        responses = response.read_calls(inputs["response"])
    else:
        responses = response.empty_tables()[1]
    timepoints = settings["timepoints"]
    chosen = settings["linkage"]
    facts = analyses.Facts(
        n_timepoints=len(timepoints),
        measures="changes" in inputs,
        responses="response" in inputs,
        groups="response" in inputs or bool(chosen["groups"]),
    )
    analyses.log_missing("clinical_linkage", facts)
    measures = settings["clinical_measures"] if "changes" in inputs else {}
    seed, n_boot, level = settings["seed"], chosen["bootstrap"], chosen["confidence"]
    patient = settings["groups"]["patient"]
    clinical = response.measure_values(measure_change, measures)
    score_change = linkage.score_changes(table, timepoints, patient)
    signature = settings["scores"]["primary_signature"]
    method = settings["scores"]["primary_method"]
    names = chosen["covariates"]
    if names:
        # Glucocorticoids suppress ISG expression themselves, so dose is a covariate of note.
        log.info("covariates of the logistic and mixed models: %s", ", ".join(names))
    covariates = linkage.covariate_values(samples, clinical, names)

    def wanted(name: str) -> bool:
        return name in outputs

    if wanted("score_changes"):
        write_tsv(score_change, outputs["score_changes"])
    if wanted("paired_tests"):
        paired = linkage.paired_tests(score_change, timepoints, n_boot, level, seed)
        write_tsv(paired, outputs["paired_tests"])
    if wanted("correlations"):
        correlations = linkage.change_correlations(
            score_change, measure_change, timepoints, n_boot, level, seed
        )
        write_tsv(correlations, outputs["correlations"])
    if wanted("baseline_prediction"):
        prediction = linkage.baseline_prediction(
            score_change, responses, timepoints, covariates, names, level
        )
        write_tsv(prediction, outputs["baseline_prediction"])
    if wanted("mixed_models"):
        models = linkage.mixed_models(
            table, clinical, measures, timepoints, patient, covariates, names, level
        )
        write_tsv(models, outputs["mixed_models"])

    primary = _primary_response(responses, chosen["primary_response"])
    calls = None
    if primary:
        calls, _ = response.primary_calls(responses, primary, timepoints[-1])
        log.info("responders and non-responders: %s as judged at %s", primary, timepoints[-1])
    groups = trajectories.groupings(samples, chosen["groups"], patient, calls, primary)
    if wanted("trajectory_within"):
        within = trajectories.within_group_tests(score_change, groups, timepoints, level)
        write_tsv(within, outputs["trajectory_within"])
    if wanted("trajectory_between"):
        between = trajectories.between_group_tests(score_change, groups, timepoints, level)
        write_tsv(between, outputs["trajectory_between"])
    if wanted("trajectory_models"):
        interaction = trajectories.interaction_models(
            table, groups, timepoints, patient, covariates, names, level
        )
        write_tsv(interaction, outputs["trajectory_models"])
    normalisation = trajectories.time_to_normalisation(
        table, timepoints, patient, signature, method
    )
    if wanted("normalisation"):
        labelled = normalisation.copy()
        for grouping in groups:
            labelled[grouping.name] = labelled["subject"].map(grouping.labels)
        write_tsv(labelled, outputs["normalisation"])
    if wanted("normalisation_tests"):
        tests = trajectories.normalisation_tests(normalisation, groups, timepoints, level)
        write_tsv(tests, outputs["normalisation_tests"])

    label = f"{primary} at {timepoints[-1]}" if primary else ""
    if wanted("change_scatter"):
        plotted = [m for m in measures if m in set(measure_change["measure"])][:4]
        plots.change_scatter(
            score_change,
            measure_change,
            signature,
            method,
            plotted,
            timepoints[-1],
            outputs["change_scatter"],
            calls=calls,
            response=label,
        )
    if wanted("trajectories"):
        plots.clinical_trajectories(
            score_change,
            clinical,
            measures,
            signature,
            method,
            timepoints,
            outputs["trajectories"],
            calls=calls,
            response=label,
        )
    if wanted("trajectories_by_group"):
        plots.group_trajectories(
            score_change, groups, signature, method, timepoints, outputs["trajectories_by_group"]
        )
    if wanted("roc"):
        plots.response_roc(
            score_change, responses, signature, method, timepoints[-1], outputs["roc"]
        )


__all__ = [
    "build_anndata",
    "call_responses",
    "clinical_linkage",
    "differential_expression",
    "enrichment",
    "export_matrices",
    "geneset_coverage",
    "normalize",
    "plot_de",
    "quality_control",
    "run_script",
    "score_ifn",
    "write_tsv",
]
