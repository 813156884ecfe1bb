"""Divisive norm against layer norm, and the floor below it (issue 14).

Divisive norm (DN) across channels needs per-position channel statistics (sums over C at
every (h, w)), then window sums of those small arrays. Its reference is flax's LayerNorm
over (H, W, C) (default one-pass: the target is DN within 1.15x of it); its floor is the
best program for the same per-position statistics:

- ``flax LN(C)``: flax's LayerNorm over C alone (one-pass, its default), and
  ``flax LN(C) two-pass`` (``use_fast_variance=False``): the per-position statistics with
  no windows, fused by XLA into one pass;
- ``plain C two-pass``: ``v = x - mean_C(x); v * rsqrt(mean_C(v^2) + sigma^2)`` in plain
  JAX (autodiff);
- ``DN``, ``DN one-pass``: `divnorm.divisive_norm` (width x width windows, sigma 0.5),
  two-pass (the default) and ``fast_variance=True``.

On ``[20, 800]`` (the RNN's gates; the window, of width 61, runs over D) the target is
bytes: XLA's ``cost_analysis()`` bytes accessed by the compiled forward, in units of the
minimum (the input read once and the output written once). There the other rows are
``paper conv`` (renmengye/div-norm's ones-kernel convolution, no shift), ``two-pass, no
shift`` (the window two-pass on raw ``x``: the fewest passes a two-pass can take when
XLA CPU writes every ``reduce_window``'s operand and result to memory, but inaccurate at
large offsets).

Times are medians of interleaved rounds (`benchmarks.timing`); ratios are per-round
medians (min-max) against the first row of each table.

    python -m benchmarks.dn_floor [--rounds N] [--quick] [--before REV] [--pieces]
        [--windows]

``--pieces`` times instead the passes the per-position statistics are made of, each alone
on the first shape: plain sums, sums with an elementwise operation inside, and the same
sums as one two-output reduce. ``--windows`` times DN's forward+backward on the first
shape with each way to form its window sums (`WINDOW_SUMS`) in place of the library's
(`divnorm._src.reductions.window_sum`, swapped while tracing). ``--profile`` prints the
time of each XLA operation of DN's forward+backward on the first shape, two-pass and
one-pass, beside flax's LayerNorm over (H, W, C) (`xla.op_times`), with each operation's
HLO opcodes.
"""

from __future__ import annotations

import argparse
import functools
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import divnorm
from benchmarks import before_after, cli, contenders, timing, xla
from divnorm._src.reductions import in_bounds

SIGMA = contenders.DN_SIGMA
# (shape, window width): the CNN's DN layers, the suite's large tensor, the RNN's gates.
CASES = [((100, 32, 32, 32), 5), ((100, 16, 16, 32), 3), ((100, 8, 8, 64), 3),
         ((128, 32, 32, 64), 5), ((20, 800), 61)]
QUICK_CASES = [((4, 8, 8, 8), 3), ((4, 64), 7)]


def _flax_ln(axes, *, fast: bool = True) -> contenders.Fn:
  m = nn.LayerNorm(epsilon=SIGMA**2, reduction_axes=axes, use_scale=False, use_bias=False,
                   use_fast_variance=fast)
  return lambda x: m.apply({}, x)


def plain_two_pass(x, axis: int = -1):
  """Per-position two-pass statistics over one axis, no windows, in plain JAX."""
  v = x - jnp.mean(x, axis, keepdims=True)
  return v * lax.rsqrt(jnp.mean(v * v, axis, keepdims=True) + np.float32(SIGMA**2))


def _window(t, width: int):
  """Zero-padded window sum over axis 1 by one ``reduce_window``."""
  return lax.reduce_window(t, np.float32(0), lax.add, (1, width), (1, 1),
                           ((0, 0), (width // 2, width // 2)))


def _count(x, width: int) -> np.ndarray:
  return in_bounds(x.shape[1], width).astype(np.float32)


def window_two_pass(x, width: int):
  """The window two-pass of ``[B, D]`` on raw x (no shift): two windowed sums."""
  n = _count(x, width)
  v = x - _window(x, width) / n
  return v * lax.rsqrt(_window(v * v, width) / n + np.float32(SIGMA**2))


def cases_fns(shape, width: int) -> dict[str, contenders.Fn]:
  """The contenders of one case, the reference first."""
  dn = functools.partial(divnorm.divisive_norm, summation_window=width, sigma=SIGMA)
  if len(shape) == 2:
    return {"flax LN(D)": _flax_ln(-1), "DN": dn,
            "paper conv": functools.partial(contenders._paper_dn, width=width,
                                            box=contenders._box_conv),
            "two-pass, no shift": functools.partial(window_two_pass, width=width)}
  return {"flax LN(HWC)": _flax_ln(tuple(range(1, len(shape)))),
          "flax LN(C)": _flax_ln(-1), "flax LN(C) two-pass": _flax_ln(-1, fast=False),
          "plain C two-pass": plain_two_pass, "DN": dn,
          "DN one-pass": functools.partial(dn, fast_variance=True)}


def _dn_at(rev: str, shape, width: int) -> contenders.Fn:
  """DN as `divnorm.normalize` computed it at git revision `rev`."""
  past = before_after.load_normalize(rev)
  if past is None:
    raise SystemExit(f"--before {rev}: no such git revision here")
  if len(shape) == 2:
    field = {1: width}
  else:
    field = {len(shape) - 1: None, **dict.fromkeys(range(1, len(shape) - 1), width)}
  return lambda x: past.normalize(x, field, sigma=SIGMA)


def table(shape, width: int, *, rounds: int, target_s: float,
          before: str | None = None) -> list[str]:
  """Markdown rows: forward and forward+backward times and ratios, forward bytes.

  `before`: also time DN at that git revision, and give DN's per-round ratio to it.
  """
  fns = cases_fns(shape, width)
  if before:
    fns[f"DN at {before}"] = _dn_at(before, shape, width)
  ref = next(iter(fns))
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), shape)
  minimum = 2 * x.size * x.dtype.itemsize
  times, fwd_bytes = {}, {}
  for mode, wrap in (("fwd", contenders.forward), ("fwd+bwd", contenders.forward_backward)):
    exes = {n: xla.compiled(wrap(f), x, w) for n, f in fns.items()}
    if mode == "fwd":
      fwd_bytes = {n: xla.bytes_accessed(e) / minimum for n, e in exes.items()}
    calls = {n: functools.partial(e, x, w) for n, e in exes.items()}
    times[mode] = timing.interleaved(calls, rounds=rounds, target_s=target_s)
  name = "x".join(map(str, shape))
  where = "over D" if len(shape) == 2 else f"x{width} across channels"
  out = [f"**{name}**, window {width} {where}".replace(" x", "x"),
         "",
         f"| contender | fwd ms | fwd / {ref} | fwd+bwd ms | fwd+bwd / {ref} "
         "| fwd bytes / min |",
         "|---|---|---|---|---|---|"]
  for n in fns:
    b = fwd_bytes[n]
    f_t, fb_t = times["fwd"], times["fwd+bwd"]
    out.append(f"| {n} | {f_t.median(n) * 1e3:.2f} | {f_t.ratio(n, ref)} "
               f"| {fb_t.median(n) * 1e3:.2f} | {fb_t.ratio(n, ref)} | {b:.2f} |")
  if before:
    old = f"DN at {before}"
    out += ["", f"DN / {old}: forward {times['fwd'].ratio('DN', old)}, "
            f"forward+backward {times['fwd+bwd'].ratio('DN', old)}"]
  return out + [""]


def _two_sums(a, b, axis):
  """``(sum a, sum b)`` over `axis` by one two-output reduce (XLA's own emitter on CPU)."""
  def add(p, q):
    return p[0] + q[0], p[1] + q[1]
  zero = np.float32(0)
  return lax.reduce((a, b), (zero, zero), add, (axis % a.ndim,))


def pieces(shape, *, rounds: int, target_s: float) -> list[str]:
  """Markdown rows: the passes the per-position statistics are made of, each alone.

  ``k`` is a per-example shift ``[B, 1, 1, 1]``, ``m`` a per-position mean ``[B, H, W, 1]``.
  """
  x = jax.random.normal(jax.random.key(0), shape)
  k = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  m = jnp.mean(x, axis=-1, keepdims=True)
  hwc = (1, 2, 3)
  fns = {
      "copy x*2": lambda x, k, m: x * np.float32(2),
      "output ((x - k) - m) * m": lambda x, k, m: ((x - k) - m) * m,
      "sum_HWC x": lambda x, k, m: jnp.sum(x, hwc),
      "sum_HWC x*x": lambda x, k, m: jnp.sum(x * x, hwc),
      "sum_C x": lambda x, k, m: jnp.sum(x, -1),
      "sum_C x*x": lambda x, k, m: jnp.sum(x * x, -1),
      "sum_C (x - k)": lambda x, k, m: jnp.sum(x - k, -1),
      "sum_C ((x - k) - m)^2": lambda x, k, m: jnp.sum(jnp.square((x - k) - m), -1),
      "sum_C (x - k), (x - k)^2 (one reduce)":
          lambda x, k, m: _two_sums(x - k, jnp.square(x - k), -1),
      "sum_C u, u^2, u = (x - k) - m (one reduce)":
          lambda x, k, m: _two_sums((x - k) - m, jnp.square((x - k) - m), -1),
  }
  calls = {n: functools.partial(jax.jit(f), x, k, m) for n, f in fns.items()}
  t = timing.interleaved(calls, rounds=rounds, target_s=target_s)
  out = [f"**pieces, {'x'.join(map(str, shape))}**", "",
         "| pass | ms | / copy | bytes / input |", "|---|---|---|---|"]
  for n, f in fns.items():
    b = xla.bytes_accessed(xla.compiled(jax.jit(f), x, k, m)) / (x.size * x.dtype.itemsize)
    out.append(f"| {n} | {t.median(n) * 1e3:.2f} | {t.ratio(n, 'copy x*2')} | {b:.2f} |")
  return out + [""]


def _band(t, axis: int, width: int):
  """Window sum along `axis` as a product with a 0/1 band matrix."""
  n = t.shape[axis]
  i = np.arange(n)
  band = (np.abs(i[:, None] - i[None, :]) <= width // 2).astype(np.float32)
  s = lax.dot_general(t, band, (((axis,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
  return jnp.moveaxis(s, -1, axis)


def _cumsum(t, axis: int, width: int):
  """Window sum along `axis` as a difference of cumulative sums (zero padded)."""
  h = width // 2
  pad = [(0, 0)] * t.ndim
  pad[axis] = (h + 1, h)
  c = jnp.cumsum(jnp.pad(t, pad), axis=axis)
  n = t.shape[axis]
  return lax.slice_in_dim(c, width, width + n, axis=axis) - lax.slice_in_dim(c, 0, n, axis=axis)


def _slices(t, axis: int, width: int):
  """Window sum along `axis` as the sum of `width` shifted slices of the padded array."""
  h = width // 2
  pad = [(0, 0)] * t.ndim
  pad[axis] = (h, h)
  p = jnp.pad(t, pad)
  n = t.shape[axis]
  return sum(lax.slice_in_dim(p, j, j + n, axis=axis) for j in range(width))


def _conv2d(t, windows):
  """Both spatial windows of ``[B, H, W, C]`` at once: a ones-kernel depthwise convolution."""
  if [a for a, _ in windows] != [1, 2]:
    return _separable(_slices)(t, windows)  # not DN's two spatial windows
  (_, kh), (_, kw) = windows
  kernel = jnp.ones((kh, kw, 1, t.shape[-1]), t.dtype)
  return lax.conv_general_dilated(t, kernel, (1, 1), [(kh // 2, kh // 2), (kw // 2, kw // 2)],
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=t.shape[-1])


def _separable(one_axis):
  def window_sum(t, windows):
    for axis, width in windows:
      if width > 1:
        t = one_axis(t, axis, width)
    return t
  return window_sum


def _reduce_window_2d(t, windows):
  dims, pad = [1] * t.ndim, [(0, 0)] * t.ndim
  for axis, width in windows:
    dims[axis], pad[axis] = width, (width // 2, width // 2)
  return lax.reduce_window(t, np.zeros((), t.dtype), lax.add, dims, (1,) * t.ndim, pad)


# Ways to form DN's window sums on its per-position statistics (``[B, H, W, 1]``).
WINDOW_SUMS = {
    "reduce_window, separable (the library's)": None,
    "reduce_window, 2-D": _reduce_window_2d,
    "band matrix products": _separable(_band),
    "cumsum differences": _separable(_cumsum),
    "shifted slices": _separable(_slices),
    "depthwise convolution": _conv2d,
}


def windows_table(shape, width: int, *, rounds: int, target_s: float) -> list[str]:
  """Markdown rows: DN forward+backward with each window-sum formulation, interleaved."""
  from divnorm._src import core, reductions, statistics
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), shape)
  ln = _flax_ln(tuple(range(1, len(shape))))
  exes = {"flax LN(HWC)": xla.compiled(contenders.forward_backward(ln), x, w)}
  library = reductions.window_sum
  for name, fn in WINDOW_SUMS.items():
    for fv in (None, True):
      dn = functools.partial(divnorm.divisive_norm, summation_window=width, sigma=SIGMA,
                             fast_variance=fv)
      if fn is not None:  # swapped while tracing: the compiled program keeps it
        reductions.window_sum = statistics.window_sum = core.window_sum = fn
      try:
        exes[f"{name}, {'one' if fv else 'two'}-pass"] = xla.compiled(
            contenders.forward_backward(dn), x, w)
      finally:
        reductions.window_sum = statistics.window_sum = core.window_sum = library
  t = timing.interleaved({n: functools.partial(e, x, w) for n, e in exes.items()},
                         rounds=rounds, target_s=target_s)
  out = [f"**DN {width}x{width} window sums, {'x'.join(map(str, shape))}, forward+backward**",
         "", "| window sums | ms | / flax LN(HWC) |", "|---|---|---|"]
  for n in exes:
    out.append(f"| {n} | {t.median(n) * 1e3:.2f} | {t.ratio(n, 'flax LN(HWC)')} |")
  return out + [""]


def profile(shape, width: int) -> list[str]:
  """Markdown: each XLA operation of the forward+backward programs and its time per call."""
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), shape)
  fns = {"flax LN(HWC)": _flax_ln(tuple(range(1, len(shape))))}
  for label, fv in (("DN two-pass", None), ("DN one-pass", True)):
    fns[label] = functools.partial(divnorm.divisive_norm, summation_window=width, sigma=SIGMA,
                                   fast_variance=fv)
  out = []
  for label, f in fns.items():
    g = contenders.forward_backward(f)
    exe = xla.compiled(g, x, w)
    text = exe.as_text()
    times = xla.op_times(exe, x, w)
    out += [f"**{label}, {'x'.join(map(str, shape))}, forward+backward**: "
            f"{sum(times.values()) * 1e3:.2f} ms in {len(times)} operations", "",
            "| operation | ms | output | what it computes (HLO ops) |", "|---|---|---|---|"]
    for name, seconds in times.items():
      out.append(f"| {name} | {seconds * 1e3:.3f} | {_output(text, name)} | "
                 f"{_ops(text, name)} |")
    out.append("")
  return out


def _output(text: str, name: str) -> str:
  import re
  line = next((ln for ln in text.splitlines() if f"%{name} = " in ln), "")
  shape = line.split(" = ", 1)[1].split(" fusion(", 1)[0] if line else ""
  return re.sub(r"\{[0-9,]*\}", "", shape)


def _ops(text: str, name: str) -> str:
  """The opcodes in the computation that operation `name` calls (duplicates once)."""
  import re
  line = next((ln for ln in text.splitlines() if f"%{name} = " in ln), "")
  called = re.search(r"calls=%([\w.\-]+)", line)
  if not called:
    return ""
  body = text.split(f"%{called.group(1)} ", 1)[1].split("\n}", 1)[0]
  ops = re.findall(r"= \w+\[[^\]]*\](?:\{[^}]*\})? ([a-z\-]+)\(", body)
  seen = []
  for op in ops:
    if op not in seen and op not in ("parameter", "constant", "bitcast", "broadcast"):
      seen.append(op)
  return " ".join(seen)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=cli.positive_int(9), default=9)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round")
  p.add_argument("--before", metavar="REV",
                 help="also time DN at this git revision (e.g. 1a57d38) and DN's ratio to it")
  p.add_argument("--pieces", action="store_true",
                 help="only the table of the per-position statistics' passes")
  p.add_argument("--windows", action="store_true",
                 help="only DN with each way to form its window sums")
  p.add_argument("--profile", action="store_true",
                 help="only the time of each XLA operation of DN and flax LN(HWC)")
  args = p.parse_args(argv)
  cases = QUICK_CASES if args.quick else CASES
  rounds = 1 if args.quick else args.rounds
  target_s = 0.005 if args.quick else 0.2
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, rounds {rounds}\n")
  if args.profile:
    print("\n".join(profile(*cases[0])), flush=True)
    return 0
  if args.windows:
    print("\n".join(windows_table(*cases[0], rounds=rounds, target_s=target_s / 2)), flush=True)
    return 0
  if args.pieces:
    print("\n".join(pieces(cases[0][0], rounds=rounds, target_s=target_s / 2)), flush=True)
    return 0
  for shape, width in cases:
    print("\n".join(table(shape, width, rounds=rounds, target_s=target_s,
                           before=args.before)), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
