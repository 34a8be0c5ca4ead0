"""Seeds and spreads: a row's metric over its seeds, and the rule that judges a claim.

Training on CPU threads is not bitwise deterministic and the novel AP rests on a few
categories, so one run of a method says little: every row trains with several explicit seeds
(`BenchmarkSpec.seeds`) and is reported as the mean with its spread.

The rule. A claim compares two rows (or a row and a number) on one metric: "A - B > margin".
With n seeds each, let low = min(A) - max(B) and high = max(A) - min(B):

  holds: yes           low > margin: every seed of A beats every seed of B by the margin.
                       If A and B were the same method the seeds would be exchangeable, and
                       3 given seeds of 6 are the top 3 with probability 1 / C(6, 3) = 1/20:
                       with 3 seeds each this is an exact one-sided permutation test at 5%.
  holds: no            high <= margin: not one pair of seeds bears the claim out.
  holds: within noise  otherwise: the min-max intervals overlap the claim's line.

Against a fixed number (B a constant) the same rule reads low = min(A) - B, high = max(A) - B.
"""
import dataclasses
import math
from typing import Dict, Mapping, Optional, Sequence, Union

YES, NO, NOISE = "yes", "no", "within noise"


@dataclasses.dataclass(frozen=True)
class Spread:
  """One metric of one row over its seeds."""
  values: tuple  # per seed, in seed order

  @property
  def n(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> float:
    return sum(self.values) / len(self.values)

  @property
  def std(self) -> float:
    """Sample standard deviation (n - 1); 0 for a single value."""
    if len(self.values) < 2:
      return 0.0
    mean = self.mean
    return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (len(self.values) - 1))

  @property
  def min(self) -> float:
    return min(self.values)

  @property
  def max(self) -> float:
    return max(self.values)

  def to_dict(self) -> Dict[str, object]:
    return {"mean": self.mean, "std": self.std, "min": self.min, "max": self.max,
            "values": list(self.values)}

  def describe(self) -> str:
    """'18.1 ± 2.0' (mean ± sample std), or the value alone for one seed."""
    if self.n == 1:
      return f"{self.mean:.1f}"
    return f"{self.mean:.1f} ± {self.std:.1f}"

  def describe_range(self) -> str:
    """'18.1 [16.0–20.4]' (mean [min–max])."""
    if self.n == 1:
      return f"{self.mean:.1f}"
    return f"{self.mean:.1f} [{self.min:.1f}–{self.max:.1f}]"


def over_seeds(per_seed: Sequence[Mapping]) -> Dict:
  """Nested dicts of numbers, one per seed -> the same nesting with a Spread at each leaf.

  Keys missing in any seed are dropped (a method without masks has no 'segm')."""
  first = per_seed[0]
  out = {}
  for key, value in first.items():
    if not all(key in other for other in per_seed):
      continue
    if isinstance(value, Mapping):
      out[key] = over_seeds([other[key] for other in per_seed])
    else:
      out[key] = Spread(tuple(float(other[key]) for other in per_seed))
  return out


def judge(a: Spread, b: Union[Spread, float], margin: float = 0.0) -> str:
  """YES, NO or NOISE for the claim "a - b > margin" (module docstring)."""
  b_min, b_max = (b.min, b.max) if isinstance(b, Spread) else (b, b)
  low, high = a.min - b_max, a.max - b_min
  if low > margin:
    return YES
  if high <= margin:
    return NO
  return NOISE


def judge_at_least(a: Spread, threshold: float) -> str:
  """YES, NO or NOISE for "a >= threshold": every seed, none, or some."""
  if a.min >= threshold:
    return YES
  if a.max < threshold:
    return NO
  return NOISE


def mean_difference(a: Spread, b: Union[Spread, float]) -> float:
  return a.mean - (b.mean if isinstance(b, Spread) else b)


def to_json(tree) -> Optional[object]:
  """A tree of Spreads -> plain JSON (each Spread as mean/std/min/max/values)."""
  if isinstance(tree, Spread):
    return tree.to_dict()
  if isinstance(tree, Mapping):
    return {k: to_json(v) for k, v in tree.items()}
  return tree
