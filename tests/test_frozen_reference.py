"""The frozen reference through the workflow: the score_ifn stage saves the reference it
scored with, a later project scores its samples against that reference (``scores.
frozen_reference``) and gets the first run's scores for them, and module activity reaches
its tables.

The package functions behind it are tested in tests/test_reference.py (the demo, any subset,
a second cohort at another depth) and tests/test_positivity.py.
"""

from __future__ import annotations

import copy
import filecmp
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, clone_workflow, run_stage, snakemake

from ifnsig import data, positivity, reference, validation
from ifnsig.errors import InputError
from ifnsig.settings import aliases_file, frozen_reference_files, score_gene_set_files
from ifnsig.simulate import CohortSpec, simulate_cohort
from ifnsig.validation import validate_config

METHODS = ["median_fold_change", "zscore_sum", "singscore", "score_genes", "module_activity"]
# Li 2014 modules shipped with the workflow, scored here as co-expression modules.
MODULES = ["LI.M75", "LI.M127"]
PNG = ("over_time", "heatmap", "distributions", "type1_vs_type2")
NAMES = ["scores", "obs", "agreement", "type_contrast", "mixture_fits", "module_activity",
         "active_modules", *PNG]  # fmt: skip


def stage_outputs(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {k: str(folder / f"{k}.{'png' if k in PNG else 'tsv'}") for k in NAMES}
    outputs.update(
        {f"reference_{k}": str(folder / "reference" / v) for k, v in reference.FILES.items()}
    )
    return outputs


def base_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["scores"].update(methods=METHODS, modules=MODULES)
    return config


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"sample": str, "subject": str})


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A small simulated cohort scored by the score_ifn stage against its own controls."""
    folder = tmp_path_factory.mktemp("frozen")
    cohort = simulate_cohort(CohortSpec(n_patients=8, n_controls=5, n_genes=1500, seed=3))
    samples = cohort.samples.set_index("sample", drop=False)
    raw = data.build_anndata(cohort.counts, samples)
    data.write_h5ad(raw, folder / "counts.h5ad")
    adata = data.normalize(data.filter_genes(raw.copy(), 10, 3))
    data.write_h5ad(adata, folder / "cohort.h5ad")
    config = base_config()
    inputs = {
        "normalized": str(folder / "cohort.h5ad"),
        "gene_sets": score_gene_set_files(validate_config(copy.deepcopy(config))),
        "aliases": aliases_file(),
    }
    outputs = stage_outputs(folder / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", positivity.MixtureWarning)
        run_stage("score_ifn", config, inputs, outputs)
    return folder, config, raw, adata, outputs


def frozen_stage(folder: Path, config: dict, raw, pick, saved: Path) -> dict[str, str]:
    """The score_ifn stage of a project with scores.frozen_reference, on samples ``pick``."""
    config = copy.deepcopy(config)
    config["scores"]["frozen_reference"] = str(saved)
    folder.mkdir(parents=True, exist_ok=True)
    data.write_h5ad(raw[pick].copy(), folder / "counts.h5ad")
    validated = validate_config(copy.deepcopy(config))
    inputs = {
        "counts": str(folder / "counts.h5ad"),
        "gene_sets": score_gene_set_files(validated),
        "aliases": aliases_file(),
        **frozen_reference_files(validated),
    }
    outputs = stage_outputs(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", positivity.MixtureWarning)
        run_stage("score_ifn", config, inputs, outputs)
    return outputs


def assert_same_scores(run: pd.DataFrame, frozen: pd.DataFrame) -> None:
    keys = ["sample", "signature", "method"]
    merged = run.merge(frozen, on=keys, suffixes=("_run", "_frozen"), validate="one_to_one")
    assert len(merged) == len(frozen) > 0
    # Both tables hold the same floats written with 10 significant digits.
    np.testing.assert_allclose(merged["score_frozen"], merged["score_run"], rtol=1e-9, atol=1e-9)
    for column in ["threshold", "positive", "positivity_rule", "reference", "n_genes"]:
        assert (merged[f"{column}_run"] == merged[f"{column}_frozen"]).all(), column


def test_the_stage_saves_the_reference_it_scored_with(scored):
    _, _, _, adata, outputs = scored
    ref = reference.read_reference(Path(outputs["reference_meta"]).parent)
    table = read(outputs["scores"])
    assert set(ref.gene_sets) == set(table["signature"])
    assert ref.methods == METHODS
    cutoffs = ref.cutoffs.set_index(["signature", "method"])
    first = table.drop_duplicates(["signature", "method"]).set_index(["signature", "method"])
    np.testing.assert_allclose(cutoffs.loc[first.index, "threshold"], first["threshold"], rtol=1e-9)
    assert (cutoffs.loc[first.index, "rule"] == first["positivity_rule"]).all()
    assert ref.meta["positivity"] == {
        "positivity_sd": 2, "rule": "reference_mean_sd", "fallback": "quantile", "quantile": 0.975,
    }  # fmt: skip
    assert [f["file"] for f in ref.meta["gene_set_files"]] == [
        "ifn_signatures.gmt", "symbol_aliases.tsv",
    ]  # fmt: skip
    assert len(ref.genes) == adata.n_vars
    fits = read(outputs["mixture_fits"])
    assert len(fits) == len(first) and set(fits["positivity_rule"]) == {"reference_mean_sd"}


@pytest.mark.parametrize("pick", [[0], [27], [4, 13, 26, 1]], ids=str)
def test_samples_scored_later_against_the_saved_reference_score_as_in_the_run(
    scored, tmp_path, pick
):
    folder, config, raw, _, outputs = scored
    saved = tmp_path / "saved_reference"
    shutil.copytree(Path(outputs["reference_meta"]).parent, saved)
    later = frozen_stage(tmp_path / "later", config, raw, pick, saved)
    frozen = read(later["scores"])
    assert sorted(set(frozen["sample"])) == sorted(raw.obs_names[pick])
    assert_same_scores(read(outputs["scores"]), frozen)
    # The same type I vs II contrast and module tables, and the saved reference passed on.
    for name, keys in [
        ("type_contrast", ["sample", "signature", "method"]),
        ("module_activity", ["sample", "module"]),
        ("active_modules", ["sample"]),
    ]:
        run, now = read(outputs[name]), read(later[name])
        merged = run.merge(now, on=keys, suffixes=("_run", "_frozen"), validate="one_to_one")
        assert len(merged) == len(now) > 0, name
        for column in now.columns.difference(keys):
            a, b = merged[f"{column}_run"], merged[f"{column}_frozen"]
            if pd.api.types.is_float_dtype(a):
                np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9, err_msg=name)
            else:
                assert (a.astype(str) == b.astype(str)).all(), (name, column)
    for key in reference.FILES:
        assert filecmp.cmp(outputs[f"reference_{key}"], later[f"reference_{key}"], shallow=False)


def test_module_tables_follow_the_hand_computation(scored):
    _, _, _, adata, outputs = scored
    percentages = read(outputs["module_activity"])
    assert list(dict.fromkeys(percentages["module"])) == MODULES
    controls = (adata.obs["group"] == "control").to_numpy()
    vst = np.asarray(adata.layers["vst"])
    mean, sd = vst[controls].mean(axis=0), vst[controls].std(axis=0, ddof=1)
    ref = reference.read_reference(Path(outputs["reference_meta"]).parent)
    for module in MODULES:
        cols = adata.var_names.get_indexer(ref.gene_sets[module])
        up = 100 * ((vst[:, cols] > mean[cols] + 2 * sd[cols]) & (sd[cols] > 0)).mean(axis=1)
        down = 100 * ((vst[:, cols] < mean[cols] - 2 * sd[cols]) & (sd[cols] > 0)).mean(axis=1)
        part = percentages[percentages["module"] == module].set_index("sample")
        part = part.loc[adata.obs_names]
        np.testing.assert_allclose(part["percent_up"], up, atol=1e-8)
        np.testing.assert_allclose(part["percent_down"], down, atol=1e-8)
        assert (part["n_genes"] == len(cols)).all()
    table = read(outputs["scores"])
    activity = table[table["method"] == "module_activity"].merge(
        percentages, left_on=["sample", "signature"], right_on=["sample", "module"]
    )
    np.testing.assert_allclose(activity["score"], activity["activity"], atol=1e-8)
    active = read(outputs["active_modules"]).set_index("sample")
    counted = (
        activity.assign(on=activity["activity"] >= 15).groupby("sample")["on"].sum().astype(int)
    )
    assert (active.loc[counted.index, "n_active"] == counted).all()
    assert (active["n_modules"] == len(MODULES)).all()
    # The planted IFN-high patients have more active IFN modules than the controls.
    patients = table.drop_duplicates("sample").set_index("sample")["group"] == "patient"
    assert (
        active.loc[patients[patients].index, "n_active"].mean()
        > active.loc[patients[~patients].index, "n_active"].mean()
    )


def test_no_module_tables_without_modules(scored, tmp_path, caplog):
    folder, config, _, _, _ = scored
    config = copy.deepcopy(config)
    config["scores"].update(modules=[], methods=["median_fold_change"])
    outputs = stage_outputs(tmp_path)
    for key in ("module_activity", "active_modules"):
        del outputs[key]
    inputs = {
        "normalized": str(folder / "cohort.h5ad"),
        "gene_sets": score_gene_set_files(validate_config(copy.deepcopy(config))),
        "aliases": aliases_file(),
    }
    with caplog.at_level("INFO"), warnings.catch_warnings():
        warnings.simplefilter("ignore", positivity.MixtureWarning)
        run_stage("score_ifn", config, inputs, outputs)
    assert "no scores.modules: no module activity tables" in caplog.text
    assert not list(tmp_path.glob("*module*"))


# --- checked when the workflow is parsed ------------------------------------------------------


def parse_check(config: dict) -> None:
    validation.check_frozen_reference(validate_config(copy.deepcopy(config)))


def test_a_frozen_reference_is_checked_at_parse_time(scored, tmp_path, monkeypatch):
    folder, config, _, _, outputs = scored
    saved = tmp_path / "saved"
    shutil.copytree(Path(outputs["reference_meta"]).parent, saved)
    monkeypatch.chdir(tmp_path)
    good = copy.deepcopy(config)
    good["scores"]["frozen_reference"] = "saved"
    parse_check(good)

    missing = copy.deepcopy(good)
    missing["scores"]["frozen_reference"] = "nowhere"
    with pytest.raises(InputError, match=r"scores.frozen_reference: .*nowhere has no reference"):
        parse_check(missing)

    own = copy.deepcopy(good)
    own["scores"]["frozen_reference"] = "results/scores/reference"
    with pytest.raises(InputError, match="the folder this run writes its own reference to; copy"):
        parse_check(own)

    other = copy.deepcopy(good)
    other["scores"]["signatures"] = ["RICE2013_6", "NIH25_STAT1"]
    other["scores"]["methods"] = [*METHODS, "ssgsea"]
    with pytest.raises(
        InputError, match=r"not built with gene set\(s\) NIH25_STAT1; method\(s\) ssgsea"
    ):
        parse_check(other)

    # A gene set listed with other genes than when the reference was built.
    ref = reference.read_reference(saved)
    listed = {**ref.meta["gene_sets"], "RICE2013_6": ["IFI27", "IFI44L", "MX1"]}
    with pytest.raises(InputError, match=r"RICE2013_6.*added: MX1; removed: "):
        reference.check_gene_sets(ref, listed)


def test_a_frozen_reference_missing_genes_is_an_error_in_the_stage(scored, tmp_path):
    _, config, raw, _, outputs = scored
    saved = tmp_path / "saved"
    shutil.copytree(Path(outputs["reference_meta"]).parent, saved)
    ref = reference.read_reference(saved)
    lacking = raw[:, ~raw.var_names.isin(ref.gene_sets["RICE2013_6"][:1])].copy()
    with pytest.raises(InputError, match=r"lack 1 of the .* genes the IFN-score reference"):
        frozen_stage(tmp_path / "later", config, lacking, [0, 1], saved)


# --- end to end: a second project scored against the first run's saved reference ------------

SUBSET = ["JDM02_baseline", "JDM02_month3", "JDM02_month6", "JDM05_baseline", "JDM05_month3",
          "JDM05_month6", "JDM03_month6", "HC03"]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.xdist_group("workflow")
def test_a_new_project_scored_against_the_saved_reference_gets_the_run_scores(small_run, tmp_path):
    """The small run's reference, copied into a second project that holds some of its
    samples (the controls' reference is not among them): the same scores, cut-offs, calls and
    rules, from build_anndata, geneset_coverage and score_ifn alone (no normalize)."""
    project = clone_workflow(tmp_path / "next_batch")
    for name in ("inputs", "config"):
        shutil.copytree(small_run / name, project / name)
    shutil.copytree(small_run / "results" / "scores" / "reference", project / "saved_reference")
    config_file = project / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    sheet = pd.read_csv(project / "inputs" / "samples.tsv", sep="\t", dtype=str)
    assert set(SUBSET) <= set(sheet["sample"])
    config["exclude_samples"] = [s for s in sheet["sample"] if s not in SUBSET]
    config["scores"]["frozen_reference"] = "saved_reference"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    run = snakemake(project, "results/scores/ifn_scores.tsv")
    assert run.returncode == 0, run.stderr[-4000:]
    assert "rule normalize:" not in run.stdout + run.stderr
    frozen = read(project / "results" / "scores" / "ifn_scores.tsv")
    assert sorted(set(frozen["sample"])) == sorted(SUBSET)
    assert_same_scores(read(small_run / "results" / "scores" / "ifn_scores.tsv"), frozen)
    log = (project / "logs" / "scores" / "score_ifn.log").read_text()
    assert "against the saved reference saved_reference" in log
    for name in reference.FILES.values():
        assert filecmp.cmp(
            small_run / "results" / "scores" / "reference" / name,
            project / "results" / "scores" / "reference" / name,
            shallow=False,
        ), name
