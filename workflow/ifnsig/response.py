"""Clinical response: changes of the clinical measures and response calls.

Response definitions (config ``linkage.responses``) turn the clinical table into a call per
subject and timepoint; :func:`call_responses` writes the rule and the values behind every
call, so each one can be traced back to the clinical table.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ifnsig import myositis_response as tis
from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.io import read_tsv
from ifnsig.tables import LIST_SEPARATOR

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
MYOSITIS_RESPONSE = "acr_eular_myositis"
STATE_RESPONSES = ("printo_inactive", "column")
COMBINED_RESPONSES = ("all_of", "any_of")

TRUE_WORDS = {"1", "true", "yes", "responder"}
FALSE_WORDS = {"0", "false", "no", "non-responder", "nonresponder"}

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


def _num(value: float) -> str:
    return "NA" if value is None or pd.isna(value) else f"{value:.4g}"


def order_by_timepoint(frame: pd.DataFrame, timepoints: list[str], by: list[str]) -> pd.DataFrame:
    order = {tp: i for i, tp in enumerate(timepoints)}
    return frame.sort_values(
        by, key=lambda s: s.map(order) if s.name == "timepoint" else s, kind="stable"
    ).reset_index(drop=True)


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
    return order_by_timepoint(long[CHANGE_COLUMNS], timepoints, ["measure", "subject", "timepoint"])


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


def check_responses(
    config: dict,
    clinical: pd.DataFrame | None,
) -> None:
    """Check the response definitions against the declared measures and the clinical table.

    Raises :class:`InputError` naming the config key (or the clinical table's line and
    column) and the fix; run at parse time, before any job.
    """
    settings = config.get("linkage") or {}
    definitions = settings.get("responses") or []
    measures = config["clinical_measures"]
    declared = ", ".join(measures) or "none"
    if definitions and clinical is None:
        raise InputError(
            f"{origin('linkage.responses')}: linkage.responses defines {len(definitions)} "
            "response(s) but "
            "no clinical table is set; set 'clinical' to your clinical table or remove them."
        )

    def require_measure(key: str, measure: str) -> None:
        if measure not in measures:
            raise InputError(
                f"{origin('linkage.responses')}: {key} names measure '{measure}', which is not "
                "declared under "
                f"clinical_measures; declare it or use one of: {declared}."
            )

    seen: list[str] = []
    for i, definition in enumerate(definitions):
        name, kind = definition["name"], definition["type"]
        key = f"linkage.responses[{i}] ('{name}')"
        if name in seen:
            raise InputError(
                f"{origin('linkage.responses')}: {key} reuses the name '{name}'; give each "
                "response its own name."
            )
        if kind in CHANGE_RESPONSES:
            require_measure(key, definition["measure"])
        elif kind == MYOSITIS_RESPONSE:
            _check_myositis(key, definition, measures, require_measure)
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
                    f"{origin('linkage.responses')}: {key} needs the scale of '{physician}' to "
                    "place PRINTO's "
                    f"cutoff (0.2 on a 10 cm VAS); declare its max under clinical_measures "
                    "(10, 1 or 100) or set physician_global_cutoff."
                )
        elif kind == "column":
            column = definition["column"]
            if column not in clinical.columns:
                raise InputError(
                    f"{config['clinical']}: column '{column}' named by "
                    f"{origin('linkage.responses')} {key} is "
                    f"missing; add it or fix the name (columns: {', '.join(clinical.columns)})."
                )
            parse_response_column(clinical[column], str(config["clinical"]), column)
        else:
            for part in definition["of"]:
                if part not in seen:
                    raise InputError(
                        f"{origin('linkage.responses')}: {key} combines '{part}', which is not "
                        "defined above "
                        f"it; define it first (defined so far: {', '.join(seen) or 'none'})."
                    )
        seen.append(name)
    primary = settings.get("primary_response")
    if primary is not None and primary not in seen:
        raise InputError(
            f"{origin('linkage.primary_response')}: linkage.primary_response '{primary}' is not a "
            "defined response; "
            f"use one of: {', '.join(seen) or 'none (define linkage.responses first)'}."
        )


def _check_myositis(key: str, definition: dict, measures: dict[str, dict], require_measure) -> None:
    """The six core set roles named, declared, on a scale, and the enzymes' upper limits."""
    where = origin("linkage.responses")
    roles = definition["roles"]
    for role in tis.ROLES:
        if role not in roles:
            raise InputError(
                f"{where}: {key} has no column for the core set role '{role}' under roles; the "
                f"Total Improvement Score needs all six ({', '.join(tis.ROLES)})."
            )
    enzymes = _enzyme_columns(definition)
    if not enzymes:
        raise InputError(f"{where}: {key} names no enzyme under roles.enzyme; name at least one.")
    for role, column in roles.items():
        for measure in enzymes if role == "enzyme" else [column]:
            require_measure(key, measure)
    for role, column in roles.items():
        if role == "enzyme":
            continue
        spec = measures[column]
        if spec.get("min") is None or spec.get("max") is None or not spec["max"] > spec["min"]:
            raise InputError(
                f"{origin(('clinical_measures', column))}: '{column}' ({role} of {key}) needs "
                "its scale for the criteria's percent of range; declare its min and max under "
                "clinical_measures (e.g. 0 and 10 for a 10 cm VAS, 0 and 3 for the CHAQ)."
            )
    directions = {measures[e]["higher_is_better"] for e in enzymes}
    if len(directions) > 1:
        raise InputError(
            f"{where}: {key} names enzymes {', '.join(enzymes)} whose higher_is_better differ "
            "under clinical_measures; the most abnormal one is scored, so give them one direction."
        )
    limits = definition.get("enzyme_upper_limits") or {}
    unknown = sorted(set(limits) - set(enzymes))
    if unknown:
        raise InputError(
            f"{where}: {key} gives enzyme_upper_limits for {', '.join(unknown)}, which "
            "roles.enzyme does not name; use the enzymes named there ({', '.join(enzymes)})."
        )
    lacking = [e for e in enzymes if e not in limits]
    if len(enzymes) > 1 and lacking:
        raise InputError(
            f"{where}: {key} scores the most abnormal of {', '.join(enzymes)} at baseline, by "
            f"its value over the upper limit of normal; add enzyme_upper_limits for "
            f"{', '.join(lacking)} (your laboratory's, in the table's units)."
        )


def _enzyme_columns(definition: dict) -> list[str]:
    enzyme = definition["roles"].get("enzyme")
    return [enzyme] if isinstance(enzyme, str) else list(enzyme or [])


def myositis_thresholds(population: str) -> str:
    """The TIS thresholds of a population in words: 'minimal >= 30, moderate >= 45, ...'."""
    return ", ".join(f"{name} >= {low:g}" for name, low in tis.THRESHOLDS[population])


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
    if kind == MYOSITIS_RESPONSE:
        population, level = definition["population"], definition["at_least"]
        lowest = dict(tis.THRESHOLDS[population])[level]
        roles = definition["roles"]
        parts = []
        for role in tis.ROLES:
            if role == "enzyme":
                parts.append(f"enzyme {', '.join(_enzyme_columns(definition))} (% of baseline)")
            else:
                spec, column = measures[roles[role]], roles[role]
                named = role if column == role else f"{role} {column}"
                parts.append(f"{named} ({spec['min']:g}-{spec['max']:g})")
        return (
            f"2016 ACR/EULAR myositis response criteria, {population}: Total Improvement Score "
            f">= {lowest:g} (at least {level} improvement; {myositis_thresholds(population)}); "
            + "; ".join(parts)
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
                "inputs": LIST_SEPARATOR.join(parts),
            }
        )
    return calls


def _myositis_calls(
    definition: dict, clinical: pd.DataFrame, measures: dict[str, dict], timepoints: list[str]
) -> list[dict]:
    """Total Improvement Score of each patient at each follow-up, and its category called."""
    roles = dict(definition["roles"])
    enzymes = _enzyme_columns(definition)
    roles["enzyme"] = enzymes
    directions = {r: measures[c]["higher_is_better"] for r, c in roles.items() if r != "enzyme"}
    directions["enzyme"] = measures[enzymes[0]]["higher_is_better"]
    ranges: dict = {
        r: (float(measures[c]["min"]), float(measures[c]["max"]))
        for r, c in roles.items()
        if r != "enzyme"
    }
    ranges["enzyme"] = None
    population, level = definition["population"], definition["at_least"]
    rows = clinical[clinical["timepoint"].isin(timepoints)]
    scored = tis.total_improvement_score(
        rows,
        roles,
        population=population,
        baseline=timepoints[0],
        higher_is_better=directions,
        scale_ranges=ranges,
        enzyme_upper_limits=definition.get("enzyme_upper_limits") or None,
    )
    rank = {name: i for i, name in enumerate(tis.CATEGORIES)}
    calls = []
    for r in scored.to_dict("records"):
        points = [r[f"{role}_points"] for role in tis.ROLES]
        known = [p for p in points if not pd.isna(p)]
        evaluable = not pd.isna(r["tis"])
        parts = [
            f"TIS {_num(r['tis'])} ({r['improvement_category'] or 'not scored'}; "
            f"{population}: {myositis_thresholds(population)})"
        ]
        for role in tis.ROLES:
            column = r["enzyme_column"] if role == "enzyme" else roles[role]
            of = "of baseline" if role == "enzyme" else "of range"
            named = role if column == role else f"{role} ({'NA' if pd.isna(column) else column})"
            parts.append(
                f"{named}: "
                f"{_num(r[f'{role}_baseline'])} -> {_num(r[f'{role}_followup'])}, "
                f"{_num(r[f'{role}_percent'])}% {of}, {_num(r[f'{role}_points'])} points"
            )
        if r["missing_measures"]:
            parts.append(f"missing: {r['missing_measures']}")
        calls.append(
            {
                "subject": r["subject"],
                "timepoint": r["timepoint"],
                "responder": (rank[r["improvement_category"]] >= rank[level])
                if evaluable
                else pd.NA,
                "criteria_met": sum(p > 0 for p in known),
                "criteria_evaluable": len(known),
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
                "inputs": LIST_SEPARATOR.join(
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
        least ``reduction_percent`` %), ``acr_eular_myositis`` (the 2016 ACR/EULAR
        myositis response criteria: Total Improvement Score of the six core set ``roles``
        in at least the ``at_least`` category, :mod:`ifnsig.myositis_response`),
        ``printo_inactive`` (PRINTO clinically inactive disease), ``column`` (the user's own
        call), ``all_of`` / ``any_of`` (combinations).
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
        elif kind == MYOSITIS_RESPONSE:
            calls = _myositis_calls(definition, clinical, measures, timepoints)
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
        frames.append(order_by_timepoint(frame, timepoints, ["subject", "timepoint"]))
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


def empty_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The change and call tables of a cohort without clinical measures."""
    return pd.DataFrame(columns=CHANGE_COLUMNS), pd.DataFrame(columns=RESPONSE_COLUMNS)


def clinical_responses(
    clinical: pd.DataFrame, config: dict, clinical_path: str = "clinical table"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Changes of every declared measure and the calls of every response definition.

    ``config`` needs ``clinical_measures``, ``linkage.responses`` and ``timepoints``; the
    parse-time plan and the ``call_responses`` job both call this.
    """
    measures, timepoints = config["clinical_measures"], list(config["timepoints"])
    changes = measure_changes(clinical, measures, timepoints)
    definitions = (config.get("linkage") or {}).get("responses") or []
    calls = call_responses(
        clinical, changes, definitions, measures, timepoints, clinical_path=clinical_path
    )
    return changes, calls


def read_calls(path: str) -> pd.DataFrame:
    """``response.tsv`` read back, ``responder`` as a nullable boolean."""
    calls = read_tsv(path, dtype={"subject": str, "timepoint": str})
    text = calls["responder"].astype("string").str.strip().str.lower()
    calls["responder"] = text.map({"true": True, "false": False}).astype("boolean")
    return calls


def measure_values(changes: pd.DataFrame, measures: dict[str, dict]) -> pd.DataFrame:
    """The clinical table (subject, timepoint, one column per measure) from ``changes.tsv``."""
    if changes.empty:
        return pd.DataFrame(columns=["subject", "timepoint", *measures])
    wide = changes.pivot_table(
        index=["subject", "timepoint"], columns="measure", values="value", dropna=False
    )
    wide = wide.reindex(columns=[m for m in measures if m in wide.columns])
    return wide.reset_index().rename_axis(columns=None)


def primary_calls(
    responses: pd.DataFrame, primary: str | None, timepoint: str
) -> tuple[pd.Series | None, str]:
    """The calls that colour the plots (subject -> responder) and their label.

    ``primary`` is ``linkage.primary_response``; without it, the first definition.
    """
    names = list(dict.fromkeys(responses["response"]))
    chosen = primary or (names[0] if names else "")
    if not chosen:
        return None, ""
    rows = responses[(responses["response"] == chosen) & (responses["timepoint"] == timepoint)]
    return rows.set_index("subject")["responder"], f"{chosen} at {timepoint}"
