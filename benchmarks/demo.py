"""The main job against plain PyTorch: ``hookline train`` with its defaults, and the same work
written as a plain script, each as a fresh process, interleaved over several rounds.

    python benchmarks/demo.py                 # 5 rounds of the 20-epoch demo (about 2 minutes)
    python benchmarks/demo.py --quick         # 1 round of 2 epochs, for the test suite
    python benchmarks/demo.py --json FILE     # also write the numbers as JSON

The plain script does what the demo does: the digits data split the same way, the same MLP,
AdamW, batches of 32 shuffled by a seeded generator, validation every epoch, the last and the
best weights saved, a CSV row per epoch.  Wall times include starting Python and importing
torch, as a user sees them.  Medians over rounds, and the ratio of the medians.
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


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 2 epochs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    rounds, epochs = (1, 2) if args.quick else (args.rounds, 20)
    times: dict[str, list[float]] = {"plain-pytorch": [], "hookline-train": []}
    accuracy: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "plain.py"
        script.write_text(PLAIN)
        for index in range(rounds):
            plain_dir, hookline_dir = Path(folder) / f"plain{index}", Path(folder) / f"hl{index}"
            hookline_dir.mkdir()
            times["plain-pytorch"].append(timed(
                [sys.executable, str(script), str(epochs), str(plain_dir)], Path(folder)
            ))
            times["hookline-train"].append(timed(
                [sys.executable, "-m", "hookline", "train", f"epochs={epochs}", "--no-plugins"],
                hookline_dir,
            ))
        last = rounds - 1
        with open(Path(folder) / f"plain{last}" / "results.csv") as file:
            accuracy["plain-pytorch"] = float(file.read().splitlines()[-1].split(",")[-1])
        summary = Path(folder) / f"hl{last}" / "runs" / "train" / "exp" / "summary.json"
        final = json.loads(summary.read_text())["final_metrics"]
        accuracy["hookline-train"] = final["val/accuracy"]
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["hookline-train"] / medians["plain-pytorch"]
    print(f"{rounds} rounds of {epochs} epochs, each a fresh process, interleaved")
    print(f"{'contender':<16} {'median s':>9} {'runs s':<40} val/accuracy")
    for name, values in times.items():
        runs = " ".join(f"{value:.2f}" for value in values)
        print(f"{name:<16} {medians[name]:>9.2f} {runs:<40} {accuracy[name]:.4f}")
    print(f"hookline train / plain script: {ratio:.2f}x (target <= 1.10x)")
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"rounds": rounds, "epochs": epochs, "times": times, "medians": medians,
             "ratio": ratio, "accuracy": accuracy}, indent=2,
        ))


if __name__ == "__main__":
    main()
