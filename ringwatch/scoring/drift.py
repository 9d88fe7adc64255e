"""Drift of the score distribution and of the alert rate against a baseline.

- Score drift: a two-sample Kolmogorov-Smirnov test (SciPy) between the risk scores of the
  latest scoring run and those of a baseline run (the earliest kept, by default). The statistic
  is the largest gap between the two cumulative distributions; a small p-value with a
  statistic above `ks_threshold` means the population's risk has moved.
- Alert-rate drift: alerts raised in the last day over the baseline's mean per day; above
  `rate_threshold` (or below 1 / `rate_threshold`) it is flagged.

Either kind of drift asks for a look: a new fraud wave, a broken feed, or a model that no
longer fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import ks_2samp


@dataclass(frozen=True)
class Drift:
    ks_statistic: float
    ks_p_value: float
    alert_rate_ratio: float
    alerts_last_day: int
    baseline_alerts_per_day: float
    baseline_size: int
    current_size: int
    score_drift: bool
    alert_rate_drift: bool

    @property
    def drifted(self) -> bool:
        return self.score_drift or self.alert_rate_drift


def measure_drift(
    baseline_scores: Sequence[float],
    current_scores: Sequence[float],
    *,
    alerts_last_day: int,
    baseline_alerts_per_day: float,
    ks_threshold: float = 0.1,
    p_threshold: float = 0.01,
    rate_threshold: float = 2.0,
) -> Drift:
    if baseline_scores and current_scores:
        result = ks_2samp(baseline_scores, current_scores)
        statistic, p_value = float(result.statistic), float(result.pvalue)
    else:
        statistic, p_value = 0.0, 1.0
    if baseline_alerts_per_day > 0:
        ratio = alerts_last_day / baseline_alerts_per_day
    else:
        ratio = 1.0 if alerts_last_day == 0 else float(alerts_last_day)
    return Drift(
        ks_statistic=statistic,
        ks_p_value=p_value,
        alert_rate_ratio=ratio,
        alerts_last_day=alerts_last_day,
        baseline_alerts_per_day=baseline_alerts_per_day,
        baseline_size=len(baseline_scores),
        current_size=len(current_scores),
        score_drift=statistic > ks_threshold and p_value < p_threshold,
        alert_rate_drift=ratio > rate_threshold or (0 < ratio < 1 / rate_threshold),
    )
