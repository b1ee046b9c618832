"""The plugin-author kit: helpers for testing plugins, importable without pytest or any ML
framework (importing this package loads neither).

* :class:`HookRecorder`: records the hook calls a run makes.
* :class:`LinearRegressionTask` and :func:`make_batches`: the smallest complete task, in pure
  Python, for tests that need a real training loop but no framework.
* :mod:`hookline.testing.backends`: the same tiny classifier and data on each framework backend.
* :func:`run_cli`: runs ``hookline`` commands in a folder and returns what they did.
* :func:`~hookline.testing.distributions.write_distribution`: an installed distribution with
  entry points, written into a folder (for tests of discovery without building a package).
* :mod:`hookline.testing.pytest_plugin`: all of it as pytest fixtures (``hookline_manager``,
  ``hookline_recorder``, ``hookline_backend``, ``hookline_cli``), loaded by pytest itself
  wherever hookline is installed.
"""

from hookline.testing.cli_runner import CliResult, run_cli
from hookline.testing.recorder import HookCall, HookRecorder
from hookline.testing.toy import LinearRegressionTask, ShuffledBatches, make_batches

__all__ = [
    "CliResult",
    "HookCall",
    "HookRecorder",
    "LinearRegressionTask",
    "ShuffledBatches",
    "make_batches",
    "run_cli",
]
