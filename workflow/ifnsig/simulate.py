"""Seeded simulator of blood RNA-seq cohorts treated with a JAK inhibitor.

The default cohort is shaped like the motivating study (Ding et al., Ann Rheum Dis 2020):
25 children with refractory juvenile dermatomyositis sampled at baseline and after about
3 and 6 months of ruxolitinib (18) or tofacitinib (7), plus healthy controls. Counts are
negative binomial with a DESeq2-like mean-dispersion trend (alpha = a0 + a1 / mean) and a
per-subject random effect, so pairing matters as it does in real cohorts. Everything that
is planted is written to truth tables so that tests can check what the workflow recovers.

Run ``python -m ifnsig.simulate --help`` to write a cohort to disk.
"""

from __future__ import annotations

import argparse
import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# Interferon-stimulated genes in blood (NIH 28-gene score, Rice 2013, Feng 2006 and
# frequently co-regulated ISGs); loadings are drawn per gene, the strongest for the
# genes that dominate published scores (IFI27, SIGLEC1, RSAD2, IFI44L).
ISGS = [
    "IFI27", "IFI44L", "IFIT1", "ISG15", "RSAD2", "SIGLEC1", "CXCL10", "DDX60", "EPSTI1",
    "GBP1", "HERC5", "HERC6", "IFI44", "IFI6", "IFIT2", "IFIT3", "IFIT5", "LAMP3", "LY6E",
    "MX1", "OAS1", "OAS2", "OAS3", "OASL", "RTP4", "SOCS1", "SPATS2L", "USP18", "ISG20",
    "IFITM1", "IFITM3", "BST2", "IRF7", "STAT1", "XAF1", "PLSCR1", "CMPK2", "EIF2AK2",
    "SAMD9L", "PARP9", "DTX3L", "TRIM22", "SP110", "MX2", "IFI35", "STAT2", "IRF9",
    "TNFSF10", "RIGI", "IFIH1",
]  # fmt: skip
STRONG_ISGS = {"IFI27", "SIGLEC1", "RSAD2", "IFI44L", "ISG15", "IFIT1"}
# IFN-gamma-biased genes: moved weakly by type I IFN here, so a type II score stays flat.
IFNG_GENES = ["CXCL9", "IDO1", "CIITA", "GBP5", "IRF1", "FCGR1A", "HLA-DRA"]
GLOBIN_GENES = ["HBA1", "HBA2", "HBB", "HBD", "HBM", "HBQ1", "HBG1", "HBG2"]
MITO_GENES = [
    "MT-CO1", "MT-CO2", "MT-CO3", "MT-ND1", "MT-ND2", "MT-ND3", "MT-ND4", "MT-ND4L",
    "MT-ND5", "MT-ND6", "MT-CYB", "MT-ATP6", "MT-ATP8",
]  # fmt: skip
RIBO_GENES = [f"RPL{i}" for i in range(3, 33)] + [f"RPS{i}" for i in range(2, 30)]
FEMALE_GENES = ["XIST", "TSIX"]
MALE_GENES = ["RPS4Y1", "DDX3Y", "KDM5D", "UTY", "EIF1AY", "USP9Y", "ZFY"]
# Common expression-null polymorphisms (deletions or null eQTL alleles): on or off per person,
# stable over time, so they tell people apart.
PRESENCE_GENES = {
    "GSTM1": 0.5, "GSTT1": 0.2, "UGT2B17": 0.3, "ERAP2": 0.25, "HLA-DRB4": 0.5,
    "HLA-DRB5": 0.7, "HLA-DRB3": 0.5, "LILRA3": 0.2,
}  # fmt: skip
CELL_MARKERS = {
    "neutrophil": ["FCGR3B", "CXCR2", "CSF3R", "MMP9", "FPR1", "S100A12"],
    "monocyte": ["CD14", "LYZ", "S100A8", "S100A9", "CSF1R", "FCN1"],
    "t_cell": ["CD3D", "CD3E", "CD2", "CD28", "LCK", "IL7R"],
    "b_cell": ["CD19", "MS4A1", "CD79A", "CD79B", "CD22", "BANK1"],
    "nk_cell": ["GNLY", "NKG7", "KLRD1", "PRF1", "GZMB", "KLRF1"],
    "plasmablast": ["JCHAIN", "MZB1", "TNFRSF17", "TXNDC5", "IGHG1", "CD38"],
    "platelet": ["PPBP", "PF4", "ITGA2B", "GP9", "TUBB1", "GP1BA"],
}
OTHER_BLOOD_GENES = ["ACTB", "GAPDH", "B2M", "PTPRC", "HLA-A", "HLA-B", "HLA-C", "TMSB4X"]

MEASURES = {
    # name: (low, high, higher_is_better)
    "CMAS": (0, 52, True),
    "MMT8": (0, 80, True),
    "CAT_BM_activity": (0, 17, False),
    "physician_global": (0, 10, False),
    "prednisone_mg_kg_day": (0, 2, False),
    "CK": (0, 100000, False),
    # Further core set measures of the 2016 ACR/EULAR myositis response criteria (Rider et
    # al., Arthritis Rheumatol 2017): patient/parent global activity and extramuscular
    # activity on 10 cm scales, CHAQ 0-3 in steps of 0.125, aldolase in U/L.
    "patient_global": (0, 10, False),
    "CHAQ": (0, 3, False),
    "extramuscular_activity": (0, 10, False),
    "aldolase": (0, 10000, False),
}
# Columns of the clinical table drawn from their own random stream (see simulate_cohort), so
# that the columns before them keep their values.
EXTRA_MEASURES = ["patient_global", "CHAQ", "extramuscular_activity", "aldolase"]
# Keys mixed with the seed for the random streams of the later options: each option draws
# from its own stream, so the main stream, and the other options, keep their numbers.
_STREAM_DRUG_GENES = 1
_STREAM_EXTRA_MEASURES = 2
_STREAM_IFN_VISITS = 3


@dataclass
class CohortSpec:
    """What to simulate.

    Attributes
    ----------
    n_patients, n_controls
        Cohort size. Patients are sampled at every timepoint; controls once, at baseline.
    timepoints
        Ordered levels; the first is baseline. Effects grow towards the last level.
    n_genes
        Total genes; named blood genes come first, the rest are anonymous ``GENE<n>``.
    drugs
        Drug name to fraction of patients.
    frac_ifn_high
        Fraction of patients with a high IFN signature at baseline.
    frac_responders
        Fraction of patients who respond; in IFN-high responders the signature falls.
    responder_final_fraction, non_responder_final_fraction
        Ranges (low, high) of the uniform draw of each patient's IFN activity at the last
        timepoint as a fraction of their baseline activity, in responders and in
        non-responders: the gap between them is the planted differential response.
    n_treatment_genes
        Genes changed by treatment in every patient, independent of IFN.
    clinical_link
        Strength of the link between the IFN fall and clinical improvement; 0 for none.
    plant_sex_flip, plant_swap, plant_globin
        Plant a declared-sex error, a label swap between two subjects, a globin-dominated
        library (for QC tests).
    composition_shift
        Cell type (a key of ``CELL_MARKERS``) to the log2 change of its markers in patients
        on treatment, reached at the last timepoint (e.g. more neutrophils and fewer
        lymphocytes as steroids are tapered); empty for none.
    seed
        Seed of the random generator: the same spec gives the same cohort.
    null
        Plant nothing over time: every patient keeps their baseline IFN activity at every
        timepoint, no gene changes on treatment, and the clinical measures keep their noise
        and the general drift of responders but follow no expression. The baseline
        difference between IFN-high patients and controls stays.
    n_drug_genes
        Background genes that change over time in the patients on one drug only. They are
        split over the drugs in the order of ``drugs`` (with two drugs, the first half for
        the first drug and the rest for the second); each reaches its ``drug_lfc`` at the
        last timepoint, as the treatment genes do.
    ifn_visit_sd
        SD of a visit factor shared by the IFN-driven genes (every gene with an IFN loading:
        the ISGs and, weakly, the IFN-gamma-biased genes): each sample's IFN activity is its
        subject's planted level plus a normal draw of this SD, independent between visits
        and with mean 0, so it plants no change in the mean. In the units of the activity
        (1 is a typical IFN-high baseline), so an ISG moves by its loading times the draw:
        SD 0.1 moves the ISGs by 0.15 to 0.3 log2 and the strongest by 0.3 to 0.45 from
        visit to visit. In real blood the IFN genes fluctuate together like this between
        visits, so a gene-set test that permutes gene labels sees the whole set shift by
        chance. The clinical measures follow the planted level, not the draw. 0 (the
        default) draws nothing and keeps the cohorts as they were without this option.
    """

    n_patients: int = 25
    n_controls: int = 12
    timepoints: tuple[str, ...] = ("baseline", "month3", "month6")
    n_genes: int = 15000
    drugs: dict[str, float] = field(
        default_factory=lambda: {"ruxolitinib": 18 / 25, "tofacitinib": 7 / 25}
    )
    frac_ifn_high: float = 0.84
    frac_responders: float = 0.72
    n_treatment_genes: int = 300
    clinical_link: float = 1.0
    plant_sex_flip: bool = False
    plant_swap: bool = False
    plant_globin: bool = False
    composition_shift: dict[str, float] = field(default_factory=dict)
    seed: int = 20200101
    null: bool = False
    n_drug_genes: int = 0
    responder_final_fraction: tuple[float, float] = (0.05, 0.3)
    non_responder_final_fraction: tuple[float, float] = (0.75, 1.05)
    ifn_visit_sd: float = 0.0

    def __post_init__(self) -> None:
        for name in ["responder_final_fraction", "non_responder_final_fraction"]:
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(
                    f"{name} must be a range (low, high) with 0 <= low <= high, got "
                    f"({low}, {high})."
                )
        if not self.ifn_visit_sd >= 0:
            raise ValueError(f"ifn_visit_sd must be 0 or more, got {self.ifn_visit_sd}.")
        if self.n_drug_genes < 0:
            raise ValueError(f"n_drug_genes must be 0 or more, got {self.n_drug_genes}.")
        if self.null and (self.n_drug_genes or self.composition_shift):
            raise ValueError(
                "a null cohort plants nothing over time, so it takes neither drug-specific "
                "genes nor a composition shift; set n_drug_genes to 0 and composition_shift "
                "to {} or drop null."
            )


@dataclass
class Cohort:
    """A simulated cohort: inputs of the workflow and the truth behind them."""

    counts: pd.DataFrame  # genes x samples, index gene_id
    samples: pd.DataFrame
    clinical: pd.DataFrame
    truth_samples: pd.DataFrame
    truth_subjects: pd.DataFrame
    truth_genes: pd.DataFrame

    def write(self, outdir: str | Path, sheets_dir: str | Path | None = None) -> None:
        """Write counts and truth to ``outdir``, the sheets to ``sheets_dir`` (default outdir)."""
        outdir = Path(outdir)
        sheets = Path(sheets_dir) if sheets_dir is not None else outdir
        outdir.mkdir(parents=True, exist_ok=True)
        sheets.mkdir(parents=True, exist_ok=True)
        _write_gzip_tsv(self.counts, outdir / "counts.tsv.gz", index_label="gene_id")
        self.samples.to_csv(sheets / "samples.tsv", sep="\t", index=False)
        self.clinical.to_csv(sheets / "clinical.tsv", sep="\t", index=False, float_format="%.4g")
        self.truth_samples.to_csv(outdir / "truth_samples.tsv", sep="\t", index=False)
        self.truth_subjects.to_csv(outdir / "truth_subjects.tsv", sep="\t", index=False)
        self.truth_genes.to_csv(
            outdir / "truth_genes.tsv", sep="\t", index=False, float_format="%.6g"
        )


def _write_gzip_tsv(frame: pd.DataFrame, path: Path, index_label: str) -> None:
    # mtime=0 keeps the gzip header free of the write time, so the file is byte-reproducible.
    text = frame.to_csv(sep="\t", index_label=index_label)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(text.encode())


def gene_names(n_genes: int) -> tuple[list[str], dict[str, str]]:
    """Gene symbols of a simulated cohort and the role of each named gene."""
    roles: dict[str, str] = {}
    for genes, role in [
        (ISGS, "isg"),
        (IFNG_GENES, "ifng"),
        (GLOBIN_GENES, "globin"),
        (MITO_GENES, "mito"),
        (RIBO_GENES, "ribo"),
        (FEMALE_GENES, "female"),
        (MALE_GENES, "male"),
        (list(PRESENCE_GENES), "presence"),
        (OTHER_BLOOD_GENES, "housekeeping"),
    ]:
        for gene in genes:
            roles.setdefault(gene, role)
    for cell, genes in CELL_MARKERS.items():
        for gene in genes:
            roles.setdefault(gene, f"marker_{cell}")
    named = list(roles)
    if n_genes < len(named) + 100:
        raise ValueError(f"n_genes must be at least {len(named) + 100}, got {n_genes}.")
    anonymous = [f"GENE{i:05d}" for i in range(1, n_genes - len(named) + 1)]
    for gene in anonymous:
        roles[gene] = "background"
    return named + anonymous, roles


def _allocate(n: int, fractions: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    counts = np.floor(np.array(list(fractions.values())) * n).astype(int)
    counts[0] += n - counts.sum()
    labels = np.repeat(list(fractions), counts)
    return rng.permutation(labels)


def simulate_cohort(spec: CohortSpec | None = None) -> Cohort:
    """Simulate a cohort from ``spec`` (the default is the demo cohort).

    ``truth_genes`` holds, per gene: its role, mean, dispersion and ISG loading; the change
    on treatment in all patients (``treatment_lfc``) and in the patients on one drug
    (``drug_specific``, ``drug_lfc``), both reached at the last timepoint; the expected
    log2 fold change of each follow-up vs baseline averaged over all patients
    (``lfc_<t>_vs_<baseline>``) and over the patients on each drug
    (``lfc_<t>_vs_<baseline>_<drug>``); ``planted_de`` (changed over time in the patients);
    ``planted_responder_difference`` (an ISG whose fall is planted larger in responders)
    and ``planted_drug_difference`` (a drug gene); and the expected interaction
    ``lfc_<t>_vs_<baseline>_responders_minus_non_responders``, the mean planted change in
    responders minus that in non-responders (for drug genes it also carries any imbalance
    of drugs between the two groups).
    """
    spec = spec or CohortSpec()
    rng = np.random.default_rng(spec.seed)
    genes, roles = gene_names(spec.n_genes)
    role = np.array([roles[g] for g in genes])
    n_genes = len(genes)
    timepoints = list(spec.timepoints)
    n_tp = len(timepoints)
    # Fraction of the full treatment effect reached at each timepoint.
    progress = np.linspace(0.0, 1.0, n_tp)
    progress[1:] = 0.7 + 0.3 * np.linspace(0.0, 1.0, n_tp - 1) if n_tp > 2 else 1.0

    # --- subjects -------------------------------------------------------------------
    n_p, n_c = spec.n_patients, spec.n_controls
    width = max(2, len(str(max(n_p, n_c))))
    patients = [f"JDM{i:0{width}d}" for i in range(1, n_p + 1)]
    controls = [f"HC{i:0{width}d}" for i in range(1, n_c + 1)]
    n_high = int(round(spec.frac_ifn_high * n_p))
    ifn_high = rng.permutation(np.r_[np.ones(n_high, bool), np.zeros(n_p - n_high, bool)])
    n_resp = int(round(spec.frac_responders * n_p))
    responder = rng.permutation(np.r_[np.ones(n_resp, bool), np.zeros(n_p - n_resp, bool)])
    drug = _allocate(n_p, spec.drugs, rng)
    subjects = pd.DataFrame(
        {
            "subject": patients + controls,
            "group": ["patient"] * n_p + ["control"] * n_c,
            # JDM affects girls about twice as often as boys.
            "sex": np.where(rng.random(n_p + n_c) < 0.65, "female", "male"),
            "age": np.round(rng.uniform(4, 17, n_p + n_c), 1),
            "drug": list(drug) + [""] * n_c,
            "ifn_high": list(ifn_high) + [False] * n_c,
            "responder": list(responder) + [False] * n_c,
        }
    )
    for gene, p_null in PRESENCE_GENES.items():
        subjects[f"has_{gene}"] = rng.random(len(subjects)) >= p_null

    # IFN activity: 0 is a healthy level; ISG log2 fold change = loading * activity.
    base_activity = np.where(
        subjects["ifn_high"],
        rng.uniform(0.6, 1.3, len(subjects)),
        np.abs(rng.normal(0, 0.08, len(subjects))),
    )
    final_fraction = np.where(
        subjects["responder"],
        rng.uniform(*spec.responder_final_fraction, len(subjects)),
        rng.uniform(*spec.non_responder_final_fraction, len(subjects)),
    )
    if spec.null:
        # Drawn all the same, so a null cohort shares its subjects with the planted one.
        final_fraction = np.ones(len(subjects))

    # --- samples --------------------------------------------------------------------
    rows = []
    for s_idx, sub in subjects.iterrows():
        tps = timepoints if sub["group"] == "patient" else timepoints[:1]
        for t_idx, tp in enumerate(tps):
            frac = 1.0 - progress[t_idx] * (1.0 - final_fraction[s_idx])
            rows.append(
                {
                    "sample": f"{sub['subject']}_{tp}"
                    if sub["group"] == "patient"
                    else sub["subject"],
                    "subject": sub["subject"],
                    "subject_index": s_idx,
                    "timepoint": tp,
                    "timepoint_index": t_idx,
                    "ifn_activity": base_activity[s_idx] * frac
                    if sub["group"] == "patient"
                    else base_activity[s_idx],
                }
            )
    samples = pd.DataFrame(rows)
    n_s = len(samples)
    s_of = samples["subject_index"].to_numpy()
    t_of = samples["timepoint_index"].to_numpy()
    is_patient = (subjects["group"].to_numpy() == "patient")[s_of]

    # --- gene parameters ------------------------------------------------------------
    log_mean = rng.normal(np.log(60), 1.6, n_genes)  # normalized mean counts, log scale
    named_high = np.isin(role, ["housekeeping", "ribo", "mito"])
    log_mean[named_high] = rng.normal(np.log(5000), 0.7, named_high.sum())
    log_mean[role == "isg"] = rng.normal(np.log(400), 0.8, (role == "isg").sum())
    log_mean[role == "globin"] = rng.normal(np.log(3000), 0.8, (role == "globin").sum())
    log_mean[np.char.startswith(role, "marker")] = rng.normal(
        np.log(600), 0.8, np.char.startswith(role, "marker").sum()
    )
    mean = np.exp(log_mean)
    # DESeq2-like trend plus gene-to-gene scatter around it.
    dispersion = (0.05 + 2.0 / mean) * np.exp(rng.normal(0, 0.35, n_genes))

    log2_effect = np.zeros((n_genes, n_s))
    # Person-specific expression, stable over time (why a paired design gains power).
    subject_effect = rng.normal(0, 0.25, (n_genes, len(subjects)))
    log2_effect += subject_effect[:, s_of]

    loading = np.zeros(n_genes)
    isg = role == "isg"
    loading[isg] = rng.uniform(1.5, 3.0, isg.sum())
    loading[np.isin(genes, list(STRONG_ISGS))] = rng.uniform(3.0, 4.5, len(STRONG_ISGS))
    loading[role == "ifng"] = rng.uniform(0.0, 0.3, (role == "ifng").sum())
    activity = samples["ifn_activity"].to_numpy()
    log2_effect += np.outer(loading, activity)

    # Treatment effects shared by all patients, independent of the IFN pathway.
    background = np.flatnonzero(role == "background")
    treated = rng.choice(background, spec.n_treatment_genes, replace=False)
    treatment_lfc = np.zeros(n_genes)
    treatment_lfc[treated] = rng.choice([-1, 1], len(treated)) * rng.uniform(0.6, 1.5, len(treated))
    if spec.null:
        treatment_lfc[:] = 0.0
    log2_effect += np.outer(treatment_lfc, np.where(is_patient, progress[t_of], 0.0))

    # Genes changed by one drug only, drawn from their own stream.
    drug_names = list(spec.drugs)
    drug_specific = np.full(n_genes, "", dtype=object)
    drug_lfc = np.zeros(n_genes)
    if spec.n_drug_genes:
        drug_rng = np.random.default_rng([spec.seed, _STREAM_DRUG_GENES])
        candidates = np.setdiff1d(background, treated)
        if spec.n_drug_genes > len(candidates):
            raise ValueError(
                f"n_drug_genes ({spec.n_drug_genes}) is more than the {len(candidates)} "
                "background genes not changed by treatment; lower it or raise n_genes."
            )
        chosen = drug_rng.choice(candidates, spec.n_drug_genes, replace=False)
        for name, genes_of_drug in zip(
            drug_names, np.array_split(chosen, len(drug_names)), strict=True
        ):
            drug_specific[genes_of_drug] = name
        drug_lfc[chosen] = drug_rng.choice([-1, 1], len(chosen)) * drug_rng.uniform(
            0.6, 1.5, len(chosen)
        )
        drug_of_sample = subjects["drug"].to_numpy()[s_of]
        on_drug = drug_specific[chosen][:, None] == np.where(is_patient, drug_of_sample, None)
        drug_effect = np.where(on_drug, drug_lfc[chosen][:, None] * progress[t_of][None, :], 0.0)

    # Sex and expression-null genotypes.
    sex = subjects["sex"].to_numpy()[s_of]
    for gene_role, expressed_in in [("female", "female"), ("male", "male")]:
        rows_g = role == gene_role
        log2_effect[np.ix_(rows_g, sex != expressed_in)] -= 9.0
    for gene in PRESENCE_GENES:
        g = genes.index(gene)
        log2_effect[g, ~subjects[f"has_{gene}"].to_numpy()[s_of]] -= 8.0

    # Cell composition varies between samples at random.
    for markers in CELL_MARKERS.values():
        shift = rng.normal(0, 0.3, n_s)
        rows_g = np.isin(genes, markers)
        log2_effect[rows_g] += shift
    # A planted composition change on treatment draws no random numbers, so cohorts without
    # one stay identical to those simulated before it existed.
    for cell, lfc in spec.composition_shift.items():
        rows_g = np.isin(genes, CELL_MARKERS[cell])
        log2_effect[rows_g] += lfc * np.where(is_patient, progress[t_of], 0.0)

    # --- counts ---------------------------------------------------------------------
    lib_factor = np.exp(rng.normal(0, 0.3, n_s))
    mu = mean[:, None] * np.exp2(log2_effect) * lib_factor[None, :]
    if spec.plant_globin:
        globin = role == "globin"
        planted_globin_sample = int(np.flatnonzero(is_patient)[1])
        mu[globin, planted_globin_sample] *= 60.0
    shape = 1.0 / dispersion[:, None]
    counts = _negative_binomial(rng, mu, shape).astype(np.int64)
    if spec.n_drug_genes:
        # The drug genes' counts are drawn again, with their change, from the drug stream:
        # the main stream, and so every other value of the cohort, stays as without them.
        mu_drug = mu[chosen] * np.exp2(drug_effect)
        counts[chosen] = _negative_binomial(drug_rng, mu_drug, shape[chosen])
    if spec.ifn_visit_sd:
        # The visit factor and the counts of the IFN-driven genes come from their own stream,
        # as the drug genes do: every other value of the cohort stays as without it.
        visit_rng = np.random.default_rng([spec.seed, _STREAM_IFN_VISITS])
        visit_factor = visit_rng.normal(0.0, spec.ifn_visit_sd, n_s)
        moved = np.flatnonzero(loading != 0)
        mu_visit = mu[moved] * np.exp2(np.outer(loading[moved], visit_factor))
        counts[moved] = _negative_binomial(visit_rng, mu_visit, shape[moved])

    # --- clinical -------------------------------------------------------------------
    clinical_rows = []
    # The further core set measures draw from their own stream, so the columns above keep
    # the values they had before these measures were added.
    extra_rng = np.random.default_rng([spec.seed, _STREAM_EXTRA_MEASURES])
    for s_idx, sub in subjects[subjects["group"] == "patient"].iterrows():
        base = {
            "CMAS": rng.uniform(18, 40),
            "MMT8": rng.uniform(45, 68),
            "CAT_BM_activity": rng.uniform(5, 12),
            "physician_global": rng.uniform(4, 8),
            "prednisone_mg_kg_day": rng.uniform(0.3, 1.0),
            "CK": float(np.exp(rng.normal(np.log(400), 0.6))),
        }
        gain_scale = rng.uniform(0.8, 1.2)
        extra_base = {
            "patient_global": extra_rng.uniform(3, 8),
            "CHAQ": extra_rng.uniform(0.75, 2.0),
            "extramuscular_activity": extra_rng.uniform(3, 7),
            "aldolase": float(np.exp(extra_rng.normal(np.log(12), 0.5))),
        }
        for t_idx, tp in enumerate(timepoints):
            a = samples.loc[
                (samples["subject_index"] == s_idx) & (samples["timepoint_index"] == t_idx),
                "ifn_activity",
            ].iloc[0]
            ifn_fall = base_activity[s_idx] - a
            # Improvement tracks the IFN fall (planted link) plus a general
            # time-on-treatment improvement in responders, with measurement noise.
            improve = spec.clinical_link * ifn_fall * gain_scale
            general = progress[t_idx] * (0.5 if sub["responder"] else 0.0)
            noise = rng.normal(0, 1, 6)
            extra_noise = extra_rng.normal(0, 1, len(EXTRA_MEASURES))
            row = {"subject": sub["subject"], "timepoint": tp}
            if t_idx == 0:
                row.update(base)
                row.update(extra_base)
            else:
                row["CMAS"] = base["CMAS"] + 12 * improve + 3 * general + 2.5 * noise[0]
                row["MMT8"] = base["MMT8"] + 14 * improve + 4 * general + 3.0 * noise[1]
                row["CAT_BM_activity"] = base["CAT_BM_activity"] - 5 * improve - general + noise[2]
                row["physician_global"] = (
                    base["physician_global"] - 3 * improve - general + 0.7 * noise[3]
                )
                taper = 0.5 * progress[t_idx] + 0.3 * progress[t_idx] * sub["responder"]
                row["prednisone_mg_kg_day"] = (
                    base["prednisone_mg_kg_day"] * (1 - taper) + 0.03 * noise[4]
                )
                row["CK"] = base["CK"] * np.exp(-0.8 * improve - 0.3 * general + 0.2 * noise[5])
                row["patient_global"] = (
                    extra_base["patient_global"] - 3 * improve - general + 0.9 * extra_noise[0]
                )
                row["CHAQ"] = (
                    extra_base["CHAQ"] - 0.6 * improve - 0.2 * general + 0.15 * extra_noise[1]
                )
                row["extramuscular_activity"] = (
                    extra_base["extramuscular_activity"]
                    - 3 * improve
                    - general
                    + 0.7 * extra_noise[2]
                )
                row["aldolase"] = extra_base["aldolase"] * np.exp(
                    -0.6 * improve - 0.2 * general + 0.2 * extra_noise[3]
                )
            for name, (low, high, _) in MEASURES.items():
                row[name] = float(np.clip(row[name], low, high))
            clinical_rows.append(row)
    clinical = pd.DataFrame(clinical_rows)
    for col in ["CMAS", "MMT8"]:
        clinical[col] = clinical[col].round(0)
    # The CHAQ is the mean of eight domain scores of 0-3, so it moves in steps of 1/8.
    clinical["CHAQ"] = (clinical["CHAQ"] * 8).round(0) / 8

    # --- sheets and truth -------------------------------------------------------------
    sample_sheet = pd.DataFrame(
        {
            "sample": samples["sample"],
            "subject": samples["subject"],
            "group": subjects["group"].to_numpy()[s_of],
            "timepoint": samples["timepoint"],
            "batch": np.where(rng.random(n_s) < 0.5, "b1", "b2"),
            "sex": sex,
            "age": subjects["age"].to_numpy()[s_of],
            "drug": subjects["drug"].to_numpy()[s_of],
        }
    )
    truth_samples = samples[["sample", "subject", "timepoint", "ifn_activity"]].copy()
    truth_samples["library_factor"] = lib_factor
    truth_samples["planted"] = ""
    if spec.ifn_visit_sd:
        # Added only with the option, so the table keeps its bytes without it.
        truth_samples["ifn_visit_factor"] = visit_factor
    declared_sex = subjects.set_index("subject")["sex"].copy()
    if spec.plant_sex_flip:
        flipped = patients[2]
        declared_sex[flipped] = "male" if declared_sex[flipped] == "female" else "female"
        sample_sheet["sex"] = sample_sheet["subject"].map(declared_sex)
        truth_samples.loc[truth_samples["subject"] == flipped, "planted"] = "sex_flip"
    if spec.plant_swap:
        # The month-3 labels of two subjects of the same sex are swapped: each label now
        # carries the other child's library.
        same_sex = [
            p
            for p in patients[4:]
            if subjects.set_index("subject").loc[p, "sex"]
            == subjects.set_index("subject").loc[patients[3], "sex"]
        ]
        a, b = patients[3], same_sex[0]
        tp = timepoints[1]
        ia = samples.index[(samples["subject"] == a) & (samples["timepoint"] == tp)][0]
        ib = samples.index[(samples["subject"] == b) & (samples["timepoint"] == tp)][0]
        counts[:, [ia, ib]] = counts[:, [ib, ia]]
        truth_samples.loc[[ia, ib], "planted"] = "swap"
    if spec.plant_globin:
        truth_samples.loc[planted_globin_sample, "planted"] = "globin"

    truth_subjects = subjects.copy()
    truth_subjects["baseline_ifn_activity"] = base_activity
    truth_subjects["final_ifn_fraction"] = np.where(
        subjects["group"] == "patient", final_fraction, np.nan
    )
    truth_subjects["declared_sex"] = truth_subjects["subject"].map(declared_sex)

    # Expected log2 fold change of each follow-up vs baseline, averaged over patients.
    patient_rows = subjects["group"] == "patient"
    mean_activity = [
        samples.loc[is_patient & (t_of == t), "ifn_activity"].mean() for t in range(n_tp)
    ]
    truth_genes = pd.DataFrame({"gene_id": genes, "symbol": genes, "role": role})
    truth_genes["base_mean"] = mean
    truth_genes["dispersion"] = dispersion
    truth_genes["ifn_loading"] = loading
    truth_genes["treatment_lfc"] = treatment_lfc
    for t in range(1, n_tp):
        truth_genes[f"lfc_{timepoints[t]}_vs_{timepoints[0]}"] = treatment_lfc * progress[
            t
        ] + loading * (mean_activity[t] - mean_activity[0])
    patient_drug = subjects["drug"].to_numpy()[:n_p]
    responder = subjects["responder"].to_numpy(bool)[:n_p]
    activity_by_tp = (
        samples[is_patient]
        .pivot(index="subject_index", columns="timepoint_index", values="ifn_activity")
        .to_numpy()
    )

    def drug_share(in_group: np.ndarray) -> np.ndarray:
        # Per gene, the share of a group's patients on the drug that moves it (0 if none).
        return np.array([np.mean(patient_drug[in_group] == d) if d else 0.0 for d in drug_specific])

    def expected_change(in_group: np.ndarray, t: int) -> np.ndarray:
        # Mean over the patients of a group of each gene's planted log2 change at t: the
        # treatment genes, the IFN activity fall through each ISG's loading, the drug genes.
        if not in_group.any():  # a drug or a response group without patients
            return np.full(n_genes, np.nan)
        fall = np.mean(activity_by_tp[in_group, t] - activity_by_tp[in_group, 0])
        return (treatment_lfc + drug_lfc * drug_share(in_group)) * progress[t] + loading * fall

    if spec.n_drug_genes:
        # Added only when there are drug genes, so the columns above keep their bytes.
        share = drug_share(np.ones(n_p, bool))
        for t in range(1, n_tp):
            truth_genes[f"lfc_{timepoints[t]}_vs_{timepoints[0]}"] += drug_lfc * progress[t] * share
    truth_genes["planted_de"] = (
        (treatment_lfc != 0) | ((loading >= 1.0) & (not spec.null)) | (drug_lfc != 0)
    )
    del patient_rows
    truth_genes["drug_specific"] = drug_specific
    truth_genes["drug_lfc"] = drug_lfc
    for name in drug_names:
        for t in range(1, n_tp):
            truth_genes[f"lfc_{timepoints[t]}_vs_{timepoints[0]}_{name}"] = expected_change(
                patient_drug == name, t
            )
    truth_genes["planted_responder_difference"] = (
        (loading >= 1.0)
        & (not spec.null)
        & (tuple(spec.responder_final_fraction) != tuple(spec.non_responder_final_fraction))
    )
    truth_genes["planted_drug_difference"] = drug_specific != ""
    for t in range(1, n_tp):
        truth_genes[f"lfc_{timepoints[t]}_vs_{timepoints[0]}_responders_minus_non_responders"] = (
            expected_change(responder, t) - expected_change(~responder, t)
        )

    count_frame = pd.DataFrame(
        counts, index=pd.Index(genes, name="gene_id"), columns=samples["sample"].to_list()
    )
    return Cohort(
        counts=count_frame,
        samples=sample_sheet,
        clinical=clinical,
        truth_samples=truth_samples,
        truth_subjects=truth_subjects,
        truth_genes=truth_genes,
    )


def split_by_subject(cohort: Cohort, rng: np.random.Generator) -> pd.Series:
    """Half the patients and half the controls drawn with ``rng``: True for the samples of
    those subjects, by sample. Two cohorts of one population, for a reference saved from one
    and applied to the other."""
    subjects = cohort.truth_subjects
    second: set[str] = set()
    for group in ["patient", "control"]:
        names = subjects.loc[subjects["group"] == group, "subject"].to_numpy()
        second |= set(rng.choice(names, len(names) // 2, replace=False))
    samples = cohort.samples.set_index("sample", drop=False)
    return samples["subject"].isin(second)


def median_fold_change_scores(
    cohort: Cohort, signatures: tuple[str, ...] = ("RICE2013_6",)
) -> pd.DataFrame:
    """Median-fold-change scores of a simulated cohort's shipped ``signatures``, with the
    controls' baseline samples as reference.

    Only the DESeq2 size factors are needed for this method (no VST fit), which keeps
    simulation-based tests and benchmarks fast.
    """
    import anndata as ad
    from pydeseq2.preprocessing import deseq2_norm

    from ifnsig import genesets, scores

    counts = cohort.counts.T
    normalized, size_factors = deseq2_norm(counts.to_numpy())
    adata = ad.AnnData(
        X=normalized.astype(float),
        obs=cohort.samples.set_index("sample").loc[counts.index],
        var=pd.DataFrame({"symbol": counts.columns}, index=counts.columns),
    )
    adata.layers["normalized"] = adata.X
    adata.obs["size_factor"] = size_factors
    sets = genesets.load_gene_sets([genesets.SHIPPED_GMT], include=list(signatures))
    matched, _ = genesets.match_gene_sets(
        sets, adata.var["symbol"], genesets.read_aliases(genesets.SHIPPED_ALIASES)
    )
    reference = scores.reference_mask(adata.obs, "controls", "control", "baseline")
    return scores.score_samples(adata, matched, ["median_fold_change"], reference)


def _negative_binomial(rng: np.random.Generator, mu: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Negative binomial counts of mean ``mu`` and dispersion ``1 / shape``, as a gamma-Poisson
    mixture (the same draws from ``rng`` wherever counts are drawn)."""
    return rng.poisson(rng.gamma(shape, mu / shape))


def write_single_cells(
    path: str | Path,
    n_cells: int,
    n_genes: int,
    n_samples: int,
    per_cell: int,
    seed: int,
    block: int = 20_000,
) -> tuple[pd.Series, int]:
    """Write a simulated single-cell ``.h5ad`` of any size, ``block`` cells at a time.

    A cells x genes CSR matrix of integer UMI counts (float32, as scanpy writes them), about
    ``per_cell`` detected genes a cell, with a ``sample`` and a ``cell_type`` obs column; the
    cells of every sample are spread over the whole file. Memory holds one block and the
    ``obs`` table, whatever the number of cells.

    Returns
    -------
    (pandas.Series, int)
        The total count of each sample (samples in order of their first cell) and the number
        of non-zero counts.
    """
    import anndata as ad
    import h5py

    rng = np.random.default_rng(seed)
    sample = rng.integers(0, n_samples, size=n_cells)
    names = np.array([f"S{k:04d}" for k in range(n_samples)])
    obs = pd.DataFrame(
        {
            "sample": pd.Categorical(names[sample], categories=names),
            "cell_type": pd.Categorical(rng.choice(["B", "Mono", "NK", "T"], size=n_cells)),
        },
        index=pd.Index([f"cell{i:08d}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(index=[f"GENE{g:05d}" for g in range(n_genes)])
    ad.AnnData(obs=obs, var=var).write_h5ad(path)
    del obs
    # Detected genes of a cell as gaps between positions: sorted and distinct (a canonical
    # CSR row) without sorting, about per_cell of them.
    width = int(per_cell + 6 * per_cell**0.5 + 10)
    totals = np.zeros(n_samples, dtype=np.int64)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    with h5py.File(path, "a") as handle:
        group = handle.create_group("X")
        group.attrs.update(
            {
                "encoding-type": "csr_matrix",
                "encoding-version": "0.1.0",
                "shape": (n_cells, n_genes),
            }
        )
        data = group.create_dataset("data", (0,), maxshape=(None,), dtype="f4", chunks=(1 << 18,))
        indices = group.create_dataset(
            "indices", (0,), maxshape=(None,), dtype="i4", chunks=(1 << 18,)
        )
        for start in range(0, n_cells, block):
            stop = min(n_cells, start + block)
            position = np.cumsum(rng.geometric(per_cell / n_genes, (stop - start, width)), axis=1)
            row, column = np.nonzero(position <= n_genes)
            gene = position[row, column] - 1
            value = rng.geometric(0.6, len(gene))
            totals += np.bincount(
                sample[start:stop][row], weights=value, minlength=n_samples
            ).astype(np.int64)
            indptr[start + 1 : stop + 1] = indptr[start] + np.cumsum(
                np.bincount(row, minlength=stop - start)
            )
            end = data.shape[0]
            data.resize((end + len(gene),))
            indices.resize((end + len(gene),))
            data[end:] = value.astype(np.float32)
            indices[end:] = gene.astype(np.int32)
        group.create_dataset("indptr", data=indptr)
    first = dict.fromkeys(names[sample])
    return pd.Series(totals, index=names).loc[list(first)], int(indptr[-1])


def summed_in_memory(path: str | Path, settings: dict) -> pd.DataFrame:
    """Pseudobulk of a single-cell ``.h5ad`` read in full and summed with
    :func:`scanpy.get.aggregate`: the reference :func:`ifnsig.formats.pseudobulk` (the same
    ``h5ad`` settings, read in blocks) must equal byte for byte.

    Returns
    -------
    pandas.DataFrame
        Integer counts, genes x samples, samples in order of their first chosen cell.
    """
    import anndata as ad
    import scanpy as sc
    import scipy.sparse as sp

    adata = ad.read_h5ad(path)
    column = settings.get("sample_column", "sample")
    mask = np.ones(adata.n_obs, dtype=bool)
    if settings.get("cell_types"):
        mask = adata.obs[settings["cell_type_column"]].isin(settings["cell_types"]).to_numpy()
    chosen = adata[mask].copy()
    chosen.obs[column] = chosen.obs[column].astype(str)
    summed = sc.get.aggregate(chosen, by=column, func="sum", layer=settings.get("layer"))
    values = summed.layers["sum"]
    values = values.toarray() if sp.issparse(values) else np.asarray(values)
    frame = pd.DataFrame(
        np.rint(values).astype(np.int64).T,
        index=pd.Index(adata.var_names.astype(str), name="gene_id"),
        columns=summed.obs_names.astype(str),
    )
    return frame[list(dict.fromkeys(chosen.obs[column]))]


def main(argv: list[str] | None = None) -> None:
    """Command line: write a simulated cohort."""
    parser = argparse.ArgumentParser(
        prog="python -m ifnsig.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--outdir", required=True, help="folder for counts.tsv.gz and truth tables")
    parser.add_argument(
        "--sheets-dir", help="folder for samples.tsv and clinical.tsv (default: outdir)"
    )
    defaults = CohortSpec()
    parser.add_argument("--patients", type=int, default=defaults.n_patients)
    parser.add_argument("--controls", type=int, default=defaults.n_controls)
    parser.add_argument("--genes", type=int, default=defaults.n_genes)
    parser.add_argument(
        "--timepoints",
        default=",".join(defaults.timepoints),
        help="comma-separated ordered timepoints, baseline first",
    )
    parser.add_argument(
        "--clinical-link",
        type=float,
        default=defaults.clinical_link,
        help="strength of the IFN-fall to clinical-gain link (0: none)",
    )
    parser.add_argument(
        "--plant-qc-failures",
        action="store_true",
        help="plant a sex flip, a label swap and a globin-dominated library",
    )
    parser.add_argument(
        "--null",
        action="store_true",
        help="plant nothing over time: no IFN fall, no treatment genes, clinical course "
        "unlinked to expression (the baseline IFN-high vs control difference stays)",
    )
    parser.add_argument(
        "--drug-genes",
        type=int,
        default=defaults.n_drug_genes,
        metavar="N",
        help="N background genes that change in the patients on one drug only, split over "
        "the drugs in order",
    )
    parser.add_argument(
        "--responder-final-fraction",
        type=float,
        nargs=2,
        default=defaults.responder_final_fraction,
        metavar=("LOW", "HIGH"),
        help="range of a responder's last IFN activity as a fraction of baseline "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--non-responder-final-fraction",
        type=float,
        nargs=2,
        default=defaults.non_responder_final_fraction,
        metavar=("LOW", "HIGH"),
        help="the same for non-responders (default: %(default)s)",
    )
    parser.add_argument(
        "--ifn-visit-sd",
        type=float,
        default=defaults.ifn_visit_sd,
        metavar="SD",
        help="SD of a visit factor added to each sample's IFN activity, shared by the IFN "
        "genes (0.1 moves the ISGs by 0.15 to 0.45 log2; default: %(default)s, none)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    try:
        spec = CohortSpec(
            n_patients=args.patients,
            n_controls=args.controls,
            n_genes=args.genes,
            timepoints=tuple(args.timepoints.split(",")),
            clinical_link=args.clinical_link,
            plant_sex_flip=args.plant_qc_failures,
            plant_swap=args.plant_qc_failures,
            plant_globin=args.plant_qc_failures,
            seed=args.seed,
            null=args.null,
            n_drug_genes=args.drug_genes,
            responder_final_fraction=tuple(args.responder_final_fraction),
            non_responder_final_fraction=tuple(args.non_responder_final_fraction),
            ifn_visit_sd=args.ifn_visit_sd,
        )
        cohort = simulate_cohort(spec)
    except ValueError as err:
        parser.error(str(err))
    cohort.write(args.outdir, args.sheets_dir)


if __name__ == "__main__":
    main()


__all__ = ["CohortSpec", "Cohort", "simulate_cohort", "gene_names", "MEASURES", "EXTRA_MEASURES"]
