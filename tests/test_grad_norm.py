"""Gradients through the Task protocol (``task.gradients()``, ``task.gradient_norm()``) and the
built-in ``grad_norm`` plugin: checked against ``torch.nn.utils.clip_grad_norm_`` and
``optax.global_norm``, with gradient accumulation and (on torch) mixed precision with a loss
scaler, and reported as ``train/grad_norm`` on both backends."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

import hookline
from hookline import PluginManager, Trainer
from hookline.backends.tiny import blobs


class GradientReader(hookline.Callback):
    """What a gradient plugin written from the guide reads at each optimizer step."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.gradients: list[dict[str, np.ndarray]] = []

    def on_before_optimizer_step(self, trainer) -> None:
        task = trainer.task
        self.norms.append(task.to_float(task.gradient_norm()))
        self.gradients.append(
            {name: np.asarray(value.tolist(), np.float32)
             for name, value in task.gradients().items()}
        )


def test_torch_gradients_are_accumulated_unscaled_and_their_norm_is_clip_grad_norms():
    torch = pytest.importorskip("torch")
    from hookline.backends.torch import TorchTask

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    x, y = blobs(64)
    batches = [(torch.tensor(x[i:i + 16]), torch.tensor(y[i:i + 16]).long())
               for i in range(0, 64, 16)]
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # the loss is scaled by 1024
    task = TorchTask(
        model(), loss=torch.nn.functional.cross_entropy,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1), accumulate_grad_batches=2,
        precision="bf16-mixed", grad_scaler=scaler, device="cpu",
    )
    reader = GradientReader()
    Trainer(task, [reader], manager=PluginManager()).fit(batches, epochs=1)
    assert len(reader.norms) == 2

    # the same steps by hand: bf16 autocast, each loss halved, no scaler
    reference = model()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for step, norm in enumerate(reader.norms):
        for inputs, targets in batches[2 * step: 2 * step + 2]:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = torch.nn.functional.cross_entropy(reference(inputs), targets)
            (loss / 2).backward()
        grads = {name: p.grad.clone() for name, p in reference.named_parameters()}
        expected = torch.nn.utils.clip_grad_norm_(reference.parameters(), float("inf"))
        assert norm == pytest.approx(float(expected), rel=1e-5)
        for name, value in grads.items():
            np.testing.assert_allclose(reader.gradients[step][name], value.numpy(),
                                       rtol=1e-5, atol=1e-7)
        optimizer.step()
        optimizer.zero_grad()


def test_jax_gradients_are_the_compiled_steps_and_their_norm_is_optax_global_norm():
    jax = pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    from flax import nnx

    from hookline.backends.jax import cross_entropy
    from hookline.backends.jax.testing import JaxBackend

    backend = JaxBackend()
    batches = backend.batches(64, 16)
    task = backend.make_task(accumulate_grad_batches=2)
    graphdef, params, rest = nnx.split(backend.make_task().model, nnx.Param, ...)
    reader = GradientReader()
    Trainer(task, [reader], manager=PluginManager()).fit(batches, epochs=1)
    assert len(reader.norms) == 2

    # the first step by hand: the mean of two batches' gradients at the initial parameters
    def loss(params, inputs, targets):
        return cross_entropy(nnx.merge(graphdef, params, rest)(inputs), targets)

    grads = [jax.grad(loss)(params, *batch) for batch in batches[:2]]
    mean = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
    # optax.tree.norm: optax.global_norm's successor
    assert reader.norms[0] == pytest.approx(float(optax.tree.norm(mean)), rel=1e-5)
    flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(mean))[0]
    expected = {jax.tree_util.keystr(path): np.asarray(value) for path, value in flat}
    assert set(reader.gradients[0]) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(reader.gradients[0][name], value, rtol=1e-5, atol=1e-7)
    # the later norms came out of the compiled step itself, and still match the gradients
    assert reader.norms[1] == pytest.approx(
        math.sqrt(sum(float((g ** 2).sum()) for g in reader.gradients[1].values())), rel=1e-5
    )


def test_the_grad_norm_plugin_reports_interval_and_epoch_means(backend, tmp_path):
    reader = GradientReader()
    model = hookline.Model(backend.make_task(), [reader], manager=PluginManager())
    model.train(backend.batches(128, 16), epochs=2, save_dir=tmp_path, grad_norm=True,
                log_every_n_steps=4, verbose=False, progress=False, plots=False,
                checkpoint=False, early_stopping=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    logged = [r["metrics"]["train/grad_norm"] for r in records
              if r["phase"] == "train" and "train/grad_norm" in r["metrics"]]
    # 8 steps an epoch, an interval of 4: the mean of each interval's norms
    expected = [sum(reader.norms[i:i + 4]) / 4 for i in range(0, 16, 4)]
    assert logged == pytest.approx(expected, rel=1e-5)
    with open(tmp_path / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert [float(row["train/grad_norm"]) for row in rows] == pytest.approx(
        [sum(reader.norms[:8]) / 8, sum(reader.norms[8:]) / 8], rel=1e-5
    )
