"""Image data: the IDX reader, TFDS data sources (mocked), host-side batching."""

import numpy as np
import pytest

from experiments.config import MissingDataError
from experiments.data import batching, idx, images


def _write_split(directory, n, *, gz, split="train", size=6):
  rng = np.random.default_rng(n)
  imgs = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
  labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
  prefix = "train" if split == "train" else "t10k"
  ext = ".gz" if gz else ""
  idx.write_idx(str(directory / f"{prefix}-images-idx3-ubyte{ext}"), imgs)
  idx.write_idx(str(directory / f"{prefix}-labels-idx1-ubyte{ext}"), labels)
  return imgs, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip_and_split_loader(tmp_path, gz):
  imgs, labels = _write_split(tmp_path, 12, gz=gz)
  _write_split(tmp_path, 5, gz=gz, split="test")
  split = images.load_split("fashion_mnist", "train", data_dir=str(tmp_path))
  assert split.images.shape == (12, 6, 6, 1) and split.images.dtype == np.uint8
  np.testing.assert_array_equal(split.images[..., 0], imgs)
  np.testing.assert_array_equal(split.labels, labels.astype(np.int32))
  assert split.num_classes == 10
  test = images.load_split("fashion_mnist", "test", data_dir=str(tmp_path), max_examples=3)
  assert test.images.shape == (3, 6, 6, 1)


def test_idx_other_dtypes(tmp_path):
  a = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
  idx.write_idx(str(tmp_path / "a.idx"), a)
  np.testing.assert_array_equal(idx.read_idx(str(tmp_path / "a.idx")), a)
  (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
  with pytest.raises(ValueError, match="not an IDX file"):
    idx.read_idx(str(tmp_path / "bad"))


def test_missing_idx_files_say_how_to_get_them(tmp_path):
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    images.load_split("fashion_mnist", "train", data_dir=str(tmp_path))


def test_unknown_dataset_lists_choices():
  with pytest.raises(ValueError, match="fashion_mnist, fashion_mnist_tfds, cifar10, cifar100"):
    images.load_split("imagenet", "train")


@pytest.mark.loose_promotion
@pytest.mark.parametrize("name,shape,classes", [("cifar10", (32, 32, 3), 10),
                                                ("cifar100", (32, 32, 3), 100),
                                                ("fashion_mnist_tfds", (28, 28, 1), 10)])
def test_tfds_data_source_under_mock(name, shape, classes):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6):
    split = images.load_split(name, "train")
  assert split.images.shape == (6, *shape) and split.images.dtype == np.uint8
  assert split.labels.dtype == np.int32 and split.labels.max() < classes
  assert split.num_classes == classes


@pytest.mark.loose_promotion
def test_tfds_not_prepared_says_what_to_run(tmp_path):
  with pytest.raises(MissingDataError, match="tfds build cifar10 --file_format=array_record"):
    images.load_split("cifar10", "train", data_dir=str(tmp_path))


def test_train_batches_positioned_by_step_and_sharded_by_process():
  arrays = {"x": np.arange(50), "y": np.arange(50) * 10}
  stream = batching.train_batches(arrays, batch_size=8, seed=3)
  first = [next(stream) for _ in range(14)]  # crosses an epoch (6 batches per epoch)
  for k in (0, 5, 6, 13):
    resumed = next(batching.train_batches(arrays, batch_size=8, seed=3, start_step=k))
    np.testing.assert_array_equal(resumed["x"], first[k]["x"])
  np.testing.assert_array_equal(first[0]["y"], first[0]["x"] * 10)
  epoch0 = np.concatenate([b["x"] for b in first[:6]])
  assert len(set(epoch0.tolist())) == 48  # no repeats within an epoch
  parts = [next(batching.train_batches(arrays, batch_size=8, seed=3, start_step=2,
                                       process_index=p, process_count=2))["x"] for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(parts), first[2]["x"])
  other_seed = next(batching.train_batches(arrays, batch_size=8, seed=4))
  assert not np.array_equal(other_seed["x"], first[0]["x"])


def test_eval_batches_pad_with_mask():
  arrays = {"x": np.arange(10)}
  batches = list(batching.eval_batches(arrays, batch_size=4))
  assert len(batches) == 3
  np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
  xs = np.concatenate([b["x"][b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(xs, np.arange(10))


def test_mean_image_preprocess():
  imgs = np.stack([np.zeros((2, 2, 1), np.uint8), np.full((2, 2, 1), 255, np.uint8)])
  mean = images.mean_image(imgs)
  np.testing.assert_allclose(mean, 127.5)
  out = images.make_preprocess(mean)({"image": imgs, "label": np.zeros(2, np.int32)})
  assert out["image"].dtype == np.float32
  np.testing.assert_allclose(out["image"][1], 127.5)


def test_batch_size_larger_than_data_fails():
  with pytest.raises(ValueError, match="exceeds"):
    next(batching.train_batches({"x": np.arange(4)}, batch_size=8, seed=0))
