"""What a bridge costs inside its host: each host trainer alone against the same host with
hookline's ``HooklineCallback`` and its default observers (run files, CSV, JSON lines,
summary, resource monitor, plots, slow-plugin check).

    python benchmarks/bridges.py            # about 4 minutes on 2 cores
    python benchmarks/bridges.py --quick    # a small run, for the test suite
    python benchmarks/bridges.py --json results.json

Hosts (each skipped when not installed): the Hugging Face ``Trainer`` on a tiny BERT built
from a config, a Lightning ``Trainer`` on an MLP, and Keras 3 ``fit`` on the torch backend on
an MLP; random data, one CPU thread, 2 epochs, no evaluation, the host's own logging and
progress off.  The two contenders of a host run interleaved, one after the other in each round.

The cost of a further step is what the target is about (the bridge adds at most 2% to the
host's step time): every contender runs at two lengths, ``N`` and ``2N`` batches per epoch,
and the difference per step is its step time; pairing within a round cancels the machine's
drift.  The whole-run ratio (set-up, files and threads included) is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")  # before Keras is imported; TF is not here

import torch

torch.set_num_threads(1)
EPOCHS = 2
#: A contender: ``run(batches_per_epoch, folder) -> seconds``.
Contender = Callable[[int, Path], float]


def hf_contenders() -> dict[str, Contender] | None:
    try:
        import transformers
    except ImportError:
        return None
    from hookline.bridges.hf import HooklineCallback

    transformers.logging.set_verbosity_error()
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=32, num_labels=2,
    )

    def dataset(batches: int) -> list[dict[str, Any]]:
        generator = torch.Generator().manual_seed(0)
        ids = torch.randint(0, 50, (batches * 8, 16), generator=generator)
        return [{"input_ids": row, "labels": int(row[0] % 2)} for row in ids]

    def run(bridge: bool) -> Contender:
        def contender(batches: int, folder: Path) -> float:
            torch.manual_seed(0)
            model = transformers.BertForSequenceClassification(config)
            arguments = transformers.TrainingArguments(
                output_dir=str(folder), num_train_epochs=EPOCHS, per_device_train_batch_size=8,
                logging_strategy="epoch", save_strategy="no", eval_strategy="no",
                report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
            )
            callbacks = [HooklineCallback(save_dir=folder / "hookline")] if bridge else []
            trainer = transformers.Trainer(
                model=model, args=arguments, train_dataset=dataset(batches), callbacks=callbacks,
            )
            started = time.perf_counter()
            trainer.train()
            return time.perf_counter() - started

        return contender

    return {"hf": run(False), "hf+hookline": run(True)}


def lightning_contenders() -> dict[str, Contender] | None:
    try:
        import lightning.pytorch as pl
    except ImportError:
        return None
    from hookline.bridges.lightning import HooklineCallback

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2)
            )

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            inputs, targets = batch
            loss = torch.nn.functional.cross_entropy(self.net(inputs), targets)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.05)

    def loader(batches: int) -> Any:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(batches * 32, 32, generator=generator)
        data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
        return torch.utils.data.DataLoader(data, batch_size=32)

    def run(bridge: bool) -> Contender:
        def contender(batches: int, folder: Path) -> float:
            torch.manual_seed(0)
            callbacks = [HooklineCallback(save_dir=folder / "hookline")] if bridge else []
            trainer = pl.Trainer(
                max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False,
                enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, callbacks=callbacks, default_root_dir=str(folder),
            )
            data = loader(batches)
            started = time.perf_counter()
            trainer.fit(Module(), data)
            return time.perf_counter() - started

        return contender

    return {"lightning": run(False), "lightning+hookline": run(True)}


def keras_contenders() -> dict[str, Contender] | None:
    try:
        import keras
    except ImportError:
        return None
    from hookline.bridges.keras import HooklineCallback

    def run(bridge: bool) -> Contender:
        def contender(batches: int, folder: Path) -> float:
            keras.utils.set_random_seed(0)
            model = keras.Sequential([
                keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                keras.layers.Dense(2),
            ])
            model.compile(
                optimizer=keras.optimizers.SGD(0.05),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(batches * 32, 32, generator=generator).numpy()
            y = (x[:, 0] > 0).astype("int64")
            callbacks = [HooklineCallback(save_dir=folder / "hookline")] if bridge else []
            started = time.perf_counter()
            model.fit(x, y, batch_size=32, epochs=EPOCHS, verbose=0, callbacks=callbacks)
            return time.perf_counter() - started

        return contender

    return {"keras": run(False), "keras+hookline": run(True)}


def measure(
    contenders: dict[str, Contender], batches: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Each contender at ``batches`` and ``2 * batches`` per epoch, interleaved over
    ``rounds``; per contender: the median whole-run time and step time, and (for the
    bridge, against the host alone in the same round) the medians of the paired ratios."""
    times: dict[str, dict[int, list[float]]] = {name: {1: [], 2: []} for name in contenders}
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
        for name, contender in contenders.items():  # a warm-up run each: imports, caches
            contender(2, Path(scratch) / f"warm-{name}")
        for index in range(rounds):
            for scale in (1, 2):
                for name, contender in contenders.items():
                    folder = Path(scratch) / f"{name}-{index}-{scale}"
                    times[name][scale].append(contender(batches * scale, folder))
    base, bridged = list(contenders)
    steps = batches * EPOCHS  # the steps the longer series adds

    def step_us(name: str, index: int) -> float:
        return 1e6 * (times[name][2][index] - times[name][1][index]) / steps

    results: dict[str, dict[str, float]] = {}
    for name in contenders:
        results[name] = {
            "run_s": statistics.median(times[name][1]),
            "step_us": statistics.median(step_us(name, i) for i in range(rounds)),
        }
    results[bridged]["step_ratio"] = statistics.median(
        step_us(bridged, i) / step_us(base, i) for i in range(rounds)
    )
    results[bridged]["run_ratio"] = statistics.median(
        times[bridged][1][i] / times[base][1][i] for i in range(rounds)
    )
    results[base]["step_ratio"] = results[base]["run_ratio"] = 1.0
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run, for the tests")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    options = parser.parse_args()
    batches, rounds = (8, 2) if options.quick else (60, 7)
    warnings.simplefilter("ignore")
    hosts = {
        "Hugging Face Trainer": hf_contenders, "Lightning Trainer": lightning_contenders,
        "Keras fit (torch backend)": keras_contenders,
    }
    print(f"{rounds} rounds of {EPOCHS} epochs at {batches} and {2 * batches} batches per "
          "epoch, interleaved; one CPU thread")
    print(f"{'contender':<22}{'run s':>9}{'step us':>10}{'step x host':>13}{'run x host':>12}")
    steps: dict[str, dict[str, float]] = {}
    for host, contenders in hosts.items():
        found = contenders()
        if found is None:
            print(f"{host}: not installed, skipped")
            continue
        for name, row in measure(found, batches, rounds).items():
            steps[name] = row
            print(f"{name:<22}{row['run_s']:>9.3f}{row['step_us']:>10.1f}"
                  f"{row['step_ratio']:>13.3f}{row['run_ratio']:>12.3f}")
    bridged = {name: row for name, row in steps.items() if name.endswith("+hookline")}
    for name, row in bridged.items():
        verdict = "met" if row["step_ratio"] <= 1.02 else "missed"
        print(f"{name}: a further step costs {row['step_ratio']:.3f}x the host's alone "
              f"(target <= 1.02x: {verdict})")
    if options.json is not None:
        options.json.write_text(json.dumps({"steps": steps}, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
