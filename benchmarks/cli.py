"""The benchmark commands' argument types: a bad value is argparse's usage error (exit 2,
naming the flag and what it takes), not a traceback after the compiling has begun."""

from __future__ import annotations

import argparse
import pathlib

from experiments.config import positive_int  # counts (--rounds), as the experiments take them

__all__ = ["existing_file", "library_args", "names_of", "positive_int", "shapes"]


def names_of(known):
  """A comma-separated list of names, each one of `known` (``--cases LN,BN``)."""
  def parse(text: str) -> list[str]:
    names = text.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
      raise argparse.ArgumentTypeError(
          f"{', '.join(map(repr, unknown))} not known; choose from {','.join(known)}")
    return names
  return parse


def shapes(text: str) -> list[tuple[int, ...]]:
  """``"64x1024x16,8x512x768"`` -> ``[(64, 1024, 16), (8, 512, 768)]`` (``--shapes``)."""
  try:
    parsed = [tuple(int(n) for n in shape.split("x")) for shape in text.split(",")]
  except ValueError:
    parsed = []
  if not parsed or any(n < 1 for shape in parsed for n in shape):
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a list of shapes of positive sizes, e.g. 64x1024x16,8x512x768")
  return parsed


def existing_file(text: str) -> pathlib.Path:
  """A file that is there (an HLO target, a report to compare with)."""
  path = pathlib.Path(text)
  if not path.is_file():
    raise argparse.ArgumentTypeError(f"{text!r} is not a file")
  return path


def library_args(description: str, layers, dtypes, cases, quick_cases, argv):
  """``(args, cases, rounds)`` of a benchmark of divnorm's layers against one library's own
  (`benchmarks.haiku`, `benchmarks.equinox`): --rounds, --quick (`quick_cases`, one round),
  --cases (`layers`' names: those of `cases` to run) and --dtypes (`dtypes`' names)."""
  p = argparse.ArgumentParser(description=description)
  p.add_argument("--rounds", type=positive_int(15), default=15)
  p.add_argument("--quick", action="store_true", help="tiny shapes, one round (CI)")
  p.add_argument("--cases", default=",".join(layers), type=names_of(layers))
  p.add_argument("--dtypes", default="float32,bfloat16", type=names_of(dtypes))
  args = p.parse_args(argv)
  chosen = [(c, s) for c, s in (quick_cases if args.quick else cases) if c in args.cases]
  return args, chosen, 1 if args.quick else args.rounds
