"""The benchmark commands' argument types: a bad value is argparse's usage error (exit 2,
naming the flag and what it takes), not a traceback after the compiling has begun."""

from __future__ import annotations

import argparse
import pathlib

from experiments.config import positive_int  # counts (--rounds), as the experiments take them

__all__ = ["existing_file", "names_of", "positive_int", "shapes"]


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
