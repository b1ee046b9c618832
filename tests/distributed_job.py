"""The digits demo through the Python API, for the torchrun tests.

    torchrun --nproc_per_node=2 tests/distributed_job.py PROJECT RECORD_DIR [options]

Every rank appends its epoch-end metrics to RECORD_DIR/rank<R>.jsonl and its final state to
RECORD_DIR/final<R>.json; rank zero prints ``saved STEP`` after each ``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from hookline import Callback, Model, Options, PluginManager
from hookline.backends.torch.demo import DigitsRecipe


class Record(Callback):
    """Runs on every rank (the default) and writes what that rank saw."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_start(self, trainer) -> None:
        (self.folder / f"pid{trainer.rank}").write_text(str(os.getpid()))

    def on_fit_epoch_end(self, trainer, metrics) -> None:
        with open(self.folder / f"rank{trainer.rank}.jsonl", "a") as file:
            file.write(json.dumps({"epoch": trainer.epoch, "metrics": metrics}) + "\n")

    def on_train_end(self, trainer) -> None:
        final = {"epoch": trainer.epoch, "global_step": trainer.global_step,
                 "stop_reason": trainer.stop_reason, "world_size": trainer.world_size,
                 "interrupted": trainer.interrupted}
        (self.folder / f"final{trainer.rank}.json").write_text(json.dumps(final))

    def on_model_save(self, trainer, path) -> None:
        if path.name == "last.pt":
            print(f"saved {trainer.global_step}", flush=True)


class StopOnOneRank(Callback):
    def __init__(self, rank: int, step: int) -> None:
        self.rank, self.step = rank, step

    def on_train_batch_end(self, trainer) -> None:
        if trainer.rank == self.rank and trainer.global_step >= self.step:
            trainer.request_stop(f"asked on rank {self.rank}")


class RaiseOnOneRank(Callback):
    """A plugin that fails on one rank only, at the start of an epoch."""

    def __init__(self, rank: int, epoch: int) -> None:
        self.rank, self.epoch = rank, epoch

    def on_train_epoch_start(self, trainer) -> None:
        if trainer.rank == self.rank and trainer.epoch == self.epoch:
            raise RuntimeError(f"a plugin failed on rank {self.rank} at epoch {self.epoch}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("project")
    parser.add_argument("record", type=Path)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--stop-on-rank", type=int, default=None)
    parser.add_argument("--stop-at-step", type=int, default=0)
    parser.add_argument("--save-every-n-steps", type=int, default=0)
    parser.add_argument("--resume", default="")
    parser.add_argument("--raise-on-rank", type=int, default=None)
    parser.add_argument("--raise-at-epoch", type=int, default=2)
    parser.add_argument("--f1", action="store_true", help="add torchmetrics' macro F1")
    parser.add_argument("--async-checkpoint", action="store_true")
    args = parser.parse_args()
    args.record.mkdir(parents=True, exist_ok=True)
    recipe = DigitsRecipe()
    options = Options()
    recipe.hookline_add_options(options)
    settings = options.resolve({})
    train, val = recipe.data(settings)
    plugins: list[Callback] = [Record(args.record)]
    if args.stop_on_rank is not None:
        plugins.append(StopOnOneRank(args.stop_on_rank, args.stop_at_step))
    if args.raise_on_rank is not None:
        plugins.append(RaiseOnOneRank(args.raise_on_rank, args.raise_at_epoch))
    task = recipe.task(settings)
    if args.f1:  # a stateful metric: each rank sees half the validation set
        from torchmetrics.classification import MulticlassF1Score

        task.metrics["f1"] = MulticlassF1Score(num_classes=10, average="macro")
    model = Model(task, plugins, manager=PluginManager())
    model.train(
        train, val, epochs=args.epochs, project=args.project, exist_ok=True,
        save_every_n_steps=args.save_every_n_steps, resume=args.resume, patience=100,
        async_checkpoint=args.async_checkpoint,
    )


if __name__ == "__main__":
    main()
