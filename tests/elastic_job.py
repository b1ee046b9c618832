"""Plugins of the elastic-restart test, given to the command line as callbacks:

    torchrun --max-restarts=2 --nproc_per_node=2 -m hookline train name=job resume=auto \\
        callbacks=tests/elastic_job.py:Record,tests/elastic_job.py:KillOnce

Settings come from the environment (a callback is made without arguments):
``HOOKLINE_TEST_RECORD`` is the folder where every process appends ``starts.jsonl`` (where each
attempt of each rank started from) and writes ``final<R>.pt`` (its final parameters);
``HOOKLINE_TEST_KILL`` is ``RANK:STEP``: that rank SIGKILLs itself after that optimizer step, on
torchrun's first attempt only (``TORCHELASTIC_RESTART_COUNT`` 0), having written the time to
``killed``.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import torch

from hookline import Callback
from hookline.distributed import env_restart_count


def _folder() -> Path:
    folder = Path(os.environ["HOOKLINE_TEST_RECORD"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Record(Callback):
    """Runs on every rank and writes what that rank saw."""

    def on_train_start(self, trainer) -> None:
        entry = {"attempt": env_restart_count(), "rank": trainer.rank,
                 "epoch": trainer.epoch, "global_step": trainer.global_step}
        with open(_folder() / "starts.jsonl", "a") as file:
            file.write(json.dumps(entry) + "\n")

    def on_train_end(self, trainer) -> None:
        parameters = {name: value.detach().clone() for name, value in
                      trainer.task.parameters().items()}
        torch.save(parameters, _folder() / f"final{trainer.rank}.pt")


class KillOnce(Callback):
    """SIGKILLs one rank after an optimizer step, on the first attempt only."""

    def __init__(self) -> None:
        rank, step = os.environ["HOOKLINE_TEST_KILL"].split(":")
        self.rank, self.step = int(rank), int(step)

    def on_train_batch_end(self, trainer) -> None:
        if (env_restart_count() == 0 and trainer.rank == self.rank
                and trainer.global_step == self.step):
            (_folder() / "killed").write_text(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)
