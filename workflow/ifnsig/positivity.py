"""Positivity cut-offs of IFN scores, checked against the range each score can reach.

Three rules make a call, and the scores table names the one behind each call:

* ``reference_mean_sd``: above the reference mean plus ``k`` reference SDs (Rice et al.,
  Lancet Neurol 2013: mean + 2 SD of healthy controls). The default.
* ``reference_quantile``: above a high quantile of the reference scores (default the 97.5th
  percentile, the one-sided share of a normal distribution above mean + 2 SD). The fallback
  when mean + k SD lies at or above the highest score the method can reach: singscore of a
  small, highly expressed signature cannot exceed 0.5, and controls near 0.45 with an SD of
  0.04 give a cut-off of 0.53 that no sample reaches.
* ``mixture``: where the posterior of the high component of a two-component Gaussian
  mixture fitted to the baseline patient scores crosses 0.5 (sklearn ``GaussianMixture``,
  seeded). For cohorts without a usable reference, or as the fallback of choice.

When no rule gives a reachable cut-off the call is ``unreachable``: nobody is called
positive, and a :class:`PositivityWarning` says so.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

RULES = ("reference_mean_sd", "reference_quantile", "mixture", "unreachable")
FALLBACKS = ("quantile", "mixture")

# Ashman et al., J Stat Comput Simul 1994: two normal components are clearly separated only
# when D = sqrt(2) |mu1 - mu2| / sqrt(sd1^2 + sd2^2) exceeds 2.
ASHMAN_MIN = 2.0
# Fewest scores (weight x n) a component must hold to count as a group of samples.
MIN_COMPONENT = 2.0


class PositivityWarning(UserWarning):
    """A cut-off could not be reached by any sample, and another rule made the calls."""


class MixtureWarning(UserWarning):
    """The scores a mixture cut-off was fitted to do not look bimodal."""


@dataclass(frozen=True)
class Cutoff:
    """The positivity cut-off of one signature and method, and how it was made.

    A sample is positive when its score is strictly above ``threshold``.
    """

    threshold: float
    rule: str
    reference_mean: float
    reference_sd: float
    attainable_min: float
    attainable_max: float


@dataclass(frozen=True)
class MixtureFit:
    """A two-component Gaussian mixture of scores, low component first.

    ``cutoff`` is where the posterior of the high component crosses 0.5 between the two
    means (NaN when it never does); ``bimodal`` is False when two components fit no better
    than one by BIC, Ashman's D is below 2, or a component holds fewer than 2 scores.
    """

    n: int
    cutoff: float
    weight_low: float
    mean_low: float
    sd_low: float
    weight_high: float
    mean_high: float
    sd_high: float
    bic_one: float
    bic_two: float
    ashman_d: float
    bimodal: bool

    def as_dict(self) -> dict:
        return asdict(self)


def _crossing(weights, means, sds) -> float:
    """Score where both weighted normal densities are equal, between the means if it can."""
    (w1, w2), (m1, m2), (s1, s2) = weights, means, sds
    # log(w1 N(x; m1, s1)) - log(w2 N(x; m2, s2)) = a x^2 + b x + c.
    a = 1.0 / (2 * s2**2) - 1.0 / (2 * s1**2)
    b = m1 / s1**2 - m2 / s2**2
    c = m2**2 / (2 * s2**2) - m1**2 / (2 * s1**2) + math.log(w1 * s2 / (w2 * s1))
    if abs(a) < 1e-12 * max(abs(b), 1e-300):
        roots = [-c / b] if b != 0 else []
    else:
        disc = b * b - 4 * a * c
        roots = [] if disc < 0 else [(-b + s * math.sqrt(disc)) / (2 * a) for s in (1, -1)]
    if not roots:
        return math.nan
    inside = [r for r in roots if m1 <= r <= m2]
    middle = (m1 + m2) / 2
    return float(min(inside or roots, key=lambda r: abs(r - middle)))


def mixture_cutoff(scores, seed: int = 0, label: str = "scores") -> MixtureFit:
    """Fit one and two Gaussian components to ``scores`` and place the cut-off between them.

    Parameters
    ----------
    scores
        Scores of the samples the cut-off is learnt from, typically the baseline patients.
    seed
        Seed of the k-means initialisation of ``GaussianMixture`` (5 starts).
    label
        Named in the warning, e.g. ``"RICE2013_6 / singscore"``.

    Warns
    -----
    MixtureWarning
        When the scores are not bimodal: BIC of two components not below that of one,
        Ashman's D below 2, or a component of fewer than 2 scores. The cut-off is still
        returned.
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(scores, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 4 or np.ptp(x) == 0:
        warnings.warn(
            f"{label}: {len(x)} distinct-enough scores cannot be split by a two-component "
            "mixture; no mixture cut-off (give at least 4 baseline patients with "
            "differing scores).",
            MixtureWarning,
            stacklevel=2,
        )
        nan = math.nan
        return MixtureFit(len(x), nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, False)
    data = x[:, None]
    one = GaussianMixture(1, random_state=seed).fit(data)
    two = GaussianMixture(2, random_state=seed, n_init=5).fit(data)
    order = np.argsort(two.means_.ravel())
    means = two.means_.ravel()[order]
    sds = np.sqrt(two.covariances_.ravel()[order])
    weights = two.weights_[order]
    ashman = math.sqrt(2) * abs(means[1] - means[0]) / math.sqrt(sds[0] ** 2 + sds[1] ** 2)
    bic_one, bic_two = float(one.bic(data)), float(two.bic(data))
    # A component fitted to a single score collapses to sklearn's variance floor, which
    # makes any lone outlier look like a second group by BIC and Ashman's D.
    smallest = float(weights.min() * len(x))
    bimodal = bic_two < bic_one and ashman >= ASHMAN_MIN and smallest >= MIN_COMPONENT
    if not bimodal:
        warnings.warn(
            f"{label}: the {len(x)} scores do not look bimodal (BIC 2 components "
            f"{bic_two:.1f} vs 1 component {bic_one:.1f}, Ashman's D {ashman:.2f}, smaller "
            f"component {smallest:.1f} scores; bimodal needs a lower BIC for 2 components, "
            f"D >= {ASHMAN_MIN:g} and at least {MIN_COMPONENT:g} scores in each component), so "
            "the mixture cut-off separates no real groups; prefer the reference rule.",
            MixtureWarning,
            stacklevel=2,
        )
    return MixtureFit(
        n=len(x),
        cutoff=_crossing(weights, means, sds),
        weight_low=float(weights[0]),
        mean_low=float(means[0]),
        sd_low=float(sds[0]),
        weight_high=float(weights[1]),
        mean_high=float(means[1]),
        sd_high=float(sds[1]),
        bic_one=bic_one,
        bic_two=bic_two,
        ashman_d=float(ashman),
        bimodal=bool(bimodal),
    )


def choose_cutoff(
    reference_scores,
    attainable: tuple[float, float] = (-math.inf, math.inf),
    positivity_sd: float = 2.0,
    rule: str = "reference_mean_sd",
    fallback: str = "quantile",
    quantile: float = 0.975,
    mixture_scores=None,
    seed: int = 0,
    label: str = "scores",
) -> tuple[Cutoff, MixtureFit | None]:
    """The cut-off of one signature and method, checked against its attainable maximum.

    Parameters
    ----------
    reference_scores
        Scores of the reference samples (healthy controls, or baseline samples).
    attainable
        Lowest and highest score the method can give this signature.
    positivity_sd
        ``k`` of the reference mean + k SD rule.
    rule
        ``reference_mean_sd`` (default) or ``mixture``.
    fallback
        Used when the rule's cut-off cannot be exceeded: ``quantile`` (the ``quantile`` of the
        reference scores, then the mixture when ``mixture_scores`` are given) or ``mixture``.
    mixture_scores
        Scores the mixture is fitted to (the baseline patients); None when not available.
    label
        ``"<signature> / <method>"``, named in warnings.

    Returns
    -------
    Cutoff, MixtureFit or None
        The cut-off, and the mixture fit when one was made.
    """
    if rule not in ("reference_mean_sd", "mixture"):
        raise ValueError(f"Unknown positivity rule {rule!r}; use reference_mean_sd or mixture.")
    if fallback not in FALLBACKS:
        raise ValueError(f"Unknown positivity fallback {fallback!r}; use one of {FALLBACKS}.")
    if rule == "mixture" and mixture_scores is None:
        raise ValueError("The mixture rule needs mixture_scores (the baseline patients' scores).")
    ref = np.asarray(reference_scores, dtype=float)
    ref = ref[np.isfinite(ref)]
    mean = float(ref.mean()) if len(ref) else math.nan
    sd = float(ref.std(ddof=1)) if len(ref) > 1 else math.nan
    low, high = (float(v) for v in attainable)
    fit: MixtureFit | None = None

    def made(threshold: float, name: str) -> Cutoff:
        return Cutoff(float(threshold), name, mean, sd, low, high)

    def mixture() -> float:
        nonlocal fit
        if mixture_scores is None:
            return math.nan
        fit = mixture_cutoff(mixture_scores, seed=seed, label=label)
        return fit.cutoff

    if rule == "mixture":
        first, first_name, first_text = mixture(), "mixture", "mixture"
    else:
        first = mean + positivity_sd * sd
        first_name, first_text = "reference_mean_sd", f"reference mean + {positivity_sd:g} SD"
    if np.isfinite(first) and first < high:
        return made(first, first_name), fit
    candidates = []
    if fallback == "quantile" and len(ref):
        candidates.append(
            (float(np.quantile(ref, quantile)), "reference_quantile", f"{quantile:g} quantile")
        )
    if first_name != "mixture":
        candidates.append((math.nan, "mixture", "mixture cut-off"))
    for value, name, text in candidates:
        if name == "mixture":
            value = mixture()
        if np.isfinite(value) and value < high:
            warnings.warn(
                f"{label}: the {first_text} cut-off {first:.4g} cannot be exceeded (the "
                f"highest attainable score is {high:.4g}), so no sample could be positive; "
                f"calls use the reference {text} ({value:.4g}) instead."
                if name == "reference_quantile"
                else f"{label}: the {first_text} cut-off {first:.4g} cannot be exceeded (the "
                f"highest attainable score is {high:.4g}); calls use the mixture cut-off "
                f"({value:.4g}) of the baseline patients instead.",
                PositivityWarning,
                stacklevel=2,
            )
            return made(value, name), fit
    warnings.warn(
        f"{label}: no positivity cut-off can be exceeded (the {first_text} is {first:.4g}, the "
        f"highest attainable score {high:.4g}, and no fallback is below it), so no sample is "
        "called positive; use another method for this signature.",
        PositivityWarning,
        stacklevel=2,
    )
    return made(first, "unreachable"), fit
