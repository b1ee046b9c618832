"""How long a checkpoint blocks the training loop, against the size of the model state.

    python benchmarks/checkpoints.py             # 10 MB, 100 MB and 1 GB; a few minutes
    python benchmarks/checkpoints.py --quick     # 10 MB only, for the test suite
    python benchmarks/checkpoints.py --json results.json

The state is a model's parameters and AdamW's two moments (a third each), in tensors of at
most 16 MB, on the CPU, one thread.  For each size, the time the loop is blocked per
checkpoint (the median of the repetitions) for:

``hookline sync``
    ``ModelCheckpoint(save_every_n_steps=1)`` inside ``Trainer.fit``: the whole
    ``on_train_batch_end`` of a step that saves (the state, the payload streamed into a
    temporary file while hashed, one fsync, the rename, a hard link for ``last.pt``).
``hookline async``
    The same with ``async_checkpoint=True``: the loop waits for the state's copy in host memory;
    the file is written in a background thread (its time is reported as ``background``).
``torch.save`` and ``torch.save + fsync``
    ``torch.save`` of the same model and optimizer state to a file (then one ``fsync``).
``host copy``
    ``TorchTask.host_copy`` of that state alone: what an asynchronous save cannot avoid.
``dcp async_save`` and ``dcp save``
    ``torch.distributed.checkpoint`` in one process (a gloo group of one): the time
    ``async_save`` blocks (it stages the state in CPU memory, then writes in a thread), and the
    synchronous ``save``.

Every save starts with no write in flight and nothing left for the kernel to write back: before
each, uncounted, the benchmark waits for the background write to end (a loop whose checkpoints
come closer together than a write takes waits for the previous one at the next save) and
calls ``os.sync()``.  Each contender overwrites its own file (directory, for DCP).

Targets: ``hookline async`` at most 1.5x ``host copy``; ``hookline sync`` at most 1.5x
``torch.save + fsync``; the ratios come from the same run.  The 1 GB row runs last, with
fewer repetitions (it needs about 3 GB of memory: the state, a host copy and the page cache).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hookline import PluginManager, Trainer
from hookline.backends.torch import TorchTask
from hookline.plugins.checkpoint import ModelCheckpoint

torch.set_num_threads(1)
MB = 1_000_000
#: The largest tensor of the state, in bytes.
CHUNK_BYTES = 16 * MB
#: The state sizes of a full run and the repetitions of each (the median is reported).
SIZES = {10 * MB: 10, 100 * MB: 10, 1000 * MB: 6}
QUICK_SIZES = {10 * MB: 5}
CONTENDERS = (
    "hookline sync", "hookline async", "torch.save", "torch.save + fsync", "host copy",
    "dcp async_save", "dcp save",
)
#: The loop-cost run: input features, the head's width, steps, a checkpoint every this many
#: steps, rounds (each runs the three modes once, interleaved).
FEATURES, WIDTH, STEPS, EVERY, ROUNDS = 256, 512, 60, 10, 3
#: A target: contender, reference, largest ratio.
TARGETS = (("hookline async", "host copy", 1.5), ("hookline sync", "torch.save + fsync", 1.5))


class BigModel(nn.Module):
    """Parameters of ``nbytes / 3`` bytes in all (AdamW's moments make up the rest of the
    state), of which only a head trains: a tiny one (a step stays cheap at any size), or with
    ``width`` an MLP on 256 features that makes a step take some milliseconds."""

    def __init__(self, nbytes: int, width: int = 0) -> None:
        super().__init__()
        floats = nbytes // 3 // 4
        sizes = [CHUNK_BYTES // 4] * (floats // (CHUNK_BYTES // 4))
        if floats % (CHUNK_BYTES // 4):
            sizes.append(floats % (CHUNK_BYTES // 4))
        self.chunks = nn.ParameterList(nn.Parameter(torch.randn(size)) for size in sizes)
        self.head: nn.Module = nn.Linear(8, 2) if not width else nn.Sequential(
            nn.Linear(FEATURES, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, 2),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(inputs)


def make_task(nbytes: int, width: int = 0) -> TorchTask:
    """A task whose state (model and AdamW moments) is ``nbytes`` large."""
    model = BigModel(nbytes, width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()  # every moment exists; from now on only the head has gradients
    optimizer.zero_grad(set_to_none=True)
    return TorchTask(model, nn.functional.cross_entropy, optimizer, device="cpu")


def state_bytes(task: TorchTask) -> int:
    total = 0

    def visit(value: Any) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(task.state_dict())
    return total


class Timed(ModelCheckpoint):
    """The checkpoint plugin saving every other step (``parity``), with the time each save
    blocks the loop recorded; then (uncounted) it waits for the write to end."""

    def __init__(self, parity: int, **options: Any) -> None:
        super().__init__(save_every_n_steps=1, save_last=False, save_top_k=0, **options)
        self.parity = parity
        self.blocked: list[float] = []
        self.background: list[float] = []

    def on_train_batch_end(self, trainer: Any) -> None:
        if trainer.global_step % 2 == self.parity:
            start = time.perf_counter()
            super().on_train_batch_end(trainer)
            submitted = time.perf_counter()
            self.blocked.append(submitted - start)
            if self._writer.pending:  # the benchmark's own wait: no write in flight later
                self._collect(trainer, wait=True)
                self.background.append(time.perf_counter() - submitted)


class TimedSync(Timed):
    """Saves on odd steps, in the loop."""

    def __init__(self) -> None:
        super().__init__(1, filename="sync")


class TimedAsync(Timed):
    """Saves on even steps, in the background."""

    def __init__(self) -> None:
        super().__init__(0, filename="async", async_checkpoint=True)


def baselines(task: TorchTask, folder: Path) -> dict[str, Callable[[], Any]]:
    """One save each: torch.save (with and without an fsync), the host copy alone, DCP."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    def state() -> dict[str, Any]:
        return {"task": task.state_dict()}

    def torch_save(fsync: bool) -> Callable[[], None]:
        def save() -> None:
            path = folder / "torch.pt"
            torch.save(state(), path)
            if fsync:
                handle = os.open(path, os.O_RDONLY)
                os.fsync(handle)
                os.close(handle)
        return save

    def dcp_state() -> dict[str, Any]:
        assert task.optimizer is not None
        model_state, optimizer_state = get_state_dict(task.model, task.optimizer)
        return {"model": model_state, "optimizer": optimizer_state}

    return {
        "torch.save": torch_save(False),
        "torch.save + fsync": torch_save(True),
        "host copy": lambda: task.host_copy(state()),
        "dcp async_save": lambda: dcp.async_save(dcp_state(), checkpoint_id=folder / "dcp"),
        "dcp save": lambda: dcp.save(dcp_state(), checkpoint_id=folder / "dcp"),
    }


def settle() -> None:
    """Before a timed save (uncounted): no garbage, and no dirty page of an earlier save left
    for the kernel to write back, which an fsync in the save would otherwise wait for."""
    gc.collect()
    os.sync()


def measure(nbytes: int, repetitions: int) -> dict[str, Any]:
    """Every contender ``repetitions`` times (after one warm-up round), interleaved: one fit
    whose steps alternate a synchronous and an asynchronous hookline save, with a round of
    the other contenders between two steps; no write is in flight when a save starts."""
    task = make_task(nbytes)
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="hookline-checkpoints-") as temporary:
        folder = Path(temporary)
        (folder / "baselines").mkdir()
        others = baselines(task, folder / "baselines")
        for name in others:
            times[name] = []

        def batches() -> Any:
            batch = (torch.randn(4, 8), torch.tensor([0, 1, 0, 1]))
            for index in range(2 * (repetitions + 1)):
                if index % 2 == 0:
                    for name, run in others.items():
                        settle()
                        start = time.perf_counter()
                        result = run()
                        elapsed = time.perf_counter() - start
                        if hasattr(result, "result"):
                            result.result()  # DCP's write in flight ends (uncounted)
                        del result
                        shutil.rmtree(folder / "baselines" / "dcp", ignore_errors=True)
                        if index:
                            times[name].append(elapsed)
                settle()
                yield batch

        sync, asynchronous = TimedSync(), TimedAsync()
        trainer = Trainer(task, [sync, asynchronous], manager=PluginManager())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(batches(), epochs=1, save_dir=folder / "run", log_every_n_steps=0)
    times["hookline sync"], times["hookline async"] = sync.blocked[1:], asynchronous.blocked[1:]
    background = asynchronous.background[1:]
    row: dict[str, Any] = {
        "state_bytes": state_bytes(task), "repetitions": repetitions,
        "blocked_ms": {name: 1000 * statistics.median(times[name]) for name in CONTENDERS},
        "fastest_ms": {name: 1000 * min(times[name]) for name in CONTENDERS},
        "samples_ms": {name: [round(1000 * t, 2) for t in times[name]] for name in CONTENDERS},
        "background_ms": 1000 * statistics.median(background) if background else None,
    }
    row["targets"] = {
        f"{name} / {reference}": {
            "ratio": row["blocked_ms"][name] / row["blocked_ms"][reference], "limit": limit,
            "met": row["blocked_ms"][name] <= limit * row["blocked_ms"][reference],
        }
        for name, reference, limit in TARGETS
    }
    del task
    gc.collect()
    return row


def loop_cost(nbytes: int, rounds: int, steps: int = STEPS) -> dict[str, float]:
    """What checkpoints cost a real loop, every effect included (the save's own blocking, and
    a background write taking cores and the GIL from training): ``fit`` over ``steps`` steps
    of a few milliseconds, saving every ``EVERY`` steps, synchronously, asynchronously or not
    at all; the extra wall time per checkpoint (median over ``rounds`` interleaved rounds)."""
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(256, FEATURES, generator=generator),
                torch.randint(0, 2, (256,), generator=generator))] * steps
    modes: dict[str, dict[str, Any] | None] = {
        "none": None, "sync": {}, "async": {"async_checkpoint": True},
    }
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    task = make_task(nbytes, WIDTH)
    with tempfile.TemporaryDirectory(prefix="hookline-loop-") as temporary:
        for round_ in range(rounds + 1):  # the first round warms up
            for mode, options in modes.items():
                plugins = [] if options is None else [ModelCheckpoint(
                    save_every_n_steps=EVERY, save_last=False, save_top_k=0,
                    filename=f"{mode}-{{step}}", **options,
                )]
                trainer = Trainer(task, plugins, manager=PluginManager())
                gc.collect()
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    trainer.fit(batches, epochs=1, save_dir=Path(temporary) / mode,
                                log_every_n_steps=0)
                if round_:
                    times[mode].append(time.perf_counter() - start)
    del task
    gc.collect()
    checkpoints = steps // EVERY
    step_ms = 1000 * statistics.median(times["none"]) / steps
    return {
        "step_ms": step_ms, "checkpoints": checkpoints,
        **{f"{mode}_per_checkpoint_ms": 1000 * statistics.median(
            [t - n for t, n in zip(times[mode], times["none"], strict=True)]) / checkpoints
           for mode in ("sync", "async")},
    }


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    sizes = list(rows)
    print(f"\nblocked per checkpoint (ms, median)  {'  '.join(f'{s:>9}' for s in sizes)}")
    for name in CONTENDERS:
        cells = "  ".join(f"{rows[size]['blocked_ms'][name]:9.1f}" for size in sizes)
        print(f"{name:<36} {cells}")
    cells = "  ".join(f"{rows[size]['background_ms'] or 0:9.1f}" for size in sizes)
    print(f"{'(hookline async: background write)':<36} {cells}")
    print()
    for name, reference, limit in TARGETS:
        key = f"{name} / {reference}"
        for size in sizes:
            target = rows[size]["targets"][key]
            verdict = "met" if target["met"] else "NOT met"
            print(f"target {name} <= {limit}x {reference} at {size}: "
                  f"{target['ratio']:.2f}x, {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 MB only, for the tests")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--sizes", help="state sizes in MB, comma-separated (default 10,100,1000)")
    parser.add_argument("--no-loop", action="store_true", help="leave the loop-cost run out")
    options = parser.parse_args()
    sizes = QUICK_SIZES if options.quick else SIZES
    if options.sizes:
        sizes = {int(float(mb) * MB): SIZES.get(int(float(mb) * MB), 5)
                 for mb in options.sizes.split(",")}
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29_500 + os.getpid() % 1000))
    load = os.getloadavg()[0]
    dist.init_process_group("gloo", rank=0, world_size=1)  # for DCP; hookline needs none
    rows: dict[str, dict[str, Any]] = {}
    try:
        for nbytes, repetitions in sizes.items():
            label = f"{nbytes / MB:g} MB"
            print(f"{label}: {repetitions} repetitions ...", flush=True)
            rows[label] = measure(nbytes, repetitions)
    finally:
        dist.destroy_process_group()
    loop: dict[str, Any] | None = None
    if not options.no_loop:
        nbytes = 10 * MB if options.quick else 100 * MB
        print(f"loop cost at {nbytes / MB:g} MB ...", flush=True)
        loop = {"state": f"{nbytes / MB:g} MB", **loop_cost(
            nbytes, 1 if options.quick else ROUNDS, 2 * EVERY if options.quick else STEPS)}
    print_table(rows)
    if loop is not None:
        print(f"\nloop cost per checkpoint, {loop['state']} state, steps of "
              f"{loop['step_ms']:.1f} ms, a checkpoint every {EVERY} steps: synchronous "
              f"{loop['sync_per_checkpoint_ms']:.1f} ms, asynchronous "
              f"{loop['async_per_checkpoint_ms']:.1f} ms")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    if options.json is not None:
        options.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
            "cpus": os.cpu_count(), "load": [load, os.getloadavg()[0]], "sizes": rows,
            "loop": loop,
        }, indent=2))


if __name__ == "__main__":
    main()
