"""``python -m benchmarks.gpu_kernels``: the kernels XLA's GPU compiler makes, without a GPU.

XLA compiles for a GPU it is given as a description (`benchmarks/targets/h200.txtpb`: an
H200) instead of a device, so the fusion decisions that `benchmarks.gpu_fusion` reads from
a device's compiled programs can be read on any machine: for each contender of
`gpu_fusion` (layer and RMS norm over the last axis, functions and modules, forward and
forward+backward), the launched kernels of its compiled program, with their kinds. No
times, and no bytes (XLA's cost analysis needs the device): a kernel count is the structure
a device run measures, not its speed.

``--dropin`` counts instead the kernels of `benchmarks.dropin`'s forward+backward programs
(every case, dtype and variance mode: flax's module, divnorm's linen module, flax's module
without affine and divnorm's function), the structure behind the device check's drop-in
tables.

``--row_lengths`` counts the kernels of layer norm over last axes of 32 to 2^20 entries:
divnorm's (`layer_norm`), the core's path forced (`core.normalized`, what the CPU runs) and
flax's two-pass. XLA fuses a row into one Triton kernel only up to a length, and
`core.FUSED_ROW_LIMIT` keeps longer rows on the core's path.

``--compare REPORT`` checks the counts against a `gpu_fusion` report from a device (e.g.
``benchmarks/gpu_runs/2026-12-04/gpu_fusion_after.md``) and lists the rows that differ.

Needs JAX's CUDA plugin at the installed jaxlib's version, and no GPU (a separate
environment keeps it out of the project's)::

    python -m venv /tmp/gpu-env
    /tmp/gpu-env/bin/pip install "jax[cuda12]==$(python -c 'import jax; print(jax.__version__)')" \\
      flax optax
    PYTHONPATH=. /tmp/gpu-env/bin/python -m benchmarks.gpu_kernels --out /tmp/gk \\
      [--compare benchmarks/gpu_runs/2026-12-04/gpu_fusion_after.md]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

# Compile for the described device; JAX's check of the local CUDA installation needs one.
os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import cli, dropin, gpu_fusion, report  # noqa: E402

TARGET = pathlib.Path(__file__).parent / "targets" / "h200.txtpb"


def compiler(target: pathlib.Path = TARGET):
  """``spec(shape, dtype)``: an argument for the described GPU (a `ShapeDtypeStruct` on
  its one device), for ``jit(f).lower(...).compile()`` without the device."""
  from jax.experimental import topologies
  topology = topologies.get_topology_desc(platform="cuda", target_config=target.read_text(),
                                          topology="1x1x1")
  mesh = topologies.make_mesh(topology, (1,), ("device",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return lambda shape, dtype: jax.ShapeDtypeStruct(shape, jnp.dtype(dtype), sharding=sharding)


def compiled_kernels(fn, *args) -> list[str]:
  """The launched kernels of ``fn.lower(*args).compile()`` (`gpu_fusion.kernels`)."""
  return gpu_fusion.kernels(fn.lower(*args).compile().as_text())


def programs(spec, shape, dtype) -> dict:
  """Group -> contender -> pass -> ``(jitted, args)``, as `gpu_fusion` builds them."""
  x, w = spec(shape, dtype), spec(shape, jnp.float32)
  groups = {k: {n: gpu_fusion._function_programs(f, x, w) for n, f in fs.items()}
            for k, fs in gpu_fusion.functional().items()}
  for kind, ms in gpu_fusion.modules().items():
    groups[kind] = {}
    for name, module in ms.items():
      params = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(
          shape, jnp.dtype(dtype)))["params"]
      params = jax.tree.map(lambda p: spec(p.shape, p.dtype), params)
      groups[kind][name] = {
          "fwd": (jax.jit(lambda x, p, m=module: m.apply({"params": p}, x)), (x, params)),
          **gpu_fusion._module_programs(module, x, w, params)}
  return groups


def rows(spec, shapes) -> list[tuple[str, str, str, list[str]]]:
  """``(label, pass, contender, kernels)`` for every program."""
  out = []
  for shape, dtype in shapes:
    for kind, contenders in programs(spec, shape, dtype).items():
      label = f"{kind} {'x'.join(map(str, shape))} {dtype}"
      for pass_name in ("fwd", "fwd+bwd"):
        for name, progs in contenders.items():
          fn, args = progs[pass_name]
          out.append((label, pass_name, name, compiled_kernels(fn, *args)))
  return out


def dropin_rows(spec) -> list[str]:
  """Table rows: the kernels of each `benchmarks.dropin` contender (forward+backward)."""
  out = []
  for case, shape in dropin.CASES:
    if case == "DN":
      continue
    for dtype in dropin.DTYPES:
      x0 = jnp.zeros(shape, dtype)
      x, w = spec(shape, dtype), spec(shape, jnp.float32)
      for mode, fast in dropin.MODES.items():
        theirs, ours, apply_kw = dropin._modules(case, shape, fast)
        bare, _, bare_kw = dropin._modules(case, shape, fast, use_scale=False, use_bias=False)
        counts = []
        for module, kw in ((theirs, apply_kw), (ours, apply_kw), (bare, bare_kw)):
          step, params = dropin._module_step(module, kw, x0)
          counts.append(len(compiled_kernels(
              step, x, jax.tree.map(lambda p: spec(p.shape, p.dtype), params), w, None)))
        f = dropin._functional(case, shape, fast, bare.epsilon)
        counts.append(len(compiled_kernels(dropin._function_step(f), x, w, None)))
        out.append(f"| {case} {'x'.join(map(str, shape))} | {dtype} | {mode} | "
                   + " | ".join(map(str, counts)) + " |")
  return out


ROW_SHAPES = [(20, 800), (4096, 32), (1024, 128), (256, 2048), (128, 4096), (64, 8192),
              (32, 16384), (3, 5, 12289), (8, 16392), (16, 32768), (16, 65536), (4, 2**20)]


def row_length_rows(spec, shapes=ROW_SHAPES) -> list[str]:
  """Table rows: kernels forward / forward+backward of layer norm over the last axis:
  divnorm's, the core's path forced and flax's two-pass (`gpu_fusion.row_length_contenders`)."""
  forms = gpu_fusion.row_length_contenders()
  contenders = [forms[n] for n in ("divnorm", "core two-pass", "flax two-pass")]
  out = []
  for shape in shapes:
    x, w = spec(shape, jnp.float32), spec(shape, jnp.float32)
    cells = []
    for f in contenders:
      progs = gpu_fusion._function_programs(f, x, w)
      cells.append(" / ".join(str(len(compiled_kernels(fn, *args)))
                              for fn, args in progs.values()))
    out.append(f"| {'x'.join(map(str, shape))} | " + " | ".join(cells) + " |")
  return out


def device_counts(report_text: str) -> dict:
  """``(label, pass, contender) -> (count, kinds)`` from a `gpu_fusion` report."""
  counts = {}
  for line in report_text.splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) > 6 and cells[2] in ("fwd", "fwd+bwd") and cells[4].isdigit():
      counts[tuple(cells[1:4])] = (int(cells[4]), cells[5])
  return counts


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--out", default=os.environ.get("OUT") or "gpu_kernels_out")
  p.add_argument("--target", type=cli.existing_file, default=TARGET)
  p.add_argument("--compare", type=cli.existing_file, help="a gpu_fusion report from a device")
  p.add_argument("--quick", action="store_true", help="gpu_fusion's quick shape only")
  p.add_argument("--dropin", action="store_true", help="benchmarks.dropin's programs instead")
  p.add_argument("--row_lengths", action="store_true", help="LN over last axes of any length")
  args = p.parse_args(argv)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  spec = compiler(args.target)
  cmd = "python -m benchmarks.gpu_kernels " + " ".join(argv if argv is not None else sys.argv[1:])
  device = [ln for ln in args.target.read_text().splitlines() if "device_description_str" in ln]
  revision = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                            text=True, cwd=pathlib.Path(gpu_fusion.__file__).parent).stdout
  lines = [f"Command: `{cmd.strip()}`", "", *report.machine()[:1],
           f"- divnorm at `{revision.strip() or 'unknown'}`",
           f"- Compiled by jax {jax.__version__} for {device[0].split(':', 1)[1].strip()} "
           f"(`{args.target.name}`), without the device", "",
           "Kernels: the launched operations of XLA's compiled entry computation "
           "(`gpu_fusion.kernels`). XLA has no cost analysis for a program compiled without its "
           "device: no bytes, no times.", ""]
  table = None
  if args.dropin:
    table = (["Forward+backward (`benchmarks.dropin`'s programs): kernels of each.", "",
              "| case | dtype | flax's mode | flax | divnorm.linen | flax, no affine | "
              "functional |", "|---|---|---|---|---|---|---|"], dropin_rows)
  elif args.row_lengths:
    table = (["Layer norm over the last axis, float32: kernels forward / forward+backward.", "",
              "| shape | divnorm.layer_norm | the core's path | flax two-pass |",
              "|---|---|---|---|"], row_length_rows)
  if table is not None:
    header, table_rows = table
    lines += header
    for row in table_rows(spec):
      lines.append(row)
      print(row, flush=True)
    (out / "gpu_kernels.md").write_text("\n".join(lines) + "\n")
    return 0
  measured = device_counts(args.compare.read_text()) if args.compare else {}
  header = "| shape dtype | pass | contender | kernels | which |"
  if measured:
    header += " on the device |"
  lines += [header, "|" + "---|" * (header.count("|") - 1)]
  same = differ = 0
  for label, pass_name, name, ks in rows(
      spec, gpu_fusion.SHAPES["quick" if args.quick else "full"]):
    row = f"| {label} | {pass_name} | {name} | {len(ks)} | {gpu_fusion.summary(ks)} |"
    if measured:
      on_device = measured.get((label, pass_name, name))
      if on_device is not None:
        agree = on_device == (len(ks), gpu_fusion.summary(ks))
        same, differ = same + agree, differ + (not agree)
        row += " same |" if agree else f" {on_device[0]} ({on_device[1]}) |"
      else:
        row += " |"
    lines.append(row)
    print(row, flush=True)
  if measured:
    lines += ["", f"Against `{args.compare}`: {same} programs compiled to the same kernels as "
              f"on the device, {differ} differ."]
    print(lines[-1])
  (out / "gpu_kernels.md").write_text("\n".join(lines) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
