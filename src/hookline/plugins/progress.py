"""Training progress: batches done, the loss and the rate, refreshed at a bounded rate.

On a terminal it is a tqdm bar per epoch, advanced after every batch.  Anywhere else (a log
file, CI, a pipe) it writes a plain line at most every ``progress_interval`` seconds, checked
at the log intervals (``log_every_n_steps``), and one when the epoch ends, so logs stay
readable; it then needs no per-batch call at all.  The loss shown during an epoch is the running
mean of its latest log interval (``on_log``), and at the epoch's end the epoch's mean
(``train/loss``): always the current epoch's, never one carried over from the previous epoch,
and progress never reads a tensor or forces a device sync.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, ClassVar, TextIO

from hookline.manager import Callback
from hookline.run import Run, TrainingRun
from hookline.settings import Options, Settings

#: Seconds between refreshes when ``progress_interval`` is not given.
TERMINAL_INTERVAL = 0.5
PLAIN_INTERVAL = 30.0


def _epoch_batches(trainer: TrainingRun) -> int | None:
    """The batches each process runs in an epoch, when the data has a length."""
    if trainer.epoch_batches is not None:  # what hookline's own loop knows
        return trainer.epoch_batches
    try:
        total = len(trainer.train_data)  # type: ignore[arg-type]
    except TypeError:
        return None
    return -(-total // trainer.world_size)


class ProgressBar(Callback):
    """Shows each epoch's progress: batches done of the total, the loss and batches per second.

    :param stream: where to write; standard error by default.  A tqdm bar is drawn when the
        stream is a terminal, plain lines otherwise.
    :param progress_interval: seconds between refreshes (default 0.5 on a terminal, 30
        otherwise); also a setting.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "progress_interval": "seconds between progress refreshes (default 0.5 s tty, 30 s plain)"
    }

    def __init__(self, stream: TextIO | None = None, progress_interval: float | None = None):
        self.stream = stream
        self.progress_interval = progress_interval
        self.loss: float | None = None
        self._bar: Any = None
        self._total: int | None = None
        self._epoch_started = 0.0
        self._next_line = 0.0
        self._interval = PLAIN_INTERVAL
        self._label = ""

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(
            self, self.SETTINGS, owner="progress", types={"progress_interval": float}
        )

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)

    def _output(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def idle_hooks(self) -> tuple[str, ...]:
        """Plain lines are written from the log intervals: no per-batch call needed."""
        return () if self._output().isatty() else ("on_train_batch_end",)

    def on_train_epoch_start(self, trainer: TrainingRun) -> None:
        stream = self._output()
        terminal = stream.isatty()
        interval = self.progress_interval
        if interval is None:
            interval = TERMINAL_INTERVAL if terminal else PLAIN_INTERVAL
        self._interval = interval
        self._total = _epoch_batches(trainer)
        self._label = f"epoch {trainer.epoch + 1}/{trainer.epochs}"
        self._epoch_started = time.monotonic()
        self._next_line = self._epoch_started + interval
        self.loss = None  # until this epoch's first log interval
        if terminal:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self._total, desc=self._label, unit="batch", file=stream,
                mininterval=interval, dynamic_ncols=True, leave=True,
            )

    def on_train_batch_end(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_log(self, run: Run, metrics: Mapping[str, float], phase: str) -> None:
        loss = metrics.get("train/loss")
        if phase != "train" or loss is None or not isinstance(run, TrainingRun):
            return
        self.loss = loss
        if self._bar is not None:
            self._bar.set_postfix_str(f"loss {loss:.4g}", refresh=False)
        elif time.monotonic() >= self._next_line:
            self._write_line(run.batch_idx + 1)

    def on_train_epoch_end(self, trainer: TrainingRun) -> None:
        epoch_loss = trainer.metrics.get("train/loss")
        if epoch_loss is not None:
            self.loss = epoch_loss
        if self._bar is not None:
            if self.loss is not None:
                self._bar.set_postfix_str(f"loss {self.loss:.4g}", refresh=False)
            self._bar.close()
            self._bar = None
        else:
            self._write_line(trainer.batch_idx + 1)

    def teardown(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write_line(self, batches: int) -> None:
        now = time.monotonic()
        self._next_line = now + self._interval
        done = f"{batches}/{self._total}" if self._total else str(batches)
        share = f" ({100 * batches / self._total:.0f}%)" if self._total else ""
        loss = f"  loss {self.loss:.4g}" if self.loss is not None else ""
        rate = batches / max(now - self._epoch_started, 1e-9)
        stream = self._output()
        stream.write(f"{self._label}  {done} batches{share}{loss}  {rate:.1f} batch/s\n")
        stream.flush()
