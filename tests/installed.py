"""Installed distributions made on the spot (:mod:`hookline.testing.distributions`), for
in-process tests of entry-point plugins; the pip-installed ones are in test_entrypoints.py and
test_new_plugin.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookline.testing.distributions import write_distribution


def install(
    monkeypatch: pytest.MonkeyPatch, root: Path, distribution: str, module: str, source: str,
    entry_points: dict[str, str], version: str = "1.0",
) -> None:
    """Make ``distribution`` (holding ``module``, with ``source``) importable and declare its
    ``hookline`` entry points (name to ``module:attribute``) for the rest of the test."""
    write_distribution(root, distribution, module, source, entry_points, version)
    monkeypatch.syspath_prepend(str(root))


#: An installed plugin with state under a fixed key, ``counter``: it counts training epochs and
#: prints each count (``counted 2``).
COUNTER = """
    import hookline

    class Counter(hookline.Callback):
        state_key = "counter"

        def __init__(self):
            self.epochs = 0

        def on_train_epoch_end(self, trainer):
            self.epochs += 1
            print("counted", self.epochs)

        def state_dict(self):
            return {"epochs": self.epochs}

        def load_state_dict(self, state):
            self.epochs = state["epochs"]
"""


def install_counter(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Install :data:`COUNTER` as ``hookline-counter`` 1.0 (module ``hookline_counter``, entry
    point ``counter``)."""
    install(monkeypatch, root, "hookline-counter", "hookline_counter", COUNTER,
            {"counter": "hookline_counter:Counter"})
