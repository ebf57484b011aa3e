"""The statistics behind the matrix analyses, each a pure function of arrays returning a row with a `note` that
says why a figure is NaN: Pearson/Spearman (scipy), repeated-measures correlation (Bakdash & Marusich: x and y
centred within each group, df = N - groups - 1, Fisher-z CI with se 1/sqrt(df - 1); it equals the partial
correlation in OLS y ~ x + C(group)), a linear mixed model with a random intercept per group (statsmodels MixedLM,
REML) and OLS on bits per weight (statsmodels)."""
from __future__ import annotations

import math
import warnings

import numpy as np

from quantscreen.verdicts.matrix_rows import CorrelationStats, MixedEffectsStats, OlsStats, RepeatedMeasuresStats

MIN_POINTS = 3  # a correlation over fewer points is not reported (Pearson's p needs n >= 3)
NAN = float("nan")


def correlation(x, y) -> CorrelationStats:
    """Pearson and Spearman with their p-values (scipy); NaN with a reason when undefined."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    out: CorrelationStats = {"n": int(x.size), "pearson_r": NAN, "pearson_p": NAN, "spearman_rho": NAN,
                             "spearman_p": NAN, "note": ""}
    if x.size < MIN_POINTS:
        out["note"] = f"fewer than {MIN_POINTS} points"
    elif np.ptp(x) == 0 or np.ptp(y) == 0:
        out["note"] = "a metric is constant over these cells"
    else:
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
        out.update(pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue), spearman_rho=float(sr.statistic),
                   spearman_p=float(sr.pvalue))
    return out


def repeated_measures(x, y, groups) -> RepeatedMeasuresStats:
    """Repeated-measures correlation: the common within-group slope's correlation, df = N - k - 1."""
    from scipy import stats

    x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups, object)
    keep = np.ones(x.size, bool)
    for g in set(groups.tolist()):  # a group with one point has no within-group variation
        if (groups == g).sum() < 2:
            keep &= groups != g
    x, y, groups = x[keep], y[keep], groups[keep]
    k = len(set(groups.tolist()))
    out: RepeatedMeasuresStats = {"n": int(x.size), "n_models": k, "df": int(x.size - k - 1), "r": NAN, "p": NAN,
                                  "ci_low": NAN, "ci_high": NAN, "note": ""}
    if k < 2 or out["df"] < 2:
        out["note"] = "needs at least 2 models with 2+ cells and N - models - 1 >= 2"
        return out
    xc, yc = x.copy(), y.copy()
    for g in set(groups.tolist()):
        sel = groups == g
        xc[sel] -= x[sel].mean()
        yc[sel] -= y[sel].mean()
    sxx, syy = float((xc ** 2).sum()), float((yc ** 2).sum())
    if sxx == 0 or syy == 0:
        out["note"] = "a metric does not vary within any model"
        return out
    r = float((xc * yc).sum() / math.sqrt(sxx * syy))
    df = out["df"]
    t_stat = r * math.sqrt(df / max(1e-300, 1 - r * r))
    z, se = math.atanh(max(-0.999999, min(0.999999, r))), 1 / math.sqrt(df - 1)
    crit = stats.norm.ppf(0.975)
    out.update(r=r, p=float(2 * stats.t.sf(abs(t_stat), df)), ci_low=math.tanh(z - crit * se),
               ci_high=math.tanh(z + crit * se))
    return out


def mixed_effects(x, y, groups) -> MixedEffectsStats:
    """y ~ x with a random intercept per group (statsmodels MixedLM, REML); the slope, its p and 95% CI."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    x, y = np.asarray(x, float), np.asarray(y, float)
    k = len(set(groups))
    out: MixedEffectsStats = {"n": int(x.size), "n_models": k, "slope": NAN, "slope_se": NAN, "p": NAN, "ci_low": NAN,
                              "ci_high": NAN, "intercept": NAN, "group_variance": NAN, "converged": False, "note": ""}
    if k < 2 or x.size < k + 2 or np.ptp(x) == 0:
        out["note"] = "needs at least 2 models, models + 2 cells and a varying quality delta"
        return out
    exog = np.column_stack([np.ones_like(x), x])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = MixedLM(y, exog, groups=np.asarray(groups, object)).fit(reml=True)
        except (np.linalg.LinAlgError, ValueError) as exc:
            out["note"] = f"did not fit: {exc}"
            return out
    ci = fit.conf_int()
    out.update(slope=float(fit.fe_params[1]), slope_se=float(fit.bse_fe[1]), p=float(fit.pvalues[1]),
               ci_low=float(ci[1][0]), ci_high=float(ci[1][1]), intercept=float(fit.fe_params[0]),
               group_variance=float(fit.cov_re[0][0]) if np.ndim(fit.cov_re) else float(fit.cov_re),
               converged=bool(fit.converged))
    notes = sorted({str(w.message).split("\n")[0] for w in caught})
    out["note"] = " | ".join(notes)
    return out


def ols_on_bpw(bpw, y) -> OlsStats:
    """OLS y = a + b * bpw (statsmodels): slope, intercept, R², the slope's p."""
    import statsmodels.api as sm

    bpw, y = np.asarray(bpw, float), np.asarray(y, float)
    out: OlsStats = {"n": int(bpw.size), "slope": NAN, "intercept": NAN, "r_squared": NAN, "p": NAN, "note": ""}
    if bpw.size < MIN_POINTS or np.ptp(bpw) == 0:
        out["note"] = f"needs {MIN_POINTS}+ cells with known, differing bits per weight"
        return out
    if np.ptp(y) == 0:
        out.update(slope=0.0, intercept=float(y[0]), note="the metric does not move with bits per weight here")
        return out
    fit = sm.OLS(y, sm.add_constant(bpw)).fit()
    out.update(slope=float(fit.params[1]), intercept=float(fit.params[0]), r_squared=float(fit.rsquared),
               p=float(fit.pvalues[1]))
    return out
