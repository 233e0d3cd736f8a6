"""Random-intercept linear mixed models with small-sample t-tests and within/between terms.

The model is ``y = X beta + b[subject] + e`` with ``b ~ N(0, tau2)`` per subject and
``e ~ N(0, sigma2)`` per observation, fitted by restricted maximum likelihood (REML). With one
variance ratio ``gamma = tau2 / sigma2`` the REML criterion is profiled exactly: ``beta`` and
``sigma2`` have closed forms given ``gamma``, and ``gamma`` is the root of the profiled
criterion's derivative, found by bracketing and Brent's method. The fit is the one
``lme4::lmer(y ~ X + (1 | subject), REML = TRUE)`` finds (Bates et al., J Stat Softw 2015).

Model-based tests (``vcov="model"``)
    Each fixed-effect t-test refers ``estimate / SE`` to a t distribution with Satterthwaite's
    degrees of freedom, as ``lmerTest`` does by default (Kuznetsova, Brockhoff & Christensen,
    J Stat Softw 2017;82(13)): ``df = 2 (c' Phi c)^2 / (g' A g)``, with ``Phi`` the covariance
    of ``beta``, ``g`` the gradient of ``c' Phi c`` in the variance parameters
    ``(theta, sigma)`` (``theta = sqrt(gamma)``, lme4's parameterization, which lmerTest
    differentiates in) and ``A`` twice the inverse Hessian of the REML deviance in the same
    parameters. Here both derivatives are analytic rather than numerical. Satterthwaite rather
    than Kenward-Roger: with one random intercept the two df agree closely, Kenward-Roger's
    inflation of the covariance matters little at 25 or more subjects, and Satterthwaite is
    lmerTest's default, which is what readers will check the tables against. When the
    random-intercept variance is estimated at 0 (a singular fit) the model is ordinary least
    squares and the df are its residual df, ``n - p``; the limit of the Satterthwaite formula
    at ``theta = 0`` is that same number.

Within and between terms
    A term named in ``centre`` enters as two columns, its subject mean (``<term>_between``)
    and its deviation from that mean (``<term>_within``): subject-mean centring (Neuhaus &
    Kalbfleisch, Biometrics 1998;54:638-645; Bell & Jones, Political Science Research and
    Methods 2015;3:133-153). The within coefficient is the change in the response when this
    subject's value moves by one unit from its own mean, free of anything that differs between
    subjects (a between-subject confounder cannot pose as a within-subject link); the between
    coefficient is the association of subject means. Without centring a single coefficient is
    a precision-weighted mix of the two. Means are taken over the rows the fit uses, so a
    subject with a missing visit is centred on the visits it has. A centred term that never
    varies within a subject (sex, drug) keeps its between column only, which is the
    uncentred term. Covariates that change over visits (steroid dose) are best centred too:
    the score's within coefficient is then adjusted for the covariate's within-subject
    changes and its between coefficient for the covariate's subject means (Mundlak's
    decomposition). Terms not named (the timepoint, by default) enter as they are; with
    complete visits every subject has each timepoint once, so centring the timepoint would
    change nothing; with missing visits the within coefficient is then close to, not exactly,
    the fixed-effects (subject dummies) estimate.

Robust standard errors (the default)
    The random-intercept model assumes that a subject's deviations from its own mean are
    exchangeable over visits. Trajectories that differ between subjects (some patients improve
    a lot, some not at all, for reasons the score does not see) break this: the deviations
    then share a direction over time, the model-based SE of a within coefficient is too small
    and its test too liberal whatever the df. With ``vcov="CR2"`` the covariance of ``beta``
    is the cluster-robust sandwich with the bias-reduced linearization adjustment of Bell &
    McCaffrey (Survey Methodology 2002;28:169-181), the random-intercept fit as working
    model, and each test takes the Satterthwaite df of that estimator (Pustejovsky & Tipton,
    J Bus Econ Stat 2018;36:672-683), as ``clubSandwich::coef_test(fit, vcov = "CR2", test =
    "Satterthwaite")`` computes them. On demo-shaped cohorts of 25 patients
    (``benchmarks/bench_mixed_calibration.py --datasets 1000 --seed 2 --no-old``) the within
    coefficient's test rejected at p < 0.05: 5.0% (model-based) and 5.2% (CR2) of cohorts
    where the random-intercept model holds; 9.8% and 4.8% of cohorts whose measure
    trajectories were permuted across patients; 7.3% and 4.0% with a between-patient
    confounder and no within-patient link. CR2 costs power (57% against 69% at half the
    demo's planted link), but the larger figure belongs to a test that rejects true nulls
    twice as often as it states.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ifnsig.lazy import lazy_module

# Loaded at the first fit: jobs that only read this module's columns do not pay for them.
optimize = lazy_module("scipy.optimize")
stats = lazy_module("scipy.stats")

COEFFICIENT_COLUMNS = ["estimate", "se", "df", "statistic", "pvalue", "ci_low", "ci_high"]
INTERCEPT = "(Intercept)"
# Grid of variance ratios tau2 / sigma2 (scale-free) searched before the root is refined.
GAMMA_GRID = np.r_[0.0, np.logspace(-4, 4, 33)]
GAMMA_MAX = 1e8
#: Observations up to which CR2 forms its n x n matrices (the residual maker and the working
#: covariance) as such; beyond it the same quantities are computed a cluster at a time,
#: which keeps time and memory linear in n where the dense form grows with its cube.
CR2_DENSE_MAX = 300


@dataclass(frozen=True)
class MixedFit:
    """A fitted random-intercept model.

    Attributes
    ----------
    coefficients
        One row per fixed-effect column (index ``term``): ``estimate``, ``se``, ``df``,
        ``statistic`` (t), ``pvalue`` (two-sided), ``ci_low``, ``ci_high``.
    n_obs, n_groups
        Rows and subjects used.
    residual_variance, group_variance
        REML estimates of ``sigma2`` and of the random-intercept variance ``tau2``.
    reml_criterion
        Minus twice the REML log-likelihood (lme4's ``REMLcrit``).
    converged
        False when no estimate could be found (the coefficients are then NaN).
    singular
        True when ``tau2`` is estimated at 0 (the fit is then ordinary least squares).
    vcov
        ``"model"`` (REML) or ``"CR2"`` (cluster-robust).
    note
        What went wrong or was changed, in words; empty when nothing did.
    """

    coefficients: pd.DataFrame
    n_obs: int
    n_groups: int
    residual_variance: float
    group_variance: float
    reml_criterion: float
    converged: bool
    singular: bool
    vcov: str
    note: str


def design_matrix(
    frame: pd.DataFrame,
    fixed_terms: Sequence[str],
    group: str,
    centre: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[str]]:
    """Fixed-effect design: intercept, numeric terms, dummies, within/between splits.

    Parameters
    ----------
    frame
        One row per observation, without missing values in the columns used.
    fixed_terms
        Columns of ``frame``. Numeric columns enter as they are; others (text, bool,
        categorical) as treatment-coded indicators named ``<term>[<level>]``, the first level
        (category order for a categorical, sorted order otherwise) the reference.
    group
        The subject column.
    centre
        Terms of ``fixed_terms`` to split into ``<column>_between`` (the subject mean) and
        ``<column>_within`` (the deviation from it).

    Returns
    -------
    The design (same index as ``frame``) and notes on columns left out: constant columns,
    within columns that never vary within a subject, columns aliased with earlier ones.
    """
    unknown = [t for t in centre if t not in fixed_terms]
    if unknown:
        raise ValueError(f"centred terms {unknown} are not among the fixed terms {fixed_terms}")
    columns: dict[str, np.ndarray] = {INTERCEPT: np.ones(len(frame))}
    notes: list[str] = []
    codes = pd.factorize(frame[group])[0]
    for term in fixed_terms:
        values = frame[term]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            parts = {term: values.to_numpy(float)}
        else:
            if isinstance(values.dtype, pd.CategoricalDtype):
                seen = set(values)
                levels = [level for level in values.cat.categories if level in seen]
            else:
                values = values.astype(str)
                levels = sorted(values.unique())
            parts = {f"{term}[{level}]": (values == level).to_numpy(float) for level in levels[1:]}
        for name, column in parts.items():
            if term in centre:
                mean = _group_means(column, codes)
                within = column - mean
                if np.allclose(within, 0.0, atol=1e-12 * (1 + np.abs(column).max())):
                    notes.append(f"{name} does not vary within any subject: between term only")
                else:
                    columns[f"{name}_within"] = within
                columns[f"{name}_between"] = mean
            else:
                columns[name] = column
    design = pd.DataFrame(columns, index=frame.index)
    return _drop_aliased(design, notes)


def fit_random_intercept(
    frame: pd.DataFrame,
    response: str,
    fixed_terms: Sequence[str],
    group: str,
    centre: Sequence[str] = (),
    confidence: float = 0.95,
    vcov: Literal["model", "CR2"] = "CR2",
) -> MixedFit:
    """Fit ``response ~ fixed_terms + (1 | group)`` by REML with small-sample t-tests.

    Parameters
    ----------
    frame
        One row per observation; rows with a missing or infinite value in any column used
        are left out.
    response
        The numeric response column.
    fixed_terms
        Fixed-effect columns (an intercept is added); see :func:`design_matrix`.
    group
        The subject column (the random intercept's grouping).
    centre
        Terms split into subject mean and within-subject deviation (``<term>_between``,
        ``<term>_within``).
    confidence
        Level of the t intervals ``estimate +/- t(df) * se``.
    vcov
        ``"CR2"``: the cluster-robust covariance with Bell-McCaffrey adjustment and its
        Satterthwaite df (clubSandwich), valid when trajectories differ between subjects;
        ``"model"``: the REML covariance with Satterthwaite df (lmerTest), valid when the
        random intercept is the whole of the within-subject correlation.

    Returns
    -------
    The fit; never raises for data that cannot be fitted (too few subjects or rows, no
    optimum): ``converged`` is then False and ``note`` says why.
    """
    fits = fit_random_intercept_covariances(
        frame, response, fixed_terms, group, centre, confidence, vcovs=(vcov,)
    )
    return fits[vcov]


def fit_random_intercept_covariances(
    frame: pd.DataFrame,
    response: str,
    fixed_terms: Sequence[str],
    group: str,
    centre: Sequence[str] = (),
    confidence: float = 0.95,
    vcovs: Sequence[Literal["model", "CR2"]] = ("CR2", "model"),
) -> dict[str, MixedFit]:
    """:func:`fit_random_intercept` with each covariance of ``vcovs``, from one REML fit.

    The estimates, variances and notes of the fits are the same; their standard errors,
    df, intervals and p-values are each covariance's. Returns ``{vcov: fit}``.
    """
    missing = [c for c in [response, group, *fixed_terms] if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the table (it has {list(frame.columns)})")
    unknown = [v for v in vcovs if v not in ("model", "CR2")]
    if unknown:
        raise ValueError(f"vcov must be 'model' or 'CR2', not {unknown[0]!r}")
    used = frame[[response, group, *dict.fromkeys(fixed_terms)]]
    infinite = used.isin([np.inf, -np.inf]).any(axis=1)
    used = used[~infinite].dropna()
    notes = [f"{int(infinite.sum())} rows with an infinite value left out"] * bool(infinite.any())

    def unfitted(terms: pd.Index, n_obs: int, n_groups: int, why: str) -> dict[str, MixedFit]:
        note = "; ".join([*notes, why])
        return {v: _with(_empty_fit(terms, n_obs, n_groups, v), note=note) for v in vcovs}

    if used.empty:
        return unfitted(pd.Index([INTERCEPT]), 0, 0, "no row has every value the model needs")
    design, design_notes = design_matrix(used, fixed_terms, group, centre)
    notes += design_notes
    codes, _ = pd.factorize(used[group])
    n_obs, n_groups, n_par = len(used), int(codes.max(initial=-1)) + 1, design.shape[1]
    if n_groups < 2 or n_obs <= max(n_par, n_groups):
        note = f"{n_obs} rows of {n_groups} subjects cannot fit {n_par} fixed effects and a "
        note += "random intercept (needs >= 2 subjects, one with repeated rows)"
        return unfitted(design.columns, n_obs, n_groups, note)
    x = design.to_numpy(float)
    y = used[response].to_numpy(float)
    try:
        reml = _RemlProfile(x, y, codes)
        gamma = reml.optimum()
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
        return unfitted(design.columns, n_obs, n_groups, f"not estimable ({err})")
    if gamma is None:
        note = "no REML optimum: the random-intercept variance grows without bound"
        return unfitted(design.columns, n_obs, n_groups, note)
    parts = reml.at(gamma)
    singular = gamma == 0.0
    if singular:
        notes.append("random-intercept variance at 0: ordinary least squares")
    fits = {}
    for vcov in vcovs:
        if vcov == "model":
            se, df, df_note = _satterthwaite(reml, gamma, parts)
        else:
            se, df, df_note = _cr2(reml, gamma, parts)
        coefficients = _coefficient_table(design.columns, parts.beta, se, df, confidence)
        fits[vcov] = MixedFit(
            coefficients=coefficients,
            n_obs=n_obs,
            n_groups=n_groups,
            residual_variance=parts.sigma2,
            group_variance=gamma * parts.sigma2,
            reml_criterion=reml.criterion(gamma),
            converged=True,
            singular=singular,
            vcov=vcov,
            note="; ".join([*notes, df_note] if df_note else notes),
        )
    return fits


# --- REML -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    """Closed-form pieces of the REML fit at one variance ratio."""

    w: np.ndarray  # gamma / (1 + n gamma) per subject: H^-1 = I - w J within a subject
    m_inv: np.ndarray  # (X' H^-1 X)^-1
    logdet_m: float
    beta: np.ndarray
    e: np.ndarray  # per-subject sums of the residuals y - X beta
    q: float  # r' H^-1 r
    sigma2: float


class _RemlProfile:
    """REML criterion of the random-intercept model profiled in ``gamma = tau2 / sigma2``.

    Within a subject of ``n`` rows ``H = I + gamma J`` (``V = sigma2 H``), so
    ``H^-1 = I - w J`` with ``w = gamma / (1 + n gamma)``: every quantity needs only the
    per-subject sums of ``X`` and ``y``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray) -> None:
        self.x, self.y, self.codes = x, y, codes
        self.n_groups = int(codes.max()) + 1
        self.sizes = np.bincount(codes, minlength=self.n_groups).astype(float)
        self.s = np.zeros((self.n_groups, x.shape[1]))
        np.add.at(self.s, codes, x)
        self.t = np.bincount(codes, weights=y, minlength=self.n_groups)
        self.xtx = x.T @ x
        self.xty = x.T @ y
        self.n, self.p = x.shape
        # Rank of X'X decides estimability; H^-1 only rescales it.
        if np.linalg.matrix_rank(self.xtx) < self.p:
            raise ValueError("the fixed-effect design is rank deficient")

    def at(self, gamma: float) -> _Parts:
        w = gamma / (1.0 + self.sizes * gamma)
        m = self.xtx - self.s.T @ (w[:, None] * self.s)
        lower = np.linalg.cholesky(m)
        lower_inv = np.linalg.inv(lower)
        m_inv = lower_inv.T @ lower_inv
        beta = m_inv @ (self.xty - self.s.T @ (w * self.t))
        e = self.t - self.s @ beta
        r = self.y - self.x @ beta
        q = float(r @ r - np.sum(w * e**2))
        logdet_m = 2.0 * float(np.sum(np.log(np.diag(lower))))
        return _Parts(w, m_inv, logdet_m, beta, e, q, q / (self.n - self.p))

    def criterion(self, gamma: float) -> float:
        """Minus twice the REML log-likelihood with ``sigma2`` profiled (lme4's REMLcrit)."""
        parts = self.at(gamma)
        dof = self.n - self.p
        return (
            float(np.sum(np.log1p(self.sizes * gamma)))
            + parts.logdet_m
            + dof * (1.0 + math.log(2.0 * math.pi * parts.q / dof))
        )

    def slope(self, gamma: float) -> float:
        """Derivative of :meth:`criterion` in ``gamma``."""
        parts = self.at(gamma)
        dw = 1.0 / (1.0 + self.sizes * gamma) ** 2
        dq = -float(np.sum(dw * parts.e**2))
        dm = -self.s.T @ (dw[:, None] * self.s)
        return (
            float(np.sum(self.sizes / (1.0 + self.sizes * gamma)))
            + (self.n - self.p) * dq / parts.q
            + float(np.sum(parts.m_inv * dm))
        )

    def optimum(self) -> float | None:
        """The REML ``gamma``: 0 for a singular fit, None when none is found."""
        grid = list(GAMMA_GRID)
        values = [self.criterion(g) for g in grid]
        while int(np.argmin(values)) == len(grid) - 1:
            if grid[-1] >= GAMMA_MAX:
                return None
            grid.append(grid[-1] * 10.0)
            values.append(self.criterion(grid[-1]))
        best = int(np.argmin(values))
        if best == 0:
            if self.slope(0.0) >= 0.0:
                return 0.0
            low, high = 0.0, grid[1]
        else:
            low, high = grid[best - 1], grid[best + 1]
        if self.slope(low) < 0.0 < self.slope(high):
            return float(optimize.brentq(self.slope, low, high, xtol=1e-14, rtol=1e-14))
        # A criterion flat to rounding between the grid points: its minimum there.
        found = optimize.minimize_scalar(
            self.criterion, bounds=(low, high), method="bounded", options={"xatol": 1e-12}
        )
        return float(found.x)


# --- model-based covariance and Satterthwaite df ----------------------------------------------


def _satterthwaite(
    reml: _RemlProfile, gamma: float, parts: _Parts
) -> tuple[np.ndarray, np.ndarray, str]:
    """Model-based SE and Satterthwaite df of every coefficient (lmerTest's ``summary``)."""
    phi = parts.sigma2 * parts.m_inv
    se = np.sqrt(np.diag(phi))
    dof = float(reml.n - reml.p)
    if gamma == 0.0:
        return se, np.full(reml.p, dof), ""
    sizes, s, e = reml.sizes, reml.s, parts.e
    sigma2, m_inv = parts.sigma2, parts.m_inv
    dw = 1.0 / (1.0 + sizes * gamma) ** 2
    d2w = -2.0 * sizes / (1.0 + sizes * gamma) ** 3
    dm = -s.T @ (dw[:, None] * s)
    d2m = -s.T @ (d2w[:, None] * s)
    dq = -float(np.sum(dw * e**2))
    u = -s.T @ (dw * e)
    d2q = -float(np.sum(d2w * e**2)) - 2.0 * float(u @ m_inv @ u)
    m_inv_dm = m_inv @ dm
    # Deviance D(gamma, sigma2) = sum log(1 + n gamma) + Q / sigma2 + (n - p) log sigma2
    # + log det M, its derivatives, then the chain rule to lme4's (theta, sigma).
    d_g = float(np.sum(sizes / (1.0 + sizes * gamma))) + dq / sigma2 + float(np.trace(m_inv_dm))
    d_gg = (
        -float(np.sum(sizes**2 / (1.0 + sizes * gamma) ** 2))
        + d2q / sigma2
        + float(np.sum(m_inv * d2m))
        - float(np.sum(m_inv_dm * m_inv_dm.T))
    )
    d_s2 = -parts.q / sigma2**2 + dof / sigma2
    d_s2s2 = 2.0 * parts.q / sigma2**3 - dof / sigma2**2
    d_gs2 = -dq / sigma2**2
    theta, sd = math.sqrt(gamma), math.sqrt(sigma2)
    hessian = np.array(
        [
            [2.0 * d_g + 4.0 * gamma * d_gg, 4.0 * theta * sd * d_gs2],
            [4.0 * theta * sd * d_gs2, 2.0 * d_s2 + 4.0 * sigma2 * d_s2s2],
        ]
    )
    # Positive definiteness judged on the scale-free correlation form: theta and sigma may
    # differ by many orders of magnitude.
    diagonal = np.diag(hessian)
    if diagonal.min() <= 0.0 or hessian[0, 1] ** 2 >= (1.0 - 1e-10) * diagonal.prod():
        return se, np.full(reml.p, dof), "REML Hessian not positive definite: residual df"
    scale = 1.0 / np.sqrt(diagonal)
    a = 2.0 * scale[:, None] * np.linalg.inv(hessian * np.outer(scale, scale)) * scale[None, :]
    # Gradients of diag(Phi) = sigma2 diag(M^-1): in gamma -sigma2 diag(M^-1 M' M^-1).
    g_gamma = -sigma2 * np.einsum("ij,jk,ki->i", m_inv, dm, m_inv)
    g_sigma2 = np.diag(m_inv)
    g = np.stack([2.0 * theta * g_gamma, 2.0 * sd * g_sigma2])
    quad = np.einsum("ik,ij,jk->k", g, a, g)
    df = 2.0 * np.diag(phi) ** 2 / quad
    return se, df, ""


# --- cluster-robust covariance (CR2) and its Satterthwaite df ---------------------------------


def _cr2(reml: _RemlProfile, gamma: float, parts: _Parts) -> tuple[np.ndarray, np.ndarray, str]:
    """CR2 sandwich SE and its Satterthwaite df (clubSandwich's ``coef_test``).

    Working covariance ``Phi = H`` and weights ``W = H^-1`` from the REML fit (``sigma2``
    cancels), ``B = (X'WX)^-1``, residuals ``r = (I - X B X'W) y``. The sandwich is
    ``sum_j u_j u_j'`` with ``u_j = B X_j' W_j A_j r_j``, where the adjustment
    ``A_j = D_j' (D_j (Phi_j - X_j B X_j') D_j')^(-1/2) D_j`` (``D_j'D_j = Phi_j``) makes it
    unbiased under the working model (Bell & McCaffrey 2002). For a coefficient
    ``c'u_j = p_j'y``; with ``Omega = P Phi P'`` the df are ``tr(Omega)^2 / sum(Omega^2)``
    (Pustejovsky & Tipton 2018, section 3).
    """
    x, codes, w, b = reml.x, reml.codes, parts.w, parts.m_inv
    n, p = x.shape
    if n > CR2_DENSE_MAX:
        return _cr2_by_size(reml, gamma, parts)
    clusters = [np.flatnonzero(codes == j) for j in range(reml.n_groups)]
    wx = x.copy()
    for j, rows in enumerate(clusters):
        wx[rows] = x[rows] - w[j] * x[rows].sum(axis=0)
    residual_maker = np.eye(n) - x @ b @ wx.T
    r = residual_maker @ reml.y
    phi = np.zeros((n, n))
    gains = []  # per cluster: B X_j' W_j A_j (p x n_j)
    for rows in clusters:
        xj, size = x[rows], len(rows)
        phi_j = np.eye(size) + gamma
        d = np.linalg.cholesky(phi_j).T
        a = d.T @ _inverse_sqrt(d @ (phi_j - xj @ b @ xj.T) @ d.T) @ d
        gains.append(b @ wx[rows].T @ a)
        phi[np.ix_(rows, rows)] = phi_j
    u = np.array([g @ r[rows] for g, rows in zip(gains, clusters, strict=True)])
    se = np.sqrt(np.sum(u**2, axis=0))
    df = np.empty(p)
    for k in range(p):
        loads = np.array(
            [g[k] @ residual_maker[rows] for g, rows in zip(gains, clusters, strict=True)]
        )
        omega = loads @ phi @ loads.T
        df[k] = np.trace(omega) ** 2 / np.sum(omega**2)
    return se, df, ""


def _cr2_by_size(
    reml: _RemlProfile, gamma: float, parts: _Parts
) -> tuple[np.ndarray, np.ndarray, str]:
    """:func:`_cr2` without its n x n or clusters x clusters matrices, for large fits.

    Clusters of one size share ``Phi_j = I + gamma J`` and its Cholesky factor, so their
    adjustments, gains and loads are computed together (stacked arrays). Cluster ``j``'s
    load on coefficient ``k`` is ``g_j' (E_j - X_j B V')`` (``g_j`` row ``k`` of its gain,
    ``E_j`` its rows of the identity, ``V = W X``), so with ``c_j = B X_j' g_j`` and the
    block-diagonal ``Phi``: ``Omega = diag(d) + L``, ``d_j = g_j' Phi_j g_j`` and
    ``L = -M C' - C M' + C S C' = Z K Z'``, ``M`` the rows ``g_j' Phi_j V_j``, ``C`` the rows
    ``c_j``, ``S = sum_j V_j' Phi_j V_j``, ``Z = [M C]`` and ``K = [[0, -I], [-I, S]]``. Then
    ``tr(Omega) = sum(d) + sum_j z_j K z_j'`` and ``sum(Omega^2) = sum(d^2) + 2 sum_j d_j
    z_j K z_j' + tr(K Z'Z K Z'Z)``: memory and time linear in the observations, the same SE
    and df as the dense form up to rounding (``tests/test_mixed_models.py``).
    """
    x, codes, b = reml.x, reml.codes, parts.m_inv
    p = x.shape[1]
    sizes = np.bincount(codes, minlength=reml.n_groups)
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    w = parts.w[codes]
    group_sums = np.zeros((reml.n_groups, p))
    np.add.at(group_sums, codes, x)
    wx = x - w[:, None] * group_sums[codes]
    r = reml.y - x @ (b @ (wx.T @ reml.y))
    s = np.zeros((p, p))
    u_parts, d_parts, m_parts, c_parts = [], [], [], []
    for size in np.unique(sizes[sizes > 0]):
        groups = np.flatnonzero(sizes == size)
        rows = order[starts[groups][:, None] + np.arange(size)]  # clusters x size
        xj, vj = x[rows], wx[rows]  # clusters x size x p
        phi = np.eye(size) + gamma
        d = np.linalg.cholesky(phi).T
        inner = d @ (phi - np.einsum("gsi,ik,gtk->gst", xj, b, xj)) @ d.T
        a = d.T @ _inverse_sqrt(inner) @ d
        gain = np.einsum("ik,gsk,gst->git", b, vj, a)  # B X_j' W_j A_j: clusters x p x size
        u_parts.append(np.einsum("gks,gs->gk", gain, r[rows]))
        s += np.einsum("gsi,st,gtk->ik", vj, phi, vj)
        weighted = np.einsum("st,gkt->gks", phi, gain)  # Phi_j g_j for every k
        d_parts.append(np.einsum("gks,gks->gk", gain, weighted))
        m_parts.append(np.einsum("gks,gsi->gki", weighted, vj))
        c_parts.append(np.einsum("ai,gsi,gks->gka", b, xj, gain))
    se = np.sqrt(np.sum(np.concatenate(u_parts) ** 2, axis=0))
    d_all, m_all, c_all = (np.concatenate(parts) for parts in (d_parts, m_parts, c_parts))
    kernel = np.block([[np.zeros((p, p)), -np.eye(p)], [-np.eye(p), s]])
    df = np.empty(p)
    for k in range(p):
        diagonal = d_all[:, k]
        z = np.hstack([m_all[:, k], c_all[:, k]])
        low_rank_diagonal = np.einsum("gi,ij,gj->g", z, kernel, z)
        kg = kernel @ (z.T @ z)
        trace = diagonal.sum() + low_rank_diagonal.sum()
        squares = (
            np.sum(diagonal**2) + 2.0 * np.sum(diagonal * low_rank_diagonal) + np.sum(kg * kg.T)
        )
        df[k] = trace**2 / squares
    return se, df, ""


def _inverse_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric inverse square root, zero eigenvalues left at zero (generalized inverse);
    of each matrix of a stack (the last two axes)."""
    values, vectors = np.linalg.eigh((matrix + np.swapaxes(matrix, -1, -2)) / 2.0)
    keep = values > 1e-12 * np.maximum(values.max(axis=-1, keepdims=True), 1e-300)
    inv = np.where(keep, 1.0 / np.sqrt(np.where(keep, values, 1.0)), 0.0)
    return (vectors * inv[..., None, :]) @ np.swapaxes(vectors, -1, -2)


# --- tables -----------------------------------------------------------------------------------


def _coefficient_table(
    terms: pd.Index, beta: np.ndarray, se: np.ndarray, df: np.ndarray, confidence: float
) -> pd.DataFrame:
    statistic = beta / se
    pvalue = 2.0 * stats.t.sf(np.abs(statistic), df)
    half = stats.t.ppf(0.5 + confidence / 2.0, df) * se
    table = pd.DataFrame(
        {
            "estimate": beta,
            "se": se,
            "df": df,
            "statistic": statistic,
            "pvalue": pvalue,
            "ci_low": beta - half,
            "ci_high": beta + half,
        },
        index=pd.Index(terms, name="term"),
    )
    return table


def _empty_fit(terms: pd.Index, n_obs: int, n_groups: int, vcov: str) -> MixedFit:
    table = pd.DataFrame(np.nan, index=pd.Index(terms, name="term"), columns=COEFFICIENT_COLUMNS)
    return MixedFit(table, n_obs, n_groups, np.nan, np.nan, np.nan, False, False, vcov, "")


def _with(fit: MixedFit, note: str) -> MixedFit:
    return MixedFit(**{**fit.__dict__, "note": note})


def _group_means(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    sums = np.bincount(codes, weights=values)
    sizes = np.bincount(codes)
    return (sums / sizes)[codes]


def _drop_aliased(design: pd.DataFrame, notes: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Drop columns that are constant (besides the intercept) or aliased with earlier ones."""
    values = design.to_numpy(float)
    keep: list[int] = []
    for k, name in enumerate(design.columns):
        if np.linalg.matrix_rank(values[:, [*keep, k]]) == len(keep) + 1:
            keep.append(k)
        else:
            notes.append(f"{name} left out: aliased with the intercept or earlier columns")
    return design.iloc[:, keep], notes
