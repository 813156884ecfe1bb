"""Markdown for BENCHMARKS.md: machine, versions, command, tables and the targets."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys

import jax

from benchmarks.ops import Row


def machine() -> list[str]:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  versions = []
  for pkg in ("jax", "jaxlib", "flax", "numpy", "optax"):
    try:
      versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
    except importlib.metadata.PackageNotFoundError:
      pass
  dev = jax.devices()[0]
  return [
      f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
      f"- Machine: {cpu}, {os.cpu_count()} cores visible, {platform.system()} "
      f"{platform.release()}; JAX backend `{dev.platform}` ({dev.device_kind}), "
      f"{jax.device_count()} device(s)",
      f"- Python {platform.python_version()}; " + ", ".join(versions),
      f"- XLA_FLAGS: `{os.environ.get('XLA_FLAGS', '')}`",
  ]


def ms(s: float) -> str:
  return f"{s * 1e3:.2f}" if s < 10 else f"{s * 1e3:.0f}"


def mib(b: int) -> str:
  return f"{b / 2**20:.1f}"


def fwd_bytes(r: Row) -> str:
  """Forward bytes accessed over the minimum (input read + output written)."""
  return f"{r.bytes_ratio:.2f}"


def preset_table(rows: list[Row], x_bytes: int) -> list[str]:
  lines = [
      "| contender | fwd ms | fwd vs flax | fwd+bwd ms | fwd+bwd vs flax | fwd vs copy | "
      "fwd+bwd vs copy | fwd bytes / min | fwd+bwd temp MiB |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    flax_ref = f"flax {r.name}" if f"flax {r.name}" in r.fwd else None
    lines.append(
        f"| {r.name} | {ms(r.fwd_s)} | {r.fwd[flax_ref] if flax_ref else ''} | "
        f"{ms(r.fwdbwd_s)} | {r.fwdbwd[flax_ref] if flax_ref else ''} | "
        f"{r.fwd.get('copy x*2', '')} | {r.fwdbwd.get('copy x*2', '')} | "
        f"{fwd_bytes(r)} | {mib(r.temp_bytes)} |")
  lines.append(f"\nInput {mib(x_bytes)} MiB. Ratios: time(row) / time(reference), median of "
               "interleaved rounds (min-max).")
  return lines


def dn_table(rows: list[Row]) -> list[str]:
  lines = ["| divnorm | vs | fwd | fwd+bwd |", "|---|---|---|---|"]
  for r in rows:
    if r.name not in ("DN", "DN zeros", "LN"):
      continue
    for ref in r.fwd:
      if ref == "copy x*2" or (r.name == "LN" and ref == "flax LN"):
        continue
      lines.append(f"| {r.name} | {ref} | {r.fwd[ref]} | {r.fwdbwd[ref]} |")
  return lines


def ratio_table(rows: list[Row], title: str) -> list[str]:
  lines = [f"| {title} | fwd ms | fwd ratio | fwd+bwd ms | fwd+bwd ratio | fwd bytes / min | "
           "fwd+bwd temp MiB |", "|---|---|---|---|---|---|---|"]
  for r in rows:
    ref = next(iter(r.fwd), None)
    lines.append(f"| {r.name} | {ms(r.fwd_s)} | {r.fwd[ref] if ref else ''} | {ms(r.fwdbwd_s)} | "
                 f"{r.fwdbwd[ref] if ref else ''} | {fwd_bytes(r)} | {mib(r.temp_bytes)} |")
  return lines


def print_command(module: str, argv) -> None:
  """Prints ``python -m <module> <argv>`` (`argv` None: the process's) and `machine`."""
  cmd = f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:])
  print("\n".join([f"Command: `{cmd.strip()}`", "", *machine(), ""]), flush=True)
