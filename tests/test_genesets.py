"""Tests for ifnsig.genesets and the gene sets shipped in resources/genesets."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest

from ifnsig.errors import InputError
from ifnsig.genesets import (
    SHIPPED_ALIASES,
    SHIPPED_GMT,
    SHIPPED_SIGNATURES,
    GeneSetCoverageWarning,
    GeneSets,
    load_gene_sets,
    match_gene_sets,
    read_aliases,
    read_gmt,
    shipped_genesets_dir,
)

SHARED_GENESETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "genesets"
needs_shared = pytest.mark.skipif(
    not SHARED_GENESETS.is_dir(), reason=f"reference gene sets not found at {SHARED_GENESETS}"
)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- read_gmt -------------------------------------------------------------------------------


def test_read_gmt_bom_crlf_blank_lines_and_trailing_tabs(tmp_path):
    data = "\ufeffSET_A\tdesc\tG1\tG2\tG1\t\r\n\r\n   \r\nSET_B\t\tG3\r\n".encode()
    sets = read_gmt(write(tmp_path, "a.gmt", data))
    assert sets == {"SET_A": ["G1", "G2"], "SET_B": ["G3"]}
    assert list(sets) == ["SET_A", "SET_B"]
    assert sets.origin["SET_A"].endswith("a.gmt")


def test_read_gmt_skips_comments(tmp_path):
    sets = read_gmt(write(tmp_path, "c.gmt", b"# made by hand\nS\td\tX\tY\n"))
    assert sets == {"S": ["X", "Y"]}


def test_read_gmt_too_few_fields_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.gmt", b"OK\td\tG1\n\nBAD G1 G2 G3\n")
    with pytest.raises(InputError, match=r"Line 3 of gene-set file .*bad\.gmt.*tabs"):
        read_gmt(path)


def test_read_gmt_empty_name(tmp_path):
    with pytest.raises(InputError, match=r"Line 1 .*empty gene-set name"):
        read_gmt(write(tmp_path, "e.gmt", b"\tdesc\tG1\n"))


def test_read_gmt_duplicate_name(tmp_path):
    path = write(tmp_path, "d.gmt", b"S\td\tG1\nT\td\tG2\nS\td\tG3\n")
    with pytest.raises(InputError, match=r"Line 3 .*'S' first used on line 1"):
        read_gmt(path)


def test_read_gmt_set_without_genes(tmp_path):
    with pytest.raises(InputError, match=r"Line 1 .*no genes"):
        read_gmt(write(tmp_path, "n.gmt", b"S\tdesc\t\t\n"))


def test_read_gmt_missing_and_empty_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_gmt(tmp_path / "nope.gmt")
    with pytest.raises(InputError, match="contains no gene sets"):
        read_gmt(write(tmp_path, "empty.gmt", b"\n\n"))


def test_read_gmt_not_utf8(tmp_path):
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_gmt(write(tmp_path, "latin.gmt", "S\td\tG\xe9\n".encode("latin-1")))


# --- read_aliases ---------------------------------------------------------------------------


def test_read_aliases_bom_crlf(tmp_path):
    path = write(tmp_path, "al.tsv", "\ufeffalias\tsymbol\r\nDDX58\tRIGI\r\n\r\nX\tX\r\n".encode())
    assert read_aliases(path) == {"DDX58": "RIGI"}


def test_read_aliases_errors(tmp_path):
    with pytest.raises(InputError, match="header"):
        read_aliases(write(tmp_path, "h.tsv", b"old\tnew\nA\tB\n"))
    with pytest.raises(InputError, match="Line 2 .*two non-empty"):
        read_aliases(write(tmp_path, "f.tsv", b"alias\tsymbol\nA\n"))
    with pytest.raises(InputError, match="Line 3 .*earlier line"):
        read_aliases(write(tmp_path, "c.tsv", b"alias\tsymbol\nA\tB\nA\tC\n"))
    with pytest.raises(InputError, match="both as a target symbol and as an alias"):
        read_aliases(write(tmp_path, "ch.tsv", b"alias\tsymbol\nA\tB\nB\tC\n"))


# --- load_gene_sets -------------------------------------------------------------------------


def test_load_gene_sets_union_and_include(tmp_path):
    a = write(tmp_path, "a.gmt", b"S1\td\tG1\tG2\nS2\td\tG3\n")
    b = write(tmp_path, "b.gmt", b"S3\td\tG4\nS1\td\tG1\tG2\n")
    sets = load_gene_sets([a, b])
    assert list(sets) == ["S1", "S2", "S3"]
    assert sets.origin["S3"] == str(b)
    picked = load_gene_sets([a, b], include=["S3", "S1"])
    assert list(picked) == ["S3", "S1"]
    assert isinstance(picked, GeneSets) and picked.origin["S1"] == str(a)
    assert list(load_gene_sets(a, include="S2")) == ["S2"]


def test_load_gene_sets_unknown_name_lists_available(tmp_path):
    a = write(tmp_path, "a.gmt", b"S1\td\tG1\nS2\td\tG2\n")
    with pytest.raises(InputError, match=r"NOPE .*choose from: S1, S2"):
        load_gene_sets([a], include=["S1", "NOPE"])


def test_load_gene_sets_conflicting_definitions(tmp_path):
    a = write(tmp_path, "a.gmt", b"S1\td\tG1\n")
    b = write(tmp_path, "b.gmt", b"S1\td\tG2\n")
    with pytest.raises(InputError, match="defined differently"):
        load_gene_sets([a, b])
    with pytest.raises(InputError, match="No gene-set file"):
        load_gene_sets([])


# --- match_gene_sets ------------------------------------------------------------------------


def test_match_maps_set_aliases_and_dataset_aliases():
    sets = {"S": ["DDX58", "WARS1", "ISG15", "MX1", "NOTHERE"]}
    aliases = {"DDX58": "RIGI", "WARS": "WARS1", "G1P2": "ISG15"}
    # Dataset: a current symbol for an old set symbol, an old symbol for a current one.
    matched, cov = match_gene_sets(sets, ["RIGI", "WARS", "ISG15", "MX1", "ACTB"], aliases)
    assert matched == {"S": ["RIGI", "WARS", "ISG15", "MX1"]}
    row = cov.iloc[0]
    assert list(cov.columns) == ["gene_set", "n_genes", "n_found", "fraction_found", "missing"]
    assert (row.gene_set, row.n_genes, row.n_found) == ("S", 5, 4)
    assert row.fraction_found == pytest.approx(0.8)
    assert row.missing == "NOTHERE"


def test_match_prefers_current_symbol_when_dataset_has_both():
    matched, _ = match_gene_sets(
        {"S": ["RIGI", "A", "B"]}, ["DDX58", "RIGI", "A", "B"], {"DDX58": "RIGI"}
    )
    assert matched["S"] == ["RIGI", "A", "B"]


def test_match_coverage_table_missing_sorted():
    sets = {"S1": ["Z", "A", "Y", "B", "C"], "S2": ["A", "B", "C"]}
    matched, cov = match_gene_sets(sets, ["A", "B", "C"], {})
    assert cov.set_index("gene_set").loc["S1", "missing"] == "Y;Z"
    assert cov.set_index("gene_set").loc["S2", "missing"] == ""
    assert cov["n_found"].tolist() == [3, 3]
    assert matched["S1"] == ["A", "B", "C"]


def test_match_empty_set_error_names_set_and_file(tmp_path):
    path = write(tmp_path, "mine.gmt", b"GOOD\td\tA\tB\tC\nEMPTY\td\tX\tY\n")
    with pytest.raises(InputError, match=r"'EMPTY' \(from .*mine\.gmt\) has none of its 2 genes"):
        match_gene_sets(read_gmt(path), ["A", "B", "C"], {})


def test_match_few_genes_warns_with_count():
    with pytest.warns(GeneSetCoverageWarning, match=r"only 2 of 4 genes .*minimum 3"):
        matched, _ = match_gene_sets({"S": ["A", "B", "X", "Y"]}, ["A", "B"], {})
    assert matched == {"S": ["A", "B"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        match_gene_sets({"S": ["A", "B", "X"]}, ["A", "B"], {}, min_genes=2)


def test_a_small_set_found_in_full_is_called_small_not_partly_found():
    with pytest.warns(GeneSetCoverageWarning) as caught:
        match_gene_sets({"S": ["A", "B"]}, ["A", "B", "C"], {}, min_genes=5)
    (message,) = [str(w.message) for w in caught]
    assert "'S' has 2 genes, all found in the dataset, fewer than the minimum 5" in message
    assert "only" not in message


def test_match_input_errors():
    with pytest.raises(InputError, match="no gene symbols"):
        match_gene_sets({"S": ["A"]}, [], {})
    with pytest.raises(InputError, match="min_genes"):
        match_gene_sets({"S": ["A"]}, ["A"], {}, min_genes=0)


# --- shipped resources ----------------------------------------------------------------------


def read_signatures() -> list[dict[str, str]]:
    with SHIPPED_SIGNATURES.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_shipped_dir_and_files():
    assert shipped_genesets_dir() == SHIPPED_GMT.parent
    for path in (
        SHIPPED_GMT,
        SHIPPED_ALIASES,
        SHIPPED_SIGNATURES,
        SHIPPED_GMT.parent / "README.md",
    ):
        assert path.is_file(), path


def test_shipped_gmt_parses_and_matches_signatures_table():
    sets = read_gmt(SHIPPED_GMT)
    table = read_signatures()
    assert list(table[0]) == [
        "name", "n_genes", "type", "citation", "doi_or_pmid", "formula_in_paper", "notes"
    ]  # fmt: skip
    assert [r["name"] for r in table] == list(sets)
    for row in table:
        assert int(row["n_genes"]) == len(sets[row["name"]]), row["name"]
        assert row["type"] in {"type_I", "type_II", "module"}
        assert row["citation"] and row["doi_or_pmid"]


def test_shipped_sets_content():
    sets = read_gmt(SHIPPED_GMT)
    assert sets["RICE2013_6"] == ["IFI27", "IFI44L", "IFIT1", "ISG15", "RSAD2", "SIGLEC1"]
    assert sorted(sets["FENG2006_5"]) == ["ISG15", "LY6E", "MX1", "OAS1", "OASL"]
    assert len(sets["NIH28"]) == 28
    assert set(sets["NIH25_STAT1"]) < set(sets["NIH28"]) and len(sets["NIH25_STAT1"]) == 25
    assert {"LI.M75", "LI.M127", "LI.M150", "LI.M111.0", "LI.M111.1", "LI.M68"} <= set(sets)
    assert sets["IFNGS_4"] == ["IFI27", "IFI44", "IFI44L", "RSAD2"]


def test_unconfirmed_sets_say_so():
    notes = {row["name"]: row["notes"] for row in read_signatures()}
    for name in ("NIH25_STAT1", "IFNGS_4"):
        assert notes[name].startswith("UNCONFIRMED"), name


def test_shipped_li_modules_agree_with_btm_package():
    btm = pytest.importorskip("BTM.btm2013")
    sets = read_gmt(SHIPPED_GMT)
    for name in (n for n in sets if n.startswith("LI.")):
        module = name.removeprefix("LI.")
        (key,) = [k for k in btm.ModuleDict if k.endswith(f"({module})")]
        assert sets[name] == list(btm.ModuleDict[key]), name


def test_shipped_aliases_parse_and_cover_known_renames():
    aliases = read_aliases(SHIPPED_ALIASES)
    expected = {
        "LOC26010": "SPATS2L",
        "LOC129607": "CMPK2",
        "WARS": "WARS1",
        "DDX58": "RIGI",
        "G1P2": "ISG15",
        "G1P3": "IFI6",
        "C1orf29": "IFI44L",
    }
    assert expected.items() <= aliases.items()
    # Every shipped gene matches itself or its current symbol.
    sets = read_gmt(SHIPPED_GMT)
    genes = {aliases.get(g, g) for gs in sets.values() for g in gs}
    matched, cov = match_gene_sets(sets, sorted(genes), aliases)
    assert (cov["fraction_found"] == 1.0).all()


# --- reference gene sets in shared/data (skipped when absent) -------------------------------


@needs_shared
def test_shipped_li_modules_agree_with_tmod_reference(record_property):
    aliases = read_aliases(SHIPPED_ALIASES)
    ref = read_gmt(SHARED_GENESETS / "tmod_blood_ifn_modules.gmt")
    # tmod spells LI.M111.0 as LI_M111_0.
    ref_li = {n.replace("_", "."): g for n, g in ref.items() if n.startswith("LI_")}
    ours = {n: g for n, g in read_gmt(SHIPPED_GMT).items() if n.startswith("LI.")}
    assert set(ref_li) == set(ours)

    def current(genes):
        return {aliases.get(g, g) for g in genes}

    for name in sorted(ours):
        a, b = current(ours[name]), current(ref_li[name])
        jaccard = len(a & b) / len(a | b)
        record_property(f"{name}_overlap", f"{len(a & b)}/{len(a | b)}")
        print(f"{name}: {len(a & b)} shared of {len(a | b)} (Jaccard {jaccard:.2f})")
        assert jaccard >= 0.9, (name, sorted(a ^ b))


@needs_shared
@pytest.mark.parametrize(
    ("filename", "n_sets"),
    [
        ("h.all.v7.1.symbols.gmt", 50),
        ("hallmark_ifn_v7.1.gmt", 2),
        ("bloodgen3_ifn_modules_A28.gmt", 6),
        ("tmod_blood_ifn_modules.gmt", 9),
        ("reactome_ifn_msigdb_v7.1.gmt", 5),
    ],
)
def test_reference_gmts_parse(filename, n_sets):
    sets = read_gmt(SHARED_GENESETS / filename)
    assert len(sets) == n_sets
    assert all(sets.values())


@needs_shared
def test_reference_hallmark_sizes_and_type_i_overlap():
    hallmark = read_gmt(SHARED_GENESETS / "hallmark_ifn_v7.1.gmt")
    assert len(hallmark["HALLMARK_INTERFERON_ALPHA_RESPONSE"]) == 97
    assert len(hallmark["HALLMARK_INTERFERON_GAMMA_RESPONSE"]) == 200
    # Sanity check on the shipped sets: most RICE genes are Hallmark IFN-alpha genes.
    rice = read_gmt(SHIPPED_GMT)["RICE2013_6"]
    alpha = set(hallmark["HALLMARK_INTERFERON_ALPHA_RESPONSE"])
    assert sum(g in alpha for g in rice) >= 4
