"""How far IFN scores move when a cohort grows, without and with a frozen reference.

The first patients and controls of the demo are normalized and scored alone (as a clinic's
first batch would be), then within the whole demo (as after the cohort grew); the table gives,
per signature and method, how far the scores and calls of the shared samples moved. The same
samples scored against a reference frozen from the whole demo do not move at all (tested in
tests/test_reference.py).

```bash
python benchmarks/score_drift.py --patients 10 --controls 10
```
"""

from __future__ import annotations

import argparse

import pandas as pd

from ifnsig import demo, scores


def scored(counts: pd.DataFrame, samples: pd.DataFrame, config: dict, methods: list[str]):
    return demo.score_cohort(counts[samples.index], samples, config, methods)[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10, help="first patients (all visits)")
    parser.add_argument("--controls", type=int, default=10, help="first controls")
    parser.add_argument("--out", default="benchmarks/score_drift.tsv")
    args = parser.parse_args()
    config = demo.config()
    counts, sheet = demo.read()
    patients = list(dict.fromkeys(sheet.loc[sheet["group"] == "patient", "subject"]))
    controls = list(dict.fromkeys(sheet.loc[sheet["group"] == "control", "subject"]))
    first = sheet["subject"].isin(patients[: args.patients] + controls[: args.controls])
    methods = [m for m in scores.METHODS if m != "module_activity"]
    alone = scored(counts, sheet[first], config, methods)
    together = scored(counts, sheet, config, methods)
    shift = scores.score_shift(alone, together)
    shift.to_csv(args.out, sep="\t", index=False, float_format="%.4g")
    print(f"{first.sum()} samples alone vs within all {len(sheet)} demo samples")
    print(shift.to_markdown(index=False, floatfmt=".3g"))


if __name__ == "__main__":
    main()
