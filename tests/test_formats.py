"""Count inputs other than a text matrix: salmon, kallisto, bulk and single-cell .h5ad.

Each format goes through the parse-time check (``validation.load_design``, which reads only
the sample names) and the first rules (``build_anndata``, ``geneset_coverage``), and the
counts in the written AnnData are compared with values computed here independently.
"""

from __future__ import annotations

import gzip
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
import yaml
from conftest import REPO, first_rules, shared_data

from ifnsig import data
from ifnsig.errors import InputError
from ifnsig.formats import count_sample_names, detect_format, read_tx2gene
from ifnsig.genesets import SHIPPED_GMT, load_gene_sets
from ifnsig.validation import load_design

# Its module fixtures are computed once: one pytest-xdist worker takes the whole module.
pytestmark = pytest.mark.xdist_group("formats")

SAMPLES = ["P1_0", "P1_3", "P2_0", "P2_3"]


def signature_symbols() -> list[str]:
    """Three genes of every shipped signature, so every scored signature is found."""
    sets = load_gene_sets([SHIPPED_GMT])
    return list(dict.fromkeys(g for genes in sets.values() for g in list(genes)[:3]))


def write_sheet(folder, samples, timepoints=("baseline", "month3")) -> None:
    rows = ["sample\tsubject\tgroup\ttimepoint"]
    for sample in samples:
        subject, visit = sample.rsplit("_", 1)
        timepoint = timepoints[0] if visit in ("0", timepoints[0]) else timepoints[1]
        rows.append(f"{sample}\t{subject}\tpatient\t{timepoint}")
    (folder / "samples.tsv").write_text("\n".join(rows) + "\n")


def make_config(folder, counts: str, timepoints=("baseline", "month3"), **overrides) -> dict:
    """A configuration of inputs in ``folder`` (cwd): no controls, no clinical table.

    Everything else is left to the schema's defaults.
    """
    config = {
        "counts": counts,
        "samples": "samples.tsv",
        "clinical": None,
        "timepoints": list(timepoints),
        "scores": {"reference": "baseline"},
    }
    config.update(overrides)
    return config


def run_first_rules(folder, config: dict) -> ad.AnnData:
    """Parse-time validation, then the first rules; returns the written AnnData."""
    load_design(config)
    return ad.read_h5ad(first_rules(config, folder)["counts"])


def counts_frame(adata: ad.AnnData) -> pd.DataFrame:
    return pd.DataFrame(adata.X.T, index=adata.var_names, columns=adata.obs_names)


# --- salmon and kallisto -------------------------------------------------------------------


@pytest.fixture
def transcripts() -> pd.DataFrame:
    """Two transcripts per gene, named with versions; genes out of alphabetical order."""
    symbols = signature_symbols()
    rows = []
    for i, symbol in enumerate(symbols):
        gene = f"ENSG{900 - i:05d}.{i % 3 + 1}"
        for j in range(2):
            rows.append(
                {
                    "transcript": f"ENST{i:05d}{j}",
                    "gene_id": gene,
                    "symbol": symbol,
                    # Isoforms of different length for half of the genes.
                    "length": 1000 + 500 * j * (i % 2),
                }
            )
    return pd.DataFrame(rows)


def write_gtf(path, transcripts: pd.DataFrame) -> None:
    lines = ["#!genome-build GRCh38.p14"]
    for gene, group in transcripts.groupby("gene_id", sort=False):
        symbol = group["symbol"].iloc[0]
        attrs = f'gene_id "{gene}"; gene_name "{symbol}"; gene_biotype "protein_coding";'
        lines.append(f"1\tensembl\tgene\t1\t5000\t.\t+\t.\t{attrs}")
        for tx in group["transcript"]:
            tx_attrs = f'{attrs} transcript_id "{tx}.2"; transcript_name "{symbol}-201";'
            lines.append(f"1\tensembl\ttranscript\t1\t5000\t.\t+\t.\t{tx_attrs}")
            lines.append(f'1\tensembl\texon\t1\t5000\t.\t+\t.\t{tx_attrs} exon_number "1";')
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")


def simulate_quant(transcripts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Estimated counts and TPM of one sample (salmon's columns)."""
    rng = np.random.default_rng(seed)
    reads = np.round(rng.gamma(2.0, 200.0, len(transcripts)), 3) + 1.0
    eff_length = transcripts["length"].to_numpy() - 200.0 + rng.uniform(0, 5, len(transcripts))
    rate = reads / eff_length
    return pd.DataFrame(
        {
            "Name": transcripts["transcript"] + ".1",
            "Length": transcripts["length"],
            "EffectiveLength": eff_length,
            "TPM": rate / rate.sum() * 1e6,
            "NumReads": reads,
        }
    )


def expected_gene_counts(quants: dict[str, pd.DataFrame], transcripts, scaling: str):
    """tximport's gene counts written out from its definition (Soneson et al. 2015)."""
    gene_of = transcripts["gene_id"].to_numpy()
    reads = pd.DataFrame({s: q["NumReads"].to_numpy() for s, q in quants.items()})
    if scaling == "summed":
        return reads.groupby(gene_of).sum().round()
    tpm = pd.DataFrame({s: q["TPM"].to_numpy() for s, q in quants.items()})
    eff = pd.DataFrame({s: q["EffectiveLength"].to_numpy() for s, q in quants.items()})
    abundance = tpm.groupby(gene_of).sum()
    # Gene length per sample: abundance-weighted mean of its transcripts' effective lengths.
    length = (tpm * eff).groupby(gene_of).sum() / abundance
    scaled = abundance.mul(length.mean(axis=1), axis=0)
    # Rescaled to each sample's number of reads.
    return (scaled * (reads.sum() / scaled.sum())).round()


@pytest.fixture
def salmon_project(tmp_path, monkeypatch, transcripts):
    monkeypatch.chdir(tmp_path)
    quants = {}
    for k, sample in enumerate(SAMPLES):
        quants[sample] = simulate_quant(transcripts, seed=k)
        folder = tmp_path / "salmon" / sample
        folder.mkdir(parents=True)
        quants[sample].to_csv(folder / "quant.sf", sep="\t", index=False)
    # Pipelines leave folders that are not samples beside them.
    (tmp_path / "salmon" / "multiqc").mkdir()
    write_gtf(tmp_path / "genes.gtf.gz", transcripts)
    write_sheet(tmp_path, SAMPLES)
    return tmp_path, quants


@pytest.mark.parametrize("scaling", ["length_scaled_tpm", "summed"])
def test_salmon_folders_give_tximport_gene_counts_and_gtf_symbols(
    salmon_project, transcripts, scaling
):
    folder, quants = salmon_project
    config = make_config(
        folder, "salmon", tximport={"tx2gene": "genes.gtf.gz", "counts_from_abundance": scaling}
    )
    assert detect_format(config) == "salmon"
    assert count_sample_names(config) == SAMPLES
    adata = run_first_rules(folder, config)
    expected = expected_gene_counts(quants, transcripts, scaling)
    got = counts_frame(adata)
    assert list(got.columns) == SAMPLES
    assert sorted(got.index) == sorted(expected.index)
    np.testing.assert_array_equal(got.loc[expected.index].to_numpy(), expected.to_numpy())
    # Symbols come from the GTF's gene_name when no annotation table is given.
    symbol_of = transcripts.drop_duplicates("gene_id").set_index("gene_id")["symbol"]
    assert (adata.var["symbol"] == symbol_of.loc[adata.var_names].to_numpy()).all()


def test_length_scaled_counts_keep_library_sizes_and_differ_from_summed_reads(
    salmon_project, transcripts
):
    folder, quants = salmon_project
    config = make_config(folder, "salmon", tximport={"tx2gene": "genes.gtf.gz"})
    got = counts_frame(run_first_rules(folder, config))
    reads = pd.Series({s: q["NumReads"].sum() for s, q in quants.items()})
    assert np.allclose(got.sum().to_numpy(), reads.loc[got.columns], atol=len(got))
    summed = expected_gene_counts(quants, transcripts, "summed")
    assert not np.array_equal(got.loc[summed.index].to_numpy(), summed.to_numpy())


def test_kallisto_abundance_tsv_folders(tmp_path, monkeypatch, transcripts):
    monkeypatch.chdir(tmp_path)
    quants = {}
    for k, sample in enumerate(SAMPLES):
        quant = simulate_quant(transcripts, seed=10 + k)
        quants[sample] = quant
        folder = tmp_path / "kallisto" / sample
        folder.mkdir(parents=True)
        quant.rename(
            columns={
                "Name": "target_id",
                "Length": "length",
                "EffectiveLength": "eff_length",
                "NumReads": "est_counts",
                "TPM": "tpm",
            }
        )[["target_id", "length", "eff_length", "est_counts", "tpm"]].to_csv(
            folder / "abundance.tsv", sep="\t", index=False
        )
    table = transcripts.assign(transcript_id=transcripts["transcript"])
    table[["transcript_id", "gene_id", "symbol"]].to_csv("tx2gene.tsv", sep="\t", index=False)
    write_sheet(tmp_path, SAMPLES)
    config = make_config(tmp_path, "kallisto", tximport={"tx2gene": "tx2gene.tsv"})
    assert detect_format(config) == "kallisto"
    got = counts_frame(run_first_rules(tmp_path, config))
    expected = expected_gene_counts(quants, transcripts, "length_scaled_tpm")
    np.testing.assert_array_equal(got.loc[expected.index].to_numpy(), expected.to_numpy())


def test_gtf_map_drops_versions_and_rejects_a_transcript_in_two_genes(tmp_path, transcripts):
    write_gtf(tmp_path / "genes.gtf.gz", transcripts)
    tx2gene = read_tx2gene(tmp_path / "genes.gtf.gz")
    assert len(tx2gene) == len(transcripts)
    assert set(tx2gene["transcript_id"]) == set(transcripts["transcript"])
    clash = pd.concat([transcripts, transcripts.iloc[[1]].assign(gene_id="ENSG99999.1")])
    write_gtf(tmp_path / "clash.gtf.gz", clash)
    with pytest.raises(InputError, match="belongs to more than one gene"):
        read_tx2gene(tmp_path / "clash.gtf.gz")


def test_salmon_without_tx2gene_or_with_a_missing_sample_fails_at_parse_time(salmon_project):
    folder, _ = salmon_project
    with pytest.raises(InputError, match="set tximport.tx2gene"):
        load_design(make_config(folder, "salmon"))
    write_sheet(folder, [*SAMPLES, "P3_0"])
    config = make_config(folder, "salmon", tximport={"tx2gene": "genes.gtf.gz"})
    with pytest.raises(InputError, match="P3_0 have no column in salmon"):
        load_design(config)


def test_folder_without_quantifications_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quant" / "S1").mkdir(parents=True)
    with pytest.raises(InputError, match="no sub-folder holds quant.sf"):
        detect_format({"counts": "quant", "counts_format": "auto"})


def test_salmon_workflow_parses_with_snakemake(salmon_project):
    """The Snakefile accepts a folder as count input and the GTF as a tracked input."""
    folder, _ = salmon_project
    config = make_config(folder, "salmon", tximport={"tx2gene": "genes.gtf.gz"})
    (folder / "config").mkdir()
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--cores", "1"]
        + ["--directory", str(folder), "results/data/counts.h5ad"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "build_anndata" in run.stdout


# --- bulk .h5ad ------------------------------------------------------------------------------


def test_bulk_h5ad_counts_from_a_layer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    genes = signature_symbols()
    rng = np.random.default_rng(1)
    counts = rng.poisson(50, (len(SAMPLES), len(genes)))
    bulk = ad.AnnData(
        X=np.log1p(counts).astype(np.float32),
        obs=pd.DataFrame(index=SAMPLES),
        var=pd.DataFrame(index=genes),
        layers={"counts": counts},
    )
    bulk.write_h5ad("bulk.h5ad")
    write_sheet(tmp_path, SAMPLES)
    config = make_config(tmp_path, "bulk.h5ad")
    assert detect_format(config) == "h5ad"
    assert count_sample_names(config) == SAMPLES
    # X holds log values: the message points at the layer setting.
    with pytest.raises(InputError, match="is not an integer.*h5ad.layer"):
        run_first_rules(tmp_path, config)
    config["h5ad"] = {"layer": "counts"}
    got = counts_frame(run_first_rules(tmp_path, config))
    np.testing.assert_array_equal(got.loc[genes, SAMPLES].to_numpy(), counts.T)


# --- single-cell .h5ad -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def kang_cells():
    """The 812 donor-assigned Kang 2018 PBMCs, raw UMI counts, as cells x genes."""
    folder = shared_data("kang2018_ifnb")
    matrix = scipy.io.mmread(folder / "sc_counts.mtx.gz").tocsr().T.tocsr()
    genes = (folder / "sc_genes.txt").read_text().split()
    obs = pd.read_csv(folder / "sc_cell_metadata.csv", dtype={"donor": str}).set_index("cell")
    obs["sample"] = "D" + obs["donor"] + "_" + obs["stim"]
    return ad.AnnData(X=matrix, obs=obs, var=pd.DataFrame(index=genes)), folder


def kang_project(folder, cells: ad.AnnData, **h5ad) -> dict:
    cells.write_h5ad(folder / "cells.h5ad")
    write_sheet(folder, sorted(set(cells.obs["sample"])), timepoints=("CTRL", "STIM"))
    settings = {"single_cell": True, "sample_column": "sample", **h5ad}
    return make_config(folder, "cells.h5ad", timepoints=("CTRL", "STIM"), h5ad=settings)


def test_kang_single_cell_pseudobulk_equals_shipped_donor_x_stim_table(
    kang_cells, tmp_path, monkeypatch
):
    cells, data = kang_cells
    monkeypatch.chdir(tmp_path)
    config = kang_project(tmp_path, cells)
    assert sorted(count_sample_names(config)) == sorted(set(cells.obs["sample"]))
    got = counts_frame(run_first_rules(tmp_path, config))
    shipped = pd.read_csv(data / "pseudobulk_counts_donor_x_stim.csv.gz", index_col=0)
    assert got.shape == shipped.shape == (14053, 16)
    pd.testing.assert_frame_equal(
        got.loc[shipped.index, shipped.columns], shipped, check_names=False, check_dtype=False
    )


def test_kang_pseudobulk_of_one_cell_type(kang_cells, tmp_path, monkeypatch):
    cells, _ = kang_cells
    monkeypatch.chdir(tmp_path)
    mono = cells.obs["seurat_annotations"] == "CD14 Mono"
    config = kang_project(
        tmp_path, cells, cell_type_column="seurat_annotations", cell_types=["CD14 Mono"]
    )
    got = counts_frame(run_first_rules(tmp_path, config))
    for sample in got.columns:
        in_sample = (mono & (cells.obs["sample"] == sample)).to_numpy()
        expected = np.asarray(cells.X[in_sample].sum(axis=0)).ravel()
        np.testing.assert_array_equal(got[sample].to_numpy(), expected)
    config["h5ad"]["cell_types"] = ["CD14 Monocytes"]
    with pytest.raises(InputError, match="CD14 Monocytes .* do not occur"):
        count_sample_names(config)


def test_single_cell_rejects_normalized_values_and_unknown_sample_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    genes = signature_symbols()
    x = sp.random(40, len(genes), density=0.3, format="csr", random_state=0) * 3
    obs = pd.DataFrame({"donor_id": [SAMPLES[i % 4] for i in range(40)]})
    obs.index = [f"cell{i}" for i in range(40)]
    ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes)).write_h5ad("cells.h5ad")
    write_sheet(tmp_path, SAMPLES)
    config = make_config(tmp_path, "cells.h5ad", h5ad={"single_cell": True})
    with pytest.raises(InputError, match="obs has no column 'sample'.*donor_id"):
        load_design(config)
    config["h5ad"]["sample_column"] = "donor_id"
    assert sorted(count_sample_names(config)) == SAMPLES
    with pytest.raises(InputError, match="in cell 'cell.*is not an integer"):
        run_first_rules(tmp_path, config)


def test_annotation_with_versioned_ids_matches_counts_without_them():
    counts = pd.DataFrame(
        [[5, 7], [1, 0], [3, 3]],
        index=["ENSG00000141510", "ENSG00000012048", "ENSG00000000003"],
        columns=["s1", "s2"],
    )
    samples = pd.DataFrame(
        {"subject": ["p1", "p1"], "timepoint": ["T0", "T1"]}, index=pd.Index(["s1", "s2"])
    )
    annotation = pd.DataFrame(
        {"symbol": ["TP53", "BRCA1"]}, index=["ENSG00000141510.17", "ENSG00000012048.23"]
    )
    adata = data.build_anndata(counts, samples, annotation=annotation)
    assert adata.var["symbol"].tolist() == ["TP53", "BRCA1", "ENSG00000000003"]
    assert adata.var["annotated"].tolist() == [True, True, False]
    # Only Ensembl IDs lose what follows the dot.
    stripped = data.without_ensembl_version(["ENSG00000141510.17", "MYGENE.1", "ENST1.2"])
    assert list(stripped) == ["ENSG00000141510", "MYGENE.1", "ENST1"]
