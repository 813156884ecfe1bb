"""Checks of the config fields the engine reads, before any work starts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments.config import ConfigError, check_choice, check_float, check_int, flag_for
from experiments.engine.optim import OPTIMIZERS


def check_optimizer(opt: Mapping[str, Any], *, prefix: str = "optimizer.",
                    num_steps: int | None = None) -> None:
  """`name`, `learning_rate`, `momentum`, `boundaries`, `decay`, `clip_global_norm`."""
  check_choice(opt.get("name", "momentum"), OPTIMIZERS, flag=flag_for(prefix + "name"))
  check_float(opt.get("learning_rate"), flag=flag_for(prefix + "learning_rate"), example=0.001)
  if "momentum" in opt and opt.get("name", "momentum") == "momentum":
    check_float(opt["momentum"], flag=flag_for(prefix + "momentum"), example=0.9,
                inclusive=True, maximum=1.0)
  boundaries = list(opt.get("boundaries", ()) or ())
  flag = flag_for(prefix + "boundaries")
  if (any(isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in boundaries)
      or boundaries != sorted(boundaries)):
    raise ConfigError(f"{flag}={boundaries!r}: must be increasing step numbers >= 0; e.g. "
                      f"{flag}=[300,500].")
  decay = opt.get("decay", 0.1)
  for d in (decay if isinstance(decay, (list, tuple)) else [decay]):
    check_float(d, flag=flag_for(prefix + "decay"), example=0.1)
  if isinstance(decay, (list, tuple)) and len(decay) != len(boundaries):
    raise ConfigError(f"{flag_for(prefix + 'decay')}={list(decay)!r}: one factor for every "
                      f"boundary ({len(boundaries)}), or a single factor; e.g. "
                      f"{flag_for(prefix + 'decay')}=0.1.")
  clip = opt.get("clip_global_norm", 0.0)
  check_float(0.0 if clip is None else clip, flag=flag_for(prefix + "clip_global_norm"),
              example=5.0, inclusive=True)


def check_engine_config(config: Mapping[str, Any], mesh=None) -> None:
  """Checks `seed`, `num_steps`, `batch_size`, `optimizer` and the `*_every` fields.

  Args:
    config: the engine's config (see `train`).
    mesh: when given, `batch_size` (and `eval_batch_size`) must split over its devices.

  Raises:
    ConfigError: naming the field's `--set` flag, the bad value and a valid example.
  """
  check_int(config.get("seed", 0), flag=flag_for("seed"), minimum=0, example=0)
  check_int(config.get("num_steps"), flag=flag_for("num_steps"), example=600)
  check_int(config.get("batch_size"), flag=flag_for("batch_size"), example=100)
  if config.get("eval_batch_size") is not None:
    check_int(config["eval_batch_size"], flag=flag_for("eval_batch_size"), example=100)
  for key, example in (("log_every", 100), ("eval_every", 1000), ("checkpoint_every", 1000)):
    if config.get(key) is not None:
      check_int(config[key], flag=flag_for(key), minimum=0, example=example)
  check_optimizer(config.get("optimizer") or {})
  if mesh is not None:
    from experiments.engine.parallel import check_batch_size
    check_batch_size(config["batch_size"], mesh)
    if config.get("eval_batch_size") is not None:
      check_batch_size(config["eval_batch_size"], mesh, name="eval_batch_size")
