"""The pure engine: four phases that drive a task and fire the hooks.

It imports no ML framework, writes no files and prints nothing; everything observable is done
by plugins.  Each phase module documents the exact order in which it fires its hooks.
"""

from hookline.engine.exporter import Exporter
from hookline.engine.phase import Phase
from hookline.engine.predictor import Predictor
from hookline.engine.trainer import Trainer
from hookline.engine.validator import Validator

__all__ = ["Exporter", "Phase", "Predictor", "Trainer", "Validator"]
