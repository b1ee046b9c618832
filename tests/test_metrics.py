"""Stateful metrics (update per batch, compute once, reset): F1 and AUC over a whole validation
set with uneven batches, against scikit-learn on the same set, where a mean of per-batch values
is biased.  torchmetrics on torch; a hand-written stateful metric on JAX."""

from __future__ import annotations

import numpy as np
import pytest

from hookline import PluginManager, Trainer, Validator
from hookline.backends.jax.testing import JaxBackend
from hookline.backends.tiny import blobs
from hookline.backends.torch.testing import TorchBackend

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def noisy_blobs(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes, so that F1 and AUC are well below 1 and differ between batches."""
    x, y = blobs(rows, seed)
    x = x + np.random.default_rng(seed + 100).normal(scale=2.5, size=x.shape).astype(np.float32)
    return x.astype(np.float32), y


def probabilities(outputs: np.ndarray) -> np.ndarray:
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_torchmetrics_f1_and_auc_over_uneven_batches_match_scikit_learn():
    torch = pytest.importorskip("torch")
    torchmetrics = pytest.importorskip("torchmetrics")
    backend = TorchBackend()
    task = backend.make_task()
    Trainer(task, manager=PluginManager()).fit(backend.batches(256, 32), epochs=2)
    task.metrics["f1"] = torchmetrics.classification.MulticlassF1Score(2, average="macro")
    task.metrics["auc"] = torchmetrics.classification.MulticlassAUROC(2, average="macro")
    x, y = noisy_blobs(70, seed=5)
    val = backend.split(x, y, size=32)  # batches of 32, 32 and 6
    metrics = Validator(task, manager=PluginManager()).validate(val)
    with torch.no_grad():
        outputs = task.model(torch.from_numpy(x)).numpy()
    predicted = outputs.argmax(axis=1)
    expected_f1 = sklearn_metrics.f1_score(y, predicted, average="macro")
    expected_auc = sklearn_metrics.roc_auc_score(y, probabilities(outputs)[:, 1])
    assert metrics["val/f1"] == pytest.approx(expected_f1, abs=1e-6)
    assert metrics["val/auc"] == pytest.approx(expected_auc, abs=1e-6)
    # what a sample-weighted mean of per-batch F1 would have said: not the same number
    per_batch = [sklearn_metrics.f1_score(y[i:i + 32], predicted[i:i + 32], average="macro")
                 for i in range(0, 70, 32)]
    biased = np.average(per_batch, weights=[32, 32, 6])
    assert abs(biased - expected_f1) > 1e-3
    # a second validation starts afresh (reset), and gives the same values
    again = Validator(task, manager=PluginManager()).validate(val)
    assert again["val/f1"] == metrics["val/f1"]


class BinaryF1:
    """A stateful F1 for two-class logits in JAX: counts on the device, one division at the
    end (any object with update, compute and reset will do)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.counts = None

    def update(self, outputs, targets) -> None:
        import jax.numpy as jnp

        predicted = jnp.argmax(outputs, axis=-1)
        batch = jnp.stack([
            jnp.sum((predicted == 1) & (targets == 1)),
            jnp.sum((predicted == 1) & (targets == 0)),
            jnp.sum((predicted == 0) & (targets == 1)),
        ])
        self.counts = batch if self.counts is None else self.counts + batch

    def compute(self):
        true_positive, false_positive, false_negative = self.counts
        return 2 * true_positive / (2 * true_positive + false_positive + false_negative)


def test_a_stateful_metric_object_on_jax_is_computed_over_the_whole_set():
    pytest.importorskip("jax")
    backend = JaxBackend()
    task = backend.make_task()
    Trainer(task, manager=PluginManager()).fit(backend.batches(256, 32), epochs=2)
    task.metrics["f1"] = BinaryF1()
    x, y = noisy_blobs(70, seed=5)
    metrics = Validator(task, manager=PluginManager()).validate(backend.split(x, y, size=32))
    predicted = np.asarray(task.model(x)).argmax(axis=1)
    assert metrics["val/f1"] == pytest.approx(sklearn_metrics.f1_score(y, predicted), abs=1e-6)
    assert "val/accuracy" in metrics  # the function metrics are still averaged as before


def test_a_running_mean_sums_every_values_per_sum_values_and_keeps_its_result(backend):
    """A running mean keeps at most the task's ``values_per_sum`` per-batch values that stay on
    their device (a JAX array; a torch tensor on a GPU, where a torch task keeps 16: a few
    hundred 0-d tensors alive for an epoch fragmented the heap), none of the numbers a torch
    task detaches on the CPU, and its result is the sample-weighted mean however the values
    were grouped."""
    from hookline.engine.metrics import Mean

    task = backend.make_task()
    task.setup("fit")
    mean = Mean(task)
    chunk = getattr(task, "values_per_sum", Mean.CHUNK)
    assert chunk <= 64
    some = [task.detach(task.training_step(batch)) for batch in backend.batches(64, 16)]
    losses = [some[index % len(some)] for index in range(3 * chunk + 5)]
    weights = [16 if index % 5 else 3 for index in range(len(losses))]
    kept = []
    for loss, weight in zip(losses, weights, strict=True):
        mean.add(loss, weight)
        kept.append(len(mean.values))
    assert max(kept) < chunk
    if backend.name == "torch":  # numbers on the CPU: summed as they come
        assert all(isinstance(loss, float) for loss in losses)
        assert max(kept) == 0
    expected = sum(task.to_float(a) * b for a, b in zip(losses, weights, strict=True)) / sum(
        weights)
    assert mean.result() == pytest.approx(expected, rel=1e-6)
