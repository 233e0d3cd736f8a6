"""The frozen IFN-score reference: the run's scores reproduced, alone or in any batch."""

import filecmp
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from ifnsig import data, demo, genesets, reference, scores
from ifnsig.errors import InputError
from ifnsig.simulate import CohortSpec, simulate_cohort, split_by_subject

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("reference")

ALL_METHODS = list(scores.METHODS)


def run_scores(counts, samples, config, methods=ALL_METHODS):
    """Normalize and score a cohort as the workflow's normalize and score_ifn stages do."""
    return demo.score_cohort(counts, samples, config, methods)


# The demo's genes the reference is built on: every gene of the shipped gene sets and a
# seeded draw of the others (the VST's dispersion fit, most of the fixture's time, grows with
# the genes; the run, its reference and the scores against it all use the same genes).
DEMO_OTHER_GENES = 3000


def demo_genes(genes: pd.Index) -> list[str]:
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT)
    aliases = pd.read_csv(genesets.SHIPPED_ALIASES, sep="\t", dtype=str)
    listed = {g for members in dict(sets).values() for g in members} | set(aliases.stack())
    others = sorted(set(genes) - listed)
    drawn = set(np.random.default_rng(0).choice(others, DEMO_OTHER_GENES, replace=False))
    return [g for g in genes if g in listed or g in drawn]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The shipped demo (its gene-set genes and a draw of the others) scored with every
    method, and its reference written and read back."""
    config = demo.config()
    counts, samples = demo.read()
    counts = counts.loc[demo_genes(counts.index)]
    adata, matched, mask, table = run_scores(counts, samples, config)
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT, include=list(matched))
    ref = reference.build_reference(
        adata,
        matched,
        table,
        mask,
        seed=config["seed"],
        settings={"positivity_sd": 2.0},
        listed_sets=dict(sets),
        gene_set_files=[genesets.SHIPPED_GMT, genesets.SHIPPED_ALIASES],
    )
    folder = tmp_path_factory.mktemp("reference")
    paths = reference.write_reference(ref, folder)
    raw = data.build_anndata(counts, samples)
    return table, reference.read_reference(folder), raw, paths, dict(sets)


def compare(run: pd.DataFrame, frozen: pd.DataFrame) -> pd.DataFrame:
    keys = ["sample", "signature", "method"]
    merged = run.merge(frozen, on=keys, suffixes=("_run", "_frozen"), validate="one_to_one")
    assert len(merged) == len(frozen)
    return merged


def test_demo_patients_scored_against_the_reference_equal_the_run(demo_run):
    table, ref, raw, _, _ = demo_run
    patients = raw[raw.obs["group"] == "patient"].copy()
    frozen = reference.score_with_reference(patients, ref)
    assert set(frozen["method"]) == set(ALL_METHODS)
    merged = compare(table, frozen)
    assert len(merged) == 75 * len(ALL_METHODS) * len(ref.gene_sets)
    assert (merged["score_run"] - merged["score_frozen"]).abs().max() <= 1e-9
    assert (merged["threshold_run"] == merged["threshold_frozen"]).all()
    assert (merged["positive_run"] == merged["positive_frozen"]).all()
    assert (merged["positivity_rule_run"] == merged["positivity_rule_frozen"]).all()
    assert list(frozen.columns) == list(table.columns)


@pytest.mark.parametrize("pick", [[0], [86], [5, 17, 40, 80, 3, 61, 22]], ids=str)
def test_any_subset_scores_as_in_the_run(demo_run, pick):
    table, ref, raw, _, _ = demo_run
    batch = raw[raw.obs_names[pick]].copy()
    frozen = reference.score_with_reference(batch, ref)
    merged = compare(table, frozen)
    assert len(merged) == len(pick) * len(ALL_METHODS) * len(ref.gene_sets)
    assert (merged["score_run"] - merged["score_frozen"]).abs().max() <= 1e-9
    assert (merged["positive_run"] == merged["positive_frozen"]).all()
    # Reference samples scored later are still marked as such.
    assert (merged["reference_run"] == merged["reference_frozen"]).all()


def test_reference_files_are_readable_and_byte_reproducible(demo_run, tmp_path):
    _, ref, _, paths, _ = demo_run
    again = reference.write_reference(
        reference.read_reference(paths["meta"].rsplit("/", 1)[0]), tmp_path
    )
    for key, path in paths.items():
        assert filecmp.cmp(path, again[key], shallow=False), key
    meta = json.loads(open(paths["meta"]).read())
    assert meta["dispersion_function"]["fitType"] == "parametric"
    assert meta["dispersion_function"]["asymptDisp"] > 0
    assert {"ifnsig", "pydeseq2"} <= set(meta["versions"])
    assert [f["file"] for f in meta["gene_set_files"]] == [
        "ifn_signatures.gmt",
        "symbol_aliases.tsv",
    ]
    genes = pd.read_csv(paths["genes"], sep="\t")
    assert list(genes.columns) == reference.GENE_COLUMNS
    cutoffs = pd.read_csv(paths["cutoffs"], sep="\t")
    assert len(cutoffs) == len(ref.gene_sets) * len(ALL_METHODS)
    singscore = cutoffs[cutoffs["method"] == "singscore"]
    assert (singscore["attainable_max"] == 0.5).all()
    assert set(pd.read_csv(paths["samples"], sep="\t")["group"]) == {"control"}


def test_missing_signature_gene_is_an_error_naming_it(demo_run):
    _, ref, raw, _, _ = demo_run
    batch = raw[:3, raw.var_names != "IFI27"].copy()
    with pytest.raises(InputError, match=r"lack 1 of the .* genes .*IFI27.*annotation"):
        reference.score_with_reference(batch, ref)


def test_a_few_missing_genes_warn_with_counts_and_many_are_an_error(demo_run):
    _, ref, raw, _, _ = demo_run
    needed = {g for genes in [*ref.gene_sets.values(), *ref.controls.values()] for g in genes}
    others = [g for g in ref.genes["gene_id"] if g not in needed]
    few = set(others[:100])
    batch = raw[:2, ~raw.var_names.isin(few)].copy()
    with pytest.warns(reference.ReferenceMismatchWarning, match="100 of the reference's"):
        table = reference.score_with_reference(batch, ref)
    assert table["score"].notna().all()
    many = set(others[: len(others) // 5])
    batch = raw[:2, ~raw.var_names.isin(many)].copy()
    with pytest.raises(InputError, match="another annotation"):
        reference.score_with_reference(batch, ref)


def test_other_gene_ids_and_versioned_ids(demo_run):
    _, ref, raw, _, _ = demo_run
    batch = raw[:2].copy()
    batch.var_names = [f"X{g}" for g in batch.var_names]
    with pytest.raises(InputError, match="lack"):
        reference.score_with_reference(batch, ref)
    versioned = ref.genes.copy()
    ensembl = {g: f"ENSG{i:011d}" for i, g in enumerate(versioned["gene_id"])}
    renamed = reference.ScoreReference(
        genes=versioned.assign(gene_id=versioned["gene_id"].map(ensembl)),
        dispersion=ref.dispersion,
        depth_scale=ref.depth_scale,
        gene_sets={k: [ensembl[g] for g in v] for k, v in ref.gene_sets.items()},
        controls={k: [ensembl[g] for g in v] for k, v in ref.controls.items()},
        cutoffs=ref.cutoffs,
        samples=ref.samples,
        meta=ref.meta,
    )
    batch = raw[:2, raw.var_names.isin(ensembl)].copy()
    batch.var_names = [f"{ensembl[g]}.7" for g in batch.var_names]
    batch.var["symbol"] = list(raw[:2, raw.var_names.isin(ensembl)].var_names)
    plain = reference.score_with_reference(raw[:2, raw.var_names.isin(ensembl)].copy(), ref)
    with_version = reference.score_with_reference(batch, renamed)
    np.testing.assert_array_equal(plain["score"], with_version["score"])


def test_changed_gene_set_is_an_error_and_changed_symbols_warn(demo_run):
    _, ref, raw, _, listed = demo_run
    reference.check_gene_sets(ref, listed)
    edited = {**listed, "RICE2013_6": [*listed["RICE2013_6"][:-1], "MX1"]}
    with pytest.raises(InputError, match=r"RICE2013_6.*added: MX1; removed: SIGLEC1"):
        reference.score_with_reference(raw[:1].copy(), ref, listed_sets=edited)
    batch = raw[:2].copy()
    batch.var["symbol"] = [f"{s}_v2" if s == "IFI27" else s for s in batch.var["symbol"]]
    with pytest.warns(reference.ReferenceMismatchWarning, match="1 genes .* other symbols"):
        reference.score_with_reference(batch, ref)


def test_read_reference_names_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="has no reference.json"):
        reference.read_reference(tmp_path)


def test_size_factors_and_vst_follow_the_formulas():
    counts = np.array([[10, 0, 40, 8], [20, 6, 80, 16]], dtype=float)
    log_geo = np.log(np.array([10.0, 3.0, 20.0, 4.0]))
    log_geo[1] = -np.inf  # a gene with a zero in the reference
    factors = data.size_factors_from(counts, log_geo)
    # Sample 1: ratios 1, 2, 2 -> median 2; sample 2: 2, 4, 4 -> 4.
    np.testing.assert_allclose(factors, [2.0, 4.0])
    # A zero in a new sample leaves that gene out of its median (DESeq2's cnts > 0).
    zero = data.size_factors_from(np.array([[10.0, 5.0, 0.0, 8.0]]), np.log([10.0, 5.0, 20.0, 4.0]))
    np.testing.assert_allclose(zero, [1.0])
    q, a0, a1 = np.array([0.0, 5.0, 1e6]), 0.05, 2.0
    vst = data.vst_parametric(q, a0, a1)
    expected = np.log2((1 + a1 + 2 * a0 * q + 2 * np.sqrt(a0 * q * (1 + a1 + a0 * q))) / (4 * a0))
    np.testing.assert_allclose(vst, expected)
    # Asymptotically log2 of the count (DESeq2 scales the VST so).
    assert abs(vst[2] - np.log2(1e6)) < 0.01


# --- A second cohort, sequenced at another depth, scored against the first's reference -----


def test_reference_from_one_cohort_calls_a_shallower_second_cohort():
    """Two cohorts of one population: half the subjects each, the second at 35 % depth."""
    cohort = simulate_cohort(CohortSpec(n_patients=50, n_controls=24, n_genes=2000, seed=5))
    subjects = cohort.truth_subjects
    rng = np.random.default_rng(0)
    in_second = split_by_subject(cohort, rng)
    samples = cohort.samples.set_index("sample", drop=False)
    config = demo.config()
    first_counts = cohort.counts.loc[:, samples.index[~in_second]]
    adata, matched, mask, table = run_scores(
        first_counts, samples[~in_second], config, methods=["median_fold_change", "zscore_sum"]
    )
    ref = reference.build_reference(adata, matched, table, mask, seed=config["seed"])
    counts = cohort.counts.loc[:, samples.index[in_second]].to_numpy()
    thinned = rng.binomial(counts, 0.35)
    shallow = data.build_anndata(
        pd.DataFrame(thinned, index=cohort.counts.index, columns=samples.index[in_second]),
        samples[in_second],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", reference.ReferenceMismatchWarning)
        frozen = reference.score_with_reference(shallow, ref)
    truth = subjects.set_index("subject")["ifn_high"]
    base = frozen[(frozen["group"] == "patient") & (frozen["timepoint"] == "baseline")]
    assert base["subject"].nunique() == 25
    for signature, method in [("RICE2013_6", "median_fold_change"), ("NIH28", "zscore_sum")]:
        part = base[(base["signature"] == signature) & (base["method"] == method)]
        agreement = (part["positive"].to_numpy() == truth[part["subject"]].to_numpy()).mean()
        assert agreement >= 0.9, (signature, method, agreement)
    # No shift from depth: the second cohort's controls centre on the first's reference.
    controls = frozen[(frozen["group"] == "control") & (frozen["method"] == "median_fold_change")]
    cutoffs = ref.cutoffs.set_index(["signature", "method"])
    for signature, part in controls.groupby("signature"):
        row = cutoffs.loc[(signature, "median_fold_change")]
        shift = (part["score"].median() - row["reference_mean"]) / row["reference_sd"]
        assert abs(shift) < 1.0, (signature, shift)


def test_changed_gene_set_file_and_versions_warn(demo_run, tmp_path):
    _, ref, _, _, listed = demo_run
    edited = tmp_path / "ifn_signatures.gmt"
    edited.write_text("# a comment line\n" + genesets.SHIPPED_GMT.read_text())
    with pytest.warns(reference.ReferenceMismatchWarning, match="1 gene-set file.*ifn_signatures"):
        reference.check_gene_sets(ref, listed, [edited])
    older = reference.ScoreReference(**{**ref.__dict__, "meta": {**ref.meta, "versions": {}}})
    with pytest.warns(reference.ReferenceMismatchWarning, match="other versions"):
        reference.check_versions(older)
