"""Readers for the workflow's inputs: count matrices and tab-separated sheets.

Every reader checks what it reads and raises :class:`ifnsig.errors.InputError` with one
sentence that names the file, the row or column, and the fix.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.errors import InputError

# featureCounts writes these annotation columns before the sample columns.
FEATURECOUNTS_COLUMNS = ["Geneid", "Chr", "Start", "End", "Strand", "Length"]
# Suffixes aligners and featureCounts leave on sample columns (longest first).
BAM_SUFFIXES = [
    "Aligned.sortedByCoord.out.bam",
    "Aligned.out.bam",
    ".sorted.bam",
    ".bam",
]


def _open_text(path: Path):
    # utf-8-sig drops a byte-order mark that spreadsheet exports often add.
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _where_not_utf8(path: Path) -> str:
    """Where a file that failed to decode as UTF-8 goes wrong, for the message."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
                    return "line 1 starts with a UTF-16 byte-order mark"
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    return f"line {number} holds the byte {raw[err.start]:#04x}, which is not UTF-8"
    except (EOFError, OSError, zlib.error):
        pass
    return "a byte is not UTF-8"


@contextmanager
def readable(path: Path) -> Iterator[None]:
    """Turn decoding and decompression failures while reading ``path`` into InputErrors.

    Spreadsheets export "Unicode text" as UTF-16 and older tools write Latin-1; downloads
    get cut off. Without this the user would see a codec or zlib traceback.
    """
    try:
        yield
    except UnicodeDecodeError:
        raise InputError(
            f"{path}: {_where_not_utf8(path)}, so the file is not UTF-8 text; save it as UTF-8 "
            "(from a spreadsheet: tab-separated text, UTF-8)."
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise InputError(
            f"{path}: the file is not a complete gzip file ({err}); download or compress it "
            "again, or remove the .gz suffix if it is plain text."
        ) from None


def _first_lines(path: Path, n: int = 50) -> list[str]:
    lines = []
    with readable(path), _open_text(path) as handle:
        for line in handle:
            lines.append(line.rstrip("\r\n"))
            if len(lines) >= n:
                break
    return lines


def require_file(path: str | os.PathLike, what: str, key: str) -> Path:
    """Return ``path`` as a Path, or raise if it does not exist.

    Parameters
    ----------
    path
        The file named in the configuration.
    what
        What the file holds, for the message ("count matrix").
    key
        The configuration key that names it, for the message.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: the {what} does not exist; set '{key}' in {origin(key)} "
            "to an existing file (paths are relative to the directory snakemake runs in)."
        )
    return path


def detect_count_format(path: Path) -> str:
    """Return ``"featurecounts"`` or ``"table"`` from the first lines of a count file."""
    for line in _first_lines(path, 5):
        if line.startswith("#"):
            continue
        fields = re.split("[\t,]", line)
        if fields[: len(FEATURECOUNTS_COLUMNS)] == FEATURECOUNTS_COLUMNS:
            return "featurecounts"
        break
    return "table"


def _sniff_delimiter(path: Path, header: str) -> str:
    if "\t" in header:
        return "\t"
    if "," in header:
        return ","
    raise InputError(
        f"{path}: line 1 has a single column (no tab or comma found); "
        "write the count matrix as tab- or comma-separated text with the gene ID first."
    )


def featurecounts_sample_name(column: str) -> str:
    """Sample name from a featureCounts column (a BAM path): directory and BAM suffix removed."""
    name = column.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in BAM_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)].rstrip("._")
    return name


def _check_header_width(path: Path, sep: str, lines: list[str]) -> None:
    # R's write.table leaves the row-name column out of the header, shifting every sample
    # name one column to the left of its counts.
    if len(lines) > 1 and len(lines[1].split(sep)) == len(lines[0].split(sep)) + 1:
        raise InputError(
            f"{path}: line 1 has one field fewer than line 2, as R's write.table writes it; "
            "add a name (e.g. gene_id) for the gene ID column at the start of the header "
            "(in R: write.table(..., col.names = NA))."
        )


def _header(path: Path, fmt: str) -> tuple[str, str, list[str]]:
    """Format, delimiter and first non-comment lines of a count file, checked."""
    fmt = detect_count_format(path) if fmt == "auto" else fmt
    lines = [line for line in _first_lines(path, 50) if not line.startswith("#")]
    if not lines or not lines[0].strip():
        raise InputError(
            f"{path}: the count file is empty; provide a genes x samples table with a header "
            "line of sample names."
        )
    sep = _sniff_delimiter(path, lines[0])
    if fmt != "featurecounts":
        _check_header_width(path, sep, lines)
    return fmt, sep, lines


def read_count_header(path: str | os.PathLike, fmt: str = "auto") -> list[str]:
    """Sample names of a count file, read from its header line only (cheap for big files)."""
    path = Path(path)
    fmt, sep, lines = _header(path, fmt)
    columns = lines[0].split(sep)
    if fmt == "featurecounts":
        return [featurecounts_sample_name(c) for c in columns[len(FEATURECOUNTS_COLUMNS) :]]
    return [c.strip().strip('"') for c in columns[1:]]


def read_counts(path: str | os.PathLike, fmt: str = "auto") -> pd.DataFrame:
    """Read a raw count matrix (genes x samples) and check that it holds counts.

    Parameters
    ----------
    path
        TSV or CSV (optionally gzipped) with the gene ID in the first column, or the
        output of featureCounts as it is written (comment line and annotation columns).
    fmt
        ``"auto"``, ``"table"`` or ``"featurecounts"``.

    Returns
    -------
    pandas.DataFrame
        Integer counts, genes as the index (``gene_id``) and samples as columns.
    """
    path = Path(path)
    fmt, sep, header = _header(path, fmt)
    clean = _read_clean_counts(path, sep, fmt, header[0])
    if clean is not None:
        return clean
    try:
        with readable(path), _open_text(path) as handle:
            # keep_default_na=False: a literal "NaN" or "NA" is reported as such, not as empty.
            frame = pd.read_csv(
                handle, sep=sep, dtype=str, skiprows=_comment_rows(path), keep_default_na=False
            )
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        where = (
            f"line {found.group(2)} has {found.group(3)} fields but the header has {found.group(1)}"
            if found
            else f"the table does not parse ({err})"
        )
        raise InputError(
            f"{path}: {where}; every row needs the gene ID and one count per sample (look for "
            "a stray tab or comma)."
        ) from None
    raw_columns = [c.strip().strip('"') for c in header[0].split(sep)]
    seen = set()
    for column in raw_columns[1:]:
        if column in seen:
            raise InputError(
                f"{path}: column '{column}' appears more than once in the header; every sample "
                "must have exactly one count column."
            )
        seen.add(column)
    if fmt == "featurecounts":
        frame = frame.drop(columns=FEATURECOUNTS_COLUMNS[1:])
        frame.columns = [frame.columns[0]] + [
            featurecounts_sample_name(c) for c in frame.columns[1:]
        ]
    if frame.shape[1] < 2:
        raise InputError(
            f"{path}: only one column was found; the count matrix needs the gene ID in the "
            "first column and one column per sample."
        )
    if frame.empty:
        raise InputError(
            f"{path}: the count file has a header but no gene rows; check that the file was "
            "written completely."
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    gene_col = frame.columns[0]
    genes = frame[gene_col].str.strip()
    first_data_line = 2 + len(_comment_rows(path))
    if (genes == "").any():
        row = int(np.flatnonzero(genes == "")[0])
        raise InputError(
            f"{path}: line {row + first_data_line} has an empty gene ID in the first column; "
            "give every row a gene ID."
        )
    duplicated = genes[genes.duplicated()]
    if not duplicated.empty:
        lines = np.flatnonzero(genes.to_numpy() == duplicated.iloc[0]) + first_data_line
        raise InputError(
            f"{path}: gene ID '{duplicated.iloc[0]}' appears more than once (lines "
            f"{', '.join(str(n) for n in lines[:5])}; {duplicated.nunique()} duplicated IDs in "
            "all); sum or remove duplicated rows before running the workflow."
        )
    samples = frame.columns[1:]
    values = frame[samples]
    numeric = values.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna()
    if bad.to_numpy().any():
        row, col = (int(x[0]) for x in np.nonzero(bad.to_numpy()))
        raw = values.iat[row, col]
        what = "is missing" if str(raw).strip() == "" else f"is '{raw}'"
        raise InputError(
            f"{path}: the count of gene '{genes.iat[row]}' (line {row + first_data_line}) in "
            f"column '{samples[col]}' {what}; the matrix must hold raw integer counts in every "
            "cell (use 0 for no reads)."
        )
    matrix = numeric.to_numpy(dtype=float)
    for test, problem, fix in [
        (matrix < 0, "is negative", "counts cannot be negative"),
        (
            matrix != np.round(matrix),
            "is not an integer",
            "give raw integer counts, not normalized values or TPM (round estimated counts "
            "from salmon or RSEM, or use the tximport route)",
        ),
        (~np.isfinite(matrix), "is not finite", "counts must be finite numbers"),
    ]:
        if test.any():
            row, col = (int(x[0]) for x in np.nonzero(test))
            raise InputError(
                f"{path}: the count of gene '{genes.iat[row]}' (line {row + first_data_line}) "
                f"in column '{samples[col]}' {problem} ({values.iat[row, col]}); {fix}."
            )
    return pd.DataFrame(
        matrix.astype(np.int64),
        index=pd.Index(genes.to_numpy(), name="gene_id"),
        columns=list(samples),
    )


def _read_clean_counts(path: Path, sep: str, fmt: str, header: str) -> pd.DataFrame | None:
    """The counts parsed by pandas' C parser, or None if anything needs a closer look.

    Parsing every cell as text (below) locates a bad value precisely but is slow and takes
    about ten times the memory for large cohorts, so a clean matrix, by far the usual case,
    is read as integers directly; any doubt falls back to the text parser and its messages.
    """
    raw = [c.strip().strip('"') for c in header.split(sep)]
    # pandas renames a repeated column ("A", "A.1"), hiding the duplicate from the check below.
    if len(set(raw)) < len(raw) or "" in raw:
        return None
    text_columns = FEATURECOUNTS_COLUMNS if fmt == "featurecounts" else []
    try:
        with readable(path), _open_text(path) as handle:
            names = pd.read_csv(handle, sep=sep, nrows=0, skiprows=_comment_rows(path)).columns
        text_columns = [names[0], *[c for c in text_columns if c in names]]
        with readable(path), _open_text(path) as handle:
            frame = pd.read_csv(
                handle,
                sep=sep,
                skiprows=_comment_rows(path),
                keep_default_na=False,
                dtype={c: str for c in text_columns},
            )
    except (InputError, ValueError, pd.errors.ParserError):
        return None
    values = frame.drop(columns=text_columns)
    genes = frame[names[0]].str.strip()
    samples = [str(c).strip() for c in values.columns]
    if fmt == "featurecounts":
        samples = [featurecounts_sample_name(c) for c in samples]
    if (
        values.empty
        or not all(pd.api.types.is_integer_dtype(t) for t in values.dtypes)
        or len(set(samples)) < len(samples)
        or (genes == "").any()
        or genes.duplicated().any()
    ):
        return None
    matrix = values.to_numpy(dtype=np.int64)
    if (matrix < 0).any():
        return None
    return pd.DataFrame(matrix, index=pd.Index(genes.to_numpy(), name="gene_id"), columns=samples)


def _comment_rows(path: Path) -> list[int]:
    rows = []
    for i, line in enumerate(_first_lines(path, 50)):
        if line.startswith("#"):
            rows.append(i)
        else:
            break
    return rows


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` once completely written.

    A writer that fails or is killed half-way leaves no partial file under the output's
    name (only the hidden temporary, removed on failure): a table or figure under results/
    is either complete or absent, also when a stage runs outside Snakemake, which removes a
    failed job's outputs itself. The temporary keeps the suffix, for writers that choose
    the format from it (matplotlib).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial{''.join(path.suffixes)}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def read_tsv(path: str | os.PathLike, **kwargs) -> pd.DataFrame:
    """A table the workflow wrote: only an empty cell is missing, so an ID such as ``NA``
    (a subject of that name) read back stays the ID it was."""
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], **kwargs)


#: Cells read as missing in the sheets (outside ID columns), as R and spreadsheets write them.
MISSING_VALUES = (
    "",
    "NA",
    "N/A",
    "n/a",
    "na",
    "NaN",
    "nan",
    "NULL",
    "null",
    "None",
    "#N/A",
    "<NA>",
)


def _header_fields(path: Path, sep: str) -> list[str]:
    """The header line of a sheet split on ``sep``, as written (pandas would rename repeats)."""
    with readable(path), _open_text(path) as handle:
        line = handle.readline().rstrip("\r\n")
    return next(csv.reader([line], delimiter=sep)) if line else []


def _first_long_line(path: Path, sep: str, width: int) -> int:
    """Number (from 1) of the first line with more than ``width`` fields."""
    with readable(path), _open_text(path) as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter=sep), start=1):
            if len(fields) > width:
                return number
    return 2


def read_sheet(
    path: str | os.PathLike,
    string_columns: list[str],
    id_columns: list[str] | tuple[str, ...] = (),
    separators: str = "\t",
) -> pd.DataFrame:
    """Read a tab-separated sheet; ``string_columns`` are kept as text (IDs such as "007").

    Cells holding one of :data:`MISSING_VALUES` are missing, except in ``id_columns``: an
    ID such as ``NA`` or ``null`` stays an ID there (an empty ID cell stays ``""``).
    ``separators`` lists the accepted delimiters: ``"\t,"`` reads a CSV too, chosen from
    the header line (a tab wins).
    """
    path = Path(path)
    head = _first_lines(path, 1)
    sep = "\t"
    if head and "\t" not in head[0] and "," in separators and "," in head[0]:
        sep = ","
    raw = _header_fields(path, sep) if head else []
    header = [c.strip() for c in raw]
    repeated = sorted({c for c in header if header.count(c) > 1 and c})
    if repeated:
        raise InputError(
            f"{path}: line 1 names column '{repeated[0]}' {header.count(repeated[0])} times; "
            "give every column its own name (remove or rename the copy)."
        )
    ids = [c for c in raw if c.strip() in id_columns]
    try:
        with readable(path), _open_text(path) as handle:
            frame = pd.read_csv(
                handle,
                sep=sep,
                dtype={c: str for c in [*string_columns, *ids]},
                skipinitialspace=True,
                keep_default_na=False,
                na_values={c: list(MISSING_VALUES) for c in raw if c not in ids},
            )
    except pd.errors.EmptyDataError:
        raise InputError(
            f"{path}: the file is empty; write a tab-separated table with a header line."
        ) from None
    except pd.errors.ParserError as err:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
        if found:
            raise InputError(
                f"{path}: line {found.group(2)} has {found.group(3)} fields but the header has "
                f"{found.group(1)}; give every row one value per column (look for a stray tab)."
            ) from None
        found = re.search(r"EOF inside string starting at row (\d+)", str(err))
        if found:
            raise InputError(
                f"{path}: a double quote on line {int(found.group(1)) + 1} opens a text that "
                "never closes; remove the stray quote or close it."
            ) from None
        detail = " ".join(str(err).replace(". ", "; ").split())
        raise InputError(
            f"{path}: the table does not parse as tab-separated text ({detail}); save it as "
            "tab-separated values with one header line."
        ) from None
    if not isinstance(frame.index, pd.RangeIndex):
        # More fields in the rows than in the header: pandas would take the first column
        # for an index and shift every value one column to the left.
        raise InputError(
            f"{path}: line {_first_long_line(path, sep, len(raw))} has more fields than the "
            f"{len(raw)} of the header; give every row one value per column (look for a "
            "stray tab at the end of the line)."
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.shape[1] == 1 and ("," in frame.columns[0] or ";" in frame.columns[0]):
        raise InputError(
            f"{path}: the header has a single column '{frame.columns[0][:40]}'; the sheet must "
            "be tab-separated, not comma- or semicolon-separated."
        )
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].str.strip()
            if column not in id_columns:
                frame[column] = frame[column].mask(frame[column].isin(MISSING_VALUES))
    return frame
