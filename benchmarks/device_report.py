"""The device check's output: the JSON of every number, the markdown tables, the progress log.

`Report` holds the results so far and rewrites ``device_check.json``, ``device_check.md``
and ``device_check.log`` under the output folder after every unit of work, so a run cut
short by its budget keeps the tables already measured. `render` is the markdown, ready to
paste under a "GPU" section of BENCHMARKS.md.
"""

from __future__ import annotations

import json
import pathlib
import statistics
from collections.abc import Callable

import numpy as np

from benchmarks import contenders, timing

DN_SIGMA = contenders.DN_SIGMA
MODES = ("default", "one-pass", "two-pass")


class Report:
  """Results so far; `write` rewrites the markdown, the JSON and the log.

  Args:
    out: the output folder.
    command: the command line, recorded in both files.
    elapsed: `() -> seconds` since the run started (the budget's clock).
  """

  def __init__(self, out: pathlib.Path, command: str, elapsed: Callable[[], float]):
    self.out = out
    self.command = command
    self.elapsed = elapsed
    self.data: dict = {"command": command, "env": {}, "sections": {}}
    self._log = out / "device_check.log"
    self._log.write_text("")

  def log(self, msg: str) -> None:
    line = f"[{self.elapsed():6.1f}s] {msg}"
    print(line, flush=True)
    with open(self._log, "a") as f:
      f.write(line + "\n")

  def section(self, name: str) -> dict:
    return self.data["sections"].setdefault(
        name, {"status": "not started", "wall_s": 0.0, "compile_s": 0.0, "units": [],
               "notes": []})

  def write(self) -> None:
    self.data["elapsed_s"] = self.elapsed()
    (self.out / "device_check.json").write_text(json.dumps(self.data, indent=1, default=_jsonable))
    (self.out / "device_check.md").write_text(render(self.data))


def _jsonable(obj):
  if isinstance(obj, timing.Ratio):
    return {"median": obj.median, "low": obj.low, "high": obj.high}
  if isinstance(obj, np.generic):
    return obj.item()
  return str(obj)


def ratio_of(values) -> timing.Ratio:
  """Per-round values as a `timing.Ratio` (median, min, max)."""
  return timing.Ratio(statistics.median(values), min(values), max(values))


def _r(d) -> str:
  """A ratio (its JSON form) as ``median (low-high)``, or "n/a"."""
  if not d:
    return "n/a"
  if isinstance(d, timing.Ratio):
    return str(d)
  return f"{d['median']:.2f} ({d['low']:.2f}-{d['high']:.2f})"


def _ms(s) -> str:
  return "n/a" if s is None else f"{s * 1e3:.3g}"


def render(data: dict) -> str:
  env = data.get("env", {})
  secs = data["sections"]
  md = ["## GPU", "", f"Command: `{data['command']}` (from the repository root).", ""]
  if env:
    v = env["versions"]
    md += [f"- Date: {env['date_utc']} UTC; revision {env['git_revision']}",
           f"- Device: {env['device_kind']} x{env['device_count']} (JAX backend "
           f"`{env['backend']}`, {env['platform_version']}); {env['cpus']} CPU cores",
           f"- Python {env['python']}; " + ", ".join(f"{k} {x}" for k, x in v.items()),
           "- divnorm's default variance mode here: "
           + ("a run-time check that picks one-pass or two-pass" if
              env["layer_norm_default_has_conditional"]
              else "no run-time check (two-pass, as documented)")
           + "; flax's default is one-pass."]
    if env["backend"] == "cpu":
      md.append("- **This run was on CPU: its numbers are a smoke test, not results.**")
  md += ["- Every ratio is over interleaved rounds (A B A B ..., each rotation of the order "
         "run forward, then reversed): median (min-max). Times are medians over rounds, per "
         "call; small tensors are bounded by the launch of each call, not by the device.", ""]

  ops = secs.get("ops")
  if ops:
    md += ["### Presets and DN against flax.linen, like for like", "",
           "Time of divnorm / time of flax.linen in the same variance mode (below 1: divnorm "
           "is faster): `default` is each library's default (flax: one-pass), `one-pass` "
           "divnorm `fast_variance=True` against flax `use_fast_variance=True`, `two-pass` "
           "`False` against `False`. Affine parts off, flax `epsilon = sigma**2` (0.01). DN "
           f"(sigma {DN_SIGMA}, window across all channels; over the units on `[B, D]`) is "
           "against flax LayerNorm over all non-batch axes of the same tensor. BN is training "
           "mode. Forward+backward is `grad` of `<f(x), w>`. Times in ms: divnorm / flax, "
           "default mode. n/a: RMS has no variance modes; divnorm refuses one-pass where the "
           "fields have no whole axis (DN on `[B, D]`; `refused` in the JSON).", ""]
    for dtype in ("float32", "bfloat16"):
      for ps, title in (("fwd", "forward"), ("fwdbwd", "forward+backward")):
        rows = [(u, r) for u in ops["units"] if u.get("dtype") == dtype
                for r in u.get("rows", []) if r["pass"] == ps]
        if not rows:
          continue
        md += [f"#### {dtype}, {title}", "",
               "| shape | rounds | normalizer | default | one-pass | two-pass | ms divnorm / flax |",
               "|---|---|---|---|---|---|---|"]
        seen = []
        for u, r in rows:
          if (u["label"], r["preset"]) not in seen:
            seen.append((u["label"], r["preset"]))
        for label, preset in seen:
          u = next(u for u, _ in rows if u["label"] == label)
          by = {r["mode"]: r for uu, r in rows if uu is u and r["preset"] == preset}
          d = by.get("default")
          times = f"{_ms(d['ours_s'])} / {_ms(d['flax_s'])}" if d else "n/a"
          md.append(f"| {label} | {u.get('rounds', '')} | {preset} | "
                    + " | ".join(_r(by[m]["ratio"]) if m in by else "n/a" for m in MODES)
                    + f" | {times} |")
        md.append("")
    md += ["### Bandwidth against a copy", "",
           "Achieved GB/s = minimal bytes / time (forward: read x, write y; forward+backward: "
           "read x and dy, write dx), as a fraction of the GB/s of a copy of the same tensor "
           "(`x * 2`: read x, write y) in the same rounds; 1.0 is the floor, higher is "
           "better. Default variance modes. XLA bytes: `cost_analysis()` bytes accessed of "
           "the forward / (read x + write y); a run-time conditional counts both of its "
           "branches.", "",
           "| shape | dtype | copy GB/s | normalizer | fwd divnorm | fwd flax | fwd+bwd divnorm "
           "| fwd+bwd flax | XLA fwd bytes divnorm / flax |", "|---|---|---|---|---|---|---|---|---|"]
    for u in ops["units"]:
      if "bandwidth" not in u:
        continue
      bw = {(b["contender"], b["pass"]): b for b in u["bandwidth"]}
      for r in [r for r in u["rows"] if r["mode"] == "default" and r["pass"] == "fwd"]:
        cells = []
        for ps in ("fwd", "fwdbwd"):
          for n in (r["ours"], r["flax"]):
            b = bw.get((n, ps))
            cells.append(_r(b["fraction_of_copy"]) if b else "n/a")
        xb = u["fwd_bytes_over_min"]
        gb = f"{u['copy_gbps']:.3g}" if u.get("copy_gbps") else "n/a"
        md.append(f"| {u['label']} | {u['dtype']} | {gb} | {r['preset']} | "
                  + " | ".join(cells)
                  + f" | {xb.get(r['ours'], float('nan')):.2f} / "
                    f"{xb.get(r['flax'], float('nan')):.2f} |")
    md.append("")

  win = secs.get("window")
  if win and any(u.get("rows") for u in win["units"]):
    md += ["### DN window width", "",
           "Forward+backward of DN (window w x w across all channels), float32, interleaved "
           "with flax LayerNorm over the same tensor and the copy.", "",
           "| shape | width | ms | vs the smallest width | vs flax LN | fraction of copy GB/s |",
           "|---|---|---|---|---|---|"]
    for u in win["units"]:
      for r in u.get("rows", []):
        md.append(f"| {'x'.join(map(str, u['shape']))} | {r['width']} | {_ms(r['s'])} | "
                  f"{_r(r.get('vs_first'))} | {_r(r.get('vs_flax_ln'))} | "
                  f"{_r(r.get('fraction_of_copy'))} |")
    md.append("")

  mod = secs.get("models")
  if mod and any(u.get("rows") for u in mod["units"]):
    md += ["### Train steps", "",
           "Steps per second of one jitted train step (loss + sown L1 penalties, optimizer "
           "update, batch statistics), random inputs; throughput ratios to the named model "
           "(above 1: faster). Each library's default variance mode.", ""]
    for u in [u for u in mod["units"] if u.get("rows")]:
      what = ("the paper's CIFAR CNN (3 conv 5x5 layers, norm before ReLU; DN windows 5, 3, 3, "
              "sigma 0.5; DN* with L1 0.005)" if u["family"] == "CNN" else
              "2-layer LSTM LM, each gate and the cell normalized (LN-s: sigma 1, no affine)")
      md += [f"{u['family']}: {what}; {u['setup']}; {u.get('rounds', '')} rounds.", "",
             "| variant | steps/s | ms/step | vs flax same | vs flax LN | vs baseline |",
             "|---|---|---|---|---|---|"]
      for r in u.get("rows", []):
        same = f"{_r(r['vs_flax'])} ({r['vs_flax_ref']})" if "vs_flax" in r else "n/a"
        md.append(f"| {r['variant']} | {r['steps_per_s']:.1f} | {_ms(r['s'])} | {same} | "
                  f"{_r(r.get('vs_flax_ln'))} | {_r(r.get('vs_baseline'))} |")
      md.append("")

  pt = secs.get("pytest")
  if pt and pt.get("result"):
    p = pt["result"]
    md += ["### Numerics tests on the device", "",
           f"`{p['command']}` on {', '.join(f'`{f}`' for f in p['files'])} (side by side): "
           f"**{p['summary']}** in {p['wall_s']:.0f} s (limit {p['time_limit_s']:.0f} s); "
           f"backend `{p['backend']}`, {p['device']}. Output: `pytest.txt`.", ""]
    md += [f"- `{ln}`" for ln in p["failures"]]
    md.append("")

  md += ["### Time spent", "",
         "Compile: functions compiled, their tracing time, and the wall time of tracing "
         "and compiling them (in parallel threads) / the sum of the compile times.", "",
         "| section | status | wall s | functions | trace s | trace+compile s (sum) | notes |",
         "|---|---|---|---|---|---|---|"]
  for name, s in secs.items():
    notes = "; ".join(s.get("notes", []))
    log = [c for u in s.get("units", []) for c in u.get("compile_log", [])]
    n, trace = sum(c["functions"] for c in log), sum(c["trace_s"] for c in log)
    wall, total = sum(c["wall_s"] for c in log), sum(c["compile_sum_s"] for c in log)
    md.append(f"| {name} | {s['status']} | {s['wall_s']:.0f} | {n} | {trace:.0f} | "
              f"{wall:.0f} ({total:.0f}) | {notes} |")
  md += ["", f"Total wall time {data.get('elapsed_s', 0):.0f} s (budget {data.get('budget_s')} "
         "s, from process start).", ""]
  return "\n".join(md)

