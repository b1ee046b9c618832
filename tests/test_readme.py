"""CI proves the README: every Quickstart command runs in .ci/run, in the same order."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the Quickstart has no bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_quickstart_commands_in_order():
    script = [
        line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    position = 0  # each command is looked for after the previous one (some come twice)
    for command in quickstart_commands():
        assert command in script, f".ci/run does not run the Quickstart command {command!r}"
        assert command in script[position:], (
            f".ci/run runs the Quickstart command {command!r} out of order"
        )
        position = script.index(command, position) + 1
