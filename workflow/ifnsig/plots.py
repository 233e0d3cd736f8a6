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


def change_scatter(
    score_change: pd.DataFrame,
    measure_change: pd.DataFrame,
    signature: str,
    method: str,
    measures: list[str],
    timepoint: str,
    path: str | Path,
) -> None:
    """Change in IFN score vs change in each clinical measure, one panel per measure."""
    scores = score_change[
        (score_change["signature"] == signature)
        & (score_change["method"] == method)
        & (score_change["timepoint"] == timepoint)
    ]
    if not measures:
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, "no clinical measures declared", ha="center")
        ax.axis("off")
        _save(fig, path)
        return
    fig, axes = plt.subplots(1, len(measures), figsize=(3.6 * len(measures), 3.6), squeeze=False)
    for ax, measure in zip(axes[0], measures, strict=True):
        values = measure_change[
            (measure_change["measure"] == measure) & (measure_change["timepoint"] == timepoint)
        ]
        merged = scores.merge(values, on="subject", suffixes=("_score", "_measure")).dropna(
            subset=["change_score", "change_measure"]
        )
        ax.scatter(merged["change_score"], merged["change_measure"], s=16, color="tab:purple")
        if len(merged) >= 3:
            slope, intercept = np.polyfit(merged["change_score"], merged["change_measure"], 1)
            xs = np.linspace(merged["change_score"].min(), merged["change_score"].max(), 20)
            ax.plot(xs, intercept + slope * xs, color="black", lw=1)
        ax.set_xlabel(f"change in {signature}")
        ax.set_ylabel(f"change in {measure}")
        ax.set_title(f"{timepoint} vs baseline", fontsize=9)
    _save(fig, path)
