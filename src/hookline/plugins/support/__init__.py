"""The one module the built-in plugins share helpers through (no plugin imports another).

* :mod:`~hookline.plugins.support.checks`: setting ranges and the monitored metric.
* :mod:`~hookline.plugins.support.files`: atomic writes and run directories.
* :mod:`~hookline.plugins.support.checkpoint_writer`: checkpoint files streamed, hashed, fsynced
  and renamed in one pass, other names as hard links.
* :mod:`~hookline.plugins.support.async_writer`: one background write at a time (asynchronous
  checkpoints).
* :mod:`~hookline.plugins.support.monitor`: ``min``/``max`` modes and the best value so far.
* :mod:`~hookline.plugins.support.formatting`: plain values and metric lines.
* :mod:`~hookline.plugins.support.trackers`: the base of the experiment-tracker loggers.
* :mod:`~hookline.plugins.support.charts`: line charts drawn into a PNG with Pillow.
"""

from hookline.plugins.support.charts import draw_panels
from hookline.plugins.support.checks import at_least, monitored, require
from hookline.plugins.support.files import atomic_write, check_run_name, claim_run_dir
from hookline.plugins.support.formatting import (
    QUIET_PREFIXES,
    format_metrics,
    metric_order,
    plain,
)
from hookline.plugins.support.monitor import BestTracker, improves, resolve_mode
from hookline.plugins.support.trackers import Scalar, TrackerLogger, hyperparameters, series

__all__ = [
    "QUIET_PREFIXES",
    "BestTracker",
    "Scalar",
    "TrackerLogger",
    "at_least",
    "atomic_write",
    "check_run_name",
    "claim_run_dir",
    "draw_panels",
    "format_metrics",
    "hyperparameters",
    "improves",
    "metric_order",
    "monitored",
    "plain",
    "require",
    "resolve_mode",
    "series",
]
