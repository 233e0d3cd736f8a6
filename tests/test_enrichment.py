import numpy as np
import pandas as pd

from ifnsig import enrichment


def test_ranking_keeps_the_gene_id_with_most_reads_per_symbol_and_drops_missing():
    table = pd.DataFrame(
        {
            "gene_id": ["ENSG1", "ENSG2", "ENSG3", "ENSG4"],
            "symbol": ["A", "A", "B", "C"],
            "baseMean": [50.0, 10.0, 20.0, 30.0],
            "stat": [1.0, -5.0, 2.0, np.nan],
        }
    )
    rank = enrichment.ranking(table)
    assert rank.to_dict() == {"B": 2.0, "A": 1.0}


def test_over_representation_counts_a_repeated_symbol_once():
    genes = [f"G{i}" for i in range(200)]
    de = pd.DataFrame(
        {
            "symbol": genes + ["G0"],
            "baseMean": [100.0] * 200 + [1.0],
            "log2FoldChange": [1.0] * 20 + [0.0] * 180 + [-1.0],
            "padj": [0.001] * 20 + [0.9] * 180 + [0.001],
        }
    )
    result = enrichment.over_representation(de, {"UP": genes[:20] + genes[100:105]}, alpha=0.1)
    assert set(result["direction"]) == {"up"}


def test_over_representation_without_hits_is_quiet(capfd):
    genes = [f"G{i}" for i in range(50)]
    de = pd.DataFrame(
        {"symbol": genes, "baseMean": 10.0, "log2FoldChange": 1.0, "padj": [0.001] + [0.9] * 49}
    )
    result = enrichment.over_representation(de, {"S": genes[10:20]}, alpha=0.1)
    assert result.empty
    assert "No hits" not in capfd.readouterr().err


def test_restrict_to_translates_aliases():
    sets = {"S": ["DDX58", "ISG15", "NOPE"]}
    out = enrichment.restrict_to(sets, {"RIGI", "ISG15"}, {"DDX58": "RIGI"})
    assert out == {"S": ["RIGI", "ISG15"]}


def test_over_representation_uses_tested_genes_as_background():
    genes = [f"G{i}" for i in range(200)]
    de = pd.DataFrame(
        {
            "symbol": genes,
            "log2FoldChange": [1.0] * 20 + [0.0] * 180,
            "padj": [0.001] * 20 + [0.9] * 180,
        }
    )
    sets = {"UP": genes[:20] + genes[100:105], "OTHER": genes[150:180]}
    result = enrichment.over_representation(de, sets, alpha=0.1)
    up = result[(result["direction"] == "up") & (result["gene_set"] == "UP")].iloc[0]
    assert up["pvalue"] < 1e-10
    assert up["n_genes"] == 25
    assert up["n_overlap"] == 20
    assert result["n_overlap"].dtype.kind == "i" and result["n_genes"].dtype.kind == "i"
    assert "overlap" not in result.columns and "fdr" in result.columns


def test_prerank_pvalues_are_floored_at_one_over_permutations_plus_one():
    genes = [f"G{i}" for i in range(300)]
    rank = pd.Series(np.linspace(5, -5, 300), index=genes)
    sets = {"TOP": genes[:15], "BOTTOM": genes[-15:], "MIDDLE": genes[140:160]}
    result = enrichment.prerank(rank, sets, permutations=20, min_size=5, seed=1)
    assert (result["pvalue"] >= 1 / 21).all() and (result["fdr"] >= 1 / 21).all()
    # The two sets tied at the floor come first, the stronger effects on top.
    assert set(result["gene_set"].head(2)) == {"TOP", "BOTTOM"}
    assert ";" in result.loc[0, "leading_edge"]


def test_prerank_keeps_running_scores_that_pandas_does_not_copy():
    import copy

    genes = [f"G{i}" for i in range(300)]
    rank = pd.Series(np.linspace(5, -5, 300), index=genes)
    sets = {"TOP": genes[:15], "BOTTOM": genes[-15:], "MIDDLE": genes[140:160]}
    result = enrichment.prerank(rank, sets, permutations=20, min_size=5, seed=1)
    kept = result.attrs["gseapy"]
    assert len(kept.results["TOP"]["RES"]) == 300 and len(kept.ranking) == 300
    # pandas deep-copies attrs at every operation on the frame: the same object comes back.
    assert copy.deepcopy(kept) is kept
    assert result.sort_values("nes").attrs["gseapy"] is kept


def test_list_cells_split_back_on_the_separator():
    from ifnsig import tables

    assert tables.join_list(["IFI27", "RSAD2"]).split(tables.LIST_SEPARATOR) == ["IFI27", "RSAD2"]
    floored = tables.floor_permutation_pvalues(pd.Series([0.0, 0.5, np.nan]), 999)
    assert floored.iloc[0] == 1 / 1000 and floored.iloc[1] == 0.5 and np.isnan(floored.iloc[2])
