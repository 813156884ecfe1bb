"""Which cases of a parametrized experiment test run in the quick tier (the rest are slow).

The quick tier (`pytest -m "not slow"`) keeps one real step per experiment on shrunk
settings; the other cells and variants of the same test run with the slow tier.
"""

import pytest


def smoke_first(cases, quick):
  """`cases` for `parametrize`: those in `quick` as they are, the others marked slow."""
  return [c if c in quick else pytest.param(*(c if isinstance(c, tuple) else (c,)),
                                            marks=pytest.mark.slow) for c in cases]
