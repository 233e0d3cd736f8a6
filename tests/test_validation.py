import pytest

from ifnsig.errors import InputError
from ifnsig.validation import load_design, validate_config


def test_valid_inputs_load(tiny_inputs, base_config):
    design = load_design(base_config)
    assert len(design.samples) == 8
    assert design.baseline == "baseline"
    assert design.clinical["CMAS"].tolist() == [30, 40] * 3
    # Defaults from the schema are filled in.
    assert base_config["filtering"]["min_count"] == 10
    assert base_config["scores"]["reference"] == "controls"


def test_misspelled_config_key_is_named(base_config):
    base_config["filtreing"] = {}
    with pytest.raises(InputError, match="unknown key 'filtreing'"):
        validate_config(base_config)


def test_wrong_config_type_is_named(base_config):
    base_config["filtering"] = {"min_count": "ten"}
    with pytest.raises(InputError, match="filtering.min_count"):
        validate_config(base_config)


def edit(path, old, new):
    path.write_text(path.read_text().replace(old, new, 1))


@pytest.mark.parametrize(
    ("file", "old", "new", "fragment"),
    [
        ("samples.tsv", "P1_3\tP1", "P1_0\tP1", "appears on lines 2, 3"),
        ("samples.tsv", "P2_3\tP2\tpatient\tmonth3", "P2_3\tP2\tpatient\tmonth9", "'month9'"),
        ("samples.tsv", "C1\tC1\tcontrol", "C1\tC1\thealthy", "'healthy'"),
        ("samples.tsv", "P1_0\tP1", "P1 0\tP1", "not a safe ID"),
        ("samples.tsv", "P1_0\tP1", "../P1\tP1", "not a safe ID"),
        ("samples.tsv", "P1_0\tP1", "P1;rm\tP1", "not a safe ID"),
        ("samples.tsv", "C2\tC2\tcontrol\tbaseline\tF\n", "", "have no row in"),
        ("counts.tsv", "\tC2", "\tC9", "C2 have no column in"),
        ("clinical.tsv", "P3\tmonth3\t40", "P9\tmonth3\t40", "'P9', who has no sample"),
        ("clinical.tsv", "P3\tmonth3\t40", "P3\tweek2\t40", "'week2'"),
        ("clinical.tsv", "P3\tmonth3\t40", "P3\tmonth3\t60", "outside its declared range 0 to 52"),
        ("clinical.tsv", "P3\tmonth3\t40", "P3\tmonth3\tforty", "not a number"),
        ("clinical.tsv", "CMAS", "CMAS_total", "have no column"),
    ],
)
def test_bad_sheets_fail_with_file_and_line(tiny_inputs, base_config, file, old, new, fragment):
    edit(tiny_inputs / file, old, new)
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")) as info:
        load_design(base_config)
    assert ".tsv" in str(info.value)


def test_no_controls_is_an_error_unless_baseline_reference(tiny_inputs, base_config):
    for name in ["C1", "C2"]:
        edit(tiny_inputs / "samples.tsv", f"{name}\t{name}\tcontrol", f"{name}\t{name}\tpatient")
    with pytest.raises(InputError, match="scores.reference: baseline"):
        load_design(dict(base_config))
    base_config["scores"] = {"reference": "baseline"}
    assert len(load_design(base_config).samples) == 8


def test_excluded_samples_may_be_absent_from_sheet(tiny_inputs, base_config):
    base_config["exclude_samples"] = ["C2"]
    design = load_design(base_config)
    assert "C2" not in design.samples.index


def test_missing_input_file_names_the_key(tiny_inputs, base_config):
    base_config["counts"] = "nowhere.tsv"
    with pytest.raises(InputError, match="set 'counts'"):
        load_design(base_config)


# --- where a setting came from -------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    from ifnsig.config_files import check_yaml_syntax

    path = tmp_path / "config.yaml"
    path.write_text("de:\n  alpha: 0.1\n  contrasts: [\n seed: 1\n")
    with pytest.raises(InputError, match=r"config.yaml: line \d+, column \d+: .*YAML syntax"):
        check_yaml_syntax(path)


@pytest.mark.parametrize(
    ("written", "fragment"),
    [
        ("[baseline, On]", "timepoints[1] is meant to be a name, but YAML reads On as the boolean"),
        ("[baseline, No]", "YAML reads No as the boolean false"),
        ("[baseline, 010]", "YAML reads 010 as the number 8"),
        ("[baseline, 1e3]", None),  # YAML 1.1 reads 1e3 as text: a valid name
    ],
)
def test_yaml_readings_of_names_are_explained(tmp_path, monkeypatch, written, fragment):
    from ifnsig.config_files import ConfigSources, use_sources

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(f"timepoints: {written}\n")
    sources = ConfigSources.of_files(["config.yaml"])
    use_sources(sources)
    try:
        config = dict(sources.layers[0][1])
        if fragment is None:
            validate_config(config)
            assert config["timepoints"] == ["baseline", "1e3"]
            return
        with pytest.raises(InputError, match=fragment.replace("[", r"\[")) as info:
            validate_config(config)
        assert str(info.value).startswith("config.yaml: ") and "quote it" in str(info.value)
    finally:
        use_sources(ConfigSources())


def test_a_number_written_as_yaml_text_is_explained(base_config):
    base_config["scores"] = {"positivity_sd": "2e0"}
    with pytest.raises(InputError, match="YAML reads as text, not a number; write it with"):
        validate_config(base_config)


def test_messages_name_the_layer_that_set_the_key(tmp_path, monkeypatch):
    from ifnsig.config_files import ConfigSources

    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("seed: 1\nde:\n  alpha: 0.1\n")
    (tmp_path / "site.yaml").write_text("de:\n  inference: blocked\n")
    sources = ConfigSources.of_files(["config.yaml", "site.yaml"], {"scores": {"min_genes": "4"}})
    assert sources.origin("seed") == "config.yaml"
    assert sources.origin("de.inference") == "site.yaml"
    assert sources.origin("de.alpha") == "config.yaml"
    assert sources.origin("scores.min_genes") == "--config"
    assert sources.origin("enrichment.permutations") == "config.yaml"  # a default


def test_nested_command_line_values_get_the_schema_types():
    from ifnsig.config_files import ConfigSources
    from ifnsig.validation import config_schema

    # What Snakemake makes of --config 'de={alpha: 0.05, inference: blocked}' seed=3.
    given = {"de": {"alpha": "0.05", "inference": "blocked"}, "seed": 3}
    sources = ConfigSources.of_files([], given)
    config = {"de": {"alpha": "0.05", "inference": "blocked", "covariates": []}, "seed": 3}
    sources.type_command_line_values(config, config_schema())
    assert config["de"] == {"alpha": 0.05, "inference": "blocked", "covariates": []}


# Libraries that cost a job seconds to import, which neither the parse-time checks nor the
# module every job imports may load before a stage asks for them.
HEAVY = ("anndata", "scipy.stats", "statsmodels", "matplotlib", "pydeseq2", "scanpy", "gseapy")


def imported_heavy(code: str) -> list[str]:
    """The libraries of HEAVY that a fresh interpreter has loaded after running ``code`` (a
    module imported lazily is in ``sys.modules`` before it is loaded: it does not count)."""
    import json
    import subprocess
    import sys

    probe = (
        f"{code}\nimport json, sys, types\n"
        f"print(json.dumps([m for m in {HEAVY!r} if type(sys.modules.get(m)) is types.ModuleType]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_parse_time_checks_import_no_heavy_library():
    # What workflow/rules/common.smk imports when Snakemake parses the workflow.
    code = (
        "from ifnsig.analyses import describe\n"
        "from ifnsig.comparisons import score_comparison\n"
        "from ifnsig.de import de_tables, uses_responses\n"
        "from ifnsig.de.shards import shard_count\n"
        "from ifnsig.validation import check_inputs\n"
    )
    assert imported_heavy(code) == []


def test_a_job_loads_only_what_its_stage_uses():
    # Every job's script imports ifnsig.stages; the stage loads its libraries when it runs.
    assert imported_heavy("import ifnsig.stages") == []
    used = "import ifnsig.stages as s\ns.ad.AnnData\ns.scores.stats.norm\ns.plots.volcano"
    assert imported_heavy(used) == ["anndata", "scipy.stats", "matplotlib"]
    # summarize_findings reads the linkage tables' columns; their tests load scipy.stats.
    columns = "import ifnsig.linkage as l\nl.MIXED_COLUMNS, l.PAIRED_COLUMNS"
    assert imported_heavy(columns) == []
    assert imported_heavy(f"{columns}\nl.stats.wilcoxon") == ["scipy.stats"]
