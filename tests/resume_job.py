"""A small real training run for the resume tests, run as its own process.

    python tests/resume_job.py SAVE_DIR [--resume CHECKPOINT] [--heavy-at-step N]

Checkpoints every optimizer step and prints ``saved STEP`` after each ``last.pt``; at the end
writes SAVE_DIR/final.pt with the model's weights and the plugins' states.
``--heavy-at-step`` adds 200 MB of ballast to the checkpoint of that step, so that a test can
kill the process while the file is being written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hookline import Callback, PluginManager, Trainer
from hookline.backends.torch import TorchTask, accuracy
from hookline.plugins.checkpoint import ModelCheckpoint
from hookline.plugins.early_stopping import EarlyStopping
from hookline.plugins.lr_scheduler import LRScheduler

EPOCHS = 6


class Ballast(Callback):
    """Makes one step's checkpoint slow to write."""

    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_save_checkpoint(self, trainer, checkpoint) -> None:
        if trainer.global_step == self.step:
            checkpoint["ballast"] = torch.ones(50_000_000)


def report_saved(trainer, path) -> None:
    if path.name == "last.pt":
        print(f"saved {trainer.global_step}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("save_dir", type=Path)
    parser.add_argument("--resume", default="")
    parser.add_argument("--heavy-at-step", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    inputs = torch.randn(768, 8)
    labels = (inputs[:, 0] + inputs[:, 1] * inputs[:, 2] > 0).long()
    train = DataLoader(
        TensorDataset(inputs, labels), batch_size=16, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )
    val = DataLoader(TensorDataset(inputs[:96], labels[:96]), batch_size=48)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 2))
    task = TorchTask(
        model, nn.functional.cross_entropy, lambda p: torch.optim.AdamW(p, lr=0.01),
        metrics={"accuracy": accuracy}, device="cpu",
    )
    plugins = [
        ModelCheckpoint(save_every_n_steps=1, filename="step", resume=args.resume),
        EarlyStopping(patience=2, min_delta=0.01),
        LRScheduler(schedule="step", lr_step_size=2, lr_gamma=0.5, warmup_steps=10),
        Ballast(args.heavy_at_step),
    ]
    trainer = Trainer(task, plugins, manager=PluginManager())
    trainer.add_callback("on_model_save", report_saved)
    trainer.fit(train, val, epochs=EPOCHS, save_dir=args.save_dir)
    states = {name: plugin.state_dict() for name, plugin in zip(
        ("checkpoint", "early_stopping", "lr_scheduler"), plugins, strict=False)}
    torch.save(
        {"model": model.state_dict(), "plugins": states, "epoch": trainer.epoch,
         "global_step": trainer.global_step, "stop_reason": trainer.stop_reason},
        args.save_dir / "final.pt",
    )


if __name__ == "__main__":
    main()
