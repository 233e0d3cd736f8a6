"""What each stage computes for a cohort, and why the rest is not computed.

A cohort of one timepoint has no change from baseline to test, a cohort without a clinical
table no clinical change, one without response definitions nothing to compare responders
with. Rather than write tables with a header and no row, the rules leave such outputs out
(``computed`` in ``workflow/rules/common.smk``), the stages say in one log line what they
did not compute and why, and the report lists it. The same :func:`missing_outputs` decides
at parse time (from the configuration and the sample sheet) and in each job (from its
settings and inputs), so both agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

REASONS = {
    "followup": "one timepoint: no follow-up to compare with the baseline",
    "three_timepoints": "fewer than 3 timepoints (the change correlations answer the question)",
    "measures": "no clinical measure (no clinical table, or none under clinical_measures)",
    "responses": "no response defined under linkage.responses",
    "groups": "no groups of patients (no response defined and linkage.groups empty)",
    "methods": "one scoring method under scores.methods: no pair of methods to compare",
    "type2": "no IFN-gamma-biased signature (scores.type2_signature is null)",
}

#: Stage -> output -> what it needs (keys of REASONS, or ``comparison``), in order.
REQUIREMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "quality_control": {"composition_changes": ("followup",)},
    "score_ifn": {
        "agreement": ("methods",),
        "group_comparison": ("comparison",),
        "type_contrast": ("type2",),
        "type1_vs_type2": ("type2",),
    },
    "call_responses": {"changes": ("followup", "measures"), "response": ("responses",)},
    "clinical_linkage": {
        "score_changes": ("followup",),
        "paired_tests": ("followup",),
        "correlations": ("followup", "measures"),
        "baseline_prediction": ("followup", "responses"),
        "mixed_models": ("followup", "three_timepoints", "measures"),
        "trajectory_within": ("followup", "groups"),
        "trajectory_between": ("followup", "groups"),
        "trajectory_models": ("followup", "groups"),
        "normalisation": ("followup",),
        "normalisation_tests": ("followup", "groups"),
        "change_scatter": ("followup", "measures"),
        "trajectories": ("followup",),
        "trajectories_by_group": ("followup", "groups"),
        "roc": ("followup", "responses"),
    },
}


@dataclass(frozen=True)
class Facts:
    """What a cohort has, as far as the outputs depend on it.

    ``comparison`` is empty when the score stage has two groups to compare, else the
    reason it has none.
    """

    n_timepoints: int
    measures: bool
    responses: bool
    groups: bool
    comparison: str = ""
    n_methods: int = 2
    type2: bool = True

    def lacks(self, need: str) -> str:
        """The reason ``need`` is not met, empty when it is."""
        if need == "comparison":
            return self.comparison
        met = {
            "followup": self.n_timepoints > 1,
            "three_timepoints": self.n_timepoints >= 3,
            "measures": self.measures,
            "responses": self.responses,
            "groups": self.groups,
            "methods": self.n_methods > 1,
            "type2": self.type2,
        }[need]
        return "" if met else REASONS[need]


def facts_of_config(config: dict, comparison: str = "") -> Facts:
    """The facts from a validated configuration (parse time)."""
    linkage = config.get("linkage") or {}
    responses = bool(linkage.get("responses"))
    return Facts(
        n_timepoints=len(config["timepoints"]),
        measures=bool(config.get("clinical")) and bool(config["clinical_measures"]),
        responses=responses,
        groups=responses or bool(linkage.get("groups")),
        comparison=comparison,
        n_methods=len(config["scores"]["methods"]),
        type2=bool(config["scores"]["type2_signature"]),
    )


def missing_outputs(stage: str, facts: Facts) -> dict[str, str]:
    """Outputs of ``stage`` the cohort does not allow, each with its reason in words."""
    missing = {}
    for output, needs in REQUIREMENTS.get(stage, {}).items():
        reasons = [facts.lacks(need) for need in needs]
        reasons = [r for r in reasons if r]
        if reasons:
            missing[output] = reasons[0]
    return missing


def not_computed(
    config: dict, comparison: str = "", de_tables: list[str] | None = None
) -> dict[str, dict[str, str]]:
    """Stage -> output -> reason, for every stage (parse time).

    ``de_tables`` are the planned DE tables: without any, the DE stage and the stages
    after it have nothing to compute.
    """
    facts = facts_of_config(config, comparison)
    plan = {stage: missing_outputs(stage, facts) for stage in REQUIREMENTS}
    if de_tables is not None and not de_tables:
        why = (
            REASONS["followup"] + " and no de.contrasts"
            if len(config["timepoints"]) < 2
            else "no DE contrast"
        )
        for stage in ("differential_expression", "plot_de", "enrichment"):
            plan[stage] = {"every output": why}
    return {stage: missing for stage, missing in plan.items() if missing}


def describe(stage: str, missing: dict[str, str]) -> str:
    """One line: the outputs of ``stage`` not computed, grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for output, reason in missing.items():
        by_reason.setdefault(reason, []).append(output)
    parts = [f"{', '.join(outputs)} ({reason})" for reason, outputs in by_reason.items()]
    return f"{stage}: not computed: " + "; ".join(parts)


def log_missing(stage: str, facts: Facts) -> dict[str, str]:
    """Log the line of :func:`describe` for a job's stage; returns the outputs left out."""
    missing = missing_outputs(stage, facts)
    if missing:
        log.info("%s", describe(stage, missing))
    return missing
