"""The ViLD region tower: RoI features -> region features and L2-normalised region embeddings.

Paper: 4 x (conv3x3 256 + BN + ReLU), 2 x (FC 1024 + BN + ReLU), a linear projection to the
teacher's embedding dimension D, then L2 normalisation. The tower's FC features also feed the
class-agnostic box regressor; the embeddings feed the text classifier and the distillation loss.

Batch normalisation here takes a per-RoI validity mask: padded distillation RoIs (coordinates
-1) are excluded from the batch statistics, so they change nothing, not even through BN.
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras


@tf_keras.utils.register_keras_serializable(package="vild")
class MaskedBatchNormalization(tf_keras.layers.BatchNormalization):
  """Batch normalisation whose training statistics leave out the rows a mask drops.

  tf_keras honours a mask only on its unfused path, which on CPU costs about four times the
  fused kernel (benchmarks/, row 1). Nearly always every RoI is real, so when the mask keeps
  every row the layer runs the fused kernel (the same statistics; tf_keras' fused kernel
  also updates the moving variance with Bessel's correction, a relative 1/(n-1)), and the
  masked unfused path only when some row is dropped. Sync BN and rank-3 inputs are unfused
  in tf_keras anyway and always take the masked path.
  """

  def call(self, inputs, training=None, mask=None):
    if not self.fused:
      return super().call(inputs, training=training, mask=mask)
    if mask is None or training is False:  # moving statistics: the mask changes nothing
      return super().call(inputs, training=training)
    return tf.cond(tf.reduce_all(mask),
                   lambda: super(MaskedBatchNormalization, self).call(inputs, training=training),
                   lambda: self._unfused_call(inputs, training, mask))

  def _unfused_call(self, inputs, training, mask):
    self.fused = False  # tf_keras chooses its path from this attribute when it traces
    try:
      return super().call(inputs, training=training, mask=mask)
    finally:
      self.fused = True


def _batch_norm(use_sync_bn: bool, momentum: float, epsilon: float, name: str):
  return MaskedBatchNormalization(momentum=momentum, epsilon=epsilon,
                                  synchronized=use_sync_bn, name=name)


@tf_keras.utils.register_keras_serializable(package="vild")
class RegionTower(tf_keras.layers.Layer):
  """Convs + FCs + projection + L2 norm over RoI features.

  Call: `tower(roi_features, valid_mask=None, training=None)` with roi_features
  [B, N, h, w, c] and valid_mask [B, N] bool (None = all valid). Returns a dict:
    'features':   [B, N, fc_dims] (or flattened conv features when num_fcs == 0)
    'embeddings': [B, N, embedding_dim], unit L2 norm.
  """

  def __init__(self,
               embedding_dim: int,
               num_convs: int = 4,
               conv_filters: int = 256,
               num_fcs: int = 2,
               fc_dims: int = 1024,
               use_sync_bn: bool = False,
               norm_momentum: float = 0.997,
               norm_epsilon: float = 1e-4,
               **kwargs):
    super().__init__(**kwargs)
    if embedding_dim <= 0:
      raise ValueError(f"RegionTower: embedding_dim must be positive, got {embedding_dim}.")
    self._config = dict(embedding_dim=embedding_dim, num_convs=num_convs,
                        conv_filters=conv_filters, num_fcs=num_fcs, fc_dims=fc_dims,
                        use_sync_bn=use_sync_bn, norm_momentum=norm_momentum,
                        norm_epsilon=norm_epsilon)
    bn = lambda name: _batch_norm(use_sync_bn, norm_momentum, norm_epsilon, name)  # noqa: E731
    self._convs = [
        tf_keras.layers.Conv2D(
            conv_filters, 3, padding="same", use_bias=False,
            kernel_initializer=tf_keras.initializers.VarianceScaling(
                scale=2.0, mode="fan_out", distribution="untruncated_normal"),
            name=f"conv_{i}") for i in range(num_convs)]
    self._conv_norms = [bn(f"conv_{i}_bn") for i in range(num_convs)]
    self._fcs = [
        tf_keras.layers.Dense(
            fc_dims, use_bias=False,
            kernel_initializer=tf_keras.initializers.VarianceScaling(
                scale=1 / 3.0, mode="fan_out", distribution="uniform"),
            name=f"fc_{i}") for i in range(num_fcs)]
    self._fc_norms = [bn(f"fc_{i}_bn") for i in range(num_fcs)]
    self._projection = tf_keras.layers.Dense(embedding_dim, name="project_to_embedding")

  @property
  def embedding_dim(self) -> int:
    return self._config["embedding_dim"]

  @property
  def projection(self) -> tf_keras.layers.Layer:
    """The linear projection from the FC features to the embedding space."""
    return self._projection

  def call(self, roi_features: tf.Tensor, valid_mask: Optional[tf.Tensor] = None,
           training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    shape = tf.shape(roi_features)
    batch_size, num_rois = shape[0], shape[1]
    _, _, height, width, channels = roi_features.get_shape().as_list()
    if valid_mask is None:
      valid_mask = tf.ones([batch_size, num_rois], tf.bool)

    net = tf.reshape(roi_features, [-1, height, width, channels])
    # [B * N, h, w]: the BN statistics are over valid RoIs only.
    conv_mask = tf.broadcast_to(tf.reshape(valid_mask, [-1, 1, 1]), tf.shape(net)[:3])
    for conv, norm in zip(self._convs, self._conv_norms):
      net = tf.nn.relu(norm(conv(net), training=training, mask=conv_mask))

    net = tf.reshape(net, [batch_size, num_rois, height * width * net.shape[-1]])
    for fc, norm in zip(self._fcs, self._fc_norms):
      net = tf.nn.relu(norm(fc(net), training=training, mask=valid_mask))

    embeddings = tf.math.l2_normalize(
        tf.cast(self._projection(net), tf.float32), axis=-1, epsilon=1e-12)
    return {"features": net, "embeddings": embeddings}

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), **self._config}
