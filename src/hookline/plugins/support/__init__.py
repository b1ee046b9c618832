"""The one module the built-in plugins share helpers through (no plugin imports another).

* :mod:`~hookline.plugins.support.files`: atomic writes and numbered run directories.
* :mod:`~hookline.plugins.support.monitor`: ``min``/``max`` modes and the best value so far.
* :mod:`~hookline.plugins.support.formatting`: plain values and metric lines.
* :mod:`~hookline.plugins.support.trackers`: the base of the experiment-tracker loggers.
"""

from hookline.plugins.support.files import atomic_write, next_run_dir
from hookline.plugins.support.formatting import QUIET_PREFIXES, format_metrics, plain
from hookline.plugins.support.monitor import BestTracker, improves, resolve_mode
from hookline.plugins.support.trackers import Scalar, TrackerLogger, hyperparameters, series

__all__ = [
    "QUIET_PREFIXES",
    "BestTracker",
    "Scalar",
    "TrackerLogger",
    "atomic_write",
    "format_metrics",
    "hyperparameters",
    "improves",
    "next_run_dir",
    "plain",
    "resolve_mode",
    "series",
]
