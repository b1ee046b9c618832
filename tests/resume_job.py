"""A small real training run for the resume tests, run as its own process, on either backend.

    python tests/resume_job.py SAVE_DIR --backend torch|jax [--resume CHECKPOINT]
                               [--stall-at-step N] [--async-checkpoint]

Checkpoints every optimizer step (``--async-checkpoint``: in the background) and prints
``saved STEP`` once ``last.pt`` holds that step; at the end
writes SAVE_DIR/final.npz (the model's weights) and SAVE_DIR/final.json (the plugins' states,
the epoch, the steps and the stop reason).  ``--stall-at-step`` adds 200 MB of ballast to the
checkpoint of that step and stops its write halfway through: once 100 MB of the payload are in
the temporary file, it prints ``writing STEP`` and waits there for ever, so that a test kills
the process during the write, however late the test gets to run on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hookline import Callback, PluginManager, Trainer
from hookline.plugins.checkpoint import ModelCheckpoint
from hookline.plugins.early_stopping import EarlyStopping
from hookline.plugins.lr_scheduler import LRScheduler
from hookline.testing.backends import backend

EPOCHS = 6


#: How much of the stalled checkpoint's payload reaches its file before the write stops.
STALL_AFTER_BYTES = 100_000_000


class Ballast(Callback):
    """Makes one step's checkpoint large (200 MB)."""

    def __init__(self, step: int | None, add) -> None:
        self.step, self.add = step, add

    def on_save_checkpoint(self, trainer, checkpoint) -> None:
        if trainer.global_step == self.step:
            self.add(checkpoint, 200)


class StallingFile:
    """Passes writes on to ``file`` until ``limit`` bytes have gone through, then flushes
    them, prints ``writing STEP`` and blocks for ever: the process is killed mid-write."""

    def __init__(self, file: Any, limit: int, step: int) -> None:
        self.file, self.limit, self.step = file, limit, step
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < view.nbytes:
            if self.size >= self.limit:
                self.file.flush()
                print(f"writing {self.step}", flush=True)
                threading.Event().wait()  # until the test's SIGKILL
            piece = view[done : done + self.limit - self.size]
            self.file.write(piece)
            done += piece.nbytes
            self.size += piece.nbytes
        return view.nbytes

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self.file.flush()


def stall_write(task: Any, step: int | None) -> None:
    """Make ``task`` stop writing the checkpoint of ``step`` halfway (see
    :class:`StallingFile`), in whichever thread writes it."""
    if step is None:
        return
    write = task.write_checkpoint

    def write_checkpoint(checkpoint: Any, file: Any) -> None:
        if checkpoint["progress"]["global_step"] == step:
            file = StallingFile(file, STALL_AFTER_BYTES, step)
        write(checkpoint, file)

    task.write_checkpoint = write_checkpoint


class SavedSteps(Callback):
    """Prints ``saved STEP`` once ``last.pt`` holds STEP: an asynchronous save reports its
    file at a later step than the one it holds (every save here writes ``last.pt`` once)."""

    def __init__(self) -> None:
        self.steps: deque[int] = deque()

    def on_save_checkpoint(self, trainer, checkpoint) -> None:
        self.steps.append(checkpoint["progress"]["global_step"])

    def on_model_save(self, trainer, path) -> None:
        if path.name == "last.pt":
            print(f"saved {self.steps.popleft()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("save_dir", type=Path)
    parser.add_argument("--backend", choices=("torch", "jax"), required=True)
    parser.add_argument("--resume", default="")
    parser.add_argument("--stall-at-step", type=int, default=None)
    parser.add_argument("--async-checkpoint", action="store_true")
    args = parser.parse_args()
    chosen = backend(args.backend)
    if args.backend == "torch":
        import torch

        torch.set_num_threads(1)
    generator = np.random.default_rng(0)
    inputs = generator.normal(size=(768, 8)).astype(np.float32)
    labels = (inputs[:, 0] + inputs[:, 1] * inputs[:, 2] > 0).astype(np.int32)
    train = chosen.shuffled(inputs, labels, size=16, seed=1)
    val = chosen.split(inputs[:96], labels[:96], size=48)
    task = chosen.make_task(features=8, hidden=32, dropout=0.2, optimizer="adamw", lr=0.01)
    stall_write(task, args.stall_at_step)
    plugins = [
        ModelCheckpoint(save_every_n_steps=1, filename="step", resume=args.resume,
                        async_checkpoint=args.async_checkpoint),
        EarlyStopping(patience=2, min_delta=0.01),
        LRScheduler(schedule="step", lr_step_size=2, lr_gamma=0.5, warmup_steps=10),
        Ballast(args.stall_at_step, chosen.add_ballast),
    ]
    trainer = Trainer(task, [*plugins, SavedSteps()], manager=PluginManager())
    trainer.fit(train, val, epochs=EPOCHS, save_dir=args.save_dir)
    np.savez(args.save_dir / "final.npz", **chosen.weights(task))
    states = {name: plugin.state_dict() for name, plugin in zip(
        ("checkpoint", "early_stopping", "lr_scheduler"), plugins, strict=False)}
    (args.save_dir / "final.json").write_text(json.dumps(
        {"plugins": states, "epoch": trainer.epoch, "global_step": trainer.global_step,
         "stop_reason": trainer.stop_reason}
    ))


if __name__ == "__main__":
    main()
