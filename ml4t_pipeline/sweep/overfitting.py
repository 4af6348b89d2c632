"""Overfitting statistics for a parameter sweep: PBO by CSCV, and the Deflated Sharpe Ratio.

A sweep runs N variants (trials) of one strategy on the same bars and keeps the best. Both
statistics here ask how much of that best result is selection luck. They take plain numpy
arrays: `returns` is a (T, N) matrix of per-bar returns, one column per variant.

Sharpe ratio
    Every Sharpe ratio here is per bar and not annualized: mean / standard deviation with
    ddof=1 (`sharpe_per_bar`). A series whose values are all equal has Sharpe 0.0 by
    definition (it has no risk and, for the ranking below, no edge); this avoids ±inf and
    0/0, and is tested on the values themselves (max == min), not on a computed std, which
    rounding can leave a hair above zero for a constant series.

Probability of Backtest Overfitting (`pbo`)
    Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting",
    Journal of Computational Finance 20(4), 2017 (SSRN 2326253, 2013/2015), combinatorially
    symmetric cross-validation (CSCV). The T rows are cut into S (even) contiguous blocks of
    near-equal size (`np.array_split` sizes: the first T mod S blocks are one row longer).
    Each of the C(S, S/2) ways to pick S/2 blocks is one split: the picked blocks are the
    in-sample (IS) rows, the other S/2 blocks the out-of-sample (OOS) rows. For a split:

        n*     = argmax_n IS Sharpe_n                (ties: the lowest column index)
        rank   = rank of OOS Sharpe_{n*} among the N OOS Sharpes, ascending, 1..N
                 (ties: the average rank, so a tie group shares the mean of its positions)
        omega  = rank / (N + 1)                      (relative rank, in (0, 1))
        lambda = ln(omega / (1 - omega))             (logit; > 0 means above the OOS median)

    PBO = the fraction of splits with lambda <= 0: how often the variant picked in-sample is
    at or below the median out-of-sample. About 0.5 when the variants are pure noise (the IS
    pick is a coin flip OOS), near 0 when one variant is really better, near 1 when IS
    success predicts OOS failure.

Deflated Sharpe Ratio (`deflated_sharpe`)
    Bailey & López de Prado, "The Deflated Sharpe Ratio: Correcting for Selection Bias,
    Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 2014,
    pp. 94-107. It is the Probabilistic Sharpe Ratio (Bailey & López de Prado, "The Sharpe
    Ratio Efficient Frontier", Journal of Risk 15(2), 2012) against the Sharpe ratio one
    expects from the best of N skill-less trials:

        PSR(SR*) = Z( (SR - SR*) * sqrt(T - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR^2) )
        SR0      = sqrt(V) * ((1 - e_g) * Z^-1(1 - 1/N) + e_g * Z^-1(1 - 1/(N * e)))
        DSR      = PSR(SR0)

    with SR the per-bar Sharpe of the selected variant's T returns, g3 and g4 their skewness
    and (non-excess, normal = 3) kurtosis as population moments (central moments divided by
    T, as in the paper's estimators), V the variance (ddof=1) of the N trials' per-bar
    Sharpe ratios, e_g the Euler-Mascheroni constant, e Euler's number and Z the standard
    normal cdf. DSR is the probability that the true Sharpe exceeds SR0; 0.95 is the usual
    bar. `psr_zero` is PSR(0), the same probability against a zero benchmark (no selection
    correction).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_ArrayT = TypeVar("_ArrayT", bound=np.ndarray[Any, Any])

EULER_GAMMA = 0.57721566490153286060651209  # Euler-Mascheroni constant
_NORMAL = NormalDist()


# ---------------------------------------------------------------------------------------------
# Sharpe ratio
# ---------------------------------------------------------------------------------------------


def sharpe_per_bar(returns: npt.ArrayLike) -> FloatArray:
    """Per-bar Sharpe ratio of each column: mean / std (ddof=1), not annualized.

    Axis 0 is time: a (T, N) matrix gives N ratios, a (T,) series a 0-d array. A column whose
    values are all equal has Sharpe 0.0. Needs T >= 2 finite values.
    """
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim not in (1, 2):
        msg = f"sharpe_per_bar: returns must be 1-D or 2-D, got {values.ndim}-D"
        raise ValueError(msg)
    if values.shape[0] < 2:
        msg = f"sharpe_per_bar: need at least 2 rows for a ddof=1 std, got {values.shape[0]}"
        raise ValueError(msg)
    _require_finite("sharpe_per_bar", "returns", values)
    mean = np.mean(values, axis=0)
    std = np.std(values, axis=0, ddof=1)
    constant = np.max(values, axis=0) == np.min(values, axis=0)
    return _safe_ratio(np.asarray(mean), np.asarray(std), np.asarray(constant))


def _safe_ratio(mean: FloatArray, std: FloatArray, constant: BoolArray) -> FloatArray:
    # std == 0 with unequal values can only come from underflow (deviations ~1e-160); it gets
    # the constant rule too rather than a division by zero.
    defined = ~constant & (std > 0.0)
    out = np.zeros(np.shape(mean), dtype=np.float64)
    np.divide(mean, std, out=out, where=defined)
    return out


def _require_finite(where: str, name: str, values: FloatArray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        msg = (
            f"{where}: {name} must be finite, got {int(bad.sum())} non-finite value(s), "
            f"the first {values[first]!r} at index {first}"
        )
        raise ValueError(msg)


# ---------------------------------------------------------------------------------------------
# Probability of Backtest Overfitting (CSCV)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PboResult:
    """PBO of a sweep and, per CSCV split, what the in-sample pick did out of sample.

    The per-split arrays (length `n_splits`, in `itertools.combinations` order of the
    in-sample blocks) are read-only. `eq=False`: comparing arrays with `==` has no single
    truth value, so results compare by identity.
    """

    pbo: float  # fraction of splits whose logit is <= 0
    n_splits: int  # C(n_blocks, n_blocks / 2)
    n_blocks: int
    logits: FloatArray  # lambda = ln(omega / (1 - omega)) per split
    best_in_sample: IntArray  # n*: column index of the best in-sample Sharpe per split
    is_sharpe_best: FloatArray  # n*'s in-sample Sharpe (per bar) per split
    oos_sharpe_best: FloatArray  # n*'s out-of-sample Sharpe (per bar) per split
    oos_rank_best: FloatArray  # omega = rank / (N + 1) of n* out of sample per split
    prob_oos_loss: float  # fraction of splits where n*'s out-of-sample Sharpe is < 0
    #: every variant's in- and out-of-sample Sharpe per split, (n_splits, N): the rank scatter
    #: of the sweep page (left out of `to_dict`, which stays small)
    is_sharpe: FloatArray
    oos_sharpe: FloatArray

    def to_dict(self) -> dict[str, object]:
        """Plain floats, ints and lists, for JSON: the summary figures and the per-split lists."""
        return {
            "pbo": self.pbo,
            "prob_oos_loss": self.prob_oos_loss,
            "n_splits": self.n_splits,
            "n_blocks": self.n_blocks,
            "logits": self.logits.tolist(),
            "best_in_sample": self.best_in_sample.tolist(),
            "is_sharpe_best": self.is_sharpe_best.tolist(),
            "oos_sharpe_best": self.oos_sharpe_best.tolist(),
            "oos_rank_best": self.oos_rank_best.tolist(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class _Blocks:
    """Per-block aggregates of the returns matrix, each (n_blocks, N) except `counts`."""

    counts: FloatArray  # rows per block, (n_blocks,)
    sums: FloatArray
    means: FloatArray
    m2: FloatArray  # sum of squared deviations from the block's own mean
    lows: FloatArray  # column minimum within the block
    highs: FloatArray  # column maximum within the block


def pbo(returns: npt.ArrayLike, *, n_blocks: int = 10) -> PboResult:
    """Probability of Backtest Overfitting of a (T, N) returns matrix by CSCV.

    See the module docstring for the definition and the tie rules. `n_blocks` must be even
    and >= 2; every block needs at least one row and each half at least two (T >= n_blocks,
    and T >= 4 for n_blocks = 2). Cost: one pass over the T rows, then C(n_blocks,
    n_blocks / 2) splits computed from block aggregates.
    """
    values = _check_pbo_inputs(returns, n_blocks)
    n_variants = values.shape[1]
    blocks = _block_aggregates(values, n_blocks)
    in_sample = _split_membership(n_blocks)
    is_sharpe = _split_sharpes(blocks, in_sample)
    oos_sharpe = _split_sharpes(blocks, ~in_sample)

    # argmax returns the first maximum, which is the documented tie rule (lowest index).
    best = np.argmax(is_sharpe, axis=1).astype(np.int64)
    split = np.arange(in_sample.shape[0])
    oos_best = oos_sharpe[split, best]
    rank = _average_rank_of(oos_sharpe, oos_best)
    omega = rank / (n_variants + 1)
    logits = np.log(omega / (1.0 - omega))
    # Decided on the exact rank rather than on the float logit: rank = (N + 1) / 2 is the
    # median itself (logit 0), which the paper counts as overfit.
    overfit = 2.0 * rank <= n_variants + 1

    return PboResult(
        pbo=float(np.mean(overfit)),
        n_splits=int(in_sample.shape[0]),
        n_blocks=n_blocks,
        logits=_frozen(logits),
        best_in_sample=_frozen(best),
        is_sharpe_best=_frozen(is_sharpe[split, best]),
        oos_sharpe_best=_frozen(oos_best),
        oos_rank_best=_frozen(omega),
        prob_oos_loss=float(np.mean(oos_best < 0.0)),
        is_sharpe=_frozen(is_sharpe),
        oos_sharpe=_frozen(oos_sharpe),
    )


def _check_pbo_inputs(returns: npt.ArrayLike, n_blocks: int) -> FloatArray:
    values = np.asarray(returns, dtype=np.float64)
    if values.ndim != 2:
        msg = f"pbo: returns must be a 2-D (T, N) matrix, got shape {values.shape}"
        raise ValueError(msg)
    n_rows, n_variants = values.shape
    if n_variants < 2:
        msg = f"pbo: need at least 2 variants (columns) to rank, got N={n_variants}"
        raise ValueError(msg)
    if n_blocks < 2 or n_blocks % 2 != 0:
        msg = f"pbo: n_blocks must be even and >= 2, got {n_blocks}"
        raise ValueError(msg)
    if n_rows < n_blocks:
        msg = f"pbo: need T >= n_blocks so that every block has a row, got T={n_rows} < n_blocks={n_blocks}"
        raise ValueError(msg)
    if n_rows < 4:
        # Only reachable with n_blocks = 2: each half is one block and needs 2 rows for a std.
        msg = f"pbo: need T >= 4 so that each half has 2 rows for a std, got T={n_rows}"
        raise ValueError(msg)
    _require_finite("pbo", "returns", values)
    return values


def _block_aggregates(values: FloatArray, n_blocks: int) -> _Blocks:
    n_rows = values.shape[0]
    # np.array_split sizes: the first (T mod S) blocks get one extra row.
    base, extra = divmod(n_rows, n_blocks)
    sizes = np.full(n_blocks, base, dtype=np.int64)
    sizes[:extra] += 1
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    counts = sizes.astype(np.float64)
    sums = np.add.reduceat(values, starts, axis=0)
    means = sums / counts[:, None]
    # Squared deviations from each block's own mean, not raw sums of squares: the split
    # variance then adds non-negative terms (Chan, Golub & LeVeque's pairwise update)
    # instead of subtracting two large numbers, so it stays accurate when |mean| >> std.
    deviations = values - np.repeat(means, sizes, axis=0)
    m2 = np.add.reduceat(deviations * deviations, starts, axis=0)
    return _Blocks(
        counts=counts,
        sums=sums,
        means=means,
        m2=m2,
        lows=np.minimum.reduceat(values, starts, axis=0),
        highs=np.maximum.reduceat(values, starts, axis=0),
    )


def _split_membership(n_blocks: int) -> BoolArray:
    """(n_splits, n_blocks): True where the block is in-sample in that split."""
    combos = list(itertools.combinations(range(n_blocks), n_blocks // 2))
    member = np.zeros((len(combos), n_blocks), dtype=np.bool_)
    for row, combo in enumerate(combos):
        member[row, list(combo)] = True
    return member


def _split_sharpes(blocks: _Blocks, member: BoolArray) -> FloatArray:
    """(n_splits, N) per-bar Sharpe of every column over the rows of each split's blocks."""
    inside = member[:, :, None]
    weight = inside.astype(np.float64)
    # Sums over the block axis by broadcasting, not with a matrix product: BLAS may round a
    # column differently depending on where it sits, and identical variants (a parameter
    # that changes nothing) must tie exactly for the tie rules to apply.
    n = member.astype(np.float64) @ blocks.counts  # rows per split, exact small integers
    mean = np.sum(weight * blocks.sums, axis=1) / n[:, None]
    # Pooled sum of squared deviations: within-block m2 plus each block's between-block part
    # n_b * (mean_b - mean)^2; (n_splits, n_blocks, N) temporaries, small for a sweep.
    spread = blocks.means[None, :, :] - mean[:, None, :]
    counts = blocks.counts[None, :, None]
    pooled = np.sum(weight * (blocks.m2 + counts * spread * spread), axis=1)
    std = np.sqrt(pooled / (n - 1.0)[:, None])
    low = np.where(inside, blocks.lows[None, :, :], np.inf).min(axis=1)
    high = np.where(inside, blocks.highs[None, :, :], -np.inf).max(axis=1)
    return _safe_ratio(mean, std, low == high)


def _average_rank_of(table: FloatArray, picked: FloatArray) -> FloatArray:
    """Ascending 1-based rank of picked[s] among table[s, :], ties getting their average rank."""
    below = np.sum(table < picked[:, None], axis=1)
    tied = np.sum(table == picked[:, None], axis=1)  # includes the picked column itself
    return below + (tied + 1) / 2.0


def _frozen(array: _ArrayT) -> _ArrayT:
    # The result dataclass is frozen; read-only arrays keep its per-split data frozen too.
    array.flags.writeable = False
    return array


# ---------------------------------------------------------------------------------------------
# Deflated Sharpe Ratio
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DeflatedSharpe:
    """DSR of a selected variant, with the inputs it was computed from (all per bar)."""

    deflated_sharpe: float  # PSR against expected_max_sharpe: P(true SR > SR0)
    psr_zero: float  # PSR against 0: P(true SR > 0), no selection correction
    sharpe: float  # per-bar Sharpe of the selected variant
    expected_max_sharpe: float  # SR0, per bar
    n_trials: int  # N used in SR0
    trial_sharpe_variance: float  # V, variance (ddof=1) of the trials' per-bar Sharpes
    skewness: float  # population skewness of the selected returns
    kurtosis: float  # population kurtosis, non-excess (normal = 3)
    n_observations: int  # T

    def to_dict(self) -> dict[str, object]:
        """Plain floats and ints, for JSON."""
        return {
            "deflated_sharpe": self.deflated_sharpe,
            "psr_zero": self.psr_zero,
            "sharpe": self.sharpe,
            "expected_max_sharpe": self.expected_max_sharpe,
            "n_trials": self.n_trials,
            "trial_sharpe_variance": self.trial_sharpe_variance,
            "skewness": self.skewness,
            "kurtosis": self.kurtosis,
            "n_observations": self.n_observations,
        }


def deflated_sharpe(
    best_returns: npt.ArrayLike,
    trial_sharpes: npt.ArrayLike,
    *,
    n_trials: int | None = None,
) -> DeflatedSharpe:
    """Deflated Sharpe Ratio of the selected variant's per-bar returns.

    `trial_sharpes` are the per-bar Sharpe ratios of all the trials, the selected one
    included (for example `sharpe_per_bar(returns)` of the sweep's matrix); their variance is
    V. `n_trials` overrides N (default: len(trial_sharpes)), for when the trials are fewer
    independent bets than columns. Needs T >= 3 finite, not all equal, returns, at least 2
    finite trial Sharpes, and N >= 2.
    """
    values = np.asarray(best_returns, dtype=np.float64)
    trials = np.asarray(trial_sharpes, dtype=np.float64)
    n_obs, n = _check_dsr_inputs(values, trials, n_trials)

    sharpe = float(sharpe_per_bar(values))
    skewness, kurtosis = _population_shape(values)
    variance = float(np.var(trials, ddof=1))
    sr0 = expected_max_sharpe(variance, n)
    return DeflatedSharpe(
        deflated_sharpe=probabilistic_sharpe(
            sharpe, sr0, n_observations=n_obs, skewness=skewness, kurtosis=kurtosis
        ),
        psr_zero=probabilistic_sharpe(
            sharpe, 0.0, n_observations=n_obs, skewness=skewness, kurtosis=kurtosis
        ),
        sharpe=sharpe,
        expected_max_sharpe=sr0,
        n_trials=n,
        trial_sharpe_variance=variance,
        skewness=skewness,
        kurtosis=kurtosis,
        n_observations=n_obs,
    )


def _check_dsr_inputs(
    values: FloatArray, trials: FloatArray, n_trials: int | None
) -> tuple[int, int]:
    if values.ndim != 1:
        msg = f"deflated_sharpe: best_returns must be 1-D, got shape {values.shape}"
        raise ValueError(msg)
    if values.size < 3:
        msg = f"deflated_sharpe: best_returns needs T >= 3 observations, got T={values.size}"
        raise ValueError(msg)
    _require_finite("deflated_sharpe", "best_returns", values)
    if np.max(values) == np.min(values):
        # Skewness and kurtosis are 0/0 for a constant series; there is nothing to test.
        msg = f"deflated_sharpe: best_returns are all equal ({values[0]!r}), skewness and kurtosis are undefined"
        raise ValueError(msg)
    if trials.ndim != 1 or trials.size < 2:
        msg = f"deflated_sharpe: trial_sharpes must be 1-D with >= 2 values for a variance, got shape {trials.shape}"
        raise ValueError(msg)
    _require_finite("deflated_sharpe", "trial_sharpes", trials)
    n = trials.size if n_trials is None else n_trials
    if n < 2:
        # At N = 1 there is no selection, and Z^-1(1 - 1/N) = Z^-1(0) = -inf.
        msg = f"deflated_sharpe: n_trials must be >= 2, got {n}"
        raise ValueError(msg)
    return int(values.size), int(n)


def _population_shape(values: FloatArray) -> tuple[float, float]:
    """Skewness and non-excess kurtosis from central moments divided by T (not T - 1)."""
    deviations = values - np.mean(values)
    m2 = float(np.mean(deviations**2))
    m3 = float(np.mean(deviations**3))
    m4 = float(np.mean(deviations**4))
    return m3 / m2**1.5, m4 / m2**2


def expected_max_sharpe(trial_sharpe_variance: float, n_trials: int) -> float:
    """SR0: the expected maximum of `n_trials` skill-less Sharpe ratios with that variance.

    The paper's approximation of E[max] of N iid normals (a Gumbel limit blended by the
    Euler-Mascheroni constant), scaled by the trials' Sharpe standard deviation.
    """
    if n_trials < 2:
        msg = f"expected_max_sharpe: n_trials must be >= 2, got {n_trials}"
        raise ValueError(msg)
    if not (math.isfinite(trial_sharpe_variance) and trial_sharpe_variance >= 0.0):
        msg = f"expected_max_sharpe: trial_sharpe_variance must be finite and >= 0, got {trial_sharpe_variance!r}"
        raise ValueError(msg)
    gumbel = (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials) + EULER_GAMMA * (
        _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    )
    return math.sqrt(trial_sharpe_variance) * gumbel


def probabilistic_sharpe(
    sharpe: float,
    benchmark: float,
    *,
    n_observations: int,
    skewness: float,
    kurtosis: float,
) -> float:
    """PSR: P(true Sharpe > benchmark) given a per-bar Sharpe from T non-normal returns.

    `kurtosis` is non-excess (normal = 3). Raises if the variance term
    1 - skewness * SR + (kurtosis - 1) / 4 * SR^2 is not positive (it is >= 0 for any real
    distribution, and 0 only for a two-point one) or if T < 2.
    """
    if n_observations < 2:
        msg = f"probabilistic_sharpe: n_observations must be >= 2, got {n_observations}"
        raise ValueError(msg)
    spread = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if not spread > 0.0:
        msg = (
            "probabilistic_sharpe: 1 - skewness * SR + (kurtosis - 1) / 4 * SR^2 must be > 0, "
            f"got {spread!r} (SR={sharpe!r}, skewness={skewness!r}, kurtosis={kurtosis!r})"
        )
        raise ValueError(msg)
    z = (sharpe - benchmark) * math.sqrt(n_observations - 1) / math.sqrt(spread)
    return _NORMAL.cdf(z)
