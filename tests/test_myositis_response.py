import numpy as np
import pandas as pd
import pytest

from ifnsig.myositis_response import (
    CATEGORY_UPPER_BOUNDS,
    POINTS,
    ROLES,
    THRESHOLDS,
    improvement_category,
    improvement_percent,
    improvement_points,
    total_improvement_score,
)

MEASURES = {
    "physician_global": "PGA",
    "patient_global": "PtGA",
    "mmt": "MMT8",
    "haq": "CHAQ",
    "enzyme": "CK",
    "extramuscular": "EXTRA",
}
COLUMNS = ["subject", "timepoint", "PGA", "PtGA", "MMT8", "CHAQ", "CK", "EXTRA"]


def clinical(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def row_of(table: pd.DataFrame, subject: str, timepoint: str = "month6") -> pd.Series:
    return table.set_index(["subject", "timepoint"]).loc[(subject, timepoint)]


# Table 3 of Rider et al., Arthritis Rheumatol 2017;69:911-923 ("Conjoint analysis-based
# continuous response criteria using absolute percent change in core set measures"), as
# published at https://pmc.ncbi.nlm.nih.gov/articles/PMC5577002/table/T3, written out here
# row by row apart from the module's constants: per measure, the level score of "worsening to
# 5% improvement", ">5% to 15%", ">15% to 25%", ">25% to 40%", ">40%" (MMT or CMAS: worsening
# to 2%, >2-10%, >10-20%, >20-30%, >30%); then the JDM and adult DM/PM thresholds.
PUBLISHED_TABLE_3 = {
    "physician_global": ((5, 15, 25, 40), (0, 7.5, 15, 17.5, 20)),
    "patient_global": ((5, 15, 25, 40), (0, 2.5, 5, 7.5, 10)),  # "Parent Global Activity"
    "mmt": ((2, 10, 20, 30), (0, 10, 20, 27.5, 32.5)),  # "MMT or CMAS"
    "haq": ((5, 15, 25, 40), (0, 5, 7.5, 7.5, 10)),  # "CHAQ"
    "enzyme": ((5, 15, 25, 40), (0, 2.5, 5, 7.5, 7.5)),  # "Enzyme (most abnormal) or CHQ-PhS"
    "extramuscular": ((5, 15, 25, 40), (0, 7.5, 12.5, 15, 20)),  # "... or Disease Activity Score"
}
PUBLISHED_THRESHOLDS = {"juvenile": (30, 45, 70), "adult": (20, 40, 60)}


def test_point_table_and_thresholds_are_the_published_table_3():
    for role, (bounds, points) in PUBLISHED_TABLE_3.items():
        assert CATEGORY_UPPER_BOUNDS[role] == bounds, role
        assert POINTS[role] == points, role
    for population, lowest in PUBLISHED_THRESHOLDS.items():
        assert tuple(t for _, t in THRESHOLDS[population]) == lowest, population


def test_point_table_tops_sum_to_100_and_rise_with_improvement():
    assert sum(points[-1] for points in POINTS.values()) == 100
    for points in POINTS.values():
        assert points[0] == 0 and list(points) == sorted(points)


def test_improvement_percent_on_scale_range_and_relative_to_baseline():
    # Lower is better on a 0-10 scale: 6 -> 2 is 4 points of 10, 40%.
    assert improvement_percent(6.0, 2.0, False, (0, 10)) == pytest.approx(40)
    # Higher is better on MMT8 0-80: 60 -> 72 is 12 of 80, 15%; a fall is negative.
    assert improvement_percent(60.0, 72.0, True, (0, 80)) == pytest.approx(15)
    assert improvement_percent(60.0, 56.0, True, (0, 80)) == pytest.approx(-5)
    # Relative (enzymes): CK 1000 -> 300 is 700/1000, 70%; 500 -> 800 is -60%.
    assert improvement_percent(1000.0, 300.0, False) == pytest.approx(70)
    assert improvement_percent(500.0, 800.0, False) == pytest.approx(-60)
    # Baseline 0: no change is 0%, a rise of a lower-is-better value -inf, of a
    # higher-is-better value +inf; missing values stay missing.
    assert improvement_percent(0.0, 0.0, False) == 0
    assert improvement_percent(0.0, 50.0, False) == -np.inf
    assert improvement_percent(0.0, 50.0, True) == np.inf
    assert np.isnan(improvement_percent(np.nan, 50.0, False))
    with pytest.raises(ValueError, match="max > min"):
        improvement_percent(1.0, 2.0, False, (10, 10))


def test_points_on_category_boundaries():
    # The upper bound belongs to its category: 5% scores 0, 15% the >5-15% points, 40% the
    # >25-40% points; just above moves up; worsening and -inf score 0.
    pga = improvement_points(
        [-30, -np.inf, 5, 5.01, 15, 15.01, 25, 40, 40.01, np.inf], "physician_global"
    )
    assert list(pga) == [0, 0, 0, 7.5, 7.5, 15, 15, 17.5, 20, 20]
    # MMT bounds are 2, 10, 20, 30 %.
    assert list(improvement_points([2, 2.01, 10, 20, 30, 30.01], "mmt")) == [
        0,
        10,
        10,
        20,
        27.5,
        32.5,
    ]
    # 100 * (61.6 - 60) / 80 is 2.0000000000000018 in floating point: still exactly 2%.
    assert improvement_points(improvement_percent(60, 61.6, True, (0, 80)), "mmt") == 0
    assert np.isnan(improvement_points(np.nan, "haq"))
    with pytest.raises(ValueError, match="unknown role"):
        improvement_points(10, "CMAS")


def test_categories_on_thresholds():
    tis = [0, 19.9, 20, 29.9, 30, 40, 44.9, 45, 60, 69.9, 70, 100, np.nan]
    assert list(improvement_category(tis, "juvenile")) == [
        "none", "none", "none", "none", "minimal", "minimal", "minimal", "moderate",
        "moderate", "moderate", "major", "major", None,
    ]  # fmt: skip
    assert list(improvement_category(tis, "adult")) == [
        "none", "none", "minimal", "minimal", "minimal", "moderate", "moderate", "moderate",
        "major", "major", "major", "major", None,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="population must be one of juvenile, adult"):
        improvement_category([10], "child")


# Worked examples: each measure's percent improvement put in its category of Table 3
# (PUBLISHED_TABLE_3 above), the level scores summed, and the sum called at the published
# thresholds. Percentages: the change as a share of the scale's range for the bounded
# measures (0-10 cm visual analogue scales, MMT8 0-80, CHAQ 0-3), relative to baseline for
# the enzyme (see ifnsig.myositis_response for the sources of this convention).
WORKED = clinical(
    [
        # A: PGA 6 -> 2: 4/10 = 40%, >25-40%: 17.5. PtGA 7 -> 5: 2/10 = 20%, >15-25%: 5.
        # MMT8 60 -> 72: 12/80 = 15%, >10-20%: 20. CHAQ 1.5 -> 1.0: 0.5/3 = 16.7%,
        # >15-25%: 7.5. CK 1000 -> 300: 70% of baseline, >40%: 7.5. EXTRA 5 -> 3.5:
        # 1.5/10 = 15%, >5-15%: 7.5. TIS 17.5 + 5 + 20 + 7.5 + 7.5 + 7.5 = 65:
        # juvenile moderate (45-70), adult major (>= 60).
        ("A", "baseline", 6.0, 7.0, 60, 1.5, 1000, 5.0),
        ("A", "month6", 2.0, 5.0, 72, 1.0, 300, 3.5),
        # B, worsening everywhere or no change: PGA 4 -> 5 (-10%), PtGA 5 -> 6 (-10%),
        # MMT8 60 -> 58 (-2.5%), CHAQ 1.0 -> 1.25 (-8.3%), CK 500 -> 800 (-60%), EXTRA
        # 4 -> 4 (0%): every measure 0 points, TIS 0, none.
        ("B", "baseline", 4.0, 5.0, 60, 1.0, 500, 4.0),
        ("B", "month6", 5.0, 6.0, 58, 1.25, 800, 4.0),
        # C, on boundaries: PGA 5 -> 4: 10%, 7.5. PtGA 6 -> 5.5: exactly 5%, 0. MMT8
        # 50 -> 52: 2.5%, >2-10%: 10. CHAQ 2.0 -> 1.75: 8.3%, 5. CK 200 -> 150: exactly
        # 25%, >15-25%: 5. EXTRA 6 -> 5: 10%, 7.5. TIS 7.5 + 0 + 10 + 5 + 5 + 7.5 = 35:
        # juvenile minimal (30-45), adult minimal (20-40).
        ("C", "baseline", 5.0, 6.0, 50, 2.0, 200, 6.0),
        ("C", "month6", 4.0, 5.5, 52, 1.75, 150, 5.0),
        # D, TIS exactly on the juvenile minimal threshold: PGA 8 -> 3: 50%, 20. PtGA
        # 8 -> 7: 10%, 2.5. EXTRA 8 -> 7: 10%, 7.5. MMT8, CHAQ, CK unchanged: 0. TIS 30.
        ("D", "baseline", 8.0, 8.0, 70, 1.0, 100, 8.0),
        ("D", "month6", 3.0, 7.0, 70, 1.0, 100, 7.0),
        # E, exactly 45, juvenile moderate: PGA 9 -> 4: 50%, 20. MMT8 40 -> 56: 20%,
        # >10-20%: 20. CHAQ 2.0 -> 1.7: 10%, 5. Others unchanged. TIS 45.
        ("E", "baseline", 9.0, 5.0, 40, 2.0, 100, 5.0),
        ("E", "month6", 4.0, 5.0, 56, 1.7, 100, 5.0),
    ]
)


def test_worked_examples_juvenile_and_adult():
    juvenile = total_improvement_score(WORKED, MEASURES, population="juvenile")
    adult = total_improvement_score(WORKED, MEASURES, population="adult")
    assert len(juvenile) == 5 and set(juvenile["timepoint"]) == {"month6"}
    expected = {
        "A": (65.0, "moderate", "major"),
        "B": (0.0, "none", "none"),
        "C": (35.0, "minimal", "minimal"),
        "D": (30.0, "minimal", "minimal"),
        "E": (45.0, "moderate", "moderate"),
    }
    for subject, (tis, young, old) in expected.items():
        assert row_of(juvenile, subject)["tis"] == pytest.approx(tis), subject
        assert row_of(juvenile, subject)["improvement_category"] == young, subject
        assert row_of(adult, subject)["improvement_category"] == old, subject
    a = row_of(juvenile, "A")
    points = [a[f"{role}_points"] for role in ROLES]
    assert points == [17.5, 5, 20, 7.5, 7.5, 7.5]
    assert a["mmt_percent"] == pytest.approx(15) and a["enzyme_percent"] == pytest.approx(70)
    assert a["enzyme_column"] == "CK" and a["missing_measures"] == ""
    assert a["physician_global_baseline"] == 6 and a["physician_global_followup"] == 2
    assert (juvenile["population"] == "juvenile").all()


def test_every_follow_up_is_scored_against_baseline():
    frame = pd.concat(
        [WORKED, clinical([("A", "month3", 5.0, 7.0, 62, 1.5, 900, 5.0)])], ignore_index=True
    )
    table = total_improvement_score(frame, MEASURES)
    # A at month 3: PGA 6 -> 5: 10%, 7.5. PtGA 0%. MMT8 60 -> 62: 2.5%, 10. CHAQ 0%. CK
    # 1000 -> 900: 10%, 2.5. EXTRA 0%. TIS 20: none for JDM (< 30).
    assert row_of(table, "A", "month3")["tis"] == pytest.approx(20)
    assert row_of(table, "A", "month3")["improvement_category"] == "none"
    assert row_of(table, "A", "month6")["tis"] == pytest.approx(65)


def test_missing_measure_leaves_the_score_missing_and_says_which():
    frame = WORKED.copy()
    frame.loc[(frame["subject"] == "A") & (frame["timepoint"] == "month6"), "PtGA"] = np.nan
    frame.loc[(frame["subject"] == "C") & (frame["timepoint"] == "baseline"), "CK"] = np.nan
    table = total_improvement_score(frame, MEASURES)
    a, c = row_of(table, "A"), row_of(table, "C")
    assert np.isnan(a["tis"]) and a["improvement_category"] is None
    assert a["missing_measures"] == "patient_global (month6)"
    assert np.isnan(a["patient_global_points"]) and a["physician_global_points"] == 17.5
    assert np.isnan(c["tis"]) and c["missing_measures"] == "enzyme (baseline)"
    assert row_of(table, "B")["tis"] == 0
    # A follow-up without a baseline row: every measure missing at baseline.
    lone = clinical([("F", "month6", 2.0, 5.0, 72, 1.0, 300, 3.5)])
    f = row_of(total_improvement_score(lone, MEASURES), "F")
    assert np.isnan(f["tis"])
    assert f["missing_measures"] == ";".join(f"{role} (baseline)" for role in ROLES)


def test_baseline_zero_enzyme_scores_no_change_or_worsening_as_zero():
    frame = clinical(
        [
            # CK 0 -> 0 is 0%; 0 -> 50 is a worsening (-inf): 0 points either way. The rest
            # as subject A: TIS 65 - 7.5 = 57.5.
            ("G", "baseline", 6.0, 7.0, 60, 1.5, 0, 5.0),
            ("G", "month6", 2.0, 5.0, 72, 1.0, 0, 3.5),
            ("H", "baseline", 6.0, 7.0, 60, 1.5, 0, 5.0),
            ("H", "month6", 2.0, 5.0, 72, 1.0, 50, 3.5),
        ]
    )
    table = total_improvement_score(frame, MEASURES)
    assert row_of(table, "G")["enzyme_percent"] == 0
    assert row_of(table, "H")["enzyme_percent"] == -np.inf
    assert list(table["enzyme_points"]) == [0, 0]
    assert list(table["tis"]) == [57.5, 57.5]


def test_most_abnormal_enzyme_is_picked_at_baseline_over_its_upper_limit():
    frame = WORKED[WORKED["subject"] == "A"].copy()
    # CK 1000 / 200 = 5 x the upper limit; aldolase 40 / 7.6 = 5.3 x: aldolase is scored.
    # Aldolase 40 -> 30 is 25%, >15-25%: 5 points instead of CK's 7.5: TIS 62.5.
    frame["aldolase"] = [40.0, 30.0]
    measures = {**MEASURES, "enzyme": ["CK", "aldolase"]}
    table = total_improvement_score(
        frame, measures, enzyme_upper_limits={"CK": 200, "aldolase": 7.6}
    )
    a = row_of(table, "A")
    assert a["enzyme_column"] == "aldolase" and a["enzyme_points"] == 5
    assert a["tis"] == pytest.approx(62.5)
    with pytest.raises(ValueError, match="enzyme_upper_limits lacks aldolase"):
        total_improvement_score(frame, measures, enzyme_upper_limits={"CK": 200})


def test_scale_and_direction_can_be_set_per_role():
    # CMAS 0-52 in the MMT role: 26 -> 39 is 13/52 = 25%, >20-30%: 27.5 (MMT8 60 -> 72
    # gave 20); A's TIS becomes 65 - 20 + 27.5 = 72.5, juvenile major.
    frame = WORKED[WORKED["subject"] == "A"].copy()
    frame["CMAS"] = [26, 39]
    measures = {**MEASURES, "mmt": "CMAS"}
    table = total_improvement_score(frame, measures, scale_ranges={"mmt": (0, 52)})
    assert row_of(table, "A")["mmt_points"] == 27.5
    assert row_of(table, "A")["improvement_category"] == "major"
    # Relative change for the physician global instead: 6 -> 2 is 4/6 = 66.7%, still > 40%:
    # 20 points instead of 17.5.
    table = total_improvement_score(WORKED, MEASURES, scale_ranges={"physician_global": None})
    assert row_of(table, "A")["physician_global_points"] == 20
    # Higher is better in the enzyme role (the CHQ physical summary score): CK's fall is
    # now a worsening, 0 points.
    table = total_improvement_score(WORKED, MEASURES, higher_is_better={"enzyme": True})
    assert row_of(table, "A")["enzyme_points"] == 0


def test_inputs_are_checked_with_sentences():
    with pytest.raises(ValueError, match="measures lacks extramuscular"):
        total_improvement_score(WORKED, {k: v for k, v in MEASURES.items() if k != "extramuscular"})
    with pytest.raises(ValueError, match="unknown role"):
        total_improvement_score(WORKED, {**MEASURES, "CMAS": "CMAS"})
    with pytest.raises(ValueError, match="no column 'CHAQ'"):
        total_improvement_score(WORKED.drop(columns="CHAQ"), MEASURES)
    with pytest.raises(ValueError, match="more than one row for subject 'A' at timepoint"):
        total_improvement_score(pd.concat([WORKED, WORKED.iloc[[0]]]), MEASURES)
    with pytest.raises(ValueError, match="population must be one of"):
        total_improvement_score(WORKED, MEASURES, population="paediatric")
    with pytest.raises(ValueError, match="scale_ranges names unknown role"):
        total_improvement_score(WORKED, MEASURES, scale_ranges={"CMAS": (0, 52)})


def test_demo_cohort_scores_without_missing_values():
    from ifnsig.simulate import CohortSpec, simulate_cohort

    cohort = simulate_cohort(CohortSpec(n_genes=1000, n_treatment_genes=20))
    measures = {
        "physician_global": "physician_global",
        "patient_global": "patient_global",
        "mmt": "MMT8",
        "haq": "CHAQ",
        "enzyme": ["CK", "aldolase"],
        "extramuscular": "extramuscular_activity",
    }
    table = total_improvement_score(
        cohort.clinical, measures, enzyme_upper_limits={"CK": 200, "aldolase": 7.6}
    )
    assert len(table) == 50 and table["tis"].notna().all()
    assert table["tis"].between(0, 100).all()
    subjects = cohort.truth_subjects.set_index("subject")
    last = table[table["timepoint"] == "month6"].set_index("subject")
    falling = subjects.loc[last.index, "ifn_high"] & subjects.loc[last.index, "responder"]
    assert last.loc[falling, "tis"].median() > last.loc[~falling, "tis"].median() + 15


def test_cmas_stands_in_for_mmt_on_its_own_range():
    # Table 3's muscle row is "MMT or CMAS": CMAS 0-52 takes the MMT row on its own range.
    # CMAS 30 -> 41: 11/52 = 21.2%, >20-30%: 27.5 (on MMT8's 0-80 range the same 11 points
    # would be 13.8%, 20). PGA 6 -> 2: 40%, 17.5. PtGA 7 -> 5: 20%, 5. CHAQ 1.5 -> 1.0:
    # 16.7%, 7.5. CK 1000 -> 300: 70%, 7.5. EXTRA 5 -> 3.5: 15%, 7.5. TIS 72.5: juvenile
    # major (>= 70).
    frame = clinical(
        [
            ("J", "baseline", 6.0, 7.0, 30, 1.5, 1000, 5.0),
            ("J", "month6", 2.0, 5.0, 41, 1.0, 300, 3.5),
        ]
    )
    cmas = row_of(total_improvement_score(frame, MEASURES, scale_ranges={"mmt": (0, 52)}), "J")
    assert cmas["mmt_percent"] == pytest.approx(100 * 11 / 52) and cmas["mmt_points"] == 27.5
    assert cmas["tis"] == pytest.approx(72.5) and cmas["improvement_category"] == "major"
    mmt8 = row_of(total_improvement_score(frame, MEASURES), "J")
    assert mmt8["mmt_points"] == 20 and mmt8["tis"] == pytest.approx(65)
