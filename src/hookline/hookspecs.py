"""The hookline event catalog: every lifecycle moment a plugin can observe or steer.

The file reads as the lifecycle: plugin system, training set-up, the training epoch and batch,
state, metrics, the end of a run, validation, prediction and export.  Each hook receives the
object of its phase (``trainer``, ``validator``, ``predictor``, ``exporter``; ``run`` where a hook
belongs to every phase) and the event's own data.

An implementation takes any subset of a hook's arguments, by name.  An argument of its own with
a default value gets the call's value when the hook passes one and keeps its default otherwise
(pluggy 1.7's rule; earlier pluggy never fills such an argument, and hookline refuses it there).
Return values are ignored unless a hook says otherwise.

:data:`SECTIONS` orders the hooks by phase for ``hookline hooks`` and docs/hooks.md, and
:data:`ALIASES` maps the other names a hook answers to (resolved once, at registration).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hookline.manager import PluginManager
    from hookline.run import Run, TrainingRun
    from hookline.settings import Options, Settings

PROJECT = "hookline"

#: The version of the hook API: the catalog's hooks, their arguments and their meaning.  The
#: minor number grows when hooks are added, or when a hook gains an argument: the new argument
#: has a default in the hook's specification, so that the plugins and the callers written
#: before it keep working (pluggy 1.7 passes the default where a call omits it; the first such
#: argument raises hookline's floor to pluggy>=1.7).  The major number grows when a hook is
#: removed, loses an argument or changes meaning.  A plugin may declare the versions it
#: supports (``hookline_api = ">=1.1,<2"``).
HOOK_API_VERSION = "1.1"

hookspec = pluggy.HookspecMarker(PROJECT)
"""Marks a function as a hook specification: hookline's catalog uses it, and so does a plugin
that declares events of its own (see :class:`hookline.PluginManager`)."""

# ---------------------------------------------------------------------------------------------
# Plugin system
# ---------------------------------------------------------------------------------------------


@hookspec(historic=True)
def on_plugin_registered(plugin: object, manager: PluginManager) -> None:
    """A plugin was registered with the plugin manager.

    Fires once per registration.  The hook is historic: a plugin that implements it also hears
    about every plugin registered before it.

    :param plugin: the plugin object that was just registered.
    :param manager: the :class:`~hookline.manager.PluginManager` it was registered with.

    May change: nothing on the plugin; an implementation may register further plugins.
    """


@hookspec
def hookline_add_options(options: Options) -> None:
    """Declare the settings a plugin reads.

    Fires when a phase is configured (at the start of ``fit``, ``validate``, ``predict`` and
    ``export``, and when the command line parses ``key=value`` words), before
    :func:`hookline_configure`.

    :param options: the :class:`~hookline.settings.Options` registry; call
        ``options.add(name, default, help=...)`` for each setting.  Several plugins may
        declare the same name with the same type (``monitor`` is read by checkpointing and
        early stopping alike); the first declaration's default and help are kept.

    May change: only ``options``, by adding to it.
    """


@hookspec
def hookline_configure(settings: Settings) -> None:
    """Read the resolved settings.

    Fires right after :func:`hookline_add_options`, once the user's values were checked against
    the declared options (unknown names and values of the wrong type are refused first).

    :param settings: the read-only :class:`~hookline.settings.Settings`: every declared option,
        with the user's value or its default.

    May change: the plugin's own configuration.  ``settings`` is read-only.
    """


# ---------------------------------------------------------------------------------------------
# Training: set-up
# ---------------------------------------------------------------------------------------------


@hookspec
def on_pretrain_routine_start(trainer: TrainingRun) -> None:
    """Training is about to be prepared: the first hook of :meth:`Trainer.fit`.

    Fires after the settings were configured and before the task's ``setup``.

    :param trainer: the :class:`~hookline.run.TrainingRun` (hookline's ``Trainer``, or a
        bridge's run inside a host trainer); ``epochs``, ``save_dir`` and ``args``
        are set.  ``epoch`` is final only from :func:`on_train_start` on (a checkpoint restored
        in :func:`on_pretrain_routine_end` moves it).

    May change: ``trainer.args`` and ``trainer.save_dir`` (the run directory is chosen here);
    the task, before it is set up.
    """


@hookspec
def on_pretrain_routine_end(trainer: TrainingRun) -> None:
    """The task has been set up (model, optimizer, device and process group are ready).

    :param trainer: the trainer; ``rank`` and ``world_size`` are known from here on.

    May change: the task's state: this is where ``trainer.load_checkpoint_state()`` restores a
    checkpoint (the checkpoint plugin's ``resume=``).
    """


@hookspec
def on_train_start(trainer: TrainingRun) -> None:
    """The training loop starts: fires once, right before the first epoch.

    :param trainer: the trainer; ``epoch`` is the first epoch that will run.

    May change: ``trainer.request_stop()`` here ends the run before any epoch.
    """


# ---------------------------------------------------------------------------------------------
# Training: the epoch
# ---------------------------------------------------------------------------------------------


@hookspec
def on_train_epoch_start(trainer: TrainingRun) -> None:
    """An epoch begins.  Alias: ``on_epoch_start``.

    :param trainer: the trainer; ``epoch`` is the 0-based epoch about to run.

    May change: plugin state (for example a data sampler's epoch).
    """


@hookspec
def on_train_epoch_end(trainer: TrainingRun) -> None:
    """The training batches of an epoch are done, before validation.

    For the end of the whole epoch with its validation metrics, use :func:`on_fit_epoch_end`
    (alias ``on_epoch_end``, the Keras meaning).

    :param trainer: the trainer; ``metrics`` holds this epoch's training metrics as floats
        (``train/loss`` is the mean loss over the epoch's samples).

    May change: ``trainer.metrics`` (add training metrics); ``trainer.request_stop()``.
    """


@hookspec
def on_fit_epoch_end(trainer: TrainingRun, metrics: dict[str, float]) -> None:
    """An epoch is complete, validation included: the place to decide on checkpoints and stops.
    Alias: ``on_epoch_end`` (as in Keras: the epoch's validation metrics are available).

    Fires after :func:`on_train_epoch_end` and after validation (when validation ran this
    epoch), before the epoch's :func:`on_log`.

    :param trainer: the trainer.
    :param metrics: the epoch's metrics (the same dict as ``trainer.metrics``): training metrics
        and, when validation ran, the validator's (``val/loss``, ...), all floats.

    May change: ``metrics`` (values added here are logged); ``trainer.request_stop()``.
    """


# ---------------------------------------------------------------------------------------------
# Training: the batch
# ---------------------------------------------------------------------------------------------


@hookspec
def on_train_batch_start(trainer: TrainingRun, batch: Any, batch_idx: int) -> None:
    """A training batch is about to go through the task's training step.  Alias:
    ``on_batch_start``.

    :param trainer: the trainer; ``batch_idx`` and ``global_step`` are current.
    :param batch: the batch as the data iterable yielded it.
    :param batch_idx: the batch's 0-based index within the epoch.

    May change: the batch's contents in place.  This hook is on the hot path: keep it cheap and
    never force a device-to-host copy here.
    """


@hookspec
def on_before_backward(trainer: TrainingRun, loss: Any) -> None:
    """The loss was computed and the backward pass is next.

    :param trainer: the trainer.
    :param loss: the batch's loss as the backend produced it (a device tensor for torch).

    May change: nothing that the backward pass reads.  Do not convert ``loss`` to a float here.
    """


@hookspec
def on_after_backward(trainer: TrainingRun) -> None:
    """The backward pass is done; gradients are available (and may be accumulating).

    :param trainer: the trainer.

    May change: gradients, in place (for example to inspect or rescale them).
    """


@hookspec
def on_before_optimizer_step(trainer: TrainingRun) -> None:
    """The optimizer is about to update the parameters.  Alias: ``optimizer_step`` (the
    Ultralytics name).

    Fires once per optimizer step: with gradient accumulation over ``k`` batches, once every
    ``k`` batches (and after the last batch of the epoch).  The gradients are final here: all
    accumulated, and unscaled when mixed precision scales the loss (the task's
    ``unscale_gradients`` ran first), so a gradient norm read here is the true one.

    :param trainer: the trainer; ``global_step`` counts the steps taken before this one.

    May change: gradients (for example to clip them) and the learning rates
    (``trainer.task.set_learning_rates``).
    """


@hookspec
def on_params_update(trainer: TrainingRun) -> None:
    """The optimizer has updated the parameters.

    :param trainer: the trainer; ``global_step`` already counts this step.

    May change: parameters (for example an exponential moving average of them).
    """


@hookspec
def on_before_zero_grad(trainer: TrainingRun) -> None:
    """The gradients are about to be cleared after an optimizer step.

    :param trainer: the trainer.

    May change: nothing; this is the last moment the step's gradients can be read.
    """


@hookspec
def on_train_batch_end(trainer: TrainingRun, batch: Any, batch_idx: int, loss: Any) -> None:
    """A training batch is done.  Alias: ``on_batch_end``.

    :param trainer: the trainer.
    :param batch: the batch.
    :param batch_idx: the batch's 0-based index within the epoch.
    :param loss: the batch's loss, still on the device.

    May change: ``trainer.request_stop()`` ends the epoch after this batch (its end hooks still
    fire).  Hot path: never force a device-to-host copy per batch; reduce at log intervals.
    """


# ---------------------------------------------------------------------------------------------
# State: checkpoints and saved models
# ---------------------------------------------------------------------------------------------


@hookspec
def on_save_checkpoint(trainer: TrainingRun, checkpoint: dict[str, Any]) -> None:
    """A checkpoint is being assembled by :meth:`TrainingRun.checkpoint_state`.

    :param trainer: the trainer.
    :param checkpoint: the checkpoint dict: ``task`` (the task's state), ``progress`` (epoch,
        position in it, global step, random state, ...), ``metrics`` and ``plugins``, where
        every plugin with a ``state_dict()`` method already has its state under its name.

    May change: ``checkpoint["plugins"][<your name>]`` (or other new keys): plain data and
    tensors only, since checkpoints load without arbitrary unpickling.
    """


@hookspec
def on_load_checkpoint(trainer: TrainingRun, checkpoint: dict[str, Any]) -> None:
    """A checkpoint is being restored by :meth:`TrainingRun.load_checkpoint_state`.

    Fires after the task, the progress counters and every plugin's ``load_state_dict()`` were
    restored.

    :param trainer: the trainer.
    :param checkpoint: the checkpoint dict as saved.

    May change: the plugin's own state, taken back from ``checkpoint["plugins"][<your name>]``.
    """


@hookspec
def on_model_save(trainer: TrainingRun, path: Path) -> None:
    """A checkpoint or model file was written (by a checkpointing plugin).

    :param trainer: the trainer.
    :param path: the file that was written, complete on disk.

    May change: nothing in the file; an implementation may copy or upload it.
    """


# ---------------------------------------------------------------------------------------------
# Metrics: the one stream that loggers consume
# ---------------------------------------------------------------------------------------------


@hookspec
def on_log(
    run: Run, metrics: Mapping[str, float], step: int, epoch: int, phase: str
) -> None:
    """Metrics are ready to be logged.  Loggers consume this hook and no other.

    Fires at the trainer's log interval (``phase="train"``, the running means since the last
    interval), once per epoch after :func:`on_fit_epoch_end` (``phase="epoch"``, the epoch's
    metrics including validation), and at the end of a stand-alone validation
    (``phase="val"``).  On a task that computes asynchronously (JAX) an interval's record
    comes once its loss is computed, possibly a few batches later, and always before any
    other hook of the run: read ``step`` and ``epoch``, not the run's counters, for where the
    metrics belong.

    :param run: the phase object that produced the metrics.
    :param metrics: metric name to float, read-only.
    :param step: the optimizer steps taken so far (``global_step``).
    :param epoch: the 0-based epoch the metrics belong to.
    :param phase: ``"train"``, ``"epoch"`` or ``"val"``, as above.

    May change: nothing; ``metrics`` is read-only.
    """


# ---------------------------------------------------------------------------------------------
# The end of a run
# ---------------------------------------------------------------------------------------------


@hookspec
def on_train_end(trainer: TrainingRun) -> None:
    """Training finished normally: all epochs ran, a stop was requested, or the run was
    interrupted (``trainer.interrupted``: a signal; the unfinished epoch got no end hooks, and
    a checkpoint written here resumes it exactly).

    Does not fire when training raised; see :func:`on_exception`.

    :param trainer: the trainer; ``stop_reason`` says why it stopped early, if it did.

    May change: the task's model (for example to restore the best weights).
    """


@hookspec
def on_exception(run: Run, exception: BaseException) -> None:
    """A phase raised.  Fires before :func:`teardown`; the exception then propagates.

    Fires for ``KeyboardInterrupt`` too.  An exception raised by an implementation is attached
    as a note and does not replace the original one.

    :param run: the phase object that raised (trainer, validator, predictor or exporter).
    :param exception: the exception.

    May change: nothing that stops the exception; an implementation may save state or notify.
    """


@hookspec
def teardown(run: Run) -> None:
    """A phase is over.  Always fires, last, whether the phase succeeded or raised.

    :param run: the phase object (trainer, validator, predictor or exporter).

    May change: release what the plugin holds (threads, files, connections).
    """


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@hookspec
def on_val_start(validator: Run) -> None:
    """Validation starts: inside ``fit`` after :func:`on_train_epoch_end`, or on its own.

    :param validator: the :class:`~hookline.engine.Validator`; ``trainer`` is the trainer when
        validating inside ``fit``, else ``None``.

    May change: plugin state.
    """


@hookspec
def on_val_batch_start(validator: Run, batch: Any, batch_idx: int) -> None:
    """A validation batch is about to be evaluated.

    :param validator: the validator.
    :param batch: the batch.
    :param batch_idx: the batch's 0-based index.

    May change: the batch's contents in place.  Hot path.
    """


@hookspec
def on_val_batch_end(
    validator: Run, batch: Any, batch_idx: int, outputs: Mapping[str, Any]
) -> None:
    """A validation batch was evaluated.

    :param validator: the validator.
    :param batch: the batch.
    :param batch_idx: the batch's 0-based index.
    :param outputs: the task's per-batch metrics (means over the batch), still on the device.

    May change: nothing.  Hot path.
    """


@hookspec
def on_val_end(validator: Run, metrics: dict[str, float]) -> None:
    """Validation is complete.

    :param validator: the validator.
    :param metrics: ``val/<name>`` to float: each metric's mean over all validation samples
        (the same dict as ``validator.metrics``).

    May change: ``metrics`` (add derived validation metrics).
    """


# ---------------------------------------------------------------------------------------------
# Prediction
# ---------------------------------------------------------------------------------------------


@hookspec
def on_predict_start(predictor: Run) -> None:
    """Prediction starts.

    :param predictor: the :class:`~hookline.engine.Predictor`.

    May change: plugin state.
    """


@hookspec
def on_predict_batch_start(predictor: Run, batch: Any, batch_idx: int) -> None:
    """A batch is about to be predicted.

    :param predictor: the predictor.
    :param batch: the batch.
    :param batch_idx: the batch's 0-based index.

    May change: the batch's contents in place.
    """


@hookspec
def on_predict_postprocess_end(
    predictor: Run, outputs: Any, batch: Any, batch_idx: int
) -> None:
    """The task's prediction and post-processing of a batch are done.

    :param predictor: the predictor.
    :param outputs: the post-processed outputs of the batch.
    :param batch: the batch.
    :param batch_idx: the batch's 0-based index.

    May change: ``outputs`` in place (for example to filter or annotate predictions) before
    they are collected.
    """


@hookspec
def on_predict_batch_end(predictor: Run, outputs: Any, batch: Any, batch_idx: int) -> None:
    """A batch's predictions were collected.

    :param predictor: the predictor.
    :param outputs: the batch's outputs as collected.
    :param batch: the batch.
    :param batch_idx: the batch's 0-based index.

    May change: nothing; write or stream ``outputs`` here.
    """


@hookspec
def on_predict_end(predictor: Run) -> None:
    """Prediction is complete; ``predictor.results`` holds every batch's outputs.

    :param predictor: the predictor.

    May change: ``predictor.results``.
    """


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


@hookspec
def on_export_start(exporter: Run, format: str) -> None:
    """An export is about to be made.

    :param exporter: the :class:`~hookline.engine.Exporter`; ``path`` is where the artifact
        will be written.
    :param format: the export format's name (for example ``"torchscript"``).

    May change: ``exporter.path``.
    """


@hookspec
def on_export_end(exporter: Run, artifact: Path) -> None:
    """An export was written.

    :param exporter: the exporter.
    :param artifact: the path of the exported file.

    May change: nothing in the artifact; an implementation may check, copy or upload it.
    """


# ---------------------------------------------------------------------------------------------
# The catalog's order and the other names hooks answer to
# ---------------------------------------------------------------------------------------------

SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Plugin system", ("on_plugin_registered", "hookline_add_options", "hookline_configure")),
    (
        "Training: set-up",
        ("on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start"),
    ),
    ("Training: the epoch", ("on_train_epoch_start", "on_train_epoch_end", "on_fit_epoch_end")),
    (
        "Training: the batch",
        (
            "on_train_batch_start", "on_before_backward", "on_after_backward",
            "on_before_optimizer_step", "on_params_update", "on_before_zero_grad",
            "on_train_batch_end",
        ),
    ),
    (
        "State: checkpoints and saved models",
        ("on_save_checkpoint", "on_load_checkpoint", "on_model_save"),
    ),
    ("Metrics: the one stream that loggers consume", ("on_log",)),
    ("The end of a run", ("on_train_end", "on_exception", "teardown")),
    ("Validation", ("on_val_start", "on_val_batch_start", "on_val_batch_end", "on_val_end")),
    (
        "Prediction",
        (
            "on_predict_start", "on_predict_batch_start", "on_predict_postprocess_end",
            "on_predict_batch_end", "on_predict_end",
        ),
    ),
    ("Export", ("on_export_start", "on_export_end")),
)
"""Every hook, grouped by phase in lifecycle order (a test checks that none is missing)."""

ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "on_epoch_start": "on_train_epoch_start",
        "on_epoch_end": "on_fit_epoch_end",
        "on_batch_start": "on_train_batch_start",
        "on_batch_end": "on_train_batch_end",
        "optimizer_step": "on_before_optimizer_step",
    }
)
"""Other names a hook answers to, mapped to the catalog's name.  ``on_epoch_end`` is the end of
the whole epoch with validation metrics (Keras' meaning); ``optimizer_step`` is the Ultralytics
name of the hook before the step.  An implementation or callback may use either name."""

RENAMED: Mapping[str, str] = MappingProxyType({})
"""Hooks renamed since the first hook API, old name to new.  An implementation under the old
name keeps working (it is registered for the new hook) and gets a
:class:`~hookline.manager.HookDeprecationWarning` naming the new one.  No catalog hook has been
renamed yet; a plugin that declares hooks of its own may rename them the same way (a
``RENAMED`` mapping next to its hook specifications)."""
