"""The CUDA and NVML paths on a real GPU: skipped where there is none (CI has none).

Run on a GPU machine with ``python -m pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device here", allow_module_level=True)

from hookline import Model, PluginManager, Trainer  # noqa: E402
from hookline.backends.torch import TaskSettingError, select_device  # noqa: E402
from hookline.plugins.resources import ResourceMonitor  # noqa: E402
from tests.test_loggers import LogRecorder  # noqa: E402
from tests.test_torch_backend import batches, make_task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_devices_are_chosen_and_refused_by_name():
    assert select_device("auto").type == "cuda"
    assert select_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(TaskSettingError, match="this machine has"):
        select_device(f"cuda:{torch.cuda.device_count()}")


def test_a_loss_on_the_gpu_stays_there_and_one_on_the_cpu_is_read_at_once():
    task = make_task(device="cuda")
    loss = torch.ones((), device="cuda", requires_grad=True) * 2
    kept = task.detach(loss)
    assert isinstance(kept, torch.Tensor)
    assert kept.is_cuda
    assert not kept.requires_grad
    assert task.detach(torch.ones((), requires_grad=True) * 2) == 2.0  # a CPU value: a number


def grad_norms(init_scale: float) -> tuple[list[float], float]:
    """The gradient norm seen in the pre-step hook at each step of a 16-mixed run."""
    norms: list[float] = []
    scaler = torch.amp.GradScaler("cuda", init_scale=init_scale)
    task = make_task(device="cuda", precision="16-mixed", grad_scaler=scaler)
    trainer = Trainer(task, manager=PluginManager())
    trainer.add_callback("on_before_optimizer_step", lambda trainer: norms.append(float(
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in task.model.parameters()]))
    )))
    trainer.fit(batches(64, 16), epochs=1)
    return norms, scaler.get_scale()


def test_under_16_mixed_the_pre_step_hook_sees_unscaled_gradients():
    scaled, scale = grad_norms(2.0**16)
    plain, _ = grad_norms(1.0)  # a loss scale of 1: the gradients as they are
    assert scale >= 2.0**15  # the loss was really scaled, by tens of thousands
    assert scaled == pytest.approx(plain, rel=1e-2)


def test_the_resource_monitor_reads_the_gpu_through_nvml_and_torch():
    recorder = LogRecorder()
    task = make_task(device="cuda")
    Trainer(task, [ResourceMonitor(0.02), recorder], manager=PluginManager()).fit(
        batches(256, 16), epochs=2, log_every_n_steps=4
    )
    metrics = recorder.of("epoch")[-1]["metrics"]
    assert 0 <= metrics["resources/gpu0_util_percent_mean"] <= 100
    assert metrics["resources/gpu0_memory_mb_max"] > 0
    assert metrics["resources/cuda0_allocated_mb_max"] > 0


def test_the_demo_trains_validates_and_exports_on_the_gpu(tmp_path):
    def hookline(*words: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookline", *words, "--no-plugins"], cwd=tmp_path,
            capture_output=True, text=True, timeout=300,
        )

    trained = hookline("train", "epochs=3", "device=cuda", "precision=bf16-mixed", "plots=False")
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "runs" / "train" / "exp" / "summary.json").read_text())
    assert summary["final_metrics"]["val/accuracy"] > 0.9
    assert summary["final_metrics"]["resources/gpu0_memory_mb_max"] > 0
    validated = hookline("val", "device=cuda")
    assert validated.returncode == 0, validated.stderr
    exported = hookline("export", "format=pt2")
    assert exported.returncode == 0, exported.stderr


def test_a_checkpoint_written_on_the_gpu_resumes_on_the_gpu(tmp_path):
    model = Model(make_task(device="cuda"), manager=PluginManager())
    model.train(batches(64, 16), epochs=2, project=str(tmp_path), verbose=False,
                plots=False, progress=False)
    last = tmp_path / "train" / "exp" / "weights" / "last.pt"
    resumed = Model(make_task(device="cuda"), manager=PluginManager())
    resumed.train(batches(64, 16), epochs=3, project=str(tmp_path), verbose=False,
                  plots=False, progress=False, resume=str(last))
    assert resumed.trainer is not None
    assert resumed.trainer.global_step == 12  # 2 epochs restored, 1 more of 4 steps
    assert next(resumed.task.model.parameters()).device.type == "cuda"
