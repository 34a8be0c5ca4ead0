"""The ViLD model on a tiny config: outputs, gradients, padding, vocabularies, variables."""
import gin
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests.conftest import TINY_GIN
from vild import losses
from vild.data import toy
from vild.modeling import factory
from vild.modeling import learned_classifier
from vild.modeling import region_tower
from vild.modeling import text_classifier
from vild.training import train_step

SIZE = (128, 128)
DIM = 32
NUM_CLASSES = len(toy.TOY_CATEGORIES)  # 6
NUM_DISTILL = 5
BASE_MASK = np.array([True, True, True, True, False, False])


def build_tiny(distillation):
  gin.clear_config()
  gin.parse_config_file(TINY_GIN)
  gin.parse_config([f"build_vild_model.distillation = '{distillation}'"])
  model = factory.build_vild_model(image_size=SIZE)
  model.set_text_embeddings(np.random.default_rng(0).normal(size=(NUM_CLASSES, DIM)),
                            base_mask=BASE_MASK)
  gin.clear_config()
  return model


@pytest.fixture(scope="module")
def models():
  return {mode: build_tiny(mode) for mode in ("none", "shared", "separate")}


@pytest.fixture(scope="module")
def batch():
  return toy.toy_batch([0, 1], SIZE, num_distill_rois=NUM_DISTILL, embedding_dim=DIM)


def training_outputs(model, images, labels):
  return train_step.forward(model, images, labels, training=True)


@pytest.mark.parametrize("mode", ["none", "shared", "separate"])
def test_training_output_shapes(models, batch, mode):
  images, labels = batch
  out = training_outputs(models[mode], images, labels)
  assert out["class_outputs"].shape == (2, 64, 1 + NUM_CLASSES)
  assert out["box_outputs"].shape == (2, 64, 4)
  assert out["class_targets"].shape == (2, 64)
  assert out["region_embeddings"].shape == (2, 64, DIM)
  assert out["mask_outputs"].shape == (2, 16, 28, 28)
  assert out["mask_targets"].shape == (2, 16, 28, 28)
  assert ("distill_region_embeddings" in out) == (mode != "none")
  if mode != "none":
    assert out["distill_region_embeddings"].shape == (2, NUM_DISTILL, DIM)
  np.testing.assert_allclose(tf.norm(out["region_embeddings"], axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("mode", ["none", "shared", "separate"])
def test_inference_output_shapes(models, batch, mode):
  images, labels = batch
  out = models[mode](images, labels["image_info"][:, 1, :], training=False)
  k = 50
  assert out["detection_boxes"].shape == (2, k, 4)
  assert out["detection_scores"].shape == (2, k)
  assert out["detection_classes"].shape == (2, k)
  assert out["num_detections"].shape == (2,)
  assert out["detection_class_scores"].shape == (2, k, NUM_CLASSES)
  assert out["detection_region_embeddings"].shape == (2, k, DIM)
  assert out["detection_masks"].shape == (2, k, 28, 28)
  assert ("detection_image_embeddings" in out) == (mode == "separate")
  n = int(out["num_detections"][0])
  assert n > 0
  np.testing.assert_allclose(tf.norm(out["detection_region_embeddings"][0, :n], axis=-1), 1.0,
                             rtol=1e-5)
  # The score of a detection is its class's entry in its RoI's score vector.
  classes = out["detection_classes"][0, :n].numpy() - 1
  np.testing.assert_allclose(
      out["detection_class_scores"][0, :n].numpy()[np.arange(n), classes],
      out["detection_scores"][0, :n], rtol=1e-6)


def test_ensemble_model_can_score_with_the_text_branch_only(models, batch):
  images, labels = batch
  model = models["separate"]
  out = model(images, labels["image_info"][:, 1, :], use_ensemble=False, training=False)
  n = int(out["num_detections"][0])
  region = out["detection_region_embeddings"][:1, :n]
  logits = model.classifier(region)
  np.testing.assert_allclose(out["detection_class_scores"][:1, :n],
                             tf.nn.softmax(logits)[..., 1:], rtol=1e-5, atol=1e-7)
  assert out["detection_image_embeddings"].shape == (2, 50, DIM)


def test_vild_text_plus_clip_fuses_the_teachers_scores_of_each_proposal(models, batch):
  images, labels = batch
  model = models["none"]
  image_shape = labels["image_info"][:, 1, :]
  features, first = model.propose(images, image_shape, training=False)
  proposals = first["proposals"]
  teacher = tf.math.l2_normalize(tf.random.stateless_normal(
      [*proposals.shape[:2], DIM], seed=[1, 2]), axis=-1)
  out = model.detect_with_teacher(features, proposals, image_shape, teacher)
  n = int(out["num_detections"][0])
  assert n > 0
  kept = out["detection_roi_indices"][0, :n]
  np.testing.assert_allclose(out["detection_teacher_embeddings"][0, :n],
                             tf.gather(teacher[0], kept), atol=1e-7)
  # Per kept RoI: text branch^lambda * teacher^(1 - lambda) on base classes, the reverse on
  # novel ones (ViLD-ensemble's rule with the teacher as the image branch), from scratch.
  text_logits = model.classifier(out["detection_region_embeddings"][:1, :n]).numpy()[0]
  matrix = model.classifier.resolve_text_embeddings(None).numpy()
  teacher_logits = out["detection_teacher_embeddings"][0, :n].numpy() @ matrix.T / 0.01
  def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  weight = np.where(BASE_MASK, 2 / 3, 1 / 3)
  expected = softmax(text_logits)[:, 1:] ** weight * softmax(teacher_logits) ** (1 - weight)
  np.testing.assert_allclose(out["detection_class_scores"][0, :n], expected, rtol=2e-4,
                             atol=1e-6)


def test_gradients_reach_background_embedding_and_never_text_embeddings(models, batch):
  model = models["shared"]
  images, labels = batch
  text = tf.Variable(np.random.default_rng(1).normal(size=(NUM_CLASSES, DIM)), dtype=tf.float32)
  with tf.GradientTape() as tape:
    terms = train_step.compute_losses(model, losses.ViLDLoss(), images, labels,
                                      text_embeddings=text)
  background = model.classifier.background_embedding
  grad_background, grad_text = tape.gradient(terms["total_loss"], [background, text])
  assert grad_text is None
  assert float(tf.norm(grad_background)) > 0.0
  names = [w.name for w in model.weights]
  assert not any("text_embeddings" in n for n in names)
  assert any("background_embedding" in n for n in names)


def loss_and_gradients(model, images, labels):
  # toy_batch carries per-image sampling seeds: the RoI subsample is the same every call.
  with tf.GradientTape() as tape:
    terms = train_step.compute_losses(model, losses.ViLDLoss(), images, labels)
  grads = tape.gradient(terms["total_loss"], model.trainable_variables)
  return terms, [tf.zeros_like(v) if g is None else g
                 for g, v in zip(grads, model.trainable_variables)]


@pytest.mark.parametrize("mode", ["shared", "separate"])
def test_padded_distill_rois_change_nothing(models, batch, mode):
  model = models[mode]
  images, labels = batch
  num_valid = 2
  short = dict(labels)
  short["distill_rois"] = labels["distill_rois"][:, :num_valid]
  short["distill_features"] = labels["distill_features"][:, :num_valid]
  padded = dict(labels)
  rois = np.array(labels["distill_rois"])
  rois[:, num_valid:] = -1.0
  padded["distill_rois"] = tf.constant(rois)
  padded["distill_features"] = tf.concat(  # garbage features under the padding
      [labels["distill_features"][:, :num_valid],
       100.0 * tf.ones([2, NUM_DISTILL - num_valid, DIM])], axis=1)
  terms_short, grads_short = loss_and_gradients(model, images, short)
  terms_padded, grads_padded = loss_and_gradients(model, images, padded)
  for name in terms_short:
    np.testing.assert_allclose(terms_short[name], terms_padded[name], rtol=1e-5, atol=1e-6,
                               err_msg=name)
  # Summation order differs with the extra (zero-gradient) RoIs, so compare against the
  # overall gradient scale; garbage leaking from padded RoIs would be orders larger.
  scale = max(float(tf.reduce_max(tf.abs(g))) for g in grads_short)
  for a, b, v in zip(grads_short, grads_padded, model.trainable_variables):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale, err_msg=v.name)


def test_a_training_step_is_deterministic_given_the_batch(models, batch):
  images, labels = batch
  first, _ = loss_and_gradients(models["shared"], images, labels)
  second, _ = loss_and_gradients(models["shared"], images, labels)
  for name in first:
    assert float(first[name]) == float(second[name]), name


def test_model_trained_on_one_vocabulary_runs_on_another(batch):
  model = build_tiny("none")
  images, labels = batch
  optimizer = tf_keras.optimizers.SGD(0.01)
  optimizer.build(model.trainable_variables)
  train_step.train_step(model, optimizer, losses.ViLDLoss(), images, labels)
  image_shape = labels["image_info"][:, 1, :]
  for num_classes in (11, 2):
    model.set_text_embeddings(np.random.default_rng(num_classes).normal(size=(num_classes, DIM)))
    out = model(images, image_shape, training=False)
    assert out["detection_class_scores"].shape[-1] == num_classes
    assert int(tf.reduce_max(out["detection_classes"])) <= num_classes
  # A per-call matrix overrides the stored one without changing it.
  out = model(images, image_shape, text_embeddings=tf.random.normal([3, DIM]), training=False)
  assert out["detection_class_scores"].shape[-1] == 3
  assert model.classifier.num_classes == 2


def test_shared_and_separate_create_the_expected_variables(models):
  def shapes(variables):
    return sorted(tuple(v.shape) for v in variables)
  none, shared, separate = (models[m] for m in ("none", "shared", "separate"))
  # 'shared' sends distill RoIs through the one tower and projection: no new variables.
  assert shared.distill_tower is None
  assert shapes(shared.weights) == shapes(none.weights)
  # 'separate' adds exactly a second tower + projection, with variables of its own.
  tower = shapes(separate.region_tower.weights)
  assert shapes(separate.distill_tower.weights) == tower
  assert shapes(separate.weights) == sorted(shapes(shared.weights) + tower)
  own = {id(v) for v in separate.region_tower.weights}
  assert not own & {id(v) for v in separate.distill_tower.weights}
  assert any("project_to_embedding" in v.name for v in separate.distill_tower.weights)


def test_checkpoints_never_carry_the_vocabulary(models, tmp_path):
  model = models["none"]
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  assert not any("text_embeddings" in name for name, _ in tf.train.list_variables(path))
  before = model.classifier.text_embeddings.numpy().copy()
  tf.train.Checkpoint(model=model).restore(path).assert_existing_objects_matched()
  np.testing.assert_array_equal(model.classifier.text_embeddings.numpy(), before)


def test_bad_inputs_fail_with_clear_messages(models, batch):
  images, labels = batch
  with pytest.raises(ValueError, match=r"dimension 16 .* dimension 32"):
    models["none"].set_text_embeddings(np.ones((4, 16)), source="coco_clip.npy")
  with pytest.raises(ValueError, match=r"coco_clip.npy.*NaN or inf"):
    models["none"].set_text_embeddings(np.full((4, DIM), np.nan), source="coco_clip.npy")
  with pytest.raises(ValueError, match=r"base_mask has shape \(3,\).* 4 classes"):
    models["separate"].set_text_embeddings(np.ones((4, DIM)), base_mask=[True] * 3)
  with pytest.raises(ValueError, match="needs a base/novel mask"):
    models["separate"].set_text_embeddings(np.ones((4, DIM)))
  no_distill = {k: v for k, v in labels.items() if not k.startswith("distill")}
  with pytest.raises(ValueError, match="needs distill_rois"):
    training_outputs(models["shared"], images, no_distill)
  wrong = dict(labels, distill_rois=labels["distill_rois"][..., :3])
  with pytest.raises(ValueError, match=r"distill_rois must be \[batch, M, 4\]"):
    training_outputs(models["shared"], images, wrong)
  models["separate"].set_text_embeddings(np.ones((NUM_CLASSES, DIM)), base_mask=BASE_MASK)


def test_custom_layers_round_trip_through_get_config():
  tower = region_tower.RegionTower(embedding_dim=16, num_convs=2, conv_filters=8, num_fcs=1,
                                   fc_dims=32, name="my_tower")
  clone = region_tower.RegionTower.from_config(tower.get_config())
  assert clone.get_config() == tower.get_config()
  classifier = text_classifier.TextEmbeddingClassifier(embedding_dim=16, temperature=0.05)
  assert text_classifier.TextEmbeddingClassifier.from_config(
      classifier.get_config()).get_config() == classifier.get_config()
  learned = learned_classifier.LearnedClassifier(num_classes=5, embedding_dim=16, temperature=0.05)
  assert learned_classifier.LearnedClassifier.from_config(
      learned.get_config()).get_config() == learned.get_config()


def test_learned_classifier_scores_cosine_over_temperature():
  classifier = learned_classifier.LearnedClassifier(num_classes=3, embedding_dim=4,
                                                    temperature=0.05)
  classifier.build(None)
  rows = np.array([[0, 0, 0, 2], [3, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]], np.float32)
  classifier.class_embeddings.assign(rows)  # [bg, class 1, class 2, class 3], not unit norm
  region = tf.constant([[[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.6, 0.8]]])  # unit norm
  logits = classifier(region).numpy()  # [1, 2, 4]
  expected = np.array([[[0, 1, 0, 0], [0.8, 0, 0, 1.4 / np.sqrt(2)]]]) / 0.05
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-4)


def test_tiny_model_overfits_two_generated_images():
  model = build_tiny("shared")
  images, labels = toy.toy_batch([10, 11], SIZE, num_distill_rois=NUM_DISTILL, embedding_dim=DIM)
  optimizer = tf_keras.optimizers.Adam(2e-3)
  optimizer.build(model.trainable_variables)
  loss_fn = losses.ViLDLoss()
  step = tf.function(lambda: train_step.train_step(model, optimizer, loss_fn, images, labels))
  tf.random.set_seed(0)
  history = [float(step()["model_loss"]) for _ in range(60)]
  first, last = history[0], float(np.mean(history[-5:]))
  assert last < 0.5 * first, history


def test_supervised_baseline_has_learned_classes_that_cannot_change(batch):
  gin.clear_config()
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(["build_classifier.kind = 'learned'",
                    f"build_classifier.num_learned_classes = {NUM_CLASSES}"])
  model = factory.build_vild_model(image_size=SIZE)
  gin.clear_config()
  images, labels = batch
  out = training_outputs(model, images, labels)
  assert out["class_outputs"].shape == (2, 64, 1 + NUM_CLASSES)
  classes = [v for v in model.trainable_variables if "class_embeddings" in v.name]
  assert classes and tuple(classes[0].shape) == (1 + NUM_CLASSES, DIM)
  inference = model(images, labels["image_info"][:, 1, :], training=False)
  assert inference["detection_class_scores"].shape[-1] == NUM_CLASSES
  with pytest.raises(ValueError, match=r"9 classes given to a supervised model .* over 6"):
    model.set_text_embeddings(np.ones((9, DIM)), source="all_classes.npy")
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(["build_classifier.kind = 'learned'", "build_classifier.num_learned_classes = 6",
                    "build_vild_model.distillation = 'separate'"])
  with pytest.raises(ValueError, match="needs a TextEmbeddingClassifier"):
    factory.build_vild_model()


def test_linear_classifier_is_mask_rcnns_softmax_over_region_features(batch):
  gin.clear_config()
  gin.parse_config_file(TINY_GIN)
  gin.parse_config(["build_classifier.kind = 'linear'",
                    f"build_classifier.num_learned_classes = {NUM_CLASSES}"])
  model = factory.build_vild_model(image_size=SIZE)
  gin.clear_config()
  classifier = model.classifier
  assert isinstance(classifier, learned_classifier.LinearClassifier)
  kernel, bias = classifier.class_weights.kernel, classifier.class_weights.bias
  assert tuple(kernel.shape) == (128, 1 + NUM_CLASSES)  # tiny tower: 128 FC features
  # logits = features @ W + b on the tower's FC features (not its embeddings).
  images, labels = batch
  features = model.region_tower(tf.random.normal([1, 3, 7, 7, 32]), training=False)["features"]
  np.testing.assert_allclose(classifier(features), features @ kernel + bias, rtol=1e-5, atol=1e-5)
  # The embedding projection feeds no loss: not trained.
  trainable = {v.name for v in model.trainable_variables}
  assert not any("project_to_embedding" in name for name in trainable)
  assert kernel.name in trainable
  out = training_outputs(model, images, labels)
  assert out["class_outputs"].shape == (2, 64, 1 + NUM_CLASSES)
  with pytest.raises(ValueError, match=r"9 classes given to a supervised model .* over 6"):
    model.set_text_embeddings(np.ones((9, DIM)), source="all_classes.npy")
  clone = learned_classifier.LinearClassifier.from_config(classifier.get_config())
  assert clone.get_config() == classifier.get_config()
