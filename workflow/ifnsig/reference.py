"""A frozen IFN-score reference: new samples scored month after month as the run scored its own.

Every score of a run depends on the whole cohort: the size factors on all samples' geometric
means, the VST on a dispersion trend fitted to all samples, fold changes and z-scores on the
run's reference samples, the cut-offs on their scores. A :class:`ScoreReference` keeps all of
that from one run, so that a new sample, alone or in a batch, is normalized and scored
exactly as the run would have (DESeq2's frozen transformations: ``estimateSizeFactors`` with
``geoMeans`` and ``varianceStabilizingTransformation(newdata, blind=FALSE)`` after copying
``dispersionFunction``; see :func:`ifnsig.data.size_factors_from` for the one difference).

The reference is a folder of small, human-readable, byte-reproducible files:

``reference.json``
    format, versions (ifnsig, pydeseq2, numpy, gseapy), the VST dispersion function, the
    depth scale, positivity settings, methods, seed, the gene sets as listed and the
    checksums of the gene-set files.
``genes.tsv``
    one row per gene of the run, in its order: ``gene_id``, ``symbol``, ``log_geo_mean``
    (empty for genes left out of the size factors), ``normalized_median``, ``vst_mean``,
    ``vst_sd``.
``gene_sets.tsv``
    ``signature``, ``role`` (``gene`` or ``score_genes_control``), ``gene_id``, ``symbol``.
``cutoffs.tsv``
    one row per signature and method: the cut-off, the rule that made it, the reference
    mean and SD of the score, and its attainable range.
``samples.tsv``
    the reference samples: ``sample``, ``subject``, ``group``, ``timepoint``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from ifnsig import data, positivity, scores
from ifnsig.errors import InputError

FORMAT = 1
FILES = {
    "meta": "reference.json",
    "genes": "genes.tsv",
    "gene_sets": "gene_sets.tsv",
    "cutoffs": "cutoffs.tsv",
    "samples": "samples.tsv",
}
GENE_COLUMNS = [
    "gene_id", "symbol", "log_geo_mean", "normalized_median", "vst_mean", "vst_sd",
]  # fmt: skip
CUTOFF_COLUMNS = [
    "signature", "method", "n_genes", "threshold", "rule", "reference_mean", "reference_sd",
    "attainable_min", "attainable_max",
]  # fmt: skip
VERSIONED = ["ifnsig", "pydeseq2", "numpy", "gseapy"]


class ReferenceMismatchWarning(UserWarning):
    """New samples differ from the reference in a way that may move their scores a little."""


@dataclass
class ScoreReference:
    """Everything needed to normalize and score new samples as one run did.

    Attributes
    ----------
    genes
        One row per gene of the run (its order): columns of :data:`GENE_COLUMNS`;
        ``log_geo_mean`` is NaN for genes left out of the size factors.
    dispersion
        The parametric VST trend, DESeq2's names: ``asymptDisp`` (a0), ``extraPois`` (a1).
    depth_scale
        Geometric mean of the reference samples' size factors.
    gene_sets
        Signature -> gene IDs of its matched genes, in scoring order.
    controls
        Signature -> gene IDs of its score_genes control genes (only with that method).
    cutoffs
        One row per signature and method, columns of :data:`CUTOFF_COLUMNS`.
    samples
        The reference samples (sample, subject, group, timepoint).
    meta
        Versions, settings, listed gene sets and gene-set file checksums.
    """

    genes: pd.DataFrame
    dispersion: dict[str, float]
    depth_scale: float
    gene_sets: dict[str, list[str]]
    cutoffs: pd.DataFrame
    samples: pd.DataFrame
    meta: dict = field(default_factory=dict)
    controls: dict[str, list[str]] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return list(self.meta["methods"])

    def statistics(self, rows: np.ndarray | None = None) -> scores.ReferenceStatistics:
        """Per-gene statistics of the reference samples (of the genes at ``rows``)."""
        genes = self.genes if rows is None else self.genes.iloc[rows]
        return scores.ReferenceStatistics(
            depth_scale=self.depth_scale,
            normalized_median=genes["normalized_median"].to_numpy(dtype=float),
            vst_mean=genes["vst_mean"].to_numpy(dtype=float),
            vst_sd=genes["vst_sd"].to_numpy(dtype=float),
            n_reference=len(self.samples),
        )


def file_checksums(paths) -> list[dict[str, str]]:
    """File name and SHA-256 of each file (gene-set GMTs, alias table)."""
    return [
        {"file": Path(p).name, "sha256": hashlib.sha256(Path(p).read_bytes()).hexdigest()}
        for p in paths
    ]


def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = ""
    return out


def build_reference(
    adata: ad.AnnData,
    gene_sets: dict[str, list[str]],
    table: pd.DataFrame,
    reference: np.ndarray,
    reference_group: str = "controls",
    seed: int = 0,
    settings: dict | None = None,
    listed_sets: dict[str, list[str]] | None = None,
    gene_set_files=(),
) -> ScoreReference:
    """Freeze a run: its normalization, reference statistics and cut-offs.

    Parameters
    ----------
    adata
        The normalized cohort of the run (layers ``counts``, ``normalized``, ``vst``; obs
        ``size_factor``; uns ``vst_trend_coeffs``), as :func:`ifnsig.data.normalize` leaves it.
    gene_sets
        Signature -> matched symbols, as given to :func:`ifnsig.scores.score_samples`.
    table
        The scores table of the run (:func:`ifnsig.scores.score_samples`), whose cut-offs and
        rules are frozen.
    reference
        Mask of the run's reference samples.
    reference_group, seed
        As given to :func:`ifnsig.scores.score_samples`.
    settings
        Positivity settings to record (e.g. ``positivity_sd``, ``rule``, ``fallback``).
    listed_sets
        Signature -> genes as listed in the GMT (before matching), recorded so that a later
        change of the gene-set file is caught (:func:`check_gene_sets`).
    gene_set_files
        GMT files (and the alias table) whose checksums are recorded.
    """
    reference = np.asarray(reference, dtype=bool)
    if "vst_trend_coeffs" not in adata.uns:
        raise ValueError(
            "the cohort has no VST trend (uns['vst_trend_coeffs']); normalize it with "
            "ifnsig.data.normalize before freezing a reference"
        )
    methods = list(dict.fromkeys(table["method"]))
    scores.check_methods(methods)
    counts = np.asarray(adata.layers["counts"])
    log_geo_means = data.log_geometric_means(counts)
    if not np.isfinite(log_geo_means).any():
        raise ValueError(
            "every gene has a zero count in some sample, so the median of ratios has no "
            "pseudo-reference to freeze; filter genes more strictly (filtering.min_samples)"
        )
    recomputed = data.size_factors_from(counts, log_geo_means)
    if not np.allclose(recomputed, adata.obs["size_factor"].to_numpy(dtype=float), rtol=1e-10):
        raise ValueError(
            "the cohort's size factors are not the median of ratios of its counts; "
            "normalize it with ifnsig.data.normalize before freezing a reference"
        )
    in_table = table.drop_duplicates("sample").set_index("sample")["reference"].astype(bool)
    if not (in_table.reindex(adata.obs_names.astype(str)).to_numpy() == reference).all():
        raise ValueError("the scores table was made with other reference samples than given")
    statistics = scores.reference_statistics(adata, reference)
    ids = adata.var_names.astype(str)
    symbols = adata.var["symbol"].astype(str).to_numpy()
    columns = scores.set_columns(scores.scoring_symbols(adata), gene_sets)
    controls = (
        scores.score_genes_controls(np.asarray(adata.layers["vst"]), columns, seed)
        if "score_genes" in methods
        else {}
    )
    genes = pd.DataFrame(
        {
            "gene_id": ids,
            "symbol": symbols,
            "log_geo_mean": np.where(np.isfinite(log_geo_means), log_geo_means, np.nan),
            "normalized_median": statistics.normalized_median,
            "vst_mean": statistics.vst_mean,
            "vst_sd": statistics.vst_sd,
        }
    )
    rows = []
    for (signature, method), part in table.groupby(["signature", "method"], sort=False):
        ref_scores = part.loc[part["reference"].astype(bool), "score"]
        low, high = scores.attainable_range(method, columns[signature], adata.n_vars, seed)
        rows.append(
            {
                "signature": signature,
                "method": method,
                "n_genes": int(part["n_genes"].iloc[0]),
                "threshold": float(part["threshold"].iloc[0]),
                "rule": str(part["positivity_rule"].iloc[0]),
                "reference_mean": float(ref_scores.mean()),
                "reference_sd": float(ref_scores.std(ddof=1)),
                "attainable_min": low,
                "attainable_max": high,
            }
        )
    obs = adata.obs[reference]
    samples = pd.DataFrame(
        {
            "sample": obs.index.astype(str),
            "subject": obs["subject"].astype(str).to_numpy(),
            "group": obs["group"].astype(str).to_numpy(),
            "timepoint": obs["timepoint"].astype(str).to_numpy(),
        }
    )
    a0, a1 = (float(v) for v in np.asarray(adata.uns["vst_trend_coeffs"], dtype=float))
    listed = listed_sets or gene_sets
    meta = {
        "format": FORMAT,
        "versions": _versions(),
        "methods": methods,
        "seed": int(seed),
        "reference_group": reference_group,
        "n_reference": int(reference.sum()),
        "n_genes": int(adata.n_vars),
        "n_size_factor_genes": int(np.isfinite(log_geo_means).sum()),
        # DESeq2's name of the trend the VST used: "mean" when the parametric fit failed
        # (then asymptDisp is the mean dispersion and extraPois 0).
        "vst_fit_type": str(adata.uns.get("vst_fit_type", "parametric")),
        "positivity": dict(settings or {}),
        "gene_sets": {name: list(listed[name]) for name in gene_sets},
        "gene_set_files": file_checksums(gene_set_files),
    }
    return ScoreReference(
        genes=genes,
        dispersion={"asymptDisp": a0, "extraPois": a1},
        depth_scale=statistics.depth_scale,
        gene_sets={name: list(ids[cols]) for name, cols in columns.items()},
        controls={name: list(ids[cols]) for name, cols in controls.items()},
        cutoffs=pd.DataFrame(rows, columns=CUTOFF_COLUMNS),
        samples=samples,
        meta=meta,
    )


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    # Python's shortest round-trip repr of every float: read back exactly (with
    # float_precision="round_trip"), so writing what was read gives the same bytes.
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            out[column] = ["" if np.isnan(v) else repr(float(v)) for v in out[column]]
    out.to_csv(path, sep="\t", index=False, lineterminator="\n")


def _read_table(path: Path, text: tuple[str, ...]) -> pd.DataFrame:
    return pd.read_csv(
        path,
        sep="\t",
        dtype={c: str for c in text},
        keep_default_na=False,
        na_values={c: [""] for c in ("log_geo_mean",)},
        float_precision="round_trip",
    )


def write_reference(ref: ScoreReference, folder: str | Path) -> dict[str, str]:
    """Write the reference to ``folder`` (created); returns file key -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {key: folder / name for key, name in FILES.items()}
    meta = {
        **ref.meta,
        "dispersion_function": {
            "fitType": ref.meta.get("vst_fit_type", "parametric"),
            **ref.dispersion,
        },
        "depth_scale": ref.depth_scale,
    }
    paths["meta"].write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    _write_table(ref.genes[GENE_COLUMNS], paths["genes"])
    symbol = dict(zip(ref.genes["gene_id"], ref.genes["symbol"], strict=True))
    rows = [
        (name, role, gene, symbol[gene])
        for role, sets in [("gene", ref.gene_sets), ("score_genes_control", ref.controls)]
        for name, genes in sets.items()
        for gene in genes
    ]
    _write_table(
        pd.DataFrame(rows, columns=["signature", "role", "gene_id", "symbol"]), paths["gene_sets"]
    )
    _write_table(ref.cutoffs[CUTOFF_COLUMNS], paths["cutoffs"])
    _write_table(ref.samples, paths["samples"])
    return {key: str(path) for key, path in paths.items()}


def read_reference(folder: str | Path) -> ScoreReference:
    """Read a reference written by :func:`write_reference`.

    Raises
    ------
    InputError
        If the folder or one of its files is missing, or the format is not this version's.
    """
    folder = Path(folder)
    for name in FILES.values():
        if not (folder / name).is_file():
            raise InputError(
                f"The IFN-score reference folder {folder} has no {name}; point to a folder "
                "written by ifnsig.reference.write_reference (results/scores/reference/)."
            )
    meta = json.loads((folder / FILES["meta"]).read_text())
    if meta.get("format") != FORMAT:
        raise InputError(
            f"{folder / FILES['meta']}: reference format {meta.get('format')} is not "
            f"{FORMAT}, the one this ifnsig reads; rebuild the reference with this version."
        )
    genes = _read_table(folder / FILES["genes"], ("gene_id", "symbol"))
    genes["log_geo_mean"] = genes["log_geo_mean"].astype(float)
    members = _read_table(folder / FILES["gene_sets"], ("signature", "role", "gene_id", "symbol"))
    sets: dict[str, dict[str, list[str]]] = {"gene": {}, "score_genes_control": {}}
    for row in members.itertuples(index=False):
        sets[row.role].setdefault(row.signature, []).append(row.gene_id)
    cutoffs = _read_table(folder / FILES["cutoffs"], ("signature", "method", "rule"))
    samples = _read_table(folder / FILES["samples"], ("sample", "subject", "group", "timepoint"))
    dispersion = meta.pop("dispersion_function")
    depth_scale = float(meta.pop("depth_scale"))
    return ScoreReference(
        genes=genes[GENE_COLUMNS],
        dispersion={k: float(dispersion[k]) for k in ("asymptDisp", "extraPois")},
        depth_scale=depth_scale,
        gene_sets=sets["gene"],
        controls=sets["score_genes_control"],
        cutoffs=cutoffs[CUTOFF_COLUMNS],
        samples=samples,
        meta=meta,
    )


def check_gene_sets(
    ref: ScoreReference, listed_sets: dict[str, list[str]], gene_set_files=()
) -> None:
    """Check that the configured gene sets are those the reference was built with.

    Raises
    ------
    InputError
        If a signature of the reference is listed with other genes now (another version of
        the gene-set file), naming the genes added and removed.

    Warns
    -----
    ReferenceMismatchWarning
        If a gene-set file's checksum changed although the reference's sets did not.
    """
    for name, genes in ref.meta.get("gene_sets", {}).items():
        if name not in listed_sets:
            continue
        now = list(listed_sets[name])
        if now != list(genes):
            added = sorted(set(now) - set(genes))
            removed = sorted(set(genes) - set(now))
            raise InputError(
                f"Gene set '{name}' lists other genes than when the IFN-score reference was "
                f"built (added: {', '.join(added) or 'none'}; removed: "
                f"{', '.join(removed) or 'none'}; order may differ); use the gene-set file "
                "the reference was built with or rebuild the reference."
            )
    recorded = {f["file"]: f["sha256"] for f in ref.meta.get("gene_set_files", [])}
    changed = [
        f["file"]
        for f in file_checksums(gene_set_files)
        if f["file"] in recorded and recorded[f["file"]] != f["sha256"]
    ]
    if changed:
        warnings.warn(
            f"{len(changed)} gene-set file(s) changed since the IFN-score reference was built "
            f"({', '.join(changed)}), though the reference's signatures are listed alike; "
            "scores use the reference's own gene lists.",
            ReferenceMismatchWarning,
            stacklevel=2,
        )


def check_versions(ref: ScoreReference) -> None:
    """Warn when ifnsig or pydeseq2 differ from the versions that built the reference."""
    now = _versions()
    moved = [
        f"{name} {ref.meta['versions'].get(name)} -> {now[name]}"
        for name in ("ifnsig", "pydeseq2")
        if ref.meta.get("versions", {}).get(name) != now[name]
    ]
    if moved:
        warnings.warn(
            f"the IFN-score reference was built with other versions ({'; '.join(moved)}); "
            "frozen scores are computed by this version's code.",
            ReferenceMismatchWarning,
            stacklevel=2,
        )


def align_counts(
    counts: pd.DataFrame, ref: ScoreReference, max_missing: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """New raw counts in the reference's gene order.

    Parameters
    ----------
    counts
        Samples x genes raw counts with gene IDs as columns (extra genes are ignored).
    ref
        The reference.
    max_missing
        Largest fraction of the reference's genes that may be missing (with a warning).

    Returns
    -------
    matrix, present
        Samples x present reference genes counts, and the row positions in ``ref.genes`` of
        those genes.

    Raises
    ------
    InputError
        If a gene that a signature (or its score_genes controls) is scored with is missing,
        or more than ``max_missing`` of the reference's genes are (another annotation).
    """
    ids = pd.Index(ref.genes["gene_id"])
    columns = pd.Index(counts.columns.astype(str))
    position = columns.get_indexer(ids) if columns.is_unique else None
    if position is None or (position < 0).all():
        # Ensembl IDs with a version suffix on one side only.
        stripped = data.without_ensembl_version(columns)
        keep = ~stripped.duplicated()
        lookup = pd.Series(np.flatnonzero(keep), index=stripped[keep])
        position = lookup.reindex(data.without_ensembl_version(ids)).fillna(-1).to_numpy(dtype=int)
    missing = position < 0
    needed = {g for genes in [*ref.gene_sets.values(), *ref.controls.values()] for g in genes}
    lacking = [g for g in ids[missing] if g in needed]
    if lacking:
        raise InputError(
            f"The new counts lack {len(lacking)} of the {len(needed)} genes the IFN-score "
            f"reference scores with (e.g. {', '.join(lacking[:5])}); give counts made with "
            "the reference's gene annotation (gene IDs as in genes.tsv of the reference) or "
            "rebuild the reference from a cohort counted like the new samples."
        )
    if missing.mean() > max_missing:
        raise InputError(
            f"The new counts lack {missing.sum()} of the reference's {len(ids)} genes "
            f"({missing.mean():.0%}, more than {max_missing:.0%}), as counts made with another "
            "annotation would; count the new samples with the reference's annotation or "
            "rebuild the reference."
        )
    if missing.any():
        warnings.warn(
            f"{missing.sum()} of the reference's {len(ids)} genes are missing from the new "
            f"counts; size factors use the other {(~missing).sum()} genes and rank-based "
            "scores (singscore, ssGSEA) rank among them, so those may shift slightly.",
            ReferenceMismatchWarning,
            stacklevel=2,
        )
    values = np.asarray(counts.to_numpy())[:, position[~missing]]
    return values, np.flatnonzero(~missing)


def normalize_with_reference(
    counts: np.ndarray, ref: ScoreReference, present: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Size factors, normalized counts and VST of new samples, with the frozen functions.

    Parameters
    ----------
    counts
        Samples x genes raw counts in the order of ``ref.genes`` (rows ``present`` of it).

    Returns
    -------
    size_factors, normalized, vst
    """
    genes = ref.genes if present is None else ref.genes.iloc[present]
    log_geo_means = genes["log_geo_mean"].to_numpy(dtype=float)
    size_factors = data.size_factors_from(
        counts, np.where(np.isnan(log_geo_means), -np.inf, log_geo_means)
    )
    normalized = np.asarray(counts, dtype=float) / size_factors[:, None]
    vst = data.vst_parametric(normalized, ref.dispersion["asymptDisp"], ref.dispersion["extraPois"])
    return size_factors, normalized, vst


def frozen_cohort(
    adata: ad.AnnData, ref: ScoreReference, max_missing: float = 0.05, layer: str = "counts"
) -> tuple[ad.AnnData, np.ndarray]:
    """New samples normalized with the frozen functions, in the reference's genes.

    Parameters
    ----------
    adata
        New samples: raw counts in ``layer`` (or ``X``), gene IDs as var names.
    ref, max_missing
        As for :func:`score_with_reference`.

    Returns
    -------
    cohort, present
        An AnnData of the new samples x the reference's genes found in them (var: gene IDs,
        ``symbol`` as in the reference), with layers ``counts``, ``normalized`` and ``vst``
        and obs ``size_factor``; and the row positions of those genes in ``ref.genes``
        (for :meth:`ScoreReference.statistics`).
    """
    counts = pd.DataFrame(
        np.asarray(adata.layers[layer] if layer in adata.layers else adata.X),
        columns=adata.var_names.astype(str),
    )
    matrix, present = align_counts(counts, ref, max_missing)
    _check_symbols(adata, ref, present)
    size_factors, normalized, vst = normalize_with_reference(matrix, ref, present)
    genes = ref.genes.iloc[present]
    var = pd.DataFrame(
        {"symbol": genes["symbol"].to_numpy()}, index=pd.Index(genes["gene_id"], name=None)
    )
    obs = adata.obs.copy()
    obs["size_factor"] = size_factors
    cohort = ad.AnnData(obs=obs, var=var)
    cohort.layers["counts"] = np.asarray(matrix)
    cohort.layers["normalized"] = normalized
    cohort.layers["vst"] = vst
    return cohort, present


def check_scored(ref: ScoreReference, gene_sets: list[str], methods: list[str]) -> None:
    """Check that the reference scored every gene set and method asked for.

    Raises
    ------
    InputError
        Naming what the reference lacks and what it holds.
    """
    lacking_sets = [name for name in gene_sets if name not in ref.gene_sets]
    lacking_methods = [m for m in methods if m not in ref.methods]
    if lacking_sets or lacking_methods:
        what = "; ".join(
            part
            for part in (
                lacking_sets and f"gene set(s) {', '.join(lacking_sets)}",
                lacking_methods and f"method(s) {', '.join(lacking_methods)}",
            )
            if part
        )
        raise InputError(
            f"The IFN-score reference was not built with {what} (it holds gene sets "
            f"{', '.join(ref.gene_sets)} and methods {', '.join(ref.methods)}); score only "
            "those, or rebuild the reference from a run that scored them."
        )


def score_frozen_cohort(
    cohort: ad.AnnData, present: np.ndarray, ref: ScoreReference, threads: int = 1
) -> pd.DataFrame:
    """Scores of a :func:`frozen_cohort`, with the reference's cut-offs and rules."""
    index = pd.Series(np.arange(len(present)), index=ref.genes["gene_id"].to_numpy()[present])
    columns = {n: index.reindex(g).to_numpy(dtype=int) for n, g in ref.gene_sets.items()}
    controls = {n: index.reindex(g).to_numpy(dtype=int) for n, g in ref.controls.items()}
    raw = scores.compute_scores(
        {"normalized": cohort.layers["normalized"], "vst": cohort.layers["vst"]},
        columns,
        ref.methods,
        ref.statistics(present),
        controls=controls or None,
        seed=int(ref.meta["seed"]),
        threads=threads,
    )
    cutoffs = {
        (row.signature, row.method): positivity.Cutoff(
            row.threshold,
            row.rule,
            row.reference_mean,
            row.reference_sd,
            row.attainable_min,
            row.attainable_max,
        )
        for row in ref.cutoffs.itertuples(index=False)
    }
    n_genes = dict(zip(ref.cutoffs["signature"], ref.cutoffs["n_genes"], strict=False))
    was_reference = cohort.obs_names.astype(str).isin(set(ref.samples["sample"]))
    return scores.score_table(
        cohort.obs, raw, cutoffs, n_genes, was_reference, ref.meta["reference_group"]
    )


def score_with_reference(
    adata: ad.AnnData,
    ref: ScoreReference,
    threads: int = 1,
    max_missing: float = 0.05,
    layer: str = "counts",
    listed_sets: dict[str, list[str]] | None = None,
    gene_set_files=(),
) -> pd.DataFrame:
    """Score new samples against a frozen reference; the same table as a run writes.

    Parameters
    ----------
    adata
        New samples: raw counts in ``layer`` (gene IDs as var names), obs with ``subject``,
        ``group`` and ``timepoint``, e.g. ``results/data/counts.h5ad`` of the new batch.
    ref
        From :func:`read_reference`.
    max_missing
        Largest fraction of the reference's genes that may be missing (:func:`align_counts`).
    listed_sets, gene_set_files
        The gene sets as configured now and their files, checked against the reference
        (:func:`check_gene_sets`); None skips the check.

    Returns
    -------
    pandas.DataFrame
        As :func:`ifnsig.scores.score_samples`, with the reference's cut-offs and rules;
        ``reference`` is True for samples that were reference samples of the run.
    """
    check_versions(ref)
    if listed_sets is not None:
        check_gene_sets(ref, listed_sets, gene_set_files)
    cohort, present = frozen_cohort(adata, ref, max_missing, layer)
    return score_frozen_cohort(cohort, present, ref, threads)


def _check_symbols(adata: ad.AnnData, ref: ScoreReference, present: np.ndarray) -> None:
    if "symbol" not in adata.var:
        return
    ids = ref.genes["gene_id"].to_numpy()[present]
    theirs = adata.var["symbol"].astype(str).reindex(ids) if adata.var_names.is_unique else None
    if theirs is None:
        return
    ours = ref.genes["symbol"].to_numpy()[present]
    differ = theirs.notna().to_numpy() & (theirs.to_numpy() != ours)
    if differ.any():
        warnings.warn(
            f"{differ.sum()} genes of the new counts carry other symbols than in the "
            f"IFN-score reference (e.g. {ids[differ][0]}: {theirs.to_numpy()[differ][0]} vs "
            f"{ours[differ][0]}), as another annotation version would; scores follow the "
            "reference's gene IDs.",
            ReferenceMismatchWarning,
            stacklevel=2,
        )
