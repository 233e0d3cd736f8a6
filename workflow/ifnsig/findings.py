"""The findings of a run, read back from its result tables, as the report's first page.

Every number on the page is computed here from a result table and carries that table's
path (``data-table``), so a reader can open the rows behind it; it also carries a stable
key (``data-key``) by which tests compare the page with the tables.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Names the adjusted p-value goes by in the result tables, in order of preference.
ADJUSTED_P = ("padj", "fdr", "qvalue", "p_adj", "fdr_bh")


def adjusted_p(frame: pd.DataFrame) -> str:
    """The adjusted p-value column of a result table."""
    for name in ADJUSTED_P:
        if name in frame.columns:
            return name
    raise KeyError(f"no adjusted p-value column among {list(frame.columns)}")


def fmt(value) -> str:
    """Integers as they are; other numbers with 3 significant digits (p-values below 0.001
    in scientific notation); missing values as 'NA'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer) or float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    value = float(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.3g}"


@dataclass
class Page:
    """Sections of the findings page, each a heading and HTML paragraphs or list items."""

    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    #: Numbers for the report's captions that the page itself does not show.
    extra: dict[str, object] = field(default_factory=dict)

    def section(self, title: str) -> list[str]:
        items: list[str] = []
        self.sections.append((title, items))
        return items

    def num(self, key: str, value, table: str) -> str:
        """A number of the page, linked to its table and recorded under ``key``."""
        self.values[key] = value
        self.sources[key] = table
        return (
            f'<a class="num" href="#" data-table="{html.escape(table)}" '
            f'data-key="{html.escape(key)}" title="{html.escape(table)}">{fmt(value)}</a>'
        )

    def record(self, key: str, value, table: str) -> None:
        """Keep a number (or name) of the run for the captions only, with its table."""
        self.extra[key] = value
        self.sources[key] = table

    def numbers(self) -> pd.DataFrame:
        """Every number of the page: ``key``, ``value`` (as the page shows it) and ``table``,
        the result table it was computed from. The report's captions quote them by key."""
        every = {**self.values, **self.extra}
        return pd.DataFrame(
            {
                "key": list(every),
                "value": [v if isinstance(v, str) else fmt(v) for v in every.values()],
                "table": [self.sources.get(key, "") for key in every],
            },
            columns=["key", "value", "table"],
        )

    def html(self) -> str:
        parts = []
        for title, items in self.sections:
            parts.append(f"<h2>{html.escape(title)}</h2>")
            listed = [item for item in items if not item.startswith("<table")]
            if listed:
                parts.append("<ul>" + "".join(f"<li>{item}</li>" for item in listed) + "</ul>")
            parts += [item for item in items if item.startswith("<table")]
        return "\n".join(parts)


def source(table: str) -> str:
    return f'<span class="src">(<a href="#" data-table="{html.escape(table)}">{table}</a>)</span>'


def cohort(page: Page, samples: pd.DataFrame, settings: dict, table: str) -> None:
    """Samples, subjects, timepoints and controls of the samples analysed."""
    items = page.section("Cohort")
    patient, control = settings["groups"]["patient"], settings["groups"]["control"]
    patients = samples[samples["group"] == patient]
    controls = samples[samples["group"] == control]
    items.append(
        f"{page.num('cohort.samples', len(samples), table)} samples of "
        f"{page.num('cohort.subjects', samples['subject'].nunique(), table)} subjects: "
        f"{page.num('cohort.patients', patients['subject'].nunique(), table)} patients "
        f"({page.num('cohort.patient_samples', len(patients), table)} samples) and "
        f"{page.num('cohort.controls', controls['subject'].nunique(), table)} controls "
        f"({page.num('cohort.control_samples', len(controls), table)} samples). " + source(table)
    )
    counts = [
        f"{html.escape(tp)} {page.num(f'cohort.timepoint.{tp}', int((patients['timepoint'] == tp).sum()), table)}"  # noqa: E501
        for tp in settings["timepoints"]
    ]
    items.append("Patient samples per timepoint: " + ", ".join(counts) + ".")
    if "drug" in samples.columns and patients["drug"].notna().any():
        drugs = patients.drop_duplicates("subject")["drug"].value_counts().sort_index()
        items.append(
            "Patients per drug: "
            + ", ".join(
                f"{html.escape(str(d))} {page.num(f'cohort.drug.{d}', int(n), table)}"
                for d, n in drugs.items()
            )
            + "."
        )


def positivity(page: Page, scores: pd.DataFrame, settings: dict, table: str) -> None:
    """IFN-positive patients at baseline, by the primary signature and method."""
    items = page.section("IFN signature at baseline")
    signature = settings["scores"]["primary_signature"]
    method = settings["scores"]["primary_method"]
    baseline = settings["timepoints"][0]
    primary = scores[(scores["signature"] == signature) & (scores["method"] == method)]
    rows = primary[
        (primary["group"] == settings["groups"]["patient"]) & (primary["timepoint"] == baseline)
    ]
    positive = rows["positive"].astype(str).str.lower() == "true"
    threshold = primary["threshold"].iloc[0] if len(primary) else float("nan")
    reference = primary["reference_group"].iloc[0] if len(primary) else ""
    share = 100 * positive.mean() if len(rows) else float("nan")
    items.append(
        f"{page.num('positivity.positive', int(positive.sum()), table)} of "
        f"{page.num('positivity.patients', len(rows), table)} patients "
        f"({page.num('positivity.percent', share, table)}%) were IFN-positive at {baseline}: "
        f"{html.escape(signature)} by {html.escape(method.replace('_', ' '))} above "
        f"{page.num('positivity.threshold', threshold, table)} (reference "
        f"{html.escape(str(reference))} mean + {settings['scores']['positivity_sd']} SD). "
        + source(table)
    )
    if settings["scores"]["reference"] == "baseline":
        items.append(
            "<b>No healthy-control reference</b>: scores are relative to the cohort's baseline."
        )


def score_change(page: Page, tests: pd.DataFrame, settings: dict, table: str) -> None:
    """The primary score's change at each follow-up, Wilcoxon signed-rank."""
    items = page.section("IFN score on treatment")
    signature = settings["scores"]["primary_signature"]
    method = settings["scores"]["primary_method"]
    rows = tests[(tests["signature"] == signature) & (tests["method"] == method)]
    q = adjusted_p(tests) if len(tests) else "fdr"
    for _, row in rows.iterrows():
        tp = row["timepoint"]
        key = f"change.{tp}"
        items.append(
            f"{html.escape(tp)} vs {html.escape(str(row['reference']))}: median "
            f"{page.num(f'{key}.median_baseline', row['median_baseline'], table)} &rarr; "
            f"{page.num(f'{key}.median_followup', row['median_followup'], table)}, median "
            f"change {page.num(f'{key}.estimate', row['estimate'], table)} "
            f"(CI {page.num(f'{key}.ci_low', row['ci_low'], table)} to "
            f"{page.num(f'{key}.ci_high', row['ci_high'], table)}) in "
            f"{page.num(f'{key}.n', int(row['n']), table)} patients; Wilcoxon signed-rank "
            f"p = {page.num(f'{key}.pvalue', row['pvalue'], table)}, adjusted "
            f"{page.num(f'{key}.adjusted', row[q], table)}. " + source(table)
        )
    if rows.empty:
        items.append("No patient has a baseline and a follow-up score. " + source(table))


def differential_expression(
    page: Page, tables: Mapping[str, pd.DataFrame], alpha: float, paths: Mapping[str, str]
) -> None:
    """Genes tested and significant (adjusted p below ``alpha``) per contrast, by direction."""
    items = page.section(f"Differential expression (adjusted p < {alpha})")
    for name, frame in tables.items():
        table = paths[name]
        q = adjusted_p(frame)
        fold = "log2FoldChange" if "log2FoldChange" in frame.columns else None
        significant = frame[frame[q] < alpha]
        text = (
            f"<code>{html.escape(name)}</code>: "
            f"{page.num(f'de.{name}.significant', len(significant), table)} of "
            f"{page.num(f'de.{name}.tested', int(frame[q].notna().sum()), table)} genes tested"
        )
        if fold:
            up = int((significant[fold] > 0).sum())
            down = int((significant[fold] < 0).sum())
            text += (
                f" ({page.num(f'de.{name}.up', up, table)} up, "
                f"{page.num(f'de.{name}.down', down, table)} down)"
            )
        items.append(text + ". " + source(table))


def top_ranked_sets(
    page: Page,
    tables: Mapping[str, pd.DataFrame],
    top: int,
    paths: Mapping[str, str],
    *,
    column: str,
    label: str,
    section: str,
    key: str,
) -> None:
    """The ``top`` gene sets per contrast, by adjusted p then |``column``| (ties by name).

    Each set is listed with ``label`` and its ``column`` value (and its ``direction`` where the
    table has one), then its adjusted p; ``key`` prefixes the page's value keys.
    """
    items = page.section(section)
    for name, frame in tables.items():
        table = paths[name]
        if frame.empty:
            items.append(f"<code>{html.escape(name)}</code>: no gene set tested. " + source(table))
            continue
        q = adjusted_p(frame)
        ranked = frame.assign(_abs=frame[column].abs()).sort_values(
            [q, "_abs", "gene_set"], ascending=[True, False, True], kind="mergesort"
        )
        listed = []
        for i, (_, row) in enumerate(ranked.head(top).iterrows()):
            at = f"{key}.{name}.{i + 1}"
            page.values[f"{at}.gene_set"] = row["gene_set"]
            page.sources[f"{at}.gene_set"] = table
            direction = (
                f"{html.escape(str(row['direction']))}, " if "direction" in row.index else ""
            )
            listed.append(
                f"{html.escape(str(row['gene_set']))} ({direction}{label} "
                f"{page.num(f'{at}.{column}', row[column], table)}, adjusted p "
                f"{page.num(f'{at}.adjusted', row[q], table)})"
            )
        text = f"<code>{html.escape(name)}</code>: " + "; ".join(listed)
        items.append(text + ". " + source(table))


def clinical_links(
    page: Page,
    correlations: pd.DataFrame,
    mixed: pd.DataFrame,
    settings: dict,
    paths: Mapping[str, str],
) -> None:
    """Score change vs clinical change and the mixed models, for the primary score."""
    items = page.section("IFN score and the clinical course")
    signature = settings["scores"]["primary_signature"]
    method = settings["scores"]["primary_method"]
    for frame, name, what in [
        (correlations, "correlations", "Score change vs change of each measure (Spearman rho)"),
        (mixed, "mixed_models", "Mixed models, measure ~ score + time (slope of the score)"),
    ]:
        table = paths[name]
        rows = frame[(frame["signature"] == signature) & (frame["method"] == method)]
        if rows.empty:
            items.append(f"No {name.replace('_', ' ')} were fitted. " + source(table))
            continue
        q = adjusted_p(frame)
        lines = []
        for _, row in rows.sort_values(["pvalue", "measure"], kind="mergesort").iterrows():
            at = str(row["timepoint"]) if "timepoint" in row.index else ""
            key = f"{name}.{row['measure']}" + (f".{at}" if at else "")
            cells = [
                html.escape(str(row["measure"])),
                html.escape(at),
                page.num(f"{key}.estimate", row["estimate"], table),
                f"{page.num(f'{key}.ci_low', row['ci_low'], table)} to "
                f"{page.num(f'{key}.ci_high', row['ci_high'], table)}",
                page.num(f"{key}.n", int(row["n"]), table),
                page.num(f"{key}.pvalue", row["pvalue"], table),
                page.num(f"{key}.adjusted", row[q], table),
            ]
            lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        head = ["measure", "at", "estimate", "CI", "n", "p", "adjusted p"]
        items.append(
            f'<table class="findings"><caption>{what} {source(table)}</caption><tr>'
            + "".join(f"<th>{h}</th>" for h in head)
            + "</tr>"
            + "".join(lines)
            + "</table>"
        )


def responders(
    page: Page,
    calls: pd.DataFrame,
    prediction: pd.DataFrame,
    settings: dict,
    paths: Mapping[str, str],
) -> None:
    """Responders per definition at the last timepoint, and the score's ROC AUC for them."""
    items = page.section("Response")
    last = settings["timepoints"][-1]
    table = paths["response"]
    if calls.empty:
        items.append("No response was defined (linkage.responses). " + source(table))
        return
    at_last = calls[calls["timepoint"] == last]
    for name, rows in at_last.groupby("response", sort=False):
        called = rows["responder"].astype(str).str.lower()
        n_yes = int((called == "true").sum())
        n_called = int(called.isin(["true", "false"]).sum())
        items.append(
            f"{html.escape(str(name))} at {html.escape(last)}: "
            f"{page.num(f'response.{name}.responders', n_yes, table)} responders of "
            f"{page.num(f'response.{name}.called', n_called, table)} patients called. "
            + source(table)
        )
    table = paths["baseline_prediction"]
    signature = settings["scores"]["primary_signature"]
    method = settings["scores"]["primary_method"]
    rows = prediction[
        (prediction["signature"] == signature)
        & (prediction["method"] == method)
        & (prediction["analysis"] == "mann_whitney")
        & (prediction["timepoint"] == last)
    ]
    primary = settings["linkage"]["primary_response"]
    if primary:
        rows = rows[rows["response"] == primary]
    if rows.empty:
        return
    q = adjusted_p(prediction)
    for _, row in rows.iterrows():
        key = f"prediction.{row['response']}.{row['predictor']}"
        items.append(
            f"{html.escape(str(row['predictor']).replace('_', ' '))} of {html.escape(signature)}"
            f" separating {html.escape(str(row['response']))} responders: ROC AUC "
            f"{page.num(f'{key}.auc', row['estimate'], table)} (CI "
            f"{page.num(f'{key}.ci_low', row['ci_low'], table)} to "
            f"{page.num(f'{key}.ci_high', row['ci_high'], table)}), Mann-Whitney p = "
            f"{page.num(f'{key}.pvalue', row['pvalue'], table)}, adjusted "
            f"{page.num(f'{key}.adjusted', row[q], table)}. " + source(table)
        )


def qc_flags(page: Page, flags: pd.DataFrame, table: str) -> None:
    """Flags raised by the QC checks (never dropping samples)."""
    items = page.section("Quality control")
    text = (
        f"{page.num('qc.flags', len(flags), table)} flags on "
        f"{page.num('qc.flagged_samples', flags['sample'].nunique(), table)} samples"
    )
    if len(flags):
        by_check = flags["check"].value_counts().sort_index()
        text += ": " + ", ".join(
            f"{html.escape(str(c))} {page.num(f'qc.check.{c}', int(n), table)}"
            for c, n in by_check.items()
        )
    items.append(
        text + ". Flags never drop a sample (<code>exclude_samples</code> does). " + source(table)
    )


def scored(page: Page, scores: pd.DataFrame, table: str) -> None:
    """What was scored (signatures, methods, samples): numbers for the report's captions,
    not shown as a section of the page."""
    signatures = list(dict.fromkeys(scores["signature"].astype(str)))
    methods = list(dict.fromkeys(scores["method"].astype(str)))
    page.record("scores.signatures", len(signatures), table)
    page.record("scores.signature_names", ", ".join(signatures), table)
    page.record("scores.methods", ", ".join(methods), table)
    page.record("scores.samples", int(scores["sample"].nunique()), table)


def findings_page(
    frames: Mapping[str, pd.DataFrame],
    paths: Mapping[str, str],
    settings: dict,
    de_names: list[str],
) -> Page:
    """Every section of the page from the run's tables (``frames``, keyed as ``paths``: the
    fixed tables by name, DE tables as ``de:<contrast>``, prerank as ``prerank:<contrast>``).
    """
    page = Page()
    cohort(page, frames["samples"], settings, paths["samples"])
    positivity(page, frames["scores"], settings, paths["scores"])
    score_change(page, frames["paired_tests"], settings, paths["paired_tests"])

    def of(prefix: str, names: list[str]) -> tuple[dict, dict]:
        """The frames and paths of one kind of per-contrast table, by contrast."""
        return (
            {name: frames[f"{prefix}:{name}"] for name in names},
            {name: paths[f"{prefix}:{name}"] for name in names},
        )

    tables, where = of("de", de_names)
    differential_expression(page, tables, settings["de"]["alpha"], where)
    top = settings["findings"]["top_gene_sets"]
    tables, where = of("prerank", de_names)
    top_ranked_sets(
        page,
        tables,
        top,
        where,
        column="nes",
        label="NES",
        section="Top gene sets by preranked GSEA (gene permutations: a ranking)",
        key="enrichment",
    )
    with_sets = [name for name in de_names if f"sets:{name}" in frames]
    if with_sets:
        tables, where = of("sets", with_sets)
        top_ranked_sets(
            page,
            tables,
            top,
            where,
            column="estimate",
            label="change",
            section="Top gene sets by the set tests (sample permutations, for inference)",
            key="set_tests",
        )
    clinical_links(page, frames["correlations"], frames["mixed_models"], settings, paths)
    responders(page, frames["response"], frames["baseline_prediction"], settings, paths)
    qc_flags(page, frames["qc_flags"], paths["qc_flags"])
    scored(page, frames["scores"], paths["scores"])
    return page


#: One line on each table of the viewer, by file name (``*`` a contrast).
TABLE_NOTES = {
    "samples.tsv": "The samples analysed (after exclude_samples), with their sheet columns.",
    "run_numbers.tsv": "Every number of the findings page, with its table; captions quote them.",
    "qc_metrics.tsv": "Library, sex, pairing and outlier metrics per sample.",
    "qc_flags.tsv": "QC flags with their evidence (flags never drop samples).",
    "composition.tsv": "Cell-type marker scores per sample.",
    "composition_changes.tsv": "Change of each cell-type score from baseline.",
    "composition_markers.tsv": "Cell-type markers found among the cohort's genes.",
    "geneset_coverage.tsv": "Signature genes matched to the cohort's symbols.",
    "ifn_scores.tsv": "IFN score per sample, signature and method, with threshold and call.",
    "cohort_obs.tsv": "Scores and calls per sample, one column each (AnnData obs).",
    "method_agreement.tsv": "Agreement between scoring methods.",
    "type1_vs_type2.tsv": "Type I vs IFN-gamma-biased scores.",
    "*.samples.tsv": "Samples and levels the contrast was fitted on.",
    "*.prerank.tsv": "Preranked GSEA on the Wald statistic (gene permutations: a ranking).",
    "*.set_tests.tsv": "Correlation-aware gene-set tests (sample permutations), for inference.",
    "*.ora.tsv": "Over-representation of the significant genes.",
    "*.tsv": "DESeq2 results per gene (pydeseq2).",
    "changes.tsv": "Change of each clinical measure from baseline.",
    "response.tsv": "Response calls with the values behind each.",
    "score_changes.tsv": "IFN score change from baseline per patient.",
    "paired_tests.tsv": "Wilcoxon signed-rank test of each follow-up score against baseline.",
    "correlations.tsv": "Score change vs clinical change (Spearman, bootstrap CI).",
    "baseline_prediction.tsv": "Baseline score and score change vs response (ROC AUC, logistic).",
    "mixed_models.tsv": "Mixed models: measure ~ score + time, random intercept per patient.",
}


def table_note(path: str) -> str:
    """The viewer's line on the table at ``path``."""
    name = path.rsplit("/", 1)[-1]
    if name in TABLE_NOTES and not path.startswith("results/de/"):
        return TABLE_NOTES[name]
    for pattern in ("*.samples.tsv", "*.prerank.tsv", "*.set_tests.tsv", "*.ora.tsv", "*.tsv"):
        if name.endswith(pattern[1:]) and path.startswith(("results/de/", "results/enrichment/")):
            return TABLE_NOTES[pattern]
    return TABLE_NOTES.get(name, "")
