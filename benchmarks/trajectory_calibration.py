"""False-positive rate of the score-trajectory tests when responders do not differ.

Two kinds of null: cohorts with nothing planted over time (``CohortSpec(null=True)``, one
per seed, responders by the planted labels), and planted cohorts whose responder labels
are shuffled across patients. For each, the share of p < 0.05 of the timepoint x group
interaction (at each follow-up and pooled; ``ifnsig.trajectories.interaction_models``,
CR2) and of the Mann-Whitney test of the change (``between_group_tests``).

    python benchmarks/trajectory_calibration.py --seeds 20 --shuffles 200 --shuffle-seeds 3 5
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from ifnsig import linkage, trajectories
from ifnsig.simulate import CohortSpec, median_fold_change_scores, simulate_cohort

TIMEPOINTS = ["baseline", "month3", "month6"]
COVARIATES = ["prednisone_mg_kg_day", "drug"]


def rejections(cohort, labels: pd.Series) -> dict[str, bool]:
    table = median_fold_change_scores(cohort)
    grouping = [trajectories.response_grouping(labels, "responder")]
    covariates = linkage.covariate_values(cohort.samples, cohort.clinical, COVARIATES)
    models = trajectories.interaction_models(
        table, grouping, TIMEPOINTS, "patient", covariates, COVARIATES
    ).set_index("timepoint")
    changes = linkage.score_changes(table, TIMEPOINTS, "patient")
    between = trajectories.between_group_tests(changes, grouping, TIMEPOINTS)
    out = {f"interaction {t}": models.loc[t, "pvalue"] < 0.05 for t in models.index}
    for row in between.itertuples():
        out[f"Mann-Whitney {row.timepoint}"] = row.pvalue < 0.05
    return out


def patient_labels(cohort) -> pd.Series:
    truth = cohort.truth_subjects
    patients = truth[truth["group"] == "patient"]
    return pd.Series(patients["responder"].to_numpy(), index=patients["subject"])


def spec(seed: int, null: bool) -> CohortSpec:
    return CohortSpec(n_genes=400, n_controls=8, n_treatment_genes=20, null=null, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="null cohorts (seeds 1..N)")
    parser.add_argument("--shuffles", type=int, default=200, help="label shuffles per cohort")
    parser.add_argument("--shuffle-seeds", type=int, nargs="*", default=[3, 5])
    args = parser.parse_args()
    rows = []
    for seed in range(1, args.seeds + 1):
        cohort = simulate_cohort(spec(seed, True))
        rows.append({"null": "nothing planted", **rejections(cohort, patient_labels(cohort))})
    for seed in args.shuffle_seeds:
        cohort = simulate_cohort(spec(seed, False))
        labels = patient_labels(cohort)
        rng = np.random.default_rng(0)
        for _ in range(args.shuffles):
            shuffled = pd.Series(rng.permutation(labels.to_numpy()), index=labels.index)
            rows.append({"null": f"labels shuffled, seed {seed}", **rejections(cohort, shuffled)})
    table = pd.DataFrame(rows).groupby("null").agg(["mean", "size"])
    print(table.T.to_string())


if __name__ == "__main__":
    main()
