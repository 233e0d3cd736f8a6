"""Differential expression: contrasts planned and checked before any fit (:mod:`.plan`), each
planned design fitted once with pydeseq2 (:mod:`.fit`), DESeq2 1.38's own dispersion,
prior and filtering steps (:mod:`.deseq2_compat`), DESeq2's likelihood-ratio test
(:mod:`.lrt`), the subject-blocked backend for paired designs (:mod:`.blocked`) and
apeGLM-shrunk fold changes for all genes at once (:mod:`.shrink`)."""

import importlib
from typing import Any

# The names below are imported on first use (PEP 562): every job that imports one DE module
# (the shard jobs, :mod:`.blocked`) imports this package, and the fit and plan modules would
# bring anndata, formulaic and scipy.stats into every one of them.
_WHERE = {
    "Contrast": "plan",
    "Fit": "plan",
    "Groups": "plan",
    "NON_RESPONDER": "plan",
    "RESPONDER": "plan",
    "RESULT_COLUMNS": "plan",
    "add_response_columns": "plan",
    "choose_inference": "fit",
    "clinical_covariates": "plan",
    "cohort_samples": "plan",
    "compared_levels": "plan",
    "composition_covariates": "plan",
    "contrast_vectors": "plan",
    "contrasts_from_config": "plan",
    "de_tables": "plan",
    "design_frame": "plan",
    "design_matrix": "plan",
    "fit_dataset": "fit",
    "fitted_samples": "plan",
    "likelihood_ratio_test": "lrt",
    "plan_fits": "plan",
    "reduced_design": "plan",
    "reported_level": "plan",
    "response_column": "plan",
    "run_fit": "fit",
    "table_contrasts": "plan",
    "table_names": "plan",
    "uses_responses": "plan",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "NON_RESPONDER",
    "RESPONDER",
    "RESULT_COLUMNS",
    "Contrast",
    "Fit",
    "Groups",
    "add_response_columns",
    "choose_inference",
    "clinical_covariates",
    "cohort_samples",
    "compared_levels",
    "composition_covariates",
    "contrast_vectors",
    "contrasts_from_config",
    "de_tables",
    "design_frame",
    "design_matrix",
    "fit_dataset",
    "fitted_samples",
    "likelihood_ratio_test",
    "plan_fits",
    "reduced_design",
    "reported_level",
    "response_column",
    "run_fit",
    "table_contrasts",
    "table_names",
    "uses_responses",
]
