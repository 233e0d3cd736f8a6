"""Differential expression with pydeseq2: contrasts planned and checked before any fit.

Contrasts that share a design and a sample subset are fitted once (``Fit``). A paired
contrast blocks on subject (``~ subject + variable``, the design of nf-core's
differentialabundance ``blocking``): each person is their own control.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ifnsig.config_files import origin
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
                f"{origin('de.contrasts')}: contrast '{entry['name']}' compares responders with "
                "non-responders, which differ between subjects, so it cannot be paired on "
                "subject; set paired: false or leave paired out."
            )
        if judged_at not in timepoints[1:]:
            raise InputError(
                f"{origin('de.contrasts')}: contrast '{entry['name']}' has response_at "
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
            f"{origin('de.contrasts')}: contrast name(s) {', '.join(sorted(duplicated))} used more "
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


def clinical_covariates(config: dict) -> list[str]:
    """DE covariates that are clinical measures (values per visit, e.g. steroid dose)."""
    measures = config.get("clinical_measures") or {}
    return [c for c in config["de"]["covariates"] if c in measures]


def uses_responses(config: dict) -> bool:
    """Whether a contrast compares responders, so the DE stage needs the response calls."""
    return any("response" in entry for entry in config["de"]["contrasts"])


def add_response_columns(
    samples: pd.DataFrame, responses: pd.DataFrame | None, config: dict
) -> pd.DataFrame:
    """The sample sheet with one column per response contrast: responder / non_responder.

    ``responses`` is the clinical stage's call table (:func:`ifnsig.response.call_responses`,
    ``results/clinical/response.tsv``); each contrast takes its definition's calls at its
    ``response_at`` timepoint and gives them to every sample of the subject. Patients
    without an evaluable call get no level and are left out, with a warning naming them.
    """
    wanted = {c.response for c in contrasts_from_config(config) if c.response}
    if not wanted:
        return samples
    if responses is None:
        raise InputError(
            f"{origin('de.contrasts')}: a contrast under de.contrasts compares responders, "
            "which needs the clinical table; set clinical: to its path."
        )
    defined = list(dict.fromkeys(responses["response"].astype(str)))
    samples = samples.copy()
    for definition, judged_at in sorted(wanted):
        if definition not in defined:
            raise InputError(
                f"{origin('de.contrasts')}: a contrast under de.contrasts uses response "
                f"'{definition}', which is not defined under linkage.responses; use one of "
                f"{', '.join(defined) or '(none defined)'}."
            )
        chosen = responses[
            (responses["response"].astype(str) == definition)
            & (responses["timepoint"].astype(str) == judged_at)
        ]
        by_subject = _calls(chosen.set_index(chosen["subject"].astype(str))["responder"])
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


def _calls(values: pd.Series) -> pd.Series:
    """Responder calls as booleans, read back from a table (True/False, empty unknown)."""
    text = values.astype("string").str.strip().str.lower()
    return text.map({"true": True, "false": False}).dropna().astype(bool)


def _select(samples: pd.DataFrame, subset) -> pd.Series:
    keep = pd.Series(True, index=samples.index)
    for column, values in subset:
        if column not in samples.columns:
            raise InputError(
                f"{origin('de.contrasts')}: a contrast subset uses column '{column}', which is not "
                "in "
                f"the sample sheet; use one of {', '.join(samples.columns)}."
            )
        keep &= samples[column].astype(str).isin(values)
    return keep


def plan_fits(
    samples: pd.DataFrame,
    config: dict,
    clinical: pd.DataFrame | None = None,
    responses: pd.DataFrame | None = None,
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
        Clinical values per subject and timepoint (at least the clinical covariates).
    responses
        The response call table, for contrasts between responders and non-responders
        (their column is added by :func:`add_response_columns`).
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
                f"{origin('de.covariates')}: de.covariates names '{covariate}', which is not a "
                "column "
                f"of the sample sheet or the clinical table, nor a composition score of the "
                f"QC stage; use one of {', '.join(samples.columns)}."
            )
    samples = add_response_columns(samples, responses, config)
    fits: dict[tuple, Fit] = {}
    for contrast in contrasts_from_config(config):
        if contrast.variable not in samples.columns:
            raise InputError(
                f"{origin('de.contrasts')}: contrast '{contrast.name}' compares column "
                f"'{contrast.variable}', which is not in the sample sheet; use one of "
                f"{', '.join(samples.columns)}."
            )
        chosen = samples[_select(samples, contrast.subset)]
        levels = sorted(chosen[contrast.variable].astype(str).unique())
        for role in ("test", "reference"):
            level = getattr(contrast, role)
            if level not in levels:
                raise InputError(
                    f"{origin('de.contrasts')}: contrast '{contrast.name}' has {role} level "
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
                f"{origin('de.contrasts')}: paired contrast(s) "
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
                f"{origin('de.covariates')}: de.covariates '{covariate}' has no value for "
                "sample(s) "
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
            f"{origin('de.contrasts')}: the design {fit.formula} for contrast(s) "
            f"{', '.join(c.name for c in fit.contrasts)} is rank-deficient ({rank} of "
            f"{design.shape[1]} coefficients estimable: {', '.join(design.columns)}); remove a "
            "covariate that is confounded with another term."
        )
    if design.shape[0] <= design.shape[1]:
        raise InputError(
            f"{origin('de.contrasts')}: the design {fit.formula} has {design.shape[1]} "
            "coefficients "
            f"for {design.shape[0]} samples, leaving no residual degrees of freedom; use fewer "
            "covariates or more samples."
        )


def cohort_samples(obs: pd.DataFrame, composition_tsv: str | None = None) -> pd.DataFrame:
    """The cohort's samples as the plan reads them (an AnnData obs), with the QC composition
    scores joined on sample when their table is given."""
    samples = obs.copy()
    samples["timepoint"] = samples["timepoint"].astype(str)
    if composition_tsv is None:
        return samples
    composition = pd.read_csv(composition_tsv, sep="\t", dtype={"sample": str}).set_index("sample")
    new = [c for c in composition.columns if c not in samples.columns]
    return samples.join(composition[new])


def fitted_samples(fit: Fit, samples: pd.DataFrame) -> pd.DataFrame:
    """The samples a fit used: sample, subject, the compared level and the covariates.

    Written beside each DE table (``<contrast>.samples.tsv``), so later steps read what was
    fitted instead of planning again. ``compared`` names the column holding the levels
    (``response`` for a responder contrast).
    """
    compared = "response" if fit.contrasts[0].response is not None else fit.variable
    frame = pd.DataFrame(
        {
            "sample": [str(s) for s in fit.samples],
            "subject": samples.loc[fit.samples, "subject"].astype(str).to_numpy(),
            compared: fit.metadata[fit.variable].astype(str).to_numpy(),
        }
    )
    for covariate in fit.covariates:
        frame[covariate] = fit.metadata[covariate].to_numpy()
    frame["compared"] = compared
    return frame


def compared_levels(fitted: pd.DataFrame) -> pd.Series:
    """Sample -> compared level, named after the compared column, from ``fitted_samples``."""
    column = str(fitted["compared"].iloc[0])
    return fitted.set_index("sample")[column].rename(column)
