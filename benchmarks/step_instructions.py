"""What a training step costs in instructions, counted by valgrind's callgrind: hookline's
per-step overhead measured without the machine's drift (a count does not depend on how fast
the machine runs that minute), next to the raw loop and to the least that a loop reporting
its training loss does.

    python benchmarks/step_instructions.py             # about 10 minutes on 2 cores
    python benchmarks/step_instructions.py --json results.json

It needs valgrind (``apt install valgrind``).  The workload is ``overhead.py``'s: the MLP
32-64-2 on batches of 32 with SGD, one CPU thread.  Each contender trains one epoch in a fresh
process under callgrind, of ``--steps`` steps and again of 1000 more, drawn from the same data;
the difference over 1000 is its instructions per step (start-up, imports and making the data
cancel out).  Hash seeds and thread pools are fixed; counts of the same code still differ
between runs by a few thousand instructions a step (memory layout, the garbage collector's
timing), so compare two runs of a change, not one.

* ``raw``: the plain PyTorch loop, as in ``overhead.py``;
* ``loss-kept``: the same loop keeping what any training loop that reports its loss keeps:
  each batch's loss read as a number and weighted by the batch's size, the samples and the
  steps counted.  Below it no loop that reports a training loss goes, whatever its design;
* ``hookline-bare`` and ``hookline-defaults``: ``overhead.py``'s (``hookline.Trainer`` with
  no plugin; ``hookline.Model`` with the built-ins).  With one epoch in both runs, what the
  defaults do at an epoch's end cancels out; what is left is their cost per step, the log
  intervals' records included, and also what they do by the clock (the resource sampler's
  thread every second, the metrics file's flush every second), which a run slowed down
  about fifty times by callgrind does more often per step than a real run: read their count
  as an upper bound.

Instructions are not time (a cache miss costs more than an addition), but their ratios show
where a step's overhead comes from, and how far below a target the floor already is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

EXTRA_STEPS = 1000
CONTENDERS = ("raw", "loss-kept", "hookline-bare", "hookline-defaults")


def train(name: str, steps: int, data_steps: int) -> None:
    """Train contender ``name`` for ``steps`` steps, one epoch, drawn from data of
    ``data_steps`` batches (the same in both runs, so that making it cancels out), in the
    process callgrind counts."""
    import itertools

    import overhead
    import torch

    torch.set_num_threads(1)
    runs = dict(zip(CONTENDERS, (overhead.raw, partial(overhead.raw, keep_loss=True),
                                 overhead.hookline_bare, overhead.hookline_defaults), strict=True))
    data = overhead.make_data(overhead.BATCH * data_steps)
    with tempfile.TemporaryDirectory() as folder:
        runs[name](itertools.islice(data, steps), 1, Path(folder))


def counted(name: str, steps: int, data_steps: int, folder: Path) -> int:
    """The instructions a child process training ``name`` for ``steps`` steps executes."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder / f'{name}.{steps}'}",
         sys.executable, __file__, "--child", name, str(steps), str(data_steps)],
        capture_output=True, text=True, env=env, check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind of {name} ({steps} steps) failed:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def measure(steps: int, jobs: int) -> dict[str, dict[str, float]]:
    """Per contender: instructions per step, and their ratio to the raw loop's."""
    runs = [(name, count) for name in CONTENDERS for count in (steps, steps + EXTRA_STEPS)]
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(jobs) as pool:
        totals = dict(zip(runs, pool.map(
            lambda run: counted(*run, steps + EXTRA_STEPS, Path(folder)), runs), strict=True))
    per_step = {name: (totals[name, steps + EXTRA_STEPS] - totals[name, steps]) / EXTRA_STEPS
                for name in CONTENDERS}
    raw = per_step["raw"]
    return {name: {"instructions_per_step": value, "over_raw": value - raw,
                   "ratio": value / raw} for name, value in per_step.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="steps of the shorter run")
    parser.add_argument("--jobs", type=int, default=2, help="processes counted at once")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", nargs=3, metavar=("NAME", "STEPS", "DATA_STEPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        train(args.child[0], int(args.child[1]), int(args.child[2]))
        return {}
    if shutil.which("valgrind") is None:
        print("step_instructions: valgrind is not installed (apt install valgrind)",
              file=sys.stderr)
        raise SystemExit(2)
    results = measure(args.steps, args.jobs)
    print(f"{'contender':<26}{'instructions/step':>18}{'over raw':>10}{'x raw':>8}")
    for name, row in results.items():
        print(f"{name:<26}{row['instructions_per_step']:>18,.0f}{row['over_raw']:>10,.0f}"
              f"{row['ratio']:>8.3f}")
    import overhead

    target = dict(((name, column), limit) for name, column, limit in overhead.TARGETS)
    print(f"hookline-bare: {results['hookline-bare']['ratio']:.4f}x the raw loop's "
          f"instructions (its further step's target: "
          f"{target['hookline-bare', 'step_ratio']}x the raw loop's time); "
          f"loss-kept, the floor: {results['loss-kept']['ratio']:.4f}x")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
