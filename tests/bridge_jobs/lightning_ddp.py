"""Lightning DDP on 2 CPU processes with hookline's plugins (tests/test_bridge_lightning.py).

Run as ``python lightning_ddp.py OUT``: Lightning starts the second process by running this
script again.  Rank 1 alone asks to stop after its second epoch; each rank writes
``OUT/rank<r>.json`` (its Trainer's epoch and hookline's stop reason); hookline's run files go
to ``OUT/run`` (rank zero only).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import hookline
from hookline.bridges.lightning import HooklineCallback

torch.set_num_threads(1)
warnings.filterwarnings("ignore")


class Regression(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), sync_dist=True)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class RankOneStops(hookline.Callback):
    """Asks to stop after the second epoch, on rank 1 only."""

    def on_fit_epoch_end(self, trainer: hookline.TrainingRun) -> None:
        if trainer.rank == 1 and trainer.epoch == 1:
            trainer.request_stop("rank 1 had enough")


def main(out: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=generator)
    data = TensorDataset(x, x.sum(1, keepdim=True))
    callback = HooklineCallback(plugins=[RankOneStops()], save_dir=out / "run", plots=False)
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=5, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[callback], default_root_dir=out,
    )
    trainer.fit(Regression(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    run = callback.loop.run
    assert run is not None
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps({
        "current_epoch": trainer.current_epoch, "stop_reason": run.stop_reason,
        "world_size": run.world_size,
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
