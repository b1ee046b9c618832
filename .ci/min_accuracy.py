"""Fail unless each run's final validation accuracy (from its summary.json) reaches a minimum.

    python .ci/min_accuracy.py MINIMUM RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(minimum: float, runs: list[str]) -> int:
    failed = 0
    for run in runs:
        accuracy = json.loads((Path(run) / "summary.json").read_text())["final_metrics"][
            "val/accuracy"
        ]
        verdict = "ok" if accuracy >= minimum else "BELOW"
        print(f"{run}: val/accuracy {accuracy:.4f} ({verdict}, minimum {minimum})")
        failed += accuracy < minimum
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), sys.argv[2:]))
