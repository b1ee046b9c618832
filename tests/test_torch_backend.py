"""TorchTask: real training steps, accumulation, clipping, precision, state and export."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import hookline  # noqa: E402
from hookline import Exporter, PluginManager, Trainer, Validator  # noqa: E402
from hookline.backends.torch import ExportError, TorchTask, accuracy, select_device  # noqa: E402


def blobs(rows: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two separable classes in 4 dimensions."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (rows,), generator=generator)
    inputs = torch.randn(rows, 4, generator=generator) + labels[:, None] * 3.0
    return inputs, labels


def batches(rows: int = 256, size: int = 32, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    x, y = blobs(rows, seed)
    return [(x[i : i + size], y[i : i + size]) for i in range(0, rows, size)]


def make_task(**options: object) -> TorchTask:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = options.pop("optimizer", lambda p: torch.optim.SGD(p, lr=0.1))
    return TorchTask(
        model, nn.functional.cross_entropy, optimizer, metrics={"accuracy": accuracy}, **options
    )


def load_torch_checkpoint(path: Path) -> dict:
    """The checkpoint at ``path``, its payload read by a torch task."""
    return hookline.load_checkpoint(path, make_task())


class ShapeShiftingLoss:
    """Cross-entropy that returns shape () and (1,) in turn, remembering each value."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(outputs, targets)
        self.seen.append((loss.item(), len(targets)))
        return loss if len(self.seen) % 2 else loss.reshape(1)


def test_train_loss_is_the_sample_weighted_mean_of_every_batch_loss():
    loss = ShapeShiftingLoss()
    task = make_task()
    task.loss = loss
    logged: list[float] = []
    manager = PluginManager()

    def on_log(metrics, phase):
        if phase == "train":
            logged.append(metrics["train/loss"])

    manager.add_callback("on_log", on_log)
    data = batches(rows=70, size=32)  # 32, 32, 6 samples
    metrics = Trainer(task, manager=manager).fit(data, epochs=2, log_every_n_steps=2)

    def mean(seen: list[tuple[float, int]]) -> float:
        return sum(value * count for value, count in seen) / sum(count for _, count in seen)

    assert metrics["train/loss"] == pytest.approx(mean(loss.seen[3:]), rel=1e-6)
    # every 2 steps, the steps since the last log in the same epoch: 1-2, then 4, then 5-6
    assert logged == pytest.approx(
        [mean(loss.seen[0:2]), mean(loss.seen[3:4]), mean(loss.seen[4:6])], rel=1e-6
    )


def test_training_on_tuples_learns_the_task():
    task = make_task()
    trainer = Trainer(task, manager=PluginManager())
    metrics = trainer.fit(batches(), batches(seed=1), epochs=5)
    assert metrics["val/accuracy"] > 0.95
    assert metrics["train/loss"] < 0.2
    assert trainer.global_step == 40


def test_dict_batches_and_validation_metrics_are_sample_weighted():
    task = make_task()
    x, y = blobs(100)
    uneven = [{"inputs": x[:70], "targets": y[:70]}, {"inputs": x[70:], "targets": y[70:]}]
    task.setup("validate")
    metrics = Validator(task, manager=PluginManager()).validate(uneven)
    with torch.no_grad():
        outputs = task.model(x)
    expected_loss = float(nn.functional.cross_entropy(outputs, y))
    assert metrics["val/loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["val/accuracy"] == pytest.approx(float(accuracy(outputs, y)), rel=1e-6)


def test_gradient_accumulation_matches_one_step_on_the_whole_batch():
    x, y = blobs(16)
    whole, accumulated = make_task(), make_task(accumulate_grad_batches=2)
    for task in (whole, accumulated):
        task.setup("fit")
    Trainer(whole, manager=PluginManager()).fit([(x, y)], epochs=1)
    Trainer(accumulated, manager=PluginManager()).fit([(x[:8], y[:8]), (x[8:], y[8:])], epochs=1)
    for a, b in zip(whole.model.parameters(), accumulated.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_gradient_clipping_bounds_the_update():
    x, y = blobs(32)
    task = make_task(grad_clip_norm=0.01)
    before = copy.deepcopy(task.model.state_dict())
    Trainer(task, manager=PluginManager()).fit([(x * 100, y)], epochs=1)
    change = torch.sqrt(
        sum(((task.model.state_dict()[k] - v) ** 2).sum() for k, v in before.items())
    )
    assert float(change) <= 0.1 * 0.01 + 1e-6  # SGD: |step| = lr * |clipped gradient|


def test_bf16_autocast_trains_on_cpu_and_fp16_needs_cuda():
    task = make_task(precision="bf16-mixed")
    metrics = Trainer(task, manager=PluginManager()).fit(batches(), batches(seed=1), epochs=3)
    assert metrics["val/accuracy"] > 0.9
    with pytest.raises(ValueError, match="'16-mixed' needs a CUDA device"):
        make_task(precision="16-mixed", device="cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        make_task(precision="8")


def test_device_selection_degrades_to_cpu_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert select_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="CUDA is not available"):
        select_device("cuda")


def test_state_dict_round_trip_restores_model_and_optimizer():
    task = make_task(optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    Trainer(task, manager=PluginManager()).fit(batches(), epochs=1)
    state = copy.deepcopy(task.state_dict())
    restored = make_task(optimizer=lambda p: torch.optim.Adam(p, lr=0.01))
    restored.load_state_dict(state)
    for a, b in zip(task.model.parameters(), restored.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert restored.optimizer is not None
    assert restored.optimizer.state_dict()["state"].keys() == state["optimizer"]["state"].keys()


def test_a_task_without_optimizer_cannot_train():
    task = TorchTask(nn.Linear(4, 2), nn.functional.cross_entropy)
    with pytest.raises(ValueError, match="has no optimizer"):
        Trainer(task, manager=PluginManager()).fit(batches(), epochs=1)


def load_back(format_name: str, path, inputs: torch.Tensor) -> torch.Tensor:
    if format_name == "torchscript":
        return torch.jit.load(str(path))(inputs)
    if format_name == "pt2":
        return torch.export.load(str(path)).module()(inputs)
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0])


@pytest.mark.parametrize("format_name", ["torchscript", "pt2", "onnx"])
def test_export_writes_an_artifact_that_reproduces_the_model(format_name, tmp_path):
    if format_name == "onnx":
        pytest.importorskip("onnxscript")
    task = make_task()
    Trainer(task, manager=PluginManager()).fit(batches(), epochs=1)
    artifact = Exporter(task, manager=PluginManager()).export(format_name, tmp_path / "model")
    assert artifact.exists()
    fresh = blobs(7, seed=3)[0]  # another batch size than the example used for tracing
    with torch.no_grad():
        torch.testing.assert_close(
            load_back(format_name, artifact, fresh), task.model.eval()(fresh), rtol=1e-4,
            atol=1e-5,
        )


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_an_export_that_does_not_reproduce_the_model_is_refused(tmp_path):
    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.rand_like(x)

    task = TorchTask(Noisy(), nn.functional.mse_loss, example_input=torch.zeros(2, 4))
    with pytest.raises(ExportError, match="does not reproduce the model"):
        Exporter(task, manager=PluginManager()).export("torchscript", tmp_path / "noisy")
