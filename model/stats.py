"""The project's one noise model for comparing two evaluation rows, plus pass@k.

Every evaluation answers the same list of prompts, so two rows (e.g. T-SPIN vs continued SFT after
iteration 1) are compared paired, prompt by prompt, pooled over the seeds both have: paired_compare.
unpaired_sigma is the older, wider formula, kept only so the tests can show the paired one is narrower.
Pure Python + numpy (no torch), so it imports and runs in milliseconds.
"""

import math

import numpy as np

Z_TEST = 2.0    # |diff| > 2 sigma is called a difference (two-sided, ~95%)
Z_POWER = 0.84  # normal quantile of 0.80: the power asked of the minimum detectable difference
MDD_SIGMAS = Z_TEST + Z_POWER  # mdd = 2.84 sigma: a true difference this large is called 80% of the time


def _paired_table(a, b, min_prompts=1):
    """d[s, i] = a[s][i] - b[s][i] over the seeds both rows have, as a (n_seeds, n_prompts) array."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        raise ValueError(f"no shared seeds: A has {sorted(a)}, B has {sorted(b)}")
    lengths = {(row, s): len(x[s]) for s in seeds for row, x in (("A", a), ("B", b))}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"prompt counts differ between rows/seeds: {lengths}")
    n_prompts = lengths["A", seeds[0]]
    if n_prompts < max(2, min_prompts):  # a standard error needs at least two prompts
        raise ValueError(f"{n_prompts} prompts, need at least {max(2, min_prompts)}")
    return np.array([np.asarray(a[s], float) - np.asarray(b[s], float) for s in seeds])


def paired_compare(a, b, min_prompts=1):
    """A - B, paired by prompt and pooled over the seeds both rows have, with its standard error.

    a, b: {seed: per-prompt outcomes in [0, 1]} (greedy 0/1 or a pass rate), a[s][i] and b[s][i] the
    same prompt i. Seeds only one row has are ignored; all shared seeds must have the same length.

    d[s, i] = a[s][i] - b[s][i] is modelled as a crossed prompt x seed random-effects design
        d[s, i] = delta + u_i + v_s + e_si,
    u_i the prompt's effect, v_s the seed's (training run's), e_si the sampling noise, so that
        Var(diff) = sigma_u^2 / n_p + sigma_v^2 / n_s + sigma_e^2 / (n_p n_s).
    With the two-way ANOVA mean squares (E MS_prompt = sigma_e^2 + n_s sigma_u^2,
    E MS_seed = sigma_e^2 + n_p sigma_v^2, E MS_resid = sigma_e^2) the classic unbiased estimate is
        Var(diff) = (MS_prompt + MS_seed - MS_resid) / (n_p n_s) = se_prompts^2 + se_seeds^2, where
        se_prompts^2 = MS_prompt / (n_p n_s) = var_i(dbar_i) / n_p
    is the cluster-robust (by prompt) standard error of Miller 2024, "Adding Error Bars to Evals",
    arXiv 2411.00640, section on clustered standard errors (dbar_i = mean over seeds of d[s, i]); it
    already carries the sampling noise, and
        se_seeds^2 = max(0, MS_seed - MS_resid) / (n_p n_s) = max(0, var_s(m_s) - MS_resid / n_p) / n_s
    is the seed spread of the per-seed means m_s beyond what that sampling noise alone explains (not
    counting it twice). The clip keeps sigma >= the clustered prompt term. With one seed the seed term
    is not identifiable (reported 0) and sigma = sd_i(d_i) / sqrt(n_p), the paired prompt-level se.
    Caveat: the seed term rests on n_s - 1 degrees of freedom, so when it dominates sigma, +-2 sigma with
    2-4 seeds covers less than 95% (about 89% at 4 seeds in a simulation like the test's with the seed
    shifts dominating).
    """
    d = _paired_table(a, b, min_prompts)
    n_s, n_p = d.shape
    diff = d.mean()
    prompt_means, seed_means = d.mean(axis=0), d.mean(axis=1)
    ms_prompt = n_s * prompt_means.var(ddof=1)
    var_prompts = ms_prompt / (n_p * n_s)
    var_seeds = 0.0
    if n_s > 1:
        ms_seed = n_p * seed_means.var(ddof=1)
        resid = d - prompt_means[None, :] - seed_means[:, None] + diff
        ms_resid = (resid ** 2).sum() / ((n_p - 1) * (n_s - 1))
        var_seeds = max(0.0, ms_seed - ms_resid) / (n_p * n_s)
    sigma = math.sqrt(var_prompts + var_seeds)
    return dict(diff=float(diff), sigma=sigma, n_seeds=n_s, n_prompts=n_p,
                se_prompts=math.sqrt(var_prompts), se_seeds=math.sqrt(var_seeds),
                mdd=MDD_SIGMAS * sigma, verdict=verdict(diff, sigma))


def verdict(diff, sigma):
    return "higher" if diff > Z_TEST * sigma else "lower" if diff < -Z_TEST * sigma else "no difference"


def unpaired_sigma(a, b):
    """The formula the project used before paired_compare, kept only so the tests can show the paired
    one is narrower: sqrt(sd_seeds^2 / n_seeds + se_A^2 + se_B^2), sd_seeds the std over seeds of the
    per-seed differences in mean accuracy (0 with one seed), se_A, se_B each row's binomial standard
    error sqrt(p (1 - p) / n_prompts), root mean square over seeds. It ignores that the two rows answer
    the same prompts (their outcomes are correlated), so it is too wide."""
    seeds = sorted(a.keys() & b.keys())
    pa = np.array([np.mean(a[s]) for s in seeds])
    pb = np.array([np.mean(b[s]) for s in seeds])
    n_p = len(a[seeds[0]])
    sd_seeds = (pa - pb).std(ddof=1) if len(seeds) > 1 else 0.0
    se_a2, se_b2 = np.mean(pa * (1 - pa) / n_p), np.mean(pb * (1 - pb) / n_p)  # RMS of se = mean of se^2
    return math.sqrt(sd_seeds ** 2 / len(seeds) + se_a2 + se_b2)


def says(c):
    """One line, in points (100x): '+1.2 pts ± 1.6 (2σ), detectable ≥ 2.3: no difference'."""
    return (f"{100 * c['diff']:+.1f} pts ± {100 * Z_TEST * c['sigma']:.1f} (2σ), "
            f"detectable ≥ {100 * c['mdd']:.1f}: {c['verdict']}")


def pass_at_k(n, c, k):
    """Unbiased pass@k of Chen et al. 2021 (arXiv 2107.03374) from n samples of which c are correct:
    1 - C(n - c, k) / C(n, k), as the numerically stable product 1 - prod_{j=n-c+1}^{n} (1 - k / j)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    return 1.0 - math.prod(1.0 - k / j for j in range(n - c + 1, n + 1))
