"""Metric files in the run directory, written from the ``on_log`` stream alone.

``results.csv``
    One row per epoch (and one for a stand-alone validation): ``epoch`` (1-based, as printed),
    ``step`` (optimizer steps so far), ``time`` (seconds since training started, counting the
    time before an interruption when the run resumed), then every
    metric, in the order they first appeared.  A metric that appears later (validation every
    N epochs, a plugin that starts reporting) adds a column: the file is rewritten atomically
    with the wider header, and earlier rows leave that column empty.

``metrics.jsonl``
    Every ``on_log`` record, one JSON object per line:
    ``{"phase": "train", "epoch": 1, "step": 50, "time": 1.9, "metrics": {"train/loss": 0.7}}``.
    ``phase`` is ``train`` (a log interval), ``epoch`` or ``val``.

``results.csv`` is flushed after each row; ``metrics.jsonl`` after each epoch's and
validation's record, and a log interval's once a second at most (a flush is a system call, a
good part of a short interval's cost): a run that dies without unwinding (killed, out of
memory) loses at most the last second of interval records (none from before a checkpoint:
the file is flushed when one is taken); any other end closes the file with everything in it.
A record's ``time`` is when it was written (on JAX an interval's record may come a few batches
after its step).  When a run
resumes from a checkpoint in the same directory, the records after the checkpoint (which the
resumed run logs again) are dropped first, so that each epoch and step appears once.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from hookline.manager import Callback
from hookline.plugins.support import atomic_write
from hookline.run import Run, TrainingRun

#: Seconds a log interval's record may wait in ``metrics.jsonl``'s buffer.
FLUSH_INTERVAL = 1.0


class _MetricFile(Callback):
    """What both files share: the file's place, the clock, and resume trimming."""

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    filename = ""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._started = time.monotonic()
        self._earlier = 0.0  # seconds of the run before the checkpoint it resumed from

    def _open(self, run: Run) -> bool:
        """Choose the file for ``run``; false when the run has no directory."""
        if run.save_dir is None:
            self.path = None
            return False
        self.path = run.save_dir / self.filename
        self._started = time.monotonic()
        return True

    def _elapsed(self) -> float:
        return round(self._earlier + time.monotonic() - self._started, 3)

    def state_dict(self) -> dict[str, float]:
        """The run's time so far, so that a resumed run's ``time`` carries on."""
        return {"elapsed": self._elapsed()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._earlier = float(state["elapsed"])

    def on_train_start(self, trainer: TrainingRun) -> None:
        earlier = self._earlier
        if self._open(trainer):
            resumed = trainer.global_step > 0 or trainer.start_epoch > 0
            self._earlier = earlier if resumed else 0.0
            self._begin(trainer if resumed else None)

    def on_val_start(self, validator: Run) -> None:
        if getattr(validator, "trainer", None) is None and self._open(validator):
            self._earlier = 0.0
            self._begin(None)

    def _begin(self, resumed: TrainingRun | None) -> None:
        """Start the file; for a resumed run keep the records before its checkpoint."""
        raise NotImplementedError

    def _carry_on_after(self, times: Iterable[Any]) -> None:
        """Start a resumed run's clock no earlier than the last time kept in its file: the
        checkpoint saved the time before its epoch's records were written (after it, its
        files were made durable, which takes long on a busy disk), so without this the next
        epoch's time could come out earlier than the last one kept."""
        self._earlier = max([self._earlier, *(float(value) for value in times if value)])

    @staticmethod
    def _kept(record: Mapping[str, Any], resumed: TrainingRun) -> bool:
        """Whether a record written before a resume stays: logged before the checkpoint."""
        if int(record.get("step") or 0) > resumed.global_step:
            return False
        return record.get("phase") == "train" or int(record["epoch"]) <= resumed.start_epoch


class CSVLogger(_MetricFile):
    """Writes ``results.csv`` in the run directory: one row of metrics per epoch."""

    filename = "results.csv"

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = []

    def _begin(self, resumed: TrainingRun | None) -> None:
        assert self.path is not None
        self.rows, self.columns = [], []
        if resumed is not None and self.path.is_file():
            with open(self.path, newline="") as file:
                reader = csv.DictReader(file)
                self.columns = list(reader.fieldnames or [])
                for row in reader:
                    if self._kept({"phase": "epoch", **row}, resumed):
                        self.rows.append(row)
            self._carry_on_after(row.get("time") for row in self.rows)
        self._rewrite()

    def _rewrite(self) -> None:
        assert self.path is not None
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, restval="")
        if self.columns:
            writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(
            self.path, lambda file: file.write(text.getvalue().encode()), durable=False
        )

    def on_log(
        self, metrics: Mapping[str, float], step: int, epoch: int, phase: str
    ) -> None:
        if self.path is None or phase == "train":
            return
        row = {"epoch": epoch + 1, "step": step, "time": self._elapsed(), **metrics}
        self.rows.append(row)
        new = [name for name in row if name not in self.columns]
        if new:
            self.columns.extend(new)
            self._rewrite()
            return
        with open(self.path, "a", newline="") as file:
            csv.DictWriter(file, fieldnames=self.columns, restval="").writerow(row)


class JSONLogger(_MetricFile):
    """Writes ``metrics.jsonl`` in the run directory: every ``on_log`` record, one per line."""

    filename = "metrics.jsonl"

    def __init__(self) -> None:
        super().__init__()
        self._file: IO[str] | None = None
        self._flushed = 0.0  # when the file was last flushed (time.monotonic)

    def _begin(self, resumed: TrainingRun | None) -> None:
        assert self.path is not None
        kept: list[str] = []
        if resumed is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by the crash being resumed from
                if self._kept(record, resumed):
                    kept.append(line + "\n")
                    self._carry_on_after([record.get("time")])
        atomic_write(self.path, lambda file: file.write("".join(kept).encode()), durable=False)
        self._close()
        self._file = open(self.path, "a")  # noqa: SIM115 - held for the run, closed in teardown

    def on_log(
        self, metrics: Mapping[str, float], step: int, epoch: int, phase: str
    ) -> None:
        if self._file is None:
            return
        record = {
            "phase": phase, "epoch": epoch + 1, "step": step, "time": self._elapsed(),
            "metrics": dict(metrics),
        }
        self._file.write(json.dumps(record) + "\n")
        now = time.monotonic()
        if phase != "train" or now - self._flushed >= FLUSH_INTERVAL:
            self._file.flush()
            self._flushed = now

    def on_save_checkpoint(self) -> None:
        """Flush before a checkpoint is written: a run resumed from it logs nothing before its
        step again, so what the file holds up to there must be on disk."""
        if self._file is not None:
            self._file.flush()
            self._flushed = time.monotonic()

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def teardown(self) -> None:
        self._close()
