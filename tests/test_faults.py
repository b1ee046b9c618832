"""A failing plugin follows its policy: ``disable`` drops it with one line and the run goes
on; ``raise`` ends the run cleanly.  Nothing already written is lost either way."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest

import hookline
from hookline import Callback, Model, PluginDisabledWarning, PluginManager, Trainer
from hookline.manager.faults import NEVER_GUARDED
from hookline.testing import HookRecorder, LinearRegressionTask
from tests.conftest import regression_batches

EPOCHS = 3


class ChaosError(RuntimeError):
    """What the chaos plugin raises."""


def chaos_plugin(hook: str, call: int, policy: str, hooks: list[str]) -> Callback:
    """A plugin implementing ``hooks`` that raises in the ``call``-th call of ``hook``."""
    calls = {"n": 0}

    def make(name: str):
        def method(self) -> None:
            if name == hook:
                calls["n"] += 1
                if calls["n"] == call:
                    raise ChaosError(f"chaos in {name}")
        return method

    namespace = {name: make(name) for name in hooks}
    namespace["error_policy"] = policy
    return type("Chaos", (Callback,), namespace)()


class Records(Callback):
    """Every on_log record, heard after the metric files (registered before them)."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def on_log(self, metrics, step, epoch, phase) -> None:
        self.records.append({"phase": phase, "epoch": epoch + 1, "step": step})


def train(project: Path, name: str, *plugins: object) -> None:
    """Train the toy task with the default built-ins into ``project/train/name``."""
    Model(LinearRegressionTask(3), list(plugins), manager=PluginManager()).train(
        regression_batches(32, 8), regression_batches(16, 8, seed=1), epochs=EPOCHS,
        project=str(project), name=name, plots=False, verbose=False, log_every_n_steps=2,
        save_every_n_steps=5,
    )


def hooks_a_run_fires(tmp_path: Path) -> dict[str, int]:
    """Each hook a healthy run fires during training (not the settings hooks), with its count."""
    manager = PluginManager()
    recorder = HookRecorder(manager, listen_all=True)
    model = Model(LinearRegressionTask(3), manager=manager)
    model.train(
        regression_batches(32, 8), regression_batches(16, 8, seed=1), epochs=EPOCHS,
        project=str(tmp_path), name="dry", plots=False, verbose=False, log_every_n_steps=2,
        save_every_n_steps=5,
    )
    recorder.close()
    counts: dict[str, int] = {}
    for name in recorder.names:
        if name not in NEVER_GUARDED:
            counts[name] = counts.get(name, 0) + 1
    return counts


def test_a_plugin_failing_anywhere_follows_its_policy_and_loses_nothing(tmp_path):
    fired = hooks_a_run_fires(tmp_path)
    targets = sorted(fired)
    assert {"on_train_batch_end", "on_log", "on_save_checkpoint", "teardown"} <= set(targets)
    outcomes = {"disable": 0, "raise": 0}
    for seed in range(60):
        rng = random.Random(seed)
        policy = rng.choice(["disable", "raise"])
        # a failure while tearing down comes after the summary under "raise": only its
        # exception can report it (the other plugins are still torn down)
        hook = rng.choice([t for t in targets if policy == "disable" or t != "teardown"])
        call = rng.randint(1, fired[hook])
        save_dir = tmp_path / "train" / f"trial{seed}"
        records = Records()
        chaos = chaos_plugin(hook, call, policy, targets)
        trial = f"seed {seed}: {policy} in {hook} (call {call})"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if policy == "disable":
                train(tmp_path, save_dir.name, records, chaos)
            else:
                with pytest.raises(ChaosError, match=f"chaos in {hook}"):
                    train(tmp_path, save_dir.name, records, chaos)
        outcomes[policy] += 1
        summary = json.loads((save_dir / "summary.json").read_text())
        disabled = [w for w in caught if issubclass(w.category, PluginDisabledWarning)]
        if policy == "disable":
            assert summary["ended"] == "finished", trial
            assert summary["epochs"] == EPOCHS, trial
            assert summary["plugin_failures"] == [
                {"plugin": "Chaos", "hook": hook, "error": f"ChaosError: chaos in {hook}",
                 "distribution": None}
            ], trial
            assert len(disabled) == 1, trial
        else:
            assert summary["ended"] == (
                f"failed: plugin 'Chaos' failed in {hook}: ChaosError: chaos in {hook}"
            ), trial
            assert summary["failure"] == {
                "plugin": "Chaos", "distribution": None, "hook": hook,
                "error": f"ChaosError: chaos in {hook}", "traceback": "error.log",
            }, trial
            assert f"ChaosError: chaos in {hook}" in (save_dir / "error.log").read_text()
            assert disabled == [], trial
        # nothing lost: every record the run logged is in the files, and a checkpoint loads
        # (a run that fails in set-up logged nothing and has no metric files yet)
        epochs_logged = [r for r in records.records if r["phase"] == "epoch"]
        results, jsonl = save_dir / "results.csv", save_dir / "metrics.jsonl"
        with open(results if results.exists() else "/dev/null", newline="") as file:
            rows = list(csv.DictReader(file))
        assert [int(row["epoch"]) for row in rows][: len(epochs_logged)] == [
            r["epoch"] for r in epochs_logged
        ], trial
        lines = jsonl.read_text().splitlines() if jsonl.exists() else []
        logged = [{k: json.loads(line)[k] for k in ("phase", "epoch", "step")} for line in lines]
        assert logged[: len(records.records)] == records.records, trial
        last = save_dir / "weights" / "last.pt"
        if last.exists():
            hookline.load_checkpoint(last, LinearRegressionTask(3))
        assert not list((save_dir / "weights").glob(".*.tmp")), trial
    assert min(outcomes.values()) >= 20


def test_the_policy_can_be_set_for_all_plugins_or_one(tmp_path, task):
    class Fragile(Callback):
        def on_train_epoch_end(self):
            raise ChaosError("fragile")

    with pytest.raises(ChaosError):  # raise is the default for a plugin that declares none
        Trainer(task, [Fragile()], manager=PluginManager()).fit(regression_batches(8, 4))
    for setting in ("disable", "Fragile:disable", "raise,Fragile:disable"):
        manager = PluginManager()
        with pytest.warns(PluginDisabledWarning, match="plugin 'Fragile' failed in "
                                                       "on_train_epoch_end"):
            Trainer(task, [Fragile()], manager=manager).fit(
                regression_batches(8, 4), epochs=2, plugin_errors=setting
            )
        assert [f.plugin for f in manager.failures] == ["Fragile"]
        assert manager.get_plugin("Fragile") is None


def test_a_bad_policy_setting_names_the_setting(task):
    with pytest.raises(hookline.SettingsError, match="setting 'plugin_errors': 'ignore' is not"):
        Trainer(task, manager=PluginManager()).fit(regression_batches(8, 4),
                                                   plugin_errors="ignore")


def test_raise_plugins_are_called_unwrapped_and_disable_plugins_are_guarded(manager):
    class Observer(Callback):
        error_policy = "disable"

        def on_train_end(self):
            pass

    class Control(Callback):
        def on_train_end(self):
            pass

    observer, control = Observer(), Control()
    manager.register(observer)
    manager.register(control)
    functions = {impl.plugin_name: impl.function for impl in
                 manager.hook.on_train_end.get_hookimpls()}
    assert functions["Control"] == control.on_train_end  # nothing in between: no cost
    assert functions["Observer"].__wrapped__ == observer.on_train_end
    assert (manager.error_policy("Observer"), manager.error_policy("Control")) == (
        "disable", "raise"
    )
    manager.configure({"plugin_errors": "Observer:raise"})
    assert manager.error_policy("Observer") == "raise"
    assert [impl.function for impl in manager.hook.on_train_end.get_hookimpls()
            if impl.plugin_name == "Observer"] == [observer.on_train_end]


def test_every_plugin_is_torn_down_even_when_one_teardown_raises(task, manager):
    closed = []

    class Closes(Callback):
        def teardown(self):
            closed.append(True)

    class Breaks(Callback):
        def teardown(self):
            raise ChaosError("teardown broke")

    with pytest.raises(ChaosError, match="teardown broke"):
        Trainer(task, [Closes(), Breaks()], manager=manager).fit(regression_batches(8, 4))
    assert closed == [True]


# -- a real tracking server that goes away ---------------------------------------------------


#: What uvicorn, which serves ``mlflow server``, prints once it listens: the port it took.
LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` on 127.0.0.1 (the full ``mlflow`` package brings it), on a port
    it takes itself (``--port 0``): a free port chosen here would stay unbound through the
    server's start-up, which a busy machine stretches to half a minute, for any other process
    to take (and a test to talk to whatever listens there)."""
    if shutil.which("mlflow") is None or importlib.util.find_spec("flask") is None:
        pytest.skip("the mlflow server needs the full mlflow package (extra: tracking-server)")
    store = tmp_path / "server"
    store.mkdir()
    log = store / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            ["mlflow", "server", "--host", "127.0.0.1", "--port", "0", "--workers", "1",
             "--backend-store-uri", f"sqlite:///{store / 'db.sqlite'}",
             "--default-artifact-root", str(store / "artifacts")],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = ""  # known once the server says where it listens
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and server.poll() is None:
        listening = LISTENING.search(log.read_bytes())
        if listening:
            url = f"http://127.0.0.1:{int(listening.group(1))}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                pass
        time.sleep(0.5)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        output = log.read_text(errors="replace")[-2000:]
        pytest.fail(f"mlflow server did not start within 90 s: {output}")
    yield url, server
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def test_a_tracking_server_killed_mid_run_disables_the_logger_and_the_run_completes(
    tmp_path, mlflow_server
):
    pytest.importorskip("mlflow")
    url, server = mlflow_server

    class KillServer(Callback):
        def on_fit_epoch_end(self, trainer):
            if trainer.epoch == 1:  # two epochs reached the server
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()

    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Model(LinearRegressionTask(3), [KillServer()], manager=PluginManager()).train(
            regression_batches(32, 8), regression_batches(16, 8, seed=1), epochs=5,
            project=str(tmp_path), name="run", plots=False, verbose=False, mlflow=True,
            mlflow_uri=url,
        )
    assert time.monotonic() - started < 60
    disabled = [str(w.message) for w in caught if issubclass(w.category, PluginDisabledWarning)]
    assert len(disabled) == 1
    assert disabled[0].startswith("hookline: plugin 'mlflow' failed in on_log: ")
    run = tmp_path / "train" / "run"
    with open(run / "results.csv", newline="") as file:
        assert [int(row["epoch"]) for row in csv.DictReader(file)] == [1, 2, 3, 4, 5]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ended"] == "finished"
    assert [(f["plugin"], f["hook"]) for f in summary["plugin_failures"]] == [("mlflow", "on_log")]


@pytest.mark.slow
def test_an_unreachable_tracker_costs_one_line_and_seconds_on_the_command_line(tmp_path):
    pytest.importorskip("mlflow")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hookline", "train", "epochs=1", "mlflow=True",
         "mlflow_uri=http://127.0.0.1:9", "plots=False", "progress=False", "resources=False",
         "--no-plugins"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("hookline: plugin 'mlflow' failed in on_train_start: ")
    assert lines[0].endswith("it is disabled for the rest of the run")
    summary = json.loads((tmp_path / "runs" / "train" / "exp" / "summary.json").read_text())
    assert summary["ended"] == "finished"
