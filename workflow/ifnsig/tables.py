"""Conventions shared by the project's own tables (DESeq2's columns keep DESeq2's names).

- Benjamini-Hochberg adjusted p-values are in a column named ``fdr``; a DE table keeps
  DESeq2's ``padj`` beside ``pvalue``, as DESeq2 users know it.
- A cell that lists several items (genes, flags, covariates) separates them with ``;`` and
  no space, so ``cell.split(";")`` gives the items back.
- Counts are integer columns of their own (``n_overlap`` and ``n_genes``, never ``5/12``,
  which spreadsheets read as a date).
- A p-value estimated from permutations is at least 1 / (permutations + 1): with 1,000
  permutations none of which beats the observed statistic, p < 0.001, not 0
  (Phipson and Smyth 2010, Stat Appl Genet Mol Biol 9:39).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LIST_SEPARATOR = ";"
FDR = "fdr"


def join_list(items) -> str:
    """One table cell listing ``items``."""
    return LIST_SEPARATOR.join(str(item) for item in items)


def floor_permutation_pvalues(pvalues: pd.Series, permutations: int) -> pd.Series:
    """P-values raised to the smallest a permutation test of ``permutations`` can give."""
    floor = 1.0 / (int(permutations) + 1)
    values = pd.to_numeric(pvalues, errors="coerce")
    return values.where(values.isna(), np.maximum(values, floor))
