"""PBO (CSCV) and the Deflated Sharpe Ratio on constructed sweeps with known answers.

(a) Pure noise: PBO near 0.5 (averaged over seeds) and the best variant's DSR does not reject.
(b) One planted winner among the noise: PBO near 0, and its DSR rejects.
(c) Anti-persistent variants (each split's in-sample winner is its out-of-sample loser):
    PBO exactly 1.
(d) `pbo` equals a slow oracle that slices the rows of every split, on uneven blocks, and on
    ties (duplicated and constant columns).
(e) `deflated_sharpe` equals the paper's formula evaluated with scipy, and the worked example
    of Bailey & López de Prado (2014).
(f) Invariances (column order, positive scale), input validation, JSON output, speed.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats  # type: ignore[import-untyped]

from ml4t_pipeline.sweep.overfitting import (
    DeflatedSharpe,
    PboResult,
    deflated_sharpe,
    expected_max_sharpe,
    pbo,
    probabilistic_sharpe,
    sharpe_per_bar,
)

FloatArray = npt.NDArray[np.float64]


def noise(seed: int, n_rows: int = 1000, n_variants: int = 24) -> FloatArray:
    return np.random.default_rng(seed).normal(0.0, 1.0, (n_rows, n_variants))


def dsr_of_best(returns: FloatArray) -> DeflatedSharpe:
    """The DSR a sweep report would show: the best column against all the columns' Sharpes."""
    sharpes = sharpe_per_bar(returns)
    return deflated_sharpe(returns[:, int(np.argmax(sharpes))], sharpes)


# ---------------------------------------------------------------------------------------------
# (a)-(c) constructed cases
# ---------------------------------------------------------------------------------------------


def test_pure_noise_pbo_is_near_one_half_and_dsr_does_not_reject() -> None:
    # One seed's PBO is noisy (its 252 splits share the same data); the mean of 8 is not.
    results = [pbo(noise(seed)) for seed in range(8)]
    mean_pbo = float(np.mean([r.pbo for r in results]))
    assert 0.3 < mean_pbo < 0.7
    for seed in range(8):
        assert dsr_of_best(noise(seed)).deflated_sharpe < 0.95


def test_planted_winner_has_pbo_near_zero_and_dsr_rejects() -> None:
    for seed in range(3):
        returns = noise(seed)
        returns[:, 7] += 0.3  # drift of 0.3 std per bar: Sharpe 0.3 per bar, a real edge
        result = pbo(returns)
        assert result.pbo < 0.05
        assert result.prob_oos_loss == 0.0
        assert np.mean(result.best_in_sample == 7) > 0.95
        dsr = deflated_sharpe(returns[:, 7], sharpe_per_bar(returns))
        assert dsr.deflated_sharpe > 0.95
        assert dsr.psr_zero > dsr.deflated_sharpe  # the selection correction only lowers it


def anti_persistent(n_blocks: int = 10, rows_per_block: int = 2) -> FloatArray:
    """One column per CSCV split: +0.5 on that split's in-sample blocks, -0.5 on the others.

    Each block adds a +1/-1 alternation so no column is constant. Every column sums to zero,
    and a column's two halves have mirrored block means and hence equal std, so its OOS
    Sharpe is minus its IS Sharpe: the IS ranking is the OOS ranking reversed.
    """
    combos = list(itertools.combinations(range(n_blocks), n_blocks // 2))
    wiggle = np.tile([1.0, -1.0], rows_per_block // 2)
    columns = []
    for combo in combos:
        levels = np.where(np.isin(np.arange(n_blocks), combo), 0.5, -0.5)
        columns.append(np.concatenate([level + wiggle for level in levels]))
    return np.column_stack(columns)


def test_anti_persistent_variants_have_pbo_one() -> None:
    returns = anti_persistent()
    result = pbo(returns, n_blocks=10)
    assert result.n_splits == 252
    assert result.pbo == 1.0
    assert result.prob_oos_loss == 1.0
    # The column built for split c wins split c in sample and is alone last out of sample.
    np.testing.assert_array_equal(result.best_in_sample, np.arange(252))
    np.testing.assert_array_equal(result.oos_rank_best, np.full(252, 1 / 253))
    np.testing.assert_allclose(result.oos_sharpe_best, -result.is_sharpe_best, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# (d) brute-force oracle
# ---------------------------------------------------------------------------------------------


def oracle_pbo(
    returns: FloatArray, n_blocks: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Straight from the paper: slice each split's rows and rank with scipy.

    Returns the best in-sample index, its IS Sharpe, OOS Sharpe, relative rank and logit
    per split.
    """

    def sharpe(rows: FloatArray) -> FloatArray:
        out = np.zeros(rows.shape[1])
        for j in range(rows.shape[1]):
            column = rows[:, j]
            if np.ptp(column) > 0:
                out[j] = np.mean(column) / np.std(column, ddof=1)
        return out

    blocks = np.array_split(np.arange(returns.shape[0]), n_blocks)
    n_variants = returns.shape[1]
    rows: list[list[float]] = []
    for combo in itertools.combinations(range(n_blocks), n_blocks // 2):
        is_rows = np.concatenate([blocks[b] for b in combo])
        oos_rows = np.concatenate([blocks[b] for b in range(n_blocks) if b not in combo])
        is_sharpe = sharpe(returns[is_rows])
        oos_sharpe = sharpe(returns[oos_rows])
        best = int(np.flatnonzero(is_sharpe == is_sharpe.max())[0])
        omega = stats.rankdata(oos_sharpe, method="average")[best] / (n_variants + 1)
        rows.append([best, is_sharpe[best], oos_sharpe[best], omega, math.log(omega / (1 - omega))])
    table = np.array(rows)
    return table[:, 0], table[:, 1], table[:, 2], table[:, 3], table[:, 4]


def assert_matches_oracle(returns: FloatArray, n_blocks: int) -> PboResult:
    result = pbo(returns, n_blocks=n_blocks)
    best, is_sharpe, oos_sharpe, omega, logits = oracle_pbo(returns, n_blocks)
    np.testing.assert_array_equal(result.best_in_sample, best.astype(np.int64))
    # atol: a Sharpe near 0 has a large relative rounding error, 1e-15 per bar is nothing.
    np.testing.assert_allclose(result.is_sharpe_best, is_sharpe, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.oos_sharpe_best, oos_sharpe, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.oos_rank_best, omega, rtol=1e-12)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-12)
    assert result.pbo == np.mean(logits <= 0)
    assert result.prob_oos_loss == np.mean(oos_sharpe < 0)
    return result


@pytest.mark.parametrize(
    ("n_rows", "n_variants", "n_blocks"),
    [(1003, 12, 10), (257, 7, 8), (37, 5, 6), (5, 3, 2), (13, 4, 12)],
)
def test_pbo_matches_brute_force_oracle(n_rows: int, n_variants: int, n_blocks: int) -> None:
    rng = np.random.default_rng(n_rows)
    # A drift per column and fat tails, so the ranking is not just noise and blocks differ.
    returns = rng.standard_t(4, (n_rows, n_variants)) * 0.01 + rng.normal(0, 0.002, n_variants)
    result = assert_matches_oracle(returns, n_blocks)
    assert result.n_splits == math.comb(n_blocks, n_blocks // 2)
    assert result.n_blocks == n_blocks


def test_pbo_matches_oracle_on_ties_and_constant_columns() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0.0005, 0.01, (203, 4))
    # Columns 1 and 4 are one variant run twice, 5 is flat (Sharpe 0), 6 is a constant
    # positive return (Sharpe 0 too, by the rule) and 7 repeats column 0.
    returns = np.column_stack([base, base[:, 1], np.zeros(203), np.full(203, 0.001), base[:, 0]])
    result = assert_matches_oracle(returns, 10)
    # A tie in sample goes to the lowest index: column 4 or 7 is never the pick.
    assert not np.isin(result.best_in_sample, [4, 7]).any()


def test_pbo_block_aggregates_stay_accurate_with_a_large_mean() -> None:
    # |mean| / std = 1e4: raw sums of squares would lose ~8 digits of the variance here.
    rng = np.random.default_rng(11)
    returns = 1.0 + rng.normal(0.0, 1e-4, (500, 6))
    result = pbo(returns, n_blocks=10)
    _, is_sharpe, oos_sharpe, _, _ = oracle_pbo(returns, 10)
    np.testing.assert_allclose(result.is_sharpe_best, is_sharpe, rtol=1e-9)
    np.testing.assert_allclose(result.oos_sharpe_best, oos_sharpe, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# (e) deflated Sharpe against the formula and the paper
# ---------------------------------------------------------------------------------------------


def test_deflated_sharpe_matches_hand_computation_with_scipy() -> None:
    rng = np.random.default_rng(5)
    sweep = rng.standard_t(5, (750, 40)) * 0.01 + 0.0004
    sweep[:, 3] = rng.gamma(2.0, 0.01, 750) - 0.019  # skewed, with a positive mean
    best = sweep[:, 3]
    trial_sharpes = np.array([np.mean(c) / np.std(c, ddof=1) for c in sweep.T])

    result = deflated_sharpe(best, trial_sharpes)

    t = best.size
    sr = np.mean(best) / np.std(best, ddof=1)
    g3 = stats.skew(best, bias=True)
    g4 = stats.kurtosis(best, fisher=False, bias=True)
    v = np.var(trial_sharpes, ddof=1)
    n = trial_sharpes.size
    sr0 = np.sqrt(v) * (
        (1 - np.euler_gamma) * stats.norm.ppf(1 - 1 / n)
        + np.euler_gamma * stats.norm.ppf(1 - 1 / (n * np.e))
    )
    scale = np.sqrt(t - 1) / np.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    assert result.sharpe == pytest.approx(sr, rel=1e-12)
    assert result.skewness == pytest.approx(g3, rel=1e-10)
    assert result.kurtosis == pytest.approx(g4, rel=1e-10)
    assert result.trial_sharpe_variance == pytest.approx(v, rel=1e-12)
    assert result.expected_max_sharpe == pytest.approx(sr0, rel=1e-10)
    assert result.deflated_sharpe == pytest.approx(stats.norm.cdf((sr - sr0) * scale), rel=1e-10)
    assert result.psr_zero == pytest.approx(stats.norm.cdf(sr * scale), rel=1e-10)
    assert result.n_trials == 40
    assert result.n_observations == 750
    assert result.skewness > 0.5  # the gamma column is skewed, so the moments matter

    # More trials claimed, higher bar: n_trials only moves SR0.
    more = deflated_sharpe(best, trial_sharpes, n_trials=1000)
    assert more.n_trials == 1000
    assert more.expected_max_sharpe > result.expected_max_sharpe
    assert more.deflated_sharpe < result.deflated_sharpe
    assert more.psr_zero == result.psr_zero


def test_paper_worked_example() -> None:
    # Bailey & López de Prado (2014), numerical example: annualized SR 2.5 over 5 years of
    # daily bars (T = 1250, 250 a year), skewness -3, kurtosis 10, N = 100 trials whose
    # annualized Sharpe variance is 1/2. The paper gives SR0 = 0.1132 and DSR = 0.9004.
    sr0 = expected_max_sharpe(0.5 / 250, 100)
    dsr = probabilistic_sharpe(
        2.5 / math.sqrt(250), sr0, n_observations=1250, skewness=-3.0, kurtosis=10.0
    )
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_sharpe_per_bar_columns_and_constant_rule() -> None:
    rng = np.random.default_rng(2)
    matrix = np.column_stack([rng.normal(0.1, 1.0, 50), np.full(50, 0.1), np.zeros(50)])
    np.testing.assert_allclose(
        sharpe_per_bar(matrix),
        [np.mean(matrix[:, 0]) / np.std(matrix[:, 0], ddof=1), 0.0, 0.0],
        rtol=1e-12,
    )
    assert sharpe_per_bar(matrix[:, 0]).shape == ()
    assert float(sharpe_per_bar(matrix[:, 0])) == pytest.approx(sharpe_per_bar(matrix)[0])


# ---------------------------------------------------------------------------------------------
# (f) invariances, validation, output, speed
# ---------------------------------------------------------------------------------------------


def test_permuting_columns_permutes_picks_and_keeps_pbo() -> None:
    returns = noise(21, n_rows=600, n_variants=16)
    returns[:, 2] += 0.05  # a mild edge so the picks are not all over the place
    perm = np.random.default_rng(0).permutation(16)
    base = pbo(returns)
    permuted = pbo(returns[:, perm])
    # Column k of the permuted matrix is column perm[k] of the original.
    np.testing.assert_array_equal(perm[permuted.best_in_sample], base.best_in_sample)
    np.testing.assert_array_equal(permuted.logits, base.logits)
    np.testing.assert_allclose(permuted.oos_sharpe_best, base.oos_sharpe_best, rtol=1e-12)
    assert permuted.pbo == base.pbo


def test_positive_scale_leaves_pbo_and_dsr_unchanged() -> None:
    returns = noise(8, n_rows=500, n_variants=10) * 0.01 + 0.0003
    for factor in (3.7, 1e-3):
        scaled = pbo(returns * factor)
        base = pbo(returns)
        assert scaled.pbo == base.pbo
        np.testing.assert_array_equal(scaled.best_in_sample, base.best_in_sample)
        np.testing.assert_array_equal(scaled.logits, base.logits)
        np.testing.assert_allclose(scaled.is_sharpe_best, base.is_sharpe_best, rtol=1e-12)
        assert dsr_of_best(returns * factor).deflated_sharpe == pytest.approx(
            dsr_of_best(returns).deflated_sharpe, rel=1e-12
        )


@pytest.mark.parametrize(
    ("returns", "n_blocks", "match"),
    [
        (np.zeros((100, 4)), 7, r"n_blocks must be even and >= 2, got 7"),
        (np.zeros((100, 4)), 0, r"n_blocks must be even and >= 2, got 0"),
        (np.zeros((9, 4)), 10, r"T >= n_blocks .* got T=9 < n_blocks=10"),
        (np.zeros((3, 4)), 2, r"T >= 4 .* got T=3"),
        (np.zeros((100, 1)), 10, r"at least 2 variants .* got N=1"),
        (np.zeros(100), 10, r"2-D \(T, N\) matrix, got shape \(100,\)"),
    ],
)
def test_pbo_rejects_bad_shapes(returns: FloatArray, n_blocks: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pbo(returns, n_blocks=n_blocks)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_pbo_rejects_non_finite(bad: float) -> None:
    returns = np.zeros((100, 4))
    returns[17, 2] = bad
    with pytest.raises(ValueError, match=r"returns must be finite, .* at index \(17, 2\)"):
        pbo(returns)


def test_deflated_sharpe_rejects_bad_inputs() -> None:
    good = np.random.default_rng(0).normal(0.0, 1.0, 100)
    trials = np.array([0.1, 0.0, -0.05])
    cases: list[tuple[FloatArray, FloatArray, int | None, str]] = [
        (good[:2], trials, None, r"T >= 3 observations, got T=2"),
        (good.reshape(50, 2), trials, None, r"best_returns must be 1-D"),
        (np.full(100, 0.01), trials, None, r"best_returns are all equal"),
        (np.append(good, np.nan), trials, None, r"best_returns must be finite"),
        (good, np.array([0.1, np.inf]), None, r"trial_sharpes must be finite"),
        (good, np.array([0.1]), None, r"trial_sharpes must be 1-D with >= 2 values"),
        (good, trials, 1, r"n_trials must be >= 2, got 1"),
        (good, trials, 0, r"n_trials must be >= 2, got 0"),
    ]
    for best, sharpes, n_trials, match in cases:
        with pytest.raises(ValueError, match=match):
            deflated_sharpe(best, sharpes, n_trials=n_trials)


def test_probabilistic_sharpe_rejects_a_non_positive_variance_term() -> None:
    # Kurtosis below 1 + skewness^2 is impossible for data, but the helper takes raw numbers.
    with pytest.raises(ValueError, match=r"must be > 0, got"):
        probabilistic_sharpe(0.5, 0.0, n_observations=100, skewness=3.0, kurtosis=1.0)


def test_results_are_json_friendly_and_read_only() -> None:
    returns = noise(4, n_rows=300, n_variants=8)
    result = pbo(returns, n_blocks=6)
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["pbo"] == result.pbo
    assert payload["n_splits"] == 20
    assert len(payload["logits"]) == 20
    assert all(isinstance(i, int) for i in payload["best_in_sample"])
    with pytest.raises(ValueError, match="read-only"):
        result.logits[0] = 0.0
    dsr = json.loads(json.dumps(dsr_of_best(returns).to_dict()))
    assert set(dsr) == {
        "deflated_sharpe",
        "psr_zero",
        "sharpe",
        "expected_max_sharpe",
        "n_trials",
        "trial_sharpe_variance",
        "skewness",
        "kurtosis",
        "n_observations",
    }
