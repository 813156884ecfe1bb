"""Float64 NumPy references, written independently of the library (loops, not windows)."""

import numpy as np


def field_mean(t, field, *, border="valid", mask=None, divisor_field=None):
  """Brute-force mean of `t` over `field` ({axis: None | width}) at every position.

  Out-of-range window entries are absent ("valid") or zeros that count ("zeros").
  `divisor_field` replaces the field whose full size divides in the zero modes (the
  reference code's divisor bug).
  """
  field = field if isinstance(field, dict) else dict.fromkeys(field)
  t = np.asarray(t, np.float64)
  m = np.ones(t.shape) if mask is None else np.broadcast_to(mask, t.shape).astype(np.float64)
  if divisor_field is not None and not isinstance(divisor_field, dict):
    divisor_field = dict.fromkeys(divisor_field)
  divisor_field = field if divisor_field is None else divisor_field
  out = np.empty(t.shape)
  for idx in np.ndindex(*t.shape):
    ranges = []
    for ax, i in enumerate(idx):
      w = field.get(ax, 0)
      if ax not in field:
        ranges.append([i])
      elif w is None:
        ranges.append(list(range(t.shape[ax])))
      else:
        h = w // 2
        ranges.append([j for j in range(i - h, i + h + 1) if 0 <= j < t.shape[ax]])
    sub = np.ix_(*ranges)
    total = (t[sub] * m[sub]).sum()
    if border == "valid":
      count = m[sub].sum()
    else:
      full = 1
      for ax, w in divisor_field.items():
        full *= t.shape[ax] if w is None else w
      inside = int(np.prod([len(r) for r in ranges]))
      if divisor_field is field:
        count = m[sub].sum() + (full - inside)
      else:
        count = full
    out[idx] = total / count if count > 0 else 0.0
  return out


def normalize(x, summation, suppression=None, *, sigma=0.0, border="valid", mask=None):
  """The paper's formula, entry by entry, in float64."""
  suppression = summation if suppression is None else suppression
  x = np.asarray(x, np.float64)
  zeros = "valid" if border == "valid" else "zeros"
  v = x - field_mean(x, summation, border=zeros, mask=mask)
  divisor = summation if border == "zeros_with_divisor_bug" else None
  var = field_mean(v * v, suppression, border=zeros, mask=mask, divisor_field=divisor)
  y = v / np.sqrt(sigma**2 + var)
  if mask is not None:
    keep = np.broadcast_to(mask, x.shape)
    y, v = np.where(keep, y, 0.0), np.where(keep, v, 0.0)
  return y, v


def box_zero_padded(t, window):
  """Sum over a centered box on axes 1, 2 with zero padding ('SAME' convolution)."""
  kh, kw = window
  padded = np.pad(t, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  out = np.zeros(t.shape)
  for i in range(kh):
    for j in range(kw):
      out += padded[:, i : i + t.shape[1], j : j + t.shape[2], :]
  return out


def paper_divisive_norm(x, sum_window, sup_window, sigma):
  """The reference TensorFlow code's 2-D DN, ported line by line (NHWC)."""
  x = np.asarray(x, np.float64)
  area = sum_window[0] * sum_window[1]
  local_mean = box_zero_padded(x.mean(-1, keepdims=True), sum_window) / area
  v = x - local_mean
  # The code divides the suppression box by the summation window's area.
  den = box_zero_padded((v**2).mean(-1, keepdims=True), sup_window) / area
  return v / np.sqrt(den + sigma**2)
