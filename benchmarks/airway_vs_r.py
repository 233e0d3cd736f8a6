"""The whole airway DE fit, with our own Monte Carlo prior variance, against R DESeq2.

Airway (Himes 2014, ``../shared/data/airway``), ``~ cell + dex``, every gene: the log fold
changes correlate with R DESeq2 1.38.3's at r >= 0.999 (baseMean > 10), the genes at
padj < 0.1 are R's 4,819 within 3 %, and the two smallest p-values are R's two genes. The
test suite fits airway once, with R's prior variance (``tests/test_de.py``
``test_airway_with_r_prior_variance_is_r``: every other step exact, and our Monte Carlo
estimate of the prior variance R's to Monte Carlo error); this fit is the end-to-end one.
Exit status 1 when a check fails.

```bash
python benchmarks/airway_vs_r.py
```
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_de import check_airway_matches_r_deseq2  # noqa: E402


def main() -> int:
    started = time.monotonic()
    try:
        n_sig = check_airway_matches_r_deseq2()
    except AssertionError as err:
        print(f"airway differs from R DESeq2: {err!r}")
        return 1
    wall = time.monotonic() - started
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(u.ru_utime + u.ru_stime for u in usage)
    print(f"airway as R DESeq2: {n_sig} genes at padj < 0.1 ({wall:.0f} s wall, {cpu:.0f} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
