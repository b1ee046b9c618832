"""The digits demo, a little slower, touching a marker file in the middle of its second epoch
(``HOOKLINE_TEST_MARKER``) and waiting there for a signal, so that a test can signal a real
``hookline train`` mid-epoch however late the test gets a core on a busy machine."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hookline.backends.torch.demo import DigitsRecipe

#: The longest the marked batch waits for the test's signal.
SIGNAL_WAIT_S = 120


class SlowDigits(DigitsRecipe):
    def on_train_batch_end(self, trainer, batch_idx):
        time.sleep(0.005)
        marker = os.environ.get("HOOKLINE_TEST_MARKER")
        if marker and trainer.epoch == 1 and batch_idx == 10:
            Path(marker).touch()
            deadline = time.monotonic() + SIGNAL_WAIT_S
            while not trainer.interrupted and time.monotonic() < deadline:
                time.sleep(0.01)  # the signal's handler runs here, in the main thread
