"""Statistics over seeds: mean, standard deviation, 95% interval, and which differences hold.

`summarize` gives mean, sample std (ddof 1) and the two-sided 95% Student-t
interval of the mean. `welch` is Welch's unequal-variance t-test of two groups
of seeds, and `holm` adjusts a family of p-values (Holm-Bonferroni) so that the
family's error rate stays at the level. With 3 seeds per group only large
differences can reach p < 0.05; a difference that does not is reported as not
established, not as absent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def summarize(values: Sequence[float]) -> dict[str, float]:
  """``{"n", "mean", "std", "ci95"}``: ci95 is the half-width of the 95% t-interval."""
  x = np.asarray(values, np.float64)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f"summarize needs a non-empty 1-D list of values; got shape {x.shape}.")
  n = x.size
  std = float(x.std(ddof=1)) if n > 1 else math.nan
  ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
  return {"n": n, "mean": float(x.mean()), "std": std, "ci95": ci}


def welch(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
  """Welch's t-test of mean(a) - mean(b): ``{"diff", "t", "p"}`` (two-sided)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size < 2 or b.size < 2:
    return {"diff": float(a.mean() - b.mean()), "t": math.nan, "p": math.nan}
  if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
    p = 1.0 if a.mean() == b.mean() else 0.0
    return {"diff": float(a.mean() - b.mean()), "t": math.nan, "p": p}
  t, p = stats.ttest_ind(a, b, equal_var=False)
  return {"diff": float(a.mean() - b.mean()), "t": float(t), "p": float(p)}


def holm(p_values: Sequence[float]) -> list[float]:
  """Holm-Bonferroni adjusted p-values, in the input order (NaN stays NaN)."""
  p = np.asarray(p_values, np.float64)
  order = [i for i in np.argsort(p) if not math.isnan(p[i])]
  m = len(order)
  adjusted = np.full(p.shape, math.nan)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p[i]))
    adjusted[i] = running
  return adjusted.tolist()


def format_mean(s: dict[str, float], digits: int = 4) -> str:
  """"0.8123 ± 0.0041" (mean ± std over seeds), or the value alone for one seed."""
  if s["n"] < 2:
    return f"{s['mean']:.{digits}f}"
  return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
