"""Clinical linkage: does the IFN score fall on treatment, and does the fall track response?

Every statistics table is tidy, one row per test, with the number of subjects used
(pairwise complete: a subject enters a test when it has every value that test needs), the
estimate, its confidence interval, the p-value and the Benjamini-Hochberg q-value.

Response definitions (config ``linkage.responses``) turn the clinical table into a call per
subject and timepoint; :func:`call_responses` writes the rule and the values behind every
call, so each one can be traced back to the clinical table.
"""

from __future__ import annotations

import logging
import math
import warnings
import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.tools.sm_exceptions import (
    ConvergenceWarning,
    PerfectSeparationError,
    PerfectSeparationWarning,
)

from ifnsig.errors import InputError

log = logging.getLogger(__name__)

# PRINTO criteria for clinically inactive juvenile dermatomyositis (Lazarevic et al., Ann
# Rheum Dis 2013;72:686-693): at least 3 of CK <= 150 U/L, CMAS >= 48, MMT8 >= 78 and
# physician global assessment of disease activity (PhyGloVAS) <= 0.2, PRINTO's 10 cm VAS.
PRINTO_CRITERIA = {
    "ck": ("<=", 150.0),
    "cmas": (">=", 48.0),
    "mmt8": (">=", 78.0),
    "physician_global": ("<=", 0.2),
}
PRINTO_DEFAULT_MEASURES = {
    "ck": "CK",
    "cmas": "CMAS",
    "mmt8": "MMT8",
    "physician_global": "physician_global",
}
PRINTO_VAS_MAX = 10.0
PRINTO_MIN_CRITERIA = 3

# Calls made on the change from baseline exist at follow-ups only; states at every timepoint.
CHANGE_RESPONSES = ("improvement", "steroid_sparing")
STATE_RESPONSES = ("printo_inactive", "column")
COMBINED_RESPONSES = ("all_of", "any_of")

TRUE_WORDS = {"1", "true", "yes", "responder"}
FALSE_WORDS = {"0", "false", "no", "non-responder", "nonresponder"}
RESERVED_COLUMNS = {"sample", "subject", "group", "timepoint"}

CHANGE_COLUMNS = [
    "subject",
    "timepoint",
    "measure",
    "value",
    "baseline_value",
    "change",
    "percent_change",
    "improvement",
]
RESPONSE_COLUMNS = [
    "response",
    "type",
    "rule",
    "subject",
    "timepoint",
    "responder",
    "criteria_met",
    "criteria_evaluable",
    "inputs",
]
PAIRED_COLUMNS = [
    "signature",
    "method",
    "timepoint",
    "reference",
    "n",
    "median_baseline",
    "median_followup",
    "estimate",
    "ci_low",
    "ci_high",
    "effect_size",
    "statistic",
    "pvalue",
    "qvalue",
]
CORRELATION_COLUMNS = [
    "signature",
    "method",
    "timepoint",
    "measure",
    "n",
    "estimate",
    "ci_low",
    "ci_high",
    "pvalue",
    "qvalue",
]
PREDICTION_COLUMNS = [
    "signature",
    "method",
    "response",
    "timepoint",
    "predictor",
    "analysis",
    "covariates",
    "n",
    "n_responders",
    "estimate",
    "ci_low",
    "ci_high",
    "statistic",
    "pvalue",
    "qvalue",
    "note",
]
MIXED_COLUMNS = [
    "signature",
    "method",
    "measure",
    "covariates",
    "n",
    "n_obs",
    "n_timepoints",
    "estimate",
    "ci_low",
    "ci_high",
    "statistic",
    "pvalue",
    "qvalue",
    "converged",
    "note",
]


# --- helpers -------------------------------------------------------------------------------


def bh(pvalues: pd.Series) -> np.ndarray:
    """Benjamini-Hochberg q-values; missing p-values stay missing."""
    p = pd.to_numeric(pvalues, errors="coerce").to_numpy(dtype=float)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return q


def _bh_within(table: pd.DataFrame, by: list[str]) -> np.ndarray:
    q = np.full(len(table), np.nan)
    if table.empty:
        return q
    for _, index in table.groupby(by, sort=False).groups.items():
        positions = table.index.get_indexer(index)
        q[positions] = bh(table["pvalue"].iloc[positions])
    return q


def row_rng(seed: int, *key: object) -> np.random.Generator:
    """Generator seeded by the run's seed and the row's key.

    Each row's bootstrap then depends only on the seed and its own data, not on how many
    other signatures, measures or timepoints are analysed before it.
    """
    digest = zlib.crc32("\t".join(str(k) for k in key).encode())
    return np.random.default_rng([seed, digest])


def bootstrap_ci(
    data: tuple[np.ndarray, ...],
    statistic: Callable,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
    paired: bool = False,
) -> tuple[float, float]:
    """BCa bootstrap interval (scipy.stats.bootstrap; Efron 1987); NaN when not computable."""
    if n_resamples <= 0 or len(data[0]) < 3:
        return np.nan, np.nan
    result = stats.bootstrap(
        data,
        statistic,
        n_resamples=n_resamples,
        vectorized=True,
        paired=paired,
        confidence_level=confidence,
        method="BCa",
        rng=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def spearman_rho(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along ``axis`` (Pearson correlation of mid-ranks), vectorized."""
    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=axis) / np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))


def auc_delong(
    positive: np.ndarray, negative: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """ROC AUC with DeLong's confidence interval.

    AUC is P(value of a responder > value of a non-responder) + P(tie) / 2, the
    Mann-Whitney U divided by n1 * n0; its variance comes from the structural components
    of DeLong, DeLong & Clarke-Pearson (Biometrics 1988), as pROC's default ``ci.auc``.
    The interval is clipped to [0, 1].
    """
    x = np.asarray(positive, dtype=float)[:, None]
    y = np.asarray(negative, dtype=float)[None, :]
    psi = (x > y) + 0.5 * (x == y)
    auc = float(psi.mean())
    m, n = psi.shape
    if m < 2 or n < 2:
        return auc, np.nan, np.nan
    variance = psi.mean(axis=1).var(ddof=1) / m + psi.mean(axis=0).var(ddof=1) / n
    half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(variance)
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def _num(value: float) -> str:
    return "NA" if value is None or pd.isna(value) else f"{value:.4g}"


def _order_timepoints(frame: pd.DataFrame, timepoints: list[str], by: list[str]) -> pd.DataFrame:
    order = {tp: i for i, tp in enumerate(timepoints)}
    return frame.sort_values(
        by, key=lambda s: s.map(order) if s.name == "timepoint" else s, kind="stable"
    ).reset_index(drop=True)


# --- changes -------------------------------------------------------------------------------


def measure_changes(
    clinical: pd.DataFrame, measures: dict[str, dict], timepoints: list[str]
) -> pd.DataFrame:
    """Change and percent change of each measure from baseline, per subject and timepoint.

    ``improvement`` is the change signed so that positive means better (for measures where
    lower is better, such as CAT-BM or steroid dose, the sign is flipped).
    """
    baseline = timepoints[0]
    long = clinical.melt(
        id_vars=["subject", "timepoint"],
        value_vars=list(measures),
        var_name="measure",
        value_name="value",
    )
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    base = long[long["timepoint"] == baseline].set_index(["subject", "measure"])["value"]
    long["baseline_value"] = base.reindex(
        pd.MultiIndex.from_frame(long[["subject", "measure"]])
    ).to_numpy()
    long["change"] = long["value"] - long["baseline_value"]
    with np.errstate(divide="ignore", invalid="ignore"):
        long["percent_change"] = np.where(
            long["baseline_value"] != 0, 100 * long["change"] / long["baseline_value"], np.nan
        )
    direction = long["measure"].map(
        {m: 1.0 if spec["higher_is_better"] else -1.0 for m, spec in measures.items()}
    )
    long["improvement"] = long["change"] * direction
    return _order_timepoints(long[CHANGE_COLUMNS], timepoints, ["measure", "subject", "timepoint"])


def score_changes(scores: pd.DataFrame, timepoints: list[str], patient: str) -> pd.DataFrame:
    """Per patient, signature and method: the score at each timepoint and its change."""
    baseline = timepoints[0]
    patients = scores[scores["group"] == patient]
    keys = ["subject", "signature", "method"]
    base = patients[patients["timepoint"] == baseline].set_index(keys)["score"]
    out = patients[keys + ["timepoint", "score"]].copy()
    out["baseline_score"] = base.reindex(pd.MultiIndex.from_frame(out[keys])).to_numpy()
    out["change"] = out["score"] - out["baseline_score"]
    return out.reset_index(drop=True)


# --- response definitions ------------------------------------------------------------------


def printo_measures(definition: dict) -> dict[str, str]:
    """Clinical-table columns of the four PRINTO criteria (defaults CK, CMAS, MMT8, ...)."""
    return {**PRINTO_DEFAULT_MEASURES, **(definition.get("measures") or {})}


def printo_physician_cutoff(definition: dict, measures: dict[str, dict]) -> float:
    """The physician-global cutoff on the user's scale.

    PRINTO's 0.2 is on a 10 cm VAS; it is rescaled to the declared maximum of the user's
    measure (0.02 on a 0-1 scale, 2 on 0-100 mm) unless ``physician_global_cutoff`` is set.
    """
    if definition.get("physician_global_cutoff") is not None:
        return float(definition["physician_global_cutoff"])
    column = printo_measures(definition)["physician_global"]
    return PRINTO_CRITERIA["physician_global"][1] * measures[column]["max"] / PRINTO_VAS_MAX


def parse_response_column(values: pd.Series, path: str, column: str) -> pd.Series:
    """A user's responder column as a nullable boolean (yes/no, true/false, 1/0, empty)."""
    text = values.astype("string").str.strip().str.lower()
    text = text.replace({"1.0": "1", "0.0": "0"})
    calls = pd.Series(pd.NA, index=values.index, dtype="boolean")
    calls[text.isin(TRUE_WORDS).fillna(False)] = True
    calls[text.isin(FALSE_WORDS).fillna(False)] = False
    unknown = calls.isna() & text.notna() & (text != "")
    if unknown.any():
        i = int(unknown.to_numpy().nonzero()[0][0])
        raise InputError(
            f"{path}: line {i + 2}, column '{column}' holds '{values.iloc[i]}', which is not a "
            "response call; write yes/no, true/false or 1/0, or leave the cell empty if unknown."
        )
    return calls


def check_linkage(
    config: dict,
    clinical: pd.DataFrame | None,
    samples: pd.DataFrame,
    config_file: str = "config/config.yaml",
) -> None:
    """Check the response definitions and covariates against the declared inputs.

    Raises :class:`InputError` naming the config key (or the clinical table's line and
    column) and the fix; run at parse time, before any job.
    """
    settings = config.get("linkage") or {}
    definitions = settings.get("responses") or []
    measures = config["clinical_measures"]
    declared = ", ".join(measures) or "none"
    if definitions and clinical is None:
        raise InputError(
            f"{config_file}: linkage.responses defines {len(definitions)} response(s) but "
            "no clinical table is set; set 'clinical' to your clinical table or remove them."
        )

    def require_measure(key: str, measure: str) -> None:
        if measure not in measures:
            raise InputError(
                f"{config_file}: {key} names measure '{measure}', which is not declared under "
                f"clinical_measures; declare it or use one of: {declared}."
            )

    seen: list[str] = []
    for i, definition in enumerate(definitions):
        name, kind = definition["name"], definition["type"]
        key = f"linkage.responses[{i}] ('{name}')"
        if name in seen:
            raise InputError(
                f"{config_file}: {key} reuses the name '{name}'; give each response its own name."
            )
        if kind in CHANGE_RESPONSES:
            require_measure(key, definition["measure"])
        elif kind == "printo_inactive":
            columns = printo_measures(definition)
            for measure in columns.values():
                require_measure(key, measure)
            physician = columns["physician_global"]
            if (
                definition.get("physician_global_cutoff") is None
                and measures[physician].get("max") is None
            ):
                raise InputError(
                    f"{config_file}: {key} needs the scale of '{physician}' to place PRINTO's "
                    f"cutoff (0.2 on a 10 cm VAS); declare its max under clinical_measures "
                    "(10, 1 or 100) or set physician_global_cutoff."
                )
        elif kind == "column":
            column = definition["column"]
            if column not in clinical.columns:
                raise InputError(
                    f"{config['clinical']}: column '{column}' named by {config_file} {key} is "
                    f"missing; add it or fix the name (columns: {', '.join(clinical.columns)})."
                )
            parse_response_column(clinical[column], str(config["clinical"]), column)
        else:
            for part in definition["of"]:
                if part not in seen:
                    raise InputError(
                        f"{config_file}: {key} combines '{part}', which is not defined above "
                        f"it; define it first (defined so far: {', '.join(seen) or 'none'})."
                    )
        seen.append(name)
    primary = settings.get("primary_response")
    if primary is not None and primary not in seen:
        raise InputError(
            f"{config_file}: linkage.primary_response '{primary}' is not a defined response; "
            f"use one of: {', '.join(seen) or 'none (define linkage.responses first)'}."
        )
    sheet = [c for c in samples.columns if c not in RESERVED_COLUMNS]
    for covariate in settings.get("covariates") or []:
        if covariate not in measures and covariate not in sheet:
            raise InputError(
                f"{config_file}: linkage.covariates names '{covariate}', which is neither a "
                f"clinical measure nor a sample-sheet column; use one of: "
                f"{', '.join([*measures, *sheet]) or 'none'}."
            )


def response_rule(definition: dict, measures: dict[str, dict]) -> str:
    """The definition in words, written next to every call."""
    kind = definition["type"]
    if kind == "improvement":
        measure = definition["measure"]
        unit = "%" if definition.get("scale", "absolute") == "percent" else ""
        better = "higher" if measures[measure]["higher_is_better"] else "lower"
        return (
            f"{measure} improves by >= {definition['at_least']:g}{unit} from baseline "
            f"({better} is better)"
        )
    if kind == "steroid_sparing":
        return (
            f"{definition['measure']} reduced by >= {definition['reduction_percent']:g}% "
            "from baseline"
        )
    if kind == "printo_inactive":
        columns = printo_measures(definition)
        parts = []
        for role, (op, cutoff) in PRINTO_CRITERIA.items():
            if role == "physician_global":
                cutoff = printo_physician_cutoff(definition, measures)
            parts.append(f"{columns[role]} {op} {cutoff:g}")
        return f"PRINTO inactive disease: >= {PRINTO_MIN_CRITERIA} of " + "; ".join(parts)
    if kind == "column":
        return f"clinical-table column '{definition['column']}'"
    joiner = " and " if kind == "all_of" else " or "
    return joiner.join(definition["of"])


def _change_calls(
    definition: dict, changes: pd.DataFrame, measures: dict[str, dict], followups: list[str]
) -> list[dict]:
    measure = definition["measure"]
    rows = changes[(changes["measure"] == measure) & changes["timepoint"].isin(followups)]
    calls = []
    for r in rows.itertuples(index=False):
        if definition["type"] == "improvement":
            percent = definition.get("scale", "absolute") == "percent"
            sign = 1.0 if measures[measure]["higher_is_better"] else -1.0
            amount = sign * (r.percent_change if percent else r.change)
            cutoff = float(definition["at_least"])
            what = f"improvement {_num(amount)}{'%' if percent else ''}"
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                amount = (
                    100.0 * (r.baseline_value - r.value) / r.baseline_value
                    if r.baseline_value and not pd.isna(r.baseline_value)
                    else np.nan
                )
            cutoff = float(definition["reduction_percent"])
            what = f"reduction {_num(amount)}%"
            if r.baseline_value == 0:
                what += " (no dose at baseline: not evaluable)"
        evaluable = not pd.isna(amount)
        calls.append(
            {
                "subject": r.subject,
                "timepoint": r.timepoint,
                "responder": bool(amount >= cutoff) if evaluable else pd.NA,
                "criteria_met": int(amount >= cutoff) if evaluable else pd.NA,
                "criteria_evaluable": int(evaluable),
                "inputs": f"{measure}: baseline {_num(r.baseline_value)}, {r.timepoint} "
                f"{_num(r.value)}, {what}",
            }
        )
    return calls


def _printo_calls(
    definition: dict, clinical: pd.DataFrame, measures: dict[str, dict]
) -> list[dict]:
    columns = printo_measures(definition)
    cutoffs = {role: cutoff for role, (_, cutoff) in PRINTO_CRITERIA.items()}
    cutoffs["physician_global"] = printo_physician_cutoff(definition, measures)
    calls = []
    for _, row in clinical.iterrows():
        met = evaluable = 0
        parts = []
        for role, (op, _) in PRINTO_CRITERIA.items():
            value = pd.to_numeric(row[columns[role]], errors="coerce")
            if pd.isna(value):
                parts.append(f"{columns[role]}=NA")
                continue
            ok = value <= cutoffs[role] if op == "<=" else value >= cutoffs[role]
            evaluable += 1
            met += int(ok)
            verdict = "met" if ok else "not met"
            parts.append(f"{columns[role]}={_num(value)} ({op}{cutoffs[role]:g}: {verdict})")
        missing = len(PRINTO_CRITERIA) - evaluable
        if met >= PRINTO_MIN_CRITERIA:
            call = True
        elif met + missing < PRINTO_MIN_CRITERIA:
            call = False
        else:
            call = pd.NA  # the missing criteria could still tip the call
        calls.append(
            {
                "subject": row["subject"],
                "timepoint": row["timepoint"],
                "responder": call,
                "criteria_met": met,
                "criteria_evaluable": evaluable,
                "inputs": "; ".join(parts),
            }
        )
    return calls


def _column_calls(definition: dict, clinical: pd.DataFrame, path: str) -> list[dict]:
    column = definition["column"]
    parsed = parse_response_column(clinical[column], path, column)
    return [
        {
            "subject": subject,
            "timepoint": timepoint,
            "responder": call,
            "criteria_met": pd.NA if pd.isna(call) else int(call),
            "criteria_evaluable": int(not pd.isna(call)),
            "inputs": f"{column}={'NA' if pd.isna(raw) else raw}",
        }
        for subject, timepoint, raw, call in zip(
            clinical["subject"], clinical["timepoint"], clinical[column], parsed, strict=True
        )
    ]


def _combined_calls(definition: dict, made: dict[str, pd.DataFrame]) -> list[dict]:
    parts = [
        made[name].set_index(["subject", "timepoint"])["responder"] for name in definition["of"]
    ]
    keys = parts[0].index
    for part in parts[1:]:
        keys = keys.intersection(part.index, sort=False)
    calls = []
    for key in keys:
        values = [part.loc[key] for part in parts]
        known = [bool(v) for v in values if not pd.isna(v)]
        if definition["type"] == "all_of":
            # Kleene logic: one failed component decides; a missing one leaves it open.
            call = False if False in known else (True if len(known) == len(values) else pd.NA)
        else:
            call = True if True in known else (False if len(known) == len(values) else pd.NA)
        calls.append(
            {
                "subject": key[0],
                "timepoint": key[1],
                "responder": call,
                "criteria_met": sum(known),
                "criteria_evaluable": len(known),
                "inputs": "; ".join(
                    f"{name}={'NA' if pd.isna(v) else ('yes' if v else 'no')}"
                    for name, v in zip(definition["of"], values, strict=True)
                ),
            }
        )
    return calls


def call_responses(
    clinical: pd.DataFrame,
    changes: pd.DataFrame,
    definitions: list[dict],
    measures: dict[str, dict],
    timepoints: list[str],
    clinical_path: str = "clinical table",
) -> pd.DataFrame:
    """Responder calls per definition, subject and timepoint, with the rule and its inputs.

    Parameters
    ----------
    clinical
        Validated clinical table (subject, timepoint, measures, optional responder columns).
    changes
        Output of :func:`measure_changes`.
    definitions
        ``linkage.responses`` from the config, already checked by :func:`check_linkage`.
        Types: ``improvement`` (change from baseline in the measure's better direction,
        absolute or percent, at least ``at_least``), ``steroid_sparing`` (dose reduced by at
        least ``reduction_percent`` %), ``printo_inactive`` (PRINTO clinically inactive
        disease), ``column`` (the user's own call), ``all_of`` / ``any_of`` (combinations).
    measures, timepoints
        Declared measures and ordered timepoints.

    Returns
    -------
    pandas.DataFrame
        One row per definition, subject and timepoint: ``responder`` (True, False or empty
        when not evaluable), criteria met/evaluable, the rule and the values used.
    """
    followups = timepoints[1:]
    made: dict[str, pd.DataFrame] = {}
    frames = []
    for definition in definitions:
        kind = definition["type"]
        if kind in CHANGE_RESPONSES:
            calls = _change_calls(definition, changes, measures, followups)
        elif kind == "printo_inactive":
            calls = _printo_calls(definition, clinical, measures)
        elif kind == "column":
            calls = _column_calls(definition, clinical, clinical_path)
        else:
            calls = _combined_calls(definition, made)
        frame = pd.DataFrame(
            calls,
            columns=[
                "subject",
                "timepoint",
                "responder",
                "criteria_met",
                "criteria_evaluable",
                "inputs",
            ],
        )
        frame["responder"] = frame["responder"].astype("boolean")
        frame.insert(0, "response", definition["name"])
        frame.insert(1, "type", kind)
        frame.insert(2, "rule", response_rule(definition, measures))
        made[definition["name"]] = frame
        frames.append(_order_timepoints(frame, timepoints, ["subject", "timepoint"]))
    if not frames:
        return pd.DataFrame(columns=RESPONSE_COLUMNS)
    table = pd.concat(frames, ignore_index=True)[RESPONSE_COLUMNS]
    for name, group in table.groupby("response", sort=False):
        counts = group["responder"].value_counts(dropna=False)
        log.info(
            "response %s: %d responder, %d non-responder, %d not evaluable calls",
            name,
            counts.get(True, 0),
            counts.get(False, 0),
            group["responder"].isna().sum(),
        )
    return table


# --- covariates ------------------------------------------------------------------------------


def covariate_values(
    samples: pd.DataFrame, clinical: pd.DataFrame | None, covariates: list[str]
) -> pd.DataFrame:
    """Covariates per subject and timepoint: clinical measures and sample-sheet columns.

    Clinical measures (e.g. prednisone dose) vary with time; sample-sheet columns (drug,
    sex, age, batch) are taken from the sample of that subject and timepoint.
    """
    keys = ["subject", "timepoint"]
    sheet = [c for c in covariates if c in samples.columns and c not in RESERVED_COLUMNS]
    frame = samples[keys + sheet].drop_duplicates(keys).reset_index(drop=True)
    frame["subject"] = frame["subject"].astype(str)
    frame["timepoint"] = frame["timepoint"].astype(str)
    measured = [c for c in covariates if c not in sheet]
    if measured and clinical is not None:
        frame = frame.merge(clinical[keys + measured], on=keys, how="outer")
    for covariate in covariates:
        if covariate not in frame.columns:
            frame[covariate] = np.nan
    return frame


def _terms(frame: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, list[str], str]:
    """Formula terms for covariates, renamed so any column name is safe in a formula.

    Text columns (drug, sex) become categorical terms; a covariate with a single value
    among the rows used is left out (it is confounded with the intercept).
    """
    terms, used = [], []
    frame = frame.copy()
    for i, covariate in enumerate(covariates):
        name = f"covariate_{i}"
        values = frame[covariate]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum() and values.dtype != bool:
            frame[name] = numeric
            varies = numeric.nunique() > 1
            term = name
        else:
            frame[name] = values.astype(str)
            varies = values.nunique() > 1
            term = f"C({name})"
        if varies:
            terms.append(term)
            used.append(covariate)
    return frame, terms, ", ".join(used)


# --- statistics --------------------------------------------------------------------------------


def paired_tests(
    changes: pd.DataFrame,
    timepoints: list[str],
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each follow-up score against baseline.

    The estimate is the median change, with a BCa bootstrap interval. The effect size is the
    matched-pairs rank-biserial correlation (Kerby 2014): (sum of positive ranks - sum of
    negative ranks) / total rank sum, from -1 (every subject falls) to 1 (every one rises).
    """
    rows = []
    for (signature, method), group in changes.groupby(["signature", "method"], sort=True):
        for timepoint in timepoints[1:]:
            pairs = group[(group["timepoint"] == timepoint)].dropna(
                subset=["score", "baseline_score"]
            )
            diff = pairs["change"].to_numpy(dtype=float)
            row = {
                "signature": signature,
                "method": method,
                "timepoint": timepoint,
                "reference": timepoints[0],
                "n": len(diff),
                "median_baseline": pairs["baseline_score"].median(),
                "median_followup": pairs["score"].median(),
                "estimate": np.median(diff) if len(diff) else np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "effect_size": np.nan,
                "statistic": np.nan,
                "pvalue": np.nan,
            }
            nonzero = diff[diff != 0]
            if len(nonzero) >= 2:
                test = stats.wilcoxon(diff, zero_method="wilcox")
                ranks = stats.rankdata(np.abs(nonzero))
                positive = ranks[nonzero > 0].sum()
                negative = ranks[nonzero < 0].sum()
                row["ci_low"], row["ci_high"] = bootstrap_ci(
                    (diff,),
                    np.median,
                    n_bootstrap,
                    confidence,
                    row_rng(seed, "paired", signature, method, timepoint),
                )
                row.update(
                    statistic=float(test.statistic),
                    pvalue=float(test.pvalue),
                    effect_size=(positive - negative) / ranks.sum(),
                )
            rows.append(row)
    table = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    table["qvalue"] = bh(table["pvalue"])
    return table


def change_correlations(
    score_change: pd.DataFrame,
    measure_change: pd.DataFrame,
    timepoints: list[str],
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman correlation of score change with each measure's change, per timepoint.

    The interval is a paired BCa bootstrap (subjects resampled with their two changes);
    BH q-values are computed across all signatures x methods x measures x timepoints.
    """
    scores = score_change[score_change["timepoint"] != timepoints[0]]
    measures = measure_change[measure_change["timepoint"] != timepoints[0]]
    merged = scores.merge(
        measures[["subject", "timepoint", "measure", "change", "improvement"]],
        on=["subject", "timepoint"],
        suffixes=("_score", "_measure"),
    )
    rows = []
    for (signature, method, timepoint, measure), group in merged.groupby(
        ["signature", "method", "timepoint", "measure"], sort=True
    ):
        pairs = group.dropna(subset=["change_score", "change_measure"])
        row = {
            "signature": signature,
            "method": method,
            "timepoint": timepoint,
            "measure": measure,
            "n": len(pairs),
            "estimate": np.nan,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "pvalue": np.nan,
        }
        if (
            len(pairs) >= 4
            and pairs["change_score"].nunique() > 1
            and pairs["change_measure"].nunique() > 1
        ):
            x = pairs["change_score"].to_numpy(dtype=float)
            y = pairs["change_measure"].to_numpy(dtype=float)
            rho, p = stats.spearmanr(x, y)
            row["ci_low"], row["ci_high"] = bootstrap_ci(
                (x, y),
                spearman_rho,
                n_bootstrap,
                confidence,
                row_rng(seed, "spearman", signature, method, timepoint, measure),
                paired=True,
            )
            row.update(estimate=float(rho), pvalue=float(p))
        rows.append(row)
    table = pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
    table["qvalue"] = bh(table["pvalue"])
    return _order_timepoints(table, timepoints, ["signature", "method", "timepoint", "measure"])


def _logistic(
    frame: pd.DataFrame, covariates: list[str], confidence: float
) -> tuple[dict, str, str]:
    """Odds ratio of response per SD of the predictor, adjusted for covariates (statsmodels).

    Returns the fitted values, the covariates kept and a note (empty when all went well).
    """
    frame = frame.assign(
        z=(frame["x"] - frame["x"].mean()) / frame["x"].std(ddof=1),
        y=frame["responder"].astype(int),
    )
    frame, terms, used = _terms(frame, covariates)
    formula = " + ".join(["y ~ z", *terms])
    empty = dict.fromkeys(["estimate", "ci_low", "ci_high", "statistic", "pvalue"], np.nan)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = smf.logit(formula, data=frame).fit(disp=0, maxiter=200)
    except (PerfectSeparationError, np.linalg.LinAlgError) as err:
        return empty, used, f"not estimable ({type(err).__name__})"
    if any(issubclass(w.category, PerfectSeparationWarning) for w in caught):
        return empty, used, "perfect separation: odds ratio not estimable"
    if not fit.mle_retvals.get("converged", True) or any(
        issubclass(w.category, ConvergenceWarning) for w in caught
    ):
        return empty, used, "did not converge"
    low, high = fit.conf_int(alpha=1 - confidence).loc["z"]
    fitted = {
        "estimate": float(np.exp(fit.params["z"])),
        "ci_low": float(np.exp(low)),
        "ci_high": float(np.exp(high)),
        "statistic": float(fit.tvalues["z"]),
        "pvalue": float(fit.pvalues["z"]),
    }
    return fitted, used, ""


def baseline_prediction(
    score_change: pd.DataFrame,
    responses: pd.DataFrame,
    timepoints: list[str],
    covariates: pd.DataFrame | None = None,
    covariate_names: list[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Does the baseline score, or its change, separate responders from non-responders?

    For every signature, method, response definition and follow-up timepoint, and for two
    predictors (``baseline_score`` and ``score_change`` at that timepoint):

    - ``mann_whitney``: two-sided Mann-Whitney U test (scipy); the estimate is the ROC AUC,
      P(value of a responder > value of a non-responder), with DeLong's interval. AUC < 0.5
      means lower values in responders (e.g. a larger fall).
    - ``logistic``: logistic regression of the call on the standardized predictor plus the
      covariates (their baseline values; statsmodels); the estimate is the odds ratio per SD.
      Perfect separation leaves the row empty with a note.

    q-values are BH within each predictor x analysis.
    """
    covariate_names = list(covariate_names or [])
    baseline = timepoints[0]
    base_cov = None
    if covariates is not None and covariate_names:
        base_cov = covariates[covariates["timepoint"] == baseline][["subject", *covariate_names]]
    rows = []
    calls_at = {
        key: group.set_index("subject")["responder"].dropna()
        for key, group in responses.groupby(["response", "timepoint"], sort=False)
    }
    names = list(dict.fromkeys(responses["response"]))
    for (signature, method), group in score_change.groupby(["signature", "method"], sort=True):
        for response in names:
            for timepoint in timepoints[1:]:
                calls = calls_at.get((response, timepoint))
                if calls is None:
                    continue
                at = group[group["timepoint"] == timepoint].set_index("subject")
                for predictor, column in [
                    ("baseline_score", "baseline_score"),
                    ("score_change", "change"),
                ]:
                    data = pd.DataFrame({"x": at[column]}).join(
                        calls.astype(bool).rename("responder"), how="inner"
                    )
                    data = data.dropna(subset=["x"]).reset_index(names="subject")
                    key = {
                        "signature": signature,
                        "method": method,
                        "response": response,
                        "timepoint": timepoint,
                        "predictor": predictor,
                    }
                    rows.append(_mann_whitney_row(key, data, confidence))
                    rows.append(_logistic_row(key, data, base_cov, covariate_names, confidence))
    table = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    table["qvalue"] = _bh_within(table, ["predictor", "analysis"])
    return table


def _mann_whitney_row(key: dict, data: pd.DataFrame, confidence: float) -> dict:
    positive = data.loc[data["responder"], "x"].to_numpy(dtype=float)
    negative = data.loc[~data["responder"], "x"].to_numpy(dtype=float)
    row = {
        **key,
        "analysis": "mann_whitney",
        "covariates": "",
        "n": len(data),
        "n_responders": len(positive),
        "estimate": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "statistic": np.nan,
        "pvalue": np.nan,
        "note": "",
    }
    if len(positive) >= 2 and len(negative) >= 2:
        test = stats.mannwhitneyu(positive, negative, alternative="two-sided")
        auc, low, high = auc_delong(positive, negative, confidence)
        row.update(
            estimate=auc,
            ci_low=low,
            ci_high=high,
            statistic=float(test.statistic),
            pvalue=float(test.pvalue),
        )
    else:
        row["note"] = "fewer than 2 responders or non-responders"
    return row


def _logistic_row(
    key: dict,
    data: pd.DataFrame,
    base_cov: pd.DataFrame | None,
    covariate_names: list[str],
    confidence: float,
) -> dict:
    if base_cov is not None:
        data = data.merge(base_cov, on="subject", how="left").dropna(subset=covariate_names)
    n_responders = int(data["responder"].sum())
    row = {
        **key,
        "analysis": "logistic",
        "covariates": ", ".join(covariate_names),
        "n": len(data),
        "n_responders": n_responders,
        "estimate": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "statistic": np.nan,
        "pvalue": np.nan,
        "note": "",
    }
    if n_responders < 2 or len(data) - n_responders < 2 or data["x"].nunique() < 2:
        row["note"] = "fewer than 2 responders or non-responders"
        return row
    fitted, used, note = _logistic(data, covariate_names, confidence)
    row.update(fitted, covariates=used, note=note)
    return row


def mixed_models(
    scores: pd.DataFrame,
    clinical: pd.DataFrame,
    measures: dict[str, dict],
    timepoints: list[str],
    patient: str,
    covariates: pd.DataFrame | None = None,
    covariate_names: list[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Linear mixed model per signature, method and measure, across every timepoint.

    ``measure ~ score + C(timepoint) [+ covariates] + (1 | subject)``, fitted by REML with
    statsmodels MixedLM: the estimate is the change in the measure per unit of score at the
    same visit, over and above the average course of time, with each subject's own level
    absorbed by the random intercept. Fitted only with three or more timepoints (with two,
    the paired change correlations answer the same question). A covariate equal to the
    measure is left out of that measure's model.
    """
    covariate_names = list(covariate_names or [])
    if len(timepoints) < 3:
        log.info("mixed models need >= 3 timepoints; %d declared, none fitted", len(timepoints))
        return pd.DataFrame(columns=MIXED_COLUMNS)
    patients = scores[scores["group"] == patient][
        ["subject", "timepoint", "signature", "method", "score"]
    ]
    rows = []
    for (signature, method), group in patients.groupby(["signature", "method"], sort=True):
        for measure in measures:
            names = [c for c in covariate_names if c != measure]
            frame = group.merge(
                clinical[["subject", "timepoint", measure]].rename(columns={measure: "value"}),
                on=["subject", "timepoint"],
            )
            if names and covariates is not None:
                frame = frame.merge(
                    covariates[["subject", "timepoint", *names]],
                    on=["subject", "timepoint"],
                    how="left",
                )
            frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
            frame = frame.dropna(subset=["score", "value", *names])
            rows.append(
                _mixed_row(
                    {"signature": signature, "method": method, "measure": measure},
                    frame,
                    names,
                    timepoints,
                    confidence,
                )
            )
    table = pd.DataFrame(rows, columns=MIXED_COLUMNS)
    table["qvalue"] = bh(table["pvalue"])
    return table


def _mixed_row(
    key: dict, frame: pd.DataFrame, names: list[str], timepoints: list[str], confidence: float
) -> dict:
    n_subjects = frame["subject"].nunique()
    n_timepoints = frame["timepoint"].nunique()
    row = {
        **key,
        "covariates": ", ".join(names),
        "n": n_subjects,
        "n_obs": len(frame),
        "n_timepoints": n_timepoints,
        "estimate": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "statistic": np.nan,
        "pvalue": np.nan,
        "converged": False,
        "note": "",
    }
    if n_subjects < 3 or n_timepoints < 3 or len(frame) <= n_subjects:
        row["note"] = "needs >= 3 subjects with repeated visits at >= 3 timepoints"
        return row
    frame = frame.assign(
        timepoint=pd.Categorical(
            frame["timepoint"], categories=[t for t in timepoints if t in set(frame["timepoint"])]
        )
    )
    frame, terms, used = _terms(frame, names)
    formula = " + ".join(["value ~ score", "C(timepoint)", *terms])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = smf.mixedlm(formula, frame, groups=frame["subject"]).fit(reml=True)
    except (np.linalg.LinAlgError, ValueError) as err:
        row["note"] = f"not estimable ({err})"
        return row
    notes = []
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append("convergence warning")
    if fit.cov_re.iloc[0, 0] <= 1e-8:
        notes.append("random-intercept variance at 0")
    low, high = fit.conf_int(alpha=1 - confidence).loc["score"]
    row.update(
        covariates=used,
        estimate=float(fit.fe_params["score"]),
        ci_low=float(low),
        ci_high=float(high),
        statistic=float(fit.tvalues["score"]),
        pvalue=float(fit.pvalues["score"]),
        converged=bool(fit.converged) and "convergence warning" not in notes,
        note="; ".join(notes),
    )
    return row
