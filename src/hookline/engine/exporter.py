"""The export phase.

Hook order of :meth:`Exporter.export`::

    hookline_add_options, hookline_configure
    on_export_start                  (task.export follows)
    on_export_end
    teardown                         (always; on_exception first when something raised)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hookline.engine.phase import Phase
from hookline.settings import SettingsError


class Exporter(Phase):
    """Writes a task's model in one of its export formats.

    ``format`` and ``path`` describe the export under way; ``artifact`` is the file written.
    """

    name = "export"

    def export(self, format: str, path: str | Path, /, **settings: Any) -> Path:
        """Export the model as ``format`` to ``path`` and return the file written.

        :raises SettingsError: for a format the task does not offer (the message lists them).
        """
        formats = tuple(self.task.export_formats)
        if format not in formats:
            raise SettingsError(
                f"unknown export format {format!r}; available: {', '.join(formats)}"
            )
        self._configure({"format": format, "path": str(path)}, settings)
        self.format = format
        self.path = Path(path)
        return self._guarded(self._export)

    def _export(self) -> Path:
        self.task.setup("export")
        self._join()
        self.call("on_export_start", exporter=self, format=self.format)
        self.artifact = Path(self.task.export(self.format, self.path))
        self.call("on_export_end", exporter=self, artifact=self.artifact)
        return self.artifact
