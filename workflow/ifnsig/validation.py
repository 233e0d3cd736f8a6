"""Validation of the configuration, the sample sheet and the clinical table.

Everything here is cheap (the count matrix is read only for its header), so the Snakefile
runs it while the workflow is parsed: a bad input fails before any job starts. The full
check of the count values happens in the first rule, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ifnsig.errors import InputError
from ifnsig.formats import count_sample_names
from ifnsig.genesets import SHIPPED_GMT, load_gene_sets
from ifnsig.io import read_sheet, require_file

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _validation_cause(err: Exception):
    # snakemake raises WorkflowError while handling the jsonschema error, which it keeps
    # only as text; the structured error (path, validator) is the exception's context.
    cause = err.__context__
    return cause if hasattr(cause, "validator") else None


def _schema_error(err: Exception, where: str) -> InputError:
    """Turn snakemake's WorkflowError around a jsonschema error into one sentence."""
    cause = _validation_cause(err)
    if cause is None:
        return InputError(f"{where}: {err}")
    path = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
    if cause.validator == "additionalProperties":
        unknown = sorted(set(cause.instance) - set(cause.schema.get("properties", {})))
        allowed = ", ".join(sorted(cause.schema.get("properties", {})))
        return InputError(
            f"{where}: unknown key {', '.join(repr(k) for k in unknown)} under {path}; "
            f"check its spelling (allowed keys: {allowed})."
        )
    return InputError(
        f"{where}: the value of '{path}' is invalid ({cause.message}); change it as "
        "config/README.md describes."
    )


def validate_config(config: dict, config_file: str = "config/config.yaml") -> dict:
    """Validate ``config`` against the schema and fill in defaults (in place)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA_DIR / "config.schema.yaml"))
    except WorkflowError as err:
        raise _schema_error(err, config_file) from None
    # Timepoints name the default contrasts, hence output files.
    unsafe = [t for t in config["timepoints"] if not SAFE_ID.match(t)]
    if unsafe:
        raise InputError(
            f"{config_file}: timepoints holds '{unsafe[0]}', which cannot be part of a file "
            "name; use only letters, digits, '.', '_' and '-' (in the sheets too)."
        )
    return config


def check_gene_sets(config: dict, config_file: str = "config/config.yaml") -> None:
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
    unknown = [(key, name) for key, name in keys if name not in defined]
    if unknown:
        key, name = unknown[0]
        raise InputError(
            f"{config_file}: scores.{key} names {name}, which no gene-set file defines; "
            f"choose from {', '.join(defined)}, or add a GMT file that defines it under "
            "scores.gene_sets."
        )
    for key, chosen in [("signature", scores["signatures"]), ("method", scores["methods"])]:
        if scores[f"primary_{key}"] not in chosen:
            raise InputError(
                f"{config_file}: scores.primary_{key} is '{scores[f'primary_{key}']}', which "
                f"is not among scores.{key}s ({', '.join(chosen)}); add it there or choose "
                "one of those."
            )


def _validate_rows(frame: pd.DataFrame, schema: str, path: Path) -> None:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(frame, str(SCHEMA_DIR / schema))
    except WorkflowError as err:
        message = str(err.args[0]) if err.args else ""
        match = re.search(r"row (\d+)", message)
        cause = _validation_cause(err)
        if match and cause is not None:
            row = int(match.group(1))
            column = ".".join(str(p) for p in cause.absolute_path) or "(row)"
            raise InputError(
                f"{path}: line {row + 2}, column '{column}': {cause.message}; fix the value."
            ) from None
        raise _schema_error(err, str(path)) from None


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
    frame = read_sheet(path, ["sample", "subject", "group", "timepoint", "batch", "sex", "drug"])
    missing = [c for c in ["sample", "subject", "group", "timepoint"] if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: required column(s) {', '.join(missing)} missing from the header; the sheet "
            "needs sample, subject, group and timepoint (optional: batch, sex, age, drug)."
        )
    for column in ["sample", "subject", "group", "timepoint"]:
        empty = frame[column].isna() | (frame[column] == "")
        if empty.any():
            line = int(empty.to_numpy().nonzero()[0][0]) + 2
            raise InputError(f"{path}: line {line}, column '{column}' is empty; fill it in.")
    for column in ["sample", "subject"]:
        bad = ~frame[column].str.match(SAFE_ID)
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            also = "count column" if column == "sample" else "rows of the clinical table"
            raise InputError(
                f"{path}: line {i + 2}, column '{column}' holds '{frame[column].iat[i]}', which "
                "is not a safe ID; use only letters, digits, '.', '_' and '-', starting with a "
                f"letter or digit (rename the matching {also} too)."
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
    bad = ~frame["group"].isin(allowed_groups)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            f"{path}: line {i + 2}, column 'group' holds '{frame['group'].iat[i]}'; use "
            f"'{groups['patient']}' or '{groups['control']}' (or change 'groups' in config.yaml)."
        )
    timepoints = config["timepoints"]
    bad = ~frame["timepoint"].isin(timepoints)
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            f"{path}: line {i + 2}, column 'timepoint' holds '{frame['timepoint'].iat[i]}', "
            f"which is not a declared timepoint; use one of {', '.join(timepoints)} or add it "
            "to 'timepoints' in config.yaml."
        )
    duplicated = frame[["subject", "timepoint"]].duplicated(keep=False) & (
        frame["group"] == groups["patient"]
    )
    if duplicated.any():
        rows = frame.index[duplicated]
        raise InputError(
            f"{path}: lines {', '.join(str(i + 2) for i in rows[:4])} give subject "
            f"'{frame['subject'].iat[rows[0]]}' more than one sample at timepoint "
            f"'{frame['timepoint'].iat[rows[0]]}'; keep one sample per subject and timepoint "
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
    excluded = set(config.get("exclude_samples", []))
    unknown = excluded - set(frame["sample"])
    if unknown:
        raise InputError(
            f"config/config.yaml: exclude_samples lists {', '.join(sorted(unknown))}, not in "
            f"{path}; remove the name or fix its spelling."
        )
    frame = frame[~frame["sample"].isin(excluded)]
    return frame.set_index("sample", drop=False).rename_axis(None)


def read_clinical_table(path: str | Path, samples: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Read and check the clinical table against the sample sheet and the declared measures."""
    path = require_file(path, "clinical table", "clinical")
    frame = read_sheet(path, ["subject", "timepoint"])
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
            f"{path}: measure(s) {', '.join(absent)} declared in config clinical_measures have "
            f"no column; add the column or remove the measure (columns: "
            f"{', '.join(frame.columns)})."
        )
    known_subjects = set(samples["subject"])
    for i, (subject, timepoint) in enumerate(
        zip(frame["subject"], frame["timepoint"], strict=True)
    ):
        if subject not in known_subjects:
            raise InputError(
                f"{path}: line {i + 2}, column 'subject' names '{subject}', who has no sample "
                "in the sample sheet; fix the ID or remove the row."
            )
        if timepoint not in config["timepoints"]:
            raise InputError(
                f"{path}: line {i + 2}, column 'timepoint' holds '{timepoint}', which is not a "
                f"declared timepoint; use one of {', '.join(config['timepoints'])}."
            )
    duplicated = frame[["subject", "timepoint"]].duplicated()
    if duplicated.any():
        i = int(duplicated.to_numpy().nonzero()[0][0])
        raise InputError(
            f"{path}: line {i + 2} repeats subject '{frame['subject'].iat[i]}' at timepoint "
            f"'{frame['timepoint'].iat[i]}'; keep one row per subject and timepoint."
        )
    for measure, spec in measures.items():
        values = pd.to_numeric(frame[measure], errors="coerce")
        text = frame[measure].astype(str).str.strip()
        not_numeric = values.isna() & frame[measure].notna() & (text != "")
        if not_numeric.any():
            i = int(not_numeric.to_numpy().nonzero()[0][0])
            raise InputError(
                f"{path}: line {i + 2}, column '{measure}' holds '{frame[measure].iat[i]}', "
                "which is not a number; write a number or leave the cell empty if missing."
            )
        low, high = spec.get("min"), spec.get("max")
        outside = pd.Series(False, index=values.index)
        if low is not None:
            outside |= values < low
        if high is not None:
            outside |= values > high
        if outside.any():
            i = int(outside.to_numpy().nonzero()[0][0])
            raise InputError(
                f"{path}: line {i + 2}, column '{measure}' holds {values.iat[i]:g}, outside its "
                f"declared range {_fmt(low)} to {_fmt(high)}; correct the value or the range "
                "in config clinical_measures."
            )
        frame[measure] = values
    return frame


def check_counts_match(
    count_samples: list[str],
    samples: pd.DataFrame,
    counts_path: str,
    sheet_path: str,
    excluded: list[str],
) -> None:
    """Check that the count matrix and the sample sheet name the same samples."""
    in_counts = set(count_samples)
    duplicated = {s for s in count_samples if count_samples.count(s) > 1}
    if duplicated:
        raise InputError(
            f"{counts_path}: column '{sorted(duplicated)[0]}' appears more than once in the "
            "header; every sample must have exactly one count column."
        )
    missing = [s for s in samples["sample"] if s not in in_counts]
    if missing:
        raise InputError(
            f"{sheet_path}: sample(s) {', '.join(missing[:5])} have no column in {counts_path}; "
            "fix the sample IDs so they match the count matrix header, or remove those rows."
        )
    extra = sorted(in_counts - set(samples["sample"]) - set(excluded))
    if extra:
        raise InputError(
            f"{counts_path}: column(s) {', '.join(extra[:5])} have no row in {sheet_path}; add "
            "them to the sample sheet or list them under exclude_samples in config.yaml."
        )


def check_reference_available(samples: pd.DataFrame, config: dict, sheet_path: str) -> None:
    """The IFN scores need healthy controls unless the reference is the baseline samples."""
    if config["scores"]["reference"] != "controls":
        return
    control = config["groups"]["control"]
    if not (samples["group"] == control).any():
        raise InputError(
            f"{sheet_path}: no sample has group '{control}', but the IFN scores use healthy "
            "controls as reference; add control samples or set scores.reference: baseline in "
            "config.yaml."
        )


def check_inputs(config: dict) -> tuple[Design, list]:
    """Everything the workflow checks at parse time: inputs, response definitions, DE plan.

    Returns the design and the planned DE fits; raises :class:`InputError` at the first
    problem.
    """
    from ifnsig.clinical import check_linkage
    from ifnsig.de import composition_covariates, plan_fits

    design = load_design(config)
    check_linkage(config, design.clinical, design.samples)
    # Composition scores come from the QC stage: only their names can be checked here.
    deferred = set(composition_covariates(config))
    return design, plan_fits(design.samples, config, design.clinical, deferred)


def load_design(config: dict, config_file: str = "config/config.yaml") -> Design:
    """Validate the configuration and every sheet; read only the header of the counts.

    This is what the Snakefile runs at parse time. It raises :class:`InputError` with a
    one-sentence message at the first problem.
    """
    validate_config(config, config_file)
    check_gene_sets(config, config_file)
    samples = read_sample_sheet(config["samples"], config)
    counts_path = config["counts"]
    # Only what names the samples is read: a header, folder names or an .h5ad's obs.
    check_counts_match(
        count_sample_names(config),
        samples,
        str(counts_path),
        str(config["samples"]),
        config["exclude_samples"],
    )
    check_reference_available(samples, config, str(config["samples"]))
    clinical = None
    if config.get("clinical"):
        clinical = read_clinical_table(config["clinical"], samples, config)
    return Design(
        samples=samples,
        clinical=clinical,
        timepoints=list(config["timepoints"]),
        patient=config["groups"]["patient"],
        control=config["groups"]["control"],
    )
