import filecmp

import numpy as np
import pandas as pd
from conftest import REPO

from ifnsig.simulate import CohortSpec, simulate_cohort


def test_same_seed_same_cohort_and_other_seed_differs():
    spec = CohortSpec(n_patients=4, n_controls=3, n_genes=1000, n_treatment_genes=20)
    a, b = simulate_cohort(spec), simulate_cohort(spec)
    pd.testing.assert_frame_equal(a.counts, b.counts)
    pd.testing.assert_frame_equal(a.clinical, b.clinical)
    spec.seed += 1
    assert not simulate_cohort(spec).counts.equals(a.counts)


def test_demo_shape_follows_the_motivating_study():
    cohort = simulate_cohort(CohortSpec(n_genes=2000, n_treatment_genes=50))
    subjects = cohort.truth_subjects
    patients = subjects[subjects["group"] == "patient"]
    assert len(patients) == 25 and (subjects["group"] == "control").sum() >= 10
    assert patients["drug"].value_counts().to_dict() == {"ruxolitinib": 18, "tofacitinib": 7}
    assert cohort.samples.groupby("group")["timepoint"].nunique().to_dict() == {
        "control": 1,
        "patient": 3,
    }
    ranges = {"CMAS": (0, 52), "MMT8": (0, 80), "CAT_BM_activity": (0, 17)}
    for measure, (low, high) in ranges.items():
        assert cohort.clinical[measure].between(low, high).all()
    # Raw integer counts with the planted ISG induction at baseline in IFN-high patients.
    assert cohort.counts.to_numpy().dtype == np.int64
    high = patients.loc[patients["ifn_high"], "subject"]
    base_high = [f"{s}_baseline" for s in high]
    controls = subjects.loc[subjects["group"] == "control", "subject"]
    ratio = (
        cohort.counts.loc["IFI27", base_high].median()
        / cohort.counts.loc["IFI27", controls].median()
    )
    assert ratio > 4


def test_planted_qc_failures_are_recorded():
    spec = CohortSpec(
        n_patients=8,
        n_controls=3,
        n_genes=1000,
        n_treatment_genes=20,
        plant_sex_flip=True,
        plant_swap=True,
        plant_globin=True,
    )
    cohort = simulate_cohort(spec)
    planted = cohort.truth_samples["planted"]
    assert set(planted) - {""} == {"sex_flip", "swap", "globin"}
    assert (planted == "swap").sum() == 2


def test_shipped_demo_is_what_the_simulator_writes(tmp_path):
    simulate_cohort().write(tmp_path)
    for name in ["counts.tsv.gz", "truth_subjects.tsv", "truth_samples.tsv", "truth_genes.tsv"]:
        assert filecmp.cmp(tmp_path / name, REPO / "resources" / "demo" / name, shallow=False), name
    for name in ["samples.tsv", "clinical.tsv"]:
        assert filecmp.cmp(tmp_path / name, REPO / "config" / name, shallow=False), name
