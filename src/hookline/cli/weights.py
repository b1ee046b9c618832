"""Which checkpoint a command reads: ``weights=`` (or ``resume=``), else the newest run's best."""

from __future__ import annotations

from pathlib import Path

from hookline.errors import UserError


def last_checkpoint(weights: Path) -> Path | None:
    """A run's last checkpoint in its ``weights`` folder: ``last.pt``, or ``last`` (a sharded
    checkpoint: a link to a directory), whichever was written last; ``None`` without one."""
    found = [path for path in (weights / "last.pt", weights / "last") if path.exists()]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def latest_weights(project: Path) -> Path:
    """The weights of the newest training run under ``project/train`` (the run whose
    ``last.pt``, or sharded ``last``, was written last): its ``best.pt`` (``best``) when it
    has one, else its last.

    :raises UserError: when there is none.
    """
    runs = (last_checkpoint(folder) for folder in (project / "train").glob("*/weights"))
    candidates = sorted(
        (path for path in runs if path is not None), key=lambda path: path.stat().st_mtime
    )
    if not candidates:
        raise UserError(
            f"no weights given and none found under {project / 'train'}: "
            "run `hookline train` first or pass weights=PATH"
        )
    best = candidates[-1].with_name("best" + candidates[-1].suffix)
    return best if best.is_file() else candidates[-1]
