"""The one training loop: jitted data-parallel step, checkpoints, metrics, eval."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from experiments.config import ConfigError
from experiments.engine import heap, parallel
from experiments.engine.checkpoint import Checkpointer
from experiments.engine.checks import check_engine_config
from experiments.engine.optim import learning_rate_schedule, make_optimizer
from experiments.engine.prefetch import prefetch
from experiments.engine.task import Task, TrainState, default_finalize
from experiments.engine.workdir import check_workdir, hold_workdir, save_config
from experiments.engine.writers import MetricWriter, eval_row_lost

Hook = Callable[[int, TrainState], None]
StopRule = Callable[[int, TrainState], bool]


def _on_all_processes(flag: bool) -> bool:
  """Process 0's `flag`, on every process."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils
  return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


@dataclasses.dataclass
class TrainResult:
  """What `train` returns.

  Attributes:
    train_state: the final TrainState (global arrays on the mesh).
    history: host-side rows written to the metric files (train and eval).
    eval_metrics: the final evaluation ({} without an eval function).
    start_step: the step training (re)started from.
    steps_per_second: measured over the steps this call ran.
    stopped_early: the stop rule ended training before `num_steps` (at
      `train_state.step`).
  """
  train_state: TrainState
  history: list[dict[str, Any]]
  eval_metrics: dict[str, float]
  start_step: int
  steps_per_second: float
  stopped_early: bool = False


def _split_variables(variables: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
  variables = dict(variables)
  variables.pop("losses", None)
  params = variables.pop("params")
  return params, variables


def make_train_step(task: Task, tx: optax.GradientTransformation) -> Callable:
  """The pure train step `(train_state, batch) -> (train_state, metrics)`."""

  def step_fn(ts: TrainState, batch):
    rng = jax.random.fold_in(ts.rng, ts.step)
    grad_fn = jax.value_and_grad(task.loss, has_aux=True)
    (loss, (new_state, metrics)), grads = grad_fn(ts.params, ts.state, batch, rng, True)
    updates, opt_state = tx.update(grads, ts.opt_state, ts.params)
    params = optax.apply_updates(ts.params, updates)
    metrics = {**metrics, "loss": loss}
    return TrainState(ts.step + 1, params, opt_state, new_state, ts.rng), metrics

  return step_fn


def init_train_state(task: Task, tx: optax.GradientTransformation, batch, *, seed: int,
                     mesh: Mesh) -> TrainState:
  """Initialises params/state from `batch` (a global batch) and places them."""
  rng = jax.random.PRNGKey(seed)
  init_rng, train_rng = jax.random.split(rng)
  rep = parallel.replicated(mesh)

  def init_fn(r, b):
    params, state = _split_variables(task.init(r, b))
    return params, state

  params, state = jax.jit(init_fn, out_shardings=rep)(init_rng, batch)
  opt_state = jax.jit(tx.init, out_shardings=rep)(params)
  if task.state_sharding is not None:
    state = jax.device_put(state, task.state_sharding(mesh, state))
  step = jax.device_put(jnp.zeros((), jnp.int32), rep)
  return TrainState(step, params, opt_state, state, jax.device_put(train_rng, rep))


def evaluate(task: Task, ts: TrainState, mesh: Mesh, *, eval_fn: Callable | None = None
             ) -> dict[str, float]:
  """Runs `task.eval_step` over `task.eval_batches()`; returns finalized metrics."""
  if task.eval_step is None or task.eval_batches is None:
    return {}
  if eval_fn is None:
    eval_fn = jax.jit(task.eval_step)
  state = task.eval_init(ts.state) if task.eval_init is not None else ts.state
  sums: dict[str, float] = {}
  pending = []
  for batch in task.eval_batches():
    s, state = eval_fn(ts.params, state, parallel.put_batch(batch, mesh))
    pending.append(s)
  for s in jax.device_get(pending):
    for k, v in s.items():
      sums[k] = sums.get(k, 0.0) + float(v)
  finalize = task.eval_finalize or default_finalize
  return finalize(sums)


def train(task: Task, *, config: Mapping[str, Any], workdir: str | None = None,
          mesh: Mesh | None = None, hooks: Sequence[Hook] = (), progress: bool = True,
          prefetch_size: int = 2, run_config: Any = None, stop: StopRule | None = None
          ) -> TrainResult:
  """Trains `task` as described by `config`; resumes from `workdir` if it has checkpoints.

  Args:
    task: the model + data functions.
    config: fields `seed`, `num_steps`, `batch_size` (global), `optimizer`
      (see `make_optimizer`), and optionally `log_every` (10), `eval_every`
      (0: only at the end), `checkpoint_every` (0: only at the end).
    workdir: checkpoints in `<workdir>/checkpoints`, metrics in
      `<workdir>/metrics.jsonl`, `<kind>.csv`, `tb/`, the config in
      `<workdir>/config.json` (a rerun with another config is refused, see
      `experiments.engine.workdir`). None: none of these.
    mesh: a 1-D "data" mesh (default: all devices of all processes).
    hooks: called as `hook(step, train_state)` after every step (tests use
      this to kill the process mid-run).
    progress: show a tqdm bar on process 0.
    prefetch_size: batches placed on device ahead of the step.
    run_config: what `<workdir>/config.json` records and compares (default
      `config`); a trainer that derives `config` passes the experiment's own.
    stop: a stop rule `stop(step, train_state) -> bool` (early stopping, a
      plateau; see `experiments.engine.stop`), called once before the first step
      (a run resumed after it stopped returns at once) and after every step,
      after that step's checkpoint and evaluation. True ends training there: the
      step's checkpoint is saved and the final evaluation runs.

  Raises:
    ConfigError: a bad config value, or a workdir that holds another config's run;
      raised before any work.
    WorkdirBusy: another live process trains in the workdir.
    NonFiniteLossError: naming the first step whose loss was not finite.
    CheckpointError: the workdir has checkpoints and none restores.

  With glibc, the process's freed memory then stays in its heap, so that fewer steps fault
  XLA's buffers in again; none does in a process started with one malloc arena
  (`experiments.engine.heap`; ``MALLOC_*`` or ``GLIBC_TUNABLES`` in the environment stand).
  """
  mesh = mesh or parallel.make_mesh()
  check_engine_config(config, mesh)
  run_config = config if run_config is None else run_config
  check_workdir(workdir, run_config)
  heap.keep_freed_memory()
  with hold_workdir(workdir):
    return _train(task, config, workdir, mesh, hooks, progress, prefetch_size, run_config, stop)


def _train(task: Task, config: Mapping[str, Any], workdir: str | None, mesh: Mesh,
           hooks: Sequence[Hook], progress: bool, prefetch_size: int, run_config: Any,
           stop: StopRule | None) -> TrainResult:
  """`train` after its checks, in a workdir this process holds."""
  num_steps = int(config["num_steps"])
  batch_size = int(config["batch_size"])
  log_every = max(1, int(config.get("log_every", 10) or 10))
  eval_every = int(config.get("eval_every", 0) or 0)
  tx = make_optimizer(config["optimizer"])
  lr_schedule = learning_rate_schedule(config["optimizer"])

  checkpointer = None
  if workdir is not None:
    checkpointer = Checkpointer(f"{workdir}/checkpoints",
                                every=int(config.get("checkpoint_every", 0) or 0))
  first = parallel.put_batch(next(iter(task.train_batches(0))), mesh)
  ts = init_train_state(task, tx, first, seed=int(config["seed"]), mesh=mesh)
  if checkpointer is not None and checkpointer.latest_step() is not None:
    try:
      ts = checkpointer.restore(ts)
    except BaseException:
      checkpointer.close()
      raise
  start_step = int(jax.device_get(ts.step))
  if start_step > num_steps:  # it returned the longer-trained model as this config's
    checkpointer.close()
    raise ConfigError(
        f"--set num_steps={num_steps}: {workdir} holds a checkpoint at step {start_step}, "
        f"past it, and a run cannot train backwards; pass num_steps >= {start_step} to "
        f"resume it, or another --workdir to train {num_steps} steps from the start.")
  # Process 0 reads the files; every process must agree, since an evaluation is collective.
  # (A finished run's final evaluation runs again below anyway.)
  redo_eval = task.eval_step is not None and start_step < num_steps and _on_all_processes(
      jax.process_index() == 0 and eval_row_lost(workdir, start_step, eval_every=eval_every))
  save_config(workdir, run_config)
  writer = MetricWriter(workdir)
  history: list[dict[str, Any]] = []

  def record(kind, step, metrics):
    writer.write(kind, step, metrics)
    history.append({"kind": kind, "step": int(step), **metrics})

  step_fn = jax.jit(make_train_step(task, tx))
  eval_fn = jax.jit(task.eval_step) if task.eval_step is not None else None
  if redo_eval:  # the evaluation of the restored step, whose row a kill lost
    record("eval", start_step, evaluate(task, ts, mesh, eval_fn=eval_fn))
  bar = None
  if progress and jax.process_index() == 0:
    from tqdm.auto import tqdm
    bar = tqdm(total=num_steps, initial=start_step, unit="step", dynamic_ncols=True)

  def flush(buffer):
    """Fetches buffered step metrics, checks the loss, logs the mean."""
    if not buffer:
      return None
    host = jax.device_get([m for _, m in buffer])
    for (s, _), m in zip(buffer, host, strict=True):
      if not math.isfinite(float(m["loss"])):
        raise NonFiniteLossError(
            f"non-finite loss {float(m['loss'])} at step {s} (the step that produced "
            f"train_state.step={s}); lower the learning rate or raise sigma.")
    mean = {k: float(np.mean([float(m[k]) for m in host])) for k in host[-1]}
    mean["learning_rate"] = float(lr_schedule(buffer[-1][0] - 1))
    return mean

  batches = prefetch(task.train_batches(start_step), lambda b: parallel.put_batch(b, mesh),
                     size=prefetch_size)
  buffer = []
  t0 = time.perf_counter()
  t_log, n_log = t0, 0
  step = start_step
  stopped = stop is not None and bool(stop(start_step, ts))

  def log(step):
    nonlocal buffer, t_log, n_log
    mean = flush(buffer)
    buffer = []
    now = time.perf_counter()
    mean["examples_per_second"] = n_log * batch_size / max(now - t_log, 1e-9)
    t_log, n_log = now, 0
    record("train", step, mean)
    if bar is not None:
      bar.update(step - bar.n)
      bar.set_postfix(loss=f"{mean['loss']:.4f}", ex_s=f"{mean['examples_per_second']:.0f}")

  try:
    for step in range(start_step + 1, (start_step if stopped else num_steps) + 1):
      batch = next(batches)
      ts, metrics = step_fn(ts, batch)
      buffer.append((step, metrics))
      n_log += 1
      for hook in hooks:
        hook(step, ts)
      save_now = checkpointer is not None and checkpointer.should_save(step)
      eval_now = eval_every > 0 and step % eval_every == 0 and step != num_steps
      if step % log_every == 0 or step == num_steps or save_now or eval_now:
        log(step)
      if save_now:
        checkpointer.save(step, ts)
      if eval_now:
        record("eval", step, evaluate(task, ts, mesh, eval_fn=eval_fn))
      if stop is not None and stop(step, ts):
        stopped = True
        if buffer:
          log(step)
        break
    elapsed = time.perf_counter() - t0
    if checkpointer is not None and step > start_step:
      checkpointer.save(step, ts)
    eval_metrics = evaluate(task, ts, mesh, eval_fn=eval_fn)
    if eval_metrics:
      record("eval", max(step, start_step), eval_metrics)
  finally:
    batches.close()  # ends the prefetch thread now, not whenever the generator is collected
    if bar is not None:
      bar.close()
    writer.close()
    if checkpointer is not None:
      checkpointer.close()
  ran = step - start_step
  return TrainResult(ts, history, eval_metrics, start_step,
                     ran / elapsed if ran > 0 and elapsed > 0 else 0.0,
                     stopped_early=stopped and step < num_steps)
