"""A small generic training engine: one jitted data-parallel step, shared by all experiments.

See experiments/engine/README.md.
"""

from experiments.engine.checkpoint import Checkpointer, CheckpointError, CheckpointWarning
from experiments.engine.checks import check_engine_config, check_optimizer
from experiments.engine.loop import (
    NonFiniteLossError,
    TrainResult,
    evaluate,
    init_train_state,
    make_train_step,
    train,
)
from experiments.engine.optim import learning_rate_schedule, make_optimizer
from experiments.engine.parallel import (
    batch_sharded,
    check_batch_size,
    initialize_distributed,
    local_rows,
    make_mesh,
    put_batch,
    replicated,
    reserve_cpu_threads,
)
from experiments.engine.prefetch import prefetch
from experiments.engine.task import Task, TrainState, default_finalize
from experiments.engine.workdir import (
    RESUMABLE_KEYS,
    WorkdirBusy,
    check_workdir,
    hold_workdir,
    save_config,
)
from experiments.engine.writers import MetricWriter, read_metrics

__all__ = [
    "RESUMABLE_KEYS", "CheckpointError", "CheckpointWarning", "Checkpointer", "MetricWriter",
    "NonFiniteLossError", "Task", "TrainResult", "TrainState",
    "batch_sharded", "check_batch_size", "check_engine_config", "check_optimizer",
    "check_workdir", "default_finalize", "evaluate", "init_train_state",
    "initialize_distributed", "learning_rate_schedule", "local_rows", "make_mesh",
    "make_optimizer", "make_train_step", "prefetch", "put_batch", "read_metrics", "replicated",
    "reserve_cpu_threads", "save_config", "train", "WorkdirBusy", "hold_workdir",
]
