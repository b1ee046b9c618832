"""A training run in a process where torch, numpy and JAX cannot be imported: the pure-Python
toy task with the built-in checkpoint, early stopping and LR schedule plugins.

    python tests/framework_free_job.py RUN_DIR full|crash|resume

``crash`` ends the process abruptly (``os._exit``) in the middle of an epoch, after a step
checkpoint; ``resume`` carries on from that run's ``last.pt``.  The final weights, the epochs
run and the stop reason are printed as JSON (floats exactly, by repr).
"""

from __future__ import annotations

import importlib.abc
import json
import os
import random
import sys
from pathlib import Path

BLOCKED = {"torch", "numpy", "jax", "jaxlib", "flax", "optax"}


class BlockFrameworks(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} cannot be imported in this process")
        return None


sys.meta_path.insert(0, BlockFrameworks())

from hookline import PluginManager, Trainer, hookimpl  # noqa: E402
from hookline.plugins.checkpoint import ModelCheckpoint  # noqa: E402
from hookline.plugins.early_stopping import EarlyStopping  # noqa: E402
from hookline.plugins.lr_scheduler import LRScheduler  # noqa: E402
from hookline.testing import LinearRegressionTask, ShuffledBatches, make_batches  # noqa: E402

CRASH_AT_STEP = 29  # epoch 3, batch 5 of 8: the step checkpoint of step 27 is mid-epoch


class Crash:
    @hookimpl
    def on_train_batch_start(self, trainer):
        if trainer.global_step == CRASH_AT_STEP:
            sys.stdout.flush()
            os._exit(3)


def rows(count, seed):
    generator = random.Random(seed)
    x = [[generator.gauss(0, 1) for _ in range(3)] for _ in range(count)]
    y = [1.0 * a - 2.0 * b + 0.5 * c + 0.3 + generator.gauss(0, 0.3) for a, b, c in x]
    return x, y


def main() -> None:
    run_dir, mode = Path(sys.argv[1]), sys.argv[2]
    random.seed(1234)  # the data order is drawn from Python's global generator
    train = ShuffledBatches(*rows(64, seed=0), batch_size=8)
    val = make_batches(*rows(32, seed=1), batch_size=16)
    plugins = [
        ModelCheckpoint(save_every_n_steps=3),
        EarlyStopping(patience=2, min_delta=0.002),
        LRScheduler(schedule="cosine", warmup_steps=4),
    ]
    if mode == "crash":
        plugins.append(Crash())
    settings = {"resume": str(run_dir / "weights" / "last.pt")} if mode == "resume" else {}
    trainer = Trainer(LinearRegressionTask(3, lr=0.05), plugins, manager=PluginManager())
    trainer.fit(train, val, epochs=30, save_dir=run_dir, log_every_n_steps=4, **settings)
    try:
        import torch  # noqa: F401
    except ImportError:
        importable = False
    else:
        importable = True
    print(json.dumps({
        "weight": [repr(w) for w in trainer.task.weight], "bias": repr(trainer.task.bias),
        "epochs_run": trainer.epoch + 1, "stop_reason": trainer.stop_reason,
        "frameworks_loaded": sorted(BLOCKED & {m.partition(".")[0] for m in sys.modules}),
        "torch_importable": importable,
    }))


if __name__ == "__main__":
    main()
