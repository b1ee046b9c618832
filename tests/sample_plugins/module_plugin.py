"""A plugin written as a module of decorated functions (the classic pluggy style)."""

from hookline import hookimpl

seen: list[tuple[str, object]] = []


@hookimpl
def on_train_start(trainer):
    seen.append(("on_train_start", trainer.epochs))


@hookimpl(specname="on_train_epoch_end")
def record_epoch(trainer):
    seen.append(("epoch", trainer.epoch))


@hookimpl
def on_batch_end(batch_idx):
    seen.append(("batch", batch_idx))
