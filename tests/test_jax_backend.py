"""JaxTask: its steps against a hand-written Optax loop, the learning rate it exposes, its
checkpoint payloads, its StableHLO export, and what it refuses; the JAX demo on the command
line; and that hookline's import and ``--help`` load no JAX."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
nnx = pytest.importorskip("flax.nnx")

import jax.numpy as jnp  # noqa: E402

from hookline import CheckpointError, Exporter, PluginManager, Predictor, Trainer  # noqa: E402
from hookline.backends.arrays import ArrayBatches  # noqa: E402
from hookline.backends.jax import TaskSettingError, cross_entropy  # noqa: E402
from hookline.backends.jax.testing import JaxBackend  # noqa: E402
from hookline.backends.msgpack_payload import load_payload, save_payload  # noqa: E402
from hookline.backends.tiny import blobs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def reference_params(batches: list, epochs: int, accumulate: int, clip: float, lr: float):
    """The same MLP trained by a plain jitted loop written from Optax's documentation:
    gradients averaged over ``accumulate`` batches (and the epoch's remainder), clipped to
    ``clip`` total norm, then one SGD update."""
    task = JaxBackend().make_task()  # for its initial parameters and module structure only
    graphdef, params, rest = nnx.split(task.model, nnx.Param, ...)
    optimizer = optax.sgd(lr)
    state = optimizer.init(params)

    @jax.jit
    def gradients(params, inputs, targets):
        def loss(params):
            return cross_entropy(nnx.merge(graphdef, params, rest)(inputs), targets)

        return jax.grad(loss)(params)

    @jax.jit
    def update(params, state, grads):
        norm = optax.tree.norm(grads)
        grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, clip / (norm + 1e-6)), grads)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(epochs):
        pending = None
        for index, (inputs, targets) in enumerate(batches, start=1):
            grads = jax.tree.map(lambda g: g / accumulate, gradients(params, inputs, targets))
            pending = grads if pending is None else jax.tree.map(jnp.add, pending, grads)
            if index % accumulate == 0 or index == len(batches):
                params, state = update(params, state, pending)
                pending = None
    return nnx.to_pure_dict(params)


def test_training_matches_a_hand_written_optax_loop_with_accumulation_and_clipping():
    batches = JaxBackend().batches(80, 16)  # 5 batches: 2 steps of 2, then a step of 1
    task = JaxBackend().make_task(accumulate_grad_batches=2, grad_clip_norm=0.5)
    trainer = Trainer(task, manager=PluginManager())
    trainer.fit(batches, epochs=3)
    assert trainer.global_step == 9
    expected = reference_params(batches, 3, accumulate=2, clip=0.5, lr=0.1)
    got = task.state_dict()["model"]["params"]
    flat_expected = jax.tree_util.tree_leaves_with_path(expected)
    flat_got = dict(jax.tree_util.tree_leaves_with_path(got))
    for path, value in flat_expected:
        np.testing.assert_allclose(flat_got[path], value, rtol=1e-5, atol=1e-7)


def test_the_learning_rate_set_between_steps_is_the_one_the_update_uses():
    (inputs, targets), = JaxBackend().batches(16, 16)
    frozen = JaxBackend().make_task()
    frozen.setup("fit")
    before = frozen.state_dict()["model"]["params"]
    frozen.set_learning_rates([0.0])
    frozen.training_step((inputs, targets))
    frozen.optimizer_step()
    frozen.zero_grad()
    assert frozen.learning_rates() == [0.0]
    after = frozen.state_dict()["model"]["params"]
    assert all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(before), jax.tree.leaves(after), strict=True))
    moving = JaxBackend().make_task()
    moving.setup("fit")
    moving.training_step((inputs, targets))
    moving.optimizer_step()
    moving.zero_grad()
    moving.set_learning_rates([0.0])  # after the step: the update keeps the rate it was asked at
    moved = moving.state_dict()["model"]["params"]
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(before), jax.tree.leaves(moved), strict=True))
    # set after the step computed its gradients (and the update they make at the old rate),
    # before the optimizer step: the update is made at the new rate, as torch's would be
    late = JaxBackend().make_task()
    late.setup("fit")
    late.training_step((inputs, targets))
    late.set_learning_rates([0.0])
    late.optimizer_step()
    late.zero_grad()
    kept = late.state_dict()["model"]["params"]
    assert all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(before), jax.tree.leaves(kept), strict=True))


def test_a_plain_optimizer_trains_with_the_lr_plugin_and_a_schedule_of_it_is_refused():
    """An optimizer that keeps its rate to itself (no ``optax.inject_hyperparams``) trains
    under the LR plugin's defaults, with no ``lr`` and a warning; a schedule asked of it is
    refused before the first step, naming the way to expose the rate."""
    from hookline import UserError
    from hookline.plugins.lr_scheduler import LRScheduler

    task = JaxBackend().make_task()
    task.optimizer = optax.sgd(0.1)
    assert task.learning_rates() == []
    epochs = []
    trainer = Trainer(task, [LRScheduler()], manager=PluginManager())
    trainer.add_callback("on_fit_epoch_end", lambda metrics: epochs.append(dict(metrics)))
    with pytest.warns(UserWarning, match="exposes no learning rate: lr is not reported"):
        trainer.fit(JaxBackend().batches(64, 16), epochs=2)
    assert len(epochs) == 2
    assert not any("lr" in metrics for metrics in epochs)
    assert trainer.global_step == 8  # it trained
    with pytest.raises(TaskSettingError, match=r"optax.inject_hyperparams"):
        task.set_learning_rates([0.05])

    scheduled = JaxBackend().make_task()
    scheduled.optimizer = optax.sgd(0.1)
    trainer = Trainer(scheduled, [LRScheduler()], manager=PluginManager())
    with pytest.raises(UserError, match=r"schedule=cosine needs the task's learning rates.*"
                                        r"optax.inject_hyperparams"):
        trainer.fit(JaxBackend().batches(64, 16), epochs=2, schedule="cosine")
    assert trainer.global_step == 0


def test_validation_is_the_sample_weighted_mean_over_uneven_batches():
    x, y = blobs(70, seed=3)
    task = JaxBackend().make_task()
    Trainer(task, manager=PluginManager()).fit(JaxBackend().batches(64, 16), epochs=2)
    metrics = task.validation_step((x, y))  # one batch of all 70 rows
    from hookline import Validator

    result = Validator(task, manager=PluginManager()).validate(ArrayBatches(x, y, 32))
    assert result["val/loss"] == pytest.approx(float(metrics["loss"]), rel=1e-5)
    assert result["val/accuracy"] == pytest.approx(float(metrics["accuracy"]), rel=1e-6)


def test_prediction_and_a_stablehlo_export_agree_with_the_model(tmp_path):
    task = JaxBackend().make_task()
    Trainer(task, manager=PluginManager()).fit(JaxBackend().batches(64, 16), epochs=2)
    x, _ = blobs(10, seed=4)
    predictions = Predictor(task, manager=PluginManager()).predict(ArrayBatches(x, None, 4))
    outputs = np.concatenate([np.asarray(batch) for batch in predictions])
    expected = np.asarray(task.model(jnp.asarray(x)))
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)
    artifact = Exporter(task, manager=PluginManager()).export("stablehlo", tmp_path / "model")
    assert artifact == tmp_path / "model.stablehlo"
    restored = jax.export.deserialize(bytearray(artifact.read_bytes()))
    np.testing.assert_allclose(np.asarray(restored.call(x)), expected, rtol=1e-5, atol=1e-6)
    assert np.asarray(restored.call(x[:3])).shape == (3, 2)  # any batch size


def test_payloads_round_trip_and_refuse_anything_but_data():
    payload = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, (2.5, None)],
               "scalar": np.uint32(7), 3: "integer keys"}
    loaded = load_payload(save_payload(payload), "mem")
    np.testing.assert_array_equal(loaded["a"], payload["a"])
    assert loaded["a"].dtype == np.float32
    assert loaded["scalar"].shape == ()
    assert loaded["scalar"] == 7
    assert loaded["b"] == [1, [2.5, None]]
    assert loaded[3] == "integer keys"
    with pytest.raises(TypeError, match=r"checkpoint\.x: a object cannot be stored"):
        save_payload({"x": object()})
    # the format is framework-neutral: a JAX array reaches it only through the task's explicit
    # transfer (JaxTask.save_checkpoint), never by an implicit conversion
    key = jax.random.key_data(jax.random.key(1))
    with pytest.raises(TypeError, match=r"checkpoint\.key: a \w+ cannot be stored"):
        save_payload({"key": key})
    task = JaxBackend().make_task()
    restored = task.load_checkpoint(task.save_checkpoint({"key": key}), "mem")
    np.testing.assert_array_equal(restored["key"], np.asarray(key))
    foreign = msgpack.packb({"x": msgpack.ExtType(2, b"anything")})
    with pytest.raises(CheckpointError, match=r"'evil\.pt' holds no readable MessagePack payload"):
        load_payload(foreign, "evil.pt")
    objects = msgpack.packb(
        {"x": msgpack.ExtType(1, msgpack.packb(["object", [1]]) + b"\0" * 8)}
    )
    with pytest.raises(CheckpointError, match="refused"):
        load_payload(objects, "evil.pt")


def test_a_checkpoint_that_does_not_fit_the_model_names_the_array(tmp_path):
    saved = JaxBackend().make_task().state_dict()
    smaller = JaxBackend().make_task(hidden=8)
    with pytest.raises(ValueError, match=r"params\['hidden'\]\['bias'\]: saved shape \(16,\)"):
        smaller.load_state_dict(saved)


def test_more_than_one_process_without_the_runtime_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        TaskSettingError,
        match=r"should span 2 processes, but JAX's distributed runtime is not running: call "
        r"hookline\.backends\.jax\.initialize_distributed\(\) before the model is built",
    ):
        JaxBackend().make_task()


def hookline_command(*words: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookline", *words], capture_output=True, text=True, cwd=cwd,
        env={**os.environ, **env}, timeout=600,
    )


@pytest.mark.slow
def test_the_jax_demo_trains_validates_predicts_and_exports_on_the_command_line(tmp_path):
    trained = hookline_command("train", "recipe=digits-jax", "epochs=6", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    run = tmp_path / "runs" / "train" / "exp"
    assert {"args.yaml", "results.csv", "metrics.jsonl", "results.png", "summary.json",
            "weights"} <= {path.name for path in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_metrics"]["val/accuracy"] >= 0.9
    validated = hookline_command("val", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert validated.stderr == ""  # no warning: the weights alone are what val needs
    assert validated.stdout.startswith(
        "weights: runs/train/exp/weights/best.pt (the latest run's best; weights=PATH to choose)"
    )
    with open(run / "results.csv", newline="") as file:
        at_best = next(row for row in csv.DictReader(file)
                       if int(row["epoch"]) == summary["best"]["epoch"])
    accuracy = float(validated.stdout.split("val/accuracy")[1].split()[0])
    assert accuracy == pytest.approx(float(at_best["val/accuracy"]), abs=1e-4)
    predicted = hookline_command("predict", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    rows = (tmp_path / "runs" / "predict" / "exp" / "predictions.csv").read_text().splitlines()
    assert rows[0] == "index,class,confidence"
    assert len(rows) == 1 + 359  # a row per sample of the validation split
    exported = hookline_command("export", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert (run / "weights" / "best.stablehlo").exists()


def test_a_jax_run_with_several_processes_but_no_launcher_is_one_line_and_exit_2(tmp_path):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MASTER_ADDR", "MASTER_PORT")}
    result = subprocess.run(
        [sys.executable, "-m", "hookline", "train", "recipe=digits-jax"], capture_output=True,
        text=True, cwd=tmp_path, env={**environment, "WORLD_SIZE": "2"}, timeout=600,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "hookline train: error: WORLD_SIZE=2 but MASTER_ADDR is not set: launch the processes "
        "with torchrun (or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in each)"
    ]
    assert not (tmp_path / "runs").exists()


def test_importing_hookline_and_its_help_load_no_jax():
    code = (
        "import sys, hookline, hookline.cli\n"
        "try:\n    hookline.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'flax', 'optax', "
        "'torch'}), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stderr.strip() == "[]"
    assert "train" in result.stdout


def test_the_jax_demo_needs_no_torch(tmp_path):
    code = (
        "import sys, importlib.abc\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.partition('.')[0] == 'torch':\n"
        "            raise ImportError('torch is not installed here')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from hookline.cli import main\n"
        "code = main(['train', 'recipe=digits-jax', 'epochs=1', 'progress=False'])\n"
        "print(code, sorted(m for m in sys.modules if m.partition('.')[0] == 'torch'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"
    assert (tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt").exists()


def test_a_copied_task_compiles_its_own_functions_and_outlives_the_original():
    """A copy does not share the compiled functions, which trace (and weakly hold) the task
    they were compiled for: it trains on after the original is gone."""
    import copy
    import gc

    task = JaxBackend().make_task()
    Trainer(task, manager=PluginManager()).fit(JaxBackend().batches(64, 16), epochs=1)
    copied = copy.deepcopy(task)
    del task
    gc.collect()
    before = copied.state_dict()["model"]["params"]
    copied.accumulate_grad_batches = 2  # new variants of the step: compiled for the copy
    Trainer(copied, manager=PluginManager()).fit(JaxBackend().batches(64, 16), epochs=1)
    after = copied.state_dict()["model"]["params"]
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(before), jax.tree.leaves(after), strict=True))
