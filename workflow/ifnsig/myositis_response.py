"""The 2016 ACR/EULAR myositis response criteria: Total Improvement Score and its categories.

Rider et al. (juvenile dermatomyositis, Arthritis Rheumatol 2017;69:911-923) and Aggarwal et
al. (adult dermatomyositis and polymyositis, Arthritis Rheumatol 2017;69:898-910) score the
improvement from baseline of six core set measures and sum the points into a Total
Improvement Score (TIS, 0-100): physician global activity, patient/parent global activity,
manual muscle testing (MMT; CMAS may stand in for it in juvenile DM), HAQ (adults) or CHAQ
(juvenile), the most abnormal muscle enzyme (or the CHQ physical summary score, PRINTO core
set) and extramuscular disease activity (or the Disease Activity Score). The TIS is called
minimal, moderate or major improvement above thresholds that differ between the juvenile
and the adult criteria.

The six measures are named here by role:

``physician_global``, ``patient_global``, ``mmt``, ``haq``, ``enzyme``, ``extramuscular``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ifnsig.tables import LIST_SEPARATOR

ROLES = ("physician_global", "patient_global", "mmt", "haq", "enzyme", "extramuscular")

# Points of each core set measure by category of improvement, and the upper bound (in %,
# inclusive) of each category but the last: "worsening to 5%", ">5% to 15%", ">15% to 25%",
# ">25% to 40%", ">40%" (MMT: up to 2%, >2-10%, >10-20%, >20-30%, >30%). Worsening falls in
# the first category and scores 0. Confirmed cell by cell against Table 3 of the juvenile
# criteria ("Conjoint analysis-based continuous response criteria using absolute percent
# change in core set measures", Rider et al. 2017, PMC5577002), which gives the same table
# for the adult criteria with their own thresholds; the points of each measure at its top
# category sum to 100.
CATEGORY_UPPER_BOUNDS = {
    "physician_global": (5.0, 15.0, 25.0, 40.0),
    "patient_global": (5.0, 15.0, 25.0, 40.0),
    "mmt": (2.0, 10.0, 20.0, 30.0),
    "haq": (5.0, 15.0, 25.0, 40.0),
    "enzyme": (5.0, 15.0, 25.0, 40.0),
    "extramuscular": (5.0, 15.0, 25.0, 40.0),
}
POINTS = {
    "physician_global": (0.0, 7.5, 15.0, 17.5, 20.0),
    "patient_global": (0.0, 2.5, 5.0, 7.5, 10.0),
    "mmt": (0.0, 10.0, 20.0, 27.5, 32.5),
    "haq": (0.0, 5.0, 7.5, 7.5, 10.0),
    "enzyme": (0.0, 2.5, 5.0, 7.5, 7.5),
    "extramuscular": (0.0, 7.5, 12.5, 15.0, 20.0),
}
# Lowest TIS of each improvement category (same table; the adult thresholds also in the
# abstract of Aggarwal et al. 2017: >= 20, >= 40, >= 60).
THRESHOLDS = {
    "juvenile": (("minimal", 30.0), ("moderate", 45.0), ("major", 70.0)),
    "adult": (("minimal", 20.0), ("moderate", 40.0), ("major", 60.0)),
}
CATEGORIES = ("none", "minimal", "moderate", "major")

HIGHER_IS_BETTER = {
    "physician_global": False,
    "patient_global": False,
    "mmt": True,
    "haq": False,
    "enzyme": False,
    "extramuscular": False,
}
# Scale (min, max) of each measure. The criteria score the "absolute percent change" of the
# core set measures (Table 3's heading; the abstracts of both papers; the IMACS page of the
# criteria, https://www.niehs.nih.gov/research/resources/imacs/response_criteria/, which
# also says the online calculators need "the maximum potential manual muscle testing score
# and the upper limit of the serum muscle enzymes"). Read here as: for a measure on a bounded
# scale, the change as a percentage of the scale's range (hence the calculators' maximum MMT
# score); for muscle enzymes, which have no maximum (None), the change relative to baseline,
# the enzyme's upper limit of normal choosing the most abnormal enzyme. The published text
# at hand gives the heading and the calculators' inputs but not the formula itself, nor a
# worked example: this reading is the project's, and ``scale_ranges`` (a range for the
# enzyme role too) changes it. 10 cm visual analogue scales, MMT8 0-80 (CMAS: pass
# (0, 52)), HAQ/CHAQ 0-3.
SCALE_RANGES: dict[str, tuple[float, float] | None] = {
    "physician_global": (0.0, 10.0),
    "patient_global": (0.0, 10.0),
    "mmt": (0.0, 80.0),
    "haq": (0.0, 3.0),
    "enzyme": None,
    "extramuscular": (0.0, 10.0),
}
# Percentages are rounded to this many decimals before they are put into categories, so that
# a change exactly on a boundary (a 1.5-point fall on a 10-point scale, 15%) is not moved to
# the next category by floating point (100 * 1.5 / 10 = 15.000000000000002).
_PERCENT_DECIMALS = 9


def improvement_percent(
    baseline: float | np.ndarray | pd.Series,
    followup: float | np.ndarray | pd.Series,
    higher_is_better: bool,
    scale_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Percent improvement of a measure from baseline; positive is better, negative worse.

    Parameters
    ----------
    baseline, followup
        Values of the measure at baseline and at the follow-up (scalars or arrays of the
        same length); missing values give NaN.
    higher_is_better
        True for muscle strength (MMT, CMAS), False for activity scores, HAQ/CHAQ and
        enzymes.
    scale_range
        ``(min, max)`` of the measure's scale: the change is then a percentage of the range
        (the "absolute percent change" of the criteria). None: the change is a percentage of
        the baseline value (the relative change the criteria use for muscle enzymes).

    Returns
    -------
    numpy.ndarray
        Percent improvement, float. Relative to a baseline of 0, no change is 0%, a
        worsening is -inf and an improvement +inf (so worsening scores 0 points and an
        improvement from 0 the top category); a baseline of 0 cannot improve on a scale
        where lower is better and values are non-negative.
    """
    baseline = np.asarray(baseline, dtype=float)
    followup = np.asarray(followup, dtype=float)
    gain = followup - baseline if higher_is_better else baseline - followup
    if scale_range is not None:
        low, high = scale_range
        if not high > low:
            raise ValueError(f"scale_range must be (min, max) with max > min, got {scale_range}.")
        return 100.0 * gain / (high - low)
    with np.errstate(divide="ignore", invalid="ignore"):
        percent = 100.0 * gain / np.abs(baseline)
    at_zero = baseline == 0
    percent = np.where(at_zero & (gain == 0), 0.0, percent)
    percent = np.where(at_zero & (gain > 0), np.inf, percent)
    return np.where(at_zero & (gain < 0), -np.inf, percent)


def improvement_points(percent: float | np.ndarray | pd.Series, role: str) -> np.ndarray:
    """Points of a core set measure for its percent improvement (NaN where it is missing).

    Parameters
    ----------
    percent
        Percent improvement (from :func:`improvement_percent`).
    role
        One of ``ROLES``.
    """
    _check_role(role)
    percent = np.round(np.asarray(percent, dtype=float), _PERCENT_DECIMALS)
    # side="left": a percentage equal to a category's upper bound stays in that category.
    category = np.searchsorted(CATEGORY_UPPER_BOUNDS[role], percent, side="left")
    points = np.asarray(POINTS[role])[np.minimum(category, 4)]
    return np.where(np.isnan(percent), np.nan, points)


def improvement_category(tis: float | np.ndarray | pd.Series, population: str) -> np.ndarray:
    """Improvement category (none, minimal, moderate, major) of each TIS; None where missing.

    Parameters
    ----------
    tis
        Total Improvement Scores.
    population
        ``"juvenile"`` (thresholds 30, 45, 70) or ``"adult"`` (20, 40, 60).
    """
    if population not in THRESHOLDS:
        raise ValueError(f"population must be one of {', '.join(THRESHOLDS)}, got {population!r}.")
    tis = np.asarray(tis, dtype=float)
    level = np.zeros(tis.shape, dtype=int)
    for i, (_, lowest) in enumerate(THRESHOLDS[population], start=1):
        level = np.where(np.round(tis, _PERCENT_DECIMALS) >= lowest, i, level)
    names = np.asarray(CATEGORIES, dtype=object)[level]
    return np.where(np.isnan(tis), None, names)


def total_improvement_score(
    frame: pd.DataFrame,
    measures: Mapping[str, str | Sequence[str]],
    population: str = "juvenile",
    baseline: str = "baseline",
    higher_is_better: Mapping[str, bool] | None = None,
    scale_ranges: Mapping[str, tuple[float, float] | None] | None = None,
    enzyme_upper_limits: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Total Improvement Score of each subject at each follow-up, with the values behind it.

    Parameters
    ----------
    frame
        Clinical table: one row per subject and timepoint, columns ``subject``,
        ``timepoint`` and the measures.
    measures
        Role (each of ``ROLES``) to its column. ``enzyme`` may name several columns (e.g.
        CK, aldolase, LDH, AST, ALT): the most abnormal at baseline, the one furthest above
        its upper limit of normal, is scored for that subject.
    population
        ``"juvenile"`` (Rider et al. 2017) or ``"adult"`` (Aggarwal et al. 2017).
    baseline
        The baseline timepoint; every other timepoint of a subject is a follow-up.
    higher_is_better
        Directions that differ from ``HIGHER_IS_BETTER`` (e.g. ``{"enzyme": True}`` when the
        CHQ physical summary score stands in for enzymes).
    scale_ranges
        Scales that differ from ``SCALE_RANGES`` (e.g. ``{"mmt": (0, 52)}`` for CMAS,
        ``{"mmt": (0, 150)}`` for a bilateral MMT8); None for a role scores its change
        relative to baseline.
    enzyme_upper_limits
        Upper limit of normal of each enzyme column, needed when ``enzyme`` names several.

    Returns
    -------
    pandas.DataFrame
        One row per subject and follow-up: ``subject``, ``timepoint``; per role
        ``<role>_baseline``, ``<role>_followup``, ``<role>_percent``, ``<role>_points``
        (and ``enzyme_column``, the enzyme scored); ``tis``, ``improvement_category``
        (none / minimal / moderate / major), ``population`` and ``missing_measures``. A
        row with a missing measure gets no TIS and no category (nothing is imputed), and
        ``missing_measures`` names each role missing with the timepoint it is missing at
        (e.g. ``"patient_global (month3)"``); the points of the other measures are kept.
    """
    if population not in THRESHOLDS:
        raise ValueError(f"population must be one of {', '.join(THRESHOLDS)}, got {population!r}.")
    directions = {**HIGHER_IS_BETTER, **(higher_is_better or {})}
    ranges = {**SCALE_RANGES, **(scale_ranges or {})}
    for name, given in [("higher_is_better", directions), ("scale_ranges", ranges)]:
        unknown = sorted(set(given) - set(ROLES))
        if unknown:
            raise ValueError(
                f"{name} names unknown role(s) {', '.join(unknown)}; the roles are "
                f"{', '.join(ROLES)}."
            )
    columns = _measure_columns(measures)
    enzymes = columns.pop("enzyme")
    for required in ["subject", "timepoint", *columns.values(), *enzymes]:
        if required not in frame.columns:
            raise ValueError(
                f"the clinical table has no column {required!r}; columns: "
                f"{', '.join(map(str, frame.columns))}."
            )
    duplicated = frame.duplicated(["subject", "timepoint"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(
            f"the clinical table has more than one row for subject {row['subject']!r} at "
            f"timepoint {row['timepoint']!r}; keep one row per subject and timepoint."
        )

    table = frame.set_index(["subject", "timepoint"])
    followups = frame.loc[frame["timepoint"] != baseline, ["subject", "timepoint"]]
    out = followups.reset_index(drop=True)
    subjects = out["subject"].to_numpy()

    def at_baseline(column: str) -> np.ndarray:
        keys = pd.MultiIndex.from_arrays([subjects, np.full(len(out), baseline)])
        return pd.to_numeric(table[column].reindex(keys), errors="coerce").to_numpy()

    def at_followup(column: str) -> np.ndarray:
        keys = pd.MultiIndex.from_frame(out[["subject", "timepoint"]])
        return pd.to_numeric(table[column].reindex(keys), errors="coerce").to_numpy()

    enzyme_column = _most_abnormal_enzyme(enzymes, enzyme_upper_limits, at_baseline)
    values = {role: (at_baseline(col), at_followup(col)) for role, col in columns.items()}
    values["enzyme"] = (
        _pick(enzyme_column, {e: at_baseline(e) for e in enzymes}),
        _pick(enzyme_column, {e: at_followup(e) for e in enzymes}),
    )
    missing: list[list[str]] = [[] for _ in range(len(out))]
    total = np.zeros(len(out))
    for role in ROLES:
        before, after = values[role]
        if role == "enzyme":
            out["enzyme_column"] = enzyme_column
        percent = improvement_percent(before, after, directions[role], ranges[role])
        points = improvement_points(percent, role)
        out[f"{role}_baseline"] = before
        out[f"{role}_followup"] = after
        out[f"{role}_percent"] = percent
        out[f"{role}_points"] = points
        total = total + points
        for i in np.flatnonzero(np.isnan(before)):
            missing[i].append(f"{role} ({baseline})")
        # No enzyme is scored when none was measured at baseline: nothing to look up later.
        scored = pd.notna(enzyme_column) if role == "enzyme" else np.ones(len(out), bool)
        for i in np.flatnonzero(np.isnan(after) & scored):
            missing[i].append(f"{role} ({out['timepoint'].iat[i]})")
    out["tis"] = total
    out["improvement_category"] = improvement_category(total, population)
    out["population"] = population
    out["missing_measures"] = [LIST_SEPARATOR.join(m) for m in missing]
    return out


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}.")


def _measure_columns(measures: Mapping[str, str | Sequence[str]]) -> dict:
    unknown = sorted(set(measures) - set(ROLES))
    absent = [role for role in ROLES if role not in measures]
    if unknown or absent:
        parts = []
        if absent:
            parts.append(f"lacks {', '.join(absent)}")
        if unknown:
            parts.append(f"names unknown role(s) {', '.join(unknown)}")
        raise ValueError(
            f"measures {' and '.join(parts)}; the Total Improvement Score needs a column for "
            f"each of {', '.join(ROLES)}."
        )
    columns: dict = {role: measures[role] for role in ROLES if role != "enzyme"}
    for role, column in columns.items():
        if not isinstance(column, str):
            raise ValueError(f"measures[{role!r}] must name one column, got {column!r}.")
    enzyme = measures["enzyme"]
    columns["enzyme"] = [enzyme] if isinstance(enzyme, str) else list(enzyme)
    if not columns["enzyme"]:
        raise ValueError("measures['enzyme'] names no column; name at least one enzyme.")
    return columns


def _most_abnormal_enzyme(
    enzymes: list[str],
    upper_limits: Mapping[str, float] | None,
    at_baseline,
) -> np.ndarray:
    """Per row, the enzyme column with the largest baseline value over its upper limit."""
    if len(enzymes) == 1:
        baseline_value = at_baseline(enzymes[0])
        return np.where(np.isnan(baseline_value), None, enzymes[0]).astype(object)
    lacking = [e for e in enzymes if not upper_limits or e not in upper_limits]
    if lacking:
        raise ValueError(
            f"enzyme_upper_limits lacks {', '.join(lacking)}: with several enzymes the most "
            "abnormal one is picked by its baseline value over its upper limit of normal, so "
            "give the upper limit of each."
        )
    ratios = np.column_stack([at_baseline(e) / upper_limits[e] for e in enzymes])
    known = ~np.isnan(ratios)
    best = np.argmax(np.where(known, ratios, -np.inf), axis=1)
    names = np.asarray(enzymes, dtype=object)[best]
    return np.where(known.any(axis=1), names, None)


def _pick(chosen: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    out = np.full(len(chosen), np.nan)
    for name, column in values.items():
        out = np.where(chosen == name, column, out)
    return out


__all__ = [
    "ROLES",
    "POINTS",
    "CATEGORY_UPPER_BOUNDS",
    "THRESHOLDS",
    "HIGHER_IS_BETTER",
    "SCALE_RANGES",
    "improvement_percent",
    "improvement_points",
    "improvement_category",
    "total_improvement_score",
]
