"""The main job against plain PyTorch: ``hookline train`` with its defaults, and the same work
written as a plain script, each as a fresh process, interleaved over several rounds.

    python benchmarks/demo.py                 # 5 rounds of the 20-epoch demo (about 2 minutes)
    python benchmarks/demo.py --quick         # 1 round of 2 epochs, for the test suite
    python benchmarks/demo.py --json FILE     # also write the numbers as JSON
    python benchmarks/demo.py --plugin-memory # and each default plugin's memory (+1.5 min a round)

The plain script does what the demo does: the digits data split the same way, the same MLP,
AdamW, batches of 32 shuffled by a seeded generator, validation every epoch, the last and the
best weights saved, a CSV row per epoch.  Wall times include starting Python and importing
torch, as a user sees them.  Medians over rounds, and the ratio of the medians.

Memory: each process reports its own peak resident set size when it exits (``VmHWM`` from
``/proc/self/status``, ``ru_maxrss`` where there is no /proc) and, when it used CUDA,
``torch.cuda.max_memory_allocated`` (the largest over its devices): a small bootstrap runs the
script or ``-m hookline`` and writes both at exit.  Target: the main job's peak RSS at most 5%
above the plain script's.  With ``--plugin-memory``, every round also runs ``hookline train``
once more per built-in that is on by default, with that one turned off: a plugin's memory is
the main job's peak RSS minus the peak without it (imports, threads and data included; the
median over rounds).  A plugin that others rely on counts theirs too: without ``save`` (the run
directory) nothing writes checkpoints, CSV or plots.  Differences under about 0.5 MiB are noise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLAIN = '''
import csv, sys, time
from pathlib import Path
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from sklearn.datasets import load_digits

epochs, folder = int(sys.argv[1]), Path(sys.argv[2])
digits = load_digits()
x, y = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
order = np.random.default_rng(0).permutation(len(x))
cut = len(x) - max(1, round(len(x) * 0.2))
train, val = order[:cut], order[cut:]
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                      nn.Linear(128, 10))
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
loader = DataLoader(TensorDataset(torch.from_numpy(x[train]), torch.from_numpy(y[train])),
                    batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
val_loader = DataLoader(TensorDataset(torch.from_numpy(x[val]), torch.from_numpy(y[val])),
                        batch_size=256)
(folder / "weights").mkdir(parents=True)
best, started = float("inf"), time.monotonic()
with open(folder / "results.csv", "w", newline="") as file:
    writer = csv.writer(file)
    writer.writerow(["epoch", "time", "train/loss", "val/loss", "val/accuracy"])
    for epoch in range(epochs):
        model.train()
        total, count = torch.zeros(()), 0
        for inputs, targets in loader:
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(targets)
            count += len(targets)
        model.eval()
        val_loss, correct = torch.zeros(()), torch.zeros(())
        with torch.no_grad():
            for inputs, targets in val_loader:
                outputs = model(inputs)
                val_loss += nn.functional.cross_entropy(outputs, targets, reduction="sum")
                correct += (outputs.argmax(dim=1) == targets).sum()
        val_loss, accuracy = float(val_loss) / len(val), float(correct) / len(val)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
        torch.save(state, folder / "weights" / "last.pt")
        if val_loss < best:
            best = val_loss
            torch.save(state, folder / "weights" / "best.pt")
        writer.writerow([epoch + 1, round(time.monotonic() - started, 3),
                         float(total) / count, val_loss, accuracy])
        file.flush()
print(accuracy)
'''


#: Runs ``SCRIPT ARGS...`` or ``-m MODULE ARGS...`` as ``python`` would, and at exit writes
#: the process's own peak RSS and peak CUDA memory (None without CUDA) to the file in argv[1].
BOOTSTRAP = """
import atexit, json, runpy, sys

report, *command = sys.argv[1:]


def write_peaks():
    rss = None
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    rss = int(line.split()[1]) * 1024
    except OSError:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss *= 1 if sys.platform == "darwin" else 1024
    device = None
    torch = sys.modules.get("torch")  # never imported here: only read when the job used it
    if torch is not None and torch.cuda.is_initialized():
        device = max(torch.cuda.max_memory_allocated(index)
                     for index in range(torch.cuda.device_count()))
    with open(report, "w") as file:
        json.dump({"peak_rss_bytes": rss, "peak_device_bytes": device}, file)


atexit.register(write_peaks)
if command[0] == "-m":
    sys.argv = [command[1], *command[2:]]
    runpy.run_module(command[1], run_name="__main__", alter_sys=True)
else:
    sys.argv = command
    runpy.run_path(command[0], run_name="__main__")
"""

MIB = 2**20
#: The main job's peak RSS against the plain script's.
MEMORY_TARGET = 1.05


def timed(command: list[str], cwd: Path) -> tuple[float, dict[str, int | None]]:
    """Seconds that ``python COMMAND...`` took, and its peak memory (see :data:`BOOTSTRAP`)."""
    report = cwd / f"peaks-{time.monotonic_ns()}.json"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", BOOTSTRAP, str(report), *command], cwd=cwd,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    peaks: dict[str, int | None] = json.loads(report.read_text())
    report.unlink()
    return elapsed, peaks


def default_flags() -> list[str]:
    """The built-ins ``hookline train`` turns on by default (no framework is imported)."""
    from hookline.plugins import DEFAULT_FLAGS

    return [flag for flag, on in DEFAULT_FLAGS.items() if on]


def plugin_memory(folder: Path, epochs: int, rounds: int,
                  main_job_mb: list[float]) -> dict[str, float | None]:
    """Per default built-in: the main job's peak RSS minus the peak of ``hookline train`` with
    that plugin off (MiB, median over rounds; each round's main job is paired with that
    round's runs; None when the run without it failed)."""
    flags = default_flags()
    without: dict[str, list[float | None]] = {flag: [] for flag in flags}
    for index in range(rounds):
        shift = index % len(flags)
        for flag in flags[shift:] + flags[:shift]:
            run_dir = folder / f"without-{flag}-{index}"
            run_dir.mkdir()
            try:
                _, peaks = timed(["-m", "hookline", "train", f"epochs={epochs}",
                                  f"{flag}=false", "--no-plugins"], run_dir)
            except subprocess.CalledProcessError:
                without[flag].append(None)
                continue
            without[flag].append((peaks["peak_rss_bytes"] or 0) / MIB)
    result: dict[str, float | None] = {}
    for flag, values in without.items():
        pairs = [main - value for main, value in zip(main_job_mb, values, strict=True)
                 if value is not None]
        result[flag] = statistics.median(pairs) if pairs else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 epochs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--plugin-memory", action="store_true",
                        help="also measure each default plugin's memory (by elimination)")
    args = parser.parse_args()
    rounds, epochs = (1, 2) if args.quick else (args.rounds, 20)
    names = ("plain-pytorch", "hookline-train")
    times: dict[str, list[float]] = {name: [] for name in names}
    rss: dict[str, list[float]] = {name: [] for name in names}
    device: dict[str, list[float]] = {name: [] for name in names}
    accuracy: dict[str, float] = {}
    plugins: dict[str, float | None] | None = None
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "plain.py"
        script.write_text(PLAIN)
        for index in range(rounds):
            plain_dir, hookline_dir = Path(folder) / f"plain{index}", Path(folder) / f"hl{index}"
            hookline_dir.mkdir()
            commands = {
                "plain-pytorch": ([str(script), str(epochs), str(plain_dir)], Path(folder)),
                "hookline-train": (["-m", "hookline", "train", f"epochs={epochs}",
                                    "--no-plugins"], hookline_dir),
            }
            for name in names:
                seconds, peaks = timed(*commands[name])
                times[name].append(seconds)
                rss[name].append((peaks["peak_rss_bytes"] or 0) / MIB)
                if peaks["peak_device_bytes"] is not None:
                    device[name].append(peaks["peak_device_bytes"] / MIB)
        if args.plugin_memory:
            plugins = plugin_memory(Path(folder), epochs, rounds, rss["hookline-train"])
        last = rounds - 1
        with open(Path(folder) / f"plain{last}" / "results.csv") as file:
            accuracy["plain-pytorch"] = float(file.read().splitlines()[-1].split(",")[-1])
        summary = Path(folder) / f"hl{last}" / "runs" / "train" / "exp" / "summary.json"
        final = json.loads(summary.read_text())["final_metrics"]
        accuracy["hookline-train"] = final["val/accuracy"]
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["hookline-train"] / medians["plain-pytorch"]
    peak_rss = {name: statistics.median(values) for name, values in rss.items()}
    rss_ratio = peak_rss["hookline-train"] / peak_rss["plain-pytorch"]
    peak_device = {name: statistics.median(values) for name, values in device.items() if values}
    print(f"{rounds} rounds of {epochs} epochs, each a fresh process, interleaved")
    print(f"{'contender':<16} {'median s':>9} {'runs s':<40} {'val/accuracy':>12} "
          f"{'peak RSS MiB':>13}" + (f" {'peak CUDA MiB':>14}" if peak_device else ""))
    for name, values in times.items():
        runs = " ".join(f"{value:.2f}" for value in values)
        cuda = f" {peak_device[name]:>14.1f}" if name in peak_device else ""
        print(f"{name:<16} {medians[name]:>9.2f} {runs:<40} {accuracy[name]:>12.4f} "
              f"{peak_rss[name]:>13.1f}{cuda}")
    print(f"hookline train / plain script: {ratio:.2f}x (target <= 1.10x)")
    verdict = "met" if rss_ratio <= MEMORY_TARGET else "missed"
    print(f"hookline train / plain script, peak RSS: {rss_ratio:.3f}x "
          f"(target <= {MEMORY_TARGET:.2f}x: {verdict})")
    if plugins is not None:
        print("each default plugin's memory: the main job's peak RSS minus the peak with it off")
        for flag, mib in sorted(plugins.items(), key=lambda item: -(item[1] or 0.0)):
            shown = "failed without it" if mib is None else f"{mib:+.1f} MiB"
            print(f"  {flag:<16} {shown}")
    if args.json is not None:
        results = {
            "rounds": rounds, "epochs": epochs, "times": times, "medians": medians,
            "ratio": ratio, "accuracy": accuracy, "peak_rss_mb": peak_rss,
            "peak_rss_runs_mb": rss, "rss_ratio": rss_ratio,
            "rss_target": MEMORY_TARGET, "rss_met": rss_ratio <= MEMORY_TARGET,
        }
        if peak_device:
            results["peak_device_mb"] = peak_device
        if plugins is not None:
            results["plugin_memory_mb"] = plugins
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
