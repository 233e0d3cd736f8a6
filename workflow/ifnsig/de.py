"""Differential expression with pydeseq2: contrasts planned and checked before any fit.

Contrasts that share a design and a sample subset are fitted once (``Fit``). A paired
contrast blocks on subject (``~ subject + variable``, the design of nf-core's
differentialabundance ``blocking``): each person is their own control.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig.errors import InputError

log = logging.getLogger(__name__)

RESULT_COLUMNS = [
    "gene_id",
    "symbol",
    "baseMean",
    "log2FoldChange",
    "lfcSE",
    "stat",
    "pvalue",
    "padj",
]


@dataclass(frozen=True)
class Contrast:
    """One comparison: ``test`` vs ``reference`` levels of ``variable`` in a sample subset."""

    name: str
    test: str
    reference: str
    variable: str = "timepoint"
    paired: bool = True
    subset: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: (response definition, timepoint judged) for responders vs non-responders.
    response: tuple[str, str] | None = None

    @classmethod
    def from_config(cls, entry: dict, timepoints: list[str]) -> Contrast:
        subset = tuple(sorted((k, tuple(v)) for k, v in entry.get("subset", {}).items()))
        if "response" not in entry:
            return cls(
                name=entry["name"],
                test=str(entry["test"]),
                reference=str(entry["reference"]),
                variable=entry.get("variable", "timepoint"),
                paired=entry.get("paired", True),
                subset=subset,
            )
        # Responders vs non-responders: a property of the subject, so never paired.
        definition = entry["response"]
        judged_at = str(entry.get("response_at", timepoints[-1]))
        if entry.get("paired", False):
            raise InputError(
                f"config/config.yaml: contrast '{entry['name']}' compares responders with "
                "non-responders, which differ between subjects, so it cannot be paired on "
                "subject; set paired: false or leave paired out."
            )
        if judged_at not in timepoints[1:]:
            raise InputError(
                f"config/config.yaml: contrast '{entry['name']}' has response_at "
                f"'{judged_at}', which is not a follow-up timepoint; use one of "
                f"{', '.join(timepoints[1:])}."
            )
        return cls(
            name=entry["name"],
            test=str(entry.get("test", RESPONDER)),
            reference=str(entry.get("reference", NON_RESPONDER)),
            variable=response_column(definition, judged_at),
            paired=False,
            subset=subset,
            response=(definition, judged_at),
        )


@dataclass
class Fit:
    """Contrasts sharing one design and sample subset, fitted once."""

    variable: str
    reference: str
    paired: bool
    subset: tuple[tuple[str, tuple[str, ...]], ...]
    covariates: list[str]
    samples: list[str] = field(default_factory=list)
    #: The design's columns for the chosen samples, set by :func:`plan_fits`.
    metadata: pd.DataFrame | None = None
    contrasts: list[Contrast] = field(default_factory=list)

    @property
    def formula(self) -> str:
        terms = (["subject"] if self.paired else []) + self.covariates + [self.variable]
        return "~" + " + ".join(terms)


RESPONDER, NON_RESPONDER = "responder", "non_responder"


def response_column(definition: str, timepoint: str) -> str:
    """Name of the derived sample column holding one response call (a formula-safe name)."""
    return re.sub(r"\W", "_", f"response_{definition}_{timepoint}")


def contrasts_from_config(config: dict) -> list[Contrast]:
    """Configured contrasts, or each follow-up timepoint vs baseline, paired, in patients."""
    entries = config["de"]["contrasts"]
    if entries:
        contrasts = [Contrast.from_config(e, list(config["timepoints"])) for e in entries]
    else:
        baseline, *followups = config["timepoints"]
        patient = config["groups"]["patient"]
        contrasts = [
            Contrast(
                name=f"{tp}_vs_{baseline}",
                test=tp,
                reference=baseline,
                subset=(("group", (patient,)),),
            )
            for tp in followups
        ]
    names = [c.name for c in contrasts]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise InputError(
            f"config/config.yaml: contrast name(s) {', '.join(sorted(duplicated))} used more "
            "than once under de.contrasts; give each contrast its own name."
        )
    return contrasts


def composition_covariates(config: dict) -> list[str]:
    """DE covariates that are the QC stage's composition scores (``<cell type>_score``)."""
    candidates = [c for c in config["de"]["covariates"] if c.endswith("_score")]
    if not candidates:
        return []
    from ifnsig.qc import composition_columns

    known = composition_columns(config)
    return [c for c in candidates if c in known]


def uses_responses(config: dict) -> bool:
    """Whether a contrast compares responders, so the DE stage needs the clinical table."""
    return any("response" in entry for entry in config["de"]["contrasts"])


def add_response_columns(
    samples: pd.DataFrame, clinical: pd.DataFrame | None, config: dict
) -> pd.DataFrame:
    """The sample sheet with one column per response contrast: responder / non_responder.

    The calls are the clinical stage's (:func:`ifnsig.clinical.call_responses`) for the
    contrast's definition at its ``response_at`` timepoint, given to every sample of the
    subject. Patients without an evaluable call get no level and are left out, with a
    warning naming them.
    """
    from ifnsig import clinical as clin

    wanted = {c.response for c in contrasts_from_config(config) if c.response}
    if not wanted:
        return samples
    definitions = {d["name"]: d for d in (config.get("linkage") or {}).get("responses") or []}
    for definition, _ in sorted(wanted):
        if definition not in definitions:
            raise InputError(
                f"config/config.yaml: a contrast under de.contrasts uses response "
                f"'{definition}', which is not defined under linkage.responses; use one of "
                f"{', '.join(definitions) or '(none defined)'}."
            )
    if clinical is None:
        raise InputError(
            "config/config.yaml: a contrast under de.contrasts compares responders, which "
            "needs the clinical table; set clinical: to its path."
        )
    measures, timepoints = config["clinical_measures"], list(config["timepoints"])
    calls = clin.call_responses(
        clinical,
        clin.measure_changes(clinical, measures, timepoints),
        list(definitions.values()),
        measures,
        timepoints,
        clinical_path=str(config.get("clinical")),
    )
    samples = samples.copy()
    for definition, judged_at in sorted(wanted):
        chosen = calls[(calls["response"] == definition) & (calls["timepoint"] == judged_at)]
        by_subject = chosen.set_index("subject")["responder"].dropna()
        column = (
            samples["subject"]
            .astype(str)
            .map(by_subject.map({True: RESPONDER, False: NON_RESPONDER}))
        )
        patients = samples["group"].astype(str) == config["groups"]["patient"]
        missing = sorted(set(samples.loc[column.isna() & patients, "subject"].astype(str)))
        if missing:
            log.warning(
                "response %s at %s: no call for subject(s) %s; their samples are left out of "
                "contrasts on it",
                definition,
                judged_at,
                ", ".join(missing),
            )
        samples[response_column(definition, judged_at)] = column
    return samples


def _select(samples: pd.DataFrame, subset) -> pd.Series:
    keep = pd.Series(True, index=samples.index)
    for column, values in subset:
        if column not in samples.columns:
            raise InputError(
                f"config/config.yaml: a contrast subset uses column '{column}', which is not in "
                f"the sample sheet; use one of {', '.join(samples.columns)}."
            )
        keep &= samples[column].astype(str).isin(values)
    return keep


def plan_fits(
    samples: pd.DataFrame,
    config: dict,
    clinical: pd.DataFrame | None = None,
    deferred: set[str] | frozenset[str] = frozenset(),
) -> list[Fit]:
    """Group contrasts into fits and check every level, subject and design before fitting.

    Parameters
    ----------
    samples
        Validated sample sheet (columns from the sheet plus, optionally, derived columns).
    config
        Validated configuration.
    clinical
        Validated clinical table, for contrasts between responders and non-responders
        (their column is added by :func:`add_response_columns`) and clinical covariates.
    deferred
        Covariates whose values exist only later (the QC stage's composition scores, at
        parse time): accepted by name and left out of this plan's designs.

    Raises
    ------
    InputError
        Unknown variable or level (the message lists the valid ones), no paired subjects
        left, or a rank-deficient design (the message lists the coefficient names).
    """
    from ifnsig.data import join_clinical

    if clinical is not None and not set(clinical.columns) - {"subject", "timepoint"} <= set(
        samples.columns
    ):
        # At parse time the sheet comes alone; in the DE job the AnnData obs holds both.
        samples = join_clinical(samples, clinical)
    covariates = [c for c in config["de"]["covariates"] if c not in deferred]
    for covariate in covariates:
        if covariate not in samples.columns:
            raise InputError(
                f"config/config.yaml: de.covariates names '{covariate}', which is not a column "
                f"of the sample sheet or the clinical table, nor a composition score of the "
                f"QC stage; use one of {', '.join(samples.columns)}."
            )
    samples = add_response_columns(samples, clinical, config)
    fits: dict[tuple, Fit] = {}
    for contrast in contrasts_from_config(config):
        if contrast.variable not in samples.columns:
            raise InputError(
                f"config/config.yaml: contrast '{contrast.name}' compares column "
                f"'{contrast.variable}', which is not in the sample sheet; use one of "
                f"{', '.join(samples.columns)}."
            )
        chosen = samples[_select(samples, contrast.subset)]
        levels = sorted(chosen[contrast.variable].astype(str).unique())
        for role in ("test", "reference"):
            level = getattr(contrast, role)
            if level not in levels:
                raise InputError(
                    f"config/config.yaml: contrast '{contrast.name}' has {role} level "
                    f"'{level}', which no selected sample has in column '{contrast.variable}'; "
                    f"valid levels: {', '.join(levels) or '(none: check the subset)'}."
                )
        key = (contrast.variable, contrast.reference, contrast.paired, contrast.subset)
        if key not in fits:
            fits[key] = Fit(
                variable=contrast.variable,
                reference=contrast.reference,
                paired=contrast.paired,
                subset=contrast.subset,
                covariates=covariates,
            )
        fits[key].contrasts.append(contrast)
    for fit in fits.values():
        _choose_samples(fit, samples)
        fit.metadata = design_frame(fit, samples)
        _check_rank(fit)
    return list(fits.values())


def _choose_samples(fit: Fit, samples: pd.DataFrame) -> None:
    chosen = samples[_select(samples, fit.subset)]
    tests = {c.test for c in fit.contrasts}
    chosen = chosen[chosen[fit.variable].astype(str).isin(tests | {fit.reference})]
    if fit.paired:
        by_subject = chosen.groupby("subject", observed=True)[fit.variable].agg(
            lambda v: set(v.astype(str))
        )
        complete = by_subject[by_subject.map(lambda s: fit.reference in s and bool(s & tests))]
        dropped = sorted(set(by_subject.index) - set(complete.index))
        if dropped:
            log.warning(
                "contrast(s) %s: subject(s) %s lack '%s' or every test level and are left out "
                "of the paired fit",
                ", ".join(c.name for c in fit.contrasts),
                ", ".join(dropped),
                fit.reference,
            )
        if complete.empty:
            raise InputError(
                f"config/config.yaml: paired contrast(s) "
                f"{', '.join(c.name for c in fit.contrasts)} have no subject with both "
                f"'{fit.reference}' and a test level; check the sample sheet or set paired: "
                "false."
            )
        chosen = chosen[chosen["subject"].isin(complete.index)]
        # A covariate constant within every subject is absorbed by the subject term.
        absorbed = [
            c
            for c in fit.covariates
            if chosen.groupby("subject", observed=True)[c].nunique().max() <= 1
        ]
        if absorbed:
            log.warning(
                "covariate(s) %s are constant within subjects and absorbed by the subject term "
                "of the paired design; they are left out of %s",
                ", ".join(absorbed),
                fit.formula,
            )
            fit.covariates = [c for c in fit.covariates if c not in absorbed]
    for covariate in fit.covariates:
        missing = chosen.index[chosen[covariate].isna()]
        if len(missing):
            raise InputError(
                f"config/config.yaml: de.covariates '{covariate}' has no value for sample(s) "
                f"{', '.join(map(str, missing[:10]))}{' ...' if len(missing) > 10 else ''} "
                f"of contrast(s) {', '.join(c.name for c in fit.contrasts)}; fill it in the "
                "sample sheet or clinical table, or remove the covariate."
            )
    fit.samples = list(chosen.index)


def design_frame(fit: Fit, samples: pd.DataFrame) -> pd.DataFrame:
    """Metadata for pydeseq2: the fit's columns, with the reference as first category."""
    frame = samples.loc[fit.samples, (["subject"] if fit.paired else []) + fit.covariates].copy()
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype(str)
    values = samples.loc[fit.samples, fit.variable].astype(str)
    levels = [fit.reference] + sorted(set(values) - {fit.reference})
    frame[fit.variable] = pd.Categorical(values, categories=levels)
    return frame


def _check_rank(fit: Fit) -> None:
    from formulaic import model_matrix

    design = model_matrix(fit.formula, fit.metadata)
    rank = np.linalg.matrix_rank(np.asarray(design, dtype=float))
    if rank < design.shape[1]:
        raise InputError(
            f"config/config.yaml: the design {fit.formula} for contrast(s) "
            f"{', '.join(c.name for c in fit.contrasts)} is rank-deficient ({rank} of "
            f"{design.shape[1]} coefficients estimable: {', '.join(design.columns)}); remove a "
            "covariate that is confounded with another term."
        )
    if design.shape[0] <= design.shape[1]:
        raise InputError(
            f"config/config.yaml: the design {fit.formula} has {design.shape[1]} coefficients "
            f"for {design.shape[0]} samples, leaving no residual degrees of freedom; use fewer "
            "covariates or more samples."
        )


def choose_inference(fit: Fit, samples: pd.DataFrame, setting: str, min_subjects: int, n_cpus: int):
    """pydeseq2 inference for a fit: the subject-blocked backend for large paired fits.

    ``setting`` is ``auto`` (blocked when the fit is paired with at least ``min_subjects``
    subjects), ``blocked`` or ``default``. Both follow the same algorithms (pydeseq2's, with
    DESeq2's dispersion fit from :mod:`ifnsig.deseq2_compat`) and agree to rounding.
    """
    from ifnsig.blocked_inference import BlockedInference
    from ifnsig.deseq2_compat import DESeq2Inference

    n_subjects = samples.loc[fit.samples, "subject"].nunique()
    use_blocked = fit.paired and (
        setting == "blocked" or (setting == "auto" and n_subjects >= min_subjects)
    )
    if use_blocked:
        log.info("%s: subject-blocked inference (%d subjects)", fit.formula, n_subjects)
        return BlockedInference(n_cpus=n_cpus, min_levels=2)
    log.info("%s: dense inference (%d subjects)", fit.formula, n_subjects)
    return DESeq2Inference(n_cpus=n_cpus)


def run_fit(
    adata: ad.AnnData,
    fit: Fit,
    samples: pd.DataFrame,
    alpha: float = 0.1,
    n_cpus: int = 1,
    shrink: bool = True,
    inference: str = "auto",
    blocked_min_subjects: int = 2,
    shrink_max_coefficients: int = 100,
) -> dict[str, pd.DataFrame]:
    """Fit one design with pydeseq2 and test each of its contrasts.

    Wald tests with DESeq2's defaults: Cook's distance outlier refit, Cook's filtering and
    independent filtering at ``alpha``. The apeGLM-shrunk fold change of the contrast's
    coefficient is added as ``log2FoldChange_shrunk``; pydeseq2's apeGLM refits every
    coefficient of the design per gene with dense matrices, so for designs with more than
    ``shrink_max_coefficients`` coefficients (paired designs of large cohorts: one per
    subject) the column is left empty rather than costing ten times the fit and running out
    of memory (measured: 22 GB at 840 samples).

    Returns
    -------
    dict
        Contrast name -> results table (columns :data:`RESULT_COLUMNS`, plus the shrunk LFC).
    """
    from pydeseq2.ds import DeseqStats

    from ifnsig.deseq2_compat import deseq_dataset_class, independent_filtering

    sub = adata[fit.samples]
    counts = pd.DataFrame(
        np.asarray(sub.layers["counts"]), index=sub.obs_names, columns=sub.var_names
    )
    backend = choose_inference(fit, samples, inference, blocked_min_subjects, n_cpus)
    log.info("fitting %s on %d samples x %d genes", fit.formula, *counts.shape)
    dds = deseq_dataset_class()(
        counts=counts,
        metadata=fit.metadata,
        design=fit.formula,
        refit_cooks=True,
        inference=backend,
        quiet=True,
    )
    dds.deseq2()
    results = {}
    for contrast in fit.contrasts:
        stats = DeseqStats(
            dds,
            contrast=[fit.variable, contrast.test, contrast.reference],
            alpha=alpha,
            independent_filter=False,
            inference=backend,
            quiet=True,
        )
        stats.summary()
        table = stats.results_df.copy()
        table["padj"], threshold = independent_filtering(table["baseMean"], table["pvalue"], alpha)
        log.info("%s: independent filtering keeps base mean >= %.3g", contrast.name, threshold)
        table.insert(0, "gene_id", table.index.astype(str))
        table.insert(1, "symbol", adata.var.loc[table.index, "symbol"].astype(str).to_numpy())
        coefficient = f"{fit.variable}[T.{contrast.test}]"
        n_coefficients = dds.obsm["design_matrix"].shape[1]
        if shrink and n_coefficients > shrink_max_coefficients:
            log.warning(
                "%s: no apeGLM shrinkage for a design with %d coefficients (more than "
                "de.shrink_max_coefficients = %d); log2FoldChange_shrunk is left empty",
                contrast.name,
                n_coefficients,
                shrink_max_coefficients,
            )
            table["log2FoldChange_shrunk"] = np.nan
        elif shrink and coefficient in dds.varm["LFC"].columns:
            stats.lfc_shrink(coeff=coefficient)
            table["log2FoldChange_shrunk"] = stats.results_df["log2FoldChange"].to_numpy()
        results[contrast.name] = table.reset_index(drop=True)
    return results
