"""The pure engine: four phases that drive a task and fire the hooks.

It imports no ML framework, no backend and no plugin, writes no files and prints nothing;
everything observable is done by plugins, and everything framework-specific by the task
(:class:`~hookline.engine.task.Task`).  Each phase module documents the exact order in which
it fires its hooks.
"""

from hookline.engine import checkpoint_file
from hookline.engine.checkpoint_file import load_checkpoint, read_header
from hookline.engine.exporter import Exporter
from hookline.engine.phase import Phase
from hookline.engine.predictor import Predictor
from hookline.engine.task import Stage, Task
from hookline.engine.trainer import Trainer
from hookline.engine.validator import Validator

__all__ = [
    "Exporter", "Phase", "Predictor", "Stage", "Task", "Trainer", "Validator", "checkpoint_file",
    "load_checkpoint",
    "read_header",
]
