import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import shared_data

from ifnsig import data, genesets, scores


def test_median_fold_change_matches_hand_computation():
    values = np.array([[1.0, 3.0], [3.0, 5.0], [8.0, 11.0]])
    reference = np.array([True, True, False])
    # Reference medians 2 and 4; the third sample's fold changes are 9/3 and 12/5.
    assert scores.median_fold_change(values, reference)[2] == pytest.approx((3 + 2.4) / 2)


def test_zscore_sum_and_mean():
    values = np.array([[0.0, 10.0], [2.0, 14.0], [4.0, 18.0]])
    reference = np.array([True, True, False])
    # Reference means 1, 12 and SDs sqrt(2), sqrt(8).
    expected = (4 - 1) / np.sqrt(2) + (18 - 12) / np.sqrt(8)
    assert scores.zscore_sum(values, reference)[2] == pytest.approx(expected)
    assert scores.zscore_mean(values, reference)[2] == pytest.approx(expected / 2)


def test_reference_mask_fallback_warns(caplog):
    obs = pd.DataFrame({"group": ["patient"] * 3, "timepoint": ["baseline", "m3", "baseline"]})
    with pytest.raises(ValueError, match="at least 2 samples"):
        scores.reference_mask(obs, "controls", "control", "baseline")
    mask = scores.reference_mask(obs, "baseline", "control", "baseline")
    assert mask.tolist() == [True, False, True]
    assert "not to healthy people" in caplog.text


def kang_cohort() -> ad.AnnData:
    folder = shared_data("kang2018_ifnb")
    counts = pd.read_csv(folder / "pseudobulk_counts_donor_x_stim.csv.gz", index_col=0)
    sheet = pd.read_csv(folder / "pseudobulk_samples.csv", index_col=0, dtype={"donor": str})
    sheet = sheet.loc[counts.columns]
    samples = pd.DataFrame(
        {
            "sample": sheet.index,
            "subject": "D" + sheet["donor"],
            "group": np.where(sheet["stim"] == "CTRL", "control", "patient"),
            "timepoint": np.where(sheet["stim"] == "CTRL", "baseline", "stim"),
        },
        index=sheet.index,
    )
    adata = data.build_anndata(counts, samples)
    adata = data.filter_genes(adata, 10, 3)
    return data.normalize(adata, n_cpus=1)


@pytest.fixture(scope="module")
def kang():
    return kang_cohort()


def paired_deltas(table: pd.DataFrame) -> pd.Series:
    wide = table.pivot(index="subject", columns="timepoint", values="score")
    return wide["stim"] - wide["baseline"]


def test_kang_every_method_scores_stim_above_ctrl_in_every_donor(kang):
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT)
    aliases = genesets.read_aliases(genesets.SHIPPED_ALIASES)
    matched, _ = genesets.match_gene_sets(
        {k: sets[k] for k in ["RICE2013_6", "NIH28", "FENG2006_5", "IFNG_BIASED"]},
        kang.var["symbol"],
        aliases,
    )
    reference = (kang.obs["group"] == "control").to_numpy()
    table = scores.score_samples(kang, matched, list(scores.METHODS), reference)
    separation = {}
    for (signature, method), group in table.groupby(["signature", "method"]):
        deltas = paired_deltas(group)
        if signature != "IFNG_BIASED":
            assert (deltas > 0).sum() == 8, (signature, method, deltas)
        # Separation in units of the control SD, comparable across methods.
        control_sd = group.loc[group["reference"], "score"].std()
        separation[signature, method] = deltas.mean() / control_sd
    for method in scores.METHODS:
        assert separation["RICE2013_6", method] > separation["IFNG_BIASED", method]
        assert separation["NIH28", method] > separation["IFNG_BIASED", method]


@pytest.mark.parametrize("group", ["patient", "control"])
def test_scores_do_not_move_with_library_size(kang, group):
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT, include=["NIH28"])
    matched, _ = genesets.match_gene_sets(sets, kang.var["symbol"])
    reference = (kang.obs["group"] == "control").to_numpy()
    before = scores.score_samples(kang, matched, list(scores.METHODS), reference)
    deeper = kang.copy()
    deeper.layers["counts"] = deeper.layers["counts"].copy()
    index = int(np.flatnonzero(kang.obs["group"] == group)[1])
    deeper.layers["counts"][index] *= 10
    data.normalize(deeper, n_cpus=1)
    after = scores.score_samples(deeper, matched, list(scores.METHODS), reference)
    for method in scores.METHODS:
        b = before[before["method"] == method]["score"].to_numpy()
        a = after[after["method"] == method]["score"].to_numpy()
        assert abs(a[index] - b[index]) < 0.05 * b.std(), method
