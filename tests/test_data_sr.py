"""The SR image pipeline: YCbCr, modcrop, bicubic, patches, sources and their errors."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.io

from experiments.config import MissingDataError
from experiments.sr import data as sr
from experiments.sr import imaging as sr_image
from experiments.sr import patches as sr_patches
from experiments.sr import sources as sr_sources


def _bt601(rgb):
  """ITU-R BT.601 studio-swing YCbCr from 0..255 RGB, written out from the standard."""
  r, g, b = (np.asarray(rgb, np.float64)[..., i] / 255.0 for i in range(3))
  y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
  cb = 128 - 37.797 * r - 74.203 * g + 112.0 * b
  cr = 128 + 112.0 * r - 93.786 * g - 18.214 * b
  return np.stack([y, cb, cr], -1)


KNOWN = {  # colour: Matlab's rgb2ycbcr(uint8(...))
    (0, 0, 0): (16, 128, 128), (255, 255, 255): (235, 128, 128),
    (255, 0, 0): (81, 90, 240), (0, 255, 0): (145, 54, 34), (0, 0, 255): (41, 240, 110),
    (128, 128, 128): (126, 128, 128),
}


def test_ycbcr_known_colours_match_bt601():
  rgb = np.array([list(KNOWN)], np.uint8)
  out = sr_image.rgb_to_ycbcr(rgb)
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out[0], np.array(list(KNOWN.values())))
  np.testing.assert_array_equal(out, np.round(_bt601(rgb)).astype(np.uint8))
  # Floats in 0..1 give the unrounded formula in 0..1, and invert.
  f = sr_image.rgb_to_ycbcr(rgb / 255.0)
  np.testing.assert_allclose(f * 255.0, _bt601(rgb), atol=1e-9)
  np.testing.assert_allclose(sr_image.ycbcr_to_rgb(f), rgb / 255.0, atol=1e-9)


def test_luma_of_rgb_gray_and_rgba():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
  np.testing.assert_array_equal(sr_image.luma(rgb), sr_image.rgb_to_ycbcr(rgb)[..., 0])
  rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], -1)
  np.testing.assert_array_equal(sr_image.luma(rgba), sr_image.luma(rgb))
  gray = rgb[..., 0]
  np.testing.assert_array_equal(sr_image.luma(gray), gray)


def test_modcrop():
  x = np.zeros((31, 20, 3))
  assert sr_image.modcrop(x, 3).shape == (30, 18, 3)
  assert sr_image.modcrop(x, 4).shape == (28, 20, 3)


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_of_constant_is_constant(scale, antialias):
  x = np.full((24, 36), 77.0)
  low = sr_image.imresize(x, 1.0 / scale, antialias=antialias)
  assert low.shape == (24 // scale, 36 // scale)
  np.testing.assert_allclose(low, 77.0, atol=1e-10)
  np.testing.assert_allclose(sr_image.degrade(x, scale, antialias=antialias), 77.0, atol=1e-10)


def test_bicubic_up_interpolates_and_keeps_linear_ramps():
  # Keys' cubic reproduces linear functions exactly away from the border.
  ramp = np.add.outer(np.arange(12.0), 2.0 * np.arange(12.0))
  up = sr_image.imresize(ramp, 3)
  u = (np.arange(36) + 0.5) / 3 - 0.5  # input coordinate of each output pixel
  expect = np.add.outer(u, 2.0 * u)
  np.testing.assert_allclose(up[6:-6, 6:-6], expect[6:-6, 6:-6], atol=1e-9)


@pytest.mark.loose_promotion
@pytest.mark.parametrize("scale", [3, 4])
def test_imresize_matches_jax_image_resize_away_from_border(scale):
  rng = np.random.default_rng(1)
  x = rng.uniform(0, 255, (12 * scale, 10 * scale))
  low = sr_image.imresize(x, 1.0 / scale)
  jlow = jax.image.resize(jnp.asarray(x, jnp.float32), low.shape, "cubic", antialias=True)
  m = 5  # LR pixels the antialiased kernel reaches past the border
  np.testing.assert_allclose(low[m:-m, m:-m], np.asarray(jlow)[m:-m, m:-m], atol=2e-3)
  up = sr_image.imresize(low, scale)
  jup = jax.image.resize(jnp.asarray(low, jnp.float32), up.shape, "cubic")
  b = 3 * scale
  np.testing.assert_allclose(up[b:-b, b:-b], np.asarray(jup)[b:-b, b:-b], atol=2e-3)


def test_patch_equals_crop_of_whole_image_degradation():
  y = sr_image.luma(_photo()[:90, :120])
  for scale in (3, 4):
    whole = sr_image.degrade(sr_image.modcrop(y, scale).astype(np.float64), scale) / 255.0
    hr = sr_image.modcrop(y, scale) / 255.0
    for seed in range(4):
      rng = np.random.default_rng(seed)
      x_p, y_p = sr_patches.sample_pair(y, scale=scale, patch_size=33, rng=rng)
      rng = np.random.default_rng(seed)
      h, w = hr.shape
      r, c = int(rng.integers(h - 32)), int(rng.integers(w - 32))
      np.testing.assert_allclose(x_p, whole[r:r + 33, c:c + 33], atol=1e-6)
      np.testing.assert_array_equal(y_p, (hr[r:r + 33, c:c + 33]).astype(np.float32))


def _photo():
  import skimage.data
  return skimage.data.astronaut()


def test_batches_are_seeded_resumable_and_split_by_process():
  images = [sr_image.luma(_photo()[:80, :80]), sr_image.luma(_photo()[100:170, 200:290])]
  kw = dict(scale=3, patch_size=33, batch_size=6, patches_per_read=4)
  a = sr_patches.batches(images, seed=5, **kw)
  first = [next(a) for _ in range(3)]
  assert first[0]["input"].shape == (6, 33, 33, 1) and first[0]["input"].dtype == np.float32
  resumed = next(sr_patches.batches(images, seed=5, start_step=2, **kw))
  np.testing.assert_array_equal(resumed["input"], first[2]["input"])
  other = next(sr_patches.batches(images, seed=6, **kw))
  assert not np.array_equal(other["input"], first[0]["input"])
  parts = [next(sr_patches.batches(images, seed=5, process_index=i, process_count=3, **kw))
           for i in range(3)]
  for key in ("input", "target"):
    np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), first[0][key])


def test_augmented_pairs_share_one_rotation_or_flip():
  images = [sr_image.luma(_photo()[:80, :80])]
  kw = dict(scale=3, patch_size=33, batch_size=8, patches_per_read=1, seed=2)
  plain = next(sr_patches.batches(images, **kw))
  augmented = next(sr_patches.batches(images, augment=True, **kw))
  used = set()
  for i in range(8):  # one patch per group: the same position with and without augment
    x, y = plain["input"][i, ..., 0], plain["target"][i, ..., 0]
    ks = [k for k in range(8)
          if np.array_equal(sr_patches.dihedral(x, k), augmented["input"][i, ..., 0])]
    assert ks, "the augmented input is no rotation/flip of the plain one"
    np.testing.assert_array_equal(sr_patches.dihedral(y, ks[0]), augmented["target"][i, ..., 0])
    used.add(ks[0])
  assert len(used) > 1
  resumed = next(sr_patches.batches(images, augment=True, start_step=0, **kw))
  np.testing.assert_array_equal(resumed["input"], augmented["input"])


def test_dihedral_gives_the_eight_distinct_rotations_and_flips():
  x = np.arange(9.0).reshape(3, 3)
  views = {sr_patches.dihedral(x, k).tobytes() for k in range(8)}
  assert len(views) == 8
  np.testing.assert_array_equal(sr_patches.dihedral(x, 0), x)
  np.testing.assert_array_equal(sr_patches.dihedral(x, 4), x[:, ::-1])


def test_photographs_split_is_fixed_and_disjoint():
  train, test = sr_sources.PHOTOGRAPHS_TRAIN, sr_sources.PHOTOGRAPHS_TEST
  assert not set(train) & set(test)
  assert len(test) >= 5 and len(train) == len(set(train))
  assert set(sr_sources.PHOTOGRAPHS_VALIDATION) < set(train)
  names = {split: [n for n, _ in sr_sources.photographs(split)] for split in sr_sources.SPLITS}
  assert names["test"] == ["astronaut", "chelsea", "coffee", "camera", "flower"]
  assert names["validation"] == ["rocket", "coins", "grace_hopper"]
  assert not set(names["validation"]) & set(names["train_without_validation"])
  assert sorted(names["validation"] + names["train_without_validation"]) == sorted(
      names["train"])
  assert not set(names["train"]) & set(names["test"])
  for split in ("train", "test"):
    for name, image in sr_sources.photographs(split):
      assert image.dtype == np.uint8 and image.ndim in (2, 3), name
      assert min(image.shape[:2]) >= 150, name
  # The two pilot splits as a source: trained without the validation photographs, scored on them.
  assert [t.name for t in sr.test_set("photographs_validation", scale=3)] == names["validation"]
  assert len(sr.images("photographs_validation", "train")) == len(names["train"]) - 3


def test_no_test_photograph_is_a_copy_of_a_training_one():
  """Catches a photograph listed under two names (skimage's cat is chelsea)."""
  train = [sr_image.luma(im) for _, im in sr_sources.photographs("train")]
  for name, image in sr_sources.photographs("test"):
    y = sr_image.luma(image)
    for other in train:
      h, w = min(y.shape[0], other.shape[0]), min(y.shape[1], other.shape[1])
      a, b = y[:h, :w].astype(np.float64), other[:h, :w].astype(np.float64)
      assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.9, name


def test_image_folder_and_test_set(tmp_path):
  rgb = _photo()[:40, :50]
  skimage.io.imsave(tmp_path / "b.png", rgb, check_contrast=False)
  skimage.io.imsave(tmp_path / "a.png", rgb[..., 1], check_contrast=False)
  (tmp_path / "notes.txt").write_text("not an image")
  named = sr_sources.image_folder(str(tmp_path))
  assert [n for n, _ in named] == ["a", "b"]
  tests = sr.test_set(f"folder:{tmp_path}", scale=3)
  assert tests[0].target.shape == (39, 48) and tests[0].chroma is None
  assert tests[1].bicubic.shape == (39, 48) and tests[1].chroma.shape == (39, 48, 2)
  np.testing.assert_array_equal(tests[1].target, sr_image.luma(rgb)[:39, :48])


@pytest.mark.parametrize("scale", [1, 5, 2.5, True, "3"])
def test_bad_scale_fails_clearly(scale):
  with pytest.raises(ValueError, match=r"scale=.* is not supported.*\(2, 3, 4\)"):
    sr_image.modcrop(np.zeros((12, 12)), scale)
  with pytest.raises(ValueError, match="not supported"):
    sr.test_image("x", np.zeros((40, 40, 3), np.uint8), scale=scale)


def test_image_smaller_than_patch_fails_clearly(tmp_path):
  with pytest.raises(ValueError, match=r"21x30 \(after modcrop\), smaller than a 33x33 patch"):
    sr_patches.sample_pair(np.zeros((21, 30), np.uint8), scale=3, patch_size=33,
                           rng=np.random.default_rng(0))
  skimage.io.imsave(tmp_path / "small.png", np.zeros((20, 64, 3), np.uint8), check_contrast=False)
  with pytest.raises(ValueError, match="smaller than a 33x33 patch"):
    sr.train_batches(f"folder:{tmp_path}", scale=3, batch_size=2, seed=0)


def test_grayscale_where_rgb_expected_fails_clearly():
  with pytest.raises(ValueError, match=r"RGB image of shape \(H, W, 3\); got a grayscale image"):
    sr_image.rgb_to_ycbcr(np.zeros((8, 8), np.uint8))
  with pytest.raises(TypeError, match="8-bit"):
    sr_image.luma(np.zeros((8, 8), bool))


def test_missing_or_empty_folder_fails_clearly(tmp_path):
  with pytest.raises(MissingDataError, match="does not exist"):
    sr.test_set(f"folder:{tmp_path / 'Set14'}", scale=3)
  with pytest.raises(MissingDataError, match="holds no"):
    sr_sources.image_folder(str(tmp_path))
  with pytest.raises(ValueError, match="unknown source"):
    sr.images("set5", "test")


@pytest.mark.loose_promotion
def test_div2k_not_prepared_says_what_to_run(tmp_path):
  with pytest.raises(MissingDataError, match="tfds build div2k/bicubic_x4 --file_format=array_record"):
    sr_sources.Div2k("train", data_dir=str(tmp_path))


@pytest.mark.loose_promotion
def test_div2k_through_tfds_data_source_mock():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=3):  # mocked hr images are 16..43 pixels
    div2k = sr_sources.Div2k("train")
    assert len(div2k) == 3
    hr = div2k[0]
    assert hr.dtype == np.uint8 and hr.ndim == 3 and hr.shape[-1] == 3
    batch = next(sr.train_batches("div2k", scale=2, patch_size=15, batch_size=4, seed=0))
    assert batch["input"].shape == (4, 15, 15, 1) and batch["target"].shape == (4, 15, 15, 1)
    tests = sr.test_set("div2k", scale=2, limit=2)
    validation = sr_sources.Div2k("validation")
    assert [t.name for t in tests] == ["div2k_test_0000", "div2k_test_0001"]
    np.testing.assert_array_equal(
        tests[0].target, sr_image.modcrop(sr_image.luma(validation[0]), 2))


def test_unknown_split():
  with pytest.raises(ValueError, match="split"):
    sr.images("photographs", "valid")
  with pytest.raises(ValueError, match="split must be one of"):
    sr_sources.photographs("valid")
