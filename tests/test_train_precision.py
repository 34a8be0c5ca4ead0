"""Precision: 'auto' follows the hardware, bfloat16 keeps the cosine logits float32-exact, and a
short CPU run under every policy stays finite and decreasing; the XLA switch."""
import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import train_toy
from tests.conftest import TINY_GIN
from vild.modeling import factory
from vild.training import strategy as strategy_lib
from vild.training import trainer as trainer_lib

DEFAULT = tf.distribute.get_strategy()


@pytest.fixture
def hardware(monkeypatch):
  """Sets what the strategy's devices look like: hardware(kind, gpus=..., cpu_flags=...)."""
  def fake(kind, gpus=(), cpu_flags=(), onednn=True):
    monkeypatch.setattr(strategy_lib, "device_type", lambda strategy: kind)
    monkeypatch.setattr(strategy_lib, "gpu_compute_capabilities", lambda: list(gpus))
    monkeypatch.setattr(strategy_lib, "cpu_bfloat16_flags", lambda: list(cpu_flags))
    monkeypatch.setattr(strategy_lib, "onednn_enabled", lambda: onednn)
  return fake


def test_auto_precision_is_bfloat16_only_where_the_hardware_has_it(hardware):
  cases = [  # (device kind, GPU capabilities, CPU flags, oneDNN) -> policy
      (("TPU", (), (), True), "mixed_bfloat16"),
      (("GPU", [(8, 0), (9, 0)], (), True), "mixed_bfloat16"),
      (("GPU", [(8, 6), (7, 5)], (), True), "float32"),  # one old GPU: no bfloat16
      (("CPU", (), ["avx512_bf16"], True), "mixed_bfloat16"),
      (("CPU", (), ["amx_bf16"], True), "mixed_bfloat16"),
      (("CPU", (), ["avx512_bf16"], False), "float32"),  # Eigen would emulate it
      (("CPU", (), (), True), "float32"),
  ]
  for (kind, gpus, flags, onednn), expected in cases:
    hardware(kind, gpus, flags, onednn)
    policy, why = strategy_lib.auto_precision(DEFAULT)
    assert policy == expected, (kind, gpus, flags, onednn, why)
    assert strategy_lib.set_precision(DEFAULT, "auto") == expected
    assert tf_keras.mixed_precision.global_policy().name == expected
    assert strategy_lib.describe_precision().startswith(f"{expected} (")
  hardware("GPU", [(7, 0)])
  assert "mixed_float16" in strategy_lib.auto_precision(DEFAULT)[1]
  assert strategy_lib.set_precision(DEFAULT, "mixed_float16") == "mixed_float16"
  optimizer = strategy_lib.with_loss_scaling(tf_keras.optimizers.SGD(0.1))
  assert isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer) and optimizer.dynamic
  hardware("TPU")
  with pytest.raises(ValueError, match="TPUs have no float16"):
    strategy_lib.set_precision(DEFAULT, "mixed_float16")
  with pytest.raises(ValueError, match="not one of"):
    strategy_lib.set_precision(DEFAULT, "float16")


def test_cpu_bfloat16_flags_come_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\n"
                     "processor\t: 1\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
  assert strategy_lib.cpu_bfloat16_flags(str(cpuinfo)) == ["avx512_bf16"]
  cpuinfo.write_text("flags\t\t: fpu sse avx2 avx512f avx512_vnni\n")  # no native bfloat16
  assert strategy_lib.cpu_bfloat16_flags(str(cpuinfo)) == []
  assert strategy_lib.cpu_bfloat16_flags(str(tmp_path / "missing")) == []


def test_jit_compile_auto_is_on_for_gpus_only(hardware):
  for kind, expected in (("CPU", False), ("GPU", True), ("TPU", False)):
    hardware(kind)
    assert strategy_lib.resolve_jit_compile(DEFAULT, "auto") is expected
    assert strategy_lib.resolve_jit_compile(DEFAULT, True) is True
    assert strategy_lib.resolve_jit_compile(DEFAULT, False) is False
  with pytest.raises(ValueError, match="ViLDTrainer.jit_compile"):
    strategy_lib.resolve_jit_compile(DEFAULT, "xla")


def _tower_and_classifier(policy, features, text):
  """The tiny model's region tower and text classifier under `policy`, built."""
  tf_keras.mixed_precision.set_global_policy(policy)
  gin.parse_config_file(TINY_GIN)
  tower = factory.build_region_tower(train_toy.EMBEDDING_DIM)
  classifier = factory.build_classifier(train_toy.EMBEDDING_DIM)
  classifier(tower(features, training=False)["embeddings"], text)
  return tower, classifier


def test_bfloat16_model_keeps_cosine_logits_float32_exact():
  """Under mixed_bfloat16 the region tower computes in bfloat16, but the embeddings are
  normalised and the cosine logits computed in float32: the logits differ from float32's by no
  more than the embeddings do, times 1 / temperature, and equal the exact cosines of the
  bfloat16 model's embeddings. A bfloat16 cosine (8 significant bits) would be off by far more
  at temperature 0.01."""
  features = tf.random.stateless_normal([2, 16, 7, 7, 32], [0, 1])
  text = tf.math.l2_normalize(tf.random.stateless_normal([6, train_toy.EMBEDDING_DIM], [0, 2]),
                              axis=-1)
  tower32, classifier32 = _tower_and_classifier("float32", features, text)
  tower16, classifier16 = _tower_and_classifier("mixed_bfloat16", features, text)
  assert tower16.compute_dtype == "bfloat16"
  for target, source in zip(tower16.weights + classifier16.weights,
                            tower32.weights + classifier32.weights):
    target.assign(source)
  embeddings32 = tower32(features, training=False)["embeddings"]
  outputs16 = tower16(features, training=False)
  embeddings16 = outputs16["embeddings"]  # normalised in float32 from a bfloat16 projection
  assert outputs16["features"].dtype == tf.bfloat16 and embeddings16.dtype == tf.float32
  logits32 = classifier32(embeddings32, text)
  logits16 = classifier16(embeddings16, text)
  assert logits16.dtype == tf.float32
  temperature = classifier16.temperature

  # |cos(a, t) - cos(b, t)| <= |a - b| for unit t: what the embeddings' rounding allows.
  difference = np.abs(logits16.numpy() - logits32.numpy()).max(axis=-1)
  allowed = np.linalg.norm(tf.cast(embeddings16, tf.float32).numpy() - embeddings32.numpy(),
                           axis=-1) / temperature
  assert (difference <= allowed * 1.01 + 1e-3).all()

  # Against the exact cosines of the bfloat16 embeddings (float64, background column dropped).
  unit16 = embeddings16.numpy().astype(np.float64)
  unit16 /= np.linalg.norm(unit16, axis=-1, keepdims=True)
  exact = np.einsum("bnd,cd->bnc", unit16, text.numpy().astype(np.float64)) / temperature
  np.testing.assert_allclose(logits16.numpy()[..., 1:], exact, atol=2e-3)
  coarse = tf.einsum("bnd,cd->bnc", tf.cast(unit16, tf.bfloat16),
                     tf.cast(text, tf.bfloat16)) / temperature
  assert np.abs(tf.cast(coarse, tf.float64).numpy() - exact).max() > 0.05


@pytest.mark.parametrize("policy,batched_nms", [
    ("float32", False), ("mixed_bfloat16", True), ("mixed_float16", False)])
def test_short_cpu_run_is_finite_and_decreasing(policy, batched_nms, tmp_path):
  """bfloat16 with the synthetic benchmark's combined-NMS proposals (whose kernel has no
  bfloat16: the model hands the proposal generator float32)."""
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(train_toy.SMALLER + [
      f"build_roi_generator.use_batched_nms = {batched_nms}",
      "build_vild_model.include_mask = False",
      "learning_rate_schedule.base_learning_rate = 0.02",
      "learning_rate_schedule.warmup_steps = 0",
      "learning_rate_schedule.decay_boundaries = ()",
      "learning_rate_schedule.total_steps = 100"])
  assert strategy_lib.set_precision(DEFAULT, policy) == policy
  trainer = trainer_lib.ViLDTrainer(
      str(tmp_path), train_toy.toy_dataset_fn(num_scenes=2), train_toy.toy_text_embeddings(),
      train_toy.toy_vocabulary(), global_batch_size=2, train_steps=12, steps_per_loop=12)
  assert trainer.model.compute_dtype == policy.replace("mixed_", "")
  assert trainer.model.trainable_variables[0].dtype == tf.float32
  history = trainer.train()
  losses = np.array(history["total_loss"])
  assert np.isfinite(losses).all() and np.isfinite(history["gradient_norm"]).all()
  assert losses[-3:].mean() < 0.8 * losses[:3].mean(), losses
  if policy == "mixed_float16":  # dynamic loss scaling, reported per step
    assert isinstance(trainer.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    assert all(scale > 0 for scale in history["loss_scale"])
