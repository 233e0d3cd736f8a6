"""One function per rule, with the rule's name: read the inputs, call the package, write.

Every stage has the same shape, ``stage(inputs, outputs, settings, threads)``: ``inputs`` and
``outputs`` map the rule's names to paths, ``settings`` is the part of the config the stage
uses (:mod:`ifnsig.settings`, the rule's ``params``). The Snakemake scripts only call these
through :func:`run_script`, so every stage runs (and is tested) without Snakemake too.
Tables are written as tidy TSV with full-precision p-values.
"""

from __future__ import annotations

import logging
import pickle
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.enrichment import over_representation, prerank, ranking, restrict_to
from ifnsig.errors import InputError
from ifnsig.formats import read_count_input
from ifnsig.io import atomic_output, read_tsv
from ifnsig.lazy import lazy_module
from ifnsig.validation import clinical_values, load_samples, read_clinical_table

# Each job imports this module for one stage: the modules below (and anndata, scipy.stats,
# statsmodels, matplotlib that they bring) are loaded by the jobs whose stage uses them.
ad = lazy_module("anndata")
analyses = lazy_module("ifnsig.analyses")
comparisons = lazy_module("ifnsig.comparisons")
data = lazy_module("ifnsig.data")
genesets = lazy_module("ifnsig.genesets")
reference = lazy_module("ifnsig.reference")
response = lazy_module("ifnsig.response")
scores = lazy_module("ifnsig.scores")
set_tests = lazy_module("ifnsig.set_tests")
quality = lazy_module("ifnsig.qc")
de_fit = lazy_module("ifnsig.de.fit")
de_plan = lazy_module("ifnsig.de.plan")
de_shards = lazy_module("ifnsig.de.shards")
de_size_factor_genes = lazy_module("ifnsig.de.size_factors")
linkage = lazy_module("ifnsig.linkage")
trajectories = lazy_module("ifnsig.trajectories")  # it imports the linkage
plots = lazy_module("ifnsig.plots")

log = logging.getLogger("ifnsig")


Paths = Mapping[str, str]


def write_tsv(frame: pd.DataFrame, path: str | Path) -> None:
    """Tidy TSV; floats with 10 significant digits so reruns give identical bytes."""
    with atomic_output(path) as partial:
        frame.to_csv(partial, sep="\t", index=False, float_format="%.10g")


#: Warnings of the libraries that a run can meet on real data, each explained once in the log:
#: (pattern of the message, part of the file that warns, what it means).
EXPLAINED_WARNINGS = [
    (
        re.compile(r"overflow encountered"),
        "pydeseq2",
        "pydeseq2 met a numerical overflow (exp of a large linear predictor) while fitting "
        "some genes, as happens for genes with no reads in every sample of one level or "
        "subject: their fold change is unbounded, so the fit stops at a large log2FoldChange; "
        "such genes are reported with large |log2FoldChange| and lfcSE, as R DESeq2 reports "
        "them, and the other genes are not affected",
    ),
    (
        re.compile(r"dispersion trend curve fitting did not converge"),
        "pydeseq2",
        "pydeseq2's parametric dispersion trend did not converge (few genes, or dispersions "
        "close to Poisson) and the mean dispersion was used as the trend, as DESeq2's "
        "fitType = 'mean'; the fit is otherwise unchanged",
    ),
]


class _WarningLog:
    """``warnings.showwarning`` for the stages: each warning logged once, known ones explained."""

    def __init__(self) -> None:
        self.seen: set = set()

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        for pattern, source, explanation in EXPLAINED_WARNINGS:
            if pattern.search(text) and source in str(filename):
                if explanation not in self.seen:
                    self.seen.add(explanation)
                    log.warning("%s (%s: %s)", explanation, category.__name__, text)
                return
        key = (category.__name__, text)
        if key not in self.seen:
            self.seen.add(key)
            logging.getLogger("py.warnings").warning(
                "%s: %s (%s, line %s)", category.__name__, text, filename, lineno
            )


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
    warnings.showwarning = _WarningLog()
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
    data.check_libraries(source.counts[samples.index], str(config["counts"]))
    if annotation is None and data.gene_id_kind(source.counts.index) != "symbol":
        kind = data.gene_id_kind(source.counts.index)
        raise InputError(
            f"{config['counts']}: the gene IDs are {kind.capitalize()} IDs (e.g. "
            f"'{source.counts.index[0]}') and no annotation maps them to the symbols the "
            f"signatures and QC use; set 'annotation' in {origin('annotation')} to a "
            "gene_id/symbol table or the GTF the counts were made with (see "
            "resources/annotation/README.md)."
        )
    adata = data.build_anndata(
        source.counts,
        samples,
        annotation=annotation,
        timepoints=settings["timepoints"],
        annotation_file=inputs.get("annotation"),
    )
    log.info("cohort: %d samples x %d genes", adata.n_obs, adata.n_vars)
    write_tsv(samples.reset_index(drop=True), outputs["samples"])
    data.write_h5ad(adata, outputs["counts"])


def geneset_coverage(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Match the scored signatures to the cohort's symbols; a set with no gene fails here."""
    var = quality.read_var(inputs["counts"])
    _, coverage = _matched_signatures(inputs, settings, var["symbol"])
    summary = data.symbol_summary(var)
    coverage["n_cohort_genes"] = len(var)
    coverage["n_ids_without_symbol"] = len(summary["ids_without_symbol"])
    coverage["ids_without_symbol"] = ",".join(map(str, summary["ids_without_symbol"][:20]))
    coverage["n_symbols_shared"] = len(summary["shared_symbols"])
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


def filter_genes(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Keep the genes with enough reads (``filtering``) and write their raw counts with obs
    and var: what normalize and the DE read, so the DE need not wait for normalize."""
    adata = ad.read_h5ad(inputs["counts"])
    filtering = settings["filtering"]
    adata = data.filter_genes(adata, filtering["min_count"], filtering["min_samples"])
    kept = pd.DataFrame(data.raw_counts(adata).T, columns=adata.obs_names)
    data.check_libraries(
        kept,
        f"{inputs['counts']} (the {adata.n_vars} genes with >= {filtering['min_count']} reads "
        f"in >= {filtering['min_samples']} samples)",
    )
    del kept
    # The integers normalize stores as its counts layer, which the DE read the same way.
    adata.X = np.asarray(data.raw_counts(adata), dtype=np.int64)
    adata.uns["description"] = {"X": data.DESCRIPTIONS["counts"]}
    data.write_h5ad(adata, outputs["filtered"], threads=threads)


def normalize(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Add size factors and the normalized, VST and log-CPM layers to the filtered genes."""
    adata = ad.read_h5ad(inputs["filtered"])
    data.normalize(adata, n_cpus=threads)
    data.write_h5ad(adata, outputs["normalized"], threads=threads)


def export_matrices(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Normalized counts and VST values as gene x sample tables with ID and symbol."""
    for layer in ("normalized", "vst"):
        data.write_layer_tsv(inputs["normalized"], layer, outputs[layer])


def annotate_cohort(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """The normalized cohort with every IFN score and call and the QC results in obs."""
    adata = data.read_layers(inputs["normalized"], [])
    qc = ad.read_h5ad(inputs["qc"])
    table = read_tsv(inputs["scores"], dtype={"sample": str, "subject": str})
    data.annotate_cohort(adata, table, qc)
    data.write_h5ad_with_matrices_of(adata, inputs["normalized"], outputs["cohort"])


# --- quality control -------------------------------------------------------------------------


def quality_control(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Library metrics, identity checks, outliers and composition; tables, plots, MultiQC.

    Reads only what it needs from the two ``.h5ad`` files: raw counts of every gene (metrics,
    sex and trait genes) and the VST layer of the filtered genes (PCA, correlations,
    composition).
    """
    from threadpoolctl import threadpool_limits

    # Without a marker table (a tissue other than blood) there are no composition scores.
    markers = quality.read_markers(inputs["markers"]) if "markers" in inputs else {}
    if not markers:
        log.info(
            "no cell-type marker table for tissue '%s': no composition scores", settings["tissue"]
        )
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
    quality.write_multiqc(
        result,
        outputs["multiqc_metrics"],
        outputs["multiqc_flags"],
        outputs["multiqc_identity"],
        outputs["multiqc_composition"],
        samples,
    )
    summary = quality.qc_anndata(result, samples, vst, cohort_var)
    data.write_h5ad(summary, outputs["h5ad"])

    status = quality.flag_status(result)
    colors = ["timepoint", "group", "batch", "drug", *status.columns.drop("sample")]
    plots.pca(result.pca, result.pca_variance_ratio, summary.obs, colors, outputs["pca"])
    plots.qc_correlation_heatmap(
        result.correlation,
        samples.iloc[result.heatmap_rows],
        set(result.flags["sample"]),
        outputs["correlation"],
        n_total=len(samples),
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
    """IFN scores of every signature and method with positivity, agreement and plots.

    Scored against the run's own reference samples (``inputs["normalized"]``), or, when the
    inputs hold the files of a saved reference (``reference_meta`` ...), the raw counts
    (``inputs["counts"]``) normalized and scored against that reference with its cut-offs.
    Either way the reference behind the scores is written to ``results/scores/reference/``.
    """
    chosen = settings["scores"]
    scored = scores.scored_signatures(chosen)
    listed = dict(genesets.load_gene_sets(inputs["gene_sets"], include=scored))
    gene_set_files = [*_as_list(inputs["gene_sets"]), inputs["aliases"]]
    if "reference_meta" in inputs:
        cohort, table, ref, stats = _frozen_scores(
            inputs, settings, listed, gene_set_files, threads
        )
        matched = {
            name: [str(s) for s in ref.genes.set_index("gene_id").loc[ids, "symbol"]]
            for name, ids in ref.gene_sets.items()
            if name in scored
        }
    else:
        cohort, table, ref, matched = _own_scores(inputs, settings, listed, gene_set_files, threads)
        stats = None
    _log_positivity(table)
    patients = scores.baseline_patients(
        cohort.obs, settings["groups"]["patient"], settings["timepoints"][0]
    )
    write_tsv(table, outputs["scores"])
    write_tsv(scores.annotate_obs(cohort.obs, table).reset_index(), outputs["obs"])
    if "agreement" in outputs:
        write_tsv(scores.method_agreement(table), outputs["agreement"])
    type2 = chosen["type2_signature"]
    contrast = scores.type_contrast(table, type2, None if stats is None else ref.cutoffs)
    if "type_contrast" in outputs:
        write_tsv(contrast, outputs["type_contrast"])
    write_tsv(_mixture_fits(table, cohort.obs_names[patients], settings), outputs["mixture_fits"])
    _write_modules(cohort, table, ref, stats, outputs, chosen)
    folder = Path(outputs["reference_meta"]).parent
    written = reference.write_reference(ref, folder)
    if any(str(Path(written[k])) != str(Path(outputs[f"reference_{k}"])) for k in written):
        raise ValueError(f"the reference outputs are not the files of {folder}")
    primary = chosen["primary_signature"], chosen["primary_method"]
    timepoints = settings["timepoints"]
    samples = cohort.obs.assign(sample=cohort.obs_names.astype(str))
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
    plots.scores_over_time(
        table,
        timepoints,
        *primary,
        outputs["over_time"],
        groups,
        levels,
        reference_label=scores.REFERENCE_LABELS[chosen["reference"]],
    )
    plots.signature_heatmap(
        cohort, matched, table, *primary, type2, outputs["heatmap"], reference_stats=stats
    )
    plots.score_distributions(table, timepoints, outputs["distributions"], groups, levels)
    if "type1_vs_type2" in outputs:
        plots.type1_vs_type2(
            contrast, *primary, outputs["type1_vs_type2"], patient_group=groups["patient"]
        )


def _as_list(paths) -> list[str]:
    return [str(paths)] if isinstance(paths, str | Path) else [str(p) for p in paths]


def _positivity_settings(chosen: dict) -> dict:
    return {
        "positivity_sd": chosen["positivity_sd"],
        "rule": chosen["positivity_rule"],
        "fallback": chosen["positivity_fallback"],
        "quantile": chosen["positivity_quantile"],
    }


def _own_scores(inputs: Paths, settings: dict, listed: dict, gene_set_files: list, threads: int):
    """Scores against the run's own reference samples, and the reference frozen from them."""
    chosen = settings["scores"]
    # The layers the scores and the frozen reference use (not X nor log-CPM).
    adata = data.read_layers(inputs["normalized"], ["counts", "normalized", "vst"])
    matched, _ = _matched_signatures(inputs, settings, adata.var["symbol"])
    mask = scores.reference_mask(
        adata.obs, chosen["reference"], settings["groups"]["control"], settings["timepoints"][0]
    )
    log.info(
        "IFN-score reference: %d samples, %s",
        mask.sum(),
        scores.REFERENCE_LABELS[chosen["reference"]],
    )
    patients = scores.baseline_patients(
        adata.obs, settings["groups"]["patient"], settings["timepoints"][0]
    )
    positivity = _positivity_settings(chosen)
    table = scores.score_samples(
        adata,
        matched,
        chosen["methods"],
        mask,
        positivity["positivity_sd"],
        seed=settings["seed"],
        threads=threads,
        reference_group=chosen["reference"],
        rule=positivity["rule"],
        fallback=positivity["fallback"],
        quantile=positivity["quantile"],
        mixture_samples=patients,
    )
    # Frozen from the scores in memory, not from the rounded table on disk, so that new
    # samples scored against it get the run's scores to the last digit.
    ref = reference.build_reference(
        adata,
        matched,
        table,
        mask,
        reference_group=chosen["reference"],
        seed=settings["seed"],
        settings=positivity,
        listed_sets=listed,
        gene_set_files=gene_set_files,
    )
    return adata, table, ref, matched


def _frozen_scores(inputs: Paths, settings: dict, listed: dict, gene_set_files: list, threads: int):
    """Scores of the raw counts against a saved reference, with its cut-offs and rules."""
    chosen = settings["scores"]
    folder = Path(inputs["reference_meta"]).parent
    ref = reference.read_reference(folder)
    scored = scores.scored_signatures(chosen)
    reference.check_scored(ref, scored, chosen["methods"])
    counts = ad.read_h5ad(inputs["counts"])
    reference.check_versions(ref)
    reference.check_gene_sets(ref, listed, gene_set_files)
    cohort, present = reference.frozen_cohort(counts, ref, chosen["reference_max_missing"])
    log.info(
        "IFN scores against the saved reference %s (%d reference samples: %s; %d of its %d "
        "genes in the counts): its normalization, reference statistics, cut-offs and "
        "positivity rules (%s) are used, not this run's scores.reference or "
        "scores.positivity_* settings",
        folder,
        len(ref.samples),
        ref.meta["reference_group"],
        len(present),
        len(ref.genes),
        ", ".join(f"{k} {v}" for k, v in ref.meta.get("positivity", {}).items()) or "as built",
    )
    table = reference.score_frozen_cohort(cohort, present, ref, threads=threads)
    # The configured gene sets and methods, in the configured order (as a run orders them).
    parts = [
        table[(table["signature"] == name) & (table["method"] == method)]
        for name in scored
        for method in chosen["methods"]
    ]
    table = pd.concat(parts, ignore_index=True)
    statistics = ref.statistics(present)
    return cohort, table, ref, (statistics.vst_mean, statistics.vst_sd)


def _log_positivity(table: pd.DataFrame) -> None:
    """Which rule made the calls of each signature and method (also in the table)."""
    rules = table.drop_duplicates(["signature", "method"])
    for row in rules.itertuples(index=False):
        if row.positivity_rule != "reference_mean_sd":
            log.warning(
                "%s / %s: positivity calls by the %s rule (cut-off %.6g)",
                row.signature,
                row.method,
                row.positivity_rule,
                row.threshold,
            )
    counts = rules["positivity_rule"].value_counts()
    log.info(
        "positivity rules of the %d signature x method pairs: %s (column positivity_rule)",
        len(rules),
        ", ".join(f"{rule} {n}" for rule, n in counts.items()),
    )


def _mixture_fits(table: pd.DataFrame, samples, settings: dict) -> pd.DataFrame:
    """Two-component fits of the baseline patients' scores, a bimodality check of each pair.

    Their warnings are summarised in one line: the fits that make calls (rule ``mixture``)
    already warned when the cut-offs were chosen.
    """
    import warnings

    from ifnsig.positivity import MixtureWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MixtureWarning)
        fits = scores.mixture_fits(table, samples, seed=settings["seed"])
    rules = table.drop_duplicates(["signature", "method"])[
        ["signature", "method", "positivity_rule"]
    ]
    fits = fits.merge(rules, on=["signature", "method"], how="left")
    log.info(
        "mixture fits of the %d baseline patients: %d of %d signature x method pairs look "
        "bimodal (mixture_fits.tsv; %d warnings)",
        len(samples),
        int(fits["bimodal"].sum()) if len(fits) else 0,
        len(fits),
        sum(issubclass(w.category, MixtureWarning) for w in caught),
    )
    return fits


def _write_modules(cohort, table, ref, stats, outputs: Paths, chosen: dict) -> None:
    """Module activity percentages and active modules per sample, when modules are scored."""
    modules = list(chosen["modules"])
    if not modules:
        log.info("no scores.modules: no module activity tables")
        return
    ids = pd.Series(np.arange(cohort.n_vars), index=cohort.var_names.astype(str))
    columns = {name: ids.reindex(ref.gene_sets[name]).to_numpy(dtype=int) for name in modules}
    if stats is None:
        mask = table.drop_duplicates("sample").set_index("sample")["reference"]
        statistics = scores.reference_statistics(
            cohort, mask.reindex(cohort.obs_names.astype(str)).to_numpy(dtype=bool)
        )
    else:
        rows = ref.genes.reset_index().set_index("gene_id").loc[cohort.var_names, "index"]
        statistics = ref.statistics(rows.to_numpy(dtype=int))
    percentages = scores.module_percentage_table(
        cohort.obs_names, np.asarray(cohort.layers["vst"]), columns, statistics
    )
    write_tsv(percentages, outputs["module_activity"])
    cutoff = chosen["module_active_percent"]
    active = scores.active_modules(table, modules, cutoff=cutoff)
    write_tsv(active, outputs["active_modules"])
    log.info(
        "module activity of %s; active (>= %g %%) in a median of %g of %d modules per sample",
        ", ".join(modules),
        cutoff,
        float(active["n_active"].median()),
        len(modules),
    )


# --- differential expression -----------------------------------------------------------------


def differential_expression(
    inputs: Paths, outputs: Paths, settings: dict, threads: int = 1
) -> None:
    """Fit every planned design once; write one table per contrast and the samples fitted.

    Besides the cohort (``filtered``: the counts of the filtered genes), ``inputs`` may hold
    the response calls (``responses``, for responder contrasts), the clinical table
    (``clinical``, for clinical covariates) and the QC composition scores (``composition``,
    when a covariate is one of them).
    """
    if "tests" in inputs:  # de.shards: the gene shards' results, gathered
        return gather_de_shards(inputs, outputs, settings, threads)
    adata = ad.read_h5ad(inputs["filtered"])
    fits, samples = _planned_fits(inputs, settings, adata.obs)
    control_genes = _size_factor_genes(inputs, settings, adata.var)
    write_tsv(de_plan.design_checks(fits), outputs["design_checks"])
    de_settings = settings["de"]
    for fit in fits:
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
            control_genes=control_genes,
        )
        _write_de_tables(results, fit, samples, outputs)


def _size_factor_genes(inputs: Paths, settings: dict, var: pd.DataFrame) -> np.ndarray | None:
    """The genes of the DE's size factors (``de.size_factor_genes``), a mask over ``var``;
    the scored signatures matched to the cohort as the scores match them."""
    setting = settings["de"]["size_factor_genes"]
    signatures = listed = aliases = None
    if setting == de_size_factor_genes.EXCLUDE_SIGNATURES:
        signatures, _ = genesets.matched_signatures(
            scores.scored_signatures(settings["scores"]),
            var["symbol"].astype(str),
            inputs["gene_sets"],
            inputs["aliases"],
            min_genes=1,
        )
    elif de_size_factor_genes.is_gene_list(setting):
        listed = de_size_factor_genes.read_gene_list(inputs["size_factor_genes"])
        aliases = genesets.read_aliases(inputs["aliases"])
    return de_size_factor_genes.size_factor_genes(setting, var, signatures, listed, aliases)


def _planned_fits(
    inputs: Paths, settings: dict, obs: pd.DataFrame, check_rank: bool = True
) -> tuple[list, pd.DataFrame]:
    """The planned fits and the cohort's samples (one job's DE and each sharded DE job's)."""
    samples = de_plan.cohort_samples(obs, inputs.get("composition"))
    clinical = None
    if "clinical" in inputs:
        names = set(pd.read_csv(inputs["clinical"], sep="\t", nrows=0).columns)
        wanted = [c for c in settings["de"]["covariates"] if c in names]
        clinical = clinical_values(inputs["clinical"], wanted)
    responses = read_tsv(inputs["responses"], dtype=str) if "responses" in inputs else None
    return de_plan.plan_fits(samples, settings, clinical, responses, check_rank=check_rank), samples


def _write_de_tables(results: dict, fit, samples: pd.DataFrame, outputs: Paths) -> None:
    fitted = de_plan.fitted_samples(fit, samples)
    for name, table in results.items():
        write_tsv(table, outputs[name])
        write_tsv(fitted, outputs[f"{name}.samples"])


# --- differential expression sharded by genes (de.shards) --------------------------------------


def _de_fits(
    inputs: Paths, settings: dict, check_rank: bool = False
) -> tuple[list, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The planned fits, the samples, and the cohort's obs and var (no matrix read).

    The size factors' job, which every other job of the sharded DE follows, checks the
    designs' ranks (``check_rank``); the others plan the same fits without building their
    designs for it."""
    obs, var = de_shards.read_annotations(inputs["filtered"])
    fits, samples = _planned_fits(inputs, settings, obs, check_rank)
    return fits, samples, obs, var


def _shard_genes(settings: dict, n_genes: int) -> tuple[int, int]:
    shard = settings["shard"]
    return de_shards.gene_ranges(n_genes, shard["count"])[shard["index"]]


def _read_pickle(path: str, part: int = 0):
    """The ``part``-th object of a file written by :func:`_write_pickle` (those before it
    are read and dropped)."""
    with open(path, "rb") as handle:
        for _ in range(part):
            pickle.load(handle)
        return pickle.load(handle)


def _write_pickle(value, path: str, *later) -> None:
    """``value``, then each of ``later``, one pickle after the other in one file: a reader of
    the first part does not load the others (:func:`_read_pickle`)."""
    with open(path, "wb") as handle:
        for item in (value, *later):
            pickle.dump(item, handle, protocol=5)


def de_size_factors(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Median-of-ratios size factors of every fit (over ``de.size_factor_genes``), read in
    blocks."""
    fits, _, obs, var = _de_fits(inputs, settings, check_rank=True)
    control_genes = _size_factor_genes(inputs, settings, var)
    factors = [
        de_shards.fit_size_factors(
            inputs["filtered"], de_shards.fit_positions(fit, obs), len(var), control_genes
        )
        for fit in fits
    ]
    _write_pickle(factors, outputs["size_factors"])


def de_genewise_dispersions(
    inputs: Paths, outputs: Paths, settings: dict, threads: int = 1
) -> None:
    """Gene-wise dispersions (and the IRLS means they start from) of one gene shard."""
    fits, samples, obs, var = _de_fits(inputs, settings)
    start, stop = _shard_genes(settings, len(var))
    factors = _read_pickle(inputs["size_factors"])
    steps = []
    for fit, fit_factors in zip(fits, factors, strict=True):
        counts = de_shards.read_counts(
            inputs["filtered"], de_shards.fit_positions(fit, obs), start, stop
        )
        steps.append(
            de_shards.genewise_step(
                counts, var.index[start:stop], fit, samples, fit_factors, settings["de"], threads
            )
        )
    # The shard's gene-wise dispersions first, its means (samples x genes) after them: the
    # prior's job, which reads every shard's file, loads the first part only.
    dispersions = [{"var": step["var"], "n_coefficients": step["n_coefficients"]} for step in steps]
    _write_pickle(dispersions, outputs["genewise"], [step["mu_hat"] for step in steps])


def de_dispersion_prior(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Dispersion trend and prior variance of every fit, over the genes of all shards."""
    fits, samples, _, _ = _de_fits(inputs, settings)
    shards = [_read_pickle(path) for path in inputs["genewise"]]  # dispersions, no means
    priors = [
        de_shards.dispersion_prior(
            fit,
            pd.concat([shard[i]["var"] for shard in shards]),
            samples,
            settings["de"],
            shards[0][i]["n_coefficients"],
        )
        for i, fit in enumerate(fits)
    ]
    _write_pickle(priors, outputs["prior"])


def de_shard_tests(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """MAP dispersions, LFCs, Cook's refits, Wald tests or LRT of one gene shard."""
    fits, samples, obs, var = _de_fits(inputs, settings)
    start, stop = _shard_genes(settings, len(var))
    factors = _read_pickle(inputs["size_factors"])
    genewise = _read_pickle(inputs["genewise"])
    for fit_genewise, mu_hat in zip(genewise, _read_pickle(inputs["genewise"], 1), strict=True):
        fit_genewise["mu_hat"] = mu_hat
    priors = _read_pickle(inputs["prior"])
    results = []
    for i, fit in enumerate(fits):
        counts = de_shards.read_counts(
            inputs["filtered"], de_shards.fit_positions(fit, obs), start, stop
        )
        results.append(
            de_shards.test_step(
                counts,
                var.index[start:stop],
                fit,
                samples,
                factors[i],
                genewise[i],
                priors[i],
                settings["de"],
                threads,
            )  # fmt: skip
        )
    # The tables first, the maximum likelihood coefficients (genes x coefficients, apeGLM's
    # start) after them: the gather loads every shard's tables, and one shard's
    # coefficients at a time when it shrinks.
    tables = [{key: value for key, value in r.items() if key != "mle"} for r in results]
    _write_pickle(tables, outputs["tests"], [r["mle"] for r in results])


def gather_de_shards(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Independent filtering, BH and apeGLM over every shard's genes; the DE tables."""
    fits, samples, obs, var = _de_fits(inputs, settings)
    write_tsv(de_plan.design_checks(fits), outputs["design_checks"])
    shards = [_read_pickle(path) for path in inputs["tests"]]
    factors = _read_pickle(inputs["size_factors"])
    ranges = de_shards.gene_ranges(len(var), len(shards))
    for i, fit in enumerate(fits):
        rows = de_shards.fit_positions(fit, obs)

        def read_shard(shard: int, rows=rows):
            return de_shards.read_counts(inputs["filtered"], rows, *ranges[shard])

        def read_mle(shard: int, i=i) -> np.ndarray:
            return _read_pickle(inputs["tests"][shard], 1)[i]

        results = de_shards.gather_tables(
            fit, [shard[i] for shard in shards], read_shard, var, factors[i], settings["de"],
            n_cpus=threads, read_mle=read_mle,
        )  # fmt: skip
        _write_de_tables(results, fit, samples, outputs)


def plot_de(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Volcano (primary signature labelled), MA, p-value histogram and top-gene heatmap."""
    table = read_tsv(inputs["de"])
    alpha = settings["de"]["alpha"]
    sets = genesets.load_gene_sets(inputs["gene_sets"])
    highlight = list(sets.get(settings["scores"]["primary_signature"], []))
    contrast = Path(inputs["de"]).name.removesuffix(".tsv")
    plots.volcano(table, outputs["volcano"], highlight=highlight, alpha=alpha, contrast=contrast)
    plots.ma_plot(table, outputs["ma"], alpha=alpha)
    plots.pvalue_histogram(table, outputs["pvalues"])
    fitted = read_tsv(inputs["samples"], dtype=str)
    groups = de_plan.compared_levels(fitted)
    adata = data.read_layers(inputs["normalized"], ["vst"])
    plots.top_gene_heatmap(adata, table, groups, outputs["heatmap"], contrast=contrast)


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
    table = read_tsv(inputs["de"])
    chosen = settings["enrichment"]
    aliases = genesets.read_aliases(inputs["aliases"])
    sets = restrict_to(enrichment_sets(inputs, settings), set(table["symbol"].astype(str)), aliases)

    name = Path(inputs["de"]).name.removesuffix(".tsv")
    contrast, within_group = de_plan.table_contrasts(settings)[name]
    fitted = read_tsv(inputs["samples"], dtype=str)
    comparison = set_tests.comparison_for(contrast, within_group, fitted, settings["timepoints"])
    obs, var, vst = quality.read_layer(inputs["normalized"], "vst")
    values = pd.DataFrame(vst, index=obs.index.astype(str), columns=var.index.astype(str))
    # A symbol shared by several gene IDs is tested, as it is ranked, by the ID with the
    # highest baseMean (enrichment.one_row_per_symbol).
    base_mean = table.set_index(table["gene_id"].astype(str))["baseMean"]
    scores_by_set, n_genes = set_tests.set_scores(
        values,
        var["symbol"].astype(str),
        sets,
        chosen["min_size"],
        chosen["max_size"],
        means=base_mean[~base_mean.index.duplicated()],
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
    contrast = Path(inputs["de"]).name.removesuffix(".tsv")
    titles = genesets.gene_set_titles(inputs["gene_sets"])
    plots.enrichment_dotplot(result, outputs["dotplot"], titles=titles, contrast=contrast)
    shipped = genesets.load_gene_sets(inputs["gene_sets"][0])
    plots.running_scores(
        result,
        genesets.ifn_sets(shipped)[:6],
        outputs["running_scores"],
        titles=titles,
        contrast=contrast,
    )


# --- clinical ----------------------------------------------------------------------------------


def call_responses(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """Changes of the clinical measures from baseline and the response calls, traced.

    A cohort with response definitions and no measures (calls from a column of the
    clinical table) gets its calls and no change table.
    """
    samples = read_tsv(inputs["samples"], dtype=str)
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
    table = read_tsv(inputs["scores"], dtype={"subject": str, "sample": str})
    samples = read_tsv(inputs["samples"], dtype=str)
    if "changes" in inputs:
        measure_change = read_tsv(inputs["changes"], dtype={"subject": str})
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
    "filter_genes",
    "geneset_coverage",
    "normalize",
    "plot_de",
    "quality_control",
    "run_script",
    "score_ifn",
    "write_tsv",
]


# --- findings --------------------------------------------------------------------------------


def summarize_findings(inputs: Paths, outputs: Paths, settings: dict, threads: int = 1) -> None:
    """The report's first page (findings from the result tables, every table viewable) and
    the per-patient panels."""
    from ifnsig import findings, patient_view, tableview

    def read(path: str) -> pd.DataFrame:
        return pd.read_csv(path, sep="\t", dtype={"subject": str, "sample": str})

    fixed = ["samples", "scores", "paired_tests", "correlations", "mixed_models"]
    fixed += ["response", "baseline_prediction", "qc_flags"]
    contrasts = [key.split(":", 1)[1] for key in inputs if key.startswith("de:")]
    kinds = [k for k in ("de", "prerank", "sets") if contrasts and f"{k}:{contrasts[0]}" in inputs]
    keys = fixed + [f"{kind}:{name}" for name in contrasts for kind in kinds]
    # Tables the cohort does not allow (ifnsig.analyses) are read as empty: the page then
    # says there is nothing of them.
    empty = {
        "paired_tests": linkage.PAIRED_COLUMNS,
        "correlations": linkage.CORRELATION_COLUMNS,
        "mixed_models": linkage.MIXED_COLUMNS,
        "baseline_prediction": linkage.PREDICTION_COLUMNS,
        "response": response.RESPONSE_COLUMNS,
    }
    frames = {
        key: read(inputs[key]) if key in inputs else pd.DataFrame(columns=empty[key])
        for key in keys
    }
    paths = {**{key: "" for key in empty}, **inputs}
    page = findings.findings_page(frames, paths, settings, contrasts)
    write_tsv(page.numbers(), outputs["numbers"])
    tables = {
        path: (path, findings.table_note(path))
        for key, path in inputs.items()
        if key.startswith("table:")
    }
    tables[outputs["numbers"]] = (outputs["numbers"], findings.table_note(outputs["numbers"]))
    body = (
        "<h1>Findings of this run</h1>\n<p class='note'>Each number is computed from a result "
        "table and opens it below; the report's other categories hold the figures and the "
        "methods.</p>\n" + page.html()
    )
    Path(outputs["findings"]).write_text(
        tableview.page("ifnsig findings", body, tables), encoding="utf-8"
    )

    signature = settings["scores"]["primary_signature"]
    method = settings["scores"]["primary_method"]
    if "score_changes" in inputs:
        changes = read(inputs["score_changes"])
    else:
        changes = linkage.score_changes(
            frames["scores"], settings["timepoints"], settings["groups"]["patient"]
        )
    primary = changes[(changes["signature"] == signature) & (changes["method"] == method)]
    samples = frames["samples"]
    drugs = (
        samples.drop_duplicates("subject").set_index("subject")["drug"]
        if "drug" in samples.columns
        else pd.Series(dtype=str)
    )
    calls, label = response.primary_calls(
        frames["response"], settings["linkage"]["primary_response"], settings["timepoints"][-1]
    )
    patient_view.patient_panels(
        primary,
        read(inputs["changes"]) if "changes" in inputs else response.empty_tables()[0],
        settings["clinical_measures"],
        drugs,
        calls,
        label,
        signature,
        settings["timepoints"],
        outputs["patients"],
    )
