"""GloVe word vectors from captions: the benchmark's text embeddings without vision."""
import numpy as np
import pytest

from vild import vocabulary as vocabulary_lib
from vild.synthetic_benchmark import word_vectors


def _vocabulary():
  return vocabulary_lib.Vocabulary(
      names=("red circle", "blue circle", "red square"), category_ids=(1, 2, 3),
      synonyms=(("red circle", "red disc"), ("blue circle",), ("red square",)),
      frequencies=("f", "f", "r"), is_novel=(False, False, True), source="test")


def test_cooccurrence_counts_pairs_in_a_caption_weighted_by_distance():
  words, counts = word_vectors.cooccurrence(["a red circle.", "a red disc"])
  index = {w: i for i, w in enumerate(words)}
  assert counts[index["a"], index["red"]] == 2.0
  assert counts[index["a"], index["circle"]] == 0.5
  np.testing.assert_array_equal(counts, counts.T)
  assert word_vectors.words("A five-pointed star.") == ["a", "five-pointed", "star"]


def test_glove_fits_log_counts_and_words_of_one_slot_end_up_alike():
  rng = np.random.default_rng(0)
  colours, shapes = ("red", "blue", "green"), ("circle", "square", "star")
  texts = [f"a photo of a {rng.choice(colours)} {rng.choice(shapes)}." for _ in range(600)]
  words, counts = word_vectors.cooccurrence(texts)
  vectors = word_vectors.train_glove(counts, dim=8, steps=2000)
  vectors -= vectors.mean(axis=0)
  unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
  index = {w: i for i, w in enumerate(words)}
  cos = lambda a, b: float(unit[index[a]] @ unit[index[b]])  # noqa: E731
  assert cos("red", "blue") > cos("red", "circle")
  assert cos("circle", "star") > cos("circle", "photo")


def test_category_embeddings_are_unit_rows_and_unknown_words_are_an_error():
  texts = ["a red circle.", "a blue circle.", "a red square.", "a red disc."] * 20
  matrix, summary = word_vectors.category_embeddings(texts, _vocabulary(), dim=4)
  assert matrix.shape == (3, 4) and matrix.dtype == np.float32
  np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
  assert summary["num_words"] == 6
  with pytest.raises(ValueError, match="'red disc'.*no caption"):
    word_vectors.category_embeddings(["a red circle.", "a blue circle.", "a red square."],
                                     _vocabulary(), dim=4)
