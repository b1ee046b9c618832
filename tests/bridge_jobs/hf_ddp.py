"""A Hugging Face ``Trainer`` under torchrun (2 CPU processes, gloo) with hookline's plugins
(tests/test_bridge_hf.py).

Run as ``torchrun --standalone --nproc_per_node=2 hf_ddp.py OUT``.  Rank 1 alone asks to stop
after its second epoch; each rank writes ``OUT/rank<r>.json`` (the Trainer's step, the run's
world size and stop reason); hookline's run files go to ``OUT`` (the Trainer's output_dir,
rank zero only).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers

import hookline
from hookline.bridges.hf import HooklineCallback

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
transformers.logging.set_verbosity_error()


class VoteOnRankOne(hookline.Callback):
    """Requests a stop on rank 1 only, after the second epoch."""

    def on_fit_epoch_end(self, trainer: Any) -> None:
        if trainer.rank == 1 and trainer.epoch == 1:
            trainer.request_stop("vote on rank 1")


def rows(count: int, seed: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(0, 50, (8,), generator=generator),
            "labels": int(torch.randint(0, 2, (1,), generator=generator)),
        }
        for _ in range(count)
    ]


def main(out: Path) -> None:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        output_dir=str(out), report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
        eval_strategy="epoch", save_strategy="no", logging_strategy="epoch",
        num_train_epochs=5, per_device_train_batch_size=8, per_device_eval_batch_size=8,
        ddp_backend="gloo",
    )
    callback = HooklineCallback(plugins=[VoteOnRankOne()], plots=False, resources=False)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=rows(32, 1), eval_dataset=rows(16, 2),
        callbacks=[callback],
    )
    trainer.train()
    run = callback.run
    assert run is not None
    report = {
        "rank": run.rank, "world_size": run.world_size, "global_step": trainer.state.global_step,
        "steps_per_epoch": len(trainer.get_train_dataloader()), "stop_reason": run.stop_reason,
    }
    (out / f"rank{run.rank}.json").write_text(json.dumps(report))
    # the Trainer's process group is the script's to end (``Trainer.end()`` in transformers 5
    # does just this): a gloo group left to the interpreter's exit is torn down while it shuts
    # down, which now and then aborts the process ("terminate called without an active
    # exception", exit code -6)
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
