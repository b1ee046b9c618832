"""Run the test suite several times while busy loops keep every core loaded.

    python .ci/under_load.py [--runs 3] [--load N] [--logs FOLDER] [-- PYTEST ARGS]

A test that passes only on a quiet machine is a flaky test: it times something, races a
thread or a subprocess, or waits a fixed time.  This script starts ``--load`` busy-loop
processes (one per core by default), runs ``python -m pytest`` ``--runs`` times under them,
prints one line per run (pytest's whole output goes to ``--logs``, ``run-N.log``, so that a
failure can be read afterwards) and exits 0 only if every run passed.  The load processes belong to
this script: they are stopped when it ends, however it ends (they also die with it if it is
killed outright), so nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BUSY_LOOP = "while True:\n    pass\n"


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGKILL when this script's process dies."""
    # not Linux: no such call, and the finally clause in main still stops them
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start_load(processes: int) -> list[subprocess.Popen[bytes]]:
    """``processes`` interpreters spinning in a loop, each keeping one core busy."""
    return [
        subprocess.Popen([sys.executable, "-c", BUSY_LOOP], preexec_fn=_die_with_parent)
        for _ in range(processes)
    ]


def stop_load(load: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in load:
        process.kill()
    for process in load:
        process.wait()


def run_suite(pytest_args: Sequence[str], log: Path) -> tuple[int, float, str]:
    """One run of the suite: its exit code, seconds and pytest's last line; its output is
    written to ``log``.  The run is a process group of its own, ended whole (subprocesses
    that tests started included) if this script is stopped while it runs."""
    started = time.monotonic()
    suite = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        output, _ = suite.communicate()
    finally:
        if suite.poll() is None:
            os.killpg(suite.pid, signal.SIGKILL)
            suite.wait()
    seconds = time.monotonic() - started
    log.write_text(output)
    lines = output.strip().splitlines()
    failures = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    print("\n".join(failures), flush=True)
    return suite.returncode, seconds, lines[-1] if lines else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of the suite (default 3)")
    parser.add_argument("--load", type=int, default=os.cpu_count() or 1,
                        help="busy-loop processes (default: one per core)")
    parser.add_argument("--logs", type=Path, default=None,
                        help="where each run's output is written (default: a new temporary "
                             "folder, named at the end)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    options = parser.parse_args(argv)
    if options.runs < 1 or options.load < 0:
        parser.error("--runs must be at least 1 and --load at least 0")

    # a SIGTERM ends the script through the finally clause below, like Ctrl-C does
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    logs = options.logs or Path(tempfile.mkdtemp(prefix="hookline-under-load-"))
    logs.mkdir(parents=True, exist_ok=True)
    load = start_load(options.load)
    passed = 0
    try:
        for run in range(1, options.runs + 1):
            code, seconds, last_line = run_suite(options.pytest_args, logs / f"run-{run}.log")
            passed += code == 0
            print(f"run {run}/{options.runs} under {options.load} busy loops: "
                  f"{'passed' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s: "
                  f"{last_line}", flush=True)
    finally:
        stop_load(load)
    print(f"{passed} of {options.runs} runs passed under load (their output: {logs})")
    return 0 if passed == options.runs else 1


if __name__ == "__main__":
    sys.exit(main())
