"""Float64 NumPy transcriptions of weighted pools and of each anchor's published formula.

Written from the formulas and their authors' code, entry by entry, independently of the
library. Sources (read through the project's code search; cited per function):

- GDN: tensorflow_compression/python/layers/gdn.py and parameters.py (github.com/tensorflow/
  compression, commit dda8cb4).
- Miller et al. (ICLR 2022): CIFARModelsArchitectures/DivisiveNorm/DivisiveNormalization.py
  of github.com/MikiMiller95/DivisiveNormalization (commit ecbede2).
- Pan et al. (ICLR 2021 workshop, "Brain-inspired weighted normalization for CNN image
  classification"): normalizations.py (``WN_s``) of github.com/schwartz-cnl/
  Weighted_normalization.
- Veerabadran et al. (SVRHM 2021, "Bio-inspired learnable divisive normalization for ANNs"):
  models/divisive_normalization_svrhm/divisive_norm_exc_inh.py of github.com/desa-lab/
  early_vision.
- Burg et al. (PLoS Comput. Biol. 2021): Eq. 1 and Fig. 1 of the paper; the authors' code
  (github.com/MaxFBurg/burg2021_learning-divisive-normalization) was not readable here.
"""

from __future__ import annotations

import itertools

import numpy as np


def _f64(a):
  return np.asarray(a, np.float64)


def weighted_pool(t, kernels, *, mean=True, border="valid", mask=None):
  """``sum_q w_pq t_q`` (or its weighted mean) at every position, by enumeration.

  Args:
    t: array.
    kernels: ``{axes: spec}`` with `axes` a tuple of axes and `spec` one of:
      ``("whole",)``; ``("kernel", weights, dilation, along)`` (weights of shape window
      [+ (n_along,)]); ``("mixing", M)`` (``M[i, j]`` weighs entry j in the pool of i).
      Give mixings before kernels: a kernel's weights along `along` are then those of the
      pooled (source) entry.
    mean: divide by the weight of the entries that count (``border="valid"``), or by the
      whole weight with zeros past the border (``"zeros"``).
    mask: entries that take part (others contribute nothing, value and weight).
  """
  t = _f64(t)
  m = np.ones(t.shape) if mask is None else np.broadcast_to(mask, t.shape).astype(np.float64)
  out_shape = list(t.shape)
  for axes, spec in kernels.items():
    if spec[0] == "whole":
      for a in axes:
        out_shape[a] = 1
  out = np.zeros(out_shape)
  for p in np.ndindex(*out_shape):
    # Each contribution: a source index q (or None past the border) with weight w.
    contributions = [(list(p), 1.0)]
    for axes, spec in kernels.items():
      new = []
      for q, w in contributions:
        if spec[0] == "whole":
          for idx in itertools.product(*(range(t.shape[a]) for a in axes)):
            q2 = list(q)
            for a, i in zip(axes, idx, strict=True):
              q2[a] = i
            new.append((q2, w))
        elif spec[0] == "mixing":
          (a,) = axes
          for j in range(t.shape[a]):
            q2 = list(q)
            q2[a] = j
            new.append((q2, w * spec[1][p[a], j]))
        else:
          _, weights, dilation, along = spec
          weights = _f64(weights)
          window = weights.shape[:-1] if along is not None else weights.shape
          for tap in np.ndindex(*window):
            q2 = list(q)
            for a, i, n in zip(axes, tap, window, strict=True):
              q2[a] = p[a] + (i - n // 2) * dilation
            # Per-entry weights are those of the source entry (q after any mixing).
            wt = weights[tap] if along is None else weights[tap + (q[along],)]
            new.append((q2, w * wt))
      contributions = new
    total = weight = full = 0.0
    for q, w in contributions:
      full += w
      if all(0 <= i < n for i, n in zip(q, t.shape, strict=True)):
        total += w * m[tuple(q)] * t[tuple(q)]
        weight += w * m[tuple(q)]
    if not mean:
      out[p] = total
    else:
      count = weight if border == "valid" else weight + (full - sum(
          w for q, w in contributions
          if all(0 <= i < n for i, n in zip(q, t.shape, strict=True))))
      out[p] = total / count if count > 0 else 0.0
  return out


def gdn_tfc(x, beta, gamma_tfc, *, alpha=1.0, epsilon=1.0, inverse=False, rectify=False):
  """tensorflow_compression's GDN layer (channels last), its documented formula:

  ``y[i] = x[i] / (beta[i] + sum_j(gamma[j, i] * |x[j]|^alpha))^epsilon``; IGDN multiplies;
  `rectify` applies a ReLU first. Current defaults alpha = 1, epsilon = 1 (the 2016 paper's
  form: alpha = 2, epsilon = 0.5). Note the index order: ``gamma[j, i]`` (row: source).
  (The code computes ``inputs ** alpha`` for a learned alpha, not ``|inputs| ** alpha``;
  the two agree for rectified inputs. This is the docstring's formula.)
  """
  x = _f64(x)
  if rectify:
    x = np.maximum(x, 0.0)
  pool = _f64(beta) + (np.abs(x) ** alpha) @ _f64(gamma_tfc)
  return x * pool**epsilon if inverse else x / pool**epsilon


def tfc_gdn_parameter(initial_value, *, minimum=0.0, offset=2.0**-18):
  """``GDNParameter``: the variable stored for `initial_value`, and the value it stands for."""
  pedestal = offset**2
  variable = np.sqrt(np.maximum(_f64(initial_value) + pedestal, pedestal))
  value = np.maximum(variable, np.sqrt(minimum + pedestal)) ** 2 - pedestal
  return variable, value


def miller(a, *, lamb, alpha, beta, k):
  """Miller et al.'s divisive normalization along channels (their ``divisive_normalization``
  for 4-D input, NCHW; here channels last):

  ``b_c = a_c^2 / (k (1 + alpha / lambda * sum_{j=-4 lambda}^{4 lambda} a_{c+j}^2
  e^{-|j| / lambda}))^beta``, the sum over ``neighbors = ceil(8 lambda)`` (made odd) channels,
  zero padded (a 3-D convolution with padding ``neighbors // 2``).
  """
  a = _f64(a)
  n = int(np.ceil(8 * lamb))
  n = n + 1 if n % 2 == 0 else n
  h = n // 2
  sq = a * a
  c = a.shape[-1]
  padded = np.concatenate([np.zeros(a.shape[:-1] + (h,)), sq, np.zeros(a.shape[:-1] + (h,))], -1)
  div = np.zeros(a.shape)
  for i in range(n):
    div += padded[..., i:i + c] * np.exp(-abs(i - h) / lamb)
  div = div / lamb
  return sq / (k * (1.0 + alpha * div)) ** beta


def pan_wn_s(x, *, beta, gamma_k, gamma_s, gamma_out, beta_out, surround_dist, beta_min=1e-6):
  """Pan et al.'s ``WN_s`` (center and surround pools), NHWC, its call():

  ``y = x / sqrt(beta + beta_min + Pk + Ps) * gamma_out + beta_out``, with
  ``Pk`` a 1x1 convolution of ``x^2`` within groups of 8 channels (``gamma_k [8, C]``: input
  channel j of the group, output channel i) and ``Ps`` a 3x3 depthwise convolution of ``x^2``
  (``gamma_s [3, 3, C]``, centre zeroed), dilated by `surround_dist`, zero padded ('SAME').
  """
  x = _f64(x)
  sq = x * x
  _, hh, ww, c = x.shape
  groups = c // 8
  pk = np.zeros(x.shape)
  for g in range(groups):
    block = sq[..., 8 * g:8 * g + 8]
    pk[..., 8 * g:8 * g + 8] = block @ _f64(gamma_k)[:, 8 * g:8 * g + 8]
  ring = np.ones((3, 3))
  ring[1, 1] = 0.0
  gs = _f64(gamma_s) * ring[..., None]
  d = surround_dist
  padded = np.pad(sq, ((0, 0), (d, d), (d, d), (0, 0)))
  ps = np.zeros(x.shape)
  for i in range(3):
    for j in range(3):
      ps += gs[i, j] * padded[:, i * d:i * d + hh, j * d:j * d + ww, :]
  return x / np.sqrt(_f64(beta) + beta_min + pk + ps) * _f64(gamma_out) + _f64(beta_out)


def veerabadran_gaussian_filterbank(n_filters, size, order):
  """Their ``get_gaussian_filterbank``: 2-D Gaussians on ``linspace(-1, 1, size)^2`` with
  ``sx = sy`` in (0.5, 1, 2, 3), a quarter of the filters each, scaled to a centre of 1;
  `order` stands for their random permutation of the filters. Returns ``[size, size, n]``."""
  grid = np.linspace(-1, 1, size)
  xx, yy = np.meshgrid(grid, grid)
  out = []
  for s in (0.5, 1.0, 2.0, 3.0):
    g = np.exp(-(xx**2 + yy**2) / (2 * s * s)) / (2 * np.pi * s * s)
    out += [g / g[size // 2, size // 2]] * (n_filters // 4)
  return np.stack([out[i] for i in order], -1)


def veerabadran(x, *, weights, sigma):
  """Veerabadran et al.'s learned divisive normalization (``square_act=True``), NHWC:

  ``y_c = x_c^2 / (sum_q W_c(q) x_c(p + q)^2 + sigma_c^2 + 1e-5)``: a depthwise convolution
  (``weights [k, k, C]``), zero padded.
  """
  x = _f64(x)
  sq = x * x
  k = _f64(weights).shape[0]
  h = k // 2
  _, hh, ww, _ = x.shape
  padded = np.pad(sq, ((0, 0), (h, h), (h, h), (0, 0)))
  pool = np.zeros(x.shape)
  for i in range(k):
    for j in range(k):
      pool += _f64(weights)[i, j] * padded[:, i:i + hh, j:j + ww, :]
  return sq / (pool + _f64(sigma) ** 2 + 1e-5)


def burg(x, *, n, eta, u, v):
  """Burg et al.'s divisive normalization (Eq. 1; Fig. 1: "rectified and exponentiated to
  produce an excitatory output ... divided by a weighted sum of the excitatory outputs of
  all filters ... and a semi-saturation constant"), NHWC:

  ``o_l = E_l / (eta_l^{n_l} + sum_k |v[k, l]| sum_q u(q) E_k(p + q))``,
  ``E_k = [x_k]_+^{n_k}``, the pool factorized into a spatial kernel `u` (``[k, k]``, >= 0,
  zero padded) and feature weights ``|v|`` (``v[k, l]``: filter k in the pool of filter l).
  """
  x = _f64(x)
  e = np.maximum(x, 0.0) ** _f64(n)
  kk = _f64(u).shape[0]
  h = kk // 2
  _, hh, ww, _ = x.shape
  padded = np.pad(e, ((0, 0), (h, h), (h, h), (0, 0)))
  spatial = np.zeros(x.shape)
  for i in range(kk):
    for j in range(kk):
      spatial += _f64(u)[i, j] * padded[:, i:i + hh, j:j + ww, :]
  pool = spatial @ np.abs(_f64(v))
  return e / (_f64(eta) ** _f64(n) + pool)
