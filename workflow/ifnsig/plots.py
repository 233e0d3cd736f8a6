"""Figures for each stage; every function writes one file and returns nothing."""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import anndata as ad  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

PALETTE = plt.get_cmap("tab10")
# Label-placement iterations of the volcano plot (adjustText's own limit is 1 s of time).
VOLCANO_LABEL_ITERATIONS = 500
#: The volcano's labels are kept off one point per cell of this many x this many.
VOLCANO_REPEL_CELLS = 150


def _save(fig, path: str | Path) -> None:
    # Figures laid out by their own engine (constrained, for keys outside the axes) keep it.
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    write_figure(fig, path)


#: Resolution of every figure (inches x dpi = pixels; 120 keeps 7-point text legible at
#: the report's width).
FIGURE_DPI = 120


def _has_colour_scale(fig) -> bool:
    """Whether the figure draws values through a colour map (heatmaps, colour bars)."""
    from matplotlib.cm import ScalarMappable

    return any(
        isinstance(artist, ScalarMappable) and artist.get_array() is not None
        for ax in fig.axes
        for artist in ax.get_children()
    )


def png_bytes(fig, dpi: int = FIGURE_DPI) -> bytes:
    """The figure as a PNG, small enough that the report embedding every figure stays
    small enough to email.

    Matplotlib writes RGBA at zlib level 6, and anti-aliased or semi-transparent lines give
    thousands of colours (the clinical trajectories: 9,000, 0.7 MB). The figure is written
    as RGB and reduced to a palette of 256 colours, without dithering so text and lines
    stay sharp (a third of the bytes); a figure with a colour scale keeps every colour
    (a palette would band the scale). No text chunks are written: the same figure gives
    the same bytes.
    """
    from PIL import Image

    # The raw pixels of what matplotlib would write as a PNG, without compressing them
    # only to read them back.
    buffer = io.BytesIO()
    fig.savefig(buffer, format="rgba", dpi=dpi)
    # matplotlib's canvas: the figure's inches times the dpi, truncated.
    width, height = (int(side * dpi) for side in fig.get_size_inches())
    rgba = Image.frombuffer("RGBA", (width, height), buffer.getvalue(), "raw", "RGBA", 0, 1)
    image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    if image.getcolors(256) is not None or not _has_colour_scale(fig):
        image = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


def write_figure(fig, path: str | Path, dpi: int = FIGURE_DPI) -> None:
    """Write the figure (PNG by :func:`png_bytes`, other formats by matplotlib) and close it."""
    from ifnsig.io import atomic_output

    try:
        with atomic_output(path) as partial:
            if str(path).endswith(".png"):
                partial.write_bytes(png_bytes(fig, dpi))
            else:
                fig.savefig(partial, dpi=dpi)
    finally:
        plt.close(fig)


def short_title(name: str, titles: dict[str, str] | None, width: int = 48) -> str:
    """A gene set's label for plots: its GMT title, shortened, then its ID."""
    title = (titles or {}).get(name, "")
    title = re.sub(r"\s*\(BTM [^)]*\)\s*$", "", title)
    title = re.sub(r"^.*blood transcription module M[\d.]+:\s*", "", title)
    # "Author et al. 2013 Journal: what the set is": the citation is in the GMT, not here.
    cited = re.match(r"^([^:]*\b(?:19|20)\d\d\b[^:]*):\s*(.+)$", title)
    if cited:
        title = cited.group(2)
    if not title or title == name:
        return name
    if len(title) > width:
        title = re.sub(r"\s*\([^()]*\)$", "", title)
    if len(title) > width:
        title = title[: width - 1].rstrip() + "…"
    return f"{title} ({name})"


def contrast_direction(contrast: str | None) -> tuple[str, str]:
    """Title and x label of a contrast named ``<test>_vs_<reference>`` (or any other name)."""
    if not contrast:
        return "", "log2 fold change"
    if "_vs_" in contrast:
        test, reference = contrast.split("_vs_", 1)
        return (
            f"{test} vs {reference}",
            f"log2 fold change, {test} / {reference} (> 0: higher in {test})",
        )
    return contrast.replace("_", " "), f"log2 fold change ({contrast}; > 0: up)"


def _key_legend(fig, keys: list[tuple[str, list]], max_rows: int = 8) -> None:
    """One colour key below the axes (constrained layout makes room): each annotation strip
    starts a new column, its name on top, then its levels."""
    from matplotlib.patches import Patch

    if not keys:
        return
    rows = min(max_rows, max(len(entries) + 1 for _, entries in keys))
    handles = []
    for title, entries in keys:
        items = [Patch(color="none", label=f"{title}:"), *entries]
        items += [Patch(color="none", label=" ")] * (-len(items) % rows)
        handles += items
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=len(handles) // rows,
        fontsize=7,
        frameon=False,
        handlelength=1.2,
        columnspacing=1.2,
    )


def timepoints_of(data: pd.DataFrame) -> list[str]:
    """The timepoints of ``data`` in their categorical order, else in order of appearance."""
    column = data["timepoint"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories if c in set(column)]
    return sorted(set(column.astype(str)))


def strip_palettes(columns: list) -> list[dict]:
    """A colour per level of each annotation strip, no colour shared between strips."""
    levels = [list(dict.fromkeys(str(v) for v in values)) for values in columns]
    colors = iter(categorical_colors(sum(len(lv) for lv in levels)))
    return [{level: next(colors) for level in lv} for lv in levels]


def _strip(ax, values, label: str, colors: dict | None = None, vertical: bool = False) -> list:
    """One annotation strip of ``values`` (one cell per sample, left to right, or top to
    bottom when ``vertical``); returns its legend handles."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    values = np.asarray(values).astype(str)
    levels = list(dict.fromkeys(values)) if colors is None else list(colors)
    present = set(values)
    levels = [level for level in levels if level in present]
    palette = colors or dict(zip(levels, categorical_colors(len(levels)), strict=True))
    position = {level: i for i, level in enumerate(levels)}
    codes = np.array([position[v] for v in values])[None, :]
    if vertical:
        codes = codes.T
    cmap = ListedColormap([palette[level] for level in levels])
    ax.imshow(
        codes, aspect="auto", cmap=cmap, vmin=-0.5, vmax=len(levels) - 0.5, interpolation="nearest"
    )
    if vertical:
        ax.set_xticks([0], [label], rotation=90, fontsize=8)
        ax.set_yticks([])
    else:
        ax.set_yticks([0], [label], fontsize=7)
        ax.tick_params(axis="x", bottom=False, labelbottom=False)
    return [Patch(color=palette[level], label=level) for level in levels]


def categorical_colors(n: int) -> list:
    """``n`` distinct colours: tab10 up to 10, tab20 up to 20, then the 60 colours of tab20,
    tab20b and tab20c, then evenly spaced HUSL hues (seaborn), so no two levels share one."""
    if n <= 10:
        return [plt.get_cmap("tab10")(i) for i in range(n)]
    if n <= 20:
        return [plt.get_cmap("tab20")(i) for i in range(n)]
    if n <= 60:
        return [plt.get_cmap(name)(i) for name in ("tab20", "tab20b", "tab20c") for i in range(20)][
            :n
        ]
    import seaborn as sns

    return list(sns.husl_palette(n, l=0.6, s=0.9))


def pca(
    scores: np.ndarray,
    variance_ratio: np.ndarray,
    obs: pd.DataFrame,
    colors: list[str],
    path: str | Path,
) -> None:
    """PC1 vs PC2, one panel per ``obs`` column (design columns and QC flags), 4 per row."""
    colors = [c for c in colors if c in obs.columns and obs[c].astype(str).ne("").any()]
    n_cols = min(4, len(colors))
    n_rows = -(-len(colors) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.6 * n_cols, 4.4 * n_rows), squeeze=False)
    second = scores[:, 1] if scores.shape[1] > 1 else np.zeros(len(scores))
    for ax, column in zip(axes.flat, colors, strict=False):
        values = obs[column].astype(str).replace("", "(none)").to_numpy()
        levels = sorted(set(values), key=lambda v: (v != "ok", v))
        palette = categorical_colors(len(levels))
        for i, level in enumerate(levels):
            mask = values == level
            flagged = column.startswith("qc_") and level != "ok"
            ax.scatter(
                scores[mask, 0],
                second[mask],
                s=30 if flagged else 14,
                color="lightgrey" if level == "ok" else palette[i],
                edgecolor="black" if flagged else "none",
                linewidth=0.5,
                label=level,
                zorder=3 if flagged else 2,
            )
        ax.set_xlabel(f"PC1 ({100 * variance_ratio[0]:.1f}%)")
        ax.set_ylabel(f"PC2 ({100 * variance_ratio[1]:.1f}%)" if len(variance_ratio) > 1 else "")
        ax.set_title(column.replace("qc_", "QC: "), fontsize=10)
        ax.legend(
            fontsize=8,
            frameon=False,
            markerscale=1.2,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.14),
            ncol=2 if len(levels) > 4 else 1,
        )
    for ax in list(axes.flat)[len(colors) :]:
        ax.axis("off")
    _save(fig, path)


def qc_correlation_heatmap(
    correlation: np.ndarray,
    samples: pd.DataFrame,
    flagged: set[str],
    path: str | Path,
    n_total: int | None = None,
) -> None:
    """Sample-sample correlation, samples ordered by average-linkage clustering on 1 - r.

    Strips on the left mark group and timepoint; flagged samples are named in red when the
    cohort is small enough to label every sample. ``samples`` are the samples shown; when
    they are fewer than the cohort's ``n_total`` (``qc.heatmap_rows``), the title says so.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    n = len(samples)
    distance = 1 - np.asarray(correlation, dtype=float)
    np.fill_diagonal(distance, 0.0)
    order = (
        leaves_list(linkage(squareform(np.clip(distance, 0, None), checks=False), "average"))
        if n > 2
        else np.arange(n)
    )
    ordered = np.array(np.asarray(correlation)[np.ix_(order, order)], dtype=float)
    if n > 1:
        # The diagonal (r = 1) would set the colour scale; it is left blank.
        np.fill_diagonal(ordered, np.nan)
    off = ordered[np.isfinite(ordered)] if n > 1 else np.ones(1)
    size = min(12.0, 4.0 + 0.09 * n)
    fig, (*strips, ax, bar) = plt.subplots(
        1,
        4,
        figsize=(size + 1.8, size + 1.2),
        width_ratios=[0.4, 0.4, size, 0.3],
        layout="constrained",
    )
    image = ax.imshow(
        ordered,
        cmap="viridis",
        vmin=np.quantile(off, 0.01),
        vmax=np.quantile(off, 0.99),
        interpolation="nearest",
        aspect="auto",
    )
    fig.colorbar(image, cax=bar, label="Pearson r (VST)")
    keys = []
    columns = ["group", "timepoint"]
    palettes = strip_palettes([sorted(set(samples[c].astype(str))) for c in columns])
    for strip, column, palette in zip(strips, columns, palettes, strict=True):
        values = samples[column].astype(str).to_numpy()[order]
        keys.append((column, _strip(strip, values, column, palette, vertical=True)))
    _key_legend(fig, keys)
    names = samples["sample"].astype(str).to_numpy()[order]
    ax.set_yticks([])
    if n <= 100:
        ax.set_xticks(range(n), names, fontsize=4 if n > 50 else 6, rotation=90)
        for label in ax.get_xticklabels():
            if label.get_text() in flagged:
                label.set_color("red")
    else:
        ax.set_xticks([])
    title = "sample-sample correlation (flagged samples in red)"
    if n_total is not None and n_total > n:
        title = f"sample-sample correlation of {n:,} of {n_total:,} samples (flagged ones included)"
    ax.set_title(title, fontsize=10)
    _save(fig, path)


def qc_metric_bars(
    metrics: pd.DataFrame, bounds: pd.DataFrame, flags: pd.DataFrame, path: str | Path
) -> None:
    """A bar per sample for each metric, with its bounds.

    Red: the sample crosses a bound of this metric; orange: flagged by another check.
    """
    columns = [c for c in metrics.columns if c != "sample" and metrics[c].notna().any()]
    n = len(metrics)
    fig, axes = plt.subplots(
        len(columns), 1, figsize=(min(18.0, 4 + 0.12 * n), 1.7 * len(columns)), squeeze=False
    )
    flagged = metrics["sample"].isin(flags["sample"]).to_numpy()
    for ax, column in zip(axes[:, 0], columns, strict=True):
        crossed = (
            metrics["sample"]
            .isin(flags.loc[flags["flag"].str.startswith(f"{column}_"), "sample"])
            .to_numpy()
        )
        colors = np.where(crossed, "tab:red", np.where(flagged, "tab:orange", "tab:blue"))
        if n <= 150:
            ax.bar(np.arange(n), metrics[column], color=colors, width=0.85)
        else:
            # One line collection instead of a patch per bar: fast for thousands of samples.
            ax.vlines(np.arange(n), 0, metrics[column], colors=colors, linewidth=0.8)
        for bound in bounds[bounds["metric"] == column].itertuples():
            fixed = bound.rule.startswith("qc.thresholds")
            ax.axhline(bound.bound, color="black", ls="-" if fixed else "--", lw=0.8)
            ax.annotate(
                bound.rule if fixed else f"{bound.side}: {bound.rule}",
                (n - 0.5, bound.bound),
                fontsize=6,
                ha="right",
                va="bottom",
            )
        ax.set_ylabel(column.replace("_", " "), fontsize=8)
        ax.set_xlim(-0.6, n - 0.4)
        ax.set_xticks([])
    if n <= 120:
        axes[-1, 0].set_xticks(np.arange(n), metrics["sample"], rotation=90, fontsize=5)
    _save(fig, path)


def qc_sex(table: pd.DataFrame, path: str | Path) -> None:
    """XIST against Y-linked genes, coloured by declared sex; mismatches and unclear named."""
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    if table["predicted_sex"].astype(str).eq("").all():
        ax.text(0.5, 0.5, "sex genes not found or not expressed in the data", ha="center")
        ax.axis("off")
        _save(fig, path)
        return
    colors = {"female": "tab:red", "male": "tab:blue"}
    declared = (
        table["declared_sex"].astype(str).replace({"": "not declared", "nan": "not declared"})
    )
    for level in sorted(declared.unique()):
        rows = table[declared == level]
        ax.scatter(
            rows["female_log2"],
            rows["male_log2"],
            s=16,
            color=colors.get(level, "grey"),
            label=f"declared {level}" if level in colors else level,
        )
    odd = table[
        (table["predicted_sex"] == "unclear")
        | (
            table["declared_sex"].isin(["female", "male"])
            & (table["declared_sex"] != table["predicted_sex"])
        )
    ]
    ax.scatter(
        odd["female_log2"],
        odd["male_log2"],
        s=40,
        facecolor=[colors.get(d, "grey") for d in odd["declared_sex"]],
        edgecolor="black",
        linewidth=1,
        zorder=3,
        label="mismatch or unclear",
    )
    for i, row in enumerate(odd.itertuples()):
        ax.annotate(
            row.sample,
            (row.female_log2, row.male_log2),
            xytext=(-8, 10 + 9 * (i % 4)),
            textcoords="offset points",
            ha="right",
            fontsize=6,
            arrowprops={"arrowstyle": "-", "lw": 0.4},
        )
    ax.set_xlabel("XIST/TSIX, mean log2 normalized count")
    ax.set_ylabel("Y-linked genes, mean log2 normalized count")
    ax.set_title("sex check: females bottom right, males top left", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    _save(fig, path)


def composition_over_time(
    composition: pd.DataFrame,
    samples: pd.DataFrame,
    timepoints: list[str],
    patient_group: str,
    changes: pd.DataFrame,
    path: str | Path,
) -> None:
    """Cell-type scores by timepoint, a line per patient, other samples on the left."""
    columns = [c for c in composition.columns if c.endswith("_score")]
    if not columns:
        _nothing_to_plot("no cell-type marker found in the data", path)
        return
    frame = composition.assign(
        subject=samples["subject"].astype(str).to_numpy(),
        group=samples["group"].astype(str).to_numpy(),
        timepoint=samples["timepoint"].astype(str).to_numpy(),
    )
    x_of = {tp: i + 1 for i, tp in enumerate(timepoints)}
    n_cols = min(4, len(columns))
    n_rows = -(-len(columns) // n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.8 * n_cols, 3.2 * n_rows), squeeze=False, sharex=True
    )
    rng = np.random.default_rng(0)
    patients = frame[frame["group"] == patient_group]
    others = frame[frame["group"] != patient_group]
    for ax, column in zip(axes.flat, columns, strict=False):
        ax.scatter(
            rng.uniform(-0.15, 0.15, len(others)), others[column], s=8, color="grey", zorder=2
        )
        # One line collection of all patients' trajectories (fast for hundreds of patients).
        wide = patients.pivot(index="subject", columns="timepoint", values=column)
        wide = wide.reindex(columns=[t for t in timepoints if t in wide.columns])
        xs = np.array([x_of[t] for t in wide.columns], dtype=float)
        segments = [
            np.column_stack([xs[np.isfinite(y)], y[np.isfinite(y)]]) for y in wide.to_numpy()
        ]
        ax.add_collection(LineCollection(segments, colors="tab:red", alpha=0.3, linewidths=1))
        ax.scatter(patients["timepoint"].map(x_of), patients[column], s=8, color="tab:red")
        cell = column.removesuffix("_score")
        last = changes[(changes["cell_type"] == cell) & (changes["timepoint"] == timepoints[-1])]
        title = cell.replace("_", " ")
        if len(last) and np.isfinite(last["pvalue"].iat[0]):
            title += (
                f"\n{timepoints[-1]} vs {timepoints[0]}: median {last['median_change'].iat[0]:+.2f}"
                f", FDR = {last['fdr'].iat[0]:.2g}"
            )
        ax.set_title(title, fontsize=8)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xticks([0] + list(x_of.values()), ["other"] + timepoints, fontsize=7)
        ax.set_ylabel("marker score (log2)", fontsize=7)
    for i in range(len(columns), n_rows * n_cols):
        axes.flat[i].axis("off")
        # The shared x axis is labelled on the bottom row only: the panel above an empty
        # slot is the last of its column.
        axes.flat[i - n_cols].tick_params(labelbottom=True)
    _save(fig, path)


def _sample_labels(
    data: pd.DataFrame, groups: dict[str, str], levels: pd.Series | None
) -> pd.Series:
    """Each sample's group as the configuration names it, or its compared level."""
    label = data["group"].astype(str)
    if levels is not None:
        label = data["sample"].astype(str).map(levels).fillna(label).astype(str)
    return label


def scores_over_time(
    scores: pd.DataFrame,
    timepoints: list[str],
    signature: str,
    method: str,
    path: str | Path,
    groups: dict[str, str] | None = None,
    levels: pd.Series | None = None,
    reference_label: str = "",
) -> None:
    """Score by timepoint, a line per patient, controls on the left, the positivity threshold.

    Groups are named as the configuration names them (``groups``: ``patient`` and
    ``control`` values); ``levels`` (sample -> level of ``scores.compare``'s column)
    colours the patients by the compared groups instead. ``reference_label`` names the
    reference samples in the title.
    """
    groups = groups or {"patient": "patient", "control": "control"}
    data = scores[(scores["signature"] == signature) & (scores["method"] == method)]
    data = data.assign(label=_sample_labels(data, groups, levels))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    controls = data[data["group"] == groups["control"]]
    patients = data[data["group"] != groups["control"]]
    rng = np.random.default_rng(0)
    if len(controls):
        ax.scatter(
            rng.uniform(-0.15, 0.15, len(controls)),
            controls["score"],
            color="grey",
            s=14,
            label=groups["control"],
        )
    x_of = {tp: i + 1 for i, tp in enumerate(timepoints)}
    names = list(dict.fromkeys(sorted(patients["label"].unique())))
    color_of = {name: PALETTE(i % 10) for i, name in enumerate(names)}
    if len(names) == 1:
        color_of = {names[0]: "tab:red"}
    for _, subject in patients.groupby("subject"):
        subject = subject.sort_values("timepoint", key=lambda s: s.map(x_of))
        color = color_of[subject["label"].iloc[0]]
        ax.plot(subject["timepoint"].map(x_of), subject["score"], color=color, alpha=0.35, lw=1)
    for name in names:
        part = patients[patients["label"] == name]
        jitter = rng.uniform(-0.12, 0.12, len(part)) if len(timepoints) == 1 else 0
        ax.scatter(
            part["timepoint"].map(x_of) + jitter, part["score"], color=color_of[name], s=14,
            label=name,
        )  # fmt: skip
    threshold = data["threshold"].iloc[0]
    reference = "controls" if data["reference_group"].iloc[0] == "controls" else "baseline"
    reference = groups["control"] if reference == "controls" else "every baseline sample"
    ax.axhline(
        threshold, ls="--", color="black", lw=1,
        label=f"positive above {threshold:.3g} (reference: {reference})",
    )  # fmt: skip
    ticks = ([0] if len(controls) else []) + list(x_of.values())
    patient_name = " / ".join(names) if len(names) <= 2 else groups["patient"]
    labels = ([groups["control"]] if len(controls) else []) + [
        f"{patient_name}\n{tp}" for tp in timepoints
    ]
    ax.set_xticks(ticks, labels, fontsize=8)
    ax.set_ylabel(f"{signature} ({method.replace('_', ' ')})")
    title = f"{signature} over time"
    if reference_label:
        title += f"\nreference: {reference_label}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    _save(fig, path)


def volcano(
    de: pd.DataFrame,
    path: str | Path,
    highlight: list[str],
    alpha: float = 0.1,
    n_label: int = 10,
    contrast: str | None = None,
) -> None:
    """Volcano plot; the top genes and the highlighted (IFN) genes are labelled, the labels
    placed apart by adjustText. The title and x axis say which way is up."""
    from adjustText import adjust_text

    table = de.dropna(subset=["pvalue"]).copy()
    table["mlog10p"] = -np.log10(np.maximum(table["pvalue"], 1e-300))
    significant = table["padj"] < alpha
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.scatter(
        table.loc[~significant, "log2FoldChange"],
        table.loc[~significant, "mlog10p"],
        s=4,
        color="lightgrey",
        rasterized=True,
    )
    up = significant & (table["log2FoldChange"] > 0)
    down = significant & (table["log2FoldChange"] < 0)
    for mask, color, word in [(up, "tab:orange", "up"), (down, "tab:blue", "down")]:
        ax.scatter(
            table.loc[mask, "log2FoldChange"],
            table.loc[mask, "mlog10p"],
            s=5,
            color=color,
            label=f"padj < {alpha:g}, {word}: {int(mask.sum())} genes",
            rasterized=True,
        )
    marked = table[table["symbol"].isin(highlight)]
    ax.scatter(
        marked["log2FoldChange"],
        marked["mlog10p"],
        s=14,
        facecolor="none",
        edgecolor="tab:red",
        linewidth=0.9,
        label="IFN signature genes",
    )
    labelled = pd.concat([table.nsmallest(n_label, "pvalue"), marked.nsmallest(n_label, "pvalue")])
    labelled = labelled.drop_duplicates("gene_id")
    ax.axvline(0, color="0.7", lw=0.6, zorder=0)
    title, xlabel = contrast_direction(contrast)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("-log10 p-value")
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    texts = [
        ax.text(row.log2FoldChange, row.mlog10p, str(row.symbol), fontsize=6)
        for row in labelled.itertuples()
    ]
    if texts:
        fig.tight_layout()
        x, y = _occupied_cells(table["log2FoldChange"].to_numpy(), table["mlog10p"].to_numpy())
        adjust_text(
            texts,
            x=x,
            y=y,
            ax=ax,
            arrowprops={"arrowstyle": "-", "color": "0.35", "lw": 0.4},
            ensure_inside_axes=True,
            # adjustText stops after 1 s of wall time by default, so a loaded machine would
            # draw other label positions: a fixed iteration count keeps the figure's bytes.
            iter_lim=VOLCANO_LABEL_ITERATIONS,
        )
    _save(fig, path)


def _occupied_cells(x: np.ndarray, y: np.ndarray, cells: int = VOLCANO_REPEL_CELLS):
    """One point per occupied cell of a ``cells`` x ``cells`` grid over the points' range:
    what the labels are kept off. adjustText's cost grows with the points it repels from
    (every pair in its first step), and a dense cloud of thousands of genes covers no more
    of the plot than its occupied cells do."""
    finite = np.isfinite(x) & np.isfinite(y)
    x, y = x[finite], y[finite]
    if len(x) <= cells:
        return x, y
    span_x = max(np.ptp(x), 1e-12)
    span_y = max(np.ptp(y), 1e-12)
    col = np.minimum(((x - x.min()) / span_x * cells).astype(int), cells - 1)
    row = np.minimum(((y - y.min()) / span_y * cells).astype(int), cells - 1)
    _, first = np.unique(row * cells + col, return_index=True)
    first.sort()
    return x[first], y[first]


RESPONSE_COLORS = {True: "tab:blue", False: "tab:orange"}
NOT_EVALUABLE = "0.65"


def _response_color(calls: pd.Series | None, subject: str) -> str:
    call = None if calls is None else calls.get(subject, pd.NA)
    return NOT_EVALUABLE if call is None or pd.isna(call) else RESPONSE_COLORS[bool(call)]


def _response_legend(ax, response: str) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=RESPONSE_COLORS[True], marker="o", label=f"{response}: yes"),
        Line2D([], [], color=RESPONSE_COLORS[False], marker="o", label=f"{response}: no"),
        Line2D([], [], color=NOT_EVALUABLE, marker="o", label="not evaluable"),
    ]
    ax.legend(handles=handles, fontsize=7, frameon=False)


def _nothing_to_plot(message: str, path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.text(0.5, 0.5, message, ha="center", wrap=True)
    ax.axis("off")
    _save(fig, path)


def change_scatter(
    score_change: pd.DataFrame,
    measure_change: pd.DataFrame,
    signature: str,
    method: str,
    measures: list[str],
    timepoint: str,
    path: str | Path,
    calls: pd.Series | None = None,
    response: str = "",
) -> None:
    """Change in IFN score vs change in each clinical measure, one panel per measure.

    Points are coloured by the response call (``calls``: subject -> True/False/NA) when
    given; the line is the least-squares fit over all points.
    """
    scores = score_change[
        (score_change["signature"] == signature)
        & (score_change["method"] == method)
        & (score_change["timepoint"] == timepoint)
    ]
    if not measures:
        _nothing_to_plot("no clinical measures declared", path)
        return
    fig, axes = plt.subplots(1, len(measures), figsize=(3.6 * len(measures), 3.6), squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=True):
        values = measure_change[
            (measure_change["measure"] == measure) & (measure_change["timepoint"] == timepoint)
        ]
        merged = scores.merge(values, on="subject", suffixes=("_score", "_measure")).dropna(
            subset=["change_score", "change_measure"]
        )
        colors = (
            [_response_color(calls, s) for s in merged["subject"]]
            if calls is not None
            else "tab:purple"
        )
        ax.scatter(merged["change_score"], merged["change_measure"], s=16, color=colors)
        if len(merged) >= 3:
            slope, intercept = np.polyfit(merged["change_score"], merged["change_measure"], 1)
            xs = np.linspace(merged["change_score"].min(), merged["change_score"].max(), 20)
            ax.plot(xs, intercept + slope * xs, color="black", lw=1)
        ax.axhline(0, color="0.85", lw=0.8, zorder=0)
        ax.axvline(0, color="0.85", lw=0.8, zorder=0)
        ax.set_xlabel(f"change in {signature}")
        ax.set_ylabel(f"change in {measure}")
        ax.set_title(f"{timepoint} vs baseline (n = {len(merged)})", fontsize=9)
    if calls is not None:
        _response_legend(axes[0][0], response)
    _save(fig, path)


#: Above this many patients a panel draws its patients' lines as one collection (the same
#: lines, colours and markers; drawing thousands of line objects took most of the clinical
#: stage's time), at most this many as one line object each (the demo's figures).
LINE_OBJECTS_MAX = 300


def _patient_lines(
    ax, values: pd.DataFrame, color_of, alpha: float, lw: float, marker_size: float = 0.0
) -> None:
    """One line per subject through its (``x``, ``score``) points in order of ``x``."""
    ordered = values.sort_values(["subject", "x"], kind="stable")
    subjects = ordered["subject"].to_numpy()
    points = ordered[["x", "score"]].to_numpy(dtype=float)
    starts = np.flatnonzero(np.r_[True, subjects[1:] != subjects[:-1]])
    colors = [color_of(subjects[i]) for i in starts]
    lines = LineCollection(np.split(points, starts[1:]), colors=colors, alpha=alpha, linewidths=lw)
    ax.add_collection(lines)
    if marker_size:
        repeated = np.repeat(np.array(colors), np.diff(np.r_[starts, len(subjects)]))
        ax.scatter(*points.T, s=marker_size**2, c=repeated, alpha=alpha, linewidths=0)
    ax.autoscale_view()


def clinical_trajectories(
    score_change: pd.DataFrame,
    clinical: pd.DataFrame,
    measures: dict[str, dict],
    signature: str,
    method: str,
    timepoints: list[str],
    path: str | Path,
    calls: pd.Series | None = None,
    response: str = "",
) -> None:
    """The IFN score and each clinical measure over time, a line per patient.

    Lines are coloured by the response call at the last timepoint (``calls``: subject ->
    True/False/NA), so a reader sees whether those whose score falls are those who improve.
    """
    score = score_change[
        (score_change["signature"] == signature) & (score_change["method"] == method)
    ][["subject", "timepoint", "score"]]
    panels = [("score", f"{signature}\n({method.replace('_', ' ')})", score)]
    for measure, spec in measures.items():
        if clinical is not None and measure in clinical.columns:
            values = clinical[["subject", "timepoint", measure]].rename(columns={measure: "score"})
            panels.append((measure, spec.get("label") or measure, values))
    n_cols = min(4, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 3.2 * n_rows), squeeze=False)
    x_of = {tp: i for i, tp in enumerate(timepoints)}
    for ax, (_, label, values) in zip(axes.flat, panels, strict=False):
        values = values.assign(x=values["timepoint"].map(x_of)).dropna(subset=["x", "score"])
        if values["subject"].nunique() > LINE_OBJECTS_MAX:
            _patient_lines(ax, values, lambda s: _response_color(calls, s), 0.7, 1, 3)
        else:
            for subject, rows in values.groupby("subject", sort=True):
                rows = rows.sort_values("x")
                color = _response_color(calls, subject)
                ax.plot(rows["x"], rows["score"], color=color, alpha=0.7, lw=1, marker="o", ms=3)
        ax.set_xticks(list(x_of.values()), timepoints, fontsize=8)
        ax.set_ylabel(label, fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if calls is not None:
        _response_legend(axes.flat[0], response)
    _save(fig, path)


def group_trajectories(
    score_change: pd.DataFrame,
    groupings: list,
    signature: str,
    method: str,
    timepoints: list[str],
    path: str | Path,
) -> None:
    """The score over time, one panel per grouping: a line per patient coloured by group and
    each group's median at every timepoint (thick), so the fall in each group is seen."""
    score = score_change[
        (score_change["signature"] == signature) & (score_change["method"] == method)
    ]
    x_of = {tp: i for i, tp in enumerate(timepoints)}
    n = max(len(groupings), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, grouping in zip(axes[0], groupings, strict=False):
        data = score.assign(
            group=score["subject"].astype(str).map(grouping.labels),
            x=score["timepoint"].map(x_of),
        ).dropna(subset=["group", "x", "score"])
        for i, level in enumerate(grouping.levels):
            # Responders in the colours of the other clinical figures.
            called = {"responder": True, "non_responder": False}.get(level)
            color = PALETTE(i % 10) if called is None else RESPONSE_COLORS[called]
            part = data[data["group"] == level]
            if part["subject"].nunique() > LINE_OBJECTS_MAX:
                _patient_lines(ax, part, lambda _, color=color: color, 0.3, 0.8)
            else:
                for _, rows in part.groupby("subject", sort=True):
                    rows = rows.sort_values("x")
                    ax.plot(rows["x"], rows["score"], color=color, alpha=0.3, lw=0.8)
            medians = part.groupby("x")["score"].median()
            n_level = part["subject"].nunique()
            ax.plot(
                medians.index, medians.to_numpy(), color=color, lw=3, marker="o",
                label=f"{level} (n = {n_level}), median",
            )  # fmt: skip
        ax.set_xticks(list(x_of.values()), timepoints, fontsize=8)
        ax.set_title(f"by {grouping.name}", fontsize=9)
        ax.set_ylabel(f"{signature} ({method.replace('_', ' ')})", fontsize=9)
        ax.legend(fontsize=7, frameon=False)
    _save(fig, path)


def response_roc(
    score_change: pd.DataFrame,
    responses: pd.DataFrame,
    signature: str,
    method: str,
    timepoint: str,
    path: str | Path,
) -> None:
    """ROC curve of the baseline score for each response definition at ``timepoint``.

    Curves come from scikit-learn's ``roc_curve``; the AUC in the legend is the estimate
    of the Mann-Whitney rows of baseline_prediction.tsv. Definitions that call the same
    patients give the same curve: each curve is drawn thinner than the one before it and
    with its own dash and marker, so none hides another, and the legend says which coincide.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    baseline = score_change[
        (score_change["signature"] == signature)
        & (score_change["method"] == method)
        & (score_change["timepoint"] == timepoint)
    ].set_index("subject")["baseline_score"]
    at = responses[responses["timepoint"] == timepoint]
    curves = []
    for name, group in at.groupby("response", sort=False):
        calls = group.set_index("subject")["responder"].dropna().astype(bool)
        data = pd.concat([baseline.rename("x"), calls.rename("y")], axis=1, join="inner").dropna()
        if data["y"].nunique() == 2:
            fpr, tpr, _ = roc_curve(data["y"], data["x"])
            auc = roc_auc_score(data["y"], data["x"])
            curves.append((str(name), f"AUC {auc:.2f} (n = {len(data)})", fpr, tpr))
    if not curves:
        _nothing_to_plot(
            f"no response with both responders and non-responders at {timepoint}", path
        )
        return
    fig, ax = plt.subplots(figsize=(6.2, 5.2))
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P"]
    colors = categorical_colors(len(curves))
    widths = np.linspace(4.0, 1.2, len(curves)) if len(curves) > 1 else [1.8]
    for i, (name, summary, fpr, tpr) in enumerate(curves):
        same = [
            other
            for other, _, f, t in curves[:i]
            if len(f) == len(fpr) and np.allclose(f, fpr) and np.allclose(t, tpr)
        ]
        note = f"; same curve as {same[0]}" if same else ""
        ax.step(
            fpr,
            tpr,
            where="post",
            color=colors[i],
            lw=widths[i],
            ls=styles[i % len(styles)],
            marker=markers[i % len(markers)],
            markersize=3 + 0.8 * widths[i],
            alpha=0.9,
            label=f"{name}: {summary}{note}",
        )
    ax.plot([0, 1], [0, 1], ls=":", color="0.6", lw=1)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(
        f"baseline {signature} ({method.replace('_', ' ')}) for response at {timepoint}",
        fontsize=9,
    )
    ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    ax.set_aspect("equal")
    _save(fig, path)


def ma_plot(de: pd.DataFrame, path: str | Path, alpha: float = 0.1) -> None:
    """Log2 fold change against mean normalized count, significant genes coloured."""
    table = de.dropna(subset=["log2FoldChange"])
    table = table[table["baseMean"] > 0]
    significant = (table["padj"] < alpha).to_numpy()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(
        table["baseMean"][~significant],
        table["log2FoldChange"][~significant],
        s=3,
        color="lightgrey",
        rasterized=True,
    )
    ax.scatter(
        table["baseMean"][significant],
        table["log2FoldChange"][significant],
        s=4,
        color="tab:blue",
        label=f"padj < {alpha}",
        rasterized=True,
    )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("mean of normalized counts")
    ax.set_ylabel("log2 fold change")
    ax.legend(fontsize=8, frameon=False)
    _save(fig, path)


def pvalue_histogram(de: pd.DataFrame, path: str | Path) -> None:
    """Histogram of raw p-values: flat with a peak at 0 when the model fits."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(de["pvalue"].dropna(), bins=np.linspace(0, 1, 41), color="tab:gray")
    ax.set_xlabel("p-value")
    ax.set_ylabel("genes")
    _save(fig, path)


#: Widest heatmap of the top DE genes (inches): beyond about 130 samples they share the width.
HEATMAP_MAX_WIDTH = 24.0
#: Most levels of an annotation strip listed in a colour key.
KEY_MAX_LEVELS = 60


def top_gene_heatmap(
    adata: ad.AnnData,
    de: pd.DataFrame,
    groups: pd.Series,
    path: str | Path,
    n_top: int = 40,
    contrast: str | None = None,
) -> None:
    """VST z-scores of the top genes across the contrast's samples.

    ``groups`` maps each sample of the contrast to its level of the compared variable
    (timepoint, response, ...); samples are ordered and annotated by it, then by subject.
    Each strip has a colour key below the heatmap; subject colours do not repeat.
    """
    from matplotlib.patches import Patch

    top = de.dropna(subset=["padj"]).nsmallest(n_top, "pvalue")
    samples = list(groups.index)
    sub = adata[samples, top["gene_id"].astype(str).to_numpy()]
    level = groups.astype(str).to_numpy()
    # The reference level first when the levels are ordered (the design's categorical).
    rank = pd.Categorical(groups).codes if isinstance(groups.dtype, pd.CategoricalDtype) else level
    order = np.lexsort((sub.obs["subject"].astype(str).to_numpy(), rank))
    sub = sub[order]
    name = str(groups.name or "group")
    annotation = pd.DataFrame(
        {name: level[order], "subject": sub.obs["subject"].astype(str)}, index=sub.obs_names
    )
    values = np.asarray(sub.layers["vst"], dtype=float).T
    z = (values - values.mean(axis=1, keepdims=True)) / (values.std(axis=1, keepdims=True) + 1e-9)
    width = min(HEATMAP_MAX_WIDTH, max(7, 0.12 * len(samples) + 2.5))
    fig, axes = plt.subplots(
        3,
        1,
        figsize=(width, 0.18 * len(top) + 4.0),
        gridspec_kw={"height_ratios": [0.4, 0.4, max(len(top), 1) * 0.18]},
        sharex=True,
        layout="constrained",
    )
    keys = []
    palettes = strip_palettes([annotation[column] for column in annotation.columns])
    for ax, column, palette in zip(axes[:2], annotation.columns, palettes, strict=True):
        entries = _strip(ax, annotation[column], column, palette)
        if len(entries) > KEY_MAX_LEVELS:  # thousands of subjects: no key can list them
            entries = [Patch(color="none", label=f"{len(entries)} levels, one colour each")]
        keys.append((column, entries))
    image = axes[2].imshow(
        z, aspect="auto", cmap="RdBu_r", vmin=-2.5, vmax=2.5, interpolation="nearest"
    )
    axes[2].set_yticks(range(len(top)), top["symbol"].astype(str), fontsize=6)
    axes[2].set_xticks([])
    axes[2].set_xlabel(f"{len(samples)} samples, ordered by {name} then subject", fontsize=8)
    title, _ = contrast_direction(contrast)
    fig.suptitle(f"top {len(top)} genes by p-value" + (f", {title}" if title else ""), fontsize=9)
    fig.colorbar(image, ax=axes[2], label="VST z-score", fraction=0.03)
    _key_legend(fig, keys)
    _save(fig, path)


def enrichment_dotplot(
    prerank: pd.DataFrame,
    path: str | Path,
    n_top: int = 20,
    titles: dict[str, str] | None = None,
    contrast: str | None = None,
) -> None:
    """Top gene sets: normalized enrichment score, size = genes in the set, colour = FDR.

    The top sets are those of lowest FDR, then largest |NES| (sets tied at the floor of the
    permutation FDR all rank by effect); labels are the sets' GMT titles (``titles``).
    """
    from matplotlib.lines import Line2D

    tested = prerank.dropna(subset=["nes"])
    tested = tested.assign(_abs=-tested["nes"].abs()).sort_values(
        ["fdr", "_abs", "gene_set"], kind="mergesort"
    )
    top = tested.head(n_top).sort_values("nes", kind="mergesort")
    labels = [short_title(name, titles) for name in top["gene_set"]]
    fig, ax = plt.subplots(figsize=(8.5, 0.34 * max(len(top), 4) + 1.8))
    if top.empty:
        ax.text(0.5, 0.5, "no gene set tested", ha="center")
        ax.axis("off")
        _save(fig, path)
        return

    def size(n):
        return 6 * np.sqrt(np.asarray(n, dtype=float)) * 4

    points = ax.scatter(
        top["nes"],
        np.arange(len(top)),
        s=size(top["n_genes"]),
        c=top["fdr"].astype(float),
        cmap="viridis_r",
        vmin=0,
        vmax=0.25,
        edgecolor="black",
        linewidth=0.4,
    )
    ax.set_yticks(np.arange(len(top)), labels, fontsize=7)
    ax.set_ylim(-0.8, len(top) - 0.2)
    ax.axvline(0, color="black", lw=0.8)
    title, _ = contrast_direction(contrast)
    test = contrast.split("_vs_", 1)[0] if contrast and "_vs_" in contrast else "the contrast"
    ax.set_xlabel(f"normalized enrichment score (> 0: set up in {test})", fontsize=8)
    ax.set_title(f"top {len(top)} gene sets by FDR" + (f", {title}" if title else ""), fontsize=9)
    bar = fig.colorbar(points, ax=ax, pad=0.02, fraction=0.04)
    bar.set_label("FDR (colour capped at 0.25)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    counts = sorted({int(round(v)) for v in np.quantile(top["n_genes"], [0, 0.5, 1])})
    handles = [
        Line2D([], [], ls="", marker="o", markersize=np.sqrt(size(n)), color="0.6", label=f"{n}")
        for n in counts
    ]
    ax.legend(
        handles=handles,
        title="genes in set",
        fontsize=7,
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.12, 1.0),
        frameon=False,
        labelspacing=1.2,
    )
    _save(fig, path)


def running_scores(
    prerank: pd.DataFrame,
    gene_sets: list[str],
    path: str | Path,
    titles: dict[str, str] | None = None,
    contrast: str | None = None,
) -> None:
    """Running enrichment score of the named gene sets (those tested), one labelled curve
    each (legend: title, NES, FDR), their hits as ticks below, then the ranking."""
    result = prerank.attrs.get("gseapy")
    terms = [t for t in gene_sets if result is not None and t in result.results]
    if not terms:
        _nothing_to_plot("none of the IFN sets was tested", path)
        return
    stats = prerank.set_index("gene_set")
    colors = categorical_colors(len(terms))
    fig, (curve, hits, metric) = plt.subplots(
        3,
        1,
        figsize=(7.5, 5.8 + 0.12 * len(terms)),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 0.25 * len(terms) + 0.3, 1]},
        layout="constrained",
    )
    for k, (term, color) in enumerate(zip(terms, colors, strict=True)):
        res = np.asarray(result.results[term]["RES"], dtype=float)
        label = short_title(term, titles, width=40)
        if term in stats.index:
            label += f": NES {stats.at[term, 'nes']:.2f}, FDR {stats.at[term, 'fdr']:.2g}"
        curve.plot(np.arange(len(res)), res, color=color, lw=1.3, label=label)
        hits.vlines(result.results[term]["hits"], k, k + 0.8, color=color, lw=0.6)
    curve.axhline(0, color="black", lw=0.6)
    curve.set_ylabel("running enrichment score", fontsize=8)
    title, _ = contrast_direction(contrast)
    curve.set_title("IFN gene sets along the ranking" + (f", {title}" if title else ""), fontsize=9)
    fig.legend(fontsize=7, frameon=False, loc="outside upper center", ncol=1)
    hits.set_yticks([k + 0.4 for k in range(len(terms))], terms, fontsize=6)
    hits.set_ylim(-0.2, len(terms))
    hits.invert_yaxis()
    ranking = np.asarray(result.ranking, dtype=float)
    metric.fill_between(np.arange(len(ranking)), ranking, color="0.6", lw=0)
    metric.axhline(0, color="black", lw=0.6)
    metric.set_ylabel("ranking\nstatistic", fontsize=8)
    test = contrast.split("_vs_", 1)[0] if contrast and "_vs_" in contrast else "the contrast"
    metric.set_xlabel(f"gene rank (left: up in {test})", fontsize=8)
    _save(fig, path)


def _sample_classes(scores: pd.DataFrame, timepoints: list[str]) -> list[tuple[str, str]]:
    """(label, timepoint) pairs present, reference groups first, timepoints in order."""
    pairs = scores[["label", "timepoint", "reference"]].drop_duplicates()
    tp_order = {tp: i for i, tp in enumerate(timepoints)}
    ref_share = pairs.groupby("label")["reference"].mean()
    keys = sorted(
        {(g, t) for g, t in pairs[["label", "timepoint"]].itertuples(index=False)},
        key=lambda gt: (-ref_share[gt[0]], gt[0], tp_order.get(gt[1], len(tp_order))),
    )
    return keys


def signature_heatmap(
    adata: ad.AnnData,
    gene_sets: dict[str, list[str]],
    scores: pd.DataFrame,
    signature: str,
    method: str,
    type2: str | None,
    path: str | Path,
    reference_stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """VST z-scores (against the reference samples) of the signature's genes, samples ordered
    by score; the IFN-gamma-biased genes below, for comparison. Strips of group, timepoint
    and the positivity call, each with its colour key below.

    ``reference_stats`` are the per-gene VST mean and SD of a frozen reference, in the genes
    of ``adata``; without them they come from the reference samples among ``adata``.
    """
    data = scores[(scores["signature"] == signature) & (scores["method"] == method)]
    data = data.sort_values("score", kind="stable")
    blocks = [(signature, gene_sets[signature])]
    if type2 and type2 in gene_sets and type2 != signature:
        blocks.append((type2, gene_sets[type2]))
    from ifnsig.scores import scoring_symbols, symbol_positions

    rows = [(name, gene) for name, genes in blocks for gene in genes]
    positions = symbol_positions(scoring_symbols(adata), [g for _, g in rows])
    vst = np.asarray(adata.layers["vst"], dtype=float)[:, positions]
    if reference_stats is None:
        reference = data.set_index("sample")["reference"].reindex(adata.obs_names).to_numpy(bool)
        mean, sd = vst[reference].mean(axis=0), vst[reference].std(axis=0, ddof=1)
    else:
        mean, sd = (np.asarray(v, dtype=float)[positions] for v in reference_stats)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (vst - mean) / sd, 0.0)
    z = z[adata.obs_names.get_indexer(data["sample"])].T
    n = len(data)
    fig, axes = plt.subplots(
        4,
        1,
        figsize=(min(max(7, 0.1 * n + 3), 24), 0.2 * len(rows) + 4.5),
        gridspec_kw={"height_ratios": [0.3, 0.3, 0.3, max(len(rows), 1) * 0.2]},
        sharex=True,
        layout="constrained",
    )
    keys = []
    columns = ["group", "timepoint"]
    palettes = strip_palettes(
        [sorted(set(data["group"].astype(str))), [t for t in timepoints_of(data)]]
    )
    for ax, column, palette in zip(axes[:2], columns, palettes, strict=True):
        keys.append((column, _strip(ax, data[column].astype(str), column, palette)))
    calls = np.where(data["positive"].to_numpy(bool), "positive", "negative")
    keys.append(
        ("IFN call", _strip(axes[2], calls, "IFN call", {"negative": "0.9", "positive": "0.1"}))
    )
    # Clipped at +-4 SD so a few extreme genes do not wash out the rest.
    image = axes[3].imshow(
        np.clip(z, -4, 4), aspect="auto", cmap="RdBu_r", vmin=-4, vmax=4, interpolation="nearest"
    )
    axes[3].set_yticks(range(len(rows)), [g for _, g in rows], fontsize=6)
    if len(blocks) > 1:
        axes[3].axhline(len(blocks[0][1]) - 0.5, color="black", lw=1.2)
        axes[3].set_ylabel(f"{blocks[0][0]} above, {blocks[1][0]} below", fontsize=8)
    if n <= 80:
        axes[3].set_xticks(range(n), data["sample"], rotation=90, fontsize=5)
    else:
        axes[3].set_xticks([])
    axes[3].set_xlabel(f"samples ordered by {signature} ({method.replace('_', ' ')})", fontsize=8)
    fig.colorbar(image, ax=axes[3], label="VST z-score vs reference", fraction=0.03)
    _key_legend(fig, keys)
    _save(fig, path)


def score_distributions(
    scores: pd.DataFrame,
    timepoints: list[str],
    path: str | Path,
    groups: dict[str, str] | None = None,
    levels: pd.Series | None = None,
) -> None:
    """Scores of each group and timepoint, one panel per signature (rows) and method
    (columns), with the positivity threshold.

    Groups are the sheet's (named as the configuration names them), or the levels of
    ``scores.compare``'s column (``levels``: sample -> level) where a sample has one.
    """
    groups = groups or {"patient": "patient", "control": "control"}
    scores = scores.assign(label=_sample_labels(scores, groups, levels))
    signatures = list(dict.fromkeys(scores["signature"]))
    methods = list(dict.fromkeys(scores["method"]))
    classes = _sample_classes(scores, timepoints)
    names = list(dict.fromkeys(g for g, _ in classes))
    one_timepoint = len({t for _, t in classes}) == 1
    fig, axes = plt.subplots(
        len(signatures),
        len(methods),
        figsize=(max(3.0, 0.55 * len(classes) + 1.2) * len(methods), 2.6 * len(signatures)),
        squeeze=False,
    )
    rng = np.random.default_rng(0)
    for i, signature in enumerate(signatures):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            data = scores[(scores["signature"] == signature) & (scores["method"] == method)]
            for k, (group, timepoint) in enumerate(classes):
                part = data[(data["label"] == group) & (data["timepoint"] == timepoint)]
                ax.boxplot([part["score"]], positions=[k], widths=0.6, showfliers=False)
                control = (part["group"] == groups["control"]).all()
                color = "grey" if control else PALETTE(names.index(group) % 10)
                jitter = k + rng.uniform(-0.18, 0.18, len(part))
                ax.scatter(jitter, part["score"], s=6, color=color, alpha=0.6)
            if not data.empty:
                ax.axhline(data["threshold"].iloc[0], ls="--", color="black", lw=0.8)
            ticks = [g if one_timepoint else f"{g}\n{t}" for g, t in classes]
            ax.set_xticks(range(len(classes)), ticks, fontsize=6)
            ax.tick_params(axis="y", labelsize=7)
            if i == 0:
                ax.set_title(method.replace("_", " "), fontsize=9)
            if j == 0:
                ax.set_ylabel(signature, fontsize=9)
    _save(fig, path)


def type1_vs_type2(
    contrast: pd.DataFrame,
    signature: str,
    method: str,
    path: str | Path,
    patient_group: str | None = None,
) -> None:
    """Type I signature score against the IFN-gamma-biased one, both in reference SDs.

    Each group and timepoint has its colour; the other groups than ``patient_group``
    (controls) are drawn last, edged in black, so the patients' cloud does not hide them.
    The line type I = type II is drawn across whatever range the points set and does not
    set the range itself.
    """
    data = contrast[(contrast["signature"] == signature) & (contrast["method"] == method)]
    fig, ax = plt.subplots(figsize=(6.2, 4.8))
    if data.empty:
        ax.text(0.5, 0.5, "no IFN-gamma-biased signature scored", ha="center")
        ax.axis("off")
        _save(fig, path)
        return
    classes = list(data.groupby(["group", "timepoint"], sort=True))
    classes.sort(key=lambda c: str(c[0][0]) != str(patient_group))
    colors = categorical_colors(len(classes))
    for k, ((group, timepoint), part) in enumerate(classes):
        control = patient_group is not None and str(group) != str(patient_group)
        ax.scatter(
            part["type1_z"],
            part["type2_z"],
            s=26 if control else 18,
            color=colors[k],
            alpha=1.0 if control else 0.75,
            edgecolor="black" if control else "none",
            linewidth=0.8,
            label=f"{group} {timepoint} (n = {len(part)})",
            zorder=3 if control else 2,
        )
    ax.axhline(0, color="0.8", lw=0.6, zorder=0)
    ax.axvline(0, color="0.8", lw=0.6, zorder=0)
    ax.axline((0, 0), slope=1, color="black", lw=0.8, ls=":", label="type I = type II")
    ax.set_xlabel(f"{signature} (reference SDs, {method.replace('_', ' ')})")
    ax.set_ylabel(f"{data['type2_signature'].iloc[0]} (reference SDs)")
    ax.set_title("type I vs IFN-gamma-biased score, 0 = reference mean", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
