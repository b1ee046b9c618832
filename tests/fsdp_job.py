"""A small FSDP training run for the sharded-checkpoint tests, on any number of processes.

    torchrun --nproc_per_node=N tests/fsdp_job.py SAVE_DIR [--resume CHECKPOINT] [--dropout]
                                                  [--batch B] [--async-save] [--epochs E]
    python tests/fsdp_job.py SAVE_DIR ...        one process (strategy="fsdp", nothing sharded)

Checkpoints (directories of shards) every optimizer step and prints ``saved STEP`` after each
``weights/last``; at the end rank zero writes SAVE_DIR/final.npz (the whole model, gathered
from the shards) and SAVE_DIR/final.json (plugin states, epoch, steps, the last metrics, the
world size).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hookline import PluginManager, Trainer
from hookline.backends.torch import TorchTask, accuracy
from hookline.backends.torch.fsdp import full_state_dict
from hookline.plugins.checkpoint import ModelCheckpoint
from hookline.plugins.early_stopping import EarlyStopping

SAMPLES, VAL_SAMPLES, FEATURES = 384, 97, 8


def data(batch: int) -> tuple[DataLoader, DataLoader]:
    generator = np.random.default_rng(0)
    inputs = generator.normal(size=(SAMPLES + VAL_SAMPLES, FEATURES)).astype(np.float32)
    labels = (inputs[:, 0] + inputs[:, 1] * inputs[:, 2] > 0).astype(np.int64)
    x, y = torch.from_numpy(inputs), torch.from_numpy(labels)
    train = DataLoader(
        TensorDataset(x[:SAMPLES], y[:SAMPLES]), batch_size=batch, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )
    # 97 samples in batches of 16: 4 batches on rank 0, 3 on rank 1 (padded to 4)
    val = DataLoader(TensorDataset(x[SAMPLES:], y[SAMPLES:]), batch_size=16)
    return train, val


def make_task(dropout: bool) -> TorchTask:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(FEATURES, 32), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(0.2))
    layers += [nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)]
    return TorchTask(
        nn.Sequential(*layers), nn.functional.cross_entropy,
        lambda parameters: torch.optim.AdamW(parameters, lr=0.01),
        metrics={"accuracy": accuracy}, device="cpu", strategy="fsdp",
        example_input=torch.zeros(2, FEATURES),
    )


KILL_AT: list[int] = []


def report_saved(trainer, path) -> None:
    if path.name == "last":
        print(f"saved {trainer.global_step}", flush=True)
        if KILL_AT and trainer.global_step == KILL_AT[0]:
            os.kill(os.getpid(), signal.SIGKILL)  # rank zero dies; torchrun ends the others


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("save_dir", type=Path)
    parser.add_argument("--resume", default="")
    parser.add_argument("--dropout", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="checkpoint every N steps")
    parser.add_argument("--async-save", action="store_true")
    parser.add_argument("--export", action="store_true", help="export model.torchscript")
    parser.add_argument("--kill-at-step", type=int, default=None,
                        help="SIGKILL rank zero once the checkpoint of this step is written")
    args = parser.parse_args()
    if args.kill_at_step is not None:
        KILL_AT.append(args.kill_at_step)
    torch.set_num_threads(1)
    train, val = data(args.batch)
    task = make_task(args.dropout)
    checkpoint = ModelCheckpoint(
        save_every_n_steps=args.every, filename="step", resume=args.resume, save_top_k=2,
        monitor="val/loss", async_checkpoint=args.async_save,
    )
    plugins = [checkpoint, EarlyStopping(patience=100)]
    trainer = Trainer(task, plugins, manager=PluginManager())
    trainer.add_callback("on_model_save", report_saved)
    trainer.fit(train, val, epochs=args.epochs, save_dir=args.save_dir, log_every_n_steps=0)
    weights = {name: value.numpy() for name, value in full_state_dict(task.model).items()}
    if args.export:  # every rank gathers; rank zero writes
        task.export("torchscript", args.save_dir / "model")
    if trainer.rank == 0:
        np.savez(args.save_dir / "final.npz", **weights)
        states = {name: plugin.state_dict() for name, plugin in
                  zip(("checkpoint", "early_stopping"), plugins, strict=True)}
        (args.save_dir / "final.json").write_text(json.dumps({
            "plugins": states, "epoch": trainer.epoch, "global_step": trainer.global_step,
            "metrics": trainer.metrics, "world_size": trainer.world_size,
            "pid": os.getpid(),
        }))


if __name__ == "__main__":
    main()
