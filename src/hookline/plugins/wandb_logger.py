"""Weights & Biases: the run's settings as config and the metric stream as history.

Offline by default (``wandb_mode=offline``): the run is written under the run directory's
``wandb/`` folder, whole by the time training returns, and can be uploaded later with
``wandb sync``; ``wandb_mode=online`` sends it directly (after ``wandb login``).  Every record
carries ``epoch`` and ``step`` so that either can be the x axis.  W&B's own console capture,
system metrics and metadata (host, git, the command line, which may hold a secret setting) are
turned off.  A resumed training run continues the same W&B run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from hookline.plugins.support import Scalar, TrackerLogger
from hookline.run import Run


class WandbLogger(TrackerLogger):
    """Logs a run to Weights & Biases (offline unless ``wandb_mode=online``)."""

    package = "wandb"
    extra = "wandb"
    MODES = ("offline", "online", "disabled")
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "wandb_project": "W&B project",
        "wandb_mode": "offline, online or disabled",
    }

    def __init__(self, wandb_project: str = "hookline", wandb_mode: str = "offline") -> None:
        super().__init__()
        self.wandb_project, self.wandb_mode = wandb_project, wandb_mode
        self.run: Any = None

    def start(self, run: Run, params: dict[str, Scalar]) -> None:
        import wandb

        assert run.save_dir is not None
        self.run = wandb.init(
            project=self.wandb_project, name=run.save_dir.name, dir=str(run.save_dir),
            config=params, mode=self.wandb_mode,  # type: ignore[arg-type]
            id=self.run_id, resume="allow" if self.run_id else None,
            # no console capture, system metrics or metadata: the metadata holds the command
            # line, which may hold a secret setting (the config has it redacted)
            settings=wandb.Settings(
                console="off", silent=True, x_disable_stats=True, x_disable_meta=True
            ),
        )
        self.run_id = self.run.id

    def log(self, metrics: dict[str, float], step: int, epoch: int, phase: str) -> None:
        self.run.log({**metrics, "epoch": epoch, "step": step})

    def finish(self, failed: bool) -> None:
        import wandb

        self.run.finish(exit_code=1 if failed else 0)
        self.run = None
        if self.wandb_mode == "offline" and not _other_run_open(wandb):
            # run.finish() returns once W&B's service process has the run's last record, but
            # only asks it to close the run without waiting, and the service writes an offline
            # run's file when it closes the run: until then the file may hold its header
            # alone.  wandb.teardown() waits until the service has closed its runs and exited
            # (the next run starts a new one), so the run's files are whole when training
            # returns.  It would also finish another W&B run of this process that is still
            # open: with one, the service is left to close this run in its own time.
            wandb.teardown()


def _other_run_open(wandb: Any) -> bool:
    """Whether a W&B run of this process is still open (the most recent one, or the current
    one where wandb cannot say which are open)."""
    active = getattr(wandb.setup(), "most_recent_active_run", None)
    return (active() if callable(active) else wandb.run) is not None
