"""Whether a change altered what XLA runs: the compiled programs, now and at a past revision.

For a refactor that should not change speed, equal compiled programs settle the question
without timing. Each case is ``jit(grad(sum(f(x))))`` of a module (flax's settings) or a
function, with and without a mask (and one bfloat16 layer), compiled on this machine; its fingerprint is a hash of the compiled HLO's
instruction lines with source metadata stripped. ``--rev REV`` runs the same cases on
REV's `divnorm` (``git archive``) in a subprocess and prints both.

    python -m benchmarks.same_program [--rev REV]

Exit status 1 if any program differs from REV's.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHAPE = (8, 6, 6, 16)


def _cases() -> dict:
  """name -> ``loss(params, x)``, with its params: the modules' and functions' gradients."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  import divnorm
  from divnorm import linen as dl

  x = jnp.ones(SHAPE)
  mask = np.arange(np.prod(SHAPE)).reshape(SHAPE) % 5 != 0  # a constant of the program
  modules = {
      "LayerNorm": dl.LayerNorm(), "LayerNorm(H,W,C)": dl.LayerNorm(reduction_axes=(1, 2, 3)),
      "LayerNorm two-pass": dl.LayerNorm(use_fast_variance=False), "RMSNorm": dl.RMSNorm(),
      "GroupNorm": dl.GroupNorm(4), "InstanceNorm": dl.InstanceNorm(),
      "BatchNorm": dl.BatchNorm(use_running_average=False),
      "DivisiveNorm": dl.DivisiveNorm((3, 3), sigma=0.5)}
  variants = {  # name -> (module, the input as the module takes it, its call's keywords)
      **{name: (m, lambda x: x, {}) for name, m in modules.items()},
      "LayerNorm bfloat16": (dl.LayerNorm(), lambda x: x.astype(jnp.bfloat16), {}),
      **{f"{name} masked": (modules[name], lambda x: x, {"mask": mask})
         for name in ("LayerNorm", "LayerNorm two-pass", "GroupNorm", "BatchNorm")}}
  cases = {}
  for name, (m, cast, kw) in variants.items():
    variables = m.init(jax.random.key(0), cast(x))
    cases[name] = (lambda p, x, m=m, v=variables, cast=cast, kw=kw: m.apply(
        {**v, "params": p}, cast(x), mutable=["batch_stats"], **kw)[0].astype(
            jnp.float32).sum(), variables.get("params", {}))
  stats = divnorm.BatchStats(jnp.zeros(SHAPE[-1]), jnp.ones(SHAPE[-1]))
  functions = {
      "normalize": lambda x: divnorm.normalize(x, (1, 2, 3), sigma=0.1),
      "rms_norm": divnorm.rms_norm,
      "batch_norm": lambda x: divnorm.batch_norm(x, stats, training=True)[0],
      "normalize masked": lambda x: divnorm.normalize(x, (1, 2, 3), sigma=0.1, mask=mask),
      "normalize one-pass masked": lambda x: divnorm.normalize(
          x, (1, 2, 3), sigma=0.1, mask=mask, fast_variance=True),
      "rms_norm masked": lambda x: divnorm.rms_norm(x, mask=mask)}
  for name, f in functions.items():
    cases[name] = (lambda p, x, f=f: f(x).sum(), {})
  return cases


def instructions(hlo: str) -> list[str]:
  """The instruction lines of compiled HLO text, without metadata (source lines, names)."""
  hlo = re.sub(r", *(metadata|frontend_attributes)=\{[^}]*\}|, *stack_frame_id=\d+", "", hlo)
  return [line.strip() for line in hlo.splitlines() if " = " in line
          and "file_name_id" not in line]


def fingerprints() -> dict[str, str]:
  """name -> sha256 (12 hex digits) of each case's compiled gradient program."""
  import jax
  import jax.numpy as jnp

  x, out = jnp.ones(SHAPE), {}
  for name, (loss, params) in _cases().items():
    hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(params, x).compile().as_text()
    out[name] = hashlib.sha256("\n".join(instructions(hlo)).encode()).hexdigest()[:12]
  return out


def at_revision(rev: str) -> dict[str, str]:
  """`fingerprints` with REV's `divnorm` package (this checkout's benchmarks)."""
  tar = subprocess.run(["git", "archive", rev, "divnorm"], cwd=ROOT, capture_output=True,
                       check=True).stdout
  with tempfile.TemporaryDirectory(prefix="divnorm_rev_") as tmp:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
      archive.extractall(tmp, filter="data")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tmp, str(ROOT)])}
    code = ("import json, divnorm; from benchmarks.same_program import fingerprints as f; "
            f"assert divnorm.__file__.startswith({tmp!r}), divnorm.__file__; "
            "print(json.dumps(f()))")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True,
                         text=True, check=True)
  return json.loads(run.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rev", help="a git revision to compare with")
  args = parser.parse_args(argv)
  now = fingerprints()
  before = at_revision(args.rev) if args.rev else {}
  print(f"| case | now | {args.rev or ''} | same |\n|---|---|---|---|")
  for name, digest in now.items():
    old = before.get(name, "")
    print(f"| {name} | {digest} | {old} | {'yes' if old == digest else 'no' if old else ''} |")
  return int(bool(before) and any(before.get(n) != d for n, d in now.items()))


if __name__ == "__main__":
  sys.exit(main())
