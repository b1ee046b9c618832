"""What a plugin sees: the run, and the state part of the Task protocol.

Every hook receives a *run*: the object of its phase.  hookline's own engine makes them
(:class:`hookline.Trainer`, :class:`hookline.Validator`, ...), and so does each bridge over a
trainer hookline does not own (a Hugging Face ``Trainer``, a Lightning ``Trainer``, Keras
``fit``, a hand-written loop).  Plugins read and steer a run through :class:`Run` and
:class:`TrainingRun` alone, and reach the framework through :class:`StateTask` alone, so that
one plugin runs unchanged in every one of those places.

This module sits with the hook catalog, below the plugin manager and the engine: the catalog
names these classes in its annotations without importing the engine.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import (
    IO,
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Protocol,
    TypeVar,
    overload,
    runtime_checkable,
)

from hookline.settings import Settings

if TYPE_CHECKING:
    from hookline.manager import PluginManager


@runtime_checkable
class StateTask(Protocol):
    """The part of the Task protocol that plugins use: the model's state, never the loop.

    hookline's backends implement it together with the loop part
    (:class:`hookline.engine.task.Task`); a bridge implements it over a host's model and
    optimizer.  Values stay in the framework's own type, on its device, until
    :meth:`to_float`.
    """

    @property
    def rank(self) -> int:
        """This process's rank (0 outside distributed runs)."""

    @property
    def world_size(self) -> int:
        """The number of processes (1 outside distributed runs)."""

    #: The name of the payload format :meth:`save_checkpoint` writes (``"torch"``,
    #: ``"msgpack"``, ...): recorded in each checkpoint file, so that a task of another kind
    #: refuses it clearly.
    checkpoint_format: str

    def to_float(self, value: Any) -> float:
        """``value`` as a Python float (the one place a device value reaches the host)."""

    def reduce_sum(self, value: Any) -> Any:
        """``value`` summed over all processes (itself in a single process)."""

    def parameters(self) -> dict[str, Any]:
        """The model's parameters by name, as the framework's arrays on their device (no copy
        to the host): for plugins that watch weights.  Read them; never change them."""

    def gradients(self) -> dict[str, Any]:
        """The gradients by name (the names of :meth:`parameters`), as the framework's arrays
        on their device, without a copy.  At ``on_before_optimizer_step`` they are final:
        accumulated over the step's batches and unscaled (mixed precision), before clipping.
        Read them; never change them."""

    def gradient_norm(self) -> Any:
        """The global L2 norm of :meth:`gradients`, as a scalar on the device (turn it into a
        float with :meth:`to_float` at a log interval, not per step)."""

    def learning_rates(self) -> list[float]:
        """The learning rate of each of the optimizer's parameter groups, in order; empty
        for a task that keeps its rates to itself (a JAX optimizer built without
        ``optax.inject_hyperparams``), which refuses :meth:`set_learning_rates`."""

    def set_learning_rates(self, rates: Sequence[float]) -> None:
        """Set the learning rate of each parameter group (as many rates as groups); the next
        optimizer step uses them."""

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        """Every random generator that training draws from (global ones, and any that
        ``data`` shuffles with), as plain data and arrays."""

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        """Put back what :meth:`random_state` returned; with ``data=None``, only the global
        generators (not those of the data)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimizer, ... as plain data and arrays."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def save_checkpoint(self, checkpoint: Mapping[str, Any]) -> bytes:
        """``checkpoint`` (plain data and this framework's arrays) serialized as bytes, in a
        format that :meth:`load_checkpoint` reads back without running any code."""

    def load_checkpoint(self, data: bytes, source: str) -> dict[str, Any]:
        """What :meth:`save_checkpoint` wrote, loaded onto the CPU (or host).

        :raises hookline.errors.CheckpointError: naming ``source`` (the file) when the data is
            corrupt or would need code to be run (an arbitrary pickle) to load.
        """

    def write_checkpoint(self, checkpoint: Mapping[str, Any], file: IO[bytes]) -> None:
        """Write :meth:`save_checkpoint`'s bytes to ``file`` (a binary file open for writing),
        streamed where the format allows: the checkpoint plugin hashes them on their way to
        the disk, without a copy of the whole payload in memory."""

    def host_copy(self, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """``checkpoint`` with every array copied to host memory and every container and
        other value copied, so that nothing in the copy changes as training goes on: what an
        asynchronous checkpoint serialises (:meth:`write_checkpoint`) in a background thread
        while the loop carries on.  Returns once the copies are complete (a device-to-host
        transfer has landed)."""


@runtime_checkable
class ShardedStateTask(Protocol):
    """What a task whose checkpoints may be directories of shards adds to :class:`StateTask`
    (``TorchTask(strategy="fsdp")``).  Optional: the checkpoint plugin asks
    ``isinstance(task, ShardedStateTask) and task.sharded``.

    Every process writes its shard of the model and optimizer into one directory; rank zero
    writes the plain-data rest (progress with each rank's random state, metrics, plugin
    state).  Such a checkpoint loads on any number of processes and never runs code.
    """

    #: The payload format named in a sharded checkpoint's header (``"torch-dcp"``).
    sharded_format: str

    @property
    def sharded(self) -> bool:
        """Whether this task's checkpoints are directories of shards."""

    def save_sharded(
        self, directory: Path | None, checkpoint: Mapping[str, Any],
        finish: Callable[[Path], None] | None = None, *, asynchronous: bool = False,
    ) -> Path:
        """Write :meth:`TrainingRun.checkpoint_state` into a new directory, with every process
        (a collective: every rank calls it at the same point).  ``directory`` is rank zero's
        choice (other ranks pass anything); once every file is written, ``finish(directory)``
        runs on rank zero (in the background when ``asynchronous``: the call returns once the
        state is copied, with at most one save in flight).  Returns the directory."""

    def wait_sharded(self) -> None:
        """Wait for the asynchronous save in flight, if any (re-raising its failure)."""

    def load_sharded(self, directory: Path, source: str) -> dict[str, Any]:
        """A sharded checkpoint as :meth:`StateTask.load_checkpoint` returns a file's: its
        ``task`` part is read by :meth:`StateTask.load_state_dict`.

        :raises hookline.errors.CheckpointError: naming the file when it is damaged or would
            need code to be run to load.
        """


class Run:
    """The state every phase shares: what a plugin reads and steers at any hook.

    ``task`` (the :class:`StateTask`), ``manager`` (the plugin manager), ``settings`` and
    ``args`` (every argument of the run), ``metrics`` (floats), ``save_dir`` (where plugins
    write; ``None`` for no files), ``report`` (what plugins report about the run, by key),
    ``should_stop`` and ``stop_reason``, ``rank``, ``world_size`` and ``is_main``.
    """

    #: The phase's name, as the command line and logs spell it.
    name: ClassVar[str] = ""

    def __init__(self, task: StateTask, manager: PluginManager) -> None:
        self.task = task
        self.manager = manager
        #: The settings of the current run, as resolved by ``hookline_configure``.
        self.settings = Settings({})
        #: Every argument of the current run (the phase's own and the plugins' settings),
        #: as the run records them: secret settings redacted (``Settings.public``).
        self.args: dict[str, Any] = {}
        #: Metrics as floats: the epoch's for a training run, the run's for a validation.
        self.metrics: dict[str, float] = {}
        #: Where the run writes its files (plugins write there; the engine never does).
        self.save_dir: Path | None = None
        #: What plugins report about the run, by key (the profile table under ``profile``,
        #: ...): the summary plugin adds each entry to ``summary.json``.  Emptied when a run
        #: starts.
        self.report: dict[str, Any] = {}
        self.should_stop = False
        self.stop_reason: str | None = None
        #: This process's rank and the number of processes (1 outside distributed runs).
        self.rank = 0
        self.world_size = 1

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes files and talks to loggers (rank zero)."""
        return self.rank == 0

    def request_stop(self, reason: str) -> None:
        """Ask the run to stop at the next check (after the current batch or epoch).

        The first reason given is kept; later requests do not overwrite it.
        """
        if not self.should_stop:
            self.should_stop = True
            self.stop_reason = reason

    def call(self, hook_name: str, /, **kwargs: Any) -> list[Any]:
        """Fire a hook through the manager's dispatch table (no pluggy call if nobody listens).

        Plugins use it to fire the events they own, e.g. ``on_model_save`` after writing a file.

        :raises hookline.manager.UnknownHookError: when ``hook_name`` is no hook or alias.
        """
        return self.manager.call(hook_name, **kwargs)


ParentT = TypeVar("ParentT", bound=Run)


class ParentRun(Generic[ParentT]):
    """The attribute by which a run reaches the run it belongs to (a validation's
    ``trainer``), held weakly: the parent holds the child too, and a cycle between them would
    keep both, with the task and the data, alive after the last reference to the parent went,
    until Python's cycle collector happened to run.  Reads ``None`` when there is no parent
    (or it is gone)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_reference"

    @overload
    def __get__(self, run: None, owner: type) -> ParentRun[ParentT]: ...

    @overload
    def __get__(self, run: object, owner: type) -> ParentT | None: ...

    def __get__(self, run: object, owner: type) -> ParentRun[ParentT] | ParentT | None:
        if run is None:
            return self
        reference = run.__dict__.get(self._slot)
        return reference() if reference is not None else None

    def __set__(self, run: object, parent: ParentT | None) -> None:
        run.__dict__[self._slot] = weakref.ref(parent) if parent is not None else None


class TrainingRun(Run):
    """A training run as plugins see it, whoever drives the loop.

    Besides :class:`Run`'s state: ``epoch`` (0-based, the epoch running), ``epochs``,
    ``global_step`` (optimizer steps taken), ``batch_idx``, ``loss`` (the last batch's loss,
    on the device, or ``None`` where the host does not hand it over), ``interrupted``,
    ``train_data``, ``validator`` (the run of the validation inside training), and the progress
    counters a checkpoint records: ``batches_done`` (of the current epoch) and
    ``epoch_complete``.
    """

    name = "train"
    #: The counters :meth:`progress_state` records and :meth:`restore_progress` needs.
    PROGRESS_KEYS: ClassVar[tuple[str, ...]] = ("epoch", "batches_done", "global_step")

    def __init__(self, task: StateTask, manager: PluginManager) -> None:
        super().__init__(task, manager)
        self.epoch = 0
        self.epochs = 0
        self.global_step = 0
        self.batch_idx = 0
        self.loss: Any = None
        #: The epoch a restored checkpoint carries on from.
        self.start_epoch = 0
        self.train_data: Iterable[Any] = ()
        #: The run of the validation inside training (its ``metrics`` are ``val/...``).
        self.validator: Run | None = None
        #: Batches of the current epoch already trained, and whether the epoch is complete.
        self.batches_done = 0
        self.epoch_complete = False
        #: The batches this process runs in the current epoch (its share of the data under
        #: several processes), or ``None`` when unknown (data without a length, a host that
        #: does not say).
        self.epoch_batches: int | None = None
        #: Whether the run was interrupted (:meth:`interrupt`) rather than finished or stopped.
        self.interrupted = False

    def interrupt(self, reason: str) -> None:
        """Stop as soon as the gradients of the batches so far are applied, without finishing
        the epoch: no validation and no epoch-end hooks for it; ``on_train_end`` then fires
        with :attr:`interrupted` true.  What a SIGTERM becomes; safe to call from a signal
        handler.  The first reason given is kept.  (A host that cannot stop mid-epoch stops
        at the next point it can.)"""
        self.request_stop(reason)
        self.interrupted = True

    # -- checkpoint state (files are written by plugins, never by the run) ----------------------

    def progress_state(self) -> dict[str, Any]:
        """Where training is, as plain data: the epoch to continue, the batches of it already
        done, the optimizer steps taken.  hookline's trainer adds its running losses and
        random state, which only its own loop can restore."""
        complete = self.epoch_complete or self.batches_done == 0
        return {
            "epoch": self.epoch + 1 if self.epoch_complete else self.epoch,
            "batches_done": 0 if complete else self.batches_done,
            "global_step": self.global_step,
        }

    def restore_progress(self, progress: Mapping[str, Any]) -> None:
        """Take the counters of :meth:`progress_state` back (called by
        :meth:`load_checkpoint_state`, once the task's state is restored)."""
        self.start_epoch = int(progress["epoch"])
        self.global_step = int(progress["global_step"])

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume, as a dict of plain data and arrays.

        ``task`` (model, optimizer, ...), ``progress`` (:meth:`progress_state`), ``metrics``,
        and ``plugins``: each registered plugin that has a ``state_dict()`` method stores it
        under its state key (its ``state_key`` attribute, else its registered name), then
        ``on_save_checkpoint`` fires so that any plugin can add more.  Call it between batches
        (from a hook), not mid-batch.
        """
        checkpoint: dict[str, Any] = {
            "task": self.task.state_dict(),
            "progress": self.progress_state(),
            "metrics": dict(self.metrics),
            "plugins": self.plugin_states(),
        }
        self.call("on_save_checkpoint", trainer=self, checkpoint=checkpoint)
        return checkpoint

    def plugin_states(self) -> dict[str, Any]:
        """Each stateful plugin's ``state_dict()``, by state key: what a checkpoint holds under
        ``plugins`` (and what a bridge stores in its host's own checkpoints)."""
        return {key: plugin.state_dict() for key, plugin in self.manager.stateful_plugins().items()}

    def load_plugin_states(self, states: Mapping[str, Any]) -> None:
        """Give each registered plugin its state back (``load_state_dict``); states of plugins
        that are not registered are named in one warning."""
        orphans = []
        stateful = self.manager.stateful_plugins()
        for key, state in states.items():
            plugin = stateful.get(key)
            if plugin is not None and callable(getattr(plugin, "load_state_dict", None)):
                plugin.load_state_dict(state)
            else:
                orphans.append(key)
        if orphans:
            warnings.warn(
                f"the checkpoint holds the state of plugins that are not here to receive it: "
                f"{', '.join(orphans)}; they start afresh if registered later", stacklevel=3,
            )

    def load_checkpoint_state(self, checkpoint: Mapping[str, Any]) -> None:
        """Restore what :meth:`checkpoint_state` returned; training then carries on where the
        checkpoint was taken.  Call it before training or from ``on_pretrain_routine_end``.

        Restores the task, the progress counters (:meth:`restore_progress`), each plugin's
        ``load_state_dict()``, then fires ``on_load_checkpoint``.

        :raises ValueError: when ``checkpoint`` is no hookline checkpoint.
        """
        try:
            task_state, progress = checkpoint["task"], checkpoint["progress"]
            for key in self.PROGRESS_KEYS:
                progress[key]
        except (KeyError, TypeError) as error:
            raise ValueError(f"not a hookline checkpoint: missing {error}") from None
        self.task.load_state_dict(task_state)
        self.restore_progress(progress)
        self.load_plugin_states(checkpoint.get("plugins", {}))
        self.call("on_load_checkpoint", trainer=self, checkpoint=dict(checkpoint))
