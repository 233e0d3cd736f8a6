"""Validation of the configuration, the sample sheet and the clinical table.

Everything here is cheap (the count matrix is read only for its header), so the Snakefile
runs it while the workflow is parsed: a bad input fails before any job starts. The full
check of the count values happens in the first rule, before anything is written.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ifnsig.config_files import ConfigSources, origin, use_sources, written, yaml_reading
from ifnsig.errors import InputError
from ifnsig.formats import count_sample_names
from ifnsig.genesets import SHIPPED_GMT, load_gene_sets
from ifnsig.io import MISSING_VALUES, read_sheet, require_file

log = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: Columns of the sheets that hold IDs: a cell there is never read as a missing value.
SHEET_IDS = ("sample", "subject", "group", "timepoint")
CLINICAL_IDS = ("subject", "timepoint")
#: Column names of the workflow's gene x sample tables (``layer_table``), which a sample ID
#: would collide with.
RESERVED_SAMPLE_IDS = ("gene_id", "symbol", "biotype")


def _key(path) -> str:
    """A config key path as written in messages: ``de.contrasts[0].name``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _schema_error(cause) -> InputError:
    """A jsonschema error of the configuration as one sentence, naming the config file (or
    --config) that set the offending key."""
    path = list(cause.absolute_path)
    key = _key(path)
    source = origin(tuple(path))
    if cause.validator == "additionalProperties":
        unknown = sorted(set(cause.instance) - set(cause.schema.get("properties", {})))
        allowed = ", ".join(sorted(cause.schema.get("properties", {})))
        return InputError(
            f"{source}: unknown key {', '.join(repr(k) for k in unknown)} under {key}; "
            f"check its spelling (allowed keys: {allowed})."
        )
    expected = cause.schema.get("type") if cause.validator == "type" else None
    expected = expected if isinstance(expected, list) else [expected]
    value, spelled = cause.instance, written(tuple(path))
    if "string" in expected and not isinstance(value, str | dict | list):
        quoted = spelled if spelled is not None else str(value)
        return InputError(
            f"{source}: {key} is meant to be a name, but {yaml_reading(value, spelled)}; "
            f"quote it ('{quoted}') so that it stays a name."
        )
    if isinstance(value, str) and {"number", "integer"} & set(expected):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None:
            return InputError(
                f"{source}: {key} is '{value}', which YAML reads as text, not a number; "
                f"write it with a decimal point (e.g. {number:.1e}) or in full ({number:g})."
            )
    return InputError(
        f"{source}: the value of '{key}' is invalid ({cause.message}); change it as "
        "config/README.md describes."
    )


def config_schema() -> dict:
    """The configuration's JSON schema (workflow/schemas/config.schema.yaml)."""
    return copy.deepcopy(_config_schema())


@functools.cache
def _config_schema() -> dict:
    import yaml

    text = (SCHEMA_DIR / "config.schema.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.cache
def _config_validator():
    """A JSON-schema validator of the configuration that fills in the defaults, as
    ``snakemake.utils.validate`` does, built once per process: reading the schema is most
    of the cost of a validation."""
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, subschemas, instance, schema):
        for name, subschema in subschemas.items():
            if "default" in subschema and isinstance(instance, dict):
                # A copy: the cached schema's default must not become the config's value.
                instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from properties(validator, subschemas, instance, schema)

    extended = validators.extend(Draft202012Validator, {"properties": set_defaults})
    return extended(_config_schema())


def validate_config(config: dict) -> dict:
    """Validate ``config`` against the schema and fill in defaults (in place)."""
    from jsonschema import ValidationError

    try:
        _config_validator().validate(config)
    except ValidationError as err:
        raise _schema_error(err) from None
    # Timepoints name the default contrasts, hence output files.
    unsafe = [t for t in config["timepoints"] if not SAFE_ID.match(t)]
    if unsafe:
        raise InputError(
            f"{origin('timepoints')}: timepoints holds '{unsafe[0]}', which cannot be part of a "
            "file name; use only letters, digits, '.', '_' and '-' (in the sheets too)."
        )
    return config


def check_gene_sets(config: dict) -> None:
    """Parse every gene-set file the configuration names and check the scored signatures.

    The GMT files are small, so reading them here makes a malformed file fail when the
    workflow is parsed rather than in the scoring or enrichment rule.
    """
    scores = config["scores"]
    for key in ("scores", "enrichment"):
        for path in config[key]["gene_sets"]:
            require_file(path, "gene-set file", f"{key}.gene_sets")
    load_gene_sets([SHIPPED_GMT, *config["enrichment"]["gene_sets"]])
    defined = load_gene_sets([SHIPPED_GMT, *scores["gene_sets"]])
    keys = [("signatures", name) for name in scores["signatures"]]
    if scores.get("type2_signature"):
        keys.append(("type2_signature", scores["type2_signature"]))
    keys += [("modules", name) for name in scores["modules"]]
    unknown = [(key, name) for key, name in keys if name not in defined]
    if unknown:
        key, name = unknown[0]
        also = (
            " (module lists such as BloodGen3's or Chiche's are not shipped: export them to a "
            "GMT file)"
            if key == "modules"
            else ""
        )
        raise InputError(
            f"{origin(f'scores.{key}')}: scores.{key} names {name}, which no gene-set file "
            f"defines; choose from {', '.join(defined)}, or add a GMT file that defines it under "
            f"scores.gene_sets{also}."
        )
    if scores["modules"] and "module_activity" not in scores["methods"]:
        raise InputError(
            f"{origin('scores.modules')}: scores.modules names {', '.join(scores['modules'])}, "
            "but scores.methods lacks module_activity, which active modules are counted from; "
            "add module_activity to scores.methods or empty scores.modules."
        )
    for key, chosen in [("signature", scores["signatures"]), ("method", scores["methods"])]:
        if scores[f"primary_{key}"] not in chosen:
            raise InputError(
                f"{origin(f'scores.primary_{key}')}: scores.primary_{key} is "
                f"'{scores[f'primary_{key}']}', which is not among scores.{key}s "
                f"({', '.join(chosen)}); add it there or choose one of those."
            )


@functools.cache
def _row_validator(schema: str):
    """A JSON-schema validator of one row of a sheet, built once per process."""
    import yaml
    from jsonschema import Draft202012Validator

    text = (SCHEMA_DIR / schema).read_text(encoding="utf-8")
    return Draft202012Validator(
        yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    )


def _first_holding(path, frame: pd.DataFrame, flagged: pd.Series, column: str, value=None):
    """``"<path>: line N, column '<column>' holds '<cell>'"`` for the first flagged row (its
    line in the file, from the frame's index), or None when no row is flagged; ``value``
    formats the cell itself (default: quoted as written)."""
    if not flagged.any():
        return None
    i = int(flagged.to_numpy().nonzero()[0][0])
    cell = frame[column].iat[i]
    shown = f"'{cell}'" if value is None else value(cell)
    return f"{path}: line {frame.index[i] + 2}, column '{column}' holds {shown}"


def _validate_rows(frame: pd.DataFrame, schema: str, path: Path) -> None:
    """Check each row against a sheet schema; the index holds each row's position in the file.

    Empty cells are left out of a row before it is checked, as ``snakemake.utils.validate``
    does; the sheet schemas define no defaults.
    """
    from jsonschema import ValidationError

    validator = _row_validator(schema)
    for line, record in zip(frame.index, frame.to_dict("records"), strict=True):
        record = {k: v for k, v in record.items() if pd.notnull(v)}
        try:
            validator.validate(record)
        except ValidationError as cause:
            column = ".".join(str(p) for p in cause.absolute_path) or "(row)"
            raise InputError(
                f"{path}: line {line + 2}, column '{column}': {cause.message}; fix the value."
            ) from None


def _fmt(bound: float | None) -> str:
    return "unbounded" if bound is None else f"{bound:g}"


@dataclass
class Design:
    """The cohort as declared: validated sample sheet and clinical table."""

    samples: pd.DataFrame
    clinical: pd.DataFrame | None
    timepoints: list[str]
    patient: str
    control: str

    @property
    def baseline(self) -> str:
        return self.timepoints[0]


def read_sample_sheet(path: str | Path, config: dict) -> pd.DataFrame:
    """Read and check the sample sheet; returns it indexed by sample, excluded samples removed."""
    path = require_file(path, "sample sheet", "samples")
    frame = read_sheet(
        path,
        ["sample", "subject", "group", "timepoint", "batch", "sex", "drug"],
        id_columns=SHEET_IDS,
    )
    missing = [c for c in ["sample", "subject", "group", "timepoint"] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: required column(s) {', '.join(missing)} missing from the header; the sheet "
            "needs sample, subject, group and timepoint (optional: batch, sex, age, drug)."
        )
    # Exclusions come first: an excluded row may be a duplicate, a failed library or a
    # sample absent from the counts, and nothing else about it is checked.
    excluded = set(config.get("exclude_samples", []))
    dropped = frame[frame["sample"].isin(excluded)]
    # The index keeps each row's position in the file, for the line numbers of messages.
    frame = frame[~frame["sample"].isin(excluded)]
    frame.attrs["excluded_subjects"] = set(dropped["subject"].dropna()) - set(frame["subject"])
    frame.attrs["dropped"] = set(dropped["sample"])
    for column in ["sample", "subject", "group", "timepoint"]:
        empty = frame[column].isna() | (frame[column] == "")
        if empty.any():
            line = frame.index[int(empty.to_numpy().nonzero()[0][0])] + 2
            raise InputError(f"{path}: line {line}, column '{column}' is empty; fill it in.")
    for column in ["sample", "subject"]:
        if where := _first_holding(path, frame, ~frame[column].str.match(SAFE_ID), column):
            also = "count column" if column == "sample" else "rows of the clinical table"
            raise InputError(
                f"{where}, which is not a safe ID; use only letters, digits, '.', '_' and "
                f"'-', starting with a letter or digit (rename the matching {also} too)."
            )
    if where := _first_holding(path, frame, frame["sample"].isin(RESERVED_SAMPLE_IDS), "sample"):
        raise InputError(
            f"{where}, a name the workflow's gene tables use for their own columns "
            f"({', '.join(RESERVED_SAMPLE_IDS)}); rename the sample (and its count column)."
        )
    duplicated = frame["sample"][frame["sample"].duplicated()]
    if not duplicated.empty:
        lines = [str(i + 2) for i in frame.index[frame["sample"] == duplicated.iloc[0]]]
        raise InputError(
            f"{path}: sample '{duplicated.iloc[0]}' appears on lines {', '.join(lines)}; "
            "every sample must appear once."
        )
    _validate_rows(frame, "samples.schema.yaml", path)
    groups = config["groups"]
    allowed_groups = {groups["patient"], groups["control"]}
    if where := _first_holding(path, frame, ~frame["group"].isin(allowed_groups), "group"):
        raise InputError(
            f"{where}; use '{groups['patient']}' or '{groups['control']}' (or change "
            f"'groups' in {origin('groups')})."
        )
    timepoints = config["timepoints"]
    if where := _first_holding(path, frame, ~frame["timepoint"].isin(timepoints), "timepoint"):
        raise InputError(
            f"{where}, which is not a declared timepoint; use one of {', '.join(timepoints)} "
            f"or add it to 'timepoints' in {origin('timepoints')}."
        )
    duplicated = frame[["subject", "timepoint"]].duplicated(keep=False) & (
        frame["group"] == groups["patient"]
    )
    if duplicated.any():
        rows = frame.index[duplicated]
        raise InputError(
            f"{path}: lines {', '.join(str(i + 2) for i in rows[:4])} give subject "
            f"'{frame['subject'].loc[rows[0]]}' more than one sample at timepoint "
            f"'{frame['timepoint'].loc[rows[0]]}'; keep one sample per subject and timepoint "
            "(merge technical replicates first)."
        )
    mixed = frame.groupby("subject")["group"].nunique()
    if (mixed > 1).any():
        raise InputError(
            f"{path}: subject '{mixed.index[mixed > 1][0]}' is listed as both patient and "
            "control; give each subject one group."
        )
    if "sex" in frame.columns:
        frame["sex"] = frame["sex"].replace(
            {"F": "female", "f": "female", "M": "male", "m": "male"}
        )
    return frame.set_index("sample", drop=False).rename_axis(None)


def read_clinical_table(
    path: str | Path,
    samples: pd.DataFrame,
    config: dict,
    excluded_subjects: set[str] | None = None,
) -> pd.DataFrame:
    """Read and check the clinical table against the sample sheet and the declared measures.

    A row of a subject without an analysed sample is an error, unless the subject is in
    ``excluded_subjects`` (every sample excluded): such rows are dropped. ``None`` drops the
    rows of every subject without a sample, for jobs whose inputs were checked at parse time.
    """
    path = require_file(path, "clinical table", "clinical")
    frame = read_sheet(path, ["subject", "timepoint"], id_columns=CLINICAL_IDS)
    missing = [c for c in ["subject", "timepoint"] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: required column(s) {', '.join(missing)} missing from the header; the "
            "clinical table needs subject and timepoint, then one column per measure."
        )
    _validate_rows(frame, "clinical.schema.yaml", path)
    measures = config["clinical_measures"]
    absent = [m for m in measures if m not in frame.columns]
    if absent:
        raise InputError(
            f"{path}: measure(s) {', '.join(absent)} declared in "
            f"{origin('clinical_measures')} clinical_measures have no column; add the column or "
            f"remove the measure (columns: {', '.join(frame.columns)})."
        )
    known_subjects = set(samples["subject"])
    unknown = ~frame["subject"].isin(known_subjects)
    if excluded_subjects is not None:
        unknown_error = unknown & ~frame["subject"].isin(excluded_subjects)
        if unknown_error.any():
            i = int(unknown_error.to_numpy().nonzero()[0][0])
            raise InputError(
                f"{path}: line {i + 2}, column 'subject' names '{frame['subject'].iat[i]}', who "
                "has no sample in the sample sheet; fix the ID or remove the row."
            )
    frame = frame[~unknown]
    undeclared = ~frame["timepoint"].isin(config["timepoints"])
    if where := _first_holding(path, frame, undeclared, "timepoint"):
        raise InputError(
            f"{where}, which is not a declared timepoint; use one of "
            f"{', '.join(config['timepoints'])}."
        )
    duplicated = frame[["subject", "timepoint"]].duplicated()
    if duplicated.any():
        i = int(duplicated.to_numpy().nonzero()[0][0])
        raise InputError(
            f"{path}: line {frame.index[i] + 2} repeats subject '{frame['subject'].iat[i]}' at "
            f"timepoint '{frame['timepoint'].iat[i]}'; keep one row per subject and timepoint."
        )
    frame = frame.copy()
    for measure, spec in measures.items():
        values = pd.to_numeric(frame[measure], errors="coerce")
        text = frame[measure].astype(str).str.strip()
        not_numeric = values.isna() & frame[measure].notna() & (text != "")
        if where := _first_holding(path, frame, not_numeric, measure):
            raise InputError(
                f"{where}, which is not a number; write a number or leave the cell empty if "
                "missing."
            )
        low, high = spec.get("min"), spec.get("max")
        outside = pd.Series(False, index=values.index)
        if low is not None:
            outside |= values < low
        if high is not None:
            outside |= values > high
        numbers = frame.assign(**{measure: values})
        if where := _first_holding(path, numbers, outside, measure, lambda v: f"{v:g}"):
            raise InputError(
                f"{where}, outside its declared range {_fmt(low)} to {_fmt(high)}; correct "
                f"the value or the range in {origin(('clinical_measures', measure))}."
            )
        frame[measure] = values
        if len(frame) and values.isna().all():
            log.warning(
                "%s: column '%s' has no value in any row (empty cells and %s are missing "
                "values), so its changes, response calls and links to the scores are empty; "
                "fill it in or remove it from clinical_measures in %s",
                path,
                measure,
                "/".join(v for v in MISSING_VALUES if v),
                origin(("clinical_measures", measure)),
            )
    return frame.reset_index(drop=True)


def clinical_values(path: str | Path, columns: list[str]) -> pd.DataFrame:
    """``subject``, ``timepoint`` and ``columns`` of a clinical table checked at parse time.

    Numbers stay numbers; text columns stay text. For jobs that need a few clinical values
    (a DE covariate) without the whole table's checks.
    """
    frame = read_sheet(path, ["subject", "timepoint"], id_columns=CLINICAL_IDS)
    frame = frame[["subject", "timepoint", *columns]].copy()
    for column in columns:
        numeric = pd.to_numeric(frame[column], errors="coerce")
        if numeric.notna().sum() == frame[column].notna().sum():
            frame[column] = numeric
    return frame


def check_counts_match(
    count_samples: list[str],
    samples: pd.DataFrame,
    counts_path: str,
    sheet_path: str,
    excluded: list[str],
) -> None:
    """Check that the count matrix and the sample sheet name the same samples.

    Excluded samples may be in either, both or neither file; one named in neither is a
    typo, reported as such.
    """
    in_counts = set(count_samples)
    duplicated = {s for s in count_samples if count_samples.count(s) > 1 and s not in set(excluded)}
    if duplicated:
        raise InputError(
            f"{counts_path}: column '{sorted(duplicated)[0]}' appears more than once in the "
            "header; every sample must have exactly one count column."
        )
    missing = [s for s in samples["sample"] if s not in in_counts]
    if missing:
        raise InputError(
            f"{sheet_path}: sample(s) {', '.join(missing[:5])} have no column in {counts_path}; "
            "fix the sample IDs so they match the count matrix header, remove those rows, or "
            "list them under exclude_samples."
        )
    extra = sorted(in_counts - set(samples["sample"]) - set(excluded))
    if extra:
        raise InputError(
            f"{counts_path}: column(s) {', '.join(extra[:5])} have no row in {sheet_path}; add "
            f"them to the sample sheet or list them under exclude_samples in "
            f"{origin('exclude_samples')}."
        )


def check_exclusions(excluded: list[str], sheet: pd.DataFrame, count_samples: list[str]) -> None:
    """An excluded sample named neither in the sheet nor in the counts is a typo."""
    known = set(count_samples) | set(sheet["sample"]) | set(sheet.attrs.get("dropped", ()))
    unknown = sorted(set(excluded) - known)
    if unknown:
        raise InputError(
            f"{origin('exclude_samples')}: exclude_samples lists {', '.join(unknown)}, which is "
            "neither in the sample sheet nor in the count matrix; remove the name or fix its "
            "spelling."
        )


def check_frozen_reference(config: dict) -> None:
    """A saved IFN-score reference (``scores.frozen_reference``) is readable, is not this run's
    own output, and holds the gene sets and methods asked for, with the same gene lists.

    The same functions of :mod:`ifnsig.reference` check it again when the scores are made.
    """
    from ifnsig import reference
    from ifnsig.scores import scored_signatures

    chosen = config["scores"]
    folder = chosen.get("frozen_reference")
    if not folder:
        return
    where = origin("scores.frozen_reference")
    own = Path("results/scores/reference").resolve()
    if Path(folder).resolve() == own:
        raise InputError(
            f"{where}: scores.frozen_reference is {folder}, the folder this run writes its own "
            "reference to; copy that folder elsewhere (e.g. references/2024-run) and point "
            "scores.frozen_reference there."
        )
    try:
        ref = reference.read_reference(folder)
        names = scored_signatures(chosen)
        reference.check_scored(ref, names, chosen["methods"])
        listed = load_gene_sets([SHIPPED_GMT, *chosen["gene_sets"]], include=names)
        reference.check_gene_sets(ref, dict(listed))
    except InputError as err:
        text = str(err)
        raise InputError(f"{where}: scores.frozen_reference: {text[0].lower()}{text[1:]}") from None


def check_reference_available(samples: pd.DataFrame, config: dict, sheet_path: str) -> None:
    """The IFN scores need healthy controls unless the reference is the baseline samples or a
    saved reference."""
    if config["scores"]["reference"] != "controls" or config["scores"].get("frozen_reference"):
        return
    control = config["groups"]["control"]
    if not (samples["group"] == control).any():
        raise InputError(
            f"{sheet_path}: no sample has group '{control}', but the IFN scores use healthy "
            "controls as reference; add control samples or set scores.reference: baseline in "
            f"{origin('scores.reference')}."
        )


def load_samples(config: dict) -> pd.DataFrame:
    """The sample sheet, exclusions applied, checked against the samples the counts name.

    The first rule and the parse-time check both call this, so both find the same problems.
    """
    samples = read_sample_sheet(config["samples"], config)
    # Only what names the samples is read: a header, folder names or an .h5ad's obs.
    count_samples = count_sample_names(config)
    check_exclusions(config["exclude_samples"], samples, count_samples)
    check_counts_match(
        count_samples,
        samples,
        str(config["counts"]),
        str(config["samples"]),
        config["exclude_samples"],
    )
    return samples


def check_inputs(config: dict, sources: ConfigSources | None = None) -> tuple[Design, list]:
    """Everything the workflow checks at parse time: inputs, response definitions, DE plan.

    ``sources`` tells messages which file (or ``--config``) set each key. Returns the design
    and the planned DE fits; raises :class:`InputError` at the first problem.
    """
    from ifnsig.comparisons import check_score_comparison
    from ifnsig.de.plan import (
        check_composition_covariates,
        composition_covariates,
        plan_fits,
        uses_responses,
    )
    from ifnsig.linkage import check_covariates
    from ifnsig.response import check_responses, clinical_responses
    from ifnsig.trajectories import check_groups

    if sources is not None:
        use_sources(sources)
        sources.type_command_line_values(config, config_schema())
    design = load_design(config)
    check_responses(config, design.clinical)
    check_covariates(config, design.samples)
    check_groups(config, design.samples)
    check_score_comparison(config, design.samples)
    # Composition scores come from the QC stage: only their names can be checked here.
    check_composition_covariates(config)
    deferred = set(composition_covariates(config))
    # Responder contrasts use the calls the call_responses job will make, from the same code,
    # which also parses every response column: the job then finds no problem the parse
    # did not.
    responses = None
    if design.clinical is not None and (uses_responses(config) or config["linkage"]["responses"]):
        _, responses = clinical_responses(design.clinical, config, str(config["clinical"]))
    fits = plan_fits(design.samples, config, design.clinical, responses, deferred=deferred)
    return design, fits


def load_design(config: dict) -> Design:
    """Validate the configuration and every sheet; read only the header of the counts.

    This is what the Snakefile runs at parse time. It raises :class:`InputError` with a
    one-sentence message at the first problem.
    """
    from ifnsig.de.size_factors import check_setting

    validate_config(config)
    check_gene_sets(config)
    check_setting(config)
    check_frozen_reference(config)
    samples = load_samples(config)
    if config.get("annotation"):
        from ifnsig.data import check_annotation

        check_annotation(config["annotation"])
    check_reference_available(samples, config, str(config["samples"]))
    clinical = None
    if config.get("clinical"):
        clinical = read_clinical_table(
            config["clinical"], samples, config, samples.attrs.get("excluded_subjects", set())
        )
    return Design(
        samples=samples,
        clinical=clinical,
        timepoints=list(config["timepoints"]),
        patient=config["groups"]["patient"],
        control=config["groups"]["control"],
    )
