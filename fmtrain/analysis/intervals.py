"""How sure we can be: means, bootstrap intervals and paired comparisons over seeds (scipy).

A configuration trained with several seeds gives one value per seed; its summary is the mean,
the standard deviation and a 95% bootstrap confidence interval of the mean. Two configurations
trained with the same seeds are compared seed by seed: the interval of the mean difference says
whether the difference is real (the interval excludes 0) or not detectable with these seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 9999
RANDOM_STATE = 0  # the intervals themselves are reproducible


@dataclass(frozen=True)
class Summary:
    """Values of one metric over seeds."""

    n: int
    mean: float
    std: float  # sample standard deviation (nan with one value)
    low: float  # 95% bootstrap interval of the mean
    high: float

    def text(self, digits: int = 4) -> str:
        if self.n == 1:
            return f"{self.mean:.{digits}f} (1 seed)"
        return (f"{self.mean:.{digits}f} ± {self.std:.{digits}f} "
                f"[{self.low:.{digits}f}, {self.high:.{digits}f}]")


@dataclass(frozen=True)
class Difference:
    """B minus A over the same seeds: the mean difference and its 95% interval."""

    n: int
    mean: float
    low: float
    high: float

    @property
    def real(self) -> bool:
        """Whether the interval excludes 0 (needs at least two seeds)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def _interval(values: np.ndarray) -> tuple[float, float]:
    if len(values) < 2 or np.all(values == values[0]):
        return float(values.mean()), float(values.mean())
    import warnings

    from scipy import stats

    # BCa corrects the percentile interval's bias and skew, which matter with a handful of
    # seeds; where it cannot be computed (too few distinct values) the percentile interval serves.
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap((values,), np.mean, confidence_level=CONFIDENCE,
                                     n_resamples=RESAMPLES, method=method, random_state=RANDOM_STATE)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high
    return float(values.mean()), float(values.mean())


def summarize(values) -> Summary:
    """Mean, standard deviation and 95% bootstrap interval of the mean of ``values``."""
    array = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(array) == 0:
        raise ValueError("no finite values to summarize")
    low, high = _interval(array)
    std = float(array.std(ddof=1)) if len(array) > 1 else float("nan")
    return Summary(len(array), float(array.mean()), std, low, high)


def paired(a: dict, b: dict) -> Difference:
    """``b - a`` over the seeds both hold (``a`` and ``b`` map seed -> value)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two configurations share no seed")
    differences = np.asarray([b[s] - a[s] for s in seeds], dtype=float)
    low, high = _interval(differences)
    return Difference(len(seeds), float(differences.mean()), low, high)


def verdict(difference: Difference, what: str, a_name: str, b_name: str, digits: int = 3) -> str:
    """A sentence a person can read: which is lower, by how much, and whether it is real."""
    interval = f"[{difference.low:+.{digits}f}, {difference.high:+.{digits}f}]"
    if difference.n < 2:
        return (f"{b_name}'s {what} differs from {a_name}'s by {difference.mean:+.{digits}f} "
                "with one seed: train with --seeds 2 or more to know whether that is real")
    if not difference.real:
        return (f"{b_name}'s {what} minus {a_name}'s: {difference.mean:+.{digits}f} {interval}: "
                f"no difference detectable with {difference.n} seeds")
    # "lower by 0.103 [0.077, 0.116]": the amount and its interval carry the same sign.
    lower = difference.mean < 0
    low, high = (-difference.high, -difference.low) if lower else (difference.low, difference.high)
    return (f"{b_name}'s {what} is {'lower' if lower else 'higher'} than {a_name}'s by "
            f"{abs(difference.mean):.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]: "
            f"a real difference ({difference.n} seeds)")
