"""Each patient on one small panel: the IFN score and the clinical measures over time, with
the drug and the response call, for clinicians who read a cohort patient by patient."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from ifnsig import plots  # noqa: E402

#: Response call -> colour of the panel's frame and title (colour-blind safe, Okabe-Ito).
CALL_COLORS = {True: "#009E73", False: "#D55E00", None: "#888888"}
CALL_TEXT = {True: "responder", False: "non-responder", None: "not evaluable"}
MEASURE_COLORS = ["#0072B2", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#999999"]
#: Most patients drawn (16 rows of 6 panels); a larger cohort shows this many, evenly spaced
#: through the sorted subject IDs (thousands of panels are unreadable, and beyond about
#: 2,000 patients the figure would pass the 65,536 pixels a PNG side can hold).
MAX_PANELS = 96


def shown_subjects(subjects: list[str], limit: int = MAX_PANELS) -> list[str]:
    """``subjects`` (sorted) if at most ``limit``, else ``limit`` of them evenly spaced."""
    if len(subjects) <= limit:
        return subjects
    picks = np.linspace(0, len(subjects) - 1, limit).round().astype(int)
    return [subjects[i] for i in picks]


def _call(calls: pd.Series | None, subject: str) -> bool | None:
    if calls is None or subject not in calls.index:
        return None
    value = calls[subject]
    if pd.isna(value):
        return None
    return str(value).lower() == "true" if isinstance(value, str) else bool(value)


def scaled_measures(changes: pd.DataFrame, measures: dict[str, dict]) -> pd.DataFrame:
    """Clinical values as percent of each measure's declared range (its observed range when
    none is declared), so measures of different units share one axis; 100 is always the
    better end (a lower-is-better measure is reversed)."""
    rows = changes[changes["measure"].isin(list(measures))].copy()
    if rows.empty:
        return rows.assign(percent=pd.Series(dtype=float))
    parts = []
    for name, part in rows.groupby("measure", sort=False):
        spec = measures[name]
        low = part["value"].min() if spec.get("min") is None else spec["min"]
        high = part["value"].max() if spec.get("max") is None else spec["max"]
        span = (high - low) or 1.0
        percent = 100 * (part["value"] - low) / span
        if not spec.get("higher_is_better", True):
            percent = 100 - percent
        parts.append(part.assign(percent=percent))
    return pd.concat(parts)


def patient_panels(
    scores: pd.DataFrame,
    changes: pd.DataFrame,
    measures: dict[str, dict],
    drugs: pd.Series,
    calls: pd.Series | None,
    response: str,
    signature: str,
    timepoints: list[str],
    path: str | Path,
    max_measures: int = 4,
) -> None:
    """Small multiples, one per patient: the score (black, left axis) and up to
    ``max_measures`` clinical measures (colours, right axis, % of range, better is up); at
    most :data:`MAX_PANELS` patients (:func:`shown_subjects`).

    ``scores``: subject, timepoint, score of one signature and method; ``drugs``: subject ->
    drug; ``calls``: subject -> response call at the last timepoint.
    """
    shown = [m for m in measures if m in set(changes.get("measure", []))][:max_measures]
    clinical = scaled_measures(changes, {m: measures[m] for m in shown})
    every = sorted(scores["subject"].unique())
    subjects = shown_subjects(every)
    x_of = {tp: i for i, tp in enumerate(timepoints)}
    n_cols = min(6, max(len(subjects), 1))
    n_rows = max(-(-len(subjects) // n_cols), 1)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.3 * n_cols, 2.0 * n_rows + 0.9), squeeze=False, sharey=True
    )
    top = scores["score"].max() if len(scores) else 1.0
    for ax, subject in zip(axes.flat, subjects, strict=False):
        call = _call(calls, subject)
        own = scores[scores["subject"] == subject].assign(x=lambda f: f["timepoint"].map(x_of))
        own = own.dropna(subset=["x"]).sort_values("x")
        ax.plot(own["x"], own["score"], color="black", lw=2, marker="o", ms=4)
        ax.set_ylim(0, top * 1.1 if top > 0 else 1)
        right = ax.twinx()
        for color, measure in zip(MEASURE_COLORS, shown, strict=False):
            values = clinical[(clinical["subject"] == subject) & (clinical["measure"] == measure)]
            values = values.assign(x=values["timepoint"].map(x_of)).dropna(subset=["x"])
            values = values.sort_values("x")
            right.plot(values["x"], values["percent"], color=color, lw=1.2, marker="s", ms=3)
        right.set_ylim(-5, 105)
        right.tick_params(labelsize=6)
        if ax not in axes[:, -1]:
            right.set_yticklabels([])
        drug = drugs.get(subject, "")
        drug = "" if pd.isna(drug) else f" · {drug}"
        ax.set_title(
            f"{subject}{drug}\n{CALL_TEXT[call]}", fontsize=7.5, color=CALL_COLORS[call], pad=3
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(CALL_COLORS[call])
            spine.set_linewidth(1.6)
        ax.set_xticks(list(x_of.values()), timepoints, fontsize=6.5)
        ax.set_xlim(-0.3, len(timepoints) - 0.7)
        ax.tick_params(axis="y", labelsize=6.5)
    for ax in list(axes.flat)[len(subjects) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(signature, fontsize=7)
    handles = [Line2D([], [], color="black", lw=2, marker="o", label=f"IFN score ({signature})")]
    handles += [
        Line2D(
            [],
            [],
            color=c,
            marker="s",
            label=f"{measures[m].get('label') or m} (% of range, better up)",
        )
        for c, m in zip(MEASURE_COLORS, shown, strict=False)
    ]
    handles += [
        Line2D([], [], color=CALL_COLORS[k], lw=3, label=f"{CALL_TEXT[k]}") for k in CALL_COLORS
    ]
    title = f"Each patient over time: frame colour = {response}" if response else "Each patient"
    if len(subjects) < len(every):
        title += f" ({len(subjects)} of {len(every):,} patients, evenly spaced by ID)"
    fig.suptitle(title, fontsize=9)
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=7, frameon=False)
    # Fixed margins (in inches, as fractions): tight_layout over dozens of twin axes takes
    # tens of seconds.
    height = 2.0 * n_rows + 0.9
    fig.subplots_adjust(
        left=0.06, right=0.95, top=1 - 0.8 / height, bottom=0.75 / height, hspace=0.75, wspace=0.3
    )
    plots.write_figure(fig, path, dpi=90)
