"""Gene-set enrichment of a DE table with gseapy, on local gene sets only (no network)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ifnsig.tables import LIST_SEPARATOR, floor_permutation_pvalues

log = logging.getLogger(__name__)

PRERANK_COLUMNS = ["gene_set", "n_genes", "es", "nes", "pvalue", "fdr", "fwer", "leading_edge"]
ORA_COLUMNS = [
    "direction", "gene_set", "n_overlap", "n_genes", "pvalue", "fdr", "odds_ratio", "genes"
]  # fmt: skip


def ranking(de: pd.DataFrame, column: str = "stat") -> pd.Series:
    """Genes ranked by the Wald statistic, one entry per symbol (:func:`one_row_per_symbol`).

    A likelihood-ratio statistic (``test`` column ``lrt``) has no sign: it is ranked as
    sign(log2 fold change) x sqrt(statistic), the signed root of the chi-square, so that
    sets still rank by direction. Genes without a statistic (all-zero or filtered by Cook's
    distance) are left out; ties are broken by symbol so the ranking, and the enrichment,
    are reproducible.
    """
    de = de.copy()
    if "test" in de.columns and (de["test"] == "lrt").all():
        de[column] = np.sign(de["log2FoldChange"]) * np.sqrt(de[column].clip(lower=0))
    table = one_row_per_symbol(de.dropna(subset=["symbol", column]))
    series = table.sort_values("symbol", kind="mergesort").set_index("symbol")[column]
    return series.astype(float).sort_values(ascending=False, kind="mergesort")


def one_row_per_symbol(de: pd.DataFrame) -> pd.DataFrame:
    """One row per symbol: of gene IDs sharing a symbol, the one with the highest baseMean.

    Ensembl and GENCODE give some symbols several gene IDs (readthrough and patch loci, PAR
    copies); gene sets name symbols, so each symbol takes part once, as the gene ID with the
    most reads (the rule of :func:`ifnsig.data.one_gene_per_symbol`); ties keep the first.
    """
    if "baseMean" not in de.columns or de["symbol"].is_unique:
        return de.drop_duplicates("symbol")
    order = de["baseMean"].fillna(-np.inf).to_numpy()
    keep = np.zeros(len(de), dtype=bool)
    keep[_highest_per_key(de["symbol"].astype(str).to_numpy(), order)] = True
    return de[keep]


def _highest_per_key(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row positions of the highest value of each key (the first one on ties)."""
    frame = pd.DataFrame({"key": keys, "value": values, "pos": np.arange(len(keys))})
    frame = frame.sort_values(["value", "pos"], ascending=[False, True], kind="mergesort")
    return np.sort(frame.drop_duplicates("key")["pos"].to_numpy())


def restrict_to(
    gene_sets: dict[str, list[str]], present: set[str], aliases: dict[str, str]
) -> dict[str, list[str]]:
    """Each set's genes present in the data, old symbols translated through ``aliases``."""
    restricted = {}
    for name, genes in gene_sets.items():
        found = [g if g in present else aliases.get(g) for g in genes]
        restricted[name] = list(dict.fromkeys(g for g in found if g in present))
    return restricted


def prerank(
    rank: pd.Series,
    gene_sets: dict[str, list[str]],
    permutations: int = 1000,
    min_size: int = 5,
    max_size: int = 500,
    seed: int = 0,
    threads: int = 1,
) -> pd.DataFrame:
    """Preranked GSEA (gseapy) of ``rank`` against local ``gene_sets``; tidy result.

    Each set's running enrichment score and hits, and the ranking, are kept in
    ``result.attrs["gseapy"]`` (a :class:`RunningScores`) for plotting. gseapy reports
    p = 0 (and FDR 0) when no permutation beats the observed score; both are floored at
    1 / (permutations + 1), the smallest p-value the permutations can support.
    """
    import gseapy

    sets = {k: v for k, v in gene_sets.items() if min_size <= len(set(v) & set(rank.index))}
    if not sets:
        log.warning("no gene set has %d or more genes in the ranking; nothing tested", min_size)
        return pd.DataFrame(columns=PRERANK_COLUMNS)
    result = gseapy.prerank(
        rnk=rank,
        gene_sets=sets,
        permutation_num=permutations,
        min_size=min_size,
        max_size=max_size,
        seed=seed,
        threads=threads,
        outdir=None,
        no_plot=True,
        verbose=False,
    )
    res = result.res2d.rename(
        columns={
            "Term": "gene_set",
            "ES": "es",
            "NES": "nes",
            "NOM p-val": "pvalue",
            "FDR q-val": "fdr",
            "FWER p-val": "fwer",
            "Lead_genes": "leading_edge",
        }
    )
    res["n_genes"] = res["gene_set"].map(lambda s: len(set(sets[s]) & set(rank.index)))
    for column in ["es", "nes", "pvalue", "fdr", "fwer"]:
        res[column] = pd.to_numeric(res[column], errors="coerce")
    for column in ["pvalue", "fdr", "fwer"]:
        res[column] = floor_permutation_pvalues(res[column], permutations)
    res["leading_edge"] = res["leading_edge"].map(
        lambda g: LIST_SEPARATOR.join(str(g).split(";")) if isinstance(g, str) else ""
    )
    # Ties (FDR floored alike) are ordered by the size of the effect, so the strongest
    # sets stay at the top of the table and of its plots.
    res = res.assign(_abs=-res["nes"].abs())
    res = res.sort_values(["fdr", "pvalue", "_abs", "gene_set"], kind="mergesort")
    res = res[PRERANK_COLUMNS]
    res = res.reset_index(drop=True)
    res.attrs["gseapy"] = RunningScores(result.results, result.ranking)
    return res


class RunningScores:
    """What the plots read of a gseapy prerank result: ``results`` (per set, its running
    enrichment score ``RES`` and ``hits``) and ``ranking``.

    Held in ``DataFrame.attrs``, which pandas deep-copies at every operation on the frame:
    a deep copy of gseapy's result (every set's genes and scores as Python lists) took most
    of the enrichment job's time on a small cohort. This is read-only, so its copy is itself.
    """

    def __init__(self, results: dict, ranking) -> None:
        self.results = results
        self.ranking = ranking

    def __deepcopy__(self, memo: dict) -> RunningScores:
        return self


def over_representation(
    de: pd.DataFrame,
    gene_sets: dict[str, list[str]],
    alpha: float = 0.1,
    min_size: int = 5,
) -> pd.DataFrame:
    """Hypergeometric over-representation of significant up and down genes.

    The background is the genes that were tested (padj not missing), as recommended for
    RNA-seq ORA; it uses gseapy's offline ``enrich`` with local gene sets.
    """
    import gseapy

    tested = one_row_per_symbol(de.dropna(subset=["padj"]))
    background = sorted(set(tested["symbol"]))
    sets = {k: v for k, v in gene_sets.items() if len(set(v) & set(background)) >= min_size}
    frames = []
    for direction, sign in [("up", 1), ("down", -1)]:
        genes = sorted(
            set(
                tested.loc[
                    (tested["padj"] < alpha) & (np.sign(tested["log2FoldChange"]) == sign), "symbol"
                ]
            )
        )
        # gseapy skips sets without a hit anyway; asked with none, it logs an ERROR ("No hits
        # returned") although nothing failed, so such a direction is skipped here.
        hit = {k: v for k, v in sets.items() if set(v) & set(genes)}
        if not hit:
            log.info(
                "ORA %s: no gene set holds any of the %d significant genes", direction, len(genes)
            )
            continue
        result = gseapy.enrich(
            gene_list=genes,
            gene_sets=hit,
            background=background,
            outdir=None,
            no_plot=True,
            cutoff=1.0,
        )
        # gseapy returns an empty list, not a frame, when no set overlaps the genes.
        if not isinstance(result.results, pd.DataFrame) or result.results.empty:
            continue
        res = result.results.rename(
            columns={
                "Term": "gene_set",
                "P-value": "pvalue",
                "Adjusted P-value": "fdr",
                "Odds Ratio": "odds_ratio",
                "Genes": "genes",
            }
        )
        res["direction"] = direction
        # gseapy lists the overlap in set order, which changes with Python's string hashing
        # from run to run; sorted, the table is byte-identical between runs.
        res["genes"] = res["genes"].map(lambda g: LIST_SEPARATOR.join(sorted(g.split(";"))))
        res["n_genes"] = res["gene_set"].map(lambda s: len(set(sets[s]) & set(background)))
        # gseapy's "Overlap" is text such as 5/12; two integer columns instead.
        res["n_overlap"] = res["genes"].map(lambda g: len(g.split(LIST_SEPARATOR)))
        frames.append(res)
    if not frames:
        return pd.DataFrame(columns=ORA_COLUMNS)
    out = pd.concat(frames, ignore_index=True)[ORA_COLUMNS]
    return out.sort_values(["direction", "pvalue", "gene_set"], kind="mergesort").reset_index(
        drop=True
    )
