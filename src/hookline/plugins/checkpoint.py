"""Checkpointing: the last state, the best by a monitored metric, the top k, and periodic
files; every write atomic; loading refuses a damaged file or anything that needs arbitrary
unpickling; and ``resume=PATH`` restores a run exactly where its checkpoint was taken.

Every file is a :mod:`hookline.engine.checkpoint_file`: the run's settings and a digest in a
plain header, then the task's payload (``Task.save_checkpoint``), so that this plugin works
with every backend and never runs code from a file it loads.

Files, under the run's ``weights/`` folder::

    last.pt                       the latest state, at every epoch end and periodic save
    best.pt                       the best epoch so far by ``monitor``
    epoch7-step1400.pt            periodic (save_period, save_every_n_steps) and top-k files,
                                  named by the ``filename`` template

A file is written in one pass (:mod:`hookline.plugins.support.checkpoint_writer`): the payload
streams from the task into a temporary file while it is hashed, one fsync, a rename; the other
names of the same checkpoint (``last.pt`` and ``best.pt`` of one epoch) are hard links to it.
With ``async_checkpoint`` the loop waits only for a copy of the state in host memory
(``StateTask.host_copy``), and the file is written in a background thread
(:mod:`hookline.plugins.support.async_writer`).

A task whose checkpoints are sharded (``TorchTask(strategy="fsdp")``: see
:class:`hookline.run.ShardedStateTask`) writes directories instead, with every process: the
same names without ``.pt`` (``weights/last``, ``weights/best``, ...), each a link swapped
atomically to a complete directory (:mod:`hookline.plugins.support.checkpoint_dirs`).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from hookline.engine import checkpoint_file
from hookline.errors import CheckpointError, UserError, first_line
from hookline.manager import Callback, hookimpl
from hookline.plugins.support import (
    checkpoint_dirs,
    improves,
    monitored,
    plain,
    require,
    resolve_mode,
)
from hookline.plugins.support.async_writer import BackgroundWriter
from hookline.plugins.support.checkpoint_writer import write_checkpoint_files
from hookline.run import Run, ShardedStateTask, TrainingRun
from hookline.settings import Options, Settings

__all__ = ["CheckpointError", "ModelCheckpoint"]


class ModelCheckpoint(Callback):
    """Saves checkpoints of a training run.

    :param monitor: the metric that decides the best checkpoint.
    :param mode: ``min``, ``max`` or ``auto`` (accuracy-like names are maximised).
    :param save_last: keep ``last.pt`` up to date.
    :param save_top_k: keep ``best.pt`` (k >= 1) and, for k > 1, the k best epochs as
        template-named files; 0 keeps no best checkpoint, -1 keeps every epoch.
    :param save_period: also write a template-named file every this many epochs (0: never).
    :param save_every_n_steps: also save (``last.pt`` and a template-named file) every this
        many optimizer steps (0: never).
    :param filename: the template of named files: ``{epoch}``, ``{step}`` and any metric with
        ``/`` written as ``_`` (``{val_loss:.4f}``).
    :param resume: a checkpoint to restore before training starts; ``auto``: the run
        directory's own ``weights/last.pt`` when it exists (with ``name=`` fixed, a requeued
        job carries on where it stopped), else a fresh start.
    :param async_checkpoint: write checkpoints in the background: the loop waits only while
        the state is copied to host memory (``StateTask.host_copy``); serialising, the
        digest, the fsync and the rename happen in a background thread, one save at a time (a
        new save first waits for the one in flight).  The end of training, an interruption
        (a signal) and ``teardown`` wait for it; a failed write is raised at the plugin's
        next hook, and the previous checkpoint stays.  ``on_model_save`` fires once a file is
        complete: at the first hook after the write ends.  Costs a second copy of the state
        in host memory while a write is in flight.

    Each is also a setting of the same name.  A checkpoint is never written while the loss is
    NaN or infinite, so the last good one survives a divergence.  In distributed training every
    rank makes the same decisions (on metrics reduced over all ranks) and rank zero writes.
    """

    #: Settings (the constructor's arguments), with their help text.
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "monitor": "metric that decides 'best'",
        "mode": "min, max or auto for the monitor",
        "save_last": "keep weights/last.pt",
        "save_top_k": "best checkpoints to keep",
        "save_period": "save every N epochs",
        "save_every_n_steps": "save every N steps",
        "filename": "name template of saved files",
        "resume": "checkpoint to resume from (auto: the run's own last.pt, if any)",
        "async_checkpoint": "write checkpoints in the background (the loop waits for a host copy)",
    }

    def __init__(
        self,
        monitor: str = "val/loss",
        mode: str = "auto",
        save_last: bool = True,
        save_top_k: int = 1,
        save_period: int = 0,
        save_every_n_steps: int = 0,
        filename: str = "epoch{epoch}-step{step}",
        resume: str = "",
        async_checkpoint: bool = False,
    ) -> None:
        self.monitor, self.mode = monitor, mode
        self.save_last, self.save_top_k = save_last, save_top_k
        self.save_period, self.save_every_n_steps = save_period, save_every_n_steps
        self.filename, self.resume = filename, resume
        self.async_checkpoint = async_checkpoint
        #: The background write in flight (asynchronous checkpoints), tagged with its paths.
        self._writer: BackgroundWriter[list[Path]] = BackgroundWriter("hookline-checkpoint")
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.top_k: list[tuple[float, str]] = []
        self._warned: set[str] = set()
        self._last_step_saved: int | None = None

    # -- settings ------------------------------------------------------------------------------

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="checkpoint")

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        resolve_mode(self.monitor, self.mode)  # refuse a bad mode before training starts
        require("save_top_k", self.save_top_k, self.save_top_k >= -1,
                "-1 (every epoch), 0 (none) or a number of checkpoints")
        require("save_period", self.save_period, self.save_period >= 0, "an integer >= 0")
        require("save_every_n_steps", self.save_every_n_steps, self.save_every_n_steps >= 0,
                "an integer >= 0")

    # -- resume --------------------------------------------------------------------------------

    def on_pretrain_routine_end(self, trainer: TrainingRun) -> None:
        if trainer.is_main and trainer.save_dir is not None:
            for stale in (trainer.save_dir / "weights").glob(".*.tmp"):
                stale.unlink()  # a write interrupted by a crash; the target file is intact
            checkpoint_dirs.collect(trainer.save_dir / "weights")  # and a sharded one's
        resume = self.resume
        if resume == "auto":  # the run's own last checkpoint, if it has one (a requeued job)
            last = self._weights(trainer) / "last.pt"
            if _sharded(trainer) or not last.is_file():
                last = last.with_suffix("") if (last.with_suffix("")).is_dir() else last
            resume = str(last) if trainer.save_dir is not None and last.exists() else ""
        if resume:
            checkpoint = checkpoint_file.load_checkpoint(resume, trainer.task)
            try:
                trainer.load_checkpoint_state(checkpoint)
            except (RuntimeError, KeyError, ValueError, TypeError) as error:
                first = first_line(error)
                raise CheckpointError(
                    f"checkpoint {resume!r} does not fit this task: "
                    f"{type(error).__name__}: {first}"
                ) from None

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score, "best_epoch": self.best_epoch,
            "top_k": [list(entry) for entry in self.top_k],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.top_k = [(float(score), str(path)) for score, path in state["top_k"]]

    # -- saving --------------------------------------------------------------------------------

    def idle_hooks(self) -> tuple[str, ...]:
        """Without step-periodic saves (or a background write to look after) there is nothing
        to do after each batch."""
        busy = self.save_every_n_steps or self.async_checkpoint
        return () if busy else ("on_train_batch_end",)

    def on_train_batch_end(self, trainer: TrainingRun) -> None:
        if self._writer.pending:  # a write that ended: its on_model_save, or its failure
            self._collect(trainer, wait=False)
        every = self.save_every_n_steps
        step_saves = every and trainer.global_step % every == 0
        if step_saves and trainer.global_step != self._last_step_saved:
            self._last_step_saved = trainer.global_step
            if self._finite(trainer, trainer.task.to_float(trainer.loss)):
                targets = [self._named(trainer, {})]
                if self.save_last:
                    targets.append(self._weights(trainer) / "last.pt")
                self._write(trainer, targets)

    @hookimpl(tryfirst=True)  # before a plugin changes the model at the end (best weights)
    def on_train_end(self, trainer: TrainingRun) -> None:
        """An interrupted run (a SIGTERM, say) always leaves ``last.pt``, which carries on in
        the middle of the epoch where it stopped.  A background write is complete when this
        returns."""
        self._collect(trainer, wait=True)
        if not trainer.interrupted:
            return
        if trainer.loss is None or self._finite(trainer, trainer.task.to_float(trainer.loss)):
            self._write(trainer, [self._weights(trainer) / "last.pt"], wait=True)

    def teardown(self, run: Run) -> None:
        """Wait for a background write (also after a failure: the checkpoint in flight is
        completed), and end the writer's thread."""
        try:
            self._collect(run, wait=True)
        finally:
            self._writer.close()

    @hookimpl(trylast=True)  # the checkpoint holds every plugin's reaction to the epoch
    def on_fit_epoch_end(self, trainer: TrainingRun, metrics: dict[str, float]) -> None:
        self._collect(trainer, wait=True)  # before top-k removes a file the write may hold
        if not self._finite(trainer, metrics.get("train/loss", 0.0)):
            return
        targets: list[Path] = []
        if self.save_last:
            targets.append(self._weights(trainer) / "last.pt")
        if self.save_period and (trainer.epoch + 1) % self.save_period == 0:
            targets.append(self._named(trainer, metrics))
        targets.extend(self._best_targets(trainer, metrics))
        if targets:
            self._write(trainer, targets)

    def _best_targets(self, trainer: TrainingRun, metrics: dict[str, float]) -> list[Path]:
        if self.save_top_k == 0:
            return []
        value = monitored("checkpoint", self.monitor, metrics)
        if value is None:
            self._warn_once(
                f"checkpoint: {self.monitor!r} is a validation metric and no validation ran "
                "(yet); best.pt is chosen among the epochs that validate"
            )
            return []
        mode = resolve_mode(self.monitor, self.mode)
        targets = []
        if improves(value, self.best_score, mode):
            self.best_score, self.best_epoch = value, trainer.epoch
            targets.append(self._weights(trainer) / "best.pt")
        if self.save_top_k == 1:
            return targets
        path = self._named(trainer, metrics)
        ranked = sorted([*self.top_k, (value, str(path))], reverse=mode == "max")
        keep = ranked if self.save_top_k < 0 else ranked[: self.save_top_k]
        if trainer.is_main:
            for _, dropped in set(self.top_k) - set(keep):
                Path(dropped).unlink(missing_ok=True)
                checkpoint_dirs.remove(Path(dropped).with_suffix(""))  # a sharded one's name
        self.top_k = keep
        if (value, str(path)) in keep:
            targets.append(path)
        return targets

    def _finite(self, trainer: TrainingRun, loss: float) -> bool:
        """Whether the state may be saved (decided alike on every rank)."""
        finite = math.isfinite(loss)
        if _sharded(trainer) and trainer.world_size > 1:  # every rank writes: all or none
            finite = not trainer.task.reduce_sum(0 if finite else 1)
        if finite:
            return True
        if trainer.is_main:
            self._warn_once(
                f"checkpoint: not saving at epoch {trainer.epoch}, step {trainer.global_step}: "
                "the loss is not finite; the last good checkpoint is kept"
            )
        return False

    def _weights(self, trainer: TrainingRun) -> Path:
        # on ranks other than zero, and without a run directory, paths are only names
        return (trainer.save_dir or Path()) / "weights"

    def _named(self, trainer: TrainingRun, metrics: dict[str, float]) -> Path:
        fields = {name.replace("/", "_"): value for name, value in metrics.items()}
        try:
            name = self.filename.format(epoch=trainer.epoch, step=trainer.global_step, **fields)
        except (KeyError, ValueError, IndexError) as error:
            raise UserError(
                f"checkpoint filename {self.filename!r} cannot be filled: {error!r}; it can use "
                f"epoch, step, {', '.join(fields) or '(no metrics yet)'}"
            ) from None
        return self._weights(trainer) / f"{name}.pt"

    def _write(self, trainer: TrainingRun, targets: list[Path], *, wait: bool = False) -> None:
        """Write on rank zero; the other ranks made the same decisions and write nothing.
        ``wait``: complete before returning, even with ``async_checkpoint``."""
        if _sharded(trainer):  # every rank writes its shard
            self._write_sharded(trainer, targets, background=self.async_checkpoint and not wait)
            return
        if not trainer.is_main:
            return
        if trainer.save_dir is None:
            self._warn_once("checkpoint: no run directory (save=False, no save_dir): not saving")
            return
        self._write_file(
            trainer, list(dict.fromkeys(targets)), background=self.async_checkpoint and not wait
        )

    def _write_file(self, trainer: TrainingRun, paths: list[Path], *, background: bool) -> None:
        """One checkpoint file under every name in ``paths``, streamed, hashed, fsynced and
        renamed into place (:mod:`~hookline.plugins.support.checkpoint_writer`): here, or
        (``background``) in the writer's thread from a host copy of the state."""
        self._collect(trainer, wait=True)  # at most one write in flight
        task = trainer.task
        checkpoint = trainer.checkpoint_state()
        header = (task.checkpoint_format, plain(trainer.args))
        if background:
            copied = task.host_copy(checkpoint)
            self._writer.submit(
                functools.partial(
                    write_checkpoint_files, paths, *header,
                    functools.partial(task.write_checkpoint, copied),
                ),
                paths,
            )
            return
        write_checkpoint_files(paths, *header, functools.partial(task.write_checkpoint, checkpoint))
        for path in paths:
            trainer.call("on_model_save", trainer=trainer, path=path)

    def _collect(self, trainer: Run, *, wait: bool) -> None:
        """Take the outcome of the background write, if it ended (``wait``: once it ends):
        fire ``on_model_save`` for its files, or raise its failure here, in the loop's
        thread."""
        task = trainer.task
        if wait and isinstance(task, ShardedStateTask) and task.sharded:
            task.wait_sharded()  # a sharded save in flight: waited for on every rank alike
        paths = self._writer.collect(wait=wait)
        for path in paths or ():
            trainer.call("on_model_save", trainer=trainer, path=path)

    def _write_sharded(
        self, trainer: TrainingRun, targets: list[Path], *, background: bool
    ) -> None:
        """Every rank writes its shard into a new directory; rank zero then writes the header
        and points each target's name (without ``.pt``) at it (``background``: once the
        shards are written, while training goes on; at most one save in flight)."""
        task = trainer.task
        assert isinstance(task, ShardedStateTask)
        can = trainer.is_main and trainer.save_dir is not None
        if trainer.world_size > 1:
            can = bool(task.reduce_sum(1 if can else 0))  # rank zero decides for every rank
        if not can:
            self._warn_once("checkpoint: no run directory (save=False, no save_dir): not saving")
            return
        links = [path.with_suffix("") for path in dict.fromkeys(targets)]
        weights = self._weights(trainer)
        args = plain(trainer.args)

        def finish(directory: Path) -> None:  # on rank zero, once every shard is written
            try:
                checkpoint_dirs.write_header(directory, task.sharded_format, args)
                for link in links:
                    checkpoint_dirs.publish(link, directory)
                checkpoint_dirs.collect(weights, keep=[directory])
            except OSError as error:
                raise CheckpointError(
                    f"cannot write checkpoint {str(links[0])!r}: {error.strerror or error}; "
                    "the previous one is kept"
                ) from None

        staging = checkpoint_dirs.staging_dir(weights, trainer.global_step)
        task.save_sharded(
            staging if trainer.is_main else None, trainer.checkpoint_state(), finish,
            asynchronous=background,
        )
        if trainer.is_main:
            for link in links:
                trainer.call("on_model_save", trainer=trainer, path=link)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, stacklevel=2)


def _sharded(trainer: Run) -> bool:
    """Whether the run's checkpoints are directories of shards written by every rank."""
    task = trainer.task
    return isinstance(task, ShardedStateTask) and bool(task.sharded)
