"""Vocabulary sources and text-embedding files: loading, checks and clear errors."""
import json

import numpy as np
import pytest

from vild import text_embeddings
from vild import vocabulary as vocabulary_lib

LVIS_CATEGORIES = [
    {"id": 3, "name": "aerosol_can", "synonyms": ["aerosol_can", "spray_can"], "frequency": "c"},
    {"id": 1, "name": "apple", "synonyms": ["apple"], "frequency": "f"},
    {"id": 7, "name": "armoire", "synonyms": ["armoire"], "frequency": "r"},
]


def write_json(path, data):
  path.write_text(json.dumps(data))
  return str(path)


def test_lvis_json_sorted_by_id_with_rare_as_novel(tmp_path):
  vocab = vocabulary_lib.Vocabulary.from_file(
      write_json(tmp_path / "lvis.json", {"categories": LVIS_CATEGORIES}))
  assert vocab.names == ("apple", "aerosol_can", "armoire")
  assert vocab.category_ids == (1, 3, 7)
  assert vocab.synonyms[1] == ("aerosol_can", "spray_can")
  np.testing.assert_array_equal(vocab.base_mask, [True, True, False])
  np.testing.assert_array_equal(vocab.index_of_ids([7, 1, 99]), [2, 0, -1])
  assert vocab.subset(vocab.base_mask).names == ("apple", "aerosol_can")


def test_coco_json_with_novel_names_and_plain_text_file(tmp_path):
  coco = {"categories": [{"id": 1, "name": "person"}, {"id": 5, "name": "airplane"}]}
  vocab = vocabulary_lib.Vocabulary.from_file(write_json(tmp_path / "coco.json", coco),
                                              novel_names=["airplane"])
  np.testing.assert_array_equal(vocab.novel_mask, [False, True])
  names = tmp_path / "names.txt"
  names.write_text("cat\n\n# comment\nred umbrella\n")
  assert vocabulary_lib.Vocabulary.from_file(str(names)).names == ("cat", "red umbrella")
  inline = vocabulary_lib.load_vocabulary("cat;red umbrella; koala")
  assert inline.names == ("cat", "red umbrella", "koala")


def test_save_and_load_round_trip(tmp_path):
  vocab = vocabulary_lib.Vocabulary.from_categories(LVIS_CATEGORIES, source="lvis")
  vocab.save(str(tmp_path / "v.json"))
  again = vocabulary_lib.Vocabulary.from_file(str(tmp_path / "v.json"))
  assert (again.names, again.category_ids, again.synonyms, again.frequencies,
          again.is_novel) == (vocab.names, vocab.category_ids, vocab.synonyms,
                              vocab.frequencies, vocab.is_novel)


@pytest.mark.parametrize("names, message", [
    (["cat", "dog", "cat"], "duplicate category name 'cat'"),
    (["cat", "  "], "empty name"),
    ([], "empty"),
])
def test_bad_vocabularies_fail_naming_the_source(names, message):
  with pytest.raises(vocabulary_lib.VocabularyError, match=message) as error:
    vocabulary_lib.Vocabulary.from_names(names, source="my_names.txt")
  assert "my_names.txt" in str(error.value)


def test_categories_without_name_fail_with_the_field(tmp_path):
  path = write_json(tmp_path / "bad.json", {"categories": [{"id": 1}]})
  with pytest.raises(vocabulary_lib.VocabularyError, match=r"bad.json.*'name'"):
    vocabulary_lib.Vocabulary.from_file(path)


def test_embedding_file_round_trip_checks_the_vocabulary(tmp_path):
  vocab = vocabulary_lib.Vocabulary.from_names(["cat", "dog", "koala"])
  matrix = np.random.default_rng(0).normal(size=(3, 8))
  path = str(tmp_path / "emb.npy")
  text_embeddings.save(path, matrix, vocab, model="tiny")
  loaded, saved_vocab = text_embeddings.load(path, vocab, embedding_dim=8)
  np.testing.assert_allclose(np.linalg.norm(loaded, axis=1), 1.0, rtol=1e-6)
  assert saved_vocab.names == vocab.names
  other = vocabulary_lib.Vocabulary.from_names(["cat", "dog", "emu"], source="other.txt")
  with pytest.raises(text_embeddings.TextEmbeddingError, match=r"differs from other.txt"):
    text_embeddings.load(path, other)


def test_embedding_errors_name_file_and_both_sizes(tmp_path):
  path = str(tmp_path / "emb.npy")
  np.save(path, np.ones((3, 8), np.float32))
  with pytest.raises(text_embeddings.TextEmbeddingError,
                     match=r"emb.npy.*dimension 8.*dimension 16"):
    text_embeddings.load(path, embedding_dim=16)
  with pytest.raises(text_embeddings.TextEmbeddingError, match=r"emb.npy.*3 rows.*4 categories"):
    text_embeddings.load(path, vocabulary_lib.Vocabulary.from_names(list("abcd")))
  bad = np.ones((3, 8), np.float32)
  bad[1, 2] = np.nan
  np.save(path, bad)
  with pytest.raises(text_embeddings.TextEmbeddingError, match=r"NaN or inf \(rows \[1\]\)"):
    text_embeddings.load(path)


def test_official_dim_by_class_layout_is_transposed_when_unambiguous(tmp_path):
  path = str(tmp_path / "official.npy")
  matrix = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)  # [D, C]
  np.save(path, matrix)
  loaded, _ = text_embeddings.load(path, vocabulary_lib.Vocabulary.from_names(["a", "b", "c"]),
                                   embedding_dim=8)
  np.testing.assert_allclose(loaded, text_embeddings.l2_normalize(matrix.T), rtol=1e-6)
