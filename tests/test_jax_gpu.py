"""JaxTask on a real GPU, where a device-to-host transfer is a real transfer: skipped where JAX
sees no GPU (CI has none).

On a GPU, ``jax.transfer_guard_device_to_host("disallow")`` turns every implicit transfer into
an error, so a whole run with the default plugins under it proves that nothing reads a device
value behind the task's back: the task's own reads (``to_float`` at log intervals and epoch
ends, checkpoints) are explicit ``jax.device_get`` calls.  Run on a GPU machine with
``python -m pytest tests/test_jax_gpu.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("flax")
if not any(device.platform == "gpu" for device in jax.devices()):
    pytest.skip("JAX sees no GPU here", allow_module_level=True)

from hookline import Callback, Model, PluginManager  # noqa: E402
from hookline.backends.jax.testing import JaxBackend  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JAX_DEMO = "hookline.backends.jax.demo:DigitsRecipe"


def train(tmp_path: Path, *plugins: object) -> Model:
    backend = JaxBackend()
    model = Model(backend.make_task(dropout=0.1), list(plugins), manager=PluginManager())
    model.train(
        backend.batches(512, 16), backend.batches(128, 32, seed=1), epochs=3,
        project=str(tmp_path), name="run", log_every_n_steps=8, progress=True,
    )
    return model


def test_a_run_with_the_default_plugins_makes_no_implicit_transfer(tmp_path):
    with jax.transfer_guard_device_to_host("disallow"):
        model = train(tmp_path)
    assert model.trainer is not None
    params = model.task.state_dict()["model"]["params"]
    assert {leaf.devices().pop().platform for leaf in jax.tree.leaves(params)} == {"gpu"}
    summary = json.loads((tmp_path / "train" / "run" / "summary.json").read_text())
    assert summary["ended"] == "finished"
    assert summary["final_metrics"]["val/accuracy"] > 0.9


class ReadsTheLoss(Callback):
    """Reads the loss on the host in every batch: what the guard must catch."""

    def on_train_batch_end(self, trainer) -> None:
        float(trainer.loss)


def test_the_guard_catches_a_plugin_that_reads_the_loss_per_batch(tmp_path):
    with jax.transfer_guard_device_to_host("disallow"), pytest.raises(
        Exception, match=r"Disallowed device-to-host transfer"
    ):
        train(tmp_path, ReadsTheLoss())


def test_the_jax_demo_trains_on_the_gpu_and_exports(tmp_path):
    def hookline(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookline", *words], capture_output=True, text=True,
            cwd=tmp_path, timeout=600,
        )

    trained = hookline("train", f"recipe={JAX_DEMO}", "epochs=10")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "runs" / "train" / "exp" / "summary.json").read_text())
    assert summary["final_metrics"]["val/accuracy"] >= 0.95
    exported = hookline("export", f"recipe={JAX_DEMO}")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "runs" / "train" / "exp" / "weights" / "best.stablehlo").exists()
