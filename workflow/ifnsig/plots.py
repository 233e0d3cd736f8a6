"""Figures for each stage; every function writes one file and returns nothing."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import anndata as ad  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = plt.get_cmap("tab10")


def _save(fig, path: str | Path) -> None:
    fig.tight_layout()
    # A fixed creation date keeps the SVG/PDF metadata, and so the files, reproducible.
    fig.savefig(path, dpi=120, metadata={"Software": None} if str(path).endswith(".png") else None)
    plt.close(fig)


def pca(adata: ad.AnnData, colors: list[str], path: str | Path, n_top: int = 500) -> None:
    """PCA (scanpy) of VST values of the ``n_top`` most variable genes, one panel per colour."""
    import scanpy as sc

    variances = np.asarray(adata.layers["vst"]).var(axis=0)
    top = np.argsort(variances)[::-1][: min(n_top, adata.n_vars)]
    sub = ad.AnnData(X=np.asarray(adata.layers["vst"][:, top], dtype=float), obs=adata.obs.copy())
    sc.pp.pca(sub, n_comps=min(10, sub.n_obs - 1, sub.n_vars - 1), random_state=0)
    ratio = sub.uns["pca"]["variance_ratio"]
    coords = sub.obsm["X_pca"]
    colors = [c for c in colors if c in sub.obs.columns]
    fig, axes = plt.subplots(1, len(colors), figsize=(4.5 * len(colors), 4), squeeze=False)
    for ax, column in zip(axes[0], colors, strict=True):
        values = sub.obs[column].astype(str)
        for i, level in enumerate(sorted(values.unique())):
            mask = (values == level).to_numpy()
            ax.scatter(coords[mask, 0], coords[mask, 1], s=18, color=PALETTE(i % 10), label=level)
        ax.set_xlabel(f"PC1 ({100 * ratio[0]:.1f}%)")
        ax.set_ylabel(f"PC2 ({100 * ratio[1]:.1f}%)")
        ax.set_title(column)
        ax.legend(fontsize=7, frameon=False)
    _save(fig, path)


def scores_over_time(
    scores: pd.DataFrame, timepoints: list[str], signature: str, method: str, path: str | Path
) -> None:
    """Score by timepoint, a line per patient, controls on the left, the positivity threshold."""
    data = scores[(scores["signature"] == signature) & (scores["method"] == method)]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    controls = data[data["reference"] & (data["timepoint"] == timepoints[0])]
    patients = data[~data["sample"].isin(controls["sample"])]
    rng = np.random.default_rng(0)
    ax.scatter(
        rng.uniform(-0.15, 0.15, len(controls)),
        controls["score"],
        color="grey",
        s=14,
        label="reference",
    )
    x_of = {tp: i + 1 for i, tp in enumerate(timepoints)}
    for _, subject in patients.groupby("subject"):
        subject = subject.sort_values("timepoint", key=lambda s: s.map(x_of))
        ax.plot(subject["timepoint"].map(x_of), subject["score"], color="tab:red", alpha=0.35, lw=1)
    ax.scatter(
        patients["timepoint"].map(x_of), patients["score"], color="tab:red", s=14, label="patients"
    )
    threshold = data["threshold"].iloc[0]
    ax.axhline(threshold, ls="--", color="black", lw=1, label=f"positive above {threshold:.3g}")
    ax.set_xticks([0] + list(x_of.values()), ["reference"] + timepoints)
    ax.set_ylabel(f"{signature} ({method.replace('_', ' ')})")
    ax.legend(fontsize=8, frameon=False)
    _save(fig, path)


def volcano(
    de: pd.DataFrame, path: str | Path, highlight: list[str], alpha: float = 0.1, n_label: int = 10
) -> None:
    """Volcano plot; the top genes and the highlighted (IFN) genes are labelled."""
    table = de.dropna(subset=["pvalue"]).copy()
    table["mlog10p"] = -np.log10(np.maximum(table["pvalue"], 1e-300))
    significant = table["padj"] < alpha
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(
        table.loc[~significant, "log2FoldChange"],
        table.loc[~significant, "mlog10p"],
        s=4,
        color="lightgrey",
        rasterized=True,
    )
    ax.scatter(
        table.loc[significant, "log2FoldChange"],
        table.loc[significant, "mlog10p"],
        s=5,
        color="tab:blue",
        label=f"padj < {alpha}",
        rasterized=True,
    )
    marked = table[table["symbol"].isin(highlight)]
    ax.scatter(
        marked["log2FoldChange"],
        marked["mlog10p"],
        s=12,
        color="tab:red",
        label="IFN signature genes",
    )
    labelled = pd.concat([table.nsmallest(n_label, "pvalue"), marked.nsmallest(n_label, "pvalue")])
    for _, row in labelled.drop_duplicates("gene_id").iterrows():
        ax.annotate(row["symbol"], (row["log2FoldChange"], row["mlog10p"]), fontsize=6)
    ax.set_xlabel("log2 fold change")
    ax.set_ylabel("-log10 p")
    ax.legend(fontsize=8, frameon=False)
    _save(fig, path)


def enrichment_bars(prerank: pd.DataFrame, path: str | Path, n_top: int = 15) -> None:
    """Normalized enrichment score of the top gene sets, coloured by FDR."""
    top = prerank.dropna(subset=["nes"]).head(n_top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(top), 3) + 1.2))
    if top.empty:
        ax.text(0.5, 0.5, "no gene set tested", ha="center")
    else:
        colors = plt.get_cmap("viridis_r")(np.clip(top["fdr"].to_numpy(dtype=float), 0, 1))
        ax.barh(top["gene_set"], top["nes"], color=colors)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("normalized enrichment score (colour: FDR, dark = low)")
    _save(fig, path)


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
    of the Mann-Whitney rows of baseline_prediction.tsv.
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
            curves.append((f"{name}: AUC {auc:.2f} (n = {len(data)})", fpr, tpr))
    if not curves:
        _nothing_to_plot(
            f"no response with both responders and non-responders at {timepoint}", path
        )
        return
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for i, (label, fpr, tpr) in enumerate(curves):
        ax.step(fpr, tpr, where="post", color=PALETTE(i % 10), label=label)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"baseline {signature} for response at {timepoint}", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.set_aspect("equal")
    _save(fig, path)


def _sample_classes(scores: pd.DataFrame, timepoints: list[str]) -> list[tuple[str, str]]:
    """(group, timepoint) pairs present, reference groups first, timepoints in order."""
    pairs = scores[["group", "timepoint", "reference"]].drop_duplicates()
    tp_order = {tp: i for i, tp in enumerate(timepoints)}
    ref_share = pairs.groupby("group")["reference"].mean()
    keys = sorted(
        {(g, t) for g, t in pairs[["group", "timepoint"]].itertuples(index=False)},
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
) -> None:
    """VST z-scores (against the reference samples) of the signature's genes, samples ordered
    by score; the IFN-gamma-biased genes below, for comparison."""
    data = scores[(scores["signature"] == signature) & (scores["method"] == method)]
    data = data.sort_values("score", kind="stable")
    blocks = [(signature, gene_sets[signature])]
    if type2 and type2 in gene_sets and type2 != signature:
        blocks.append((type2, gene_sets[type2]))
    symbols = pd.Index(adata.var["symbol"].astype(str))
    rows = [(name, gene) for name, genes in blocks for gene in genes]
    vst = np.asarray(adata.layers["vst"], dtype=float)[:, symbols.get_indexer([g for _, g in rows])]
    reference = data.set_index("sample")["reference"].reindex(adata.obs_names).to_numpy(bool)
    mean, sd = vst[reference].mean(axis=0), vst[reference].std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (vst - mean) / sd, 0.0)
    z = z[adata.obs_names.get_indexer(data["sample"])].T
    n = len(data)
    fig, axes = plt.subplots(
        4,
        1,
        figsize=(min(max(6, 0.1 * n + 2.5), 24), 0.2 * len(rows) + 3),
        gridspec_kw={"height_ratios": [0.3, 0.3, 0.3, max(len(rows), 1) * 0.2]},
        sharex=True,
    )
    for ax, column in zip(axes[:2], ["group", "timepoint"], strict=True):
        levels = pd.Categorical(data[column])
        ax.imshow(levels.codes[None, :], aspect="auto", cmap="tab10", vmin=0, vmax=9)
        ax.set_yticks([0], [f"{column}: " + ", ".join(map(str, levels.categories))], fontsize=7)
    calls = data["positive"].to_numpy(int)[None, :]
    axes[2].imshow(calls, aspect="auto", cmap="Greys", vmin=0, vmax=1)
    axes[2].set_yticks([0], ["positive (black)"], fontsize=7)
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
    axes[3].set_xlabel(f"samples ordered by {signature} ({method.replace('_', ' ')})")
    fig.colorbar(image, ax=axes[3], label="VST z-score vs reference", fraction=0.03)
    _save(fig, path)


def score_distributions(scores: pd.DataFrame, timepoints: list[str], path: str | Path) -> None:
    """Scores of each group and timepoint, one panel per signature (rows) and method
    (columns), with the positivity threshold."""
    signatures = list(dict.fromkeys(scores["signature"]))
    methods = list(dict.fromkeys(scores["method"]))
    classes = _sample_classes(scores, timepoints)
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
                part = data[(data["group"] == group) & (data["timepoint"] == timepoint)]
                ax.boxplot([part["score"]], positions=[k], widths=0.6, showfliers=False)
                color = "grey" if part["reference"].all() else "tab:red"
                jitter = k + rng.uniform(-0.18, 0.18, len(part))
                ax.scatter(jitter, part["score"], s=6, color=color, alpha=0.6)
            if not data.empty:
                ax.axhline(data["threshold"].iloc[0], ls="--", color="black", lw=0.8)
            ax.set_xticks(range(len(classes)), [f"{g}\n{t}" for g, t in classes], fontsize=6)
            ax.tick_params(axis="y", labelsize=7)
            if i == 0:
                ax.set_title(method.replace("_", " "), fontsize=9)
            if j == 0:
                ax.set_ylabel(signature, fontsize=9)
    _save(fig, path)


def type1_vs_type2(contrast: pd.DataFrame, signature: str, method: str, path: str | Path) -> None:
    """Type I signature score against the IFN-gamma-biased one, both in reference SDs."""
    data = contrast[(contrast["signature"] == signature) & (contrast["method"] == method)]
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    if data.empty:
        ax.text(0.5, 0.5, "no IFN-gamma-biased signature scored", ha="center")
        ax.axis("off")
        _save(fig, path)
        return
    for k, ((group, timepoint), part) in enumerate(data.groupby(["group", "timepoint"])):
        label = f"{group} {timepoint}"
        ax.scatter(part["type1_z"], part["type2_z"], s=16, color=PALETTE(k % 10), label=label)
    low = float(np.nanmin(data[["type1_z", "type2_z"]].to_numpy()))
    high = float(np.nanmax(data[["type1_z", "type2_z"]].to_numpy()))
    ax.plot([low, high], [low, high], color="black", lw=0.8, ls=":", label="type I = type II")
    ax.set_xlabel(f"{signature} (reference SDs, {method.replace('_', ' ')})")
    ax.set_ylabel(f"{data['type2_signature'].iloc[0]} (reference SDs)")
    ax.legend(fontsize=7, frameon=False)
    _save(fig, path)
