"""Clinical linkage: does the IFN score fall on treatment, and does the fall track response?

Every statistics table is tidy, one row per test, with the number of subjects used
(pairwise complete: a subject enters a test when it has every value that test needs), the
estimate, its confidence interval, the p-value and the Benjamini-Hochberg q-value.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.lazy import lazy_module
from ifnsig.mixed_models import fit_random_intercept_covariances
from ifnsig.response import order_by_timepoint
from ifnsig.stats import auc_delong, bh, bh_within, bootstrap_ci, row_rng, spearman_rho
from ifnsig.tables import LIST_SEPARATOR

log = logging.getLogger(__name__)

# summarize_findings reads this module's table columns only; the tests load on first use.
stats = lazy_module("scipy.stats")

# Sample-sheet columns that identify a sample rather than describe it.
RESERVED_COLUMNS = {"sample", "subject", "group", "timepoint"}

PAIRED_COLUMNS = [
    "signature",
    "method",
    "timepoint",
    "reference",
    "n",
    "median_baseline",
    "median_followup",
    "direction",
    "estimate",
    "ci_low",
    "ci_high",
    "effect_size",
    "statistic",
    "pvalue",
    "fdr",
]
CORRELATION_COLUMNS = [
    "signature",
    "method",
    "timepoint",
    "measure",
    "n",
    "direction",
    "estimate",
    "ci_low",
    "ci_high",
    "pvalue",
    "fdr",
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
    "direction",
    "estimate",
    "ci_low",
    "ci_high",
    "statistic",
    "pvalue",
    "fdr",
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
    "direction",
    "estimate",
    "ci_low",
    "ci_high",
    "statistic",
    "df",
    "pvalue",
    "fdr",
    "estimate_between",
    "ci_low_between",
    "ci_high_between",
    "df_between",
    "pvalue_between",
    "df_model",
    "pvalue_model",
    "random_intercept_variance",
    "residual_variance",
    "singular",
    "test",
    "converged",
    "note",
]


def check_covariates(config: dict, samples: pd.DataFrame) -> None:
    """Check that every ``linkage.covariates`` entry is a clinical measure or a sheet column."""
    measures = config["clinical_measures"]
    sheet = [c for c in samples.columns if c not in RESERVED_COLUMNS]
    for covariate in (config.get("linkage") or {}).get("covariates") or []:
        if covariate not in measures and covariate not in sheet:
            raise InputError(
                f"{origin('linkage.covariates')}: linkage.covariates names '{covariate}', which is "
                "neither a "
                f"clinical measure nor a sample-sheet column; use one of: "
                f"{', '.join([*measures, *sheet]) or 'none'}."
            )


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


def _design(frame: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, str]:
    """The logistic model's design: intercept, covariates and the standardized predictor.

    The columns are patsy's for ``y ~ z + <covariates>`` (what ``statsmodels.formula`` would
    build, without its cost per model): the intercept, then each text covariate (drug, sex)
    as treatment-coded indicators of its sorted values, the first left out, then ``z`` and
    the numeric covariates. A covariate with a single value among the rows used is left out
    (it is confounded with the intercept). Returns the design and the covariates kept.
    """
    categorical, numeric, used = {}, {"z": frame["z"].astype(float)}, []
    for i, covariate in enumerate(covariates):
        name = f"covariate_{i}"
        values = frame[covariate]
        number = pd.to_numeric(values, errors="coerce")
        if number.notna().sum() == values.notna().sum() and values.dtype != bool:
            if number.nunique() > 1:
                numeric[name] = number.astype(float)
                used.append(covariate)
        elif values.nunique() > 1:
            text = values.astype(str)
            for level in sorted(text.unique())[1:]:
                categorical[f"C({name})[T.{level}]"] = (text == level).astype(float)
            used.append(covariate)
    columns = {"Intercept": np.ones(len(frame)), **categorical, **numeric}
    # Row-major, as patsy builds it: the fit's sums then run in the same order.
    values = np.column_stack([np.asarray(c, dtype=float) for c in columns.values()])
    return pd.DataFrame(values, index=frame.index, columns=list(columns)), LIST_SEPARATOR.join(used)


def paired_tests(
    changes: pd.DataFrame,
    timepoints: list[str],
    n_bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each follow-up score against baseline.

    The estimate is the median change (follow-up minus baseline: negative is a fall), with a
    BCa bootstrap interval. The effect size is the matched-pairs rank-biserial correlation
    (Kerby 2014): (sum of positive ranks - sum of negative ranks) / total rank sum, from -1
    (every subject falls) to 1 (every one rises). ``direction`` says what a positive
    estimate and effect size stand for: "higher at <follow-up> than at <baseline>".
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
                "direction": f"higher at {timepoint} than at {timepoints[0]}",
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
    table["fdr"] = bh(table["pvalue"])
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
    BH q-values are computed across all signatures x methods x measures x timepoints. A
    positive rho means the measure rises where the score rises (``direction``); with the
    expected fall of the score, an improving measure whose higher values are better (CMAS)
    gives a negative rho, one whose lower values are better (CAT-BM) a positive one.
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
            "direction": f"{measure} rises as the score rises",
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
    table["fdr"] = bh(table["pvalue"])
    return order_by_timepoint(table, timepoints, ["signature", "method", "timepoint", "measure"])


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
    from statsmodels.discrete.discrete_model import Logit
    from statsmodels.tools.sm_exceptions import (
        ConvergenceWarning,
        PerfectSeparationError,
        PerfectSeparationWarning,
    )

    design, used = _design(frame, covariates)
    empty = dict.fromkeys(["estimate", "ci_low", "ci_high", "statistic", "pvalue"], np.nan)
    separated = "perfect separation: odds ratio not estimable"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # statsmodels warns of a separation at every Newton step up to maxiter: the
            # first warning ends the fit, whose odds ratio is not estimable anyway.
            warnings.simplefilter("error", PerfectSeparationWarning)
            fit = Logit(frame["y"], design).fit(disp=0, maxiter=200)
    except PerfectSeparationWarning:
        return empty, used, separated
    except (PerfectSeparationError, np.linalg.LinAlgError) as err:
        return empty, used, f"not estimable ({type(err).__name__})"
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


#: Predictor -> (the direction its AUC and odds ratio measure, the sign giving it): the score
#: change is expected to be a fall, larger in responders, so it is read as "lower in responders".
PREDICTOR_DIRECTIONS = {
    "baseline_score": ("higher in responders", 1.0),
    "score_change": ("lower in responders", -1.0),
}


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

    - ``mann_whitney``: two-sided Mann-Whitney U test (scipy); the estimate is the ROC AUC
      in the direction of :data:`PREDICTOR_DIRECTIONS`, with DeLong's interval: for the
      baseline score P(responder's score > non-responder's), for the score change
      P(responder's change < non-responder's), since the score is expected to fall more in
      responders. An AUC above 0.5 is an effect in the stated ``direction``; the statistic is
      the responders' U on the values so oriented.
    - ``logistic``: logistic regression of the call on the standardized predictor plus the
      covariates (their baseline values; statsmodels); the estimate is the odds ratio per SD
      in the same direction (per SD higher baseline score, per SD larger fall), so an odds
      ratio above 1 is an effect in the stated ``direction``. Perfect separation leaves the
      row empty with a note.

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
                    sign = PREDICTOR_DIRECTIONS[predictor][1]
                    data = pd.DataFrame({"x": sign * at[column]}).join(
                        calls.astype(bool).rename("responder"), how="inner"
                    )
                    data = data.dropna(subset=["x"]).reset_index(names="subject")
                    key = {
                        "signature": signature,
                        "method": method,
                        "response": response,
                        "timepoint": timepoint,
                        "predictor": predictor,
                        "direction": PREDICTOR_DIRECTIONS[predictor][0],
                    }
                    rows.append(_mann_whitney_row(key, data, confidence))
                    rows.append(_logistic_row(key, data, base_cov, covariate_names, confidence))
    table = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    table["fdr"] = bh_within(table, ["predictor", "analysis"])
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
        "covariates": LIST_SEPARATOR.join(covariate_names),
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

    ``measure ~ score_within + score_between + timepoint [+ covariates] + (1 | subject)``,
    fitted by REML (:func:`ifnsig.mixed_models.fit_random_intercept`, which gives what
    lme4/lmerTest and clubSandwich give). The score enters split by subject-mean centring:
    ``score_within`` is the deviation of a visit's score from the patient's own mean, so its
    coefficient (the primary ``estimate``) is the change in the measure per unit of score
    when this patient's score moves, beyond the average course of time, free of anything
    that differs between patients; ``score_between`` (the patient's mean score) gives the
    association of patient means (``*_between`` columns). Numeric covariates that change
    over visits (steroid dose) are centred the same way; others (drug, sex) enter as they
    are. A covariate equal to the measure is left out of that measure's model.

    The primary test is the within coefficient with the CR2 cluster-robust standard error
    (Bell & McCaffrey 2002) and its Satterthwaite df (Pustejovsky & Tipton 2018), which
    stays calibrated when patients' trajectories differ; ``df_model`` and ``pvalue_model``
    give the model-based REML test with Satterthwaite df (lmerTest's ``summary``), which
    does not. q-values are BH over the primary p-values. Fitted only with three or more
    timepoints (with two, the paired change correlations answer the same question).
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
                clinical[["subject", "timepoint", measure]].rename(columns={measure: MEASURE}),
                on=["subject", "timepoint"],
            )
            if names and covariates is not None:
                frame = frame.merge(
                    covariates[["subject", "timepoint", *names]],
                    on=["subject", "timepoint"],
                    how="left",
                )
            frame[MEASURE] = pd.to_numeric(frame[MEASURE], errors="coerce")
            frame = frame.dropna(subset=["score", MEASURE, *names])
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
    table["fdr"] = bh(table["pvalue"])
    return table


# Column of the measure in a mixed model's frame (a name no covariate can take).
MEASURE = "__measure__"
MIXED_TEST = "REML random intercept; within-patient score coefficient, CR2 SE, Satterthwaite df"


def _mixed_row(
    key: dict, frame: pd.DataFrame, names: list[str], timepoints: list[str], confidence: float
) -> dict:
    n_subjects = frame["subject"].nunique()
    n_timepoints = frame["timepoint"].nunique()
    row = dict.fromkeys(MIXED_COLUMNS, np.nan)
    row.update(
        key,
        covariates=LIST_SEPARATOR.join(names),
        n=n_subjects,
        n_obs=len(frame),
        n_timepoints=n_timepoints,
        direction=f"{key['measure']} higher when the score is higher",
        singular=False,
        test=MIXED_TEST,
        converged=False,
        note="",
    )
    if n_subjects < 3 or n_timepoints < 3 or len(frame) <= n_subjects:
        row["note"] = "needs >= 3 subjects with repeated visits at >= 3 timepoints"
        return row
    frame = frame.assign(
        timepoint=pd.Categorical(
            frame["timepoint"], categories=[t for t in timepoints if t in set(frame["timepoint"])]
        )
    )
    frame, used, centred = _mixed_terms(frame, names)
    terms = ["score", "timepoint", *used]
    fits = fit_random_intercept_covariances(
        frame,
        MEASURE,
        terms,
        "subject",
        centre=["score", *centred],
        confidence=confidence,
        vcovs=("CR2", "model"),
    )
    robust, model = fits["CR2"], fits["model"]
    row.update(covariates=LIST_SEPARATOR.join(used), note=robust.note, converged=robust.converged)
    if not robust.converged:
        return row
    coefficients = robust.coefficients
    if WITHIN not in coefficients.index:
        row.update(
            converged=False,
            note="; ".join(
                filter(None, [robust.note, "the score does not vary within any patient"])
            ),
        )
        return row
    columns = ["estimate", "ci_low", "ci_high", "df", "pvalue"]
    row.update(coefficients.loc[WITHIN, [*columns, "statistic"]].to_dict())
    row.update(
        df_model=model.coefficients.loc[WITHIN, "df"],
        pvalue_model=model.coefficients.loc[WITHIN, "pvalue"],
        random_intercept_variance=robust.group_variance,
        residual_variance=robust.residual_variance,
        singular=robust.singular,
    )
    if BETWEEN in coefficients.index:
        between = coefficients.loc[BETWEEN, columns]
        row.update({f"{name}_between": value for name, value in between.items()})
    return row


WITHIN, BETWEEN = "score_within", "score_between"


def _mixed_terms(
    frame: pd.DataFrame, names: list[str]
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Covariates of a mixed model: the ones used and, of those, the ones to centre.

    A covariate whose values are all numbers enters as a number, any other as categories;
    one with a single value among the rows used is left out (it is the intercept). Numeric
    covariates that change within a patient (steroid dose) are split into within and
    between terms like the score (Mundlak's decomposition, see :mod:`ifnsig.mixed_models`).
    """
    frame = frame.copy()
    used, centred = [], []
    for name in names:
        values = frame[name]
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum() and values.dtype != bool:
            frame[name] = numeric
            if numeric.nunique() < 2:
                continue
            used.append(name)
            if (numeric.groupby(frame["subject"]).nunique() > 1).any():
                centred.append(name)
        else:
            frame[name] = values.astype(str)
            if frame[name].nunique() > 1:
                used.append(name)
    return frame, used, centred
