"""Scores against a frozen reference: how exactly they reproduce a run, and how well a
reference saved from one cohort calls a second cohort sequenced at another depth.

1. The shipped demo is normalized and scored as the workflow does (the configured methods),
   its reference is frozen, written and read back, and the demo's patients are scored
   against it: all together, and ``--alone`` of them each alone. The table gives the
   largest absolute difference from the run's scores and the number of calls that differ.
2. A simulated cohort (``--patients`` patients, ``--controls`` controls) is split by subject
   into two halves; the first half's run is frozen, the second half's counts are thinned to
   ``--depth`` of their reads and scored against it. The table gives the agreement of the
   baseline patients' calls with the planted IFN-high status, per signature and method.

```bash
python benchmarks/frozen_reference.py
```
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import pandas as pd

from ifnsig import data, demo, reference
from ifnsig.simulate import CohortSpec, simulate_cohort, split_by_subject

KEYS = ["sample", "signature", "method"]


def run(counts: pd.DataFrame, samples: pd.DataFrame, config: dict, methods: list[str]):
    """Normalize and score a cohort as the normalize and score_ifn stages do; freeze it."""
    adata, matched, mask, table = demo.score_cohort(counts, samples, config, methods)
    ref = reference.build_reference(adata, matched, table, mask, seed=config["seed"])
    with tempfile.TemporaryDirectory() as folder:
        reference.write_reference(ref, folder)
        ref = reference.read_reference(folder)
    return table, ref


def frozen(raw, ref) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reference.score_with_reference(raw, ref)


def difference(table: pd.DataFrame, again: pd.DataFrame, batch: str) -> dict:
    merged = table.merge(again, on=KEYS, suffixes=("_run", "_frozen"), validate="one_to_one")
    return {
        "measure": "demo patients against the demo's reference",
        "batch": batch,
        "signature": "all",
        "method": "all",
        "n": len(merged),
        "value": float((merged["score_run"] - merged["score_frozen"]).abs().max()),
        "unit": "largest |score difference|",
        "calls_differing": int((merged["positive_run"] != merged["positive_frozen"]).sum()),
    }


def demo_rows(config: dict, methods: list[str], n_alone: int) -> list[dict]:
    counts, sheet = demo.read()
    table, ref = run(counts, sheet, config, methods)
    raw = data.build_anndata(counts, sheet)
    patients = raw[raw.obs["group"] == "patient"].copy()
    rows = [difference(table, frozen(patients, ref), f"all {patients.n_obs} together")]
    picked = patients.obs_names[np.linspace(0, patients.n_obs - 1, n_alone).round().astype(int)]
    alone = pd.concat([frozen(patients[[name]].copy(), ref) for name in picked])
    rows.append(difference(table, alone, f"{len(picked)} (evenly spaced) each alone"))
    return rows


def depth_rows(config: dict, args) -> list[dict]:
    spec = CohortSpec(
        n_patients=args.patients, n_controls=args.controls, n_genes=args.genes, seed=args.seed
    )
    cohort = simulate_cohort(spec)
    subjects = cohort.truth_subjects
    rng = np.random.default_rng(0)
    in_second = split_by_subject(cohort, rng)
    samples = cohort.samples.set_index("sample", drop=False)
    methods = list(config["scores"]["methods"])
    _, ref = run(cohort.counts.loc[:, samples.index[~in_second]], samples[~in_second], config,
                 methods)  # fmt: skip
    counts = cohort.counts.loc[:, samples.index[in_second]].to_numpy()
    shallow = data.build_anndata(
        pd.DataFrame(
            rng.binomial(counts, args.depth),
            index=cohort.counts.index,
            columns=samples.index[in_second],
        ),
        samples[in_second],
    )
    table = frozen(shallow, ref)
    truth = subjects.set_index("subject")["ifn_high"]
    base = table[(table["group"] == "patient") & (table["timepoint"] == "baseline")]
    rows = []
    for (signature, method), part in base.groupby(["signature", "method"], sort=False):
        agree = part["positive"].to_numpy() == truth[part["subject"]].to_numpy()
        rows.append({
            "measure": f"second cohort at {args.depth:g} depth against the first's reference",
            "batch": f"{part['subject'].nunique()} baseline patients",
            "signature": signature,
            "method": method,
            "n": len(part),
            "value": float(agree.mean()),
            "unit": "agreement with planted IFN-high",
            "calls_differing": int((~agree).sum()),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--controls", type=int, default=24)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--alone", type=int, default=10, help="demo patients scored alone")
    parser.add_argument("--depth", type=float, default=0.35, help="share of reads kept")
    parser.add_argument("--out", default="benchmarks/frozen_reference.tsv")
    args = parser.parse_args()
    config = demo.config()
    methods = list(config["scores"]["methods"])
    start = time.perf_counter()
    rows = demo_rows(config, methods, args.alone)
    print(f"demo: {time.perf_counter() - start:.0f} s", flush=True)
    rows += depth_rows(config, args)
    result = pd.DataFrame(rows)
    result.to_csv(args.out, sep="\t", index=False, float_format="%.4g")
    print(result.to_markdown(index=False, floatfmt=".3g"))
    print(f"methods {', '.join(methods)}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
