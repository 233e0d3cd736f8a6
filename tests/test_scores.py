import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, run_stage, shared_data
from scipy import stats
from sklearn.metrics import roc_auc_score

from ifnsig import data, genesets, scores
from ifnsig.errors import InputError
from ifnsig.reference import FILES as REFERENCE_FILES
from ifnsig.settings import aliases_file, score_gene_set_files
from ifnsig.simulate import CohortSpec, simulate_cohort
from ifnsig.validation import validate_config

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("scores")

TYPE1 = ["RICE2013_6", "NIH28", "FENG2006_5"]
# The signature methods; module_activity is meant for co-expression modules and is tested on
# its own below.
SIGNATURE_METHODS = [m for m in scores.METHODS if m != "module_activity"]


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


def test_singscore_matches_hand_computation():
    values = np.array([[5.0, 1.0, 3.0, 3.0, 10.0]])
    result = scores.singscore(values, {"top": np.array([0, 4]), "tied": np.array([2, 3])})
    # N = 5, k = 2: bounds (k + 1) / 2 = 1.5 and (2N - k + 1) / 2 = 4.5.
    # 'top' ranks 4 and 5 (mean 4.5) -> the maximum, 0.5 after centring.
    assert result["top"][0] == pytest.approx(0.5)
    # The tied 3s both take the minimum rank 2 (singscore's rankGenes default).
    assert result["tied"][0] == pytest.approx((2 - 1.5) / 3 - 0.5)


def test_singscore_equals_rank_formula_and_ignores_other_samples():
    rng = np.random.default_rng(1)
    values = np.round(rng.gamma(1.0, 50.0, size=(30, 400)))  # integers: many ties
    cols = {"a": rng.choice(400, 12, replace=False), "b": rng.choice(400, 3, replace=False)}
    together = scores.singscore(values, cols, chunk=7)
    ranks = stats.rankdata(values, axis=1, method="min")
    for name, c in cols.items():
        k, n = len(c), values.shape[1]
        expected = (ranks[:, c].mean(axis=1) - (k + 1) / 2) / (n - k) - 0.5
        np.testing.assert_allclose(together[name], expected)
    alone = scores.singscore(values[[4]], cols)
    assert alone["a"][0] == together["a"][4]


def test_a_symbol_with_two_gene_ids_is_scored_once_from_the_better_measured_one():
    # GENCODE-style annotation: IFI27 has two gene IDs, the first with far fewer reads.
    rng = np.random.default_rng(2)
    normalized = rng.gamma(5.0, 20.0, size=(8, 6))
    normalized[:, 0] = normalized[:, 1] * 0.01  # the poorly measured copy, first
    symbols = ["IFI27", "IFI27", "ISG15", "RSAD2", "ACTB", "GAPDH"]
    names = [f"S{i}" for i in range(8)]
    obs = pd.DataFrame(
        {"sample": names, "subject": names, "group": ["control"] * 4 + ["patient"] * 4},
        index=names,
    ).assign(timepoint="baseline")
    adata = ad.AnnData(
        np.zeros((8, 6)),
        obs=obs,
        var=pd.DataFrame({"symbol": symbols}, index=[f"ENSG{i}" for i in range(6)]),
    )
    adata.layers["normalized"] = normalized
    adata.layers["vst"] = np.log2(normalized + 1)
    kept = scores.scoring_symbols(adata)
    assert list(kept) == ["", "IFI27", "ISG15", "RSAD2", "ACTB", "GAPDH"]
    reference = np.array([True] * 4 + [False] * 4)
    sets = {"IFN": ["IFI27", "ISG15", "RSAD2"]}
    table = scores.score_samples(adata, sets, ["zscore_mean", "median_fold_change"], reference)
    # The same as scoring a cohort that holds only the better-measured gene ID.
    alone = scores.score_samples(adata[:, [1, 2, 3, 4, 5]].copy(), sets,
                                 ["zscore_mean", "median_fold_change"], reference)  # fmt: skip
    pd.testing.assert_frame_equal(table, alone)


def test_reference_mask_fallback_warns(caplog):
    obs = pd.DataFrame({"group": ["patient"] * 3, "timepoint": ["baseline", "m3", "baseline"]})
    with pytest.raises(ValueError, match="at least 2 samples"):
        scores.reference_mask(obs, "controls", "control", "baseline")
    mask = scores.reference_mask(obs, "baseline", "control", "baseline")
    assert mask.tolist() == [True, False, True]
    assert "not to healthy people" in caplog.text


def test_method_agreement_and_type_contrast_on_a_small_table():
    rng = np.random.default_rng(0)
    rows = []
    base = rng.normal(size=10)
    for signature, shift in [("T1", 0.0), ("T2", 1.0)]:
        for method, noise in [("m1", 0.0), ("m2", 0.1)]:
            score = base + shift + noise * rng.normal(size=10)
            rows.append(
                pd.DataFrame(
                    {
                        "sample": [f"s{i}" for i in range(10)],
                        "subject": [f"s{i}" for i in range(10)],
                        "group": ["control"] * 5 + ["patient"] * 5,
                        "timepoint": "baseline",
                        "signature": signature,
                        "method": method,
                        "score": score,
                        "positive": score > 0.5,
                        "reference": [True] * 5 + [False] * 5,
                    }
                )
            )
    table = pd.concat(rows, ignore_index=True)
    agreement = scores.method_agreement(table)
    assert list(agreement["signature"]) == ["T1", "T2"]
    t1 = agreement.iloc[0]
    assert (t1["method_a"], t1["method_b"], t1["n"]) == ("m1", "m2", 10)
    expected = stats.spearmanr(
        table.query("signature == 'T1' and method == 'm1'")["score"],
        table.query("signature == 'T1' and method == 'm2'")["score"],
    )[0]
    assert t1["rho"] == pytest.approx(expected)
    contrast = scores.type_contrast(table, "T2")
    assert set(contrast["signature"]) == {"T1"} and len(contrast) == 20
    # Both z-scores are against the reference samples, so they average 0 there.
    ref = contrast[contrast["group"] == "control"]
    assert ref.groupby("method")[["type1_z", "type2_z"]].mean().abs().max().max() < 1e-12
    np.testing.assert_allclose(contrast["difference"], contrast["type1_z"] - contrast["type2_z"])
    assert scores.type_contrast(table, None).empty


# --- Kang et al. 2018: PBMCs of 8 donors, control vs IFN-beta ------------------------------


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


def matched_sets(adata: ad.AnnData, names: list[str]) -> dict[str, list[str]]:
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT, include=names)
    aliases = genesets.read_aliases(genesets.SHIPPED_ALIASES)
    return genesets.match_gene_sets(sets, adata.var["symbol"], aliases)[0]


def test_kang_every_method_scores_stim_above_ctrl_in_every_donor(kang):
    matched = matched_sets(kang, [*TYPE1, "IFNG_BIASED"])
    reference = (kang.obs["group"] == "control").to_numpy()
    table = scores.score_samples(kang, matched, SIGNATURE_METHODS, reference, seed=1)
    assert set(table["method"]) == set(SIGNATURE_METHODS)
    separation = {}
    for (signature, method), group in table.groupby(["signature", "method"]):
        deltas = paired_deltas(group)
        if signature in TYPE1:
            assert (deltas > 0).sum() == 8, (signature, method, deltas)
        # Separation in units of the control SD, comparable across methods.
        control_sd = group.loc[group["reference"], "score"].std()
        separation[signature, method] = deltas.mean() / control_sd
    for method in SIGNATURE_METHODS:
        assert separation["RICE2013_6", method] > separation["IFNG_BIASED", method], method
        assert separation["NIH28", method] > separation["IFNG_BIASED", method], method


@pytest.mark.parametrize("group", ["patient", "control"])
def test_scores_do_not_move_with_library_size(kang, group):
    matched = matched_sets(kang, ["NIH28", "RICE2013_6"])
    reference = (kang.obs["group"] == "control").to_numpy()
    methods = SIGNATURE_METHODS
    before = scores.score_samples(kang, matched, methods, reference, seed=1)
    deeper = kang.copy()
    deeper.layers["counts"] = deeper.layers["counts"].copy()
    index = int(np.flatnonzero(kang.obs["group"] == group)[1])
    deeper.layers["counts"][index] *= 10
    data.normalize(deeper, n_cpus=1)
    after = scores.score_samples(deeper, matched, methods, reference, seed=1)
    for (signature, method), b in before.groupby(["signature", "method"]):
        a = after[(after["signature"] == signature) & (after["method"] == method)]
        moved = abs(a["score"].to_numpy()[index] - b["score"].to_numpy()[index])
        assert moved < 0.05 * b["score"].std(), (signature, method, moved)


# --- The simulated demo cohort -------------------------------------------------------------


def config_for(**scores_settings) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scores"].update(scores_settings)
    return validate_config(config)


@pytest.fixture(scope="module")
def demo():
    cohort = simulate_cohort(CohortSpec(n_patients=25, n_controls=12, n_genes=2000, seed=11))
    samples = cohort.samples.set_index("sample", drop=False)
    adata = data.build_anndata(cohort.counts, samples)
    adata = data.filter_genes(adata, 10, 3)
    return data.normalize(adata, n_cpus=1), cohort.truth_subjects


@pytest.fixture(scope="module")
def demo_scored(demo, tmp_path_factory):
    """The scoring stage run on the demo cohort with every method."""
    adata, truth = demo
    folder = tmp_path_factory.mktemp("scores")
    data.write_h5ad(adata, folder / "cohort.h5ad")
    config = config_for(methods=SIGNATURE_METHODS)
    outputs = stage_outputs(folder)
    score_stage(config, str(folder / "cohort.h5ad"), outputs)
    return config, outputs, truth


def read(path: str) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"sample": str, "subject": str})


def test_demo_planted_ifn_high_patients_recovered_by_default_score(demo_scored):
    config, outputs, truth = demo_scored
    table = read(outputs["scores"])
    default = table[
        (table["signature"] == config["scores"]["primary_signature"])
        & (table["method"] == config["scores"]["primary_method"])
        & (table["group"] == "patient")
        & (table["timepoint"] == "baseline")
    ].merge(truth[["subject", "ifn_high"]], on="subject")
    assert len(default) == 25 and default["ifn_high"].nunique() == 2
    assert roc_auc_score(default["ifn_high"], default["score"]) >= 0.95
    assert (default["positive"] == default["ifn_high"]).mean() >= 0.9


def test_demo_every_method_recovers_ifn_high_patients(demo_scored):
    _, outputs, truth = demo_scored
    table = read(outputs["scores"])
    base = table[(table["group"] == "patient") & (table["timepoint"] == "baseline")]
    base = base[base["signature"] == "NIH28"].merge(truth[["subject", "ifn_high"]], on="subject")
    for method, part in base.groupby("method"):
        assert roc_auc_score(part["ifn_high"], part["score"]) >= 0.9, method


def test_stage_outputs_agree_with_the_tidy_table(demo_scored):
    config, outputs, _ = demo_scored
    table = read(outputs["scores"])
    # The type II set is scored although config.yaml does not list it twice.
    expected_sets = list(dict.fromkeys([*config["scores"]["signatures"], "IFNG_BIASED"]))
    assert list(dict.fromkeys(table["signature"])) == expected_sets
    assert set(table["reference_group"]) == {"controls"}
    # One threshold per signature and method, and the calls follow it.
    assert (table.groupby(["signature", "method"])["threshold"].nunique() == 1).all()
    assert (table["positive"] == (table["score"] > table["threshold"])).all()
    obs = read(outputs["obs"]).set_index("sample")
    row = table.iloc[123]
    column = f"ifn_{row['signature']}_{row['method']}"
    assert obs.loc[row["sample"], column] == pytest.approx(row["score"])
    assert bool(obs.loc[row["sample"], f"{column}_positive"]) == bool(row["positive"])
    assert {"subject", "group", "timepoint", "size_factor"} <= set(obs.columns)
    agreement = read(outputs["agreement"])
    n_methods = len(SIGNATURE_METHODS)
    assert len(agreement) == len(expected_sets) * n_methods * (n_methods - 1) // 2
    nih = agreement[agreement["signature"] == "NIH28"]
    assert (nih["rho"] > 0.8).all(), nih
    contrast = read(outputs["type_contrast"])
    assert set(contrast["type2_signature"]) == {"IFNG_BIASED"}
    assert "IFNG_BIASED" not in set(contrast["signature"])
    for key in ["over_time", "heatmap", "distributions", "type1_vs_type2"]:
        with open(outputs[key], "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n", key


def test_demo_type1_contrast_rises_in_ifn_high_patients(demo_scored):
    _, outputs, truth = demo_scored
    contrast = read(outputs["type_contrast"])
    base = contrast[
        (contrast["signature"] == "RICE2013_6")
        & (contrast["method"] == "zscore_sum")
        & (contrast["group"] == "patient")
        & (contrast["timepoint"] == "baseline")
    ].merge(truth[["subject", "ifn_high"]], on="subject")
    # The simulator moves the IFN-gamma-biased genes only weakly with type I activity.
    assert roc_auc_score(base["ifn_high"], base["difference"]) >= 0.9


def test_stage_reports_the_baseline_fallback_reference(demo, tmp_path, caplog):
    adata, _ = demo
    data.write_h5ad(adata, tmp_path / "cohort.h5ad")
    config = config_for(reference="baseline", signatures=["RICE2013_6"], type2_signature=None)
    outputs = stage_outputs(tmp_path)
    score_stage(config, str(tmp_path / "cohort.h5ad"), outputs)
    table = read(outputs["scores"])
    assert set(table["reference_group"]) == {"baseline"}
    assert table.loc[table["reference"], "timepoint"].eq("baseline").all()
    assert "not to healthy people" in caplog.text
    assert read(outputs["type_contrast"]).empty


STAGE_OUTPUTS = {
    "scores": "ifn_scores.tsv",
    "coverage": "geneset_coverage.tsv",
    "obs": "cohort_obs.tsv",
    "agreement": "method_agreement.tsv",
    "type_contrast": "type1_vs_type2.tsv",
    "over_time": "over_time.png",
    "heatmap": "heatmap.png",
    "distributions": "distributions.png",
    "type1_vs_type2": "type1_vs_type2.png",
    "mixture_fits": "mixture_fits.tsv",
    "module_activity": "module_activity.tsv",
    "active_modules": "active_modules.tsv",
    **{f"reference_{key}": f"reference/{name}" for key, name in REFERENCE_FILES.items()},
}


def score_stage(config: dict, cohort: str, outputs: dict[str, str]) -> None:
    """The score_ifn rule in-process, on ``cohort`` with the config's gene-set files."""
    inputs = {
        "normalized": cohort,
        "gene_sets": score_gene_set_files(config),
        "aliases": aliases_file(),
    }
    run_stage("score_ifn", config, inputs, outputs)


def stage_outputs(folder) -> dict[str, str]:
    return {key: str(folder / name) for key, name in STAGE_OUTPUTS.items()}


def write_gmt(path, sets: dict[str, list[str]]) -> str:
    path.write_text("".join(f"{k}\t\t" + "\t".join(v) + "\n" for k, v in sets.items()))
    return str(path)


def test_stage_names_a_gene_set_with_no_gene_present(demo, tmp_path):
    adata, _ = demo
    data.write_h5ad(adata, tmp_path / "cohort.h5ad")
    gmt = write_gmt(tmp_path / "mine.gmt", {"MY_ABSENT_SET": ["NOTAGENE1", "NOTAGENE2"]})
    config = config_for(gene_sets=[gmt], signatures=["RICE2013_6", "MY_ABSENT_SET"])
    outputs = stage_outputs(tmp_path)
    with pytest.raises(InputError, match="MY_ABSENT_SET.*none of its 2 genes"):
        score_stage(config, str(tmp_path / "cohort.h5ad"), outputs)
    # Raised before anything is written.
    assert not any(Path(path).exists() for path in outputs.values())


def test_stage_warns_with_the_count_for_a_gene_set_with_few_genes(demo, tmp_path):
    adata, _ = demo
    data.write_h5ad(adata, tmp_path / "cohort.h5ad")
    gmt = write_gmt(tmp_path / "mine.gmt", {"MY_SMALL_SET": ["IFI27", "RSAD2", "NOTAGENE"]})
    config = config_for(
        gene_sets=[gmt], signatures=["MY_SMALL_SET"], primary_signature="MY_SMALL_SET"
    )
    outputs = stage_outputs(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score_stage(config, str(tmp_path / "cohort.h5ad"), outputs)
    messages = [str(w.message) for w in caught if w.category is genesets.GeneSetCoverageWarning]
    assert any("MY_SMALL_SET" in m and "only 2 of 3 genes" in m for m in messages), messages
    assert (read(outputs["scores"]).query("signature == 'MY_SMALL_SET'")["n_genes"] == 2).all()


# --- Module activity (Chiche 2014; BloodGen3 fingerprint) ---------------------------------


def test_module_activity_matches_hand_computation():
    reference_values = np.array(
        [[1.0, 0.0, 10.0, 5.0], [2.0, 0.0, 12.0, 5.0], [3.0, 0.0, 14.0, 8.0]]
    )
    sample = np.array([[5.0, 7.0, 7.0, 10.0]])
    values = np.vstack([reference_values, sample])
    mask = np.array([True, True, True, False])
    statistics = scores.ReferenceStatistics(
        depth_scale=1.0,
        normalized_median=np.zeros(4),
        vst_mean=values[mask].mean(axis=0),
        vst_sd=values[mask].std(axis=0, ddof=1),
        n_reference=3,
    )
    # Bounds: g0 2 +- 2, g1 SD 0 (never counted), g2 12 +- 4, g3 6 +- 2 sqrt(3).
    # The sample is above for g0 and g3, below for g2: 50 % up, 25 % down.
    up, down = scores.module_activity_table(values, {"M": np.arange(4)}, statistics)["M"]
    assert (up[3], down[3]) == (50.0, 25.0)
    activity = scores.METHODS["module_activity"](values, {"M": np.arange(4)}, statistics)["M"]
    assert activity[3] == 25.0
    assert (activity[:3] == 0).all()


def test_active_modules_counts_modules_at_or_above_the_cutoff():
    table = pd.DataFrame(
        {
            "sample": ["a", "a", "a", "b", "b", "b"],
            "signature": ["M1", "M2", "M3"] * 2,
            "method": "module_activity",
            "score": [40.0, 15.0, 14.9, -20.0, 0.0, 100.0],
        }
    )
    active = scores.active_modules(table, ["M1", "M2", "M3"], cutoff=15)
    assert active["n_active"].tolist() == [2, 1]
    assert active["active"].tolist() == ["M1;M2", "M3"]
    assert active["n_modules"].tolist() == [3, 3]


def test_score_genes_equals_scanpy():
    import scanpy as sc

    rng = np.random.default_rng(2)
    values = rng.gamma(2.0, 2.0, size=(30, 400))
    cols = {"a": rng.choice(400, 12, replace=False), "b": rng.choice(400, 4, replace=False)}
    ours = scores.score_genes(values, cols, seed=3)
    genes = pd.Index([f"g{i}" for i in range(400)])
    view = ad.AnnData(X=values, var=pd.DataFrame(index=genes))
    for name, c in cols.items():
        sc.tl.score_genes(view, genes[c], random_state=3, score_name="score")
        np.testing.assert_allclose(ours[name], view.obs["score"], rtol=0, atol=1e-12)


def shared_modules(adata: ad.AnnData, files: list[str]) -> dict[str, list[str]]:
    paths = [shared_data("genesets", name) for name in files]
    sets = genesets.load_gene_sets(paths)
    aliases = genesets.read_aliases(genesets.SHIPPED_ALIASES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", genesets.GeneSetCoverageWarning)
        return genesets.match_gene_sets(sets, adata.var["symbol"], aliases, min_genes=1)[0]


CHICHE_MODULES = ["DC_M1_2", "DC_M3_4", "DC_M5_12"]


def test_demo_ifn_modules_active_in_ifn_high_patients(demo):
    adata, truth = demo
    modules = shared_modules(adata, ["tmod_blood_ifn_modules.gmt", "bloodgen3_ifn_modules_A28.gmt"])
    reference = (adata.obs["group"] == "control").to_numpy()
    table = scores.score_samples(adata, modules, ["module_activity"], reference)
    active = scores.active_modules(table, CHICHE_MODULES).merge(
        table[["sample", "subject", "group", "timepoint"]].drop_duplicates(), on="sample"
    )
    base = active[(active["group"] == "patient") & (active["timepoint"] == "baseline")]
    base = base.merge(truth[["subject", "ifn_high"]], on="subject")
    assert base.loc[base["ifn_high"], "n_active"].median() >= 2
    assert base.loc[~base["ifn_high"], "n_active"].max() <= 1
    controls = active[active["group"] == "control"]
    assert controls["n_active"].mean() < 0.5
    # The BloodGen3 type I IFN module of aggregate A28 rises with the planted IFN activity.
    m83 = table[(table["signature"] == "BLOODGEN3_M8_3") & (table["timepoint"] == "baseline")]
    m83 = m83[m83["group"] == "patient"].merge(truth[["subject", "ifn_high"]], on="subject")
    assert roc_auc_score(m83["ifn_high"], m83["score"]) >= 0.95
    tidy = scores.module_percentages(adata, modules, reference)
    assert len(tidy) == adata.n_obs * len(modules)
    merged = tidy.merge(
        table, left_on=["sample", "module"], right_on=["sample", "signature"], validate="1:1"
    )
    np.testing.assert_array_equal(merged["activity"], merged["score"])
    assert ((merged["percent_up"] >= 0) & (merged["percent_down"] <= 100)).all()


def test_kang_module_activity_rises_with_ifn_beta_in_every_donor(kang):
    modules = shared_modules(kang, ["tmod_blood_ifn_modules.gmt"])
    reference = (kang.obs["group"] == "control").to_numpy()
    table = scores.score_samples(kang, modules, ["module_activity"], reference)
    m12 = table[table["signature"] == "DC_M1_2"]
    assert (paired_deltas(m12) > 50).all()
    active = scores.active_modules(table, CHICHE_MODULES).merge(
        table[["sample", "timepoint"]].drop_duplicates(), on="sample"
    )
    assert (active.loc[active["timepoint"] == "stim", "n_active"] == 3).all()


def test_score_shift_between_two_tables():
    def table(values, threshold):
        return pd.DataFrame(
            {
                "sample": ["c1", "c2", "p1"],
                "signature": "S",
                "method": "m",
                "score": values,
                "threshold": threshold,
                "positive": np.asarray(values) > threshold,
                "reference": [True, True, False],
            }
        )

    before, after = table([0.0, 2.0, 3.0], 2.5), table([0.5, 1.5, 2.0], 1.8)
    row = scores.score_shift(before, after).iloc[0]
    # Reference SD of 'after': sd(0.5, 1.5) = sqrt(0.5); shifts 0.5, 0.5, 1.0.
    assert (row["n"], row["max_abs_shift"], row["median_abs_shift"]) == (3, 1.0, 0.5)
    assert row["max_shift_sd"] == pytest.approx(1.0 / np.sqrt(0.5))
    assert row["calls_changed"] == 0
    assert (row["threshold_before"], row["threshold_after"]) == (2.5, 1.8)
