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
import warnings
from pathlib import Path

import pandas as pd
import yaml

from ifnsig import data, genesets, scores
from ifnsig.settings import aliases_file, score_gene_set_files
from ifnsig.validation import validate_config

REPO = Path(__file__).resolve().parents[1]


def scored(counts: pd.DataFrame, samples: pd.DataFrame, config: dict, methods: list[str]):
    adata = data.build_anndata(counts[samples.index], samples)
    settings = config["filtering"]
    adata = data.filter_genes(adata, settings["min_count"], settings["min_samples"])
    data.normalize(adata, n_cpus=1)
    matched, _ = genesets.matched_signatures(
        scores.scored_signatures(config["scores"]),
        adata.var["symbol"].astype(str),
        score_gene_set_files(config),
        aliases_file(),
        min_genes=config["scores"]["min_genes"],
    )
    mask = scores.reference_mask(adata.obs, "controls", "control", "baseline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scores.score_samples(adata, matched, methods, mask, seed=config["seed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10, help="first patients (all visits)")
    parser.add_argument("--controls", type=int, default=10, help="first controls")
    parser.add_argument("--out", default="benchmarks/score_drift.tsv")
    args = parser.parse_args()
    config = validate_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text()))
    counts = pd.read_csv(REPO / "resources" / "demo" / "counts.tsv.gz", sep="\t", index_col=0)
    sheet = pd.read_csv(REPO / "config" / "samples.tsv", sep="\t", dtype=str)
    sheet = sheet.set_index("sample", drop=False)
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
