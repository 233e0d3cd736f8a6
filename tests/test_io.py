import gzip

import numpy as np
import pytest

from ifnsig.errors import InputError
from ifnsig.io import (
    detect_count_format,
    featurecounts_sample_name,
    read_count_header,
    read_counts,
)


def write(path, text, gz=False):
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def test_reads_tsv_csv_and_gzip(tmp_path):
    text = "gene_id\tA\tB\ng1\t1\t2\ng2\t0\t5\n"
    for path in [
        write(tmp_path / "c.tsv", text),
        write(tmp_path / "c.csv", text.replace("\t", ",")),
        write(tmp_path / "c.tsv.gz", text, gz=True),
    ]:
        counts = read_counts(path)
        assert list(counts.columns) == ["A", "B"]
        assert counts.loc["g2", "B"] == 5
        assert counts.to_numpy().dtype == np.int64


def test_bom_and_windows_line_endings_are_accepted(tmp_path):
    path = write(tmp_path / "c.tsv", "\ufeffgene_id\tA\tB\r\ng1\t1\t2\r\ng2\t3\t4\r\n")
    counts = read_counts(path)
    assert counts.index.tolist() == ["g1", "g2"]
    assert counts.columns.tolist() == ["A", "B"]
    assert read_count_header(path) == ["A", "B"]


def test_featurecounts_output_is_read_as_written(tmp_path):
    text = (
        '# Program:featureCounts v2.0.3; Command:"featureCounts" "-a" "genes.gtf"\n'
        "Geneid\tChr\tStart\tEnd\tStrand\tLength\t/data/bam/S1.sorted.bam\t"
        "/data/bam/S2Aligned.sortedByCoord.out.bam\n"
        "ENSG1\tchr1\t1\t100\t+\t100\t7\t8\n"
        "ENSG2\tchr1;chr1\t5;50\t20;90\t+;+\t56\t0\t3\n"
    )
    path = write(tmp_path / "fc.txt", text)
    assert detect_count_format(path) == "featurecounts"
    counts = read_counts(path)
    assert counts.columns.tolist() == ["S1", "S2"]
    assert counts.loc["ENSG2"].tolist() == [0, 3]
    assert read_count_header(path) == ["S1", "S2"]


def test_featurecounts_sample_names():
    assert featurecounts_sample_name("/a/b/X_1.bam") == "X_1"
    assert featurecounts_sample_name("X_1Aligned.out.bam") == "X_1"
    assert featurecounts_sample_name("plain") == "plain"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("gene_id\tA\tB\ng1\t1\t2\ng1\t3\t4\n", "gene ID 'g1' appears more than once"),
        ("gene_id\tA\tB\ng1\t-1\t2\n", "is negative"),
        ("gene_id\tA\tB\ng1\t1.5\t2\n", "is not an integer"),
        ("gene_id\tA\tB\ng1\tNaN\t2\n", "'NaN'"),
        ("gene_id\tA\tB\ng1\t\t2\n", "is missing"),
        ("gene_id\tA\tB\ng1\tmany\t2\n", "is 'many'"),
        ("gene_id\tA\tB\n", "no gene rows"),
        ("", "empty"),
        ("gene_id;A;B\ng1;1;2\n", "single column"),
        ("gene_id\tA\tA\ng1\t1\t2\n", "appears more than once in the header"),
    ],
)
def test_bad_counts_are_rejected_with_location(tmp_path, text, fragment):
    path = write(tmp_path / "bad.tsv", text)
    with pytest.raises(InputError, match=fragment) as info:
        read_counts(path)
    assert str(path) in str(info.value)


def test_error_names_gene_line_and_column(tmp_path):
    path = write(tmp_path / "c.tsv", "gene_id\tA\tB\ng1\t1\t2\ng2\t3\t-4\n")
    with pytest.raises(InputError) as info:
        read_counts(path)
    message = str(info.value)
    assert "'g2'" in message and "line 3" in message and "'B'" in message


def test_a_writer_that_fails_half_way_leaves_no_file(tmp_path):
    from ifnsig.io import atomic_output

    target = tmp_path / "results" / "table.tsv"
    target.parent.mkdir()
    with pytest.raises(RuntimeError), atomic_output(target) as partial:
        partial.write_text("gene_id\tlog2FoldChange\nIFI27\t")
        raise RuntimeError("killed half-way")
    assert list(target.parent.iterdir()) == []
    with atomic_output(target) as partial:
        assert partial.suffix == ".tsv" and partial.parent == target.parent
        partial.write_text("gene_id\n")
    assert [p.name for p in target.parent.iterdir()] == ["table.tsv"]
