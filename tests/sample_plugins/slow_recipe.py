"""The digits demo, a little slower, touching a marker file in the middle of its second epoch
(``HOOKLINE_TEST_MARKER``), so that a test can signal a real ``hookline train`` mid-epoch."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hookline.backends.torch.demo import DigitsRecipe


class SlowDigits(DigitsRecipe):
    def on_train_batch_end(self, trainer, batch_idx):
        time.sleep(0.005)
        marker = os.environ.get("HOOKLINE_TEST_MARKER")
        if marker and trainer.epoch == 1 and batch_idx == 10:
            Path(marker).touch()
