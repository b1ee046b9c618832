"""Helpers for testing plugins, importable without pytest or any ML framework.

* :class:`HookRecorder`: records the hook calls a run makes.
* :class:`LinearRegressionTask` and :func:`make_batches`: the smallest complete task, in pure
  Python, for tests that need a real training loop but no framework.
* :mod:`hookline.testing.fixtures`: the same as pytest fixtures (``hook_recorder``).
"""

from hookline.testing.recorder import HookCall, HookRecorder
from hookline.testing.toy import LinearRegressionTask, ShuffledBatches, make_batches

__all__ = ["HookCall", "HookRecorder", "LinearRegressionTask", "ShuffledBatches", "make_batches"]
