"""The files of a run: its numbered directory, the settings used, the predictions.

Layout (``project`` defaults to ``runs``)::

    runs/train/exp3/args.yaml            every setting of the run
    runs/train/exp3/weights/             checkpoints (see hookline.plugins.checkpoint)
    runs/predict/exp/predictions.csv     one row per predicted sample
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hookline.engine import Predictor
from hookline.errors import UserError
from hookline.manager import Callback, hookimpl
from hookline.plugins.support import atomic_write, check_run_name, claim_run_dir, plain
from hookline.run import Run, TrainingRun
from hookline.settings import Options, Settings

#: libyaml's safe dumper when PyYAML was built with it (about 4x faster), else the pure one
_SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _rows(outputs: Any) -> list[dict[str, Any]]:
    """One dict per sample from a batch's outputs (a tensor/array, or a dict of them)."""
    columns = outputs if isinstance(outputs, Mapping) else {"output": outputs}
    values = {name: _to_list(column) for name, column in columns.items()}
    count = len(next(iter(values.values()))) if values else 0
    rows = []
    for index in range(count):
        row: dict[str, Any] = {}
        for name, column in values.items():
            item = column[index]
            if isinstance(item, list):
                row.update({f"{name}_{position}": part for position, part in enumerate(item)})
            else:
                row[name] = item
        rows.append(row)
    return rows


def _to_list(column: Any) -> list[Any]:
    tolist = getattr(column, "tolist", None)  # torch tensors and numpy arrays
    return list(tolist() if tolist is not None else column)


class RunFiles(Callback):
    """Chooses and creates a run's directory, writes ``args.yaml`` and ``predictions.csv``.

    Settings: ``project`` (parent folder, default ``runs``), ``name`` (default ``exp``; one
    folder name, no separators; a number is added to keep earlier runs, and the directory is
    claimed atomically, so parallel runs never share one), ``exist_ok`` (reuse
    ``project/<phase>/name``).  A directory given to the phase (``save_dir=``) is used as it
    is.  Run files are created with the permissions the umask allows.

    A training run that a user error ends before its first epoch ends (a checkpoint that
    cannot be resumed, a value refused late: one line on the command line, exit 2) leaves no
    directory behind: the one this plugin created for it is removed when it holds nothing but
    ``args.yaml``, and the run's ``save_dir`` becomes ``None`` for the plugins that tear down
    after it (the summary then writes no file).  Any other failure keeps the directory, with
    the summary's record of what went wrong; a directory that existed before the run
    (``exist_ok``, ``save_dir=``, a resume in its own directory) is always kept.
    """

    rank_zero_only = True

    def __init__(self) -> None:
        self.project = Path("runs")
        self.name = "exp"
        self.exist_ok = False
        self._predictions: io.TextIOWrapper | None = None
        self._writer: csv.DictWriter[str] | None = None
        self._row = 0
        #: The training run directory this plugin created, until an epoch of it ends.
        self._created: Path | None = None
        self._user_error = False

    def hookline_add_options(self, options: Options) -> None:
        options.add("project", "runs", help="parent folder of run directories", owner="save")
        options.add("name", "exp", help="run directory name (numbered if taken)", owner="save")
        options.add("exist_ok", False, help="reuse an existing run directory", owner="save")

    def hookline_configure(self, settings: Settings) -> None:
        self.project = Path(settings["project"])
        self.name = check_run_name(settings["name"])
        # resume=auto carries on in the named run's directory rather than numbering a new one
        self.exist_ok = settings["exist_ok"] or settings.get("resume") == "auto"

    def _choose_dir(self, run: Run) -> tuple[Path, bool]:
        """The run's directory, claimed, and whether this call created it."""
        if run.save_dir is None:
            parent, name, reuse = self.project / run.name, self.name, self.exist_ok
        else:
            parent, name, reuse = run.save_dir.parent, run.save_dir.name, True
        existed = reuse and (parent / name).is_dir()
        run.save_dir = claim_run_dir(parent, name, reuse=reuse)
        run.args["save_dir"] = str(run.save_dir)
        return run.save_dir, not existed

    # -- training ------------------------------------------------------------------------------

    @hookimpl(tryfirst=True)  # other plugins read save_dir in the same hook
    def on_pretrain_routine_start(self, trainer: TrainingRun) -> None:
        save_dir, created = self._choose_dir(trainer)
        self._created, self._user_error = (save_dir if created else None), False
        text = yaml.dump(
            plain(trainer.args), Dumper=_SAFE_DUMPER, sort_keys=False, allow_unicode=True
        )
        atomic_write(
            save_dir / "args.yaml", lambda file: file.write(text.encode()), durable=False
        )

    def on_fit_epoch_end(self) -> None:
        self._created = None  # an epoch ended: the directory is the run's record

    def on_exception(self, exception: BaseException) -> None:
        self._user_error = isinstance(exception, UserError)

    def _remove_if_empty(self, run: Run) -> None:
        """Remove the directory created for a run that a user error ended before its first
        epoch ended, when it holds nothing but ``args.yaml``."""
        created, self._created = self._created, None
        if created is None or not self._user_error or run.save_dir != created:
            return
        try:
            if {path.name for path in created.iterdir()} <= {"args.yaml"}:
                (created / "args.yaml").unlink(missing_ok=True)
                created.rmdir()  # refuses if a file appeared meanwhile: then it stays
                run.save_dir = None
        except OSError:
            pass  # a directory that cannot be emptied is left as it is

    # -- prediction ----------------------------------------------------------------------------

    def on_predict_start(self, predictor: Predictor) -> None:
        save_dir, _ = self._choose_dir(predictor)
        self._predictions = open(save_dir / "predictions.csv", "w", newline="")  # noqa: SIM115
        self._writer = None
        self._row = 0

    def on_predict_batch_end(self, outputs: Any) -> None:
        if self._predictions is None:
            return
        rows = _rows(outputs)
        if self._writer is None and rows:
            fields = ["index", *rows[0]]
            self._writer = csv.DictWriter(self._predictions, fieldnames=fields)
            self._writer.writeheader()
        for row in rows:
            assert self._writer is not None
            self._writer.writerow({"index": self._row, **row})
            self._row += 1

    def teardown(self, run: Run) -> None:
        self._remove_if_empty(run)
        if self._predictions is not None:
            self._predictions.close()
            self._predictions = None
