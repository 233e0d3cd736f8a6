"""Count inputs beyond plain tables: salmon/kallisto quantifications, bulk and single-cell .h5ad.

Every format ends as the same thing, a genes x samples frame of raw integer counts, so the
rest of the workflow does not know where the counts came from:

- ``table`` / ``featurecounts``: a text matrix, read by :mod:`ifnsig.io`;
- ``salmon`` / ``kallisto``: a folder with one sub-folder per sample (``quant.sf``, or
  ``abundance.h5`` / ``abundance.tsv``), summarized to genes with pytximport and the
  transcript-to-gene map of the user's GTF (offline);
- ``h5ad``: an AnnData of samples x genes holding raw counts (in ``X`` or a layer), or, with
  ``h5ad.single_cell``, cells x genes summed per sample (optionally within chosen cell
  types) into pseudobulk counts, read from the file in blocks of cells (or of genes for a
  CSC matrix), so memory does not grow with the number of cells.

:func:`count_sample_names` reads only what names the samples (a header, the folder names,
the ``obs`` table), so the Snakefile can check the inputs at parse time; :func:`read_count_input`
reads the counts in full and checks every value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.io import detect_count_format, read_count_header, read_counts, read_sheet

log = logging.getLogger(__name__)

# The file each quantifier writes into a sample's folder, in the order they are looked for.
QUANT_FILES = {
    "salmon": ["quant.sf"],
    "kallisto": ["abundance.h5", "abundance.tsv"],
}
TEXT_FORMATS = ("table", "featurecounts")
# tximport's counts from abundance, and the value that keeps the summed estimated counts.
NO_SCALING = "summed"


@dataclass
class CountInput:
    """Raw counts (genes x samples, index ``gene_id``) and, when the source names them, symbols."""

    counts: pd.DataFrame
    annotation: pd.DataFrame | None = None


def _quant_file(folder: Path, fmt: str) -> Path | None:
    for name in QUANT_FILES[fmt]:
        if (folder / name).is_file():
            return folder / name
    return None


def detect_format(config: dict) -> str:
    """The format of ``config["counts"]``: the configured one, or detected from the path.

    A folder holds salmon (``*/quant.sf``) or kallisto (``*/abundance.h5|tsv``) output, a
    ``.h5ad`` file an AnnData (``h5ad``), anything else a text matrix (``table`` or
    ``featurecounts``, told apart by the header).
    """
    path = Path(config["counts"])
    fmt = config.get("counts_format", "auto")
    if not path.exists():
        raise InputError(
            f"{path}: the count input does not exist; set 'counts' in {origin('counts')} to an "
            "existing file or folder (paths are relative to the directory snakemake runs in)."
        )
    if path.is_dir():
        if fmt in ("auto", *QUANT_FILES):
            for candidate in QUANT_FILES if fmt == "auto" else [fmt]:
                if any(_quant_file(sub, candidate) for sub in path.iterdir() if sub.is_dir()):
                    return candidate
        expected = " or ".join(
            f"{'/'.join(QUANT_FILES[f])} ({f})" for f in (QUANT_FILES if fmt == "auto" else [fmt])
        )
        raise InputError(
            f"{path}: counts is a folder, but no sub-folder holds {expected}; point 'counts' at "
            "the folder with one sub-folder per sample, or at a count file."
        )
    if fmt in QUANT_FILES:
        raise InputError(
            f"{path}: counts_format is {fmt}, which needs a folder with one sub-folder per "
            "sample; set 'counts' to that folder."
        )
    if fmt == "auto":
        return "h5ad" if path.suffix == ".h5ad" else detect_count_format(path)
    return fmt


def _quant_folders(path: Path, fmt: str) -> dict[str, Path]:
    """Sample name (the sub-folder's name) -> its quantification file, sorted by name."""
    # Pipelines (e.g. nf-core/rnaseq) leave other folders beside the samples': skip them.
    found = {
        sub.name: _quant_file(sub, fmt)
        for sub in sorted(path.iterdir())
        if sub.is_dir() and _quant_file(sub, fmt) is not None
    }
    return found


# Stored values read per block of a single-cell matrix: about 2^23 non-zero counts of a
# sparse matrix (or values of a dense one), some 100-200 MB with their indices and the int64
# copy, whatever the number of cells.
BLOCK_VALUES = 1 << 23


def _open_h5ad(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(
            f"{path}: the file cannot be read as AnnData ({err}); write it with "
            "anndata's write_h5ad."
        ) from None


def _read_h5ad_frame(handle: h5py.File, key: str, path: Path) -> pd.DataFrame:
    """``obs`` or ``var`` of an open ``.h5ad``, read alone (the matrices stay on disk)."""
    from anndata.io import read_elem

    if key not in handle:
        raise InputError(
            f"{path}: the file has no '{key}' table, so it is not an AnnData; write it with "
            "anndata's write_h5ad."
        )
    try:
        return read_elem(handle[key])
    except Exception as err:  # anndata raises its own types for files it cannot decode
        raise InputError(
            f"{path}: '{key}' cannot be read ({type(err).__name__}: {err}); write the file "
            "again with a recent anndata (write_h5ad)."
        ) from None


def _read_h5ad_obs(path: Path) -> tuple[pd.DataFrame, pd.Index]:
    """``obs`` and the gene names (``var_names``) of an ``.h5ad``, without its matrices.

    anndata's backed mode keeps ``X`` on disk but reads every layer into memory; h5py reads
    only the two tables.
    """
    with _open_h5ad(path) as handle:
        obs = _read_h5ad_frame(handle, "obs", path)
        var = _read_h5ad_frame(handle, "var", path)
    return obs, var.index.astype(str)


def _single_cell_settings(config: dict) -> dict:
    return config.get("h5ad", {})


def _cell_mask(obs: pd.DataFrame, path: Path, settings: dict) -> np.ndarray:
    """Cells that enter the pseudobulk: all, or those of the chosen cell types."""
    sample_column = settings.get("sample_column", "sample")
    if sample_column not in obs.columns:
        raise InputError(
            f"{path}: obs has no column '{sample_column}' naming each cell's sample; set "
            f"h5ad.sample_column in config.yaml to one of: {', '.join(map(str, obs.columns))}."
        )
    cell_types = list(settings.get("cell_types") or [])
    if not cell_types:
        return np.ones(len(obs), dtype=bool)
    type_column = settings.get("cell_type_column")
    if type_column is None or type_column not in obs.columns:
        raise InputError(
            f"{path}: h5ad.cell_types is set but h5ad.cell_type_column ('{type_column}') is not "
            f"an obs column; set it to one of: {', '.join(map(str, obs.columns))}."
        )
    present = set(obs[type_column].astype(str))
    absent = [t for t in cell_types if t not in present]
    if absent:
        raise InputError(
            f"{path}: cell type(s) {', '.join(absent)} of h5ad.cell_types do not occur in obs "
            f"column '{type_column}'; use one of: {', '.join(sorted(present))}."
        )
    return obs[type_column].astype(str).isin(cell_types).to_numpy()


def _cell_samples(obs: pd.DataFrame, path: Path, settings: dict) -> pd.Series:
    """The sample of each cell entering the pseudobulk (as text), indexed by cell name."""
    sample_column = settings.get("sample_column", "sample")
    mask = _cell_mask(obs, path, settings)
    samples = obs.loc[mask, sample_column]
    missing = samples.isna().to_numpy()
    if missing.any():
        first = samples.index[np.flatnonzero(missing)[0]]
        raise InputError(
            f"{path}: {int(missing.sum())} cell(s) have no value in obs column "
            f"'{sample_column}', the first '{first}'; give every cell its sample or remove the "
            "cells without one."
        )
    return samples.astype(str)


def count_sample_names(config: dict) -> list[str]:
    """Sample names of the count input, read without loading the counts (for parse time)."""
    path = Path(config["counts"])
    fmt = detect_format(config)
    if fmt in TEXT_FORMATS:
        return read_count_header(path, fmt)
    if fmt in QUANT_FILES:
        _tx2gene_path(config)
        return list(_quant_folders(path, fmt))
    obs, _ = _read_h5ad_obs(path)
    settings = _single_cell_settings(config)
    if not settings.get("single_cell", False):
        return [str(s) for s in obs.index]
    return list(dict.fromkeys(_cell_samples(obs, path, settings)))


def _tx2gene_path(config: dict) -> Path:
    value = config.get("tximport", {}).get("tx2gene")
    if not value:
        raise InputError(
            f"{config['counts']}: salmon/kallisto counts are per transcript; set tximport.tx2gene "
            "in config.yaml to the GTF the index was built from (or a TSV with transcript_id "
            "and gene_id)."
        )
    path = Path(value)
    if not path.is_file():
        raise InputError(
            f"{path}: the tximport.tx2gene file does not exist; set tximport.tx2gene to the GTF "
            "the salmon/kallisto index was built from."
        )
    return path


def read_tx2gene(path: str | Path) -> pd.DataFrame:
    """Transcript-to-gene map with symbols, from a GTF (gzip ok) or a TSV.

    Returns
    -------
    pandas.DataFrame
        Columns ``transcript_id``, ``gene_id`` and ``symbol`` (the gene ID where the GTF has
        no ``gene_name``).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".gtf", ".gtf.gz", ".gff", ".gff.gz")):
        from pytximport.utils import create_transcript_gene_map_from_annotation

        # pytximport reads the transcript_id, gene_id and gene_name attributes of the GTF,
        # the offline equivalent of tximport's makeTxDbFromGFF route.
        frame = create_transcript_gene_map_from_annotation(
            path, target_field=["gene_id", "gene_name"], use_gene_name_as_replacement_id=False
        )
        frame = frame.rename(columns={"gene_name": "symbol"})
    else:
        frame = read_sheet(
            path, ["transcript_id", "gene_id", "symbol"], id_columns=("transcript_id", "gene_id")
        )
        missing = [c for c in ["transcript_id", "gene_id"] if c not in frame.columns]
        if missing:
            raise InputError(
                f"{path}: column(s) {', '.join(missing)} missing; tximport.tx2gene needs a GTF or "
                "a TSV with transcript_id and gene_id (symbol optional)."
            )
        if "symbol" not in frame.columns:
            frame["symbol"] = frame["gene_id"]
    frame = frame.dropna(subset=["transcript_id", "gene_id"])
    if frame.empty:
        raise InputError(
            f"{path}: no transcript carries a transcript_id and a gene_id; give the GTF the "
            "salmon/kallisto index was built from."
        )
    # Versions are dropped on both sides, as pytximport does with the quantifications.
    frame["transcript_id"] = (
        frame["transcript_id"].astype(str).str.replace(r"\.\d+$", "", regex=True)
    )
    conflicting = frame.drop_duplicates(["transcript_id", "gene_id"])
    conflicting = conflicting[conflicting["transcript_id"].duplicated()]
    if not conflicting.empty:
        raise InputError(
            f"{path}: transcript '{conflicting['transcript_id'].iloc[0]}' belongs to more than "
            "one gene; give a GTF or table with one gene per transcript."
        )
    return frame.drop_duplicates("transcript_id").reset_index(drop=True)


def read_quantifications(
    path: str | Path, fmt: str, tx2gene: pd.DataFrame, counts_from_abundance: str
) -> pd.DataFrame:
    """Gene-level counts from salmon or kallisto quantifications, with pytximport.

    Parameters
    ----------
    path
        Folder with one sub-folder per sample; the sub-folder's name is the sample name.
    fmt
        ``"salmon"`` or ``"kallisto"``.
    tx2gene
        Map with ``transcript_id`` and ``gene_id`` (:func:`read_tx2gene`).
    counts_from_abundance
        ``"length_scaled_tpm"`` (the workflow's default), ``"scaled_tpm"`` or ``"summed"``
        (the estimated counts added up).
        DESeq2 takes tximport's transcript-length offset, pydeseq2 does not: the
        length-scaled TPM counts correct for isoform switching without an offset (Soneson,
        Love and Robinson, F1000Research 2015, "bias-corrected counts without an offset").

    Returns
    -------
    pandas.DataFrame
        Integer counts, genes x samples; estimates are rounded as DESeq2's
        ``DESeqDataSetFromTximport`` does.
    """
    from pytximport import tximport

    path = Path(path)
    files = _quant_folders(path, fmt)
    if not files:
        raise InputError(
            f"{path}: no sub-folder holds {'/'.join(QUANT_FILES[fmt])}; point 'counts' at the "
            f"folder with one {fmt} output folder per sample."
        )
    kallisto_text = fmt == "kallisto" and any(f.suffix == ".tsv" for f in files.values())
    if kallisto_text and not all(f.suffix == ".tsv" for f in files.values()):
        # One reader per run: mixed abundance.h5/abundance.tsv folders read as text.
        files = {s: f.parent / "abundance.tsv" for s, f in files.items()}
        missing = [s for s, f in files.items() if not f.is_file()]
        if missing:
            raise InputError(
                f"{path}: some kallisto folders have only abundance.h5 and others only "
                f"abundance.tsv (e.g. {missing[0]}); write the same file for every sample."
            )
    known = set(tx2gene["transcript_id"])
    first = next(iter(files.values()))
    scaling = None if counts_from_abundance == NO_SCALING else counts_from_abundance
    try:
        result = tximport(
            [str(f) for f in files.values()],
            data_type=fmt,
            transcript_gene_map=tx2gene[["transcript_id", "gene_id"]].copy(),
            counts_from_abundance=scaling,
            # kallisto's abundance.tsv holds TPM in column tpm (pytximport's default for text
            # files recomputes it from the counts instead).
            abundance_column="tpm" if kallisto_text else None,
            output_type="anndata",
        )
    except AssertionError as err:
        if "No transcripts are present in the mapping" in str(err):
            raise InputError(
                f"{first}: none of its transcript IDs is in tximport.tx2gene ({len(known)} "
                "transcripts); give the GTF the salmon/kallisto index was built from."
            ) from None
        raise InputError(
            f"{first}: the {fmt} output does not read ({err}); check the files."
        ) from None
    except (KeyError, ValueError, ImportError, pd.errors.ParserError) as err:
        raise InputError(
            f"{path}: the {fmt} output does not read ({err}); check that every sample folder "
            f"holds a complete {'/'.join(QUANT_FILES[fmt])}."
        ) from None
    counts = np.asarray(result.X, dtype=float).T
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise InputError(
            f"{path}: the {fmt} estimates contain negative or non-finite values; check the "
            "quantification files."
        )
    frame = pd.DataFrame(
        np.rint(counts).astype(np.int64),
        index=pd.Index(result.var_names.astype(str), name="gene_id"),
        columns=list(files),
    )
    log.info(
        "%s: %d samples, %d transcripts summarized to %d genes (counts from abundance: %s)",
        fmt,
        frame.shape[1],
        len(known),
        frame.shape[0],
        counts_from_abundance,
    )
    return frame


def _check_count_values(matrix, path: Path, genes, rows, what: str) -> None:
    """Raise at the first negative, fractional or non-finite count (dense or sparse)."""
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
    with np.errstate(invalid="ignore"):
        checks = [
            (~np.isfinite(values), "is not finite", "counts must be finite numbers"),
            (values < 0, "is negative", "counts cannot be negative"),
            (
                values != np.round(values),
                "is not an integer",
                "give raw integer counts, not normalized or log values (set h5ad.layer to the "
                "layer holding the raw counts)",
            ),
        ]
    for bad, problem, fix in checks:
        if not bad.any():
            continue
        if sp.issparse(matrix):
            coo = matrix.tocoo()
            first = int(np.flatnonzero(bad)[0])
            row, col, value = int(coo.row[first]), int(coo.col[first]), coo.data[first]
        else:
            row, col = (int(x[0]) for x in np.nonzero(bad))
            value = values[row, col]
        raise InputError(
            f"{path}: the count of gene '{genes[col]}' in {what} '{rows[row]}' {problem} "
            f"({value}); {fix}."
        )


def _layer_missing(path: Path, layer: str, layers) -> InputError:
    return InputError(
        f"{path}: layer '{layer}' (h5ad.layer) is not in the file; use one of: "
        f"{', '.join(layers) or 'none, then leave h5ad.layer empty to use X'}."
    )


def _h5ad_matrix(adata, path: Path, layer: str | None):
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise _layer_missing(path, layer, adata.layers)
    return adata.layers[layer]


def _check_unique_genes(genes: pd.Index, path: Path) -> None:
    duplicated = genes[genes.duplicated()]
    if len(duplicated):
        raise InputError(
            f"{path}: gene '{duplicated[0]}' appears more than once in var_names; sum or remove "
            "duplicated genes (or use gene IDs as var_names) before running the workflow."
        )


def read_h5ad_counts(path: str | Path, settings: dict) -> pd.DataFrame:
    """Counts from an AnnData: samples x genes as they are, or cells summed per sample.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    settings
        The ``h5ad`` block of the configuration: ``layer`` (None: ``X``), ``single_cell``,
        ``sample_column``, ``cell_type_column`` and ``cell_types``.

    Returns
    -------
    pandas.DataFrame
        Integer counts, genes x samples. Pseudobulk samples are named by the values of the
        sample column, in order of first appearance.
    """
    import anndata as ad

    path = Path(path)
    if settings.get("single_cell", False):
        return pseudobulk(path, settings)
    adata = ad.read_h5ad(path)
    genes = adata.var_names.astype(str)
    _check_unique_genes(genes, path)
    matrix = _h5ad_matrix(adata, path, settings.get("layer"))
    if matrix is None:
        raise InputError(
            f"{path}: the file has no X matrix; set h5ad.layer to the layer holding the raw "
            f"counts (layers: {', '.join(adata.layers) or 'none'})."
        )
    _check_count_values(matrix, path, genes, adata.obs_names.astype(str), "sample")
    dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    return pd.DataFrame(
        dense.astype(np.int64).T,
        index=pd.Index(genes, name="gene_id"),
        columns=adata.obs_names.astype(str),
    )


def _stored_counts(handle: h5py.File, path: Path, layer: str | None, shape: tuple[int, int]):
    """The on-disk count matrix and its index pointer (None when dense).

    The matrix is an h5py dataset (dense) or anndata's CSR/CSC dataset, both read by slices.
    """
    from anndata.io import sparse_dataset

    if layer is None:
        if "X" not in handle:
            layers = list(handle.get("layers", {}))
            raise InputError(
                f"{path}: the file has no X matrix; set h5ad.layer to the layer holding the raw "
                f"counts (layers: {', '.join(layers) or 'none'})."
            )
        node, where = handle["X"], "X"
    else:
        layers = handle.get("layers", {})
        if layer not in layers:
            raise _layer_missing(path, layer, list(layers))
        node, where = layers[layer], f"layer '{layer}'"
    if isinstance(node, h5py.Dataset):
        if node.ndim != 2 or node.dtype.kind not in "biuf":
            raise InputError(
                f"{path}: {where} holds {node.dtype} values of shape {node.shape}, not a numeric "
                "cells x genes matrix; store the raw counts there."
            )
        matrix, indptr = node, None
    else:
        encoding = node.attrs.get("encoding-type")
        if encoding not in ("csr_matrix", "csc_matrix"):
            raise InputError(
                f"{path}: {where} is stored as '{encoding}', not as a dense or sparse (CSR/CSC) "
                "matrix; write the raw counts with anndata's write_h5ad."
            )
        matrix, indptr = sparse_dataset(node), node["indptr"][...]
    if tuple(matrix.shape) != shape:
        raise InputError(
            f"{path}: {where} has shape {tuple(matrix.shape)} but obs and var give {shape}; "
            "write the file again with anndata's write_h5ad."
        )
    return matrix, indptr


def _blocks(indptr: np.ndarray, limit: int) -> list[tuple[int, int]]:
    """Consecutive [start, stop) ranges of rows holding at most ``limit`` values each.

    ``indptr[i]`` is the number of values before row i (a CSR/CSC index pointer); a single
    row with more than ``limit`` values is a block of its own.
    """
    n = len(indptr) - 1
    bounds, start = [], 0
    while start < n:
        stop = int(np.searchsorted(indptr, indptr[start] + limit, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        bounds.append((start, stop))
        start = stop
    return bounds


def _as_counts(block):
    """A checked block of integer-valued counts as int64, so sums are exact in any order."""
    return block.astype(np.int64) if sp.issparse(block) else np.asarray(block, dtype=np.int64)


def pseudobulk(path: str | Path, settings: dict) -> pd.DataFrame:
    """Sum the raw counts of the cells of each sample (optionally of chosen cell types only).

    Summed counts of the cells of one sample behave as a bulk library, so the DESeq2 model
    applies to them where it does not to single cells (Squair et al., Nat Commun 2021;
    Crowell et al., Nat Commun 2020, "muscat").

    The matrix is read from the file one block at a time (:data:`BLOCK_VALUES` values: rows
    of cells for a dense or CSR matrix, columns of genes for a CSC one), checked, and added to
    the samples x genes sums, so memory holds one block, the ``obs`` table and the sums,
    whatever the number of cells. Sums are exact integers (int64), equal to
    :func:`scanpy.get.aggregate` of the whole matrix in memory.

    Returns
    -------
    pandas.DataFrame
        Integer counts, genes x samples, samples in order of their first cell.
    """
    path = Path(path)
    obs, genes = _read_h5ad_obs(path)
    _check_unique_genes(genes, path)
    samples = _cell_samples(obs, path, settings)
    order = list(dict.fromkeys(samples))
    if not order:
        raise InputError(f"{path}: obs has no cells; give the single-cell counts of the samples.")
    # Sample of each cell as a row of the cells -> samples indicator; -1: a cell left out.
    codes = np.full(len(obs), -1, dtype=np.int64)
    codes[_cell_mask(obs, path, settings)] = pd.Index(order).get_indexer(samples)
    kept = np.flatnonzero(codes >= 0)
    cell_names = obs.index.astype(str)
    sums = np.zeros((len(order), len(genes)), dtype=np.int64)

    def indicator(start: int, stop: int) -> sp.csr_matrix:
        rows = kept[np.searchsorted(kept, start) : np.searchsorted(kept, stop)]
        return sp.csr_matrix(
            (np.ones(len(rows), dtype=np.int64), (codes[rows], rows - start)),
            shape=(len(order), stop - start),
        )

    with _open_h5ad(path) as handle:
        shape = (len(obs), len(genes))
        matrix, indptr = _stored_counts(handle, path, settings.get("layer"), shape)
        if indptr is not None and matrix.format == "csc":
            # Columns (genes) are contiguous on disk: read blocks of genes over all cells.
            every_cell = indicator(0, len(obs))
            for start, stop in _blocks(indptr, BLOCK_VALUES):
                block = matrix[:, start:stop]
                _check_count_values(block, path, genes[start:stop], cell_names, "cell")
                sums[:, start:stop] += (every_cell @ _as_counts(block)).toarray()
        else:
            limit = BLOCK_VALUES
            if indptr is None:
                indptr = np.arange(len(obs) + 1, dtype=np.int64)
                limit = max(1, BLOCK_VALUES // max(1, len(genes)))
            for start, stop in _blocks(indptr, limit):
                block = matrix[start:stop]
                _check_count_values(block, path, genes, cell_names[start:stop], "cell")
                added = indicator(start, stop) @ _as_counts(block)
                if sp.issparse(added):
                    # Added where the block has counts: no dense samples x genes copy.
                    rows = np.repeat(np.arange(len(order)), np.diff(added.indptr))
                    np.add.at(sums, (rows, added.indices), added.data)
                else:
                    sums += added
    frame = pd.DataFrame(sums.T, index=pd.Index(genes, name="gene_id"), columns=order)
    n_cells = samples.value_counts()
    log.info(
        "pseudobulk: %d cells%s summed into %d samples (%d to %d cells per sample)",
        len(samples),
        f" of {', '.join(settings['cell_types'])}" if settings.get("cell_types") else "",
        frame.shape[1],
        n_cells.min(),
        n_cells.max(),
    )
    return frame


def read_count_input(config: dict) -> CountInput:
    """Read the configured count input in full, whatever its format, and check its values."""
    path = Path(config["counts"])
    fmt = detect_format(config)
    log.info("counts: %s read as %s", path, fmt)
    if fmt in TEXT_FORMATS:
        return CountInput(read_counts(path, fmt))
    if fmt in QUANT_FILES:
        tx2gene = read_tx2gene(_tx2gene_path(config))
        settings = config.get("tximport", {})
        counts = read_quantifications(
            path, fmt, tx2gene, settings.get("counts_from_abundance", "length_scaled_tpm")
        )
        symbols = tx2gene.drop_duplicates("gene_id").set_index("gene_id")[["symbol"]]
        return CountInput(counts, symbols)
    return CountInput(read_h5ad_counts(path, _single_cell_settings(config)))
