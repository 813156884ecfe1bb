"""One description of each Flax-named module's arguments, shared by linen and nnx.

Each `ModuleSpec` lists Flax 0.12.8's constructor arguments in Flax's order, with Flax's
defaults, for linen (dataclass fields) and for nnx (``__init__``), then divnorm's
additions, which are keyword-only in both. `divnorm._src.linen` and `divnorm._src.nnx`
build their classes' signatures and docstrings from these specs, and
`tests/test_module_specs.py` checks them against flax's own signatures, so the
modules accept exactly what Flax's accept, in the same positions.

``epsilon`` and ``sigma`` are two spellings of one setting: ``epsilon == sigma**2``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import jax.numpy as jnp
from flax import nnx
from flax.linen import initializers as linen_init
from flax.nnx.nn import dtypes as nnx_dtypes

REQUIRED = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class Arg:
  """One constructor argument: its name, default and meaning."""

  name: str
  default: Any = REQUIRED
  doc: str = ""


def _docs() -> dict[str, str]:
  return {
    "use_running_average": "normalize with the running statistics (evaluation) instead of "
                           "the batch's; the call's argument takes precedence.",
    "axis": "the feature axis (or axes): each keeps its own statistics.",
    "momentum": "decay of the running averages: new = momentum * old + (1 - momentum) * batch.",
    "epsilon": "added to the variance (Flax's spelling; ``epsilon == sigma**2``).",
    "dtype": "dtype of the result (None: inferred from the input and the parameters, as in "
             "Flax); statistics are computed in at least float32.",
    "param_dtype": "dtype of the parameters.",
    "use_bias": "add a learned per-feature bias.",
    "use_scale": "multiply by a learned per-feature scale.",
    "bias_init": "initializer of the bias.",
    "scale_init": "initializer of the scale.",
    "axis_name": "also average over this named axis (``shard_map``, ``pmap``, "
                 "``vmap(axis_name=...)``); not needed under ``jit``. linen's ``init`` "
                 "outside a mapped context skips it.",
    "axis_index_groups": "groups of devices to average over within `axis_name` (``pmap`` "
                         "only; divnorm raises NotImplementedError when it is set).",
    "use_fast_variance": "Flax's one-pass variance flag. True (Flax's default): divnorm's "
                         "default statistics, accurate at any offset; False: two-pass. "
                         "``fast_variance`` overrides it (True: Flax's one-pass formula).",
    "force_float32_reductions": "Flax's flag for float32 statistics; divnorm always computes "
                                "statistics in at least float32. False only changes the "
                                "dtype of the running statistics (param_dtype).",
    "reduction_axes": "axes the statistics reduce.",
    "feature_axes": "axes with their own learned scale and bias.",
    "num_groups": "number of channel groups (None: use `group_size`).",
    "group_size": "channels per group (set num_groups=None to use it).",
    "num_features": "size of the feature axis (an int; a tuple for several feature axes).",
    "promote_dtype": "function promoting ``(x, [mean, var,] scale, bias)`` to `dtype` "
                     "before normalizing, as in Flax nnx.",
    "rngs": "random keys (``rngs.params()`` initializes the parameters); divnorm allows None "
            "(``nnx.Rngs(0)``).",
    "bias_metadata": "metadata of the bias `nnx.Param` (e.g. sharding).",
    "scale_metadata": "metadata of the scale `nnx.Param` (e.g. sharding).",
    "layer_instance": "the wrapped layer, called with its weights transformed.",
    "n_steps": "power iterations per call.",
    "error_on_non_matrix": "raise on weights of rank > 2 (default: flatten their leading axes).",
    "collection_name": "collection of the power iteration's ``u`` and ``sigma``.",
    "update_stats": "store the power iteration's ``u`` and ``sigma`` (training).",
    "variable_filter": "which of the layer's variables to normalize (linen: substrings of "
                       "their '/'-joined paths, empty or None for all; nnx: an nnx filter).",
    # divnorm's additions
    "sigma": "the paper's smoothing term, ``sqrt(sigma^2 + var)``: another spelling of "
             "`epsilon` (``epsilon == sigma**2``); give one of the two.",
    "learn_sigma": "learn sigma as ``exp(log_sigma)`` (a parameter), initialised at sigma.",
    "l1_alpha": "if > 0, add ``l1_alpha * mean(|v|)`` of the centered input to the losses "
                "(linen: sown into ``'losses'``; nnx: a `Penalty` variable).",
    "fast_variance": "divnorm's statistics mode, overriding `use_fast_variance`: True: "
                     "Flax's one-pass ``E[x^2] - E[x]^2``; False: two-pass; None: from "
                     "use_fast_variance.",
    "channel_axis": "divnorm's name for a single feature axis (an alias).",
  }


DOCS = _docs()


def arg(name: str, default: Any = REQUIRED) -> Arg:
  return Arg(name, default, DOCS[name])


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
  """A module's constructor: Flax's arguments (linen and nnx) and divnorm's additions.

  Attributes:
    name: the class name (Flax's).
    summary: the first line of its docstring.
    linen: Flax linen's dataclass fields, in order (all positional-or-keyword).
    nnx: Flax nnx's ``__init__`` arguments, in order.
    nnx_positional: how many of `nnx` are positional-or-keyword; the rest are keyword-only.
    extras: divnorm's additions, keyword-only in both.
    default_epsilon: Flax's default epsilon (epsilon at this value counts as not given).
  """

  name: str
  summary: str
  linen: tuple[Arg, ...]
  nnx: tuple[Arg, ...]
  nnx_positional: int
  extras: tuple[Arg, ...]
  default_epsilon: float

  def linen_fields(self) -> dict[str, Any]:
    """Class-body entries for a linen dataclass: Flax's fields, then keyword-only extras."""
    annotations: dict[str, Any] = {a.name: Any for a in self.linen}
    annotations["_"] = dataclasses.KW_ONLY
    annotations.update({a.name: Any for a in self.extras})
    body: dict[str, Any] = {"__annotations__": annotations}
    for a in (*self.linen, *self.extras):
      if a.default is not REQUIRED:
        body[a.name] = _field_default(a.default)
    return body

  def nnx_signature(self) -> inspect.Signature:
    """``__init__``'s signature (with ``self``): Flax nnx's, then keyword-only extras."""
    kinds = [inspect.Parameter.POSITIONAL_OR_KEYWORD] * self.nnx_positional + [
      inspect.Parameter.KEYWORD_ONLY] * (len(self.nnx) - self.nnx_positional)
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(a.name, k, default=a.default)
               for a, k in zip(self.nnx, kinds, strict=True)]
    params += [inspect.Parameter(a.name, inspect.Parameter.KEYWORD_ONLY, default=a.default)
               for a in self.extras]
    return inspect.Signature(params)

  def docstring(self, api: str) -> str:
    args = self.linen if api == "linen" else self.nnx
    lines = [self.summary, "", "Flax 0.12.8's arguments, in Flax's order:", ""]
    lines += [f"  {a.name}: {a.doc}" for a in args]
    lines += ["", "divnorm's additions (keyword-only):", ""]
    lines += [f"  {a.name}: {a.doc}" for a in self.extras]
    return "\n".join(lines)


def _field_default(default):
  # Mutable defaults (a set) need a factory in a dataclass.
  if isinstance(default, set):
    return dataclasses.field(default_factory=lambda: set(default))
  return default


def _affine_linen(scale_default=True, bias=True):
  out = [arg("epsilon", 1e-6), arg("dtype", None), arg("param_dtype", jnp.float32)]
  if bias:
    out.append(arg("use_bias", True))
  out.append(arg("use_scale", scale_default))
  if bias:
    out.append(arg("bias_init", linen_init.zeros))
  out.append(arg("scale_init", linen_init.ones))
  return out


_COLLECTIVE_LINEN = (arg("axis_name", None), arg("axis_index_groups", None),
                     arg("use_fast_variance", True), arg("force_float32_reductions", True))
_COLLECTIVE_NNX = (arg("axis_name", None), arg("axis_index_groups", None),
                   arg("use_fast_variance", True), arg("promote_dtype", nnx_dtypes.promote_dtype),
                   arg("rngs", None))
_EXTRAS = (arg("sigma", None), arg("learn_sigma", False), arg("l1_alpha", 0.0),
           arg("fast_variance", None))


def _nnx_affine(epsilon=1e-6, bias=True, init_style="init"):
  zeros = nnx.initializers.zeros_init() if init_style == "init" else nnx.initializers.zeros
  ones = nnx.initializers.ones_init() if init_style == "init" else nnx.initializers.ones
  out = [arg("epsilon", epsilon), arg("dtype", None), arg("param_dtype", jnp.float32)]
  if bias:
    out.append(arg("use_bias", True))
  out.append(arg("use_scale", True))
  if bias:
    out.append(arg("bias_init", zeros))
  out.append(arg("scale_init", ones))
  return out


_METADATA = (arg("bias_metadata", {}), arg("scale_metadata", {}))

BATCH_NORM = ModuleSpec(
  name="BatchNorm",
  summary="Batch normalization, Flax's signature; running statistics in ``batch_stats``.",
  linen=(arg("use_running_average", None), arg("axis", -1), arg("momentum", 0.99),
         arg("epsilon", 1e-5), *_affine_linen()[1:], *_COLLECTIVE_LINEN),
  nnx=(arg("num_features"), arg("use_running_average", False), arg("axis", -1),
       arg("momentum", 0.99), *_nnx_affine(epsilon=1e-5), *_COLLECTIVE_NNX, *_METADATA),
  nnx_positional=1,
  extras=(*_EXTRAS, Arg("feature_axes", None, "divnorm's former name of `axis` (an alias).")),
  default_epsilon=1e-5,
)

LAYER_NORM = ModuleSpec(
  name="LayerNorm",
  summary="Layer normalization over `reduction_axes`, affine over `feature_axes`; "
          "Flax's signature.",
  linen=(*_affine_linen(), arg("reduction_axes", -1), arg("feature_axes", -1),
         *_COLLECTIVE_LINEN),
  nnx=(arg("num_features"), *_nnx_affine(), arg("reduction_axes", -1), arg("feature_axes", -1),
       *_COLLECTIVE_NNX, *_METADATA),
  nnx_positional=1,
  extras=_EXTRAS,
  default_epsilon=1e-6,
)

RMS_NORM = ModuleSpec(
  name="RMSNorm",
  summary="RMS normalization (no centering) over `reduction_axes`; Flax's signature.",
  linen=(*_affine_linen(bias=False), arg("reduction_axes", -1), arg("feature_axes", -1),
         *_COLLECTIVE_LINEN),
  nnx=(arg("num_features"), *_nnx_affine(bias=False, init_style="plain"),
       arg("reduction_axes", -1), arg("feature_axes", -1), *_COLLECTIVE_NNX,
       arg("scale_metadata", {})),
  nnx_positional=1,
  extras=_EXTRAS,
  default_epsilon=1e-6,
)

GROUP_NORM = ModuleSpec(
  name="GroupNorm",
  summary="Group normalization over channel groups (the last axis); Flax's signature.",
  linen=(arg("num_groups", 32), arg("group_size", None), *_affine_linen(),
         arg("reduction_axes", None), *_COLLECTIVE_LINEN),
  nnx=(arg("num_features"), arg("num_groups", 32), arg("group_size", None), *_nnx_affine(),
       arg("reduction_axes", None), *_COLLECTIVE_NNX, *_METADATA),
  nnx_positional=3,
  extras=(*_EXTRAS, Arg("channel_axis", -1, "the channel axis, if not the last (divnorm's)")),
  default_epsilon=1e-6,
)

INSTANCE_NORM = ModuleSpec(
  name="InstanceNorm",
  summary="Instance normalization: every axis but the batch (0) and `feature_axes`; "
          "Flax's signature.",
  linen=(*_affine_linen(), arg("feature_axes", -1), *_COLLECTIVE_LINEN),
  nnx=(arg("num_features"), *_nnx_affine(init_style="plain"), arg("feature_axes", -1),
       *_COLLECTIVE_NNX, *_METADATA),
  nnx_positional=1,
  extras=(*_EXTRAS, Arg("channel_axis", None, "divnorm's former name of `feature_axes`.")),
  default_epsilon=1e-6,
)

_WRAPPER_EXTRAS = (Arg("sigma", None, "another spelling of `epsilon` (epsilon == sigma**2)."),)

WEIGHT_NORM = ModuleSpec(
  name="WeightNorm",
  summary="L2 weight normalization of a wrapped layer's variables (Salimans & Kingma); "
          "Flax's signature.",
  linen=(arg("layer_instance"), arg("epsilon", 1e-12), arg("dtype", None),
         arg("param_dtype", jnp.float32), arg("use_scale", True),
         arg("scale_init", linen_init.ones), Arg("feature_axes", -1, DOCS["feature_axes"]),
         arg("variable_filter", {"kernel"})),
  nnx=(arg("layer_instance"), Arg("feature_axes", -1, DOCS["feature_axes"]),
       arg("use_scale", True), arg("scale_init", nnx.initializers.ones),
       arg("epsilon", 1e-12), arg("dtype", None), arg("param_dtype", jnp.float32),
       arg("variable_filter", nnx.PathContains("kernel")),
       arg("promote_dtype", nnx_dtypes.promote_dtype), arg("rngs", None)),
  nnx_positional=1,
  extras=_WRAPPER_EXTRAS,
  default_epsilon=1e-12,
)

SPECTRAL_NORM = ModuleSpec(
  name="SpectralNorm",
  summary="Spectral normalization of a wrapped layer's weights (Miyato et al.); "
          "Flax's signature.",
  linen=(arg("layer_instance"), arg("n_steps", 1), arg("epsilon", 1e-12), arg("dtype", None),
         arg("param_dtype", jnp.float32), arg("error_on_non_matrix", False),
         arg("collection_name", "batch_stats")),
  nnx=(arg("layer_instance"), arg("n_steps", 1), arg("epsilon", 1e-12), arg("dtype", None),
       arg("param_dtype", jnp.float32), arg("error_on_non_matrix", False),
       arg("update_stats", True), arg("rngs", None)),
  nnx_positional=1,
  extras=_WRAPPER_EXTRAS,
  default_epsilon=1e-12,
)

SPECS: dict[str, ModuleSpec] = {
  s.name: s for s in (BATCH_NORM, LAYER_NORM, RMS_NORM, GROUP_NORM, INSTANCE_NORM,
                      WEIGHT_NORM, SPECTRAL_NORM)
}


def bind_nnx(spec: ModuleSpec, args: tuple, kwargs: dict) -> dict[str, Any]:
  """nnx ``__init__``'s arguments by name, defaults filled in, as Flax's signature binds."""
  bound = spec.nnx_signature().bind(None, *args, **kwargs)
  bound.apply_defaults()
  values = dict(bound.arguments)
  del values["self"]
  return values


def is_iterable_filter(value) -> bool:
  return isinstance(value, Iterable) and not isinstance(value, str | bytes)


Initializer = Callable[..., Any]
