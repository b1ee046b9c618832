"""What hookline costs per training step, next to the raw PyTorch loop and Lightning, and next
to a raw jitted JAX loop.

    python benchmarks/overhead.py            # the full run (about 8 minutes on 2 cores)
    python benchmarks/overhead.py --quick    # a small run, for the test suite
    python benchmarks/overhead.py --json results.json
    python benchmarks/overhead.py --backend jax  # one backend's workload, no micro-benchmarks
    python benchmarks/overhead.py --only hookline-bare,raw-again --repeats 40  # some contenders

Workload (the same seed and data for every contender): 16,384 random samples with 32 features
and 2 classes, batches of 32, an MLP 32-64-2 trained with SGD for 3 epochs on one CPU thread.
Contenders run interleaved, one after the other in each repetition, in this process:

* ``raw``: the plain PyTorch loop, the physical limit;
* ``raw-again``: the same loop again, last in each round, timed like any contender against
  ``raw``: the control, whose ratios would all be 1.000 on a machine that kept its speed, so
  that their scatter shows what this run can resolve;
* ``hookline-bare``: ``hookline.Trainer`` with no plugin;
* ``hookline-defaults``: ``hookline.Model`` with the built-ins that ``hookline train`` turns on
  (console output and progress lines to a non-terminal, run files, checkpointing, early
  stopping, LR reporting, NaN guard, time limit, CSV and JSON-lines metrics, the resource
  monitor, the run summary), except ``plots``: drawing ``results.png`` is a fixed cost per
  epoch (tens of milliseconds), not a cost per step;
* ``lightning-bare`` / ``lightning-defaults``: Lightning without progress bar, logger and
  checkpointing, and with its defaults (when the ``bench`` extra is installed);
* ``ignite-bare`` / ``ignite-handlers``: a PyTorch Ignite ``Engine`` whose step returns the
  loss tensor (no ``.item()``), alone and with its ``Checkpoint`` (model and optimizer, every
  epoch), ``EarlyStopping`` (on the epoch's last loss) and ``ProgressBar`` handlers (when the
  ``bench`` extra is installed).

When JAX is installed (the ``jax`` extra), the same workload again on JAX, against its own
baseline: ``raw-jax``, a loop over one ``jax.jit``-compiled Optax step (the same MLP as a Flax
NNX module, split into pytrees once), its control ``raw-jax-again``, then
``hookline-jax-bare``, ``hookline-jax-grad-norm`` (bare with the ``grad_norm`` plugin: what
reading the gradients' norm at every step costs) and ``hookline-jax-defaults`` on a
:class:`~hookline.backends.jax.JaxTask` with raw-jax's optimizer (a plain ``optax.sgd``: nothing
here schedules the rate, so the defaults report no ``lr``).  Every JAX contender
compiles its step inside the timed run, as a script does once per process: compilation is
part of the cost per run.

For each contender it prints the median time per step of the 3-epoch run, the overhead per step
over the raw loop and the ratio to it, and splits that overhead in two: what each further step
costs and what the 3-epoch run costs whatever its length (set-up, run files, threads,
compilation, and the checkpoint and metrics written at each epoch's end), measured by running
every contender again on one batch per epoch.  The cost of a further step comes from a third
run, twice as many epochs: the difference per step, against the raw loop's in the same round.
Its ratio (the last column) is what a long run converges to.  A contender makes its three runs
one after the other in each round, so that what is compared ran seconds apart, not minutes.
Each median over rounds that a target judges (the further step's ratio, the cost per run)
comes with a 95% bootstrap interval over the rounds: a target is met when the whole interval
is within it, missed when the whole interval is beyond it, and otherwise not resolved by the
run (more rounds narrow the interval).

Then micro-benchmarks: the cost of one hook call through hookline's dispatch with 0, 1 and 10
implementations next to a direct pluggy call, what an event-filtered implementation costs on
the steps it is not due (against one that tests the step itself), the pluggy calls an empty
hook costs in a run, ``import hookline`` (and ``import lightning``) in a fresh interpreter,
and entry-point discovery with 50 installed plugin distributions.  Everything is printed side
by side, with ratios to the baseline measured in the same run, and written as JSON with
``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from judging import median_interval, verdict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import hookline
from hookline import Callback, PluginManager, Trainer, hookimpl
from hookline.backends.torch import TorchTask
from hookline.testing import HookRecorder
from hookline.testing.distributions import write_distribution

FEATURES, HIDDEN, CLASSES, BATCH, LR = 32, 64, 2, 32, 0.05


def make_data(samples: int) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, FEATURES, generator=generator)
    labels = (inputs[:, 0] > 0).long()
    return DataLoader(
        TensorDataset(inputs, labels), batch_size=BATCH, shuffle=True,
        generator=torch.Generator().manual_seed(1),
    )


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


# -- contenders: each trains once and returns the seconds it took ---------------------------------


def raw(data: DataLoader[Any], epochs: int, _: Path, *, keep_loss: bool = False) -> float:
    """The plain loop; with ``keep_loss``, it also keeps what any loop that reports its
    training loss keeps: each loss read as a number and weighted by the batch's size, the
    samples and the steps counted (``step_instructions.py``'s floor)."""
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    total, samples, steps = 0.0, 0, 0
    started = time.perf_counter()
    for _epoch in range(epochs):
        for inputs, targets in data:
            loss = nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if keep_loss:
                count = inputs.shape[0]
                total += loss.item() * count
                samples += count
                steps += 1
    return time.perf_counter() - started


def make_task() -> TorchTask:
    model = make_model()
    return TorchTask(
        model, nn.functional.cross_entropy, torch.optim.SGD(model.parameters(), lr=LR),
        device="cpu",
    )


def hookline_bare(data: DataLoader[Any], epochs: int, _: Path) -> float:
    trainer = Trainer(make_task(), manager=PluginManager())
    started = time.perf_counter()
    trainer.fit(data, epochs=epochs)
    return time.perf_counter() - started


def hookline_defaults(data: DataLoader[Any], epochs: int, folder: Path) -> float:
    model = hookline.Model(make_task(), manager=PluginManager())
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    with quiet[0], quiet[1], warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no validation data: "val/loss is not reported"
        started = time.perf_counter()
        model.train(data, epochs=epochs, project=str(folder), name="bench", plots=False)
        return time.perf_counter() - started


def lightning_contender(defaults: bool) -> Callable[[DataLoader[Any], int, Path], float]:
    import lightning

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)  # its tips and notices, not timed

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_model()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            inputs, targets = batch
            return nn.functional.cross_entropy(self.model(inputs), targets)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=LR)

    def run(data: DataLoader[Any], epochs: int, folder: Path) -> float:
        options: dict[str, Any] = {"default_root_dir": str(folder)}
        if not defaults:
            options.update(enable_progress_bar=False, logger=False, enable_checkpointing=False)
        trainer = lightning.Trainer(
            max_epochs=epochs, accelerator="cpu", devices=1, enable_model_summary=False,
            num_sanity_val_steps=0, **options,
        )
        module = Module()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            trainer.fit(module, data)
            return time.perf_counter() - started

    return run


Contender = Callable[[Any, int, Path], float]


def ignite_contender(handlers: bool) -> Contender:
    from ignite.engine import Engine, Events
    from ignite.handlers import Checkpoint, DiskSaver, EarlyStopping, ProgressBar

    def run(data: DataLoader[Any], epochs: int, folder: Path) -> float:
        model = make_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)

        def step(engine: Engine, batch: Any) -> torch.Tensor:
            inputs, targets = batch
            loss = nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()  # no .item(): no host sync per step

        with contextlib.redirect_stderr(io.StringIO()):
            started = time.perf_counter()
            trainer = Engine(step)
            if handlers:
                folder.mkdir(parents=True, exist_ok=True)
                saver = DiskSaver(str(folder), require_empty=False)
                checkpoint = Checkpoint({"model": model, "optimizer": optimizer}, saver)
                trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
                stopper = EarlyStopping(
                    patience=10, score_function=lambda engine: -float(engine.state.output),
                    trainer=trainer,
                )
                trainer.add_event_handler(Events.EPOCH_COMPLETED, stopper)
                ProgressBar(file=io.StringIO()).attach(trainer)
            trainer.run(data, max_epochs=epochs)
            return time.perf_counter() - started

    return run


def torch_contenders() -> dict[str, Contender]:
    found: dict[str, Contender] = {
        "raw": raw, "hookline-bare": hookline_bare, "hookline-defaults": hookline_defaults,
    }
    try:
        found["lightning-bare"] = lightning_contender(defaults=False)
        found["lightning-defaults"] = lightning_contender(defaults=True)
    except ImportError:
        print("lightning is not installed (pip install -e '.[bench]'): skipping it")
    try:
        found["ignite-bare"] = ignite_contender(handlers=False)
        found["ignite-handlers"] = ignite_contender(handlers=True)
    except ImportError:
        print("pytorch-ignite is not installed (pip install -e '.[bench]'): skipping it")
    found["raw-again"] = raw  # the control, last: as far from raw in a round as any contender
    return found


# -- the JAX contenders: the same workload on JAX ------------------------------------------------

#: Each JAX run's seconds from its second epoch's start (compilation done), by (contender, epochs):
#: a further step's cost on JAX is read from these, not from differences of whole runs, in
#: which compilation (0.1-0.3 s, varying by tens of milliseconds) drowns a 50 us step.
STEADY: dict[tuple[str, int], list[float]] = {}


def _steady(name: str, epochs: int, seconds: float) -> None:
    STEADY.setdefault((name, epochs), []).append(seconds)


def jax_suite() -> tuple[Callable[[int], Any], dict[str, Contender]] | None:
    """``(make_data, contenders)`` on JAX, the raw jitted loop first; None without JAX."""
    try:
        import jax
        import optax
        from flax import nnx
    except ImportError:
        print("JAX is not installed (pip install -e '.[jax]'): skipping its contenders")
        return None
    from hookline.backends.arrays import ArrayBatches
    from hookline.backends.jax import JaxTask, cross_entropy
    from hookline.plugins.grad_norm import GradNorm

    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs) -> None:
            self.hidden = nnx.Linear(FEATURES, HIDDEN, rngs=rngs)
            self.output = nnx.Linear(HIDDEN, CLASSES, rngs=rngs)

        def __call__(self, inputs: Any) -> Any:
            return self.output(nnx.relu(self.hidden(inputs)))

    def make_data(samples: int) -> ArrayBatches:
        generator = torch.Generator().manual_seed(0)  # the torch suite's very samples
        inputs = torch.randn(samples, FEATURES, generator=generator).numpy()
        labels = (inputs[:, 0] > 0).astype("int32")
        return ArrayBatches(inputs, labels, BATCH, shuffle=True, seed=1)

    def raw_jax(name: str) -> Contender:
        """The raw jitted loop, its further steps recorded under ``name``."""

        def run(data: ArrayBatches, epochs: int, _: Path) -> float:
            started = time.perf_counter()
            graphdef, params, rest = nnx.split(MLP(nnx.Rngs(0)), nnx.Param, ...)
            optimizer = optax.sgd(LR)
            state = optimizer.init(params)

            @jax.jit
            def step(params: Any, state: Any, inputs: Any, targets: Any) -> Any:
                def loss(params: Any) -> Any:
                    return cross_entropy(nnx.merge(graphdef, params, rest)(inputs), targets)

                value, grads = jax.value_and_grad(loss)(params)
                updates, state = optimizer.update(grads, state, params)
                return optax.apply_updates(params, updates), state, value

            for epoch in range(epochs):
                for inputs, targets in data:
                    params, state, value = step(params, state, inputs, targets)
                if epoch == 0:
                    jax.block_until_ready(value)
                    first = time.perf_counter()
            jax.block_until_ready(value)
            _steady(name, epochs, time.perf_counter() - first)
            return time.perf_counter() - started

        return run

    def make_task() -> JaxTask:
        return JaxTask(MLP(nnx.Rngs(0)), cross_entropy, optax.sgd(LR))  # raw-jax's optimizer

    class SecondEpoch(Callback):
        """When the second epoch started: after the first one's end, whose one-off work (the
        first checkpoint, compiling the update that reading the state applies) is per run, as
        the raw loop's first epoch is.  The first epoch's loss was read: the device was done."""

        started: float | None = None

        def on_train_epoch_start(self, trainer: Trainer) -> None:
            if trainer.epoch == 1:
                self.started = time.perf_counter()

        def since(self) -> float:
            """The seconds since the second epoch started (a run of two epochs at least)."""
            assert self.started is not None, "the run ended before its second epoch"
            return time.perf_counter() - self.started

    def jax_bare(data: ArrayBatches, epochs: int, _: Path) -> float:
        started = time.perf_counter()
        second = SecondEpoch()
        trainer = Trainer(make_task(), [second], manager=PluginManager())
        trainer.fit(data, epochs=epochs)
        jax.block_until_ready(trainer.loss)
        _steady("hookline-jax-bare", epochs, second.since())
        return time.perf_counter() - started

    def jax_grad_norm(data: ArrayBatches, epochs: int, _: Path) -> float:
        started = time.perf_counter()
        second = SecondEpoch()
        trainer = Trainer(make_task(), [second, GradNorm()], manager=PluginManager())
        trainer.fit(data, epochs=epochs)
        jax.block_until_ready(trainer.loss)
        _steady("hookline-jax-grad-norm", epochs, second.since())
        return time.perf_counter() - started

    def jax_defaults(data: ArrayBatches, epochs: int, folder: Path) -> float:
        quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
        with quiet[0], quiet[1], warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            second = SecondEpoch()
            model = hookline.Model(make_task(), [second], manager=PluginManager())
            model.train(data, epochs=epochs, project=str(folder), name="bench", plots=False)
            assert model.trainer is not None
            jax.block_until_ready(model.trainer.loss)
            _steady("hookline-jax-defaults", epochs, second.since())
            return time.perf_counter() - started

    contenders = {
        "raw-jax": raw_jax("raw-jax"), "hookline-jax-bare": jax_bare,
        "hookline-jax-grad-norm": jax_grad_norm, "hookline-jax-defaults": jax_defaults,
        "raw-jax-again": raw_jax("raw-jax-again"),  # the control, last
    }
    return make_data, contenders


#: A run to time: its data and its number of epochs.
Job = tuple[Any, int]


def chosen(runs: dict[str, Contender], only: set[str] | None) -> dict[str, Contender]:
    """The contenders named in ``only`` (all without it), behind the baseline (the first) when
    any of them is named."""
    if only is None:
        return runs
    baseline, *others = runs
    named = {name: runs[name] for name in others if name in only}
    return {baseline: runs[baseline], **named} if named or baseline in only else {}


def interleaved(
    runs: dict[str, Contender], jobs: dict[str, Job], repeats: int
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Per job, each contender's seconds, paired with the baseline's (the first contender's)
    seconds of the same round, over ``repeats`` rounds that rotate who goes first.  A
    contender runs every job in turn, so that the jobs a ratio compares ran seconds apart."""
    baseline = next(iter(runs))
    times: dict[str, dict[str, list[float]]] = {job: {name: [] for name in runs} for job in jobs}
    with tempfile.TemporaryDirectory() as folder:
        runs[baseline](*next(iter(jobs.values())), Path(folder))  # warm-up: first-call costs
        for round_index in range(repeats):
            names = list(runs)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                for job, (data, epochs) in jobs.items():
                    times[job][name].append(runs[name](data, epochs, Path(folder) / name))
    # The machine's speed drifts over minutes (a shared VM): every comparison with the baseline
    # is made within a round, then the median over rounds is taken, which cancels the drift.
    return {
        job: {name: list(zip(values, by_name[baseline], strict=True))
              for name, values in by_name.items()}
        for job, by_name in times.items()
    }


def overhead(
    make_data: Callable[[int], Any], runs: dict[str, Contender], samples: int, epochs: int,
    repeats: int,
) -> dict[str, dict[str, Any]]:
    """Per contender: the median seconds per step of an ``epochs``-epoch run, the overhead per
    step over the baseline (the first contender) and the ratio to it.  Then two costs, each
    measured on its own: what a run costs whatever its length (set-up, run files, threads,
    compilation, epoch ends), from runs of one batch per epoch; and what a further step costs,
    from runs twice as long (the difference per step), also as a ratio to what a further step
    of the baseline costs.  All three runs of a contender are made one after the other in each
    round, and every figure is a median over rounds of a comparison within a round."""
    data = make_data(samples)
    steps = epochs * len(data)
    timed = interleaved(
        runs, {"full": (data, epochs), "double": (data, 2 * epochs),
               "tiny": (make_data(BATCH), epochs)}, repeats,
    )
    full, double, tiny = timed["full"], timed["double"], timed["tiny"]

    def further(name: str) -> list[tuple[float, float]]:
        """Per round: the seconds of the contender's further steps and of the baseline's."""
        return [(long - short, long_raw - short_raw)
                for (long, long_raw), (short, short_raw) in zip(double[name], full[name],
                                                                strict=True)]

    results = {}
    for name, pairs in full.items():
        overhead_us = statistics.median(value - raw for value, raw in pairs) / steps * 1e6
        per_step_us = statistics.median(extra - raw for extra, raw in further(name)) / steps * 1e6
        per_run_ms = [(value - raw) * 1e3 for value, raw in tiny[name]]
        results[name] = {
            "step_us": statistics.median(value for value, _ in pairs) / steps * 1e6,
            "overhead_us": overhead_us,
            "ratio": statistics.median(value / raw for value, raw in pairs),
            "per_run_ms": statistics.median(per_run_ms),
            "per_run_ms_interval": median_interval(per_run_ms),
            "per_step_us": per_step_us,
            **step_ratio([(extra, raw) for extra, raw in further(name)]),
        }
    return results


def step_ratio(pairs: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """The median over rounds of a contender's further steps' seconds over the baseline's in
    the same round, and its interval."""
    ratios = [extra / raw for extra, raw in pairs]
    return {"step_ratio": statistics.median(ratios),
            "step_ratio_interval": median_interval(ratios)}


def print_table(steps: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'contender':<24}{'us/step':>10}{'overhead us':>13}{'x raw':>8}"
          f"{'ms/run':>10}{'us/step':>11}{'step x raw':>12}{'95% interval':>17}")
    for name, row in steps.items():
        low, high = row["step_ratio_interval"]
        print(f"{name:<24}{row['step_us']:>10.1f}{row['overhead_us']:>13.1f}{row['ratio']:>8.3f}"
              f"{row['per_run_ms']:>10.2f}{row['per_step_us']:>11.1f}{row['step_ratio']:>12.3f}"
              f"   [{low:.3f}, {high:.3f}]")


# -- micro-benchmarks ---------------------------------------------------------------------------


def dispatch_costs(calls: int) -> dict[str, float]:
    """Nanoseconds per call of on_train_batch_end, through hookline and directly through pluggy."""
    results = {}
    arguments = {"trainer": None, "batch": None, "batch_idx": 0, "loss": None}
    for implementations in (0, 1, 10):
        manager = PluginManager()
        for index in range(implementations):

            class Listener:
                @hookimpl
                def on_train_batch_end(self, batch_idx: int) -> None:
                    pass

            manager.register(Listener(), f"listener-{index}")
        through_dispatch = timeit.timeit(
            lambda m=manager: m.call("on_train_batch_end", **arguments), number=calls
        )
        direct = timeit.timeit(
            lambda m=manager: m.hook.on_train_batch_end(**arguments), number=calls
        )
        results[f"hookline dispatch, {implementations} impl"] = through_dispatch / calls * 1e9
        results[f"pluggy direct, {implementations} impl"] = direct / calls * 1e9
    return results


def filter_costs(steps: int, rounds: int) -> dict[str, float]:
    """What an implementation that wants every 1000th step costs on the other steps, in
    nanoseconds per step over a run with no implementation at all (the pure-Python task, one
    row a batch, so that a step costs microseconds): as an event filter
    (``@hookline.every(steps=1000)``), and as a plain implementation that tests the step
    itself.  Runs interleaved; medians of the per-step differences."""
    from hookline.testing import LinearRegressionTask, make_batches

    class Filtered(Callback):
        @hookline.every(steps=1000)
        def on_train_batch_end(self) -> None:
            pass

    class SelfCounting(Callback):
        def on_train_batch_end(self, trainer: Trainer) -> None:
            if trainer.global_step % 1000:
                return

    if steps >= 1000:
        raise ValueError("the run must end before step 1000, where the filter is due")
    data = make_batches([[1.0]] * steps, [1.0] * steps, 1)
    times: dict[str, list[float]] = {"none": [], "filtered": [], "self-counting": []}
    plugins: dict[str, list[Any]] = {"none": [], "filtered": [Filtered()],
                                     "self-counting": [SelfCounting()]}
    for _ in range(rounds):
        for name, registered in plugins.items():
            trainer = Trainer(LinearRegressionTask(1, lr=1e-3), registered,
                              manager=PluginManager())
            started = time.perf_counter()
            trainer.fit(data, epochs=1)
            times[name].append(time.perf_counter() - started)

    def per_step_ns(name: str) -> float:
        pairs = zip(times[name], times["none"], strict=True)
        return statistics.median(a - b for a, b in pairs) / steps * 1e9

    return {
        "filtered hook, a step it is not due (ns/step)": per_step_ns("filtered"),
        "hook testing the step itself (ns/step)": per_step_ns("self-counting"),
    }


def empty_hook_pluggy_calls(samples: int) -> int:
    """Pluggy calls made during a run for hooks that have no implementation (target: 0)."""

    class OneHook(Callback):
        def on_train_epoch_end(self) -> None:
            pass

    manager = PluginManager()
    manager.register(OneHook())
    with HookRecorder(manager) as recorder:
        Trainer(make_task(), manager=manager).fit(make_data(samples), epochs=1)
    return sum(1 for name in recorder.names if name != "on_train_epoch_end")


def fresh_interpreter_ms(code: str, runs: int, path: str | None = None) -> float:
    """Median wall time of ``python -c code`` minus that of ``python -c pass``."""

    def once(source: str) -> float:
        environment = None if path is None else {"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", source], check=True, env=environment)
        return time.perf_counter() - started

    empty = statistics.median(once("pass") for _ in range(runs))
    return (statistics.median(once(code) for _ in range(runs)) - empty) * 1000


def command_times(runs: int) -> dict[str, float]:
    """Milliseconds for the commands that only describe (``hookline --help``, ``hooks``,
    ``plugins``, ``settings``), each in a fresh interpreter, output discarded (target: each
    under 500 ms, importing no framework)."""

    def once(words: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hookline", *words], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started

    return {
        f"hookline {' '.join(words)} (ms)": statistics.median(once(words) for _ in range(runs))
        * 1000 for words in (["--help"], ["hooks"], ["plugins"], ["settings"])
    }


def import_times(runs: int) -> dict[str, float]:
    check = "import sys, hookline; assert 'torch' not in sys.modules"
    results = {"import hookline (ms)": fresh_interpreter_ms(check, runs)}
    try:
        import lightning  # noqa: F401
    except ImportError:
        return results
    results["import lightning (ms)"] = fresh_interpreter_ms("import lightning", runs)
    return results


def make_plugin_distributions(folder: Path, count: int) -> None:
    """``count`` installed distributions, each declaring one hookline entry point."""
    source = "from hookline import hookimpl\n\n@hookimpl\ndef on_train_end(trainer):\n    pass\n"
    for index in range(count):
        name = f"hookline_bench_plugin_{index}"
        write_distribution(folder, name, name, source, {f"plugin{index}": name})


def discovery_ms(count: int, runs: int) -> float:
    """Milliseconds for load_entrypoint_plugins with ``count`` plugins installed (in a fresh
    interpreter each time, so that nothing is cached)."""
    source = (
        "import time\n"
        "from hookline import PluginManager  # names load lazily: not part of discovery\n"
        "started = time.perf_counter()\n"
        # only the benchmark's own: plugins installed in this environment must not count
        f"names = [f'plugin{{index}}' for index in range({count})]\n"
        "loaded = PluginManager().load_entrypoint_plugins(only=names)\n"
        "elapsed = time.perf_counter() - started\n"
        "assert sorted(loaded) == sorted(names), loaded\n"
        "print(elapsed * 1000)\n"
    )
    import hookline as package

    source_root = str(Path(package.__file__).resolve().parents[1])
    with tempfile.TemporaryDirectory() as folder:
        make_plugin_distributions(Path(folder), count)
        path = ":".join([folder, source_root, *[p for p in sys.path if "site-packages" in p]])
        values = []
        for _ in range(runs):
            result = subprocess.run(
                [sys.executable, "-c", source], check=True, capture_output=True, text=True,
                env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"},
            )
            values.append(float(result.stdout))
    return statistics.median(values)


# -- report -------------------------------------------------------------------------------------


#: The targets of this benchmark: (contender, column, at most) for the workload, and the
#: most a command of the command line may take (ms).
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("hookline-bare", "step_ratio", 1.015),
    ("hookline-defaults", "step_ratio", 1.03),
    ("hookline-defaults", "per_run_ms", 10.0),
    ("hookline-jax-bare", "step_ratio", 1.02),
    ("hookline-jax-defaults", "step_ratio", 1.05),
    ("hookline-jax-bare", "per_run_ms", 50.0),
)
COMMAND_TARGET_MS = 500.0


def verdicts(steps: dict[str, dict[str, Any]], micro: dict[str, float]) -> list[dict[str, Any]]:
    """Each target whose contender or command ran: its value and verdict (printed).  A
    workload target is judged on the median's interval: ``met`` when all of it is within the
    target, ``missed`` when all of it is beyond, else ``not resolved``; a command's time (a
    median of fresh processes) is met or missed."""
    found = []
    measured = [(name, column, limit, steps[name][column], steps[name][f"{column}_interval"])
                for name, column, limit in TARGETS if name in steps]
    measured += [(name, "ms", COMMAND_TARGET_MS, value, (value, value))
                 for name, value in micro.items()
                 if name.startswith("hookline ") and name.endswith("(ms)")]
    for name, column, limit, value, (low, high) in measured:
        judged = verdict((low, high), limit)
        found.append({"contender": name, "column": column, "value": value, "target": limit,
                      "interval": [low, high], "verdict": judged, "met": judged == "met"})
        spread = f" (95% interval {low:.3f} to {high:.3f})" if low != high else ""
        print(f"target: {name} {column} {value:.3f}{spread} <= {limit:g}: {judged}"
              + (f" by {value - limit:.3f}" if judged == "missed" else ""))
    return found


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (for tests)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--backend", choices=("all", "torch", "jax"), default="all",
                        help="the workload on one backend only, without the micro-benchmarks "
                             "(to re-measure what a change to one backend moved)")
    parser.add_argument("--only", default=None,
                        help="comma-separated contenders, without the micro-benchmarks (the "
                             "baseline of each backend named always runs; more rounds in the "
                             "same time narrow the intervals)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    samples, repeats, calls, runs = (
        (1024, 1, 2_000, 2) if args.quick else (16384, args.repeats or 15, 200_000, 7)
    )
    print(f"torch {torch.__version__}, 1 thread; {samples} samples, batch {BATCH}, 3 epochs, "
          f"{repeats} interleaved rounds")
    torch.set_num_threads(1)
    torch_runs = chosen(torch_contenders(), only) if args.backend != "jax" else {}
    suite = jax_suite() if args.backend != "torch" else None
    jax_runs = chosen(suite[1], only) if suite is not None else {}
    if only is not None and not only <= {*torch_runs, *jax_runs}:
        unknown = ", ".join(sorted(only - {*torch_runs, *jax_runs}))
        parser.error(f"--only: no contender {unknown} here (known: "
                     f"{', '.join([*torch_contenders(), *(suite[1] if suite else {})])})")
    steps = overhead(make_data, torch_runs, samples, 3, repeats) if len(torch_runs) > 1 else {}
    if suite is not None and len(jax_runs) > 1:
        import jax

        print(f"jax {jax.__version__} on {jax.devices()[0].platform}: the same workload")
        epochs = 3
        jax_steps = overhead(suite[0], jax_runs, samples, epochs, repeats)
        # further steps: those after the first epoch of the runs twice as long, paired by round
        steady_steps = (2 * epochs - 1) * len(suite[0](samples))
        for name, row in jax_steps.items():
            pairs = list(zip(STEADY[(name, 2 * epochs)], STEADY[("raw-jax", 2 * epochs)],
                             strict=True))
            row["per_step_us"] = statistics.median(a - b for a, b in pairs) / steady_steps * 1e6
            row.update(step_ratio(pairs))
        steps.update(jax_steps)
    print_table(steps)
    print("ms/run = a cost per run whatever its length (set-up, files, threads, compilation,\n"
          "epoch ends; runs of one batch per epoch); us/step = a further step's cost (runs\n"
          "twice as long; on JAX, the steps after the first epoch of those runs, compilation\n"
          "done); step x raw = that step against the baseline's (raw, raw-jax), with the\n"
          "95% interval of that median over the rounds; raw-again and raw-jax-again are the\n"
          "baseline timed against itself: how far from 1.000 they come is noise")
    if args.backend != "all" or only is not None:
        results = {"steps": steps, "micro": {}, "targets": verdicts(steps, {}),
                   "quick": args.quick}
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2))
        return results
    micro: dict[str, float] = dispatch_costs(calls)
    micro.update(filter_costs(999, runs * 6))
    micro["pluggy calls for empty hooks in a run"] = empty_hook_pluggy_calls(samples)
    micro.update(import_times(runs))
    micro.update(command_times(runs))
    micro["discover 50 entry-point plugins (ms)"] = discovery_ms(50, runs)
    print()
    for name, value in micro.items():
        unit = "" if "(" in name or "calls" in name else " ns/call"
        print(f"{name:<42}{value:>10.1f}{unit}")
    print()
    results = {"steps": steps, "micro": micro, "targets": verdicts(steps, micro),
               "quick": args.quick}
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
