"""The genes DESeq2's size factors are computed from (``de.size_factor_genes``).

Median of ratios assumes that most genes do not change between samples, or change both
ways in balance. After JAK inhibition the ISGs fall one way in many patients, which pulls
the median ratio of the follow-up samples down: every unchanged gene then reads as slightly
up, a fixed bias that large paired cohorts turn into false calls (README, "DE calibration
as the paired cohort grows"). DESeq2's remedy is ``estimateSizeFactors(dds, controlGenes =
)``: in ``estimateSizeFactorsForMatrix`` the log geometric means are those of all genes and
each sample's median log ratio is taken over the control genes alone (those with a finite
mean). pydeseq2's ``fit_size_factors(control_genes=)`` computes the same, and so does the
DE split by genes (:func:`ifnsig.de.shards.fit_size_factors`).

:func:`size_factor_genes` is the one place the setting becomes the control genes: every
gene (``all``, DESeq2's default), every gene but those of the scored signatures
(``exclude_signatures``), or the genes listed in a file (IDs or symbols, one a line).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ifnsig.config_files import origin
from ifnsig.errors import InputError
from ifnsig.genesets import find_symbols
from ifnsig.io import require_file

KEY = "de.size_factor_genes"
ALL = "all"
EXCLUDE_SIGNATURES = "exclude_signatures"
#: Fewest control genes the size factors may rest on: a median over fewer is noisy.
MIN_GENES = 10


def is_gene_list(setting: str) -> bool:
    """Whether ``de.size_factor_genes`` names a file of genes."""
    return setting not in (ALL, EXCLUDE_SIGNATURES)


def read_gene_list(path: str | Path) -> list[str]:
    """The genes of a size-factor gene list: one gene ID or symbol a line (the first
    tab-separated field), blank lines and lines starting with ``#`` left out.

    Raises
    ------
    InputError
        When the file does not exist or lists fewer than :data:`MIN_GENES` genes.
    """
    path = require_file(path, "size-factor gene list", KEY)
    genes = []
    for line in path.read_text(encoding="utf-8").splitlines():
        field = line.split("\t", 1)[0].strip()
        if field and not field.startswith("#"):
            genes.append(field)
    genes = list(dict.fromkeys(genes))
    if len(genes) < MIN_GENES:
        raise InputError(
            f"{path}: the size-factor gene list ({KEY} in {origin(KEY)}) names {len(genes)} "
            f"gene(s); list at least {MIN_GENES} genes known not to change, one gene ID or "
            "symbol a line, or set it to all."
        )
    return genes


def check_setting(config: dict) -> None:
    """Parse-time check of ``de.size_factor_genes``: a file it names is there and lists
    enough genes (which of them the cohort has is known once the genes are filtered)."""
    setting = config["de"]["size_factor_genes"]
    if is_gene_list(setting):
        read_gene_list(setting)


def size_factor_genes(
    setting: str,
    var: pd.DataFrame,
    signatures: Mapping[str, Iterable[str]] | None = None,
    listed: Iterable[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> np.ndarray | None:
    """The control genes of the size factors: a mask over ``var``'s rows, None for all.

    Parameters
    ----------
    setting
        ``de.size_factor_genes``: ``all``, ``exclude_signatures`` or a file's path.
    var
        The cohort's genes (index gene IDs, column ``symbol``).
    signatures
        For ``exclude_signatures``: the scored signatures matched to ``var["symbol"]``
        (:func:`ifnsig.genesets.matched_signatures`, as the scores match them); each gene
        of them is left out.
    listed
        For a file: its genes (:func:`read_gene_list`), each a gene ID of ``var`` or a
        symbol (matched through ``aliases`` as gene sets are, every ID with that symbol).

    Raises
    ------
    InputError
        When no listed gene is in the cohort, or fewer than :data:`MIN_GENES` genes remain.
    """
    if setting == ALL:
        return None
    symbols = var["symbol"].astype(str)
    if setting == EXCLUDE_SIGNATURES:
        excluded = {gene for genes in (signatures or {}).values() for gene in genes}
        mask = ~symbols.isin(excluded).to_numpy()
        what = f"of the {len(var)} genes, {int(mask.sum())} remain without the scored signatures"
    else:
        listed = list(listed or [])
        ids = pd.Index(var.index.astype(str))
        known = set(ids)
        rest = [gene for gene in listed if gene not in known]
        found = find_symbols(rest, symbols, aliases)
        mask = (ids.isin(listed) | symbols.isin(found)).to_numpy()
        if not mask.any():
            raise InputError(
                f"{setting}: none of the {len(listed)} genes of the size-factor gene list "
                f"({KEY} in {origin(KEY)}) is among the {len(var)} genes of the cohort after "
                "filtering; list gene IDs or symbols as the count matrix names them."
            )
        what = f"{int(mask.sum())} of the {len(var)} genes are listed in {setting}"
    if mask.sum() < MIN_GENES:
        raise InputError(
            f"{origin(KEY)}: {KEY} is {setting}, but {what}; the size factors need at least "
            f"{MIN_GENES} genes, so list more genes or set it to all."
        )
    return mask


def check_usable(control: np.ndarray, finite: np.ndarray, n_samples: int) -> None:
    """Enough control genes with a count in every sample of a fit (a finite log geometric
    mean: the genes DESeq2's median runs over).

    Raises
    ------
    InputError
        When fewer than :data:`MIN_GENES` of them are.
    """
    n_usable = int((control & finite).sum())
    if n_usable < MIN_GENES:
        raise InputError(
            f"{origin(KEY)}: only {n_usable} of the {int(control.sum())} genes {KEY} chooses "
            f"have a count above zero in all {n_samples} samples of a fit, and the size factors "
            f"need at least {MIN_GENES}; list more (well expressed) genes or set it to all."
        )
