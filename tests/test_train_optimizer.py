"""The paper's schedule at every boundary, kernel-only weight decay, frozen patterns, clipping."""
import numpy as np
import pytest
import tensorflow as tf

from tests import train_toy
from tests.conftest import TINY_GIN
from vild.modeling import factory
from vild.training import optimizer as optimizer_lib
from vild.training import trainer as trainer_lib
from vild.utils import gin_config


def _rates(schedule, steps):
  return [float(schedule(s)) for s in steps]


def test_paper_step_schedule_at_every_boundary():
  schedule = optimizer_lib.learning_rate_schedule()  # Paper defaults (VILD.md).
  steps = [0, 500, 999, 1000, 1001, 161999, 162000, 170999, 171000, 179999]
  expected = [0.0032, 0.0032 + 0.5 * (0.32 - 0.0032), 0.0032 + 0.999 * (0.32 - 0.0032),
              0.32, 0.32, 0.32, 0.032, 0.032, 0.0032, 0.0032]
  np.testing.assert_allclose(_rates(schedule, steps), expected, rtol=1e-5)


def test_every_listed_boundary_decays_including_a_third():
  # The official config lists three steps but two levels; its code dropped the third.
  schedule = optimizer_lib.learning_rate_schedule(decay_boundaries=(162000, 171000, 175500))
  np.testing.assert_allclose(_rates(schedule, [175499, 175500, 179999]),
                             [0.0032, 0.00032, 0.00032], rtol=1e-5)


def test_cosine_schedule_runs_from_base_after_warmup_to_final_fraction():
  schedule = optimizer_lib.learning_rate_schedule(
      schedule="cosine", warmup_steps=100, total_steps=1100, cosine_final_fraction=0.1)
  base, final = 0.32, 0.032
  np.testing.assert_allclose(
      _rates(schedule, [0, 100, 600, 1100]),
      [0.0032, base, final + (base - final) / 2, final], rtol=1e-5)


def test_no_warmup_gives_the_plain_schedule():
  schedule = optimizer_lib.learning_rate_schedule(warmup_steps=0, decay_boundaries=(10,),
                                                  total_steps=20)
  np.testing.assert_allclose(_rates(schedule, [0, 9, 10]), [0.32, 0.32, 0.032], rtol=1e-6)
  assert optimizer_lib.learning_rate_schedule(warmup_steps=0, decay_boundaries=(),
                                              total_steps=20) == 0.32


@pytest.mark.parametrize("kwargs, message", [
    (dict(decay_boundaries=(171000, 162000)), "strictly increasing"),
    (dict(decay_boundaries=(500,)), "inside the warm-up"),
    (dict(decay_boundaries=(180000,)), "never apply"),
    (dict(schedule="linear"), "not one of"),
])
def test_bad_schedules_name_the_gin_parameter(kwargs, message):
  with pytest.raises(ValueError, match=message):
    optimizer_lib.learning_rate_schedule(**kwargs)


@pytest.fixture(scope="module")
def tiny_model():
  import gin  # pylint: disable=g-import-not-at-top
  from tests.conftest import TINY_GIN  # pylint: disable=g-import-not-at-top
  gin.parse_config_file(TINY_GIN)
  model = factory.build_vild_model(image_size=(64, 64))
  gin.clear_config()
  return model


def test_weight_decay_covers_kernels_only(tiny_model):
  variables = tiny_model.trainable_variables
  decayed = optimizer_lib.matching(variables, [optimizer_lib.KERNEL_PATTERN])
  names = {v.name for v in decayed}
  assert names and all(n.endswith("kernel:0") for n in names)
  skipped = [v.name for v in variables if v.name not in names]
  assert any("gamma" in n for n in skipped) and any("bias" in n for n in skipped)
  assert any("background_embedding" in n for n in skipped)
  expected = 4e-5 * sum(float(np.sum(v.numpy() ** 2)) / 2 for v in decayed)
  np.testing.assert_allclose(float(optimizer_lib.weight_decay_loss(variables)), expected,
                             rtol=1e-4)


def test_frozen_patterns_remove_variables_and_typos_fail(tiny_model):
  all_vars = tiny_model.trainable_variables
  kept = optimizer_lib.trainable_variables(tiny_model, frozen_patterns=["^residual_block"])
  assert 0 < len(kept) < len(all_vars)
  assert not any(v.name.startswith("residual_block") for v in kept)
  assert not any("text_embeddings" in v.name for v in tiny_model.variables)
  with pytest.raises(ValueError, match="matches no trainable variable"):
    optimizer_lib.trainable_variables(tiny_model, frozen_patterns=["^resnet_typo/"])


def test_gradient_clipping_bounds_the_global_norm():
  variable = tf.Variable([0.0, 0.0])
  optimizer = optimizer_lib.sgd_optimizer(0.1, momentum=0.0, gradient_clip_norm=1.0)
  optimizer.apply_gradients([(tf.constant([30.0, 40.0]), variable)])
  np.testing.assert_allclose(variable.numpy(), [-0.06, -0.08], rtol=1e-5)
  with pytest.raises(ValueError, match="gradient_clip_norm"):
    optimizer_lib.sgd_optimizer(0.1, gradient_clip_norm=-1.0)


def test_reference_batch_size_scales_both_rates_linearly_with_the_global_batch():
  schedule = optimizer_lib.learning_rate_schedule(reference_batch_size=256, global_batch_size=4)
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 1000, 162000)],
                             [0.0032 * 4 / 256, 0.32 * 4 / 256, 0.032 * 4 / 256], rtol=1e-5)
  unscaled = optimizer_lib.learning_rate_schedule(global_batch_size=4)  # no reference: as given
  assert float(unscaled(1000)) == pytest.approx(0.32)
  with pytest.raises(ValueError, match="reference_batch_size = 256 scales"):
    optimizer_lib.learning_rate_schedule(reference_batch_size=256)


def test_the_lvis_recipe_at_a_small_batch_trains_at_the_scaled_rate(tmp_path):
  """configs/lvis + train.global_batch_size = 2 must not keep LR 0.32 (issue 18.3)."""
  gin_config.parse(["configs/lvis/vild_text_r50.gin", TINY_GIN], finalize=False)
  trainer = trainer_lib.ViLDTrainer(
      str(tmp_path), train_toy.toy_dataset_fn(global_batch_size=2),
      train_toy.toy_text_embeddings(), train_toy.toy_vocabulary(), global_batch_size=2)
  assert trainer.learning_rate(1000) == pytest.approx(0.32 * 2 / 256)
  assert trainer.learning_rate(0) == pytest.approx(0.0032 * 2 / 256)
