"""The shared training engine on a toy regression task: sharding, resume, SIGKILL, errors."""

import json
import os
import platform
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import engine
from experiments.engine import heap

pytestmark = pytest.mark.loose_promotion  # optax, orbax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOY = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from experiments import engine
    from experiments.data import batching

    CONFIG = {"seed": 0, "num_steps": 12, "batch_size": 16, "checkpoint_every": 4,
              "log_every": 2, "eval_every": 6,
              "optimizer": {"name": "momentum", "learning_rate": 0.02, "momentum": 0.9,
                            "boundaries": [8], "decay": 0.1}}

    def toy_task(nan_at=None):
      rng = np.random.default_rng(0)
      x = rng.normal(size=(64, 4)).astype(np.float32)
      y = (x @ np.arange(1, 5, dtype=np.float32)[:, None] + 0.5).astype(np.float32)
      arrays = {"x": x, "y": y}

      def init(r, b):
        return {"params": {"w": jax.random.normal(r, (4, 1)) * 0.1, "b": jnp.zeros((1,))},
                "stats": {"mean": jnp.zeros((4,))}}

      def loss(p, s, b, r, train):
        pred = b["x"] @ p["w"] + p["b"] + 0.01 * jax.random.normal(r, (1,))
        l = jnp.mean((pred - b["y"]) ** 2)
        new = {"stats": {"mean": 0.9 * s["stats"]["mean"] + 0.1 * jnp.mean(b["x"], 0)}}
        return l, (new, {"mse": l})

      def eval_step(p, s, b):
        err = (b["x"] @ p["w"] + p["b"] - b["y"])[:, 0]
        return {"mse": jnp.sum(b["mask"] * err ** 2), "count": jnp.sum(b["mask"])}, s

      return engine.Task(
          init=init, loss=loss, eval_step=eval_step,
          train_batches=lambda s: batching.train_batches(arrays, batch_size=16, seed=0,
                                                         start_step=s),
          eval_batches=lambda: batching.eval_batches(arrays, batch_size=16))
""")
_TOY_NAMESPACE: dict = {}
exec(TOY, _TOY_NAMESPACE)  # the subprocess test runs the same source
toy_task = _TOY_NAMESPACE["toy_task"]
CONFIG = _TOY_NAMESPACE["CONFIG"]


def _host(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _assert_trees_close(a, b, **kw):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **kw), _host(a), _host(b))


def test_one_vs_eight_devices_same_trajectory():
  r8 = engine.train(toy_task(), config=CONFIG, progress=False)
  r1 = engine.train(toy_task(), config=CONFIG, mesh=engine.make_mesh(jax.devices()[:1]),
                    progress=False)
  assert engine.make_mesh().size == 8
  l8 = [h["loss"] for h in r8.history if h["kind"] == "train"]
  l1 = [h["loss"] for h in r1.history if h["kind"] == "train"]
  np.testing.assert_allclose(l8, l1, rtol=1e-5)
  _assert_trees_close(r8.train_state, r1.train_state, rtol=1e-5, atol=1e-6)
  assert r8.eval_metrics["count"] == 64


def test_resume_equals_uninterrupted_and_writes_metrics(tmp_path):
  full = engine.train(toy_task(), config=CONFIG, progress=False)
  wd = str(tmp_path / "run")
  engine.train(toy_task(), config={**CONFIG, "num_steps": 5}, workdir=wd, progress=False)
  resumed = engine.train(toy_task(), config=CONFIG, workdir=wd, progress=False)
  assert resumed.start_step == 5
  _assert_trees_close(full.train_state, resumed.train_state, rtol=1e-6, atol=1e-7)
  for name in ("metrics.jsonl", "train.csv", "eval.csv"):
    assert os.path.getsize(os.path.join(wd, name)) > 0
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(os.path.join(wd, "tb")))
  evals = engine.read_metrics(wd, "eval")
  assert [r["step"] for r in evals] == [5, 6, 12]
  again = engine.train(toy_task(), config=CONFIG, workdir=wd, progress=False)
  assert again.start_step == 12  # a finished run only evaluates


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted(tmp_path):
  wd = str(tmp_path / "killed")
  script = TOY + textwrap.dedent(f"""
      import os, signal, sys
      def kill(step, ts):
        if step == 7 and sys.argv[1] == "kill":
          os.kill(os.getpid(), signal.SIGKILL)
      engine.train(toy_task(), config=CONFIG, workdir={wd!r}, hooks=[kill], progress=False)
  """)
  env = {**os.environ, "PYTHONPATH": ROOT}
  p = subprocess.run([sys.executable, "-c", script, "kill"], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=240)
  assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
  assert engine.Checkpointer(os.path.join(wd, "checkpoints"), every=4).latest_step() == 4
  p = subprocess.run([sys.executable, "-c", script, "resume"], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=240)
  assert p.returncode == 0, p.stderr[-2000:]
  full = engine.train(toy_task(), config=CONFIG, progress=False)
  ckpt = engine.Checkpointer(os.path.join(wd, "checkpoints"), every=4)
  assert ckpt.latest_step() == 12
  restored = ckpt.restore(full.train_state)
  _assert_trees_close(full.train_state, restored, rtol=1e-6, atol=1e-7)


def test_non_finite_loss_names_the_step():
  task = toy_task()
  def loss(p, s, b, r, train):
    value, aux = task.loss(p, s, b, r, train)
    return jnp.where(jnp.sum(jnp.abs(s["stats"]["mean"])) > 0, jnp.nan, value), aux
  import dataclasses
  bad = dataclasses.replace(task, loss=loss)
  with pytest.raises(engine.NonFiniteLossError, match="at step 2"):
    engine.train(bad, config=CONFIG, progress=False)


def test_batch_not_divisible_by_devices_says_the_fix():
  with pytest.raises(ValueError, match="multiple of 8"):
    engine.train(toy_task(), config={**CONFIG, "batch_size": 12}, progress=False)


def test_unknown_optimizer_lists_choices():
  with pytest.raises(ValueError, match="momentum, sgd, adam"):
    engine.make_optimizer({"name": "lamb", "learning_rate": 0.1})


def test_optimizer_schedule_and_clipping():
  sched = engine.learning_rate_schedule({"learning_rate": 1.0, "boundaries": [2, 4],
                                         "decay": 0.5})
  assert [float(sched(s)) for s in (0, 2, 3, 4)] == [1.0, 0.5, 0.5, 0.25]
  tx = engine.make_optimizer({"name": "sgd", "learning_rate": 1.0, "clip_global_norm": 1.0})
  g = {"a": jnp.full((4,), 10.0)}
  upd, _ = tx.update(g, tx.init(g))
  np.testing.assert_allclose(np.linalg.norm(np.asarray(upd["a"])), 1.0, rtol=1e-5)


def test_prefetch_keeps_order_and_reraises():
  assert list(engine.prefetch(iter(range(5)), lambda x: x * 2)) == [0, 2, 4, 6, 8]
  def bad():
    yield 1
    raise RuntimeError("boom")
  with pytest.raises(RuntimeError, match="boom"):
    list(engine.prefetch(bad(), lambda x: x))


def test_prefetch_thread_ends_when_the_consumer_stops_early():
  import threading

  from experiments.engine import prefetch
  before = threading.active_count()
  it = prefetch(iter(range(100)), lambda x: x, size=2)
  assert next(it) == 0
  it.close()  # the consumer stops with the queue full: the producer must not hang
  assert threading.active_count() == before


def test_reserve_cpu_threads_gives_twice_the_forced_devices_and_keeps_a_setting():
  env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false --xla_force_host_platform_device_count=8"}
  assert engine.reserve_cpu_threads(env) == 16 and env["PJRT_NPROC"] == "16"
  kept = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PJRT_NPROC": "3"}
  assert engine.reserve_cpu_threads(kept) is None and kept["PJRT_NPROC"] == "3"
  for flags in ("", "--xla_force_host_platform_device_count=1"):
    env = {"XLA_FLAGS": flags}
    assert engine.reserve_cpu_threads(env) is None and "PJRT_NPROC" not in env


# A buffer of 64 MiB, allocated, written and freed ten times through the C library, as XLA's
# CPU buffers are at every step; prints whether `keep_freed_memory` set glibc's thresholds and
# the page faults of the ten rounds (the first allocation, before them, may fault).
_HEAP_PROBE = textwrap.dedent("""
    import ctypes, json, resource
    from experiments.engine import heap
    kept = heap.keep_freed_memory()
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    def round_trip():
      p = libc.malloc(1 << 26)
      ctypes.memset(p, 1, 1 << 26)
      libc.free(p)
    round_trip()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
      round_trip()
    print(json.dumps([kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before]))
""")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_keep_freed_memory_ends_the_page_faults_of_a_buffer_freed_and_allocated_again():
  clean = {k: v for k, v in os.environ.items() if k not in (*heap.TUNABLES, "GLIBC_TUNABLES")}
  def probe(**env):
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE], env={**clean, **env}, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
  kept, faults = probe()
  # A tunable of the user's, here a neutral one, stands: glibc's default maps each block afresh,
  # and each round faults its pages in (fewer faults where the kernel backs them with huge pages).
  stood_aside, default_faults = probe(GLIBC_TUNABLES="glibc.malloc.perturb=0")
  assert kept and not stood_aside
  assert faults < 10 <= default_faults  # the heap keeps the freed block: no round faults
  for name in (*heap.TUNABLES, "GLIBC_TUNABLES"):
    assert not heap.keep_freed_memory({name: "1"})


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's variables")
def test_processes_start_with_one_arena_and_the_thresholds_unless_the_user_set_one():
  env = heap.started_with_kept_memory({"PATH": "/bin"})
  assert env == {"PATH": "/bin", "MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "2000000000",
                 "MALLOC_TRIM_THRESHOLD_": "2000000000"}
  for name in (*heap.TUNABLES, "MALLOC_ARENA_MAX", "GLIBC_TUNABLES"):
    assert heap.started_with_kept_memory({name: "4"}) == {name: "4"}


def test_the_suite_runs_with_twice_as_many_pool_threads_as_devices():
  # tests/conftest.py calls `reserve_cpu_threads` before JAX starts; the CPU client's pool
  # really has that many threads (named "tf_XLAEigen" on Linux).
  assert int(os.environ["PJRT_NPROC"]) >= 2 * jax.device_count()
  if os.path.isdir("/proc/self/task"):
    jnp.ones(2).block_until_ready()
    names = []
    for t in os.listdir("/proc/self/task"):
      try:
        with open(f"/proc/self/task/{t}/comm") as f:
          names.append(f.read().strip())
      except FileNotFoundError:  # a short-lived thread ended after listdir
        continue
    assert names.count("tf_XLAEigen") == int(os.environ["PJRT_NPROC"])
