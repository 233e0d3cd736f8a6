"""Score trajectories by group of patients: does the IFN score fall more in responders?

Patients are split by the primary response (responders and non-responders, as judged at
the last timepoint) and by each sample-sheet column named under ``linkage.groups`` (a
property of the patient, such as the drug). For each grouping, signature and method:

- within each group, the change from baseline at each follow-up (Wilcoxon signed-rank,
  Hodges-Lehmann pseudomedian with its interval): :func:`within_group_tests`;
- between groups, the difference of that change (Mann-Whitney, Hodges-Lehmann shift with
  its interval): :func:`between_group_tests`;
- across all visits, ``score ~ timepoint * group + covariates + (1 | subject)``, the
  interaction tested at each follow-up and with the follow-ups pooled
  (:func:`ifnsig.mixed_models.fit_random_intercept`, REML, CR2 cluster-robust standard
  errors with Satterthwaite df): :func:`interaction_models`;
- per patient, the first follow-up at which the primary score is no longer positive
  (:func:`time_to_normalisation`), compared between groups visit by visit (Fisher's
  exact test): :func:`normalisation_tests`.

Every table is tidy, one row per test, with n, the estimate, its interval, p, the BH
q-value and the direction of the estimate in words.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.linkage import RESERVED_COLUMNS
from ifnsig.mixed_models import fit_random_intercept
from ifnsig.stats import bh, bh_within, hodges_lehmann_one_sample, hodges_lehmann_shift

log = logging.getLogger(__name__)

RESPONDER, NON_RESPONDER = "responder", "non_responder"
# The variance estimator of the interaction tests: the random-intercept model assumes
# exchangeable visits within a patient, which trajectories that differ between patients
# break; CR2 with its Satterthwaite df stays calibrated then (ifnsig.mixed_models).
VCOV = "CR2"

WITHIN_COLUMNS = [
    "grouping",
    "group",
    "signature",
    "method",
    "timepoint",
    "reference_timepoint",
    "n",
    "median_baseline",
    "median_followup",
    "estimate",
    "ci_low",
    "ci_high",
    "statistic",
    "pvalue",
    "qvalue",
    "direction",
]
BETWEEN_COLUMNS = [
    "grouping",
    "test_group",
    "reference_group",
    "signature",
    "method",
    "timepoint",
    "n",
    "n_test",
    "n_reference",
    "median_change_test",
    "median_change_reference",
    "estimate",
    "ci_low",
    "ci_high",
    "statistic",
    "pvalue",
    "qvalue",
    "direction",
]
MODEL_COLUMNS = [
    "grouping",
    "test_group",
    "reference_group",
    "signature",
    "method",
    "term",
    "timepoint",
    "covariates",
    "n",
    "n_obs",
    "estimate",
    "se",
    "df",
    "ci_low",
    "ci_high",
    "statistic",
    "pvalue",
    "qvalue",
    "vcov",
    "direction",
    "note",
]
NORMALISATION_COLUMNS = [
    "subject",
    "signature",
    "method",
    "threshold",
    "baseline_score",
    "status",
    "first_normal",
    "visits",
]
NORMALISATION_TEST_COLUMNS = [
    "grouping",
    "test_group",
    "reference_group",
    "signature",
    "method",
    "timepoint",
    "n",
    "n_test",
    "n_reference",
    "normalised_test",
    "normalised_reference",
    "proportion_test",
    "proportion_reference",
    "estimate",
    "ci_low",
    "ci_high",
    "pvalue",
    "qvalue",
    "direction",
]
POOLED = "all follow-ups"


@dataclass(frozen=True)
class Grouping:
    """Patients split into groups: by a response definition or by a sample-sheet column.

    ``labels`` maps each subject with a group to its level; ``reference`` is the group the
    others are compared with (``non_responder``, or the first level in sorted order).
    """

    name: str
    labels: pd.Series
    reference: str
    tests: tuple[str, ...]

    @property
    def levels(self) -> list[str]:
        return [self.reference, *self.tests]


# --- groupings -----------------------------------------------------------------------------------


def check_groups(config: dict, samples: pd.DataFrame) -> None:
    """``linkage.groups``: sheet columns, constant within each patient, with two levels.

    Raises :class:`InputError` naming the key and the fix; run at parse time.
    """
    patient = config["groups"]["patient"]
    patients = samples[samples["group"] == patient]
    sheet = [c for c in samples.columns if c not in RESERVED_COLUMNS]
    where = origin("linkage.groups")
    for column in (config.get("linkage") or {}).get("groups") or []:
        if column not in sheet:
            raise InputError(
                f"{where}: linkage.groups names '{column}', which is not a sample-sheet column; "
                f"use one of: {', '.join(sheet) or 'none (add the column to the sheet)'}."
            )
        values = patients[["subject", column]].dropna()
        varying = values.groupby("subject")[column].nunique()
        if (varying > 1).any():
            subject = varying.index[varying > 1][0]
            raise InputError(
                f"{config['samples']}: column '{column}' (named by linkage.groups) changes "
                f"between the samples of subject '{subject}'; a group is a property of the "
                "patient, so give each patient one value (or remove it from linkage.groups)."
            )
        if values[column].nunique() < 2:
            raise InputError(
                f"{where}: linkage.groups names '{column}', which has "
                f"{values[column].nunique()} value(s) among the patients; a grouping needs two "
                "or more (remove it, or fill in the column)."
            )


def column_grouping(samples: pd.DataFrame, column: str, patient: str) -> Grouping:
    """Patients grouped by a sheet column constant within each of them."""
    patients = samples[samples["group"] == patient].dropna(subset=[column])
    labels = patients.drop_duplicates("subject").set_index("subject")[column].astype(str)
    levels = sorted(labels.unique())
    return Grouping(name=column, labels=labels, reference=levels[0], tests=tuple(levels[1:]))


def response_grouping(calls: pd.Series, name: str) -> Grouping:
    """Responders and non-responders of a response definition (subjects without a call out)."""
    known = calls.dropna().astype(bool)
    labels = known.map({True: RESPONDER, False: NON_RESPONDER}).astype(str)
    labels.index = labels.index.astype(str)
    return Grouping(name=name, labels=labels, reference=NON_RESPONDER, tests=(RESPONDER,))


def groupings(
    samples: pd.DataFrame,
    columns: list[str],
    patient: str,
    calls: pd.Series | None = None,
    response: str = "",
) -> list[Grouping]:
    """The primary response's grouping (when there is one) then one per sheet column."""
    made = []
    if calls is not None and response:
        made.append(response_grouping(calls, response))
    made += [column_grouping(samples, column, patient) for column in columns]
    for grouping in made:
        counts = grouping.labels.value_counts()
        log.info(
            "grouping %s: %s",
            grouping.name,
            ", ".join(f"{counts.get(level, 0)} {level}" for level in grouping.levels),
        )
    return made


def _labelled(changes: pd.DataFrame, grouping: Grouping) -> pd.DataFrame:
    frame = changes.assign(group=changes["subject"].astype(str).map(grouping.labels))
    return frame.dropna(subset=["group"])


# --- nonparametric tests of the change -----------------------------------------------------------


def _direction(estimate: float, higher: str, lower: str) -> str:
    if pd.isna(estimate):
        return "not estimable"
    if estimate == 0:
        return "no difference"
    return higher if estimate > 0 else lower


def within_group_tests(
    changes: pd.DataFrame,
    grouping_list: list[Grouping],
    timepoints: list[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Wilcoxon signed-rank test of the change from baseline within each group.

    ``changes`` is :func:`ifnsig.linkage.score_changes`. The estimate is the Hodges-Lehmann
    pseudomedian of the change, with the interval that goes with the test
    (:func:`ifnsig.stats.hodges_lehmann_one_sample`); q-values are BH over the table.
    """
    baseline = timepoints[0]
    rows = []
    for grouping in grouping_list:
        frame = _labelled(changes, grouping)
        for (signature, method), by_score in frame.groupby(["signature", "method"], sort=True):
            for level in grouping.levels:
                for timepoint in timepoints[1:]:
                    pairs = by_score[
                        (by_score["group"] == level) & (by_score["timepoint"] == timepoint)
                    ].dropna(subset=["score", "baseline_score"])
                    diff = pairs["change"].to_numpy(dtype=float)
                    estimate, low, high = hodges_lehmann_one_sample(diff, confidence)
                    statistic = pvalue = np.nan
                    if (diff != 0).sum() >= 2:
                        test = stats.wilcoxon(diff, zero_method="wilcox")
                        statistic, pvalue = float(test.statistic), float(test.pvalue)
                    rows.append(
                        {
                            "grouping": grouping.name,
                            "group": level,
                            "signature": signature,
                            "method": method,
                            "timepoint": timepoint,
                            "reference_timepoint": baseline,
                            "n": len(diff),
                            "median_baseline": pairs["baseline_score"].median(),
                            "median_followup": pairs["score"].median(),
                            "estimate": estimate,
                            "ci_low": low,
                            "ci_high": high,
                            "statistic": statistic,
                            "pvalue": pvalue,
                            "direction": _direction(
                                estimate,
                                f"higher at {timepoint} than at {baseline} in {level}",
                                f"lower at {timepoint} than at {baseline} in {level}",
                            ),
                        }
                    )
    table = pd.DataFrame(rows, columns=WITHIN_COLUMNS)
    table["qvalue"] = bh(table["pvalue"])
    return table


def _change_difference_words(estimate: float, test: str, reference: str, both_fall: bool) -> str:
    if pd.isna(estimate) or estimate == 0:
        return _direction(estimate, "", "")
    if estimate < 0:
        fall = f"larger fall in {test} than in {reference}"
        return fall if both_fall else f"change lower in {test} than in {reference}"
    fall = f"smaller fall in {test} than in {reference}"
    return fall if both_fall else f"change higher in {test} than in {reference}"


def between_group_tests(
    changes: pd.DataFrame,
    grouping_list: list[Grouping],
    timepoints: list[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Mann-Whitney test of the change from baseline, each group against the reference group.

    The estimate is the Hodges-Lehmann shift of the change (test group minus reference
    group; negative: the score falls more in the test group) with its interval
    (:func:`ifnsig.stats.hodges_lehmann_shift`); q-values are BH over the table.
    """
    rows = []
    for grouping in grouping_list:
        frame = _labelled(changes, grouping).dropna(subset=["change"])
        for (signature, method), by_score in frame.groupby(["signature", "method"], sort=True):
            for test_group in grouping.tests:
                for timepoint in timepoints[1:]:
                    at = by_score[by_score["timepoint"] == timepoint]
                    x = at.loc[at["group"] == test_group, "change"].to_numpy(dtype=float)
                    y = at.loc[at["group"] == grouping.reference, "change"].to_numpy(dtype=float)
                    estimate, low, high = hodges_lehmann_shift(x, y, confidence)
                    statistic = pvalue = np.nan
                    if len(x) >= 2 and len(y) >= 2:
                        test = stats.mannwhitneyu(x, y, alternative="two-sided")
                        statistic, pvalue = float(test.statistic), float(test.pvalue)
                    med_x = float(np.median(x)) if len(x) else np.nan
                    med_y = float(np.median(y)) if len(y) else np.nan
                    rows.append(
                        {
                            "grouping": grouping.name,
                            "test_group": test_group,
                            "reference_group": grouping.reference,
                            "signature": signature,
                            "method": method,
                            "timepoint": timepoint,
                            "n": len(x) + len(y),
                            "n_test": len(x),
                            "n_reference": len(y),
                            "median_change_test": med_x,
                            "median_change_reference": med_y,
                            "estimate": estimate,
                            "ci_low": low,
                            "ci_high": high,
                            "statistic": statistic,
                            "pvalue": pvalue,
                            "direction": _change_difference_words(
                                estimate,
                                test_group,
                                grouping.reference,
                                bool(med_x < 0 and med_y < 0),
                            ),
                        }
                    )
    table = pd.DataFrame(rows, columns=BETWEEN_COLUMNS)
    table["qvalue"] = bh(table["pvalue"])
    return table


# --- mixed model: timepoint x group --------------------------------------------------------------


def _model_frame(
    scores: pd.DataFrame,
    grouping: Grouping,
    timepoints: list[str],
    covariates: pd.DataFrame | None,
    covariate_names: list[str],
) -> tuple[pd.DataFrame, list[str]]:
    """Rows of one signature and method with their group, and the covariates kept.

    A covariate that is the grouping's own column is left out: it is aliased with the group.
    """
    frame = scores.assign(group=scores["subject"].astype(str).map(grouping.labels))
    frame = frame.dropna(subset=["group", "score"])
    frame = frame[frame["timepoint"].isin(timepoints)].copy()
    names = [c for c in covariate_names if c != grouping.name]
    if names and covariates is not None:
        frame = frame.merge(
            covariates[["subject", "timepoint", *names]], on=["subject", "timepoint"], how="left"
        )
    for name in names:
        numeric = pd.to_numeric(frame[name], errors="coerce")
        if numeric.notna().sum() == frame[name].notna().sum():
            frame[name] = numeric
        else:
            frame[name] = frame[name].astype("string")
    frame = frame.dropna(subset=names)
    return frame.reset_index(drop=True), names


def _model_rows(
    key: dict,
    frame: pd.DataFrame,
    grouping: Grouping,
    timepoints: list[str],
    covariates: list[str],
    confidence: float,
) -> list[dict]:
    baseline = timepoints[0]
    followups = [t for t in timepoints[1:] if (frame["timepoint"] == t).any()]
    columns = {}
    for timepoint in followups:
        columns[f"time_{timepoint}"] = (frame["timepoint"] == timepoint).astype(float)
    for level in grouping.tests:
        in_group = (frame["group"] == level).astype(float)
        columns[f"group_{level}"] = in_group
        for timepoint in followups:
            columns[f"time_{timepoint}:group_{level}"] = columns[f"time_{timepoint}"] * in_group
        columns[f"followup:group_{level}"] = (frame["timepoint"] != baseline) * in_group
    frame = frame.assign(**columns)
    time_terms = [f"time_{t}" for t in followups]
    group_terms = [f"group_{level}" for level in grouping.tests]
    rows = []
    plans = [(t, [f"time_{t}:group_{level}" for level in grouping.tests]) for t in followups]
    if len(followups) > 1:
        plans.append((POOLED, [f"followup:group_{level}" for level in grouping.tests]))
    n_subjects = frame["subject"].nunique()
    fits: dict[str, object] = {}
    for timepoint, terms in plans:
        pooled = timepoint == POOLED
        model = "pooled" if pooled else "full"
        if model not in fits:
            interaction = (
                [f"followup:group_{level}" for level in grouping.tests]
                if pooled
                else [f"time_{t}:group_{level}" for t in followups for level in grouping.tests]
            )
            fits[model] = fit_random_intercept(
                frame,
                "score",
                [*time_terms, *group_terms, *interaction, *covariates],
                "subject",
                confidence=confidence,
                vcov=VCOV,
            )
        fit = fits[model]
        for level, term in zip(grouping.tests, terms, strict=True):
            coefficient = fit.coefficients.loc[term] if term in fit.coefficients.index else None
            row = {
                **key,
                "test_group": level,
                "reference_group": grouping.reference,
                "term": (
                    f"follow-up x {grouping.name}" if pooled else f"{timepoint} x {grouping.name}"
                ),
                "timepoint": timepoint,
                "covariates": ", ".join(covariates),
                "n": n_subjects,
                "n_obs": len(frame),
                "vcov": fit.vcov,
                "note": fit.note,
            }
            values = dict.fromkeys(["estimate", "se", "df", "ci_low", "ci_high"], np.nan)
            values.update(statistic=np.nan, pvalue=np.nan)
            if coefficient is not None and fit.converged:
                values = {c: float(coefficient[c]) for c in values}
            when = "on treatment" if pooled else f"from {baseline} to {timepoint}"
            row.update(values)
            row["direction"] = _direction(
                values["estimate"],
                f"score rises more (or falls less) {when} in {level} than in {grouping.reference}",
                f"score falls more (or rises less) {when} in {level} than in {grouping.reference}",
            )
            rows.append(row)
    return rows


def interaction_models(
    scores: pd.DataFrame,
    grouping_list: list[Grouping],
    timepoints: list[str],
    patient: str,
    covariates: pd.DataFrame | None = None,
    covariate_names: list[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """``score ~ timepoint * group + covariates + (1 | subject)``, the interaction tested.

    Per grouping, signature and method, over every visit of the patients with a group: the
    interaction at each follow-up (the change from baseline to that follow-up in the test
    group minus that in the reference group, in score units) from the full model, and,
    with two or more follow-ups, one pooled interaction from the model whose group
    difference of the change is the same at every follow-up (``timepoint + group +
    on_treatment:group``; one df, the test of "does the score fall more in this group on
    treatment"). Fitted by REML with a random intercept per patient; standard errors CR2
    cluster-robust with Satterthwaite df (:func:`ifnsig.mixed_models.fit_random_intercept`,
    whose docstring gives the calibration). q-values are BH within the per-follow-up and
    the pooled rows.
    """
    covariate_names = list(covariate_names or [])
    patients = scores[scores["group"] == patient][
        ["subject", "timepoint", "signature", "method", "score"]
    ]
    rows = []
    for grouping in grouping_list:
        for (signature, method), by_score in patients.groupby(["signature", "method"], sort=True):
            frame, names = _model_frame(by_score, grouping, timepoints, covariates, covariate_names)
            key = {"grouping": grouping.name, "signature": signature, "method": method}
            rows += _model_rows(key, frame, grouping, timepoints, names, confidence)
    table = pd.DataFrame(rows, columns=MODEL_COLUMNS)
    table["qvalue"] = bh_within(table.assign(pooled=table["timepoint"] == POOLED), ["pooled"])
    return table


# --- time to normalisation -----------------------------------------------------------------------


def time_to_normalisation(
    scores: pd.DataFrame,
    timepoints: list[str],
    patient: str,
    signature: str,
    method: str,
) -> pd.DataFrame:
    """Per patient, the first follow-up at which the score is no longer positive.

    Only patients positive at baseline (score above the positivity threshold of
    ``ifn_scores.tsv``) can normalise. ``status`` is ``normalised`` (``first_normal`` names
    the visit), ``never normalised`` (positive at every follow-up, through the last
    timepoint), ``censored`` (positive at every follow-up sampled, but the last timepoint
    missing: it may still normalise), ``not positive at baseline`` or ``no baseline
    sample``; ``visits`` lists each visit's score and call.
    """
    data = scores.loc[
        (scores["group"] == patient)
        & (scores["signature"] == signature)
        & (scores["method"] == method),
        ["subject", "timepoint", "score", "positive", "threshold"],
    ]
    order = {tp: i for i, tp in enumerate(timepoints)}
    # Plain dicts per patient: a few visits each, where pandas indexing per visit costs
    # more than the rest of the stage.
    visits_of: dict = {}
    thresholds: dict = {}
    for subject, timepoint, score, positive, threshold in data.itertuples(index=False):
        visits_of.setdefault(subject, {})[timepoint] = (float(score), bool(positive))
        thresholds.setdefault(subject, float(threshold))
    rows = []
    for subject in sorted(visits_of):
        by_time = visits_of[subject]
        sampled = sorted(by_time, key=lambda tp: order.get(tp, len(order)))
        words = [
            f"{tp}: {by_time[tp][0]:.4g} ({'positive' if by_time[tp][1] else 'normal'})"
            for tp in sampled
        ]
        row = {
            "subject": subject,
            "signature": signature,
            "method": method,
            "threshold": thresholds[subject],
            "baseline_score": np.nan,
            "status": "no baseline sample",
            "first_normal": "",
            "visits": "; ".join(words),
        }
        if timepoints[0] in by_time:
            row["baseline_score"], positive = by_time[timepoints[0]]
            if not positive:
                row["status"] = "not positive at baseline"
            else:
                normal = [t for t in timepoints[1:] if t in by_time and not by_time[t][1]]
                if normal:
                    row.update(status="normalised", first_normal=normal[0])
                elif timepoints[-1] in by_time:
                    row.update(status="never normalised", first_normal="never")
                else:
                    row["status"] = "censored"
                    last = [t for t in timepoints if t in by_time][-1]
                    row["first_normal"] = f"after {last}"
        rows.append(row)
    return pd.DataFrame(rows, columns=NORMALISATION_COLUMNS)


def _normalised_by(table: pd.DataFrame, timepoint: str, timepoints: list[str]) -> pd.Series:
    """True / False where known whether the patient had normalised by ``timepoint``."""
    order = {tp: i for i, tp in enumerate(timepoints)}
    at_risk = table[table["status"].isin(["normalised", "never normalised", "censored"])]
    known = pd.Series(pd.NA, index=at_risk["subject"], dtype="boolean")
    for subject, status, first in zip(
        at_risk["subject"], at_risk["status"], at_risk["first_normal"], strict=True
    ):
        if status == "normalised":
            known[subject] = order[first] <= order[timepoint]
        elif status == "never normalised":
            known[subject] = False
        else:
            last = first.removeprefix("after ")
            known[subject] = False if order[last] >= order[timepoint] else pd.NA
    return known


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    if n == 0:
        return np.nan, np.nan
    p = successes / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def newcombe_difference(
    a: int, n_a: int, b: int, n_b: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Difference of two proportions ``a / n_a - b / n_b`` with Newcombe's hybrid score
    interval (method 10 of Newcombe, Stat Med 1998;17:873-890, from Wilson intervals)."""
    if n_a == 0 or n_b == 0:
        return np.nan, np.nan, np.nan
    z = stats.norm.ppf(0.5 + confidence / 2)
    p1, p2 = a / n_a, b / n_b
    l1, u1 = _wilson(a, n_a, z)
    l2, u2 = _wilson(b, n_b, z)
    diff = p1 - p2
    low = diff - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return float(diff), float(low), float(high)


def normalisation_tests(
    table: pd.DataFrame,
    grouping_list: list[Grouping],
    timepoints: list[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Is the score normal by each follow-up more often in one group? Fisher's exact test.

    With two or three visits the time to normalisation is known only to the visit: the
    event times are interval-censored and almost all tied. A log-rank test on such data
    is a Mantel-Haenszel combination of one 2 x 2 table per visit referred to a chi-square
    approximation, which groups of a few patients do not support. So each follow-up gets
    its own 2 x 2 table, normalised by that visit (yes / no) x group, tested with Fisher's
    exact test, which holds at any group size and assumes nothing about when within an
    interval the score normalised; the last follow-up is "ever normalised". Patients not
    positive at baseline are not at risk and left out; a patient whose visits stop before
    the timepoint without having normalised is left out of that visit's table. The
    estimate is the difference of the proportions normalised (test minus reference) with
    Newcombe's hybrid score interval; q-values are BH over the table.
    """
    rows = []
    if table.empty:
        return pd.DataFrame(columns=NORMALISATION_TEST_COLUMNS)
    signature, method = table["signature"].iloc[0], table["method"].iloc[0]
    for grouping in grouping_list:
        for test_group in grouping.tests:
            for timepoint in timepoints[1:]:
                known = _normalised_by(table, timepoint, timepoints).dropna()
                groups = known.index.astype(str).map(grouping.labels)
                x = known[groups == test_group].astype(bool)
                y = known[groups == grouping.reference].astype(bool)
                a, b = int(x.sum()), int(y.sum())
                estimate, low, high = newcombe_difference(a, len(x), b, len(y), confidence)
                pvalue = np.nan
                if len(x) and len(y):
                    pvalue = float(stats.fisher_exact([[a, len(x) - a], [b, len(y) - b]]).pvalue)
                rows.append(
                    {
                        "grouping": grouping.name,
                        "test_group": test_group,
                        "reference_group": grouping.reference,
                        "signature": signature,
                        "method": method,
                        "timepoint": timepoint,
                        "n": len(x) + len(y),
                        "n_test": len(x),
                        "n_reference": len(y),
                        "normalised_test": a,
                        "normalised_reference": b,
                        "proportion_test": a / len(x) if len(x) else np.nan,
                        "proportion_reference": b / len(y) if len(y) else np.nan,
                        "estimate": estimate,
                        "ci_low": low,
                        "ci_high": high,
                        "pvalue": pvalue,
                        "direction": _direction(
                            estimate,
                            f"normal by {timepoint} more often in {test_group} than in "
                            f"{grouping.reference}",
                            f"normal by {timepoint} less often in {test_group} than in "
                            f"{grouping.reference}",
                        ),
                    }
                )
    out = pd.DataFrame(rows, columns=NORMALISATION_TEST_COLUMNS)
    out["qvalue"] = bh(out["pvalue"])
    return out
