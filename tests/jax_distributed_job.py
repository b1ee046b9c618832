"""Plugins of the multi-process JAX tests, given to the command line as callbacks:

    torchrun --nproc_per_node=2 -m hookline train recipe=digits-jax \\
        callbacks=tests/jax_distributed_job.py:Record,tests/jax_distributed_job.py:KillRank

Their settings come from the environment (a callback is made without arguments):
``HOOKLINE_TEST_RECORD`` is the folder where every process writes ``rank<R>.jsonl`` (its epoch
metrics) and ``final<R>.npz`` (its final parameters); ``HOOKLINE_TEST_KILL`` is
``RANK:STEP:HOW``: that rank fails after that optimizer step, by SIGKILL (``kill``) or by raising
(``raise``), having written the time to ``failed<R>``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np

from hookline import Callback


class Record(Callback):
    """Runs on every process and writes what that process saw."""

    def __init__(self) -> None:
        self.folder = Path(os.environ["HOOKLINE_TEST_RECORD"])
        self.folder.mkdir(parents=True, exist_ok=True)

    def on_train_start(self, trainer) -> None:
        (self.folder / f"pid{trainer.rank}").write_text(str(os.getpid()))

    def on_fit_epoch_end(self, trainer, metrics) -> None:
        with open(self.folder / f"rank{trainer.rank}.jsonl", "a") as file:
            entry = {"epoch": trainer.epoch, "step": trainer.global_step, "metrics": metrics,
                     "world_size": trainer.world_size}
            file.write(json.dumps(entry) + "\n")

    def on_train_end(self, trainer) -> None:
        parameters = {name: np.asarray(value) for name, value in trainer.task.parameters().items()}
        np.savez(self.folder / f"final{trainer.rank}.npz", **parameters)


class KillRank(Callback):
    """Makes one process fail after an optimizer step: killed (SIGKILL) or raising."""

    def __init__(self) -> None:
        rank, step, how = os.environ["HOOKLINE_TEST_KILL"].split(":")
        self.rank, self.step, self.how = int(rank), int(step), how

    def on_train_batch_end(self, trainer) -> None:
        if trainer.rank == self.rank and trainer.global_step == self.step:
            folder = Path(os.environ["HOOKLINE_TEST_RECORD"])
            (folder / f"failed{self.rank}").write_text(repr(time.time()))
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"a plugin failed on rank {self.rank} at step {self.step}")
