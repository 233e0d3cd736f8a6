import numpy as np
import pandas as pd

from ifnsig import enrichment


def test_ranking_keeps_strongest_duplicate_symbol_and_drops_missing():
    table = pd.DataFrame({"symbol": ["A", "A", "B", "C"], "stat": [1.0, -5.0, 2.0, np.nan]})
    rank = enrichment.ranking(table)
    assert rank.to_dict() == {"B": 2.0, "A": -5.0}


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
