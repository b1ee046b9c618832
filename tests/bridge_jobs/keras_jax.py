"""Runs the Keras bridge scenarios (keras_scenarios.py) on Keras's JAX backend, one process:
``python keras_jax.py OUT_DIR [SCENARIO ...]`` writes ``OUT_DIR/results.json``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
# one thread: the machine's cores are shared
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras
import keras_scenarios

if __name__ == "__main__":
    out = Path(sys.argv[1])
    names = sys.argv[2:] or list(keras_scenarios.SCENARIOS)
    results = {"backend": keras.backend.backend()}
    for name in names:
        results[name] = keras_scenarios.SCENARIOS[name](out / name)
    (out / "results.json").write_text(json.dumps(results, default=str))
