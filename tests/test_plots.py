"""Plots a collaborator can read: titles say what is compared and which way is up, every
colour has a key, and no text falls outside the figure (text boxes checked after drawing).

Drawn from the tables of the shared small run (read, never written: outputs go to tmp_path)
or from tiny in-memory data; no workflow is run here.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from ifnsig import enrichment, genesets, plots


def read(run: Path, *parts: str, **kwargs) -> pd.DataFrame:
    return pd.read_csv(run.joinpath(*parts), sep="\t", **kwargs)


def test_categorical_colours_do_not_repeat_past_twenty_levels():
    for n in [3, 12, 25, 45, 80]:
        colors = {tuple(np.round(c[:3], 3)) for c in plots.categorical_colors(n)}
        assert len(colors) == n


def test_contrast_direction_names_the_levels():
    title, xlabel = plots.contrast_direction("month3_vs_baseline")
    assert title == "month3 vs baseline" and "higher in month3" in xlabel


@pytest.mark.e2e
def test_volcano_labels_inside_titled_with_the_contrast(small_run, tmp_path, drawn):
    de = read(small_run, "results", "de", "month6_vs_baseline.tsv")
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT)
    plots.volcano(
        de, tmp_path / "v.png", highlight=sets["RICE2013_6"], contrast="month6_vs_baseline"
    )
    info = drawn["v.png"]
    assert info["titles"] == ["month6 vs baseline"]
    assert "higher in month6" in info["xlabels"][0]
    assert any("up" in t for t in info["legends"][0]) and not info["outside"]


def test_enrichment_dotplot_titles_sizes_and_ties_at_the_floor(tmp_path, drawn):
    names = [f"LI.M{i}" for i in range(100, 130)]
    table = pd.DataFrame(
        {
            "gene_set": names,
            "n_genes": np.arange(5, 35),
            "nes": np.linspace(-1, 3, 30),
            "pvalue": 1 / 101,
            "fdr": 1 / 101,
        }
    )
    titles = genesets.gene_set_titles(genesets.SHIPPED_GMT)
    plots.enrichment_dotplot(table, tmp_path / "d.png", titles=titles, contrast="m3_vs_b")
    info = drawn["d.png"]
    axis = info["axes"][0]
    labels = [t.get_text() for t in axis.get_yticklabels()]
    # All tied at the floor: the 20 largest |NES| are drawn, with the modules' titles.
    assert "type I interferon response (LI.M127)" in labels
    assert any("(LI.M100)" in label for label in labels)  # NES -1
    assert not any("(LI.M107)" in label for label in labels)  # NES -0.03
    assert info["legends"][0][0] == "genes in set" and len(info["legends"][0]) == 4
    assert info["colorbar_labels"] and not info["outside"]
    assert "up in m3" in info["xlabels"][0]


@pytest.mark.e2e
def test_running_scores_label_every_curve(small_run, tmp_path, drawn):
    de = read(small_run, "results", "de", "month6_vs_baseline.tsv")
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT)
    result = enrichment.prerank(enrichment.ranking(de), dict(sets), permutations=10, min_size=3)
    wanted = genesets.ifn_sets(sets)[:6]
    titles = genesets.gene_set_titles(genesets.SHIPPED_GMT)
    plots.running_scores(result, wanted, tmp_path / "r.png", titles=titles, contrast="m6_vs_b")
    info = drawn["r.png"]
    tested = [t for t in wanted if t in result.attrs["gseapy"].results]
    assert len(info["legends"][0]) - 1 == len(tested) >= 3
    assert all("NES" in entry for entry in info["legends"][0][1:])
    assert not info["outside"]


def test_roc_curves_that_coincide_stay_visible(tmp_path, drawn):
    subjects = [f"S{i}" for i in range(10)]
    change = pd.DataFrame(
        {
            "signature": "RICE2013_6",
            "method": "median_fold_change",
            "timepoint": "month6",
            "subject": subjects,
            "baseline_score": np.arange(10.0),
        }
    )
    calls = [True] * 5 + [False] * 5
    responses = pd.concat(
        [
            pd.DataFrame(
                {"response": name, "timepoint": "month6", "subject": subjects, "responder": calls}
            )
            for name in ["CMAS_gain_3", "PRINTO_inactive"]
        ]
    )
    plots.response_roc(
        change, responses, "RICE2013_6", "median_fold_change", "month6", tmp_path / "roc.png"
    )
    info = drawn["roc.png"]
    lines = [line for line in info["axes"][0].get_lines() if len(line.get_xdata()) > 2]
    assert len(lines) == 2 and lines[0].get_linewidth() > lines[1].get_linewidth()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    assert "same curve as CMAS_gain_3" in info["legends"][0][2]
    assert not info["outside"]


@pytest.mark.e2e
def test_type1_vs_type2_keeps_the_points_range_and_shows_the_controls(small_run, tmp_path, drawn):
    contrast = read(small_run, "results", "scores", "type1_vs_type2.tsv")
    contrast.loc[contrast.index[0], "type1_z"] = 100.0  # one extreme type I score
    plots.type1_vs_type2(
        contrast, "RICE2013_6", "median_fold_change", tmp_path / "t.png", patient_group="patient"
    )
    info = drawn["t.png"]
    data = contrast[
        (contrast["signature"] == "RICE2013_6") & (contrast["method"] == "median_fold_change")
    ]
    low, high = info["axes"][0].get_ylim()
    spread = data["type2_z"].max() - data["type2_z"].min()
    assert high - low < 1.5 * spread  # not stretched to 100 by the diagonal
    assert any(entry.startswith("control") for entry in info["legends"][0])
    controls = [c for c in info["axes"][0].collections if c.get_label().startswith("control")]
    assert controls and all(c.get_zorder() > 2 for c in controls)
    assert not info["outside"]


@pytest.mark.e2e
def test_heatmaps_have_colour_keys(small_run, tmp_path, drawn):
    adata = ad.read_h5ad(small_run / "results" / "data" / "normalized.h5ad")
    de = read(small_run, "results", "de", "month6_vs_baseline.tsv")
    fitted = read(small_run, "results", "de", "month6_vs_baseline.samples.tsv", dtype=str)
    groups = fitted.set_index("sample")["timepoint"]
    plots.top_gene_heatmap(adata, de, groups, tmp_path / "h.png", contrast="month6_vs_baseline")
    keys = drawn["h.png"]["legends"][0]
    assert "timepoint:" in keys and "subject:" in keys
    assert set(fitted["subject"]) <= set(keys) and not drawn["h.png"]["outside"]
    table = read(small_run, "results", "scores", "ifn_scores.tsv", dtype={"subject": str})
    sets = genesets.load_gene_sets(genesets.SHIPPED_GMT)
    plots.signature_heatmap(
        adata, sets, table, "RICE2013_6", "median_fold_change", "IFNG_BIASED", tmp_path / "s.png"
    )
    keys = drawn["s.png"]["legends"][0]
    assert {"group:", "timepoint:", "IFN call:", "positive"} <= set(keys)
    assert not drawn["s.png"]["outside"]


@pytest.mark.e2e
def test_scores_over_time_with_baseline_reference_draws_patient_lines(small_run, tmp_path, drawn):
    table = read(small_run, "results", "scores", "ifn_scores.tsv", dtype={"subject": str})
    # As scores.reference: baseline marks them: every baseline sample is a reference sample.
    table["reference"] = table["timepoint"] == "baseline"
    timepoints = ["baseline", "month3", "month6"]
    plots.scores_over_time(
        table,
        timepoints,
        "RICE2013_6",
        "median_fold_change",
        tmp_path / "o.png",
        {"patient": "patient", "control": "control"},
    )
    info = drawn["o.png"]
    axis = info["axes"][0]
    patients = table[(table["group"] == "patient")]["subject"].nunique()
    assert len([line for line in axis.get_lines() if len(line.get_xdata()) > 1]) >= patients
    ticks = [t.get_text() for t in axis.get_xticklabels()]
    assert "reference" not in ticks and ticks[1:] == [f"patient\n{tp}" for tp in timepoints]
    assert not info["outside"]


def test_correlation_heatmap_of_part_of_the_cohort_says_so(tmp_path, drawn):
    rng = np.random.default_rng(5)
    unit = rng.normal(size=(12, 30))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    samples = pd.DataFrame(
        {
            "sample": [f"s{i}" for i in range(12)],
            "group": ["patient", "control"] * 6,
            "timepoint": ["baseline", "month3", "month6"] * 4,
        }
    )
    plots.qc_correlation_heatmap(unit @ unit.T, samples, {"s1"}, tmp_path / "c.png", n_total=12)
    assert drawn["c.png"]["titles"] == ["sample-sample correlation (flagged samples in red)"]
    plots.qc_correlation_heatmap(
        unit @ unit.T, samples, {"s1"}, tmp_path / "part.png", n_total=12_000
    )
    title = "sample-sample correlation of 12 of 12,000 samples (flagged ones included)"
    assert drawn["part.png"]["titles"] == [title]


def trajectories_like_the_demo(path: Path) -> None:
    """The clinical trajectories figure at the demo's size: 25 patients, 3 timepoints, the
    score and 10 measures (semi-transparent lines: thousands of anti-aliased colours)."""
    rng = np.random.default_rng(3)
    timepoints = ["baseline", "month3", "month6"]
    rows = [(f"P{i:02d}", tp) for i in range(25) for tp in timepoints]
    frame = pd.DataFrame(rows, columns=["subject", "timepoint"])
    measures = {f"m{i}": {"label": f"measure {i} (0-10)"} for i in range(10)}
    clinical = frame.assign(**{m: rng.uniform(0, 10, len(frame)) for m in measures})
    scores = frame.assign(
        signature="S", method="median_fold_change", score=rng.uniform(0, 20, len(frame))
    )
    calls = pd.Series(rng.random(25) < 0.7, index=[f"P{i:02d}" for i in range(25)])
    plots.clinical_trajectories(
        scores, clinical, measures, "S", "median_fold_change", timepoints, path, calls, "R"
    )


def test_trajectories_of_many_patients_draw_the_same_lines_as_one_collection(
    tmp_path, drawn, monkeypatch
):
    from matplotlib.colors import to_rgba

    def lines(axis) -> list:
        if axis.collections:  # one collection of every patient, markers in a scatter
            segments = axis.collections[0].get_segments()
            colors = axis.collections[0].get_colors()
            return [(seg.tolist(), tuple(c)) for seg, c in zip(segments, colors, strict=True)]
        return [
            (np.column_stack(line.get_data()).tolist(), to_rgba(line.get_color(), 0.7))
            for line in axis.get_lines()
        ]

    trajectories_like_the_demo(tmp_path / "lines.png")
    monkeypatch.setattr(plots, "LINE_OBJECTS_MAX", 10)  # 25 patients: one collection
    trajectories_like_the_demo(tmp_path / "collection.png")
    one, many = drawn["lines.png"]["axes"], drawn["collection.png"]["axes"]
    assert not one[0].collections and len(many[0].collections) == 2
    for by_line, by_collection in zip(one[:11], many[:11], strict=True):
        assert lines(by_collection) == lines(by_line) and len(lines(by_line)) == 25
        assert by_collection.get_ylim() == pytest.approx(by_line.get_ylim(), rel=0.05)
        assert len(by_collection.collections[1].get_offsets()) == 75  # 25 x 3 markers


def test_figures_are_small_palette_pngs_and_reproducible(tmp_path):
    from PIL import Image

    trajectories_like_the_demo(tmp_path / "a.png")
    trajectories_like_the_demo(tmp_path / "b.png")
    data = (tmp_path / "a.png").read_bytes()
    assert data == (tmp_path / "b.png").read_bytes()
    image = Image.open(tmp_path / "a.png")
    # Matplotlib's own PNG of this figure takes 1.06 MB (this one 0.33 MB).
    assert image.mode == "P" and image.size == (1632, 1152) and len(data) < 400_000
    assert b"tEXt" not in data and b"tIME" not in data


# The second size is not a whole number of pixels at the figures' dpi.
@pytest.mark.parametrize("size", [(4, 3), (4.01, 3.007)])
def test_figures_with_a_colour_scale_keep_every_colour(tmp_path, size):
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    def figure():
        fig, ax = plt.subplots(figsize=size)
        shown = ax.imshow(np.random.default_rng(0).random((30, 30)), cmap="viridis")
        fig.colorbar(shown, ax=ax)
        return fig

    fig = figure()
    fig.savefig(buffer := io.BytesIO(), format="png", dpi=plots.FIGURE_DPI)
    plt.close(fig)
    expected = np.asarray(Image.open(buffer).convert("RGB"))
    plots.write_figure(figure(), tmp_path / "scale.png")
    written = Image.open(tmp_path / "scale.png")
    assert written.mode == "RGB" and np.array_equal(np.asarray(written), expected)


def test_top_gene_heatmap_of_thousands_of_samples_keeps_its_width_and_key(tmp_path, drawn):
    n_subjects, genes = 700, [f"g{i}" for i in range(5)]
    samples = [f"s{i}" for i in range(2 * n_subjects)]
    subjects = [f"P{i // 2}" for i in range(len(samples))]
    rng = np.random.default_rng(2)
    adata = ad.AnnData(
        obs=pd.DataFrame({"subject": subjects}, index=samples),
        var=pd.DataFrame({"symbol": genes}, index=genes),
    )
    adata.layers["vst"] = rng.normal(size=(len(samples), len(genes)))
    de = pd.DataFrame({"gene_id": genes, "symbol": genes, "pvalue": 0.01, "padj": 0.02})
    groups = pd.Series(["baseline", "month6"] * n_subjects, index=samples, name="timepoint")
    plots.top_gene_heatmap(adata, de, groups, tmp_path / "h.png", contrast="month6_vs_baseline")
    figure = drawn["h.png"]
    assert figure["axes"][0].figure.get_size_inches()[0] == plots.HEATMAP_MAX_WIDTH
    key = figure["legends"][0]
    assert "700 levels, one colour each" in key and "P3" not in key
    assert figure["outside"] == []


def test_annotation_strip_codes_each_sample_by_its_level():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    entries = plots._strip(ax, ["b", "a", "b", "c"], "x")
    codes = ax.images[0].get_array()
    plt.close(fig)
    assert [e.get_label() for e in entries] == ["b", "a", "c"]
    np.testing.assert_array_equal(codes, [[0, 1, 0, 2]])


def test_volcano_labels_repel_from_one_point_per_occupied_cell():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 0.05, 20_000), [2.0, -2.0, np.nan]])
    y = np.concatenate([rng.exponential(0.3, 20_000), [40.0, 35.0, 1.0]])
    kept_x, kept_y = plots._occupied_cells(x, y, cells=50)
    # The dense cloud collapses to its cells; the isolated genes are kept; no NaN reaches
    # adjustText; each kept point is a gene of the plot.
    assert len(kept_x) < 50 * 50 and len(kept_x) < 2_000
    assert {(2.0, 40.0), (-2.0, 35.0)} <= set(zip(kept_x, kept_y, strict=True))
    assert np.isfinite(kept_x).all() and np.isfinite(kept_y).all()
    assert set(kept_x) <= set(x[np.isfinite(x)])
    few = plots._occupied_cells(np.array([0.0, 1.0]), np.array([1.0, 2.0]), cells=50)
    assert [list(a) for a in few] == [[0.0, 1.0], [1.0, 2.0]]
