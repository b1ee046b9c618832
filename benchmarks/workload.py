"""A realistic workload: what hookline costs on a small transformer language model, next to the
plain PyTorch loop, Lightning, Ignite and the Hugging Face Trainer, and on JAX next to a raw
jitted Optax loop; and each contender's peak memory.

    python benchmarks/workload.py                   # the full run (about 20 minutes on 2 cores)
    python benchmarks/workload.py --quick           # a small run, for the test suite (< 3 min)
    python benchmarks/workload.py --json results.json
    python benchmarks/workload.py --only raw,hookline-defaults   # some contenders only

The workload (the same for every contender): a causal transformer language model built in
code, 2 pre-norm layers, d_model 128, 4 heads, feed-forward 256, a learned position
embedding, sequences of 64 tokens over a vocabulary of 64, AdamW at 1e-3, batches of 16 on one
CPU thread.  The tokens are generated: a fixed random Markov chain in which every token has 4
possible successors, so the loss falls from ln 64 = 4.16 towards the chain's entropy (about
1.1 per token).  A ``DataLoader`` with one worker process (``persistent_workers=True``; for
the JAX contenders started by a fork server, since a fork of a process running JAX can
deadlock) shuffles and collates the training batches; validation (its own loader and worker)
runs every epoch; a checkpoint is written every epoch.  One worker, not two: the machine this
was written on has 2 cores, the training step uses one thread on one of them and the worker
the other; a second worker would compete with the step for its core and add noise, and
collating 16 rows costs far less than a step.  The Hugging Face Trainer builds its own loaders
from the same rows (one worker, not persistent: shutting its persistent workers down stalls
5 seconds now and then, with or without hookline).

Contenders (those whose framework is not installed are skipped):

* ``raw``: the plain PyTorch loop: train, validate, ``torch.save`` the model and optimizer to
  ``last.pt`` every epoch and to ``best.pt`` when the validation loss improves, print a line;
* ``hookline-bare``: ``hookline.Trainer`` with one plugin, the built-in checkpoint (last and
  best, as raw writes them: atomic files, fsynced);
* ``hookline-defaults``: ``hookline.Model`` with the built-ins ``hookline train`` turns on,
  plots off (as in ``overhead.py``), its console and progress lines going to the process's
  log file;
* ``lightning``: a ``LightningModule`` with Lightning's ``ModelCheckpoint`` (the best by
  ``val_loss`` and the last); no logger, no progress bar;
* ``lightning+hookline``: the same with ``hookline.bridges.lightning.HooklineCallback``
  (its default observers, plots off);
* ``ignite``: an Ignite ``Engine`` and an evaluator with its ``Loss`` metric, and two
  ``Checkpoint`` handlers (the last, the best);
* ``hf`` / ``hf+hookline``: the Hugging Face ``Trainer`` on a GPT-2 from a config of the same
  size (2 layers, 128 wide, 4 heads, feed-forward 256) on the same token rows, evaluation and a
  checkpoint each epoch, with and without ``hookline.bridges.hf.HooklineCallback``;
* ``raw-jax``: the same model in Flax NNX, split into pytrees once, a loop over one
  ``jax.jit``-compiled Optax step (the fast way), a jitted evaluation, and the parameters and
  optimizer state written with msgpack every epoch (last and best);
* ``hookline-jax-defaults``: a ``JaxTask`` under ``hookline.Model`` with its defaults, on
  raw-jax's optimizer (a plain ``optax.adamw``: nothing here schedules the learning rate, so
  it need not be exposed with ``optax.inject_hyperparams``, and ``lr`` is not reported).

Keras (``keras`` / ``keras+hookline``) is left out: the model would have to be written a third
time, Keras's default backend (TensorFlow) is not installed, and the bridge's cost inside Keras
is measured by ``bridges.py``.  The JAX contenders read their batches from the same torch
``DataLoader`` (NumPy arrays), as Flax's own examples do; XLA runs on one thread too.

Ratios are against ``raw`` for the torch contenders (``lightning`` included: the same model),
against ``raw-jax`` for the JAX ones, and for a bridge against its host alone
(``hf+hookline`` against ``hf``, ``lightning+hookline`` against ``lightning``); ``hf``, whose
model is not the same module, is its own baseline.

Each contender runs in a fresh process of its own, one after the other within a round, in an
order that rotates from round to round (the VM's speed drifts: every comparison with a baseline
is made within a round, and the median over rounds is taken).  In its process a contender runs
three times: a warm-up (one epoch of 2 batches: the framework's first-call costs), then the
workload (``--batches`` per epoch), then the workload with twice the batches per epoch.  The
whole-run ratio is the workload's; the cost of a further step is the difference between the two
lengths per step (validation and checkpoints, the same in both, cancel), and what is left of the
workload's time is the cost per run (set-up, validation, checkpoints, compilation).  On JAX a
further step is read from the seconds after the first epoch (compilation done), as in
``overhead.py``.  Timings start after the framework is imported and the loaders' workers are
started, and end when training returns (with JAX, when its last step is done).  ``--quick``
runs one round of a few batches without the warm-up: it checks that everything runs and
reports, its timings mean little.

Memory: each contender's process reports its own peak resident set size (``VmHWM`` from
``/proc/self/status`` when training ends: the main process, not its data-loader workers), and,
with ``--device cuda`` on a machine with CUDA, ``torch.cuda.max_memory_allocated`` (and JAX's
``peak_bytes_in_use`` where its device reports one).  Target: hookline's peak RSS at most 5%
above the plain loop's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from judging import median_interval, verdict
from torch import nn
from torch.utils.data import DataLoader, Dataset

VOCAB, SEQ, D_MODEL, HEADS, FF, LAYERS = 64, 64, 128, 4, 256, 2
SUCCESSORS = 4
BATCH, VAL_BATCH, LR = 16, 64, 1e-3
WORKERS = 1
#: The warm-up run of every process: (batches per epoch, epochs, validation batches).
WARM_UP = (2, 1, 1)
#: Target ratios: hookline with its defaults against the raw loop, and its peak RSS.
TIME_TARGET, MEMORY_TARGET = 1.01, 1.05
#: Environment of each contender's process: one thread for XLA as for torch.
CHILD_ENV = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}

#: The device of the torch contenders (``--device``).
DEVICE = torch.device("cpu")


# -- data: a random Markov chain over the vocabulary ----------------------------------------------


def make_tokens(rows: int, seed: int) -> np.ndarray[Any, Any]:
    """``rows`` sequences of ``SEQ + 1`` tokens from the benchmark's fixed Markov chain."""
    chain = np.random.default_rng(0)
    successors = np.stack([chain.choice(VOCAB, SUCCESSORS, replace=False) for _ in range(VOCAB)])
    cumulative = np.cumsum(chain.dirichlet(np.ones(SUCCESSORS), VOCAB), axis=1)
    rng = np.random.default_rng(seed)
    tokens = np.empty((rows, SEQ + 1), dtype=np.int64)
    tokens[:, 0] = rng.integers(0, VOCAB, rows)
    for position in range(1, SEQ + 1):
        previous = tokens[:, position - 1]
        pick = (rng.random(rows)[:, None] > cumulative[previous]).sum(axis=1)
        tokens[:, position] = successors[previous, np.minimum(pick, SUCCESSORS - 1)]
    return tokens


class Sequences(Dataset[Any]):
    """Token rows; ``as_dict`` for the Hugging Face Trainer (``input_ids`` and ``labels``: the
    model shifts them, so that it predicts the same 64 next tokens as the others)."""

    def __init__(self, tokens: np.ndarray[Any, Any], as_dict: bool = False) -> None:
        self.tokens = tokens
        self.as_dict = as_dict

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> Any:
        row = self.tokens[index]
        if self.as_dict:
            ids = torch.from_numpy(row)
            return {"input_ids": ids, "labels": ids}
        return row


def collate_torch(rows: list[np.ndarray[Any, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = torch.from_numpy(np.stack(rows))
    return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()


def collate_numpy(rows: list[np.ndarray[Any, Any]]) -> tuple[Any, Any]:
    batch = np.stack(rows).astype(np.int32)
    return np.ascontiguousarray(batch[:, :-1]), np.ascontiguousarray(batch[:, 1:])


Loaders = tuple[DataLoader[Any], DataLoader[Any]]


def make_loaders(batches: int, val_batches: int, numpy: bool) -> Loaders:
    """The training loader (``batches`` per epoch, shuffled) and the validation loader, each
    with its worker already started, so that starting it is not timed."""
    options: dict[str, Any] = {
        "collate_fn": collate_numpy if numpy else collate_torch, "num_workers": WORKERS,
        "persistent_workers": WORKERS > 0,
        "multiprocessing_context": "forkserver" if WORKERS > 0 and numpy else None,
    }
    train = DataLoader(
        Sequences(make_tokens(batches * BATCH, seed=1)), batch_size=BATCH, shuffle=True,
        drop_last=True, generator=torch.Generator().manual_seed(0), **options,
    )
    val = DataLoader(
        Sequences(make_tokens(val_batches * VAL_BATCH, seed=2)), batch_size=VAL_BATCH, **options
    )
    for loader in (train, val):
        next(iter(loader))  # persistent: the worker starts now and serves every epoch
    return train, val


def lm_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every position."""
    return nn.functional.cross_entropy(outputs.reshape(-1, VOCAB), targets.reshape(-1))


# -- the model, in torch ---------------------------------------------------------------------------


class TorchLM(nn.Module):
    """A causal transformer language model: embeddings, pre-norm encoder layers with a causal
    mask, a final norm and the output projection."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        self.position = nn.Parameter(torch.randn(SEQ, D_MODEL) * 0.02)
        layer = nn.TransformerEncoderLayer(
            D_MODEL, HEADS, FF, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB)
        mask = nn.Transformer.generate_square_subsequent_mask(SEQ)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens) + self.position
        hidden = self.blocks(hidden, mask=self.mask, is_causal=True)
        return self.head(self.norm(hidden))


def make_torch_model() -> TorchLM:
    torch.manual_seed(0)
    return TorchLM()


# -- contenders: each trains once and returns its Timing ------------------------------------------


@dataclass
class Timing:
    """A run's seconds, its seconds after the first epoch's end (None: not measured) and its
    last validation loss."""

    seconds: float
    steady: float | None
    val_loss: float


Run = Callable[[DataLoader[Any], DataLoader[Any], int, Path], Timing]


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def raw(train: DataLoader[Any], val: DataLoader[Any], epochs: int, folder: Path) -> Timing:
    started = time.perf_counter()
    model = make_torch_model().to(DEVICE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    (folder / "weights").mkdir(parents=True, exist_ok=True)
    best = first = math.inf
    val_loss = math.nan
    for epoch in range(epochs):
        model.train()
        total, count = torch.zeros((), device=DEVICE), 0
        for inputs, targets in train:
            inputs, targets = inputs.to(DEVICE), targets.to(DEVICE)
            loss = lm_loss(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(targets)
            count += len(targets)
        train_loss = float(total) / count
        model.eval()
        total, count = torch.zeros((), device=DEVICE), 0
        with torch.no_grad():
            for inputs, targets in val:
                inputs, targets = inputs.to(DEVICE), targets.to(DEVICE)
                total += lm_loss(model(inputs), targets) * len(targets)
                count += len(targets)
        val_loss = float(total) / count
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "epoch": epoch}
        torch.save(state, folder / "weights" / "last.pt")
        if val_loss < best:
            best = val_loss
            torch.save(state, folder / "weights" / "best.pt")
        print(f"epoch {epoch + 1}/{epochs}: train/loss {train_loss:.4f} val/loss {val_loss:.4f}")
        if epoch == 0:
            first = time.perf_counter()
    synchronize()
    ended = time.perf_counter()
    return Timing(ended - started, ended - first, val_loss)


def torch_task() -> Any:
    from hookline.backends.torch import TorchTask

    return TorchTask(
        make_torch_model(), lm_loss, lambda parameters: torch.optim.AdamW(parameters, lr=LR),
        device=DEVICE,
    )


def hookline_bare(train: DataLoader[Any], val: DataLoader[Any], epochs: int,
                  folder: Path) -> Timing:
    from hookline import PluginManager, Trainer
    from hookline.plugins.checkpoint import ModelCheckpoint

    started = time.perf_counter()
    marker = first_epoch_marker()
    trainer = Trainer(torch_task(), [ModelCheckpoint(), marker], manager=PluginManager())
    metrics = trainer.fit(train, val, epochs=epochs, save_dir=folder)
    synchronize()
    ended = time.perf_counter()
    return Timing(ended - started, ended - marker.ended, float(metrics["val/loss"]))


def hookline_defaults(train: DataLoader[Any], val: DataLoader[Any], epochs: int,
                      folder: Path) -> Timing:
    import hookline
    from hookline import PluginManager

    started = time.perf_counter()
    marker = first_epoch_marker()
    # no installed entry-point plugins: only hookline's own defaults
    model = hookline.Model(torch_task(), [marker], manager=PluginManager())
    metrics = model.train(train, val, epochs=epochs, project=str(folder), name="bench",
                          plots=False)
    synchronize()
    ended = time.perf_counter()
    return Timing(ended - started, ended - marker.ended, float(metrics["val/loss"]))


def first_epoch_marker() -> Any:
    """A plugin that notes when the first epoch ended (after validation and its checkpoint;
    its validation loss was read, so the device had finished it)."""
    from hookline import Callback, hookimpl

    class FirstEpoch(Callback):
        ended = math.inf

        @hookimpl(trylast=True)
        def on_fit_epoch_end(self, trainer: Any) -> None:
            if trainer.epoch == 0:
                self.ended = time.perf_counter()

    return FirstEpoch()


def lightning_contender(bridge: bool) -> Run:
    import lightning.pytorch as pl

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_torch_model()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            inputs, targets = batch
            return lm_loss(self.model(inputs), targets)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            inputs, targets = batch
            self.log("val_loss", lm_loss(self.model(inputs), targets), batch_size=len(targets))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=LR)

    def run(train: DataLoader[Any], val: DataLoader[Any], epochs: int, folder: Path) -> Timing:
        started = time.perf_counter()
        callbacks: list[Any] = [pl.callbacks.ModelCheckpoint(
            dirpath=folder / "checkpoints", monitor="val_loss", save_last=True,
        )]
        if bridge:
            from hookline.bridges.lightning import HooklineCallback

            callbacks.append(HooklineCallback(save_dir=folder / "hookline", plots=False))
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="gpu" if DEVICE.type == "cuda" else "cpu",
            devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, default_root_dir=str(folder), callbacks=callbacks,
        )
        trainer.fit(Module(), train, val)
        synchronize()
        ended = time.perf_counter()
        return Timing(ended - started, None, float(trainer.callback_metrics["val_loss"]))

    return run


def ignite_contender() -> Run:
    from ignite.engine import Engine, Events
    from ignite.handlers import Checkpoint, DiskSaver
    from ignite.metrics import Loss

    def run(train: DataLoader[Any], val: DataLoader[Any], epochs: int, folder: Path) -> Timing:
        started = time.perf_counter()
        model = make_torch_model().to(DEVICE)
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)

        def train_step(engine: Engine, batch: Any) -> torch.Tensor:
            inputs, targets = (part.to(DEVICE) for part in batch)
            loss = lm_loss(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.detach()  # no .item(): no host sync per step

        def eval_step(engine: Engine, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            inputs, targets = (part.to(DEVICE) for part in batch)
            with torch.no_grad():
                return model(inputs), targets

        trainer, evaluator = Engine(train_step), Engine(eval_step)
        Loss(lm_loss).attach(evaluator, "loss")
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: model.train())

        @trainer.on(Events.EPOCH_COMPLETED)
        def validate(engine: Engine) -> None:
            model.eval()
            evaluator.run(val)

        folder.mkdir(parents=True, exist_ok=True)
        objects = {"model": model, "optimizer": optimizer}
        last = Checkpoint(objects, DiskSaver(str(folder), require_empty=False),
                          filename_prefix="last", n_saved=1)
        best = Checkpoint(objects, DiskSaver(str(folder), require_empty=False),
                          filename_prefix="best", n_saved=1,
                          score_function=lambda _: -evaluator.state.metrics["loss"])
        trainer.add_event_handler(Events.EPOCH_COMPLETED, last)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, best)
        trainer.run(train, max_epochs=epochs)
        synchronize()
        ended = time.perf_counter()
        return Timing(ended - started, None, float(evaluator.state.metrics["loss"]))

    return run


def hf_contender(bridge: bool) -> Run:
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=128, n_embd=D_MODEL, n_layer=LAYERS, n_head=HEADS,
        n_inner=FF, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )

    def run(train: DataLoader[Any], val: DataLoader[Any], epochs: int, folder: Path) -> Timing:
        # the Trainer makes its own loaders: the same rows, workers and batch sizes
        train_rows = Sequences(train.dataset.tokens, as_dict=True)  # type: ignore[attr-defined]
        val_rows = Sequences(val.dataset.tokens, as_dict=True)  # type: ignore[attr-defined]
        started = time.perf_counter()
        torch.manual_seed(0)
        model = transformers.GPT2LMHeadModel(config)
        arguments = transformers.TrainingArguments(
            output_dir=str(folder), num_train_epochs=epochs, learning_rate=LR,
            per_device_train_batch_size=BATCH, per_device_eval_batch_size=VAL_BATCH,
            eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
            logging_strategy="epoch", report_to=[], use_cpu=DEVICE.type != "cuda",
            disable_tqdm=True, dataloader_num_workers=WORKERS, dataloader_drop_last=True,
            seed=0,  # not persistent workers: their shutdown stalls 5 s now and then in here
        )
        callbacks: list[Any] = []
        if bridge:
            from hookline.bridges.hf import HooklineCallback

            callbacks.append(HooklineCallback(save_dir=folder / "hookline", plots=False))
        trainer = transformers.Trainer(
            model=model, args=arguments, train_dataset=train_rows, eval_dataset=val_rows,
            callbacks=callbacks,
        )
        trainer.train()
        synchronize()
        ended = time.perf_counter()
        evaluations = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
        return Timing(ended - started, None, float(evaluations[-1]["eval_loss"]))

    return run


# -- the JAX contenders: the same model in Flax NNX ----------------------------------------------


def jax_model() -> Any:
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.attention_norm = nnx.LayerNorm(D_MODEL, rngs=rngs)
            self.attention = nnx.MultiHeadAttention(
                HEADS, D_MODEL, decode=False, keep_rngs=False, rngs=rngs
            )
            self.mlp_norm = nnx.LayerNorm(D_MODEL, rngs=rngs)
            self.up = nnx.Linear(D_MODEL, FF, rngs=rngs)
            self.down = nnx.Linear(FF, D_MODEL, rngs=rngs)

        def __call__(self, hidden: Any, mask: Any) -> Any:
            hidden = hidden + self.attention(self.attention_norm(hidden), mask=mask)
            return hidden + self.down(nnx.relu(self.up(self.mlp_norm(hidden))))

    class JaxLM(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.embed = nnx.Embed(VOCAB, D_MODEL, rngs=rngs)
            self.position = nnx.Param(0.02 * nnx.initializers.normal(1.0)(
                rngs.params(), (SEQ, D_MODEL)
            ))
            self.blocks = nnx.List([Block(rngs) for _ in range(LAYERS)])
            self.norm = nnx.LayerNorm(D_MODEL, rngs=rngs)
            self.head = nnx.Linear(D_MODEL, VOCAB, rngs=rngs)

        def __call__(self, tokens: Any) -> Any:
            mask = nnx.make_causal_mask(tokens)
            hidden = self.embed(tokens) + self.position[...]
            for block in self.blocks:
                hidden = block(hidden, mask)
            return self.head(self.norm(hidden))

    return JaxLM(nnx.Rngs(0))


def raw_jax() -> Run:
    import flax.serialization
    import jax
    import optax
    from flax import nnx

    from hookline.backends.jax import cross_entropy

    def run(train: DataLoader[Any], val: DataLoader[Any], epochs: int, folder: Path) -> Timing:
        started = time.perf_counter()
        graphdef, params, rest = nnx.split(jax_model(), nnx.Param, ...)
        optimizer = optax.adamw(LR)
        state = optimizer.init(params)

        def loss_of(params: Any, inputs: Any, targets: Any) -> Any:
            return cross_entropy(nnx.merge(graphdef, params, rest)(inputs), targets)

        @jax.jit
        def step(params: Any, state: Any, inputs: Any, targets: Any) -> Any:
            value, grads = jax.value_and_grad(loss_of)(params, inputs, targets)
            updates, state = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates), state, value

        @jax.jit
        def evaluate(params: Any, inputs: Any, targets: Any) -> Any:
            return loss_of(params, inputs, targets) * targets.shape[0]

        (folder / "weights").mkdir(parents=True, exist_ok=True)
        best = first = math.inf
        val_loss = math.nan
        for epoch in range(epochs):
            losses = []
            for inputs, targets in train:
                params, state, value = step(params, state, inputs, targets)
                losses.append(value)
            train_loss = float(jax.numpy.mean(jax.numpy.stack(losses)))
            sums, count = [], 0
            for inputs, targets in val:
                sums.append(evaluate(params, inputs, targets))
                count += len(targets)
            val_loss = float(sum(sums)) / count
            leaves = jax.device_get(jax.tree_util.tree_leaves((params, state)))
            payload = flax.serialization.msgpack_serialize(
                {"epoch": epoch, "state": {str(index): leaf for index, leaf in enumerate(leaves)}}
            )
            (folder / "weights" / "last.msgpack").write_bytes(payload)
            if val_loss < best:
                best = val_loss
                (folder / "weights" / "best.msgpack").write_bytes(payload)
            print(f"epoch {epoch + 1}/{epochs}: train/loss {train_loss:.4f} "
                  f"val/loss {val_loss:.4f}")
            if epoch == 0:
                first = time.perf_counter()
        jax.block_until_ready(params)
        ended = time.perf_counter()
        return Timing(ended - started, ended - first, val_loss)

    return run


def hookline_jax_defaults() -> Run:
    import jax
    import optax

    import hookline
    from hookline import PluginManager
    from hookline.backends.jax import JaxTask, cross_entropy

    def run(train: DataLoader[Any], val: DataLoader[Any], epochs: int, folder: Path) -> Timing:
        started = time.perf_counter()
        marker = first_epoch_marker()
        task = JaxTask(jax_model(), cross_entropy, optax.adamw(LR))  # raw-jax's optimizer
        model = hookline.Model(task, [marker], manager=PluginManager())
        metrics = model.train(train, val, epochs=epochs, project=str(folder), name="bench",
                              plots=False)
        assert model.trainer is not None
        jax.block_until_ready(model.trainer.loss)
        ended = time.perf_counter()
        return Timing(ended - started, ended - marker.ended, float(metrics["val/loss"]))

    return run


@dataclass(frozen=True)
class Contender:
    """A contender: its factory (which imports its framework), the modules it needs (it is
    skipped without them), its baseline, and whether it reads NumPy batches."""

    make: Callable[[], Run]
    needs: tuple[str, ...]
    baseline: str
    numpy: bool = False


TORCH, LIGHTNING, IGNITE = ("torch",), ("lightning",), ("ignite",)
HF, JAX = ("transformers", "accelerate"), ("jax", "flax", "optax")
CONTENDERS: dict[str, Contender] = {
    "raw": Contender(lambda: raw, TORCH, "raw"),
    "hookline-bare": Contender(lambda: hookline_bare, TORCH, "raw"),
    "hookline-defaults": Contender(lambda: hookline_defaults, TORCH, "raw"),
    "lightning": Contender(lambda: lightning_contender(False), LIGHTNING, "raw"),
    "lightning+hookline": Contender(lambda: lightning_contender(True), LIGHTNING, "lightning"),
    "ignite": Contender(ignite_contender, IGNITE, "raw"),
    "hf": Contender(lambda: hf_contender(False), HF, "hf"),
    "hf+hookline": Contender(lambda: hf_contender(True), HF, "hf"),
    "raw-jax": Contender(raw_jax, JAX, "raw-jax", numpy=True),
    "hookline-jax-defaults": Contender(hookline_jax_defaults, JAX, "raw-jax", numpy=True),
}


# -- a contender's own process ---------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``; ``ru_maxrss`` where there is no
    /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_device_bytes() -> int | None:
    """Peak device memory: torch's on CUDA, else JAX's where its device reports it."""
    if DEVICE.type == "cuda":
        return int(torch.cuda.max_memory_allocated(DEVICE))
    if "jax" in sys.modules:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return int(stats["peak_bytes_in_use"])
    return None


def child(name: str, batches: int, epochs: int, val_batches: int, folder: Path,
          output: Path, warm_up: bool = True) -> None:
    """Run one contender (a warm-up unless told not to, the workload, the workload at twice
    the batches per epoch) in this process and write its timings and peak memory to
    ``output``."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    # A fork server's worker imports this script again: with torch already imported in the
    # server, that is quick (Python's own preload of ``__main__`` misses a script's path).
    multiprocessing.set_forkserver_preload(["torch", "numpy"])
    contender = CONTENDERS[name]
    run = contender.make()
    timings = {}
    plan = {"warm-up": WARM_UP} if warm_up else {}
    plan.update(short=(batches, epochs, val_batches), long=(2 * batches, epochs, val_batches))
    for label, (size, epochs_of_run, val_size) in plan.items():
        train, val = make_loaders(size, val_size, contender.numpy)
        timings[label] = asdict(run(train, val, epochs_of_run, folder / label))
        timings[label]["peak_rss_bytes"] = peak_rss_bytes()  # so far: where the peak came
        del train, val  # their workers end
    output.write_text(json.dumps({
        "timings": timings, "peak_rss_bytes": peak_rss_bytes(),
        "peak_device_bytes": peak_device_bytes(),
    }))


# -- the parent: rounds of fresh processes, then the table -----------------------------------------


def run_child(name: str, args: argparse.Namespace, scratch: Path, index: int) -> dict[str, Any]:
    folder = scratch / f"{name}-{index}"
    output = scratch / f"{name}-{index}.json"
    log = scratch / f"{name}-{index}.log"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", name,
        "--batches", str(args.batches), "--epochs", str(args.epochs),
        "--val-batches", str(args.val_batches), "--device", args.device,
        "--folder", str(folder), "--output", str(output),
    ] + (["--quick"] if args.quick else [])
    started = time.perf_counter()
    with open(log, "w") as stream:
        result = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT,
                                env={**os.environ, **CHILD_ENV}, timeout=args.timeout,
                                check=False)
    if result.returncode != 0:
        tail = log.read_text()[-4000:]
        raise RuntimeError(f"contender {name} failed (exit {result.returncode}):\n{tail}")
    data: dict[str, Any] = json.loads(output.read_text())
    data["process_s"] = time.perf_counter() - started
    return data


def available(only: list[str] | None) -> dict[str, Contender]:
    import importlib.util

    found = {}
    for name, contender in CONTENDERS.items():
        if only is not None and name not in only:
            continue
        missing = [module for module in contender.needs if importlib.util.find_spec(module) is None]
        if missing:
            print(f"{', '.join(missing)} not installed: skipping {name}")
            continue
        if contender.baseline not in CONTENDERS or (
            only is not None and contender.baseline not in only
        ):
            print(f"{name} needs its baseline {contender.baseline}: skipping it")
            continue
        found[name] = contender
    return found


def _seconds(entry: dict[str, Any], label: str) -> float:
    return float(entry["timings"][label]["seconds"])


def _step_s(entry: dict[str, Any], steps: int, steady: bool) -> float:
    """A further step: the long run's extra seconds over the short run's, per added step
    (``steady``: counted after the first epoch, compilation done)."""
    key = "steady" if steady else "seconds"
    timings = entry["timings"]
    return float(timings["long"][key] - timings["short"][key]) / steps


def _fixed_s(entry: dict[str, Any], steps: int, steady: bool) -> float:
    """What the workload costs beyond its steps: set-up, validation, checkpoints, compilation."""
    return _seconds(entry, "short") - steps * _step_s(entry, steps, steady)


def summarize(runs: dict[str, list[dict[str, Any]]], contenders: dict[str, Contender],
              batches: int, epochs: int) -> dict[str, dict[str, Any]]:
    """Per contender, against its baseline, over the rounds: the medians of the paired ratios
    and differences (the keys of ``overhead.py``), and the peak memory."""
    steps = batches * epochs  # in the workload, and also the steps the long run adds
    median = statistics.median
    results: dict[str, dict[str, Any]] = {}
    for name, rounds in runs.items():
        base = runs[contenders[name].baseline]
        pairs = list(zip(rounds, base, strict=True))
        steady = all(entry["timings"]["short"]["steady"] is not None for entry in rounds + base)
        short = [_seconds(entry, "short") for entry in rounds]
        row: dict[str, Any] = {
            "baseline": contenders[name].baseline,
            "run_s": median(short),
            "step_us": median(short) / steps * 1e6,
            "overhead_us": median(_seconds(a, "short") - _seconds(b, "short")
                                  for a, b in pairs) / steps * 1e6,
            "ratio": median(ratios := [_seconds(a, "short") / _seconds(b, "short")
                                       for a, b in pairs]),
            "ratio_interval": median_interval(ratios),
            "per_run_ms": median(_fixed_s(a, steps, steady) - _fixed_s(b, steps, steady)
                                 for a, b in pairs) * 1e3,
            "per_step_us": median(_step_s(a, steps, steady) - _step_s(b, steps, steady)
                                  for a, b in pairs) * 1e6,
            "step_ratio": median(_step_s(a, steps, steady) / _step_s(b, steps, steady)
                                 for a, b in pairs),
            "peak_rss_mb": median(entry["peak_rss_bytes"] / 2**20 for entry in rounds),
            "rss_ratio": median(rss := [a["peak_rss_bytes"] / b["peak_rss_bytes"]
                                        for a, b in pairs]),
            "rss_ratio_interval": median_interval(rss),
            "val_loss": median(entry["timings"]["short"]["val_loss"] for entry in rounds),
            "rounds": [{"short_s": _seconds(entry, "short"), "long_s": _seconds(entry, "long"),
                        "peak_rss_mb": entry["peak_rss_bytes"] / 2**20,
                        "peak_rss_mb_after": {label: timing["peak_rss_bytes"] / 2**20
                                              for label, timing in entry["timings"].items()},
                        "process_s": entry["process_s"]} for entry in rounds],
        }
        devices = [entry["peak_device_bytes"] for entry in rounds]
        if all(value is not None for value in devices):
            row["peak_device_mb"] = median(devices) / 2**20
        if name == contenders[name].baseline:  # exactly, not a float's noise
            row.update(ratio=1.0, overhead_us=0.0, per_run_ms=0.0, per_step_us=0.0,
                       step_ratio=1.0, rss_ratio=1.0, ratio_interval=(1.0, 1.0),
                       rss_ratio_interval=(1.0, 1.0))
        results[name] = row
    return results


def print_table(steps: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'contender':<22} {'vs':<10}{'s/run':>7}{'ms/step':>9}{'x base':>8}"
          f"{'ms/run':>10}{'us/step':>10}{'step x':>8}{'RSS MiB':>9}{'RSS x':>7}{'val loss':>9}")
    for name, row in steps.items():
        print(f"{name:<22} {row['baseline']:<10}{row['run_s']:>7.2f}"
              f"{row['step_us'] / 1e3:>9.2f}{row['ratio']:>8.3f}{row['per_run_ms']:>10.1f}"
              f"{row['per_step_us']:>10.1f}{row['step_ratio']:>8.3f}{row['peak_rss_mb']:>9.1f}"
              f"{row['rss_ratio']:>7.3f}{row['val_loss']:>9.3f}")
    if any("peak_device_mb" in row for row in steps.values()):
        print("peak device memory (MiB): " + ", ".join(
            f"{name} {row['peak_device_mb']:.1f}" for name, row in steps.items()
            if "peak_device_mb" in row
        ))
    print("s/run, ms/step: the workload's median seconds, and per step all included; x base: "
          "its median ratio\nto the baseline's in the same round; ms/run: its cost beyond "
          "its steps (set-up, validation,\ncheckpoints, compilation) over the baseline's; "
          "us/step, step x: a further step's cost\n(twice the batches per epoch; on JAX after "
          "the first epoch) over and against the baseline's;\nRSS: the process's peak resident "
          "set size, and its ratio to the baseline's")


def verdicts(steps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets: hookline with its defaults within 1% of the raw loop on each backend, and
    within 5% of its peak RSS; each judged on the interval of its median over the rounds
    (:func:`judging.verdict`: met, missed or not resolved), and printed."""
    found: dict[str, Any] = {}
    for name, baseline in (("hookline-defaults", "raw"), ("hookline-jax-defaults", "raw-jax")):
        if name not in steps:
            continue
        row = steps[name]
        time_verdict = verdict(row["ratio_interval"], TIME_TARGET)
        rss_verdict = verdict(row["rss_ratio_interval"], MEMORY_TARGET)
        found[name] = {"ratio": row["ratio"], "target": TIME_TARGET, "verdict": time_verdict,
                       "met": time_verdict == "met", "rss_ratio": row["rss_ratio"],
                       "rss_target": MEMORY_TARGET, "rss_verdict": rss_verdict,
                       "rss_met": rss_verdict == "met"}
        low, high = row["ratio_interval"]
        print(f"{name}: the workload takes {row['ratio']:.3f}x {baseline}'s time (95% interval "
              f"{low:.3f} to {high:.3f}; target <= {TIME_TARGET:.2f}x: {time_verdict}); a "
              f"further step {row['step_ratio']:.3f}x; {row['per_run_ms']:+.0f} ms per run")
        low, high = row["rss_ratio_interval"]
        print(f"{name}: peak RSS {row['peak_rss_mb']:.1f} MiB, {row['rss_ratio']:.3f}x "
              f"{baseline}'s (95% interval {low:.3f} to {high:.3f}; target <= "
              f"{MEMORY_TARGET:.2f}x: {rss_verdict})")
    for name, row in steps.items():
        if name.endswith("+hookline"):
            print(f"{name}: {row['ratio']:.3f}x {row['baseline']} alone (a further step "
                  f"{row['step_ratio']:.3f}x), peak RSS {row['rss_ratio']:.3f}x")
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    global DEVICE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (for tests)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--batches", type=int, default=None, help="training batches per epoch")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--val-batches", type=int, default=None, help="of 64 sequences")
    parser.add_argument("--only", default=None, help="comma-separated contenders")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="the torch contenders' device")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    DEVICE = torch.device(args.device)
    quick = (4, 2, 1, 1) if args.quick else (48, 3, 4, 5)
    args.batches = args.batches or quick[0]
    args.epochs = args.epochs or quick[1]
    args.val_batches = args.val_batches or quick[2]
    rounds = args.rounds or quick[3]
    if args.child is not None:
        child(args.child, args.batches, args.epochs, args.val_batches, args.folder, args.output,
              warm_up=not args.quick)
        return {}
    contenders = available(args.only.split(",") if args.only else None)
    print(f"torch {torch.__version__} on {args.device}, 1 thread; a {LAYERS}-layer transformer LM "
          f"(d_model {D_MODEL}, sequence {SEQ}, vocabulary {VOCAB}), batches of {BATCH}, "
          f"{args.batches} (and {2 * args.batches}) batches per epoch, {args.epochs} epochs, "
          f"validation {args.val_batches} x {VAL_BATCH} rows; {WORKERS} loader worker; "
          f"{rounds} interleaved rounds, each contender a fresh process")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(rounds):
            names = list(contenders)
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                runs[name].append(run_child(name, args, Path(scratch), index))
    steps = summarize(runs, contenders, args.batches, args.epochs)
    print_table(steps)
    targets = verdicts(steps)
    print(f"({time.perf_counter() - started:.0f} s in all)")
    results = {"steps": steps, "targets": targets, "quick": args.quick, "config": {
        "batches": args.batches, "epochs": args.epochs, "val_batches": args.val_batches,
        "rounds": rounds, "batch": BATCH, "sequence": SEQ, "d_model": D_MODEL,
        "layers": LAYERS, "vocabulary": VOCAB, "workers": WORKERS, "device": args.device,
    }}
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        main()
