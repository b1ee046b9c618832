"""A small real training run for the resume tests, run as its own process, on either backend.

    python tests/resume_job.py SAVE_DIR --backend torch|jax [--resume CHECKPOINT]
                               [--heavy-at-step N] [--async-checkpoint]

Checkpoints every optimizer step (``--async-checkpoint``: in the background) and prints
``saved STEP`` once ``last.pt`` holds that step; at the end
writes SAVE_DIR/final.npz (the model's weights) and SAVE_DIR/final.json (the plugins' states,
the epoch, the steps and the stop reason).  ``--heavy-at-step`` adds 200 MB of ballast to the
checkpoint of that step, so that a test can kill the process while the file is being written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hookline import Callback, PluginManager, Trainer
from hookline.plugins.checkpoint import ModelCheckpoint
from hookline.plugins.early_stopping import EarlyStopping
from hookline.plugins.lr_scheduler import LRScheduler
from hookline.testing.backends import backend

EPOCHS = 6


class Ballast(Callback):
    """Makes one step's checkpoint slow to write."""

    def __init__(self, step: int | None, add) -> None:
        self.step, self.add = step, add

    def on_save_checkpoint(self, trainer, checkpoint) -> None:
        if trainer.global_step == self.step:
            self.add(checkpoint, 200)


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
    parser.add_argument("--heavy-at-step", type=int, default=None)
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
    plugins = [
        ModelCheckpoint(save_every_n_steps=1, filename="step", resume=args.resume,
                        async_checkpoint=args.async_checkpoint),
        EarlyStopping(patience=2, min_delta=0.01),
        LRScheduler(schedule="step", lr_step_size=2, lr_gamma=0.5, warmup_steps=10),
        Ballast(args.heavy_at_step, chosen.add_ballast),
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
