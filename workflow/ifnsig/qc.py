"""Quality control of blood RNA-seq cohorts: library metrics, identity, outliers, composition.

Whole-blood libraries fail in ways that can create or hide an interferon effect: globin-
dominated libraries, swapped or mislabelled samples, outliers and shifts in cell composition.
This module computes, per sample,

- library metrics (size, detected genes, share of the 50 most expressed genes, mitochondrial,
  globin and ribosomal-protein reads, size factor), flagged beyond a robust bound;
- identity checks: sex from XIST against Y-linked genes compared with the declared sex, and
  whether the samples of one subject look like one person (common expression-null
  polymorphisms, and genome-wide person-specific expression), naming the subject a sample
  matches instead;
- outliers by a robust distance on the first principal components of the VST values and by
  the correlation with the other samples;
- marker-gene scores of blood cell types, proxies of composition usable as covariates.

Every flag is one row with its evidence. Flags never remove a sample: samples are left out
only through ``exclude_samples`` in the config.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from anndata.io import read_elem

from ifnsig.errors import InputError
from ifnsig.io import atomic_output, read_sheet, require_file
from ifnsig.lazy import lazy_module
from ifnsig.stats import bh
from ifnsig.tables import LIST_SEPARATOR

# The gene-set coverage job reads the genes from here: scipy.stats on first use.
stats = lazy_module("scipy.stats")
log = logging.getLogger(__name__)

# Resources stay beside the source, like the shipped gene sets (see ifnsig.genesets).
SHIPPED_MARKERS: Path = (
    Path(__file__).resolve().parents[2] / "resources" / "markers" / "blood_cell_markers.tsv"
)

GLOBIN_GENES = ("HBA1", "HBA2", "HBB", "HBD", "HBG1", "HBG2", "HBE1", "HBZ", "HBM", "HBQ1")
FEMALE_GENES = ("XIST", "TSIX")
# Broadly expressed Y-linked genes with X homologues; RPS4Y1 and DDX3Y are the strongest in blood.
MALE_GENES = ("RPS4Y1", "DDX3Y", "KDM5D", "UTY", "EIF1AY", "USP9Y", "ZFY")
# Expressed in some people and absent in others, stable over time: common homozygous
# deletions (GSTM1, GSTT1, UGT2B17, LILRA3), a common null allele that triggers
# nonsense-mediated decay (ERAP2; Andres et al., PLoS Genet 2010), and HLA-DR haplotypes that
# carry HLA-DRB3, -DRB4 or -DRB5 or none of them.
TRAIT_GENES = ("GSTM1", "GSTT1", "UGT2B17", "ERAP2", "HLA-DRB3", "HLA-DRB4", "HLA-DRB5", "LILRA3")
# HGNC ribosomal protein genes (RPL10A, RPS4X, RPLP0, RPSA, ...), not the RPS6K kinases.
_RIBOSOMAL = re.compile(r"^RP[LS](?!6K)(\d+[A-Z]{0,2}\d?|P[0-2]|A)$")

FLAG_COLUMNS = [
    "sample",
    "subject",
    "check",
    "flag",
    "value",
    "threshold",
    "rule",
    "matched_subject",
    "matched_sample",
    "evidence",
]
METRICS = [
    "library_size",
    "detected_genes",
    "pct_top50",
    "pct_mito",
    "pct_globin",
    "pct_ribo",
    "size_factor",
]
# Side flagged and whether the robust bound is taken on the log scale (counts and ratios are
# skewed; percentages are not logged, as in scater's isOutlier for mitochondrial share).
METRIC_RULES = {
    "library_size": ("low", True),
    "detected_genes": ("low", True),
    "pct_top50": ("high", False),
    "pct_mito": ("high", False),
    "pct_globin": ("high", False),
    "pct_ribo": ("both", False),
    "size_factor": ("both", True),
}
FIXED_THRESHOLDS = {
    "min_library_size": ("library_size", "low"),
    "min_detected_genes": ("detected_genes", "low"),
    "max_pct_top50": ("pct_top50", "high"),
    "max_pct_mito": ("pct_mito", "high"),
    "max_pct_globin": ("pct_globin", "high"),
    "max_pct_ribo": ("pct_ribo", "high"),
}


@dataclass
class QCSettings:
    """Thresholds of the QC stage (the ``qc`` section of the config)."""

    metric_mads: float = 5.0
    thresholds: dict[str, float | None] = field(default_factory=dict)
    trait_min_gap: float = 2.0
    trait_min_log2: float = 4.0
    n_top_genes: int = 500
    n_pcs: int = 3
    outlier_support: float = 0.9
    outlier_alpha: float = 1e-6
    correlation_mads: float = 5.0
    #: Whether the samples are blood (the ``tissue`` setting): globin share measured.
    blood: bool = True

    @classmethod
    def from_config(cls, config: dict) -> QCSettings:
        from ifnsig.settings import is_blood

        section = dict(config.get("qc", {}))
        section.pop("markers", None)
        return cls(**section, blood=is_blood(config))


@dataclass
class QCResult:
    """Everything the QC stage writes."""

    samples: pd.DataFrame  # one row per sample: metrics, sex, pairing, outlier columns, flags
    bounds: pd.DataFrame  # one row per metric bound
    flags: pd.DataFrame  # one row per flag
    composition: pd.DataFrame  # one row per sample, a score column per cell type
    composition_coverage: pd.DataFrame
    composition_changes: pd.DataFrame
    # Pearson correlation of the VST values between the samples the heatmap shows (all of
    # them up to HEATMAP_SAMPLES), and their rows in ``samples``.
    correlation: np.ndarray
    pca: np.ndarray  # sample x component scores
    pca_variance_ratio: np.ndarray
    pca_genes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # vst columns
    traits: pd.DataFrame = field(default_factory=pd.DataFrame)  # informative trait genes
    heatmap_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


# --- inputs ---------------------------------------------------------------------------------


def read_layer(path: str | Path, layer: str) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """``obs``, ``var`` and one layer (or ``X``) of an ``.h5ad`` without the other layers."""
    with h5py.File(path, "r") as handle:
        obs = read_elem(handle["obs"])
        var = read_elem(handle["var"])
        matrix = np.asarray(read_elem(handle["X" if layer == "X" else f"layers/{layer}"]))
    return obs, var, matrix


def read_var(path: str | Path) -> pd.DataFrame:
    """The ``var`` table of an ``.h5ad`` alone (gene IDs and symbols)."""
    with h5py.File(path, "r") as handle:
        return read_elem(handle["var"])


def read_markers(path: str | Path) -> dict[str, list[str]]:
    """Cell type to marker symbols from a TSV with ``cell_type`` and ``symbol`` columns."""
    path = require_file(path, "cell-type marker table", "qc.markers")
    frame = read_sheet(path, ["cell_type", "symbol", "source"], id_columns=("cell_type", "symbol"))
    missing = [c for c in ["cell_type", "symbol"] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: column(s) {', '.join(missing)} missing; the marker table needs cell_type "
            "and symbol columns (one row per marker gene)."
        )
    empty = frame.index[(frame["cell_type"] == "") | (frame["symbol"] == "")]
    if len(empty):
        raise InputError(
            f"{path}: line {empty[0] + 2} has an empty cell_type or symbol; fill it in or "
            "remove the line."
        )
    bad = frame.index[~frame["cell_type"].str.fullmatch(r"[A-Za-z][A-Za-z0-9_]*")]
    if len(bad):
        raise InputError(
            f"{path}: line {bad[0] + 2}: cell_type '{frame['cell_type'].iat[bad[0]]}' must be "
            "letters, digits and '_' (it becomes a column name); rename it."
        )
    return {
        cell: list(dict.fromkeys(group["symbol"]))
        for cell, group in frame.groupby("cell_type", sort=False)
    }


def gene_classes(symbols: pd.Series | np.ndarray) -> dict[str, np.ndarray]:
    """Masks of mitochondrial, globin and ribosomal-protein genes among ``symbols``."""
    symbols = pd.Series(np.asarray(symbols, dtype=str))
    return {
        "mito": symbols.str.upper().str.startswith("MT-").to_numpy(),
        "globin": symbols.isin(GLOBIN_GENES).to_numpy(),
        "ribo": symbols.str.fullmatch(_RIBOSOMAL).to_numpy(),
    }


# --- library metrics ------------------------------------------------------------------------


def sample_metrics(
    counts: np.ndarray,
    symbols: pd.Series | np.ndarray,
    samples: pd.Index,
    size_factors: np.ndarray,
    blood: bool = True,
) -> pd.DataFrame:
    """Per-sample library metrics from raw counts of every gene (scanpy's QC metrics).

    ``blood=False`` leaves the globin share unmeasured (NaN): globin reads are a whole-blood
    matter (reticulocytes), so another tissue is neither measured nor flagged on them.

    Parameters
    ----------
    counts
        Samples x genes raw counts of all genes (before filtering), so that library size and
        detected genes describe the library as sequenced.
    symbols
        Gene symbols (columns of ``counts``).
    samples
        Sample names (rows of ``counts``).
    size_factors
        DESeq2 median-of-ratios size factors of the samples.

    Returns
    -------
    One row per sample; a percentage is NaN when no gene of its class is in the data (for
    example Ensembl IDs without an annotation).
    """
    import scanpy as sc

    classes = gene_classes(symbols)
    adata = ad.AnnData(
        X=counts,
        obs=pd.DataFrame(index=pd.Index(samples, dtype=str)),
        var=pd.DataFrame(classes, index=pd.RangeIndex(counts.shape[1]).astype(str)),
    )
    top = min(50, counts.shape[1])
    values, _ = sc.pp.calculate_qc_metrics(
        adata, qc_vars=list(classes), percent_top=[top], log1p=False, inplace=False
    )
    table = pd.DataFrame(
        {
            "sample": adata.obs_names,
            "library_size": values["total_counts"].to_numpy(dtype=float),
            "detected_genes": values["n_genes_by_counts"].to_numpy(dtype=int),
            "pct_top50": values[f"pct_counts_in_top_{top}_genes"].to_numpy(dtype=float),
        }
    )
    for name, mask in classes.items():
        column = f"pct_{name}"
        table[column] = values[f"pct_counts_{name}"].to_numpy(dtype=float)
        if name == "globin" and not blood:
            log.info("tissue is not blood: %s (a whole-blood measure) is not measured", column)
            table[column] = np.nan
        elif not mask.any():
            log.warning("no %s genes among the gene symbols: %s is not measured", name, column)
            table[column] = np.nan
    table["size_factor"] = np.asarray(size_factors, dtype=float)
    return table


def metric_bounds(
    metrics: pd.DataFrame, nmads: float, thresholds: dict[str, float | None]
) -> pd.DataFrame:
    """Robust and fixed bounds of each metric.

    The robust bound is the median plus or minus ``nmads`` median absolute deviations (scaled
    to the SD of a normal), on the log scale for counts and ratios, as scater's
    ``isOutlier`` (McCarthy et al., Bioinformatics 2017). For bulk cohorts of tens to hundreds
    of libraries 5 MADs rather than scater's 3 keep clean libraries unflagged (3 MADs flag
    about one clean library in 700 per metric and side even for normal data). The MAD is
    taken as at least 1% of the median, so that a metric on which the cohort is nearly
    uniform (detected genes saturate in deep libraries) does not flag a library a few
    percent off. Fixed bounds come from ``qc.thresholds``.
    """
    rows = []
    for metric, (side, logged) in METRIC_RULES.items():
        values = metrics[metric].to_numpy(dtype=float)
        values = values[np.isfinite(values) & ((values > 0) if logged else True)]
        if len(values) >= 3:
            scaled = np.log(values) if logged else values
            center = np.median(scaled)
            spread = stats.median_abs_deviation(scaled, scale="normal")
            spread = max(spread, 0.01 if logged else 0.01 * abs(center))
            if spread > 0:
                scale_word = "log " if logged else ""
                for bound_side in ["low", "high"] if side == "both" else [side]:
                    sign = -1 if bound_side == "low" else 1
                    bound = center + sign * nmads * spread
                    rows.append(
                        {
                            "metric": metric,
                            "side": bound_side,
                            "bound": float(np.exp(bound) if logged else bound),
                            "rule": f"median {'-' if sign < 0 else '+'} {nmads:g} MAD of "
                            f"{scale_word}values",
                        }
                    )
    for key, value in thresholds.items():
        if value is None:
            continue
        metric, side = FIXED_THRESHOLDS[key]
        rows.append(
            {"metric": metric, "side": side, "bound": float(value), "rule": f"qc.thresholds.{key}"}
        )
    return pd.DataFrame(rows, columns=["metric", "side", "bound", "rule"])


def metric_flags(metrics: pd.DataFrame, bounds: pd.DataFrame, subjects: pd.Series) -> pd.DataFrame:
    """One flag per sample and metric bound crossed."""
    rows = []
    for bound in bounds.itertuples():
        values = metrics.set_index("sample")[bound.metric]
        crossed = values < bound.bound if bound.side == "low" else values > bound.bound
        for sample, value in values[crossed.fillna(False)].items():
            word = "below" if bound.side == "low" else "above"
            rows.append(
                {
                    "sample": sample,
                    "subject": subjects[sample],
                    "check": "metrics",
                    "flag": f"{bound.metric}_{bound.side}",
                    "value": value,
                    "threshold": bound.bound,
                    "rule": bound.rule,
                    "evidence": f"{bound.metric} {value:.4g} is {word} {bound.bound:.4g} "
                    f"({bound.rule}; cohort median {values.median():.4g}).",
                }
            )
    return _flag_frame(rows)


# --- identity: sex and person-specific traits ------------------------------------------------


def log_expression(
    counts: np.ndarray, symbols: pd.Series | np.ndarray, size_factors: np.ndarray, genes
) -> pd.DataFrame:
    """log2(normalized count + 1) of the named ``genes`` present (samples x genes)."""
    symbols = np.asarray(symbols, dtype=str)
    present = [g for g in genes if g in set(symbols)]
    index = {s: i for i, s in reversed(list(enumerate(symbols)))}
    columns = [index[g] for g in present]
    normalized = counts[:, columns] / np.asarray(size_factors, dtype=float)[:, None]
    return pd.DataFrame(np.log2(normalized + 1.0), columns=present)


def sex_check(
    expression: pd.DataFrame, samples: pd.DataFrame, min_gap: float, min_log2: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sex from XIST/TSIX and the Y-linked genes, compared with the declared sex.

    Each side (mean log2 expression of the female genes, of the Y-linked genes) is split
    into on and off where the cohort shows both, as the trait genes are
    (:func:`trait_calls`: a gap of ``min_gap`` and an expressed median of ``min_log2``). A
    sample is male when the Y side is on and XIST off, female when the reverse; with both on
    (XXY, or RNA of two people) or both off the sex is unclear. A side whose genes are too
    weakly expressed to split cleanly is not used; with neither usable the check is
    skipped. In a cohort of one sex a side never splits; the samples are then called from
    the other side if it is expressed, or the check is skipped.

    Parameters
    ----------
    expression
        log2 normalized expression (samples x genes) of the sex genes found; rows align with
        ``samples``.
    samples
        Sample table with ``sample``, ``subject`` and optionally ``sex`` (female/male).
    min_gap, min_log2
        As in :func:`trait_calls`.
    """
    female = [g for g in FEMALE_GENES if g in expression.columns]
    male = [g for g in MALE_GENES if g in expression.columns]
    declared = (
        samples["sex"].astype(str).str.lower()
        if "sex" in samples.columns
        else pd.Series("", index=samples.index)
    )
    table = pd.DataFrame(
        {"sample": samples["sample"].to_numpy(), "declared_sex": declared.to_numpy()}
    )
    sides = pd.DataFrame(
        {
            "female_log2": expression[female].mean(axis=1) if female else np.nan,
            "male_log2": expression[male].mean(axis=1) if male else np.nan,
        },
        index=expression.index,
    )
    table["female_log2"] = sides["female_log2"].to_numpy()
    table["male_log2"] = sides["male_log2"].to_numpy()
    table["sex_score"] = table["male_log2"] - table["female_log2"]
    calls, info = trait_calls(sides.dropna(axis=1), min_gap, min_log2)
    if calls.empty:
        # One sex only: a side that is expressed throughout still calls every sample.
        level = sides.median()
        expressed = [c for c in sides.columns if level.get(c, 0) >= min_log2]
        calls = pd.DataFrame({c: np.ones(len(sides), bool) for c in expressed[:1]})
    if calls.empty:
        log.warning(
            "sex check skipped: neither XIST/TSIX nor the Y-linked genes (%s) are expressed "
            "clearly enough to call sex (give an annotation for Ensembl IDs)",
            ", ".join(MALE_GENES),
        )
        table["predicted_sex"] = ""
        return table, _flag_frame([])
    is_female = calls["female_log2"].to_numpy() if "female_log2" in calls else None
    is_male = calls["male_log2"].to_numpy() if "male_log2" in calls else None
    if is_female is None:
        is_female = ~is_male
    if is_male is None:
        is_male = ~is_female
    table["predicted_sex"] = np.select(
        [is_male & ~is_female, is_female & ~is_male], ["male", "female"], "unclear"
    )
    cuts = info.set_index("gene")["threshold_log2"] if not info.empty else pd.Series()
    used = ", ".join(
        f"{'XIST/TSIX' if side == 'female_log2' else 'Y genes'} on above {cuts[side]:.2f}"
        for side in calls.columns
        if side in cuts
    )
    rule = f"mean log2 XIST/TSIX and Y-linked genes split into on/off ({used or 'one sex'})"
    rows = []
    for row, subject in zip(table.itertuples(), samples["subject"], strict=True):
        evidence = (
            f"XIST/TSIX log2 {row.female_log2:.2f}, Y genes ({', '.join(male)}) log2 "
            f"{row.male_log2:.2f}"
        )
        if row.predicted_sex == "unclear":
            flag = "sex_unclear"
            text = f"{evidence}: both on or both off, sex unclear (XXY, a mixture, or low depth)."
        elif row.declared_sex in ("female", "male") and row.declared_sex != row.predicted_sex:
            flag = "sex_mismatch"
            text = f"declared {row.declared_sex}, but {evidence} say {row.predicted_sex}."
        else:
            continue
        rows.append(
            {
                "sample": row.sample,
                "subject": subject,
                "check": "sex",
                "flag": flag,
                "value": row.sex_score,
                "threshold": np.nan,
                "rule": rule,
                "evidence": text,
            }
        )
    return table, _flag_frame(rows)


def trait_calls(
    expression: pd.DataFrame, min_gap: float, min_log2: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Call each person-specific trait gene expressed or absent where the cohort shows both.

    A gene is informative when its sorted log2 values have a gap of at least ``min_gap``
    between an absent and an expressed group, and the expressed group's median is at least
    ``min_log2`` (so that a sequencing zero in an expressed sample is unlikely). Genes without
    such a gap (everyone expressing, or too few reads) are left out.

    Returns
    -------
    Calls (samples x informative genes, True = expressed) and one row per gene examined.
    """
    calls = {}
    rows = []
    for gene in expression.columns:
        values = expression[gene].to_numpy(dtype=float)
        ordered = np.sort(values)
        gaps = np.diff(ordered)
        if len(gaps) == 0:
            continue
        cut = int(np.argmax(gaps))
        threshold = (ordered[cut] + ordered[cut + 1]) / 2
        on = values > threshold
        informative = gaps[cut] >= min_gap and np.median(values[on]) >= min_log2
        rows.append(
            {
                "gene": gene,
                "gap_log2": float(gaps[cut]),
                "threshold_log2": float(threshold),
                "n_expressed": int(on.sum()),
                "n_absent": int((~on).sum()),
                "informative": bool(informative),
            }
        )
        if informative:
            calls[gene] = on
    info = pd.DataFrame(
        rows,
        columns=["gene", "gap_log2", "threshold_log2", "n_expressed", "n_absent", "informative"],
    )
    return pd.DataFrame(calls, index=expression.index), info


def trait_discordance(traits: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """Flag samples whose trait calls disagree with the other samples of their subject.

    ``traits`` holds one column per trait (calls as strings or booleans, "" or "unclear"
    ignored). Within a subject, the samples in the minority on a trait are flagged; with a
    tie (two samples) both are, since either may be the wrong one.
    """
    rows = []
    subjects = samples["subject"].to_numpy()
    names = samples["sample"].to_numpy()
    for subject in pd.unique(subjects):
        members = np.flatnonzero(subjects == subject)
        if len(members) < 2:
            continue
        notes: dict[int, list[str]] = {}
        for trait in traits.columns:
            values = traits[trait].iloc[members].astype(str)
            usable = values[~values.isin(["", "unclear", "nan"])]
            if usable.nunique() < 2:
                continue
            counts = usable.value_counts()
            majority = counts.index[0] if counts.iloc[0] > counts.iloc[1] else None
            for position, value in usable.items():
                if majority is None or value != majority:
                    i = int(position)
                    others = [names[j] for j in members if j != i and values.loc[j] != value]
                    notes.setdefault(i, []).append(
                        f"{trait} {_trait_word(value)} here but {_trait_word(_other(value))} in "
                        f"{', '.join(others)}"
                    )
        for i, texts in notes.items():
            rows.append(
                {
                    "sample": names[i],
                    "subject": subject,
                    "check": "pairing",
                    "flag": "trait_discordance",
                    "value": len(texts),
                    "threshold": 1,
                    "rule": "person-specific traits (predicted sex, expression-null genes) "
                    "differ within the subject",
                    "evidence": "; ".join(texts) + ".",
                }
            )
    return _flag_frame(rows)


def _trait_word(value: str) -> str:
    return {"True": "expressed", "False": "absent"}.get(value, value)


def _other(value: str) -> str:
    return {"True": "False", "False": "True", "female": "male", "male": "female"}.get(value, "")


# --- identity: genome-wide person-specific expression ---------------------------------------


def person_profiles(vst: np.ndarray, samples: pd.DataFrame) -> np.ndarray:
    """Centred unit rows whose products are the sample-sample person correlations.

    Each gene is centred within its group x timepoint cell (cells of one sample are centred
    on the gene's overall mean), which removes treatment and disease averages and leaves what
    is particular to a sample; then every gene is scaled to unit variance so that the
    thousands of genes with a small stable person effect outweigh the few with large
    time-varying effects (ISGs, sex genes). Samples of one person then correlate clearly
    above samples of different people. The correlations themselves are computed a block of
    samples at a time by :func:`pairing_check` (:func:`correlation_blocks`).
    """
    residual = np.array(vst, dtype=float)  # the one copy, changed in place from here on
    cells = samples["group"].astype(str) + "\t" + samples["timepoint"].astype(str)
    overall = residual.mean(axis=0)
    for cell in pd.unique(cells):
        rows = np.flatnonzero((cells == cell).to_numpy())
        residual[rows] -= residual[rows].mean(axis=0) if len(rows) > 1 else overall
    return unit_rows(residual, standardize_columns=True, copy=False)


def pairing_check(profiles: np.ndarray, samples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Do the samples of a subject look like one person, and whom does a sample look like?

    For each sample, ``own_r`` is its highest person correlation with another sample of its
    subject, ``best_other_r`` the highest with a sample of any other subject. The threshold
    is halfway between the typical (median) ``own_r`` and the typical ``best_other_r`` of the
    cohort, so it adapts to depth and tissue. A sample is flagged when ``own_r`` is below it
    (it does not look like its own subject); the subject it matches is named when
    ``best_other_r`` is above it. A subject with a single sample is flagged when that sample
    matches another subject (the same person under two IDs).

    ``profiles`` are the rows of :func:`person_profiles`; only the best match of each sample
    is kept, so memory grows with the number of samples, not with its square.
    """
    names = samples["sample"].to_numpy()
    subjects = samples["subject"].astype(str).to_numpy()
    n = len(names)
    own_best, other_best = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    own_r, other_r = np.full(n, -np.inf), np.full(n, -np.inf)
    for rows, r in correlation_blocks(profiles):
        local = np.arange(r.shape[0])
        r[local, rows.start + local] = -np.inf
        same = subjects[rows, None] == subjects[None, :]
        own = np.where(same, r, -np.inf)
        other = np.where(~same, r, -np.inf)
        own_best[rows] = own.argmax(axis=1)
        other_best[rows] = other.argmax(axis=1)
        own_r[rows] = own[local, own_best[rows]]
        other_r[rows] = other[local, other_best[rows]]
    has_own = np.isfinite(own_r)
    table = pd.DataFrame(
        {
            "sample": names,
            "own_r": np.where(has_own, own_r, np.nan),
            "own_best_sample": np.where(has_own, names[own_best], ""),
            "best_other_r": np.where(np.isfinite(other_r), other_r, np.nan),
            "best_other_sample": np.where(np.isfinite(other_r), names[other_best], ""),
            "best_other_subject": np.where(np.isfinite(other_r), subjects[other_best], ""),
        }
    )
    typical_own = np.nanmedian(table["own_r"]) if has_own.any() else np.nan
    typical_other = np.nanmedian(table["best_other_r"])
    if not has_own.any() or not typical_own > typical_other:
        log.warning(
            "pairing check skipped: %s",
            "no subject has two samples"
            if not has_own.any()
            else "samples of one subject correlate no more than samples of different subjects",
        )
        table["pairing_threshold"] = np.nan
        return table, _flag_frame([])
    threshold = (typical_own + typical_other) / 2
    table["pairing_threshold"] = threshold
    rule = (
        "person correlation with own subject below the midpoint of the typical same-subject "
        f"({typical_own:.3f}) and different-subject ({typical_other:.3f}) correlation"
    )
    rows = []
    for i, row in table.iterrows():
        matched = row["best_other_r"] >= threshold
        match_text = (
            f"it matches {row['best_other_sample']} of subject {row['best_other_subject']} "
            f"(r = {row['best_other_r']:.3f})"
            if matched
            else f"it matches no other subject either (best r = {row['best_other_r']:.3f})"
        )
        if has_own[i] and row["own_r"] < threshold:
            flag = "pairing_mismatch"
            value = row["own_r"]
            text = (
                f"best correlation with its own subject {subjects[i]} is r = {row['own_r']:.3f} "
                f"({row['own_best_sample']}), below {threshold:.3f}; {match_text}."
            )
        elif not has_own[i] and matched:
            flag = "matches_other_subject"
            value = row["best_other_r"]
            text = f"only sample of {subjects[i]}, yet {match_text}, above {threshold:.3f}."
        else:
            continue
        rows.append(
            {
                "sample": row["sample"],
                "subject": subjects[i],
                "check": "pairing",
                "flag": flag,
                "value": value,
                "threshold": threshold,
                "rule": rule,
                "matched_subject": row["best_other_subject"] if matched else "",
                "matched_sample": row["best_other_sample"] if matched else "",
                "evidence": text,
            }
        )
    return table, _flag_frame(rows)


# --- outliers --------------------------------------------------------------------------------


def pca_scores(
    vst: np.ndarray,
    symbols: pd.Series | np.ndarray,
    n_top: int,
    seed: int,
    n_comps: int = 10,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA (scanpy) of the ``n_top`` most variable VST genes, sex and trait genes left out.

    Returns the sample scores, the variance ratios and the columns of ``vst`` used.

    The sex genes and expression-null polymorphisms split any cohort into groups by
    genotype; kept, they would dominate the first components and make the smaller group look
    like outliers. They are checked by the identity checks instead.
    """
    import scanpy as sc

    keep = np.flatnonzero(
        ~np.isin(np.asarray(symbols, dtype=str), FEMALE_GENES + MALE_GENES + TRAIT_GENES)
    )
    # The variances of all genes, then those kept: no copy of the kept columns.
    values = np.asarray(vst, dtype=float)
    top = np.argsort(values.var(axis=0)[keep])[::-1][: min(n_top, len(keep))]
    sub = ad.AnnData(X=values[:, keep[top]])
    n_comps = max(1, min(n_comps, sub.n_obs - 1, sub.n_vars - 1))
    sc.pp.pca(sub, n_comps=n_comps, random_state=seed)
    return (
        np.asarray(sub.obsm["X_pca"]),
        np.asarray(sub.uns["pca"]["variance_ratio"]),
        keep[top],
    )


def pca_outliers(
    scores: np.ndarray,
    samples: pd.DataFrame,
    n_pcs: int,
    support: float,
    alpha: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Robust Mahalanobis distance on the first principal components.

    Location and covariance come from the minimum covariance determinant estimator
    (Rousseeuw & Van Driessen, Technometrics 1999; scikit-learn ``MinCovDet``) fitted on the
    ``support`` fraction of samples, so a few outliers cannot inflate the covariance that
    would hide them. With ``support`` 0.9 up to a tenth of the samples may be outliers, while
    groups larger than that (patients and controls, timepoints) stay inside the fit. A sample
    is flagged when its squared distance exceeds the chi-square quantile ``1 - alpha`` with as
    many degrees of freedom as components (Rousseeuw & van Zomeren, JASA 1990). A cohort is
    a mixture (patients and controls, IFN-high and -low, timepoints), so its distances have
    heavier tails than the chi-square; the default ``alpha`` of 1e-6, about a five-SD event
    like the 5-MAD rules of the other checks, keeps that structure unflagged while a failed
    library lies far beyond. At most one component per five samples is used so that the
    covariance is estimable.
    """
    from sklearn.covariance import MinCovDet

    n = scores.shape[0]
    k = min(n_pcs, scores.shape[1], n // 5)
    table = pd.DataFrame({"sample": samples["sample"].to_numpy()})
    if k < 1:
        log.warning("PCA outlier check skipped: %d samples are too few (at least 5 needed)", n)
        table["pca_distance2"] = np.nan
        table["pca_cutoff"] = np.nan
        return table, _flag_frame([])
    fit = MinCovDet(support_fraction=support, random_state=seed).fit(scores[:, :k])
    distance = fit.mahalanobis(scores[:, :k])
    cutoff = float(stats.chi2.ppf(1 - alpha, df=k))
    table["pca_distance2"] = distance
    table["pca_cutoff"] = cutoff
    rule = (
        f"squared robust (MCD, support {support:g}) Mahalanobis distance on PC1-{k} of VST "
        f"above the chi-square {1 - alpha:g} quantile ({k} df)"
    )
    rows = [
        {
            "sample": table["sample"].iat[i],
            "subject": samples["subject"].iat[i],
            "check": "outlier",
            "flag": "outlier_pca",
            "value": distance[i],
            "threshold": cutoff,
            "rule": rule,
            "evidence": f"squared robust distance {distance[i]:.1f} on PC1-{k} above {cutoff:.1f}"
            f" (cohort median {np.median(distance):.1f}).",
        }
        for i in np.flatnonzero(distance > cutoff)
    ]
    return table, _flag_frame(rows)


def correlation_outliers(
    unit: np.ndarray, samples: pd.DataFrame, nmads: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples that correlate poorly with all others.

    Each sample's median Pearson correlation with the other samples (VST values) is turned
    into a distance ``log(1 - r)``, which is close to normal where ``r`` is near 1, and
    flagged when more than ``nmads`` robust SDs (MAD) above the cohort median. The MAD is
    taken as at least 0.1 (a 10% change of ``1 - r``): in a homogeneous cohort the MAD is
    tiny and the strongest biology (a very IFN-high sample) would otherwise look like a
    failed library, which differs from the others several-fold.

    ``unit`` holds the samples' centred unit rows (:func:`unit_rows` of the VST values); the
    correlations are computed a block of samples at a time (:func:`correlation_blocks`).
    """
    median_r = np.empty(len(unit))
    for rows, r in correlation_blocks(unit):
        local = np.arange(r.shape[0])
        r[local, rows.start + local] = np.nan
        median_r[rows] = np.nanmedian(r, axis=1)
    distance = np.log(np.clip(1 - median_r, 1e-12, None))
    spread = max(stats.median_abs_deviation(distance, scale="normal"), 0.1)
    z = (distance - np.median(distance)) / spread
    table = pd.DataFrame(
        {"sample": samples["sample"].to_numpy(), "median_r": median_r, "correlation_z": z}
    )
    rule = (
        f"log(1 - median correlation with the other samples) above median + {nmads:g} MAD "
        "(MAD at least 0.1)"
    )
    rows = [
        {
            "sample": table["sample"].iat[i],
            "subject": samples["subject"].iat[i],
            "check": "outlier",
            "flag": "outlier_correlation",
            "value": z[i],
            "threshold": nmads,
            "rule": rule,
            "evidence": f"median correlation with the other samples {median_r[i]:.4f} (cohort "
            f"median {np.median(median_r):.4f}), {z[i]:.1f} robust SD from the cohort.",
        }
        for i in np.flatnonzero(z > nmads)
    ]
    return table, _flag_frame(rows)


# --- composition -----------------------------------------------------------------------------


def composition_column(cell_type: str) -> str:
    """Column of ``composition.tsv`` holding a cell type's score."""
    return f"{cell_type}_score"


def composition_columns(config: dict) -> set[str]:
    """The composition score columns the QC stage can write, from the marker table (none for
    a tissue other than blood without a table of its own)."""
    from ifnsig.settings import marker_file

    markers = marker_file(config)
    return {composition_column(cell) for cell in read_markers(markers)} if markers else set()


def composition_scores(
    vst: np.ndarray, symbols: pd.Series | np.ndarray, markers: dict[str, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-sample score of each cell type: mean log2 deviation of its markers from the cohort.

    Each marker's VST values are centred on the cohort mean and the markers of a cell type are
    averaged, so a score of 0.5 means the markers sit on average 2^0.5-fold above the typical
    sample. Scores are proxies of relative abundance, not fractions. Cell types none of whose
    markers are in the data get no column.
    """
    symbols = np.asarray(symbols, dtype=str)
    index = {s: i for i, s in reversed(list(enumerate(symbols)))}
    scores = {}
    rows = []
    for cell, genes in markers.items():
        found = [g for g in genes if g in index]
        rows.append(
            {
                "cell_type": cell,
                "n_markers": len(genes),
                "n_found": len(found),
                "found": LIST_SEPARATOR.join(found),
                "missing": LIST_SEPARATOR.join(g for g in genes if g not in index),
            }
        )
        if not found:
            log.warning("composition: no marker of %s in the data; no score", cell)
            continue
        values = np.asarray(vst, dtype=float)[:, [index[g] for g in found]]
        scores[composition_column(cell)] = (values - values.mean(axis=0)).mean(axis=1)
    coverage = pd.DataFrame(rows, columns=["cell_type", "n_markers", "n_found", "found", "missing"])
    return pd.DataFrame(scores), coverage


def composition_changes(
    composition: pd.DataFrame,
    samples: pd.DataFrame,
    timepoints: list[str],
    patient_group: str,
) -> pd.DataFrame:
    """Change of each cell-type score from baseline in patients (Wilcoxon signed-rank, BH).

    One row per cell type and follow-up timepoint, with the number of paired patients, the
    median change and the two-sided signed-rank p-value; q-values are Benjamini-Hochberg over
    all rows.
    """
    columns = [c for c in composition.columns if c.endswith("_score")]
    frame = composition.assign(
        subject=samples["subject"].astype(str).to_numpy(),
        group=samples["group"].astype(str).to_numpy(),
        timepoint=samples["timepoint"].astype(str).to_numpy(),
    )
    patients = frame[frame["group"] == patient_group]
    baseline = patients[patients["timepoint"] == timepoints[0]].set_index("subject")
    rows = []
    for column in columns:
        for timepoint in timepoints[1:]:
            follow = patients[patients["timepoint"] == timepoint].set_index("subject")
            paired = follow[[column]].join(baseline[[column]], rsuffix="_base", how="inner")
            change = (paired[column] - paired[f"{column}_base"]).dropna()
            pvalue, statistic = np.nan, np.nan
            if len(change) >= 2 and (change != 0).any():
                test = stats.wilcoxon(change)
                pvalue, statistic = float(test.pvalue), float(test.statistic)
            rows.append(
                {
                    "cell_type": column.removesuffix("_score"),
                    "timepoint": timepoint,
                    "n": len(change),
                    "median_change": float(change.median()) if len(change) else np.nan,
                    "mean_change": float(change.mean()) if len(change) else np.nan,
                    "statistic": statistic,
                    "pvalue": pvalue,
                }
            )
    table = pd.DataFrame(
        rows,
        columns=[
            "cell_type",
            "timepoint",
            "n",
            "median_change",
            "mean_change",
            "statistic",
            "pvalue",
        ],
    )
    table["fdr"] = bh(table["pvalue"])
    return table


# --- the whole stage -------------------------------------------------------------------------


def run_qc(
    counts: np.ndarray,
    count_symbols: pd.Series | np.ndarray,
    vst: np.ndarray,
    vst_symbols: pd.Series | np.ndarray,
    samples: pd.DataFrame,
    size_factors: np.ndarray,
    markers: dict[str, list[str]],
    settings: QCSettings,
    timepoints: list[str],
    patient_group: str,
    seed: int,
) -> QCResult:
    """Every QC check on one cohort.

    Parameters
    ----------
    counts, count_symbols
        Raw counts (samples x all genes, before filtering) and their symbols.
    vst, vst_symbols
        VST values (samples x filtered genes) and their symbols.
    samples
        Sample table (``sample``, ``subject``, ``group``, ``timepoint``, optional ``sex``),
        rows in the order of the matrices.
    size_factors
        DESeq2 size factors of the samples.
    markers
        Cell type to marker symbols (:func:`read_markers`).
    settings
        Thresholds.
    timepoints, patient_group
        Ordered timepoints (baseline first) and the patient value of ``group``, for the
        composition change on treatment.
    seed
        Seed of the PCA and the robust covariance fit.
    """
    samples = samples.reset_index(drop=True)
    subjects = samples.set_index("sample")["subject"].astype(str)
    metrics = sample_metrics(
        counts, count_symbols, pd.Index(samples["sample"]), size_factors, blood=settings.blood
    )
    bounds = metric_bounds(metrics, settings.metric_mads, settings.thresholds)
    flags = [metric_flags(metrics, bounds, subjects)]

    identity_genes = FEMALE_GENES + MALE_GENES + TRAIT_GENES
    expression = log_expression(counts, count_symbols, size_factors, identity_genes)
    sex_table, sex_flags = sex_check(
        expression, samples, settings.trait_min_gap, settings.trait_min_log2
    )
    flags.append(sex_flags)
    trait_genes = [g for g in TRAIT_GENES if g in expression.columns]
    calls, trait_info = trait_calls(
        expression[trait_genes], settings.trait_min_gap, settings.trait_min_log2
    )
    traits = calls.astype(str)
    if sex_table["predicted_sex"].astype(bool).any():
        traits.insert(0, "sex", sex_table["predicted_sex"].to_numpy())
    flags.append(trait_discordance(traits, samples))

    pairing_table, pairing_flags = pairing_check(person_profiles(vst, samples), samples)
    flags.append(pairing_flags)

    scores, variance_ratio, pca_genes = pca_scores(vst, vst_symbols, settings.n_top_genes, seed)
    pca_table, pca_flags = pca_outliers(
        scores, samples, settings.n_pcs, settings.outlier_support, settings.outlier_alpha, seed
    )
    unit = unit_rows(vst)
    corr_table, corr_flags = correlation_outliers(unit, samples, settings.correlation_mads)
    flags += [pca_flags, corr_flags]

    composition, coverage = composition_scores(vst, vst_symbols, markers)
    changes = composition_changes(composition, samples, timepoints, patient_group)
    composition.insert(0, "sample", samples["sample"].to_numpy())

    all_flags = pd.concat([f for f in flags if not f.empty] or [_flag_frame([])])
    all_flags = all_flags.reset_index(drop=True)
    per_sample = metrics
    for table in [sex_table.drop(columns="declared_sex"), pairing_table, pca_table, corr_table]:
        per_sample = per_sample.merge(table, on="sample", how="left")
    if not traits.empty:
        trait_columns = calls.rename(columns=lambda g: f"has_{g}").astype(bool)
        per_sample = pd.concat([per_sample, trait_columns.reset_index(drop=True)], axis=1)
    listed = all_flags.groupby("sample")["flag"].agg(
        lambda f: LIST_SEPARATOR.join(dict.fromkeys(f))
    )
    per_sample["n_flags"] = per_sample["sample"].map(all_flags["sample"].value_counts())
    per_sample["n_flags"] = per_sample["n_flags"].fillna(0).astype(int)
    per_sample["flags"] = per_sample["sample"].map(listed).fillna("")
    per_sample.insert(1, "subject", samples["subject"].astype(str).to_numpy())
    shown = heatmap_rows(samples["sample"], set(all_flags["sample"]), seed)
    log.info(
        "QC: %d flags on %d of %d samples", len(all_flags), (per_sample["n_flags"] > 0).sum(),
        len(per_sample),
    )  # fmt: skip
    return QCResult(
        samples=per_sample,
        bounds=bounds,
        flags=all_flags,
        composition=composition,
        composition_coverage=coverage,
        composition_changes=changes,
        correlation=_shown_correlation(unit, shown),
        pca=scores,
        pca_variance_ratio=variance_ratio,
        pca_genes=pca_genes,
        traits=trait_info,
        heatmap_rows=shown,
    )


def flag_status(result: QCResult) -> pd.DataFrame:
    """Per sample, one column per check: ``ok`` or the flags raised (for colouring plots)."""
    status = pd.DataFrame({"sample": result.samples["sample"]})
    for check in ["metrics", "sex", "pairing", "outlier"]:
        flags = result.flags[result.flags["check"] == check]
        listed = flags.groupby("sample")["flag"].agg(lambda f: ";".join(sorted(set(f))))
        status[f"qc_{check}"] = status["sample"].map(listed).fillna("ok")
    return status


def qc_anndata(
    result: QCResult, samples: pd.DataFrame, vst: np.ndarray, var: pd.DataFrame
) -> ad.AnnData:
    """The QC view of the cohort: X = the VST values of the genes the PCA used, obs = sheet,
    metrics, composition and flag status per sample, ``obsm["X_pca"]`` the PCA, e.g.
    ``sc.pl.pca(ad.read_h5ad("results/qc/qc.h5ad"), color="qc_pairing")``.
    """
    from ifnsig.data import describe

    status = flag_status(result)
    per_sample = samples.reset_index(drop=True).drop(columns="sample")
    obs = pd.concat(
        [
            per_sample,
            result.samples.drop(columns=["sample", "subject", "size_factor"]),
            result.composition.drop(columns="sample"),
            status.drop(columns="sample"),
        ],
        axis=1,
    ).set_index(samples.index)
    for column in obs.columns:
        if obs[column].dtype == object:
            obs[column] = obs[column].astype(str)
    genes = var.iloc[result.pca_genes].copy()
    genes.index = genes.index.astype(str).rename(None)
    summary = ad.AnnData(
        X=np.asarray(vst)[:, result.pca_genes].astype(np.float32), obs=obs, var=genes
    )
    summary.obsm["X_pca"] = result.pca
    summary.uns["pca"] = {"variance_ratio": result.pca_variance_ratio}
    summary.uns["description"] = {
        **describe(summary),
        "X": "VST values of the most variable genes the QC PCA used (qc.n_top_genes)",
    }
    return summary


def sex_table(result: QCResult, samples: pd.DataFrame) -> pd.DataFrame:
    """The sex-check columns of every sample beside its declared sex (empty if undeclared)."""
    declared = samples["sex"].astype(str).to_numpy() if "sex" in samples else ""
    return result.samples.assign(declared_sex=declared)


# --- MultiQC custom content ------------------------------------------------------------------


def _mqc_tsv(path: str | Path, header: dict, table: pd.DataFrame) -> None:
    """A custom-content TSV: the section configuration as ``#`` YAML lines, then the table."""
    import yaml

    text = "".join(f"# {line}\n" for line in yaml.safe_dump(header, sort_keys=False).splitlines())
    # Counts stay integers and other values keep 10 significant digits: a library of
    # 20,000,001 reads is written as such, not as 2e+07.
    body = table.to_csv(sep="\t", index=False, float_format="%.10g", lineterminator="\n")
    with atomic_output(path) as partial:
        partial.write_text(text + body)


def _mqc_headers(columns: dict[str, tuple]) -> dict[str, dict]:
    headers = {}
    for key, (title, description, scale, top, fmt) in columns.items():
        entry = {"title": title, "description": description, "scale": scale}
        if top is not None:
            entry.update(min=0, max=top, suffix="%")
        if fmt is not None:
            entry["format"] = fmt
        headers[key] = entry
    return headers


def multiqc_flags(flags: pd.DataFrame, n_samples: int) -> dict:
    """The MultiQC section of the QC flags: a table, or a sentence when none was raised."""
    flagged = {}
    for sample, group in flags.groupby("sample", sort=False):
        flagged[str(sample)] = {
            "subject": str(group["subject"].iat[0]),
            "flags": LIST_SEPARATOR.join(group["flag"]),
            "evidence": " ".join(group["evidence"]),
        }
    document = {
        "id": "ifnsig_qc_flags",
        "section_name": "ifnsig QC flags",
        "description": "Samples flagged by the ifnsig identity, outlier and metric checks, "
        "with the evidence; flags never remove a sample (see exclude_samples).",
    }
    if flagged:
        document.update(
            plot_type="table",
            pconfig={"id": "ifnsig_qc_flags_table", "title": "ifnsig QC flags"},
            data=flagged,
        )
    else:
        document.update(
            plot_type="html",
            data=f"<p>No sample was flagged: all {n_samples} samples passed every check.</p>",
        )
    return document


def write_multiqc(
    result: QCResult,
    metrics_tsv: str | Path,
    flags_yaml: str | Path,
    identity_tsv: str | Path,
    composition_tsv: str | Path,
    samples: pd.DataFrame,
) -> None:
    """MultiQC custom-content files: general statistics, the identity checks (sex and
    pairing), the cell-type composition scores and the flags.

    Files ending in ``_mqc.tsv``/``_mqc.yaml`` with the section configuration in a YAML
    header are picked up by any MultiQC run (MultiQC docs, "Custom content"), so these
    columns appear next to the alignment QC of the same samples. Counts are shown in full
    (``format``), not as MultiQC's default one decimal of thousands or millions; with no
    flagged sample the flags section says so (an empty table would be "No data found").
    """
    import yaml

    counts = "{:,.0f}"
    columns = {
        "library_size": ("Library size", "counted reads", "Blues", None, counts),
        "detected_genes": (
            "Detected genes",
            "genes with at least one read",
            "Greens",
            None,
            counts,
        ),
        "pct_top50": ("% top 50", "% of reads in the 50 most expressed genes", "OrRd", 100, None),
        "pct_mito": ("% mito", "% of reads in mitochondrial genes", "OrRd", 100, None),
        "pct_globin": ("% globin", "% of reads in globin genes", "OrRd", 100, None),
        "pct_ribo": ("% ribo", "% of reads in ribosomal-protein genes", "Purples", 100, None),
        "size_factor": (
            "Size factor",
            "DESeq2 median-of-ratios size factor",
            "RdBu",
            None,
            "{:,.3f}",
        ),
        "n_flags": ("QC flags", "number of ifnsig QC flags", "Reds", None, counts),
    }
    header = {
        "id": "ifnsig_qc",
        "section_name": "ifnsig sample QC",
        "description": "Library metrics from the count matrix (ifnsig QC stage).",
        "plot_type": "generalstats",
        "pconfig": [{key: value} for key, value in _mqc_headers(columns).items()],
    }
    table = result.samples[["sample", *columns]].rename(columns={"sample": "Sample"})
    for column in ["library_size", "detected_genes", "n_flags"]:
        table[column] = table[column].round().astype("int64")
    _mqc_tsv(metrics_tsv, header, table)

    identity = result.samples[["sample", "subject"]].copy()
    declared = samples["sex"].astype(str).to_numpy() if "sex" in samples else ""
    identity["declared_sex"] = declared
    identity["declared_sex"] = identity["declared_sex"].replace({"nan": "", "None": ""})
    wanted = [
        ("predicted_sex", "Predicted sex", "from XIST/TSIX against Y-linked genes"),
        ("sex_score", "Sex score", "mean log2 Y-linked genes minus XIST/TSIX (> 0: male)"),
        (
            "own_r",
            "Own-subject r",
            "correlation of person-specific genes with the subject's other samples",
        ),
        ("best_other_subject", "Closest other subject", "subject whose samples match best"),
        ("best_other_r", "Closest other r", "correlation with that subject's best sample"),
    ]
    kept = [(c, t, d) for c, t, d in wanted if c in result.samples.columns]
    for column, _, _ in kept:
        identity[column] = result.samples[column].to_numpy()
    identity = identity.rename(columns={"sample": "Sample"})
    identity_headers = {
        "subject": {"title": "Subject", "description": "subject of the sample sheet"},
        "declared_sex": {"title": "Declared sex", "description": "sex column of the sample sheet"},
    }
    for column, title, description in kept:
        identity_headers[column] = {"title": title, "description": description}
        if pd.api.types.is_float_dtype(identity[column]):
            identity_headers[column]["format"] = "{:,.3f}"
    identity = identity.fillna("")
    _mqc_tsv(
        identity_tsv,
        {
            "id": "ifnsig_identity",
            "section_name": "ifnsig identity checks",
            "description": "Sex predicted from expression against the declared sex, and "
            "whether each sample matches its own subject's other samples (ifnsig QC stage).",
            "plot_type": "table",
            "pconfig": {"id": "ifnsig_identity_table", "title": "ifnsig identity checks"},
            "headers": identity_headers,
        },
        identity,
    )

    scores = [c for c in result.composition.columns if c.endswith("_score")]
    composition = result.composition[["sample", *scores]].rename(columns={"sample": "Sample"})
    composition_headers = {
        c: {
            "title": c.removesuffix("_score").replace("_", " "),
            "description": f"{c.removesuffix('_score')} markers: mean log2 from cohort mean",
            "format": "{:,.2f}",
            "scale": "RdBu",
        }
        for c in scores
    }
    _mqc_tsv(
        composition_tsv,
        {
            "id": "ifnsig_composition",
            "section_name": "ifnsig cell-type composition",
            "description": "Blood cell-type marker scores per sample (ifnsig QC stage); a "
            "change on treatment can move the IFN score without any change in signalling.",
            "plot_type": "table",
            "pconfig": {"id": "ifnsig_composition_table", "title": "ifnsig cell-type scores"},
            "headers": composition_headers,
        },
        composition if scores else composition.assign(no_marker_found=""),
    )

    document = multiqc_flags(result.flags, len(result.samples))
    with atomic_output(flags_yaml) as partial:
        partial.write_text(yaml.safe_dump(document, sort_keys=False))


# --- helpers ---------------------------------------------------------------------------------


# Rows of a sample x sample correlation computed at a time. At 10,000 samples the whole
# matrix is 800 MB and the checks' masked copies of it several times that; a block of 1,000
# rows is 80 MB. Up to 1,000 samples (the demo) the block is the whole matrix.
CORRELATION_BLOCK = 1000
# The heatmap shows at most this many samples (every flagged one among them): a 12-inch
# figure has fewer pixels than that, and its clustering grows with the square.
HEATMAP_SAMPLES = 1500


def unit_rows(
    matrix: np.ndarray, standardize_columns: bool = False, copy: bool = True
) -> np.ndarray:
    """Rows centred and scaled to unit norm: their products are Pearson correlations.

    Columns are optionally scaled to unit variance first; a constant row is all NaN. One
    copy of ``matrix`` is made and changed in place (the same values as new arrays); with
    ``copy=False`` a float64 ``matrix`` is itself changed and returned.
    """
    values = np.array(matrix, dtype=float) if copy else np.asarray(matrix, dtype=float)
    if standardize_columns:
        spread = values.std(axis=0)
        if not (spread > 0).all():
            values = values[:, spread > 0]
            spread = spread[spread > 0]
        values /= spread
    values -= values.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(values, axis=1)
    norms[norms == 0] = np.nan
    values /= norms[:, None]
    return values


def correlation_blocks(unit: np.ndarray, block: int | None = None):
    """Yield ``(rows, r)``: the correlations of a slice of samples with every sample.

    ``r`` is a fresh array the caller may change. With one block (at most
    :data:`CORRELATION_BLOCK` samples) it is the whole matrix, computed in one product.
    """
    block = block or CORRELATION_BLOCK
    for start in range(0, len(unit), block):
        rows = slice(start, min(len(unit), start + block))
        yield rows, np.clip(unit[rows] @ unit.T, -1.0, 1.0)


def _shown_correlation(unit: np.ndarray, shown: np.ndarray) -> np.ndarray:
    # One operand twice: numpy's symmetric product, as for the whole matrix.
    rows = unit[shown]
    return np.clip(rows @ rows.T, -1.0, 1.0)


def heatmap_rows(samples: pd.Series, flagged: set[str], seed: int) -> np.ndarray:
    """Rows of the samples the correlation heatmap shows, in cohort order.

    Every sample up to :data:`HEATMAP_SAMPLES`; beyond it the flagged samples (the first
    ones, if there are more) and a seeded random draw of the others.
    """
    n = len(samples)
    if n <= HEATMAP_SAMPLES:
        return np.arange(n)
    is_flagged = samples.astype(str).isin(flagged).to_numpy()
    chosen = np.flatnonzero(is_flagged)[:HEATMAP_SAMPLES]
    others = np.flatnonzero(~is_flagged)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(others, HEATMAP_SAMPLES - len(chosen), replace=False)
    return np.sort(np.concatenate([chosen, drawn]))


def _flag_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=FLAG_COLUMNS)
    for column in ["matched_subject", "matched_sample"]:
        frame[column] = frame[column].fillna("")
    return frame
