"""Differential expression with pydeseq2: contrasts planned and checked before any fit.

Contrasts that share a design and a sample subset are fitted once (``Fit``). A paired
contrast blocks on subject (``~ subject + variable``, the design of nf-core's
differentialabundance ``blocking``): each person is their own control.

Two further kinds build on the paired design:

- a differential response contrast (``between``) compares the change from the reference
  level between two groups of subjects (a drug, a response call): ``~ subject + timepoint
  + timepoint:group``, the full-rank coding of DESeq2's "individuals nested within
  groups" design (``~ group + group:subject_n + group:timepoint``; the group main effect
  is absorbed by the subject term), testing the interaction;
- a likelihood-ratio test (``lrt: true``, DESeq2's ``test = "LRT"``) of the term a contrast
  is about: the variable (``~ subject + timepoint`` against ``~ subject``) or the
  interaction (against ``~ subject + timepoint``).
"""

from __future__ import annotations

import logging
import re
import weakref
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.io import read_tsv

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
class Groups:
    """The two groups of subjects whose changes a differential response contrast compares.

    ``column`` holds the group of every sample and is constant within subject (a sheet
    column such as ``drug``, or the derived column of a response call).
    """

    column: str
    test: str
    reference: str
    #: (response definition, timepoint judged) when the groups are response calls.
    response: tuple[str, str] | None = None

    @property
    def label(self) -> str:
        """Name of the group column in tables written for users (``response`` for calls)."""
        return "response" if self.response is not None else self.column


@dataclass(frozen=True)
class Contrast:
    """One comparison: ``test`` vs ``reference`` levels of ``variable`` in a sample subset.

    With ``between``, the change from ``reference`` to ``test`` is compared between the two
    groups; with ``lrt``, the term is tested by a likelihood-ratio test over every level of
    ``variable`` among the contrast's samples, and ``test`` only names the level whose
    fold change the table reports (None until planned: the last level).
    """

    name: str
    test: str | None
    reference: str
    variable: str = "timepoint"
    paired: bool = True
    subset: tuple[tuple[str, tuple[str, ...]], ...] = ()
    #: (response definition, timepoint judged) for responders vs non-responders.
    response: tuple[str, str] | None = None
    between: Groups | None = None
    lrt: bool = False
    #: One row per sheet column checked against the compared levels (:func:`confounding`).
    design_checks: pd.DataFrame | None = None

    @classmethod
    def from_config(cls, entry: dict, timepoints: list[str]) -> Contrast:
        subset = tuple(sorted((k, tuple(v)) for k, v in entry.get("subset", {}).items()))
        name, lrt = entry["name"], bool(entry.get("lrt", False))
        where = origin("de.contrasts")
        if "response" in entry and "between" in entry:
            raise InputError(
                f"{where}: contrast '{name}' has both response (responders vs non-responders) "
                "and between (the change compared between groups); keep one, e.g. "
                "between: {response: ...} for the change in responders vs non-responders."
            )
        if "response" in entry:
            return cls._responders(entry, timepoints, subset, lrt)
        variable = entry.get("variable", "timepoint")
        test, reference = entry.get("test"), entry.get("reference")
        if reference is None and lrt and variable == "timepoint":
            reference = timepoints[0]
        if reference is None or (test is None and not lrt):
            raise InputError(
                f"{where}: contrast '{name}' needs "
                + ("a reference level" if lrt else "test and reference levels")
                + f" of '{variable}'; add "
                + ("reference:" if lrt else "test: and reference:")
                + " to it."
            )
        between = None
        if "between" in entry:
            if entry.get("paired") is False:
                raise InputError(
                    f"{where}: contrast '{name}' compares changes within subjects between "
                    "groups, which needs the subject term; leave paired out or set it to true."
                )
            between = _groups(entry["between"], name, variable, timepoints)
        return cls(
            name=name,
            test=None if test is None else str(test),
            reference=str(reference),
            variable=variable,
            paired=entry.get("paired", True),
            subset=subset,
            between=between,
            lrt=lrt,
        )

    @classmethod
    def _responders(cls, entry: dict, timepoints: list[str], subset: tuple, lrt: bool) -> Contrast:
        # Responders vs non-responders: a property of the subject, so never paired.
        definition = entry["response"]
        judged_at = str(entry.get("response_at", timepoints[-1]))
        if entry.get("paired", False):
            raise InputError(
                f"{origin('de.contrasts')}: contrast '{entry['name']}' compares responders with "
                "non-responders, which differ between subjects, so it cannot be paired on "
                "subject; set paired: false or leave paired out."
            )
        _check_judged_at(judged_at, entry["name"], timepoints)
        return cls(
            name=entry["name"],
            test=str(entry.get("test", RESPONDER)),
            reference=str(entry.get("reference", NON_RESPONDER)),
            variable=response_column(definition, judged_at),
            paired=False,
            subset=subset,
            response=(definition, judged_at),
            lrt=lrt,
        )

    @property
    def responses(self) -> tuple[str, str] | None:
        """The response call this contrast needs, as a compared variable or as its groups."""
        if self.response is not None:
            return self.response
        return self.between.response if self.between is not None else None


def _check_judged_at(judged_at: str, name: str, timepoints: list[str]) -> None:
    if judged_at not in timepoints[1:]:
        raise InputError(
            f"{origin('de.contrasts')}: contrast '{name}' has response_at '{judged_at}', which "
            f"is not a follow-up timepoint; use one of {', '.join(timepoints[1:])}."
        )


def _groups(spec: dict, name: str, variable: str, timepoints: list[str]) -> Groups:
    """The ``between`` entry of a contrast: a sheet column's two groups, or response calls."""
    where = origin("de.contrasts")
    if "response" in spec:
        if {"column", "test", "reference"} & set(spec):
            raise InputError(
                f"{where}: contrast '{name}' has between.response and between.column/test/"
                "reference; the groups of a response are its responders and non-responders, "
                "so keep only response (and response_at)."
            )
        judged_at = str(spec.get("response_at", timepoints[-1]))
        _check_judged_at(judged_at, name, timepoints)
        column = response_column(spec["response"], judged_at)
        return Groups(column, RESPONDER, NON_RESPONDER, (spec["response"], judged_at))
    missing = [key for key in ("column", "test", "reference") if key not in spec]
    if missing:
        raise InputError(
            f"{where}: contrast '{name}' has between without {', '.join(missing)}; give the "
            "sample-sheet column and its two groups, e.g. between: {column: drug, test: "
            "ruxolitinib, reference: tofacitinib}, or between: {response: <definition>}."
        )
    if spec["column"] in {"subject", variable}:
        raise InputError(
            f"{where}: contrast '{name}' has between.column '{spec['column']}', which is the "
            "subject or the compared variable; use a column constant within subjects, such as "
            "drug or sex."
        )
    if str(spec["test"]) == str(spec["reference"]):
        raise InputError(
            f"{where}: contrast '{name}' compares group '{spec['test']}' with itself; set "
            "between.test and between.reference to two different values."
        )
    return Groups(str(spec["column"]), str(spec["test"]), str(spec["reference"]))


def within_table(contrast: Contrast, group: str) -> str:
    """Name of the table of the change within one group of a differential response contrast."""
    return f"{contrast.name}.within_{re.sub(r'[^A-Za-z0-9_.-]', '_', group)}"


def table_names(contrast: Contrast) -> list[str]:
    """The tables a contrast writes: its own, then (``between``) the change in each group."""
    if contrast.between is None:
        return [contrast.name]
    groups = contrast.between
    return [
        contrast.name,
        within_table(contrast, groups.reference),
        within_table(contrast, groups.test),
    ]


def de_tables(config: dict) -> list[str]:
    """Every DE table the configuration asks for (``results/de/<table>.tsv``), in order."""
    return [name for c in contrasts_from_config(config) for name in table_names(c)]


def table_contrasts(config: dict) -> dict[str, tuple[Contrast, str | None]]:
    """DE table -> its contrast and, for the change within one group of a differential
    response contrast (``<name>.within_<group>``), that group (None for the contrast's own
    table)."""
    tables: dict[str, tuple[Contrast, str | None]] = {}
    for contrast in contrasts_from_config(config):
        tables[contrast.name] = (contrast, None)
        if contrast.between is not None:
            for group in (contrast.between.reference, contrast.between.test):
                tables[within_table(contrast, group)] = (contrast, group)
    return tables


def reported_level(contrast: Contrast, levels: list[str], timepoints: list[str]) -> str:
    """The level whose fold change an LRT table reports: as configured, else the last level
    besides the reference (for timepoints in the configured order), as DESeq2's ``results()``
    reports the last coefficient of the design."""
    if contrast.test is not None:
        return contrast.test
    others = [level for level in levels if level != contrast.reference]
    if contrast.variable == "timepoint":
        order = {tp: i for i, tp in enumerate(timepoints)}
        others = sorted(others, key=lambda level: order.get(level, len(order)))
    else:
        others = sorted(others)
    return others[-1]


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
    between: Groups | None = None
    lrt: bool = False

    @property
    def terms(self) -> list[str]:
        """Additive terms of the design, the compared variable last."""
        return (["subject"] if self.paired else []) + self.covariates + [self.variable]

    @property
    def interaction(self) -> str | None:
        """The interaction term of a differential response design."""
        return f"{self.variable}:{self.between.column}" if self.between is not None else None

    @property
    def formula(self) -> str:
        return "~" + " + ".join(self.terms + ([self.interaction] if self.interaction else []))

    @property
    def reduced_formula(self) -> str | None:
        """The reduced design of a likelihood-ratio test: the full one without the term tested."""
        if not self.lrt:
            return None
        kept = self.terms if self.between is not None else self.terms[:-1]
        return "~" + (" + ".join(kept) or "1")

    @property
    def levels(self) -> list[str]:
        """Levels of the compared variable in the fit, reference first."""
        return list(self.metadata[self.variable].cat.categories)


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
    names = [name for c in contrasts for name in table_names(c)]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise InputError(
            f"{origin('de.contrasts')}: contrast name(s) {', '.join(sorted(duplicated))} used more "
            "than once under de.contrasts (a differential response contrast <name> also writes "
            "<name>.within_<group>); give each contrast its own name."
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


def check_composition_covariates(config: dict) -> None:
    """A blood composition score named as DE covariate for another tissue without a marker
    table of its own is rejected with the reason: the QC stage writes no such score."""
    from ifnsig.qc import SHIPPED_MARKERS, read_markers
    from ifnsig.settings import is_blood

    if is_blood(config) or config["qc"]["markers"]:
        return
    blood = {f"{cell}_score" for cell in read_markers(SHIPPED_MARKERS)}
    for covariate in config["de"]["covariates"]:
        if covariate in blood:
            raise InputError(
                f"{origin('de.covariates')}: de.covariates names '{covariate}', a blood "
                f"composition score, which the QC stage writes only for blood "
                f"({origin('tissue')} sets tissue '{config['tissue']}'); give a marker table "
                "for this tissue under qc.markers or remove it from de.covariates."
            )


def clinical_covariates(config: dict) -> list[str]:
    """DE covariates that are clinical measures (values per visit, e.g. steroid dose)."""
    measures = config.get("clinical_measures") or {}
    return [c for c in config["de"]["covariates"] if c in measures]


def uses_responses(config: dict) -> bool:
    """Whether a contrast compares responders, so the DE stage needs the response calls."""
    return any(
        "response" in entry or "response" in (entry.get("between") or {})
        for entry in config["de"]["contrasts"]
    )


def add_response_columns(
    samples: pd.DataFrame, responses: pd.DataFrame | None, config: dict
) -> pd.DataFrame:
    """The sample sheet with one column per response contrast: responder / non_responder.

    ``responses`` is the clinical stage's call table (:func:`ifnsig.response.call_responses`,
    ``results/clinical/response.tsv``); each contrast takes its definition's calls at its
    ``response_at`` timepoint and gives them to every sample of the subject. Patients
    without an evaluable call get no level and are left out, with a warning naming them.
    """
    wanted = {c.responses for c in contrasts_from_config(config) if c.responses}
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
    check_rank: bool = True,
) -> list[Fit]:
    """Group contrasts into fits and check every level, subject and design before fitting.

    Parameters
    ----------
    samples
        Validated sample sheet (columns from the sheet plus, optionally, derived columns).
    config
        Validated configuration. ``de.keep_unpaired_subjects`` keeps, in paired fits, the
        subjects that lack the reference or every test level (default: they are left out).
    clinical
        Clinical values per subject and timepoint (at least the clinical covariates).
    responses
        The response call table, for contrasts between responders and non-responders
        (their column is added by :func:`add_response_columns`).
    deferred
        Covariates whose values exist only later (the QC stage's composition scores, at
        parse time): accepted by name and left out of this plan's designs.
    check_rank
        Whether to check each design's rank (which builds the design: seconds for a paired
        design of 10,000 samples); False in the jobs that follow one that checked the plan.

    Raises
    ------
    InputError
        Unknown variable, level or group (the message lists the valid ones), a group that
        varies within subjects, no paired subjects left, or a rank-deficient design (the
        message lists the coefficient names).
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
    keep_unpaired = bool(config["de"].get("keep_unpaired_subjects", False))
    fits: dict[tuple, Fit] = {}
    for contrast in contrasts_from_config(config):
        if contrast.variable not in samples.columns:
            raise InputError(
                f"{origin('de.contrasts')}: contrast '{contrast.name}' compares column "
                f"'{contrast.variable}', which is not in the sample sheet; use one of "
                f"{', '.join(samples.columns)}."
            )
        chosen = samples[_select(samples, contrast.subset)]
        levels = sorted(chosen[contrast.variable].dropna().astype(str).unique())
        for role in ("test", "reference"):
            level = getattr(contrast, role)
            if level is not None and level not in levels:
                raise InputError(
                    f"{origin('de.contrasts')}: contrast '{contrast.name}' has {role} level "
                    f"'{level}', which no selected sample has in column '{contrast.variable}'; "
                    f"valid levels: {', '.join(levels) or '(none: check the subset)'}."
                )
        if contrast.between is not None:
            _check_groups(contrast, chosen)
        # A likelihood-ratio test has its own reduced design, so its own fit.
        key = (
            ("lrt", contrast.name)
            if contrast.lrt
            else (
                contrast.variable,
                contrast.reference,
                contrast.paired,
                contrast.subset,
                contrast.between,
            )
        )
        if key not in fits:
            fits[key] = Fit(
                variable=contrast.variable,
                reference=contrast.reference,
                paired=contrast.paired,
                subset=contrast.subset,
                covariates=covariates,
                between=contrast.between,
                lrt=contrast.lrt,
            )
        fits[key].contrasts.append(contrast)
    for fit in fits.values():
        _choose_samples(fit, samples, keep_unpaired)
        fit.metadata = design_frame(fit, samples)
        if fit.lrt:
            fit.contrasts = [_reported_level(c, fit, config) for c in fit.contrasts]
        fit.design_checks = confounding(fit, samples)
        if check_rank:
            _check_rank(fit)
    return list(fits.values())


#: Cramer's V between a column and the compared levels above which the log and
#: ``results/de/design_checks.tsv`` report the column as confounded with them.
CONFOUNDING_V = 0.5
DESIGN_CHECK_COLUMNS = [
    "contrasts", "formula", "compared", "column", "in_design", "n_samples", "cramers_v",
    "levels_in_one_group", "verdict",
]  # fmt: skip


def cramers_v(first: pd.Series, second: pd.Series) -> float:
    """Cramer's V of two categorical columns (chi-square without continuity correction):
    0 when independent, 1 when either determines the other; NaN with a single level."""
    table = pd.crosstab(first.astype(str), second.astype(str)).to_numpy(dtype=float)
    k = min(table.shape) - 1
    if k < 1:
        return float("nan")
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(min(chi2 / (table.sum() * k), 1.0)))


def confounding(fit: Fit, samples: pd.DataFrame) -> pd.DataFrame:
    """Check the design's categorical covariates, and the sheet's ``batch``, against the
    compared levels among the fit's samples.

    A column completely confounded with the compared levels (Cramer's V of 1: one
    determines the other) makes a design holding both unestimable and is an error naming
    both; a ``batch`` left out of the design is then reported, not rejected, since the fit
    runs but cannot tell batch from the comparison. Above :data:`CONFOUNDING_V`, or with a
    level of the column found with one compared level only, a warning says so. Returns one
    row per column checked (:data:`DESIGN_CHECK_COLUMNS`).
    """
    names = ", ".join(c.name for c in fit.contrasts)
    compared = samples.loc[fit.samples, fit.variable].astype(str)
    checked = [c for c in fit.covariates if not pd.api.types.is_numeric_dtype(samples[c])]
    if "batch" in samples.columns and "batch" not in checked and "batch" not in fit.covariates:
        checked.append("batch")
    rows = []
    for column in checked:
        values = samples.loc[fit.samples, column]
        known = values.notna() & (values.astype(str) != "")
        values, levels = values[known].astype(str), compared[known]
        in_design = column in fit.covariates
        v = cramers_v(values, levels) if len(values) else float("nan")
        by_level = levels.groupby(values).agg(lambda x: sorted(set(x)))
        lonely = [f"{lvl} ({group[0]})" for lvl, group in by_level.items() if len(group) == 1]
        if not np.isnan(v) and v > 1 - 1e-9:
            verdict = "complete"
            pairs = "; ".join(f"{lvl}: {', '.join(g)}" for lvl, g in list(by_level.items())[:4])
            if in_design:
                raise InputError(
                    f"{origin('de.covariates')}: in contrast(s) {names}, de.covariates "
                    f"'{column}' is completely confounded with the compared column "
                    f"'{fit.variable}' ({pairs}), so their effects cannot be told apart; remove "
                    f"'{column}' from de.covariates or compare samples that share its levels."
                )
            log.warning(
                "contrast(s) %s: column '%s' of the sample sheet is completely confounded with "
                "the compared column '%s' (%s): the differences found may be %s effects",
                names, column, fit.variable, pairs, column,
            )  # fmt: skip
        elif (not np.isnan(v) and v > CONFOUNDING_V) or (lonely and by_level.size > 1):
            verdict = "confounded" if not np.isnan(v) and v > CONFOUNDING_V else "partly"
            log.warning(
                "contrast(s) %s: column '%s'%s is confounded with the compared column '%s' "
                "(Cramer's V %.2f, warned above %.2f%s); its effect and the comparison are "
                "hard to tell apart (results/de/design_checks.tsv)",
                names,
                column,
                " (in the design)" if in_design else " (not in the design)",
                fit.variable,
                v,
                CONFOUNDING_V,
                f"; level(s) with one compared level only: {', '.join(lonely[:5])}"
                if lonely
                else "",
            )
        else:
            verdict = "ok"
        rows.append(
            {
                "contrasts": names,
                "formula": fit.formula,
                "compared": fit.variable,
                "column": column,
                "in_design": in_design,
                "n_samples": int(known.sum()),
                "cramers_v": v,
                "levels_in_one_group": ";".join(lonely),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows, columns=DESIGN_CHECK_COLUMNS)


def design_checks(fits: list[Fit]) -> pd.DataFrame:
    """The confounding checks of every fit, one table (``results/de/design_checks.tsv``)."""
    frames = [f.design_checks for f in fits if f.design_checks is not None]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=DESIGN_CHECK_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def _check_groups(contrast: Contrast, chosen: pd.DataFrame) -> None:
    """The groups of a differential response contrast exist and are constant within subjects."""
    groups = contrast.between
    where = origin("de.contrasts")
    if groups.column not in chosen.columns:
        raise InputError(
            f"{where}: contrast '{contrast.name}' compares groups of column '{groups.column}', "
            f"which is not in the sample sheet; use one of {', '.join(chosen.columns)}."
        )
    present = sorted(chosen[groups.column].dropna().astype(str).unique())
    for role in ("test", "reference"):
        group = getattr(groups, role)
        if group not in present:
            raise InputError(
                f"{where}: contrast '{contrast.name}' has between.{role} '{group}', which no "
                f"selected sample has in column '{groups.column}'; valid groups: "
                f"{', '.join(present) or '(none: check the subset)'}."
            )
    per_subject = chosen.dropna(subset=[groups.column]).groupby("subject", observed=True)[
        groups.column
    ]
    varying = sorted(map(str, per_subject.nunique().loc[lambda n: n > 1].index))
    if varying:
        raise InputError(
            f"{where}: contrast '{contrast.name}' compares groups of column '{groups.column}', "
            f"which changes within subject(s) {', '.join(varying[:10])}"
            f"{' ...' if len(varying) > 10 else ''}; the groups must be a property of the "
            "subject (drug, sex, a response call): correct the sample sheet or choose another "
            "column."
        )


def _reported_level(contrast: Contrast, fit: Fit, config: dict) -> Contrast:
    """An LRT contrast with its reported level: as configured, else the last level.

    DESeq2's ``results()`` reports the last coefficient of the design for an LRT; for
    timepoints "last" follows the configured order.
    """
    if contrast.test is not None:
        return contrast
    return replace(contrast, test=reported_level(contrast, fit.levels, config["timepoints"]))


def _choose_samples(fit: Fit, samples: pd.DataFrame, keep_unpaired: bool = False) -> None:
    chosen = samples[_select(samples, fit.subset)]
    names = ", ".join(c.name for c in fit.contrasts)
    if fit.between is not None:
        groups = fit.between
        in_groups = chosen[groups.column].astype("string").isin([groups.test, groups.reference])
        unknown = chosen[chosen[groups.column].isna()]
        if len(unknown) and groups.response is None:
            log.warning(
                "contrast(s) %s: subject(s) %s have no value in column '%s' and are left out",
                names,
                ", ".join(sorted(set(unknown["subject"].astype(str)))),
                groups.column,
            )
        chosen = chosen[in_groups.fillna(False).to_numpy(dtype=bool)]
    chosen = chosen[chosen[fit.variable].notna()]
    if fit.lrt:
        tests = set(chosen[fit.variable].astype(str)) - {fit.reference}
        if not tests:
            raise InputError(
                f"{origin('de.contrasts')}: likelihood-ratio contrast {names} has no level of "
                f"'{fit.variable}' besides '{fit.reference}' among its samples, so there is "
                "nothing to test; widen its subset."
            )
    else:
        tests = {c.test for c in fit.contrasts}
    chosen = chosen[chosen[fit.variable].astype(str).isin(tests | {fit.reference})]
    if fit.paired:
        # Per subject: has it the reference, has it a test level (column-wise, not one
        # Python call per subject: a cohort of 10,000 samples has 5,000).
        values = chosen[fit.variable].astype(str)
        subjects = chosen["subject"]
        has = pd.DataFrame({"reference": values == fit.reference, "test": values.isin(tests)})
        by_subject = has.groupby(subjects, observed=True).any()
        complete = by_subject[by_subject["reference"] & by_subject["test"]]
        incomplete = sorted(map(str, set(by_subject.index) - set(complete.index)))
        if incomplete and keep_unpaired:
            # DESeq2 given these samples fits them too: their subject coefficient absorbs
            # them, but they still weigh on size factors, dispersions and base means.
            log.info(
                "contrast(s) %s: %d subject(s) lacking '%s' or every test level are kept in "
                "the paired fit (de.keep_unpaired_subjects): %s",
                names,
                len(incomplete),
                fit.reference,
                ", ".join(incomplete),
            )
        elif incomplete:
            log.warning(
                "contrast(s) %s: %d subject(s) lacking '%s' or every test level are left out "
                "of the paired fit (de.keep_unpaired_subjects: false): %s",
                names,
                len(incomplete),
                fit.reference,
                ", ".join(incomplete),
            )
        else:
            log.info(
                "contrast(s) %s: every subject has '%s' and a test level", names, fit.reference
            )
        if complete.empty:
            raise InputError(
                f"{origin('de.contrasts')}: paired contrast(s) {names} have no subject with "
                f"both '{fit.reference}' and a test level; check the sample sheet or set "
                "paired: false."
            )
        if not keep_unpaired:
            chosen = chosen[chosen["subject"].isin(complete.index)]
        if fit.between is not None:
            _check_groups_paired(fit, chosen, set(map(str, complete.index)), names)
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
                f"of contrast(s) {names}; fill it in the "
                "sample sheet or clinical table, or remove the covariate."
            )
    fit.samples = list(chosen.index)


def _check_groups_paired(fit: Fit, chosen: pd.DataFrame, complete: set[str], names: str) -> None:
    """Each group needs a subject with the reference and a test level to show its change."""
    groups = fit.between
    group_of = chosen.groupby(chosen["subject"].astype(str))[groups.column].first().astype(str)
    for group in (groups.reference, groups.test):
        members = set(group_of.index[group_of == group])
        if not members & complete:
            raise InputError(
                f"{origin('de.contrasts')}: contrast(s) {names}: no subject of group '{group}' "
                f"(column '{groups.column}') has both '{fit.reference}' and a test level, so "
                "the change in that group cannot be estimated; check the sample sheet or the "
                "subset."
            )


def design_frame(fit: Fit, samples: pd.DataFrame) -> pd.DataFrame:
    """Metadata for pydeseq2: the fit's columns, with the reference as first category."""
    columns = (["subject"] if fit.paired else []) + fit.covariates
    if fit.between is not None:
        columns.append(fit.between.column)
    frame = samples.loc[fit.samples, columns].copy()
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype(str)
    if fit.between is not None:
        groups = fit.between
        frame[groups.column] = pd.Categorical(
            frame[groups.column], categories=[groups.reference, groups.test]
        )
    values = samples.loc[fit.samples, fit.variable].astype(str)
    levels = [fit.reference] + sorted(set(values) - {fit.reference})
    frame[fit.variable] = pd.Categorical(values, categories=levels)
    return frame


def level_column(fit: Fit, level: str) -> str:
    """Design column of ``level`` of the compared variable (treatment coding)."""
    return f"{fit.variable}[T.{level}]"


def interaction_column(fit: Fit, level: str) -> str:
    """Design column of the interaction of ``level`` with the test group."""
    groups = fit.between
    return f"{level_column(fit, level)}:{groups.column}[T.{groups.test}]"


#: The last design built, for the fit (a weak reference) and metadata it was built from: a
#: job asks for its fit's design several times (the plan's rank check, the dataset, the
#: contrasts), and a paired design of 10,000 samples takes seconds to build and 400 MB.
_LAST_DESIGN: tuple[weakref.ref, int, str, pd.DataFrame] | None = None


def design_matrix(fit: Fit) -> pd.DataFrame:
    """The fit's design matrix, with formulaic's (pydeseq2's) coding and column names.

    A differential response design gets, for each non-reference level, the product of the
    level's indicator and the test group's indicator: the full-rank coding of
    ``timepoint:group`` beside ``subject`` (formulaic, like R, would code the group in
    full there, because its main effect is absent, and the design would be singular).

    The same fit (with the same metadata) gets the same frame again, read-only: callers
    copy it to change it.
    """
    global _LAST_DESIGN
    last = _LAST_DESIGN
    if (
        last is not None
        and last[0]() is fit
        and last[1] == id(fit.metadata)
        and last[2] == fit.formula
    ):
        return last[3]
    values, columns = _design_values(fit)
    values.flags.writeable = False
    design = pd.DataFrame(values, index=fit.metadata.index, columns=columns, copy=False)
    _LAST_DESIGN = (weakref.ref(fit), id(fit.metadata), fit.formula, design)
    return design


def _design_values(fit: Fit) -> tuple[np.ndarray, list[str]]:
    """The design's values (column-major, as pydeseq2's formulaic frames) and column names.

    formulaic's sparse output, densified: the same columns and numbers as its pandas output
    (which pydeseq2's ``FormulaicContrasts`` builds), in a fraction of the time for a
    paired design's thousands of indicator columns.
    """
    from formulaic import model_matrix

    additive = "~" + " + ".join(fit.terms)
    matrix = model_matrix(additive, fit.metadata, output="sparse")
    columns = list(matrix.model_spec.column_names)
    extra = []
    if fit.between is not None:
        in_test = (fit.metadata[fit.between.column].astype(str) == fit.between.test).to_numpy()
        levels = fit.metadata[fit.variable].astype(str).to_numpy()
        for level in fit.levels[1:]:
            columns.append(interaction_column(fit, level))
            extra.append(((levels == level) & in_test).astype(float))
    from scipy import sparse

    entries = sparse.csc_matrix(matrix)
    values = np.zeros((entries.shape[0], len(columns)), order="F")
    in_column = np.repeat(np.arange(entries.shape[1]), np.diff(entries.indptr))
    values[entries.indices, in_column] = entries.data
    for i, column in enumerate(extra):
        values[:, entries.shape[1] + i] = column
    return values, columns


def reduced_design(fit: Fit, design: pd.DataFrame | None = None) -> pd.DataFrame:
    """The reduced design of an LRT fit: the full design without the columns of the term tested."""
    design = design_matrix(fit) if design is None else design
    if fit.between is not None:
        dropped = [interaction_column(fit, level) for level in fit.levels[1:]]
    else:
        dropped = [level_column(fit, level) for level in fit.levels[1:]]
    return design.drop(columns=dropped)


def contrast_vectors(fit: Fit, contrast: Contrast, columns: list[str]) -> dict[str, np.ndarray]:
    """Table name -> contrast vector over the design ``columns``, for one contrast.

    A differential response contrast gives the interaction (the change in the test group
    minus that in the reference group), then the change in the reference group (the
    level's coefficient) and in the test group (level + interaction).
    """

    def unit(*names: str) -> np.ndarray:
        vector = np.zeros(len(columns))
        for name in names:
            vector[columns.index(name)] = 1.0
        return vector

    level = level_column(fit, contrast.test)
    if fit.between is None:
        return {contrast.name: unit(level)}
    interaction = interaction_column(fit, contrast.test)
    groups = fit.between
    return {
        contrast.name: unit(interaction),
        within_table(contrast, groups.reference): unit(level),
        within_table(contrast, groups.test): unit(level, interaction),
    }


def _check_rank(fit: Fit) -> None:
    from ifnsig.de.indicators import design_rank

    design = design_matrix(fit)
    rank = design_rank(design.to_numpy())
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
    composition = read_tsv(composition_tsv, dtype={"sample": str}).set_index("sample")
    new = [c for c in composition.columns if c not in samples.columns]
    return samples.join(composition[new])


def fitted_samples(fit: Fit, samples: pd.DataFrame) -> pd.DataFrame:
    """The samples a fit used: sample, subject, the compared level and the covariates.

    Written beside each DE table (``<contrast>.samples.tsv``), so later steps read what was
    fitted instead of planning again. ``compared`` names the column holding the levels
    (``response`` for a responder contrast; for a differential response contrast
    ``group_<variable>``, the group and the level joined by a dot, beside both columns).
    """
    compared = "response" if fit.contrasts[0].response is not None else fit.variable
    frame = pd.DataFrame(
        {
            "sample": [str(s) for s in fit.samples],
            "subject": samples.loc[fit.samples, "subject"].astype(str).to_numpy(),
            compared: fit.metadata[fit.variable].astype(str).to_numpy(),
        }
    )
    if fit.between is not None:
        group = fit.metadata[fit.between.column].astype(str).to_numpy()
        frame[fit.between.label] = group
        compared = f"group_{fit.variable}"
        frame[compared] = [f"{g}.{v}" for g, v in zip(group, frame[fit.variable], strict=True)]
    for covariate in fit.covariates:
        frame[covariate] = fit.metadata[covariate].to_numpy()
    frame["compared"] = compared
    return frame


def compared_levels(fitted: pd.DataFrame) -> pd.Series:
    """Sample -> compared level, named after the compared column, from ``fitted_samples``."""
    column = str(fitted["compared"].iloc[0])
    return fitted.set_index("sample")[column].rename(column)
