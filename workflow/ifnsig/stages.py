"""One function per workflow stage: read the stage's inputs, call the package, write outputs.

The Snakemake scripts only call these, so every stage runs (and is tested) without
Snakemake too. Tables are written as tidy TSV with full-precision p-values.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig import clinical as clin
from ifnsig import data, de, enrichment, genesets, plots, scores
from ifnsig import qc as quality
from ifnsig.errors import InputError
from ifnsig.formats import read_count_input
from ifnsig.validation import load_design

log = logging.getLogger("ifnsig")


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """Tidy TSV; floats with 10 significant digits so reruns give identical bytes."""
    frame.to_csv(path, sep="\t", index=False, float_format="%.10g")


def run_script(snakemake, stage: Callable, **kwargs) -> None:
    """Run ``stage`` from a Snakemake script with logging to the rule's log file.

    An :class:`InputError` is printed as its one-sentence message (to the terminal and the
    log) instead of a traceback, and the job fails.
    """
    handler = logging.FileHandler(snakemake.log[0], mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        stage(**kwargs)
    except InputError as err:
        log.error("%s", err)
        print(f"\nInput error: {err}\n", file=sys.stderr)
        sys.exit(1)
    except Exception:
        log.error("%s", traceback.format_exc())
        raise


def build_anndata(config: dict, output: str) -> None:
    """Validate every input (counts in full) and write the raw-count AnnData."""
    design = load_design(config)
    source = read_count_input(config)
    # Without an annotation table, symbols come from the source when it names them (GTF).
    annotation = (
        data.read_annotation(config["annotation"])
        if config.get("annotation")
        else source.annotation
    )
    adata = data.build_anndata(
        source.counts, design.samples, design.clinical, annotation, timepoints=design.timepoints
    )
    log.info("cohort: %d samples x %d genes", adata.n_obs, adata.n_vars)
    # A signature with none of its genes in the data fails here, before any heavy rule.
    signatures_for(config, adata)
    data.write_h5ad(adata, output)


def normalize(config: dict, input_h5ad: str, output: str, threads: int = 1) -> None:
    """Filter lowly expressed genes and add size factors, normalized, VST and log-CPM layers."""
    adata = ad.read_h5ad(input_h5ad)
    adata = data.filter_genes(
        adata, config["filtering"]["min_count"], config["filtering"]["min_samples"]
    )
    data.normalize(adata, n_cpus=threads)
    data.write_h5ad(adata, output)


def qc(
    config: dict,
    counts_h5ad: str,
    cohort_h5ad: str,
    outputs: dict[str, str],
    markers_tsv: str | None = None,
    threads: int = 1,
) -> None:
    """Library metrics, identity checks, outliers and composition; tables, plots, MultiQC.

    Reads only what it needs from the two ``.h5ad`` files: raw counts of every gene (metrics,
    sex and trait genes) and the VST layer of the filtered genes (PCA, correlations,
    composition). ``markers_tsv`` defaults to ``qc.markers`` or the shipped marker table.
    """
    from threadpoolctl import threadpool_limits

    settings = config["qc"]
    markers = quality.read_markers(markers_tsv or settings["markers"] or quality.SHIPPED_MARKERS)
    with threadpool_limits(limits=threads):
        _qc(config, counts_h5ad, cohort_h5ad, outputs, markers)


def _qc(
    config: dict,
    counts_h5ad: str,
    cohort_h5ad: str,
    outputs: dict[str, str],
    markers: dict[str, list[str]],
) -> None:
    obs, var, counts = quality.read_layer(counts_h5ad, "counts")
    cohort_obs, cohort_var, vst = quality.read_layer(cohort_h5ad, "vst")
    if list(obs.index) != list(cohort_obs.index):
        raise ValueError(f"{counts_h5ad} and {cohort_h5ad} hold different samples; rerun both")
    samples = cohort_obs.assign(sample=cohort_obs.index.astype(str))
    result = quality.run_qc(
        counts,
        var["symbol"],
        vst,
        cohort_var["symbol"],
        samples,
        cohort_obs["size_factor"].to_numpy(),
        markers,
        quality.QCSettings.from_config(config),
        timepoints=config["timepoints"],
        patient_group=config["groups"]["patient"],
        seed=config["seed"],
    )
    write_tsv(result.samples, outputs["metrics"])
    write_tsv(result.flags, outputs["flags"])
    write_tsv(result.composition, outputs["composition"])
    write_tsv(result.composition_changes, outputs["composition_changes"])
    write_tsv(result.composition_coverage, outputs["composition_markers"])
    quality.write_multiqc(result, outputs["multiqc_metrics"], outputs["multiqc_flags"])

    status = quality.flag_status(result)
    per_sample = samples.reset_index(drop=True).drop(columns="sample")
    qc_obs = pd.concat(
        [
            per_sample,
            result.samples.drop(columns=["sample", "subject", "size_factor"]),
            result.composition.drop(columns="sample"),
            status.drop(columns="sample"),
        ],
        axis=1,
    ).set_index(samples.index)
    for column in qc_obs.columns:
        if qc_obs[column].dtype == object:
            qc_obs[column] = qc_obs[column].astype(str)
    # obs only (no expression matrix): the QC view of the cohort for scanpy, e.g.
    # sc.pl.pca(ad.read_h5ad("results/qc/quality.h5ad"), color="qc_pairing").
    summary = ad.AnnData(obs=qc_obs)
    summary.obsm["X_pca"] = result.pca
    summary.uns["pca"] = {"variance_ratio": result.pca_variance_ratio}
    summary.write_h5ad(outputs["h5ad"], compression="gzip")

    flagged = set(result.flags["sample"])
    colors = ["timepoint", "group", "batch", "drug", *status.columns.drop("sample")]
    plots.pca(result.pca, result.pca_variance_ratio, qc_obs, colors, outputs["pca"])
    plots.qc_correlation_heatmap(result.correlation, samples, flagged, outputs["correlation"])
    plots.qc_metric_bars(
        result.samples[["sample", *quality.METRICS]],
        result.bounds,
        result.flags,
        outputs["metric_bars"],
    )
    sex = result.samples.assign(
        declared_sex=samples["sex"].astype(str).to_numpy() if "sex" in samples else ""
    )
    plots.qc_sex(sex, outputs["sex"])
    plots.composition_over_time(
        result.composition,
        samples,
        config["timepoints"],
        config["groups"]["patient"],
        result.composition_changes,
        outputs["composition_plot"],
    )


def signatures_for(config: dict, adata: ad.AnnData) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """The configured signatures (and the type II one) matched to the cohort's symbols.

    A signature with none of its genes in the data raises an InputError naming it; one
    with fewer than ``scores.min_genes`` found warns with the count.
    """
    settings = config["scores"]
    names = list(settings["signatures"])
    if settings.get("type2_signature"):
        names = list(dict.fromkeys([*names, settings["type2_signature"]]))
    paths = [genesets.SHIPPED_GMT, *settings["gene_sets"]]
    sets = genesets.load_gene_sets(paths, include=names)
    aliases = genesets.read_aliases(genesets.SHIPPED_ALIASES)
    return genesets.match_gene_sets(
        sets, adata.var["symbol"].astype(str), aliases, min_genes=settings.get("min_genes", 3)
    )


def score_ifn(config: dict, input_h5ad: str, outputs: dict[str, str], threads: int = 1) -> None:
    """IFN scores of every signature and method with positivity, agreement and plots.

    ``outputs`` names the files: ``scores``, ``coverage``, ``obs``, ``agreement``,
    ``type_contrast`` (tables) and ``over_time``, ``heatmap``, ``distributions``,
    ``type1_vs_type2`` (plots).
    """
    settings = config["scores"]
    adata = ad.read_h5ad(input_h5ad)
    # Gene sets first: a set absent from the data fails before any score is computed.
    matched, coverage = signatures_for(config, adata)
    for row in coverage.itertuples():
        log.info(
            "%s: %d of %d genes found; missing: %s",
            row.gene_set,
            row.n_found,
            row.n_genes,
            row.missing or "none",
        )
    reference = scores.reference_mask(
        adata.obs, settings["reference"], config["groups"]["control"], config["timepoints"][0]
    )
    label = scores.REFERENCE_LABELS[settings["reference"]]
    log.info("IFN-score reference: %d samples, %s", reference.sum(), label)
    table = scores.score_samples(
        adata,
        matched,
        settings["methods"],
        reference,
        settings["positivity_sd"],
        seed=config["seed"],
        threads=threads,
        reference_group=settings["reference"],
    )
    type2 = settings.get("type2_signature")
    contrast = scores.type_contrast(table, type2)
    write_tsv(table, outputs["scores"])
    write_tsv(coverage, outputs["coverage"])
    write_tsv(scores.annotate_obs(adata.obs, table).reset_index(), outputs["obs"])
    write_tsv(scores.method_agreement(table), outputs["agreement"])
    write_tsv(contrast, outputs["type_contrast"])
    primary = settings["primary_signature"], settings["primary_method"]
    plots.scores_over_time(table, config["timepoints"], *primary, outputs["over_time"])
    plots.signature_heatmap(adata, matched, table, *primary, type2, outputs["heatmap"])
    plots.score_distributions(table, config["timepoints"], outputs["distributions"])
    plots.type1_vs_type2(contrast, *primary, outputs["type1_vs_type2"])


def differential_expression(
    config: dict,
    input_h5ad: str,
    outputs: dict[str, str],
    threads: int = 1,
    composition_tsv: str | None = None,
) -> None:
    """Fit every planned design once and write one table per contrast.

    ``composition_tsv`` is the QC stage's composition table, needed when a covariate is
    one of its scores.
    """
    adata = ad.read_h5ad(input_h5ad)
    samples = _de_samples(adata, composition_tsv)
    for fit in de.plan_fits(samples, config, _clinical_for_de(config)):
        results = de.run_fit(
            adata,
            fit,
            samples,
            alpha=config["de"]["alpha"],
            n_cpus=threads,
            inference=config["de"]["inference"],
            blocked_min_subjects=config["de"]["blocked_min_subjects"],
            shrink_max_coefficients=config["de"]["shrink_max_coefficients"],
        )
        for name, table in results.items():
            write_tsv(table, outputs[name])


def plot_de(
    config: dict,
    de_tsv: str,
    input_h5ad: str,
    contrast: str,
    outputs: dict,
    composition_tsv: str | None = None,
) -> None:
    """Volcano (IFN genes labelled), MA, p-value histogram and top-gene heatmap."""
    table = pd.read_csv(de_tsv, sep="\t")
    alpha = config["de"]["alpha"]
    sets = genesets.load_gene_sets([genesets.SHIPPED_GMT, *config["scores"]["gene_sets"]])
    highlight = list(sets.get(config["scores"]["primary_signature"], []))
    plots.volcano(table, outputs["volcano"], highlight=highlight, alpha=alpha)
    plots.ma_plot(table, outputs["ma"], alpha=alpha)
    plots.pvalue_histogram(table, outputs["pvalues"])
    adata = ad.read_h5ad(input_h5ad)
    samples = _de_samples(adata, composition_tsv)
    fits = de.plan_fits(samples, config, _clinical_for_de(config))
    fit = next(f for f in fits if contrast in {c.name for c in f.contrasts})
    # Response contrasts compare a derived column; the heatmap names it "response".
    is_response = fit.contrasts[0].response is not None
    groups = fit.metadata[fit.variable].rename("response" if is_response else fit.variable)
    plots.top_gene_heatmap(adata, table, groups, outputs["heatmap"])


def _de_samples(adata: ad.AnnData, composition_tsv: str | None) -> pd.DataFrame:
    """The AnnData obs, with the QC composition scores joined on sample when given."""
    samples = _samples_frame(adata)
    if composition_tsv is None:
        return samples
    composition = pd.read_csv(composition_tsv, sep="\t", dtype={"sample": str}).set_index("sample")
    new = [c for c in composition.columns if c not in samples.columns]
    return samples.join(composition[new])


def _clinical_for_de(config: dict) -> pd.DataFrame | None:
    """The clinical table, when a contrast compares responders with non-responders."""
    return load_design(config).clinical if de.uses_responses(config) else None


def _samples_frame(adata: ad.AnnData) -> pd.DataFrame:
    samples = adata.obs.copy()
    samples["timepoint"] = samples["timepoint"].astype(str)
    return samples


def export_matrices(input_h5ad: str, normalized_tsv: str, vst_tsv: str) -> None:
    """Normalized counts and VST values as gene x sample tables with ID and symbol."""
    adata = ad.read_h5ad(input_h5ad)
    for layer, path in [("normalized", normalized_tsv), ("vst", vst_tsv)]:
        frame = pd.DataFrame(
            np.asarray(adata.layers[layer]).T, index=adata.var_names, columns=adata.obs_names
        )
        frame.insert(0, "symbol", adata.var["symbol"].astype(str).to_numpy())
        frame.insert(0, "gene_id", adata.var_names)
        write_tsv(frame, path)


def enrichment_gene_sets(config: dict) -> dict[str, list[str]]:
    """Shipped IFN sets, Li 2014 blood transcription modules (optional) and user GMTs."""
    settings = config["enrichment"]
    sets = dict(genesets.load_gene_sets([genesets.SHIPPED_GMT, *settings["gene_sets"]]))
    if settings["blood_modules"]:
        for name, genes in genesets.li2014_modules().items():
            sets.setdefault(name, genes)
    return sets


def enrich(config: dict, de_tsv: str, outputs: dict, threads: int = 1) -> None:
    """Prerank GSEA on the Wald statistic and ORA of significant genes, local gene sets only."""
    table = pd.read_csv(de_tsv, sep="\t")
    settings = config["enrichment"]
    aliases = genesets.read_aliases(genesets.SHIPPED_ALIASES)
    sets = enrichment.restrict_to(
        enrichment_gene_sets(config), set(table["symbol"].astype(str)), aliases
    )
    result = enrichment.prerank(
        enrichment.ranking(table),
        sets,
        permutations=settings["permutations"],
        min_size=settings["min_size"],
        max_size=settings["max_size"],
        seed=config["seed"],
        threads=threads,
    )
    write_tsv(result, outputs["prerank"])
    ora = enrichment.over_representation(
        table, sets, alpha=config["de"]["alpha"], min_size=settings["min_size"]
    )
    write_tsv(ora, outputs["ora"])
    plots.enrichment_dotplot(result, outputs["dotplot"])
    shipped = genesets.load_gene_sets(genesets.SHIPPED_GMT)
    ifn_sets = [name for name in shipped if name != "IFNG_BIASED"]
    plots.running_scores(result, ifn_sets[:6], outputs["running_scores"])


def clinical_linkage(config: dict, scores_tsv: str, outputs: dict[str, str]) -> None:
    """Score changes, response calls, and every test linking the IFN score to the clinic."""
    design = load_design(config)
    clin.check_linkage(config, design.clinical, design.samples)
    table = pd.read_csv(scores_tsv, sep="\t", dtype={"subject": str, "sample": str})
    timepoints = config["timepoints"]
    measures = config["clinical_measures"]
    settings = config["linkage"]
    seed, n_boot, level = config["seed"], settings["bootstrap"], settings["confidence"]
    patient = config["groups"]["patient"]
    score_change = clin.score_changes(table, timepoints, patient)
    write_tsv(score_change, outputs["score_changes"])
    write_tsv(
        clin.paired_tests(score_change, timepoints, n_boot, level, seed), outputs["paired_tests"]
    )
    clinical = design.clinical
    if clinical is None or not measures:
        log.warning("no clinical table or no clinical_measures: the clinical tables are empty")
        clinical = pd.DataFrame(columns=["subject", "timepoint"])
        measures = {}
    measure_change = clin.measure_changes(clinical, measures, timepoints)
    responses = clin.call_responses(
        clinical,
        measure_change,
        settings["responses"],
        measures,
        timepoints,
        clinical_path=str(config.get("clinical")),
    )
    names = settings["covariates"]
    if names:
        # Glucocorticoids suppress ISG expression themselves, so dose is a covariate of note.
        log.info("covariates of the logistic and mixed models: %s", ", ".join(names))
    covariates = clin.covariate_values(design.samples, design.clinical, names)
    write_tsv(measure_change, outputs["changes"])
    write_tsv(responses, outputs["response"])
    write_tsv(
        clin.change_correlations(score_change, measure_change, timepoints, n_boot, level, seed),
        outputs["correlations"],
    )
    write_tsv(
        clin.baseline_prediction(score_change, responses, timepoints, covariates, names, level),
        outputs["baseline_prediction"],
    )
    write_tsv(
        clin.mixed_models(table, clinical, measures, timepoints, patient, covariates, names, level),
        outputs["mixed_models"],
    )

    signature = config["scores"]["primary_signature"]
    method = config["scores"]["primary_method"]
    primary = settings["primary_response"] or next((d["name"] for d in settings["responses"]), "")
    last = responses[
        (responses["response"] == primary) & (responses["timepoint"] == timepoints[-1])
    ]
    calls = last.set_index("subject")["responder"] if primary else None
    label = f"{primary} at {timepoints[-1]}"
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
    plots.response_roc(score_change, responses, signature, method, timepoints[-1], outputs["roc"])
