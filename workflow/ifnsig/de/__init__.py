"""Differential expression: contrasts planned and checked before any fit (:mod:`.plan`), each
planned design fitted once with pydeseq2 (:mod:`.fit`), DESeq2 1.38's own dispersion,
prior and filtering steps (:mod:`.deseq2_compat`) and the subject-blocked backend for paired
designs (:mod:`.blocked`)."""

from ifnsig.de.fit import choose_inference, run_fit
from ifnsig.de.plan import (
    NON_RESPONDER,
    RESPONDER,
    RESULT_COLUMNS,
    Contrast,
    Fit,
    add_response_columns,
    clinical_covariates,
    cohort_samples,
    compared_levels,
    composition_covariates,
    contrasts_from_config,
    design_frame,
    fitted_samples,
    plan_fits,
    response_column,
    uses_responses,
)

__all__ = [
    "NON_RESPONDER",
    "RESPONDER",
    "RESULT_COLUMNS",
    "Contrast",
    "Fit",
    "add_response_columns",
    "choose_inference",
    "clinical_covariates",
    "cohort_samples",
    "compared_levels",
    "composition_covariates",
    "contrasts_from_config",
    "design_frame",
    "fitted_samples",
    "plan_fits",
    "response_column",
    "run_fit",
    "uses_responses",
]
