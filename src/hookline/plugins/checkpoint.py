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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from hookline.engine import checkpoint_file
from hookline.errors import CheckpointError, UserError, first_line
from hookline.manager import Callback, hookimpl
from hookline.plugins.support import (
    atomic_write,
    improves,
    monitored,
    plain,
    require,
    resolve_mode,
)
from hookline.run import TrainingRun
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
    ) -> None:
        self.monitor, self.mode = monitor, mode
        self.save_last, self.save_top_k = save_last, save_top_k
        self.save_period, self.save_every_n_steps = save_period, save_every_n_steps
        self.filename, self.resume = filename, resume
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
        resume = self.resume
        if resume == "auto":  # the run's own last checkpoint, if it has one (a requeued job)
            last = self._weights(trainer) / "last.pt"
            resume = str(last) if trainer.save_dir is not None and last.is_file() else ""
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
        """Without step-periodic saves there is nothing to do after each batch."""
        return () if self.save_every_n_steps else ("on_train_batch_end",)

    def on_train_batch_end(self, trainer: TrainingRun) -> None:
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
        the middle of the epoch where it stopped."""
        if not trainer.interrupted:
            return
        if trainer.loss is None or self._finite(trainer, trainer.task.to_float(trainer.loss)):
            self._write(trainer, [self._weights(trainer) / "last.pt"])

    @hookimpl(trylast=True)  # the checkpoint holds every plugin's reaction to the epoch
    def on_fit_epoch_end(self, trainer: TrainingRun, metrics: dict[str, float]) -> None:
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
        self.top_k = keep
        if (value, str(path)) in keep:
            targets.append(path)
        return targets

    def _finite(self, trainer: TrainingRun, loss: float) -> bool:
        """Whether the state may be saved (decided alike on every rank)."""
        if math.isfinite(loss):
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

    def _write(self, trainer: TrainingRun, targets: list[Path]) -> None:
        """Write on rank zero; the other ranks made the same decisions and write nothing."""
        if not trainer.is_main:
            return
        if trainer.save_dir is None:
            self._warn_once("checkpoint: no run directory (save=False, no save_dir): not saving")
            return
        task = trainer.task
        payload = task.save_checkpoint(trainer.checkpoint_state())
        data = checkpoint_file.encode(payload, task.checkpoint_format, plain(trainer.args))
        for path in dict.fromkeys(targets):
            try:
                atomic_write(path, lambda file: file.write(data))
            except OSError as error:  # a full disk, a quota, a folder made read-only
                raise CheckpointError(
                    f"cannot write checkpoint {str(path)!r}: {error.strerror or error}; the "
                    "previous one is kept"
                ) from None
            trainer.call("on_model_save", trainer=trainer, path=path)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, stacklevel=2)
