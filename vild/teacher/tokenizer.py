"""CLIP's byte-level BPE tokenizer in pure Python: text -> [N, 77] token ids.

It follows OpenAI CLIP's `simple_tokenizer`: clean the text (HTML entities unescaped twice,
Unicode NFC instead of ftfy, runs of whitespace collapsed, lower case), split it with CLIP's
regular expression, map each piece's UTF-8 bytes to printable characters, merge with the BPE
ranks, then wrap in <|startoftext|> ... <|endoftext|> and zero-pad to the context length. Text
longer than the context keeps its first tokens and ends with <|endoftext|>, as CLIP's
`tokenize(truncate=True)` does, so the text tower always finds its end token.

Vocabularies come from a Hugging Face checkpoint directory (`vocab.json` + `merges.txt`, or
`tokenizer.json`), from a CLIP merges file (`bpe_simple_vocab_16e6.txt.gz` format: a header
line, then one merge per line), or from the small vocabulary shipped with vild
(`default_tokenizer()`, CLIP's first 4096 merges) which tiny teachers use with no download.
"""
import functools
import gzip
import html
import json
import os
import unicodedata
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import regex

from vild.utils import io

CONTEXT_LENGTH = 77
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
END_OF_WORD = "</w>"
DEFAULT_BPE_PATH = os.path.join(os.path.dirname(__file__), "data", "clip_bpe_4096.txt.gz")

# CLIP's pre-tokenisation: special tokens, English contractions, letter runs, single digits,
# and runs of other non-space characters.
_PIECES = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
    r"""[^\s\p{L}\p{N}]+""", regex.IGNORECASE)


class TokenizerError(ValueError):
  """Tokenizer files are missing or inconsistent; the message names the file and the fix."""


@functools.lru_cache(maxsize=None)
def byte_to_unicode() -> Dict[int, str]:
  """The reversible byte -> printable character table of byte-level BPE (GPT-2, CLIP).

  Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space, ...)
  are moved to code points 256.. in byte order, so no token contains whitespace. The table's
  order (printable bytes first) is the order of the first 256 vocabulary entries.
  """
  printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
               list(range(ord("®"), ord("ÿ") + 1)))
  table = {b: chr(b) for b in printable}
  shifted = 0
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + shifted)
      shifted += 1
  return table


def clean_text(text: str) -> str:
  """CLIP's text clean-up without ftfy: unescape HTML twice, NFC, collapse spaces, lower-case."""
  text = unicodedata.normalize("NFC", html.unescape(html.unescape(text)))
  return " ".join(text.split()).lower()


class ClipTokenizer:
  """Byte-level BPE with CLIP's special tokens and context length.

  Attributes:
    encoder: token string -> id.
    start_id, end_id: ids of <|startoftext|> and <|endoftext|>.
    context_length: length of every row `tokenize` returns.
    source: where the vocabulary came from, for messages and metadata.
  """

  def __init__(self, encoder: Dict[str, int], merges: Sequence[Tuple[str, str]],
               context_length: int = CONTEXT_LENGTH, source: str = "<memory>"):
    for special in (START_OF_TEXT, END_OF_TEXT):
      if special not in encoder:
        raise TokenizerError(
            f"{source}: the vocabulary has no {special} token; a CLIP vocabulary must hold "
            f"both {START_OF_TEXT} and {END_OF_TEXT}.")
    if context_length < 2:
      raise TokenizerError(f"context_length must be at least 2 (start and end), got "
                           f"{context_length}.")
    for rank, (first, second) in enumerate(merges):
      if first + second not in encoder:
        raise TokenizerError(
            f"{source}: merge {rank} ('{first} {second}') makes '{first + second}', which is "
            "not in the vocabulary; the vocabulary and merges files do not belong together.")
    self.encoder = dict(encoder)
    self.decoder = {i: t for t, i in self.encoder.items()}
    self.ranks = {tuple(m): r for r, m in enumerate(merges)}
    self.start_id = self.encoder[START_OF_TEXT]
    self.end_id = self.encoder[END_OF_TEXT]
    self.context_length = context_length
    self.source = source
    self._byte_to_char = byte_to_unicode()
    self._char_to_byte = {c: b for b, c in self._byte_to_char.items()}
    self._cache = {START_OF_TEXT: (START_OF_TEXT,), END_OF_TEXT: (END_OF_TEXT,)}

  # ------------------------------------------------------------------------------------------
  # Constructors.
  @classmethod
  def from_merges(cls, merges: Sequence[Tuple[str, str]], context_length: int = CONTEXT_LENGTH,
                  source: str = "<merges>") -> "ClipTokenizer":
    """CLIP's vocabulary layout: 256 bytes, 256 bytes + </w>, one token per merge, specials."""
    chars = list(byte_to_unicode().values())
    tokens = chars + [c + END_OF_WORD for c in chars] + ["".join(m) for m in merges]
    tokens += [START_OF_TEXT, END_OF_TEXT]
    return cls({t: i for i, t in enumerate(tokens)}, merges, context_length, source)

  @classmethod
  def from_bpe_file(cls, path: str, context_length: int = CONTEXT_LENGTH,
                    max_merges: int = 48894) -> "ClipTokenizer":
    """A CLIP merges file (.txt or .txt.gz: a header line, then 'a b' per line).

    `max_merges` defaults to the 48,894 merges OpenAI CLIP uses from its 16e6 file.
    """
    if not io.exists(path):
      raise TokenizerError(f"{path}: no such BPE merges file.")
    data = io.read_bytes(path)
    text = (gzip.decompress(data) if path.endswith(".gz") else data).decode("utf-8")
    lines = text.split("\n")[1:max_merges + 1]
    return cls.from_merges(_parse_merges(lines, path), context_length, source=path)

  @classmethod
  def from_directory(cls, directory: str,
                     context_length: int = CONTEXT_LENGTH) -> "ClipTokenizer":
    """A Hugging Face CLIP directory: `vocab.json` + `merges.txt`, else `tokenizer.json`."""
    vocab_path = os.path.join(directory, "vocab.json")
    merges_path = os.path.join(directory, "merges.txt")
    fast_path = os.path.join(directory, "tokenizer.json")
    if io.exists(vocab_path) and io.exists(merges_path):
      encoder = _read_json(vocab_path)
      lines = [ln for ln in io.read_text(merges_path).split("\n")
               if not ln.startswith("#version")]
      return cls(encoder, _parse_merges(lines, merges_path), context_length, source=directory)
    if io.exists(fast_path):
      model = _read_json(fast_path).get("model", {})
      if model.get("type") != "BPE" or "vocab" not in model or "merges" not in model:
        raise TokenizerError(f"{fast_path}: expected a BPE model with 'vocab' and 'merges'.")
      lines = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
      return cls(model["vocab"], _parse_merges(lines, fast_path), context_length,
                 source=directory)
    raise TokenizerError(
        f"{directory}: no tokenizer files. A CLIP checkpoint directory needs vocab.json and "
        "merges.txt (or tokenizer.json), as saved by transformers' CLIPProcessor."
        "save_pretrained.")

  # ------------------------------------------------------------------------------------------
  # Encoding.
  @property
  def vocab_size(self) -> int:
    return len(self.encoder)

  def encode(self, text: str) -> List[int]:
    """Token ids of `text`, without start/end tokens and without padding."""
    ids = []
    for piece in _PIECES.findall(clean_text(text)):
      chars = "".join(self._byte_to_char[b] for b in piece.encode("utf-8"))
      ids.extend(self.encoder[t] for t in self._bpe(chars))
    return ids

  def tokenize(self, texts: Iterable[str]) -> np.ndarray:
    """[N, context_length] int32: start, tokens, end, zeros; long texts keep the end token."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    out = np.zeros((len(texts), self.context_length), np.int32)
    for row, text in enumerate(texts):
      ids = [self.start_id] + self.encode(text)[:self.context_length - 2] + [self.end_id]
      out[row, :len(ids)] = ids
    return out

  def decode(self, ids: Iterable[int]) -> str:
    """Text of `ids`, special tokens and padding (0 after the end token) dropped."""
    data = bytearray()
    for i in ids:
      i = int(i)
      if i == self.end_id:
        break
      if i == self.start_id:
        continue
      token = self.decoder[i]
      word_end = token.endswith(END_OF_WORD)
      if word_end:
        token = token[:-len(END_OF_WORD)]
      data.extend(self._char_to_byte[c] for c in token)
      if word_end:
        data.extend(b" ")
    return data.decode("utf-8", errors="replace").strip()

  def _bpe(self, word: str) -> Tuple[str, ...]:
    """Merges the characters of one piece by rank; the last symbol carries '</w>'."""
    if word in self._cache:
      return self._cache[word]
    symbols = list(word[:-1]) + [word[-1] + END_OF_WORD]
    while len(symbols) > 1:
      pairs = set(zip(symbols[:-1], symbols[1:]))
      best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
          merged.append(symbols[i] + symbols[i + 1])
          i += 2
        else:
          merged.append(symbols[i])
          i += 1
      symbols = merged
    self._cache[word] = tuple(symbols)
    return self._cache[word]


def default_tokenizer(context_length: int = CONTEXT_LENGTH) -> ClipTokenizer:
  """The small vocabulary shipped with vild: CLIP's first 4096 merges (4,610 tokens)."""
  return ClipTokenizer.from_bpe_file(DEFAULT_BPE_PATH, context_length)


def _parse_merges(lines: Sequence[str], source: str) -> List[Tuple[str, str]]:
  merges = []
  for number, line in enumerate(lines):
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) != 2:
      raise TokenizerError(f"{source}: merge line {number + 1} is {line!r}; each line must "
                           "be two symbols separated by one space.")
    merges.append((parts[0], parts[1]))
  return merges


def _read_json(path: str) -> dict:
  try:
    return io.read_json(path)
  except json.JSONDecodeError as e:
    raise TokenizerError(f"{path}: not valid JSON ({e}).") from e
