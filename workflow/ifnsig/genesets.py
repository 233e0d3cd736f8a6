"""Read gene sets (GMT), symbol aliases, and match gene sets to a dataset's gene symbols.

The project ships its interferon gene sets in ``resources/genesets`` (see the README there);
users may add their own GMT files. Every problem in those files is reported as an
:class:`ifnsig.errors.InputError` whose message names the file, the line and the fix.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from ifnsig.errors import InputError
from ifnsig.tables import LIST_SEPARATOR

__all__ = [
    "SHIPPED_ALIASES",
    "SHIPPED_DIR",
    "SHIPPED_GMT",
    "SHIPPED_SIGNATURES",
    "TYPE2_SHIPPED",
    "GeneSetCoverageWarning",
    "GeneSets",
    "find_symbols",
    "ifn_sets",
    "load_gene_sets",
    "match_gene_sets",
    "matched_signatures",
    "read_aliases",
    "read_gmt",
    "shipped_genesets_dir",
]

# workflow/ifnsig/genesets.py -> repository root; the package is installed editable, so the
# resources stay beside the source rather than inside the wheel.
SHIPPED_DIR: Path = Path(__file__).resolve().parents[2] / "resources" / "genesets"
SHIPPED_GMT: Path = SHIPPED_DIR / "ifn_signatures.gmt"
SHIPPED_ALIASES: Path = SHIPPED_DIR / "symbol_aliases.tsv"
SHIPPED_SIGNATURES: Path = SHIPPED_DIR / "signatures.tsv"

#: The shipped set of IFN-gamma-biased genes, contrasted with the type I signatures.
TYPE2_SHIPPED = "IFNG_BIASED"

COVERAGE_COLUMNS = ["gene_set", "n_genes", "n_found", "fraction_found", "missing"]


class GeneSetCoverageWarning(UserWarning):
    """A gene set has fewer genes in the dataset than the minimum asked for."""


class GeneSets(dict):
    """A ``dict`` of gene-set name to gene symbols that remembers the file of each set.

    Behaves exactly like ``dict[str, list[str]]``; ``origin`` maps a set name to the file it
    was read from, so that later errors can tell the user which file to fix.
    """

    def __init__(self, *args, origin: Mapping[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.origin: dict[str, str] = dict(origin or {})


def shipped_genesets_dir() -> Path:
    """Return the folder of the gene sets shipped with the project.

    Returns
    -------
    pathlib.Path
        ``<repository>/resources/genesets``, located relative to this package.

    Raises
    ------
    InputError
        If the folder is missing (e.g. the package was installed without the repository).
    """
    if not SHIPPED_DIR.is_dir():
        raise InputError(
            f"The shipped gene-set folder {SHIPPED_DIR} does not exist; install ifnsig in "
            "editable mode from a full checkout of the repository (pip install -e .)."
        )
    return SHIPPED_DIR


def _read_lines(path: Path, what: str) -> list[str]:
    """Return the lines of a UTF-8 text file, tolerating a BOM and Windows line endings."""
    if not path.is_file():
        raise InputError(f"The {what} {path} does not exist; check the path in the configuration.")
    try:
        # utf-8-sig drops a leading BOM, which Excel and some Windows editors add.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"The {what} {path} is not valid UTF-8 (byte {exc.start}); save it as UTF-8 text."
        ) from exc
    # splitlines() handles \n, \r\n and lone \r alike.
    return text.splitlines()


def read_gmt(path: str | PathLike[str]) -> GeneSets:
    """Read a GMT gene-set file.

    Each non-blank line is ``NAME <tab> DESCRIPTION <tab> GENE <tab> GENE ...``. Lines that
    start with ``#`` are treated as comments. Surrounding whitespace and empty trailing fields
    are ignored, and a gene listed twice in one set is kept once (first position).

    Parameters
    ----------
    path : str or os.PathLike
        The GMT file (UTF-8; a BOM and Windows line endings are accepted).

    Returns
    -------
    GeneSets
        Set name -> list of gene symbols in file order; ``.origin`` maps each name to ``path``.

    Raises
    ------
    InputError
        If the file is missing or not UTF-8, has no gene sets, or a line has fewer than three
        tab-separated fields, an empty name, no genes, or a set name used before.
    """
    path = Path(path)
    sets = GeneSets()
    first_line: dict[str, int] = {}
    for lineno, raw in enumerate(_read_lines(path, "gene-set file"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in raw.split("\t")]
        if len(fields) < 3:
            raise InputError(
                f"Line {lineno} of gene-set file {path} has {len(fields)} tab-separated "
                "field(s) but a GMT line needs at least 3 (NAME, DESCRIPTION, GENE...); "
                "separate the fields with tabs, not spaces."
            )
        name = fields[0]
        if not name:
            raise InputError(
                f"Line {lineno} of gene-set file {path} has an empty gene-set name; "
                "put the set's name in the first tab-separated field."
            )
        if name in first_line:
            raise InputError(
                f"Line {lineno} of gene-set file {path} repeats the gene-set name '{name}' "
                f"first used on line {first_line[name]}; give each set a unique name."
            )
        genes = list(dict.fromkeys(g for g in fields[2:] if g))
        if not genes:
            raise InputError(
                f"Line {lineno} of gene-set file {path} (set '{name}') lists no genes; "
                "add the gene symbols after the description, separated by tabs."
            )
        first_line[name] = lineno
        sets[name] = genes
        sets.origin[name] = str(path)
    if not sets:
        raise InputError(
            f"The gene-set file {path} contains no gene sets; "
            "add lines of the form NAME<tab>DESCRIPTION<tab>GENE..."
        )
    return sets


def read_aliases(path: str | PathLike[str]) -> dict[str, str]:
    """Read a table of gene-symbol aliases.

    The file is tab-separated with the header ``alias<tab>symbol``; each row maps an old or
    alternative symbol to the current (HGNC) symbol.

    Parameters
    ----------
    path : str or os.PathLike
        The alias table (UTF-8; a BOM and Windows line endings are accepted).

    Returns
    -------
    dict of str to str
        Alias -> current symbol.

    Raises
    ------
    InputError
        If the header is wrong, a row does not have two fields, an alias maps to two different
        symbols, or a target symbol is itself listed as an alias (a chain).
    """
    path = Path(path)
    lines = _read_lines(path, "alias table")
    rows = [(i, ln) for i, ln in enumerate(lines, start=1) if ln.strip()]
    if not rows or [f.strip() for f in rows[0][1].split("\t")] != ["alias", "symbol"]:
        raise InputError(
            f"Line {rows[0][0] if rows else 1} of alias table {path} must be the header "
            "'alias<tab>symbol'; add that header line."
        )
    aliases: dict[str, str] = {}
    for lineno, raw in rows[1:]:
        fields = [f.strip() for f in raw.split("\t")]
        if len(fields) != 2 or not all(fields):
            raise InputError(
                f"Line {lineno} of alias table {path} does not have exactly two non-empty "
                "tab-separated fields; write it as ALIAS<tab>SYMBOL."
            )
        alias, symbol = fields
        if alias == symbol:
            continue
        if aliases.get(alias, symbol) != symbol:
            raise InputError(
                f"Line {lineno} of alias table {path} maps '{alias}' to '{symbol}' but an "
                f"earlier line maps it to '{aliases[alias]}'; keep one mapping per alias."
            )
        aliases[alias] = symbol
    # Mapping is applied once, so a target that is itself an alias would silently stop halfway.
    chained = sorted(s for s in set(aliases.values()) if s in aliases)
    if chained:
        raise InputError(
            f"Alias table {path} uses {', '.join(chained)} both as a target symbol and as an "
            "alias; map every alias directly to the current symbol."
        )
    return aliases


def load_gene_sets(
    paths: Sequence[str | PathLike[str]] | str | PathLike[str],
    include: Iterable[str] | None = None,
) -> GeneSets:
    """Read and combine several GMT files, optionally keeping only some sets.

    Parameters
    ----------
    paths : sequence of path-like, or one path
        GMT files; their sets are combined. A set name found in two files is accepted only if
        both define the same genes.
    include : iterable of str, optional
        Names of the sets to keep, in the order wanted. ``None`` keeps all sets, in file order.

    Returns
    -------
    GeneSets
        Set name -> gene symbols, with ``.origin`` naming each set's file.

    Raises
    ------
    InputError
        If no file is given, a file does not parse, a set name is defined differently in two
        files, or ``include`` names a set that none of the files defines.
    """
    if isinstance(paths, (str, PathLike)):
        paths = [paths]
    if not paths:
        raise InputError(
            "No gene-set file was given; list at least one GMT file in the configuration."
        )
    combined = GeneSets()
    for path in paths:
        for name, genes in (sets := read_gmt(path)).items():
            if name in combined and combined[name] != genes:
                raise InputError(
                    f"Gene set '{name}' is defined differently in {combined.origin[name]} and "
                    f"{sets.origin[name]}; rename one of them."
                )
            if name not in combined:
                combined[name] = genes
                combined.origin[name] = sets.origin[name]
    if include is None:
        return combined
    # A lone name would otherwise be iterated letter by letter.
    wanted = list(dict.fromkeys([include] if isinstance(include, str) else include))
    unknown = [n for n in wanted if n not in combined]
    if unknown:
        files = ", ".join(str(p) for p in paths)
        raise InputError(
            f"Gene set(s) {', '.join(unknown)} are not in {files}; choose from: "
            f"{', '.join(combined)}."
        )
    return GeneSets(
        {n: combined[n] for n in wanted}, origin={n: combined.origin[n] for n in wanted}
    )


def _current_symbols(symbols: Iterable[str], aliases: Mapping[str, str]) -> tuple[dict, int]:
    """Current symbol -> the dataset's spelling, and the number of symbols; an exact current
    symbol wins over an alias of it."""
    present: dict[str, str] = {}
    n_symbols = 0
    for sym in symbols:
        if not isinstance(sym, str) or not sym:
            continue
        n_symbols += 1
        current = aliases.get(sym, sym)
        if current not in present or sym == current:
            present[current] = sym
    return present, n_symbols


def find_symbols(
    genes: Iterable[str], symbols: Iterable[str], aliases: Mapping[str, str] | None = None
) -> list[str]:
    """The dataset symbols of ``genes``, matched as :func:`match_gene_sets` matches a set
    (through ``aliases``, under the dataset's spelling); genes not found are left out."""
    aliases = dict(aliases or {})
    present, _ = _current_symbols(symbols, aliases)
    current = dict.fromkeys(aliases.get(g, g) for g in genes)
    return list(dict.fromkeys(present[c] for c in current if c in present))


def match_gene_sets(
    gene_sets: Mapping[str, Sequence[str]],
    symbols: Iterable[str],
    aliases: Mapping[str, str] | None = None,
    min_genes: int = 3,
    origins: Mapping[str, str] | None = None,
) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """Match gene sets to the gene symbols of a dataset, allowing for renamed symbols.

    Both the set genes and the dataset symbols are first translated to current symbols
    through ``aliases``, so a set written with ``DDX58`` finds ``RIGI`` in the data and a
    dataset still using ``WARS`` is found by a set written with ``WARS1``. Matched genes are
    returned under the dataset's own spelling. When a dataset holds both an old and a current
    symbol of one gene, the current one is used.

    A set with fewer than ``min_genes`` genes found is kept but triggers a
    :class:`GeneSetCoverageWarning` through :func:`warnings.warn` (not the ``logging``
    module), which states the counts; a set with no gene found is an error.

    Parameters
    ----------
    gene_sets : mapping of str to sequence of str
        Set name -> gene symbols, e.g. from :func:`load_gene_sets`.
    symbols : iterable of str
        The dataset's gene symbols (e.g. the index of a count matrix).
    aliases : mapping of str to str, optional
        Alias -> current symbol, e.g. from :func:`read_aliases`.
    min_genes : int, default 3
        Fewest genes found for a set to be matched without a warning.
    origins : mapping of str to str, optional
        Set name -> file it came from, used in messages. Defaults to ``gene_sets.origin``
        when ``gene_sets`` is a :class:`GeneSets`.

    Returns
    -------
    matched : dict of str to list of str
        Set name -> dataset symbols found, in the set's order, without duplicates.
    coverage : pandas.DataFrame
        One row per set with columns ``gene_set``, ``n_genes`` (distinct genes after alias
        translation), ``n_found``, ``fraction_found`` and ``missing`` (the set's own symbols
        not found, sorted and comma-separated; empty string when none).

    Raises
    ------
    InputError
        If the dataset has no symbols, ``min_genes`` is below 1, or a set has no gene in the
        dataset.
    """
    aliases = dict(aliases or {})
    if origins is None:
        origins = getattr(gene_sets, "origin", {})
    if min_genes < 1:
        raise InputError(f"min_genes is {min_genes}; set it to 1 or more in the configuration.")

    present, n_symbols = _current_symbols(symbols, aliases)
    if n_symbols == 0:
        raise InputError(
            "The dataset has no gene symbols to match gene sets against; check that the "
            "count matrix has gene symbols as its row names."
        )

    matched: dict[str, list[str]] = {}
    rows = []
    for name, genes in gene_sets.items():
        current_genes = list(dict.fromkeys(aliases.get(g, g) for g in genes))
        found = list(dict.fromkeys(present[c] for c in current_genes if c in present))
        missing = sorted({g for g in genes if aliases.get(g, g) not in present})
        source = f" (from {origins[name]})" if name in origins else ""
        if not found:
            raise InputError(
                f"Gene set '{name}'{source} has none of its {len(current_genes)} genes among "
                f"the {n_symbols} gene symbols of the dataset; check that the data use HGNC "
                "gene symbols (not Ensembl IDs) or add the missing names to the alias table."
            )
        if len(found) < min_genes:
            if len(found) == len(current_genes):
                what = (
                    f" has {len(found)} genes, all found in the dataset, fewer than the "
                    f"minimum {min_genes}"
                )
            else:
                what = (
                    f": only {len(found)} of {len(current_genes)} genes found in the dataset "
                    f"(minimum {min_genes})"
                )
            warnings.warn(
                f"Gene set '{name}'{source}{what}; its score rests on few genes.",
                GeneSetCoverageWarning,
                stacklevel=2,
            )
        matched[name] = found
        rows.append(
            {
                "gene_set": name,
                "n_genes": len(current_genes),
                "n_found": len(found),
                "fraction_found": len(found) / len(current_genes),
                "missing": LIST_SEPARATOR.join(missing),
            }
        )
    coverage = pd.DataFrame(rows, columns=COVERAGE_COLUMNS)
    return matched, coverage


def matched_signatures(
    names: Sequence[str],
    symbols: Iterable[str],
    gene_set_files: Sequence[str | PathLike[str]],
    aliases_file: str | PathLike[str],
    min_genes: int = 3,
) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """The signatures ``names``, read from ``gene_set_files``, matched to a cohort's symbols.

    The scoring stage and its coverage check both call this: a signature with none of its
    genes in the data raises an InputError naming it and its file; one with fewer than
    ``min_genes`` found warns with the count (:func:`match_gene_sets`).
    """
    sets = load_gene_sets(gene_set_files, include=names)
    return match_gene_sets(sets, symbols, read_aliases(aliases_file), min_genes=min_genes)


def ifn_sets(sets: Mapping[str, Sequence[str]]) -> list[str]:
    """The type I IFN sets among ``sets`` (the shipped GMT without the IFN-gamma-biased one)."""
    return [name for name in sets if name != TYPE2_SHIPPED]


def gene_set_titles(paths: Sequence[str | PathLike[str]] | str | PathLike[str]) -> dict[str, str]:
    """Set name -> the DESCRIPTION field of its GMT line, for titling plots.

    The Li 2014 blood modules not in the files get their title from the BTM package.
    """
    from BTM.btm2013 import ModuleDict

    titles = {}
    for title in ModuleDict:
        match = re.search(r"^(.*?)\s*\((M[\d.]+)\)\s*$", title)
        if match:
            titles[f"LI.{match.group(2)}"] = match.group(1)
    for path in [paths] if isinstance(paths, str | PathLike) else paths:
        for raw in _read_lines(Path(path), "gene-set file"):
            fields = [f.strip() for f in raw.split("\t")]
            if len(fields) >= 3 and fields[0] and not fields[0].startswith("#"):
                titles[fields[0]] = fields[1]
    return titles


def li2014_modules() -> dict[str, list[str]]:
    """All 346 blood transcription modules of Li et al. (Nat Immunol 2014), keyed ``LI.M<id>``.

    Read from the MIT-licensed ``BTM`` package by the modules' author (installed with
    ifnsig), so nothing is downloaded. The module title is dropped from the key to match
    the IDs of the IFN modules in the shipped GMT.
    """
    from BTM.btm2013 import ModuleDict

    modules = {}
    for title, genes in ModuleDict.items():
        match = re.search(r"\((M[\d.]+)\)\s*$", title)
        key = f"LI.{match.group(1)}" if match else f"LI.{title}"
        modules[key] = sorted(set(genes))
    return modules
