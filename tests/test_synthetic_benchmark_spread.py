"""Seeds and spreads: the statistics of a row and the rule that judges a claim."""
import itertools
import math

import pytest

from vild.synthetic_benchmark import spread


def test_spread_statistics_are_mean_sample_std_and_range():
  values = spread.Spread((14.6, 13.2, 17.0))
  assert values.n == 3 and values.mean == pytest.approx(14.9333, abs=1e-4)
  assert values.std == pytest.approx(1.9218, abs=1e-4)  # n - 1 in the denominator
  assert (values.min, values.max) == (13.2, 17.0)
  assert values.describe() == "14.9 ± 1.9"
  assert values.describe_range() == "14.9 [13.2–17.0]"
  assert spread.Spread((3.0,)).std == 0.0 and spread.Spread((3.0,)).describe() == "3.0"


def test_over_seeds_aggregates_every_leaf_and_drops_keys_a_seed_lacks():
  per_seed = [{"segm": {"AP": 1.0}, "bbox": {"AP": 2.0}}, {"segm": {"AP": 3.0}}]
  tree = spread.over_seeds(per_seed)
  assert set(tree) == {"segm"} and tree["segm"]["AP"].values == (1.0, 3.0)
  assert spread.to_json(tree)["segm"]["AP"]["mean"] == 2.0


@pytest.mark.parametrize("a, b, margin, expected", [
    ((20, 21, 22), (10, 11, 12), 0, spread.YES),        # separated
    ((20, 21, 22), (10, 11, 12), 8, spread.NOISE),      # low 20 - 12 = 8 is not > 8
    ((20, 21, 22), (10, 11, 12), 12, spread.NO),        # 22 - 10 = 12 <= 12
    ((10, 15, 20), (12, 13, 14), 0, spread.NOISE),      # intervals overlap
    ((10, 11, 12), (20, 21, 22), 0, spread.NO),         # reversed
    ((10, 11, 12), (11.5, 11.5, 11.5), -1, spread.NOISE),
    ((10, 11, 12), (8.0,), -1, spread.YES),
])
def test_judge_needs_every_seed_pair_past_the_margin(a, b, margin, expected):
  assert spread.judge(spread.Spread(a), spread.Spread(b), margin) == expected


def test_judge_against_a_number_and_at_least():
  assert spread.judge(spread.Spread((6, 7, 8)), 5.0) == spread.YES
  assert spread.judge_at_least(spread.Spread((5, 7, 8)), 5.0) == spread.YES
  assert spread.judge_at_least(spread.Spread((4, 7, 8)), 5.0) == spread.NOISE
  assert spread.judge_at_least(spread.Spread((1, 2, 3)), 5.0) == spread.NO


def test_the_rule_is_a_one_sided_permutation_test_at_5_percent_for_3_seeds_each():
  # Under exchangeability every split of 6 values into two groups of 3 is equally likely;
  # "yes" happens for exactly one of the C(6, 3) = 20 splits.
  values = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
  splits = list(itertools.combinations(range(6), 3))
  yes = sum(spread.judge(spread.Spread(tuple(values[i] for i in a)),
                         spread.Spread(tuple(values[i] for i in range(6) if i not in a)))
            == spread.YES for a in splits)
  assert len(splits) == math.comb(6, 3) == 20 and yes == 1
