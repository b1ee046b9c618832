"""What a JAX run compiles, counted from JAX's own compilation log (``jax.log_compiles``):
one training program (with gradient accumulation, one per kind of batch in a window: the
first, the middle ones, the last), and nothing at all after the first epoch, with every
default plugin on.  A
recompilation per epoch or per log interval costs a JAX user tenths of a second each time and
shows in no result, so only a count catches it."""

from __future__ import annotations

import logging
import math
import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")

from hookline import Callback, Model, PluginManager  # noqa: E402
from hookline.backends.jax.testing import JaxBackend  # noqa: E402

COMPILED = re.compile(r"Finished XLA compilation of (?:jit|pjit)\((\w+)\)")


class CompilationLog(logging.Handler):
    """The names of the functions JAX compiles while it is attached, and where the run was."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.compiled: list[tuple[str, str]] = []
        self.where = "set-up"

    def emit(self, record: logging.LogRecord) -> None:
        match = COMPILED.search(record.getMessage())
        if match:
            self.compiled.append((self.where, match.group(1)))


class Where(Callback):
    """Tells the log where the run is: in its first epoch, or after it."""

    def __init__(self, log: CompilationLog) -> None:
        self.log = log

    def on_train_epoch_start(self, trainer) -> None:
        self.log.where = "first epoch" if trainer.epoch == 0 else "later epochs"


@pytest.fixture
def compilation_log():
    log = CompilationLog()
    logger = logging.getLogger("jax")
    logger.addHandler(log)
    # set for every thread (the context manager jax.log_compiles sets it for this one alone)
    was = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    try:
        yield log
    finally:
        jax.config.update("jax_log_compiles", was)
        logger.removeHandler(log)


def train(tmp_path, log: CompilationLog, hidden: int, **settings) -> None:
    """Three epochs of the kit's tiny task with ``hidden`` units: a width no other test uses,
    since JAX reuses a compiled program for any task whose computation is the same."""
    backend = JaxBackend()
    model = Model(backend.make_task(hidden=hidden, dropout=0.1), [Where(log)],
                  manager=PluginManager())
    model.train(
        backend.batches(320, 16), backend.batches(100, 16, seed=1), epochs=3,
        project=str(tmp_path), name="run", **settings,
    )


def test_a_run_with_the_defaults_compiles_nothing_after_its_first_epoch(
    compilation_log, tmp_path
):
    # 20 batches an epoch against a log interval of 8: intervals of 8 and of 4 values, epochs
    # of 20, a validation set of 7 batches (the last one short): every length the sums see
    train(tmp_path, compilation_log, 37, log_every_n_steps=8, progress=True, plots=False)
    compiled = compilation_log.compiled
    assert ("first epoch", "_train_step") in compiled  # the log is read: it saw the step
    assert [name for where, name in compiled if where == "later epochs"] == []


def test_a_run_compiles_one_training_program_and_no_update_of_its_own(
    compilation_log, tmp_path
):
    """One batch per optimizer step: every training step is one program (the loss, the
    gradients and the update they make, as a raw jitted loop's step), compiled once; the
    optimizer step adopts that update, so nothing compiles an update alone, not even the
    checkpoints that read the state at each epoch's end."""
    train(tmp_path, compilation_log, 41, plots=False)
    names = [name for _, name in compilation_log.compiled]
    assert names.count("_train_step") == 1
    assert "_update" not in names


def test_accumulation_compiles_two_training_programs_and_an_update_for_a_short_window(
    compilation_log, tmp_path
):
    """With gradients accumulated over 2 batches, a step either starts a window or ends it
    and updates: two programs.  An epoch of 19 batches ends on a window of 1, whose optimizer
    step computes its update in a call of its own, compiled once."""
    backend = JaxBackend()
    task = backend.make_task(hidden=43, accumulate_grad_batches=2)
    Model(task, manager=PluginManager()).train(
        backend.batches(304, 16), epochs=2, project=str(tmp_path), name="run", plots=False,
    )
    names = [name for _, name in compilation_log.compiled]
    assert names.count("_train_step") == 2
    assert names.count("_update") == 1


@pytest.mark.parametrize("committed", [False, True], ids=["one process", "placed"])
def test_the_loss_sum_compiles_once_for_any_number_of_values(compilation_log, committed):
    """Losses placed on a device explicitly (as a distributed run's are) and losses left where
    JAX put them: either way one program sums every length (a longer list in several calls)."""
    task = JaxBackend().make_task()
    device = jax.devices()[0] if committed else None
    for count in (5, 6, 7, 8, 63, 64, 130):
        values = [jax.device_put(np.float32(i), device) for i in range(count)]
        assert float(task.weighted_sum(values, [2] * count)) == 2 * sum(range(count))
    infinite = [jax.device_put(np.float32(value), device) for value in (math.inf, 1.0)]
    assert float(task.weighted_sum(infinite, [1, 1])) == math.inf  # the padding adds no NaN
    assert [name for _, name in compilation_log.compiled].count("_weighted_sum") <= 1
