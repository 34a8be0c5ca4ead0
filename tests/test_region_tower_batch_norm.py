"""MaskedBatchNormalization: the fused fast path and the masked path agree with tf_keras."""
import numpy as np
import tensorflow as tf
import tf_keras

from vild.modeling import region_tower


def _run(layer, inputs, mask):
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    outputs = layer(inputs, training=True, mask=mask)
    loss = tf.reduce_sum(outputs * tf.range(1.0, 1.0 + outputs.shape[-1]))
  gradients = tape.gradient(loss, [inputs] + layer.trainable_variables)
  return outputs, gradients


def _pair():
  """Our layer and tf_keras' unfused masked one, with the same settings."""
  kwargs = dict(momentum=0.9, epsilon=1e-4)
  return (region_tower.MaskedBatchNormalization(**kwargs),
          tf_keras.layers.BatchNormalization(fused=False, **kwargs))


def test_rows_all_kept_take_the_fused_kernel_with_the_same_result():
  inputs = tf.random.stateless_normal([6, 3, 3, 4], seed=[1, 2]) * 3.0 + 1.0
  mask = tf.ones([6, 3, 3], tf.bool)
  ours, reference = _pair()
  (out, grads), (ref_out, ref_grads) = _run(ours, inputs, mask), _run(reference, inputs, mask)
  assert ours.fused
  np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, rtol=1e-5, atol=1e-6)
  # The fused kernel updates the moving variance with Bessel's correction (which also shows
  # that it ran): moving = 0.9 * 1 + 0.1 * variance * n / (n - 1).
  n = 6 * 3 * 3
  np.testing.assert_allclose(ours.moving_variance,
                             0.9 + (reference.moving_variance - 0.9) * n / (n - 1), rtol=1e-5)


def test_dropped_rows_leave_the_statistics_as_in_tf_keras_masked_batch_norm():
  inputs = tf.random.stateless_normal([6, 3, 3, 4], seed=[3, 4])
  inputs = tf.concat([inputs[:4], 1000.0 * tf.ones([2, 3, 3, 4])], axis=0)  # garbage rows
  mask = tf.broadcast_to(tf.constant([True] * 4 + [False] * 2)[:, None, None], [6, 3, 3])
  ours, reference = _pair()
  (out, grads), (ref_out, ref_grads) = _run(ours, inputs, mask), _run(reference, inputs, mask)
  np.testing.assert_allclose(out[:4], ref_out[:4], rtol=1e-5, atol=1e-5)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(ours.moving_mean, reference.moving_mean, rtol=1e-6)
  np.testing.assert_allclose(ours.moving_variance, reference.moving_variance, rtol=1e-6)
  assert float(tf.reduce_max(tf.abs(ours.moving_mean))) < 1.0  # the garbage did not count


def test_rank_3_inputs_and_inference_use_the_unfused_or_moving_statistics():
  inputs = tf.random.stateless_normal([2, 5, 4], seed=[5, 6])
  mask = tf.constant([[True] * 5, [True] * 3 + [False] * 2])
  ours, reference = _pair()
  np.testing.assert_allclose(ours(inputs, training=True, mask=mask),
                             reference(inputs, training=True, mask=mask), rtol=1e-5, atol=1e-5)
  assert not ours.fused
  np.testing.assert_allclose(ours(inputs, training=False), reference(inputs, training=False),
                             rtol=1e-5, atol=1e-5)
