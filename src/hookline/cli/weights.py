"""Which checkpoint a command reads: ``weights=`` (or ``resume=``), else the newest run's."""

from __future__ import annotations

from pathlib import Path

from hookline.errors import UserError


def latest_weights(project: Path) -> Path:
    """The newest ``last.pt`` under ``project/train``.

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
    return candidates[-1]
