"""Which checkpoint a command reads: ``weights=`` (or ``resume=``), else the newest run's best."""

from __future__ import annotations

from pathlib import Path

from hookline.errors import UserError


def latest_weights(project: Path) -> Path:
    """The weights of the newest training run under ``project/train`` (the run whose
    ``last.pt`` was written last): its ``best.pt`` when it has one, else its ``last.pt``.

    :raises UserError: when there is none.
    """
    candidates = sorted(
        (project / "train").glob("*/weights/last.pt"), key=lambda path: path.stat().st_mtime
    )
    if not candidates:
        raise UserError(
            f"no weights given and none found under {project / 'train'}: "
            "run `hookline train` first or pass weights=PATH"
        )
    best = candidates[-1].with_name("best.pt")
    return best if best.is_file() else candidates[-1]
