"""The hookline command: the demo end to end in subprocesses, and its bad-input errors."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hookline import cli  # noqa: E402
from hookline.backends.digits import load_arrays, split  # noqa: E402
from hookline.backends.torch.demo import DigitsRecipe  # noqa: E402
from hookline.cli.parser import build_parser  # noqa: E402
from hookline.cli.reference import signature  # noqa: E402
from hookline.cli.resolution import prepared_manager, resolve  # noqa: E402
from hookline.cli.trace import trace_hooks  # noqa: E402
from hookline.engine import checkpoint_file  # noqa: E402
from hookline.flags import FLAGS_PLUGIN  # noqa: E402
from hookline.plugins import DEFAULT_FLAGS  # noqa: E402
from hookline.settings import Options  # noqa: E402
from tests.test_torch_backend import load_torch_checkpoint as load_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def hookline(*words: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookline", *words], cwd=cwd, capture_output=True, text=True,
        check=False, timeout=300,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``hookline train`` with no arguments, as a person runs it first."""
    cwd = tmp_path_factory.mktemp("demo")
    result = hookline("train", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return cwd, result.stdout


def last_epoch_accuracy(stdout: str) -> float:
    lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    assert lines[-1].startswith("epoch 20/20")
    return float(re.search(r"val/accuracy (\S+)", lines[-1]).group(1))


@pytest.mark.slow
def test_demo_trains_to_the_accuracy_bound_and_writes_its_run_directory(demo_run):
    cwd, stdout = demo_run
    assert last_epoch_accuracy(stdout) >= 0.95
    run = cwd / "runs" / "train" / "exp"
    assert (run / "weights" / "last.pt").is_file()
    assert re.search(r"^training finished after 20/20 epochs, \d+ steps", stdout, re.M)
    assert "\n  results runs/train/exp: args.yaml, metrics.jsonl, results.csv, results.png, " \
        "weights/\n  models  weights/last.pt, weights/best.pt\n" in stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["ended"] == "finished"
    rows = list(csv.DictReader((run / "results.csv").read_text().splitlines()))
    assert [int(row["epoch"]) for row in rows] == list(range(1, 21))
    assert float(rows[-1]["val/accuracy"]) == pytest.approx(last_epoch_accuracy(stdout), abs=1e-4)
    args = (run / "args.yaml").read_text()
    assert "epochs: 20" in args
    assert "data: digits" in args


@pytest.mark.slow
def test_val_uses_the_best_weights_and_reproduces_their_epochs_metrics(demo_run):
    cwd, stdout = demo_run
    result = hookline("val", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "weights: runs/train/exp/weights/best.pt (the latest run's best; weights=PATH to choose)"
    )
    run = cwd / "runs" / "train" / "exp"
    best_epoch = json.loads((run / "summary.json").read_text())["best"]["epoch"]
    rows = list(csv.DictReader((run / "results.csv").read_text().splitlines()))
    reported = float(re.search(r"val/accuracy (\S+)", result.stdout).group(1))
    assert reported == pytest.approx(float(rows[best_epoch - 1]["val/accuracy"]), abs=1e-4)
    last = hookline("val", "weights=runs/train/exp/weights/last.pt", cwd=cwd)
    assert not last.stdout.startswith("weights:")  # a file the user named goes unannounced
    reported = float(re.search(r"val/accuracy (\S+)", last.stdout).group(1))
    assert reported == pytest.approx(last_epoch_accuracy(stdout), abs=1e-4)


@pytest.mark.slow
def test_predict_writes_one_correct_row_per_validation_sample(demo_run):
    cwd, _ = demo_run
    result = hookline("predict", cwd=cwd)
    assert result.returncode == 0, result.stderr
    with open(cwd / "runs" / "predict" / "exp" / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    _, (_, labels) = split(load_arrays("digits"), 0.2, 0)
    assert len(rows) == len(labels)
    predicted = np.array([int(row["class"]) for row in rows])
    assert (predicted == labels).mean() >= 0.95
    assert all(0.0 <= float(row["confidence"]) <= 1.0 for row in rows)


@pytest.mark.slow
@pytest.mark.parametrize("format_name", ["torchscript", "pt2", "onnx"])
def test_export_artifacts_reproduce_the_trained_model(demo_run, format_name):
    cwd, _ = demo_run
    result = hookline("export", f"format={format_name}", cwd=cwd)
    assert result.returncode == 0, result.stderr
    weights = cwd / "runs" / "train" / "exp" / "weights"
    suffix = {"torchscript": ".torchscript", "pt2": ".pt2", "onnx": ".onnx"}[format_name]
    artifact = weights / f"best{suffix}"  # exported from the run's best weights, by default
    assert f"exported {format_name} to runs/train/exp/weights/best{suffix}" in result.stdout

    checkpoint = load_checkpoint(weights / "best.pt")
    settings = Options()
    DigitsRecipe().hookline_add_options(settings)
    model = DigitsRecipe().task_from_weights(settings.resolve({}), checkpoint["task"]).model.eval()
    inputs = torch.from_numpy(load_arrays("digits")[0][:50])
    if format_name == "torchscript":
        actual = torch.jit.load(str(artifact))(inputs)
    elif format_name == "pt2":
        actual = torch.export.load(str(artifact)).module()(inputs)
    else:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        actual = torch.from_numpy(session.run(None, {"input": inputs.numpy()})[0])
    with torch.no_grad():
        torch.testing.assert_close(actual, model(inputs), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_trace_hooks_prints_each_call_with_its_plugins(demo_run):
    cwd, _ = demo_run
    result = hookline("val", "--trace-hooks", cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert re.search(r"\[hook\] on_log +\d+\.\d+ ms  .*verbose \d+\.\d+ ms", result.stderr)
    assert re.search(
        r"\[hook\] hookline_add_options +\d+\.\d+ ms  .*recipe \d+\.\d+ ms", result.stderr
    )


#: A folder no run can be created in: as root, only a file system that refuses (sysfs).
UNWRITABLE = "/sys/hookline-test" if os.geteuid() == 0 else "readonly"

BAD_INPUTS = [
    # settings: unknown, mistyped, out of range or nonsense
    (["train", "epoch=3"], "unknown setting 'epoch'; did you mean 'epochs'?"),
    (["train", "epochs=three"], "setting 'epochs' expects int, got 'three'"),
    (["train", "lr=fast"], "setting 'lr' expects float, got 'fast'"),
    (["train", "epochs=-1"], "setting 'epochs' must be an integer >= 0, got -1"),
    (["train", "lr=-1"], "setting 'lr' must be a finite number > 0, got -1.0"),
    (["train", "lr=nan"], "setting 'lr' must be a finite number > 0, got nan"),
    (["train", "batch=0"], "setting 'batch' must be an integer >= 1, got 0"),
    (["train", "hidden=0"], "setting 'hidden' must be an integer >= 1, got 0"),
    (["train", "val_every_n_epochs=0"], "setting 'val_every_n_epochs' must be an integer >= 1"),
    (["train", "val_split=1.5"], "setting 'val_split' must be a share strictly between 0 and 1"),
    (["train", "val_split=0"], "setting 'val_split' must be a share strictly between 0 and 1"),
    (["train", "save_top_k=-5"], "setting 'save_top_k' must be -1 (every epoch), 0 (none)"),
    (["train", "time_limit=-1"], "setting 'time_limit' must be a number >= 0, got -1.0"),
    (["train", "plugin_errors=ignore"], "setting 'plugin_errors': 'ignore' is not a policy"),
    # device and precision
    (["train", "device=cuda"], "device 'cuda' was asked for, but CUDA is not available"),
    (["train", "device=foo"], "device 'foo' is not a device: use auto, cpu, cuda or cuda:N"),
    (["train", "precision=abc"], "setting 'precision' must be one of 32, 16-mixed, bf16-mixed"),
    (["train", "precision=16-mixed"], "16-mixed needs a CUDA device; use bf16-mixed on CPU"),
    # paths
    (["train", "project=afile"], "cannot create 'afile/train': "),
    (["train", f"project={UNWRITABLE}"], f"cannot create '{UNWRITABLE}"),
    (["train", "name=" + "x" * 5000], "setting 'name' is 5000 bytes long; at most 247"),
    (["train", "name="], "setting 'name' must name a folder (not empty, '.' or '..')"),
    (["train", "name=."], "setting 'name' must name a folder"),
    (["train", "name=../../x"], "setting 'name' must be one folder name, without path separators"),
    (["train", "name=/tmp/x"], "setting 'name' must be one folder name, without path separators"),
    (["train", "data=nowhere.npz"], "data path 'nowhere.npz' does not exist"),
    (["train", "epochs"], "expected key=value, got 'epochs'"),
    (["train", "--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    # checkpoints and data files
    (["val", "weights=missing.pt"], "checkpoint 'missing.pt' does not exist"),
    (["val"], "no weights given and none found under runs/train"),
    (["val", "weights=run.yaml"], "'run.yaml' is not a hookline checkpoint"),
    (["val", "weights=narrow.pt"], "checkpoint 'narrow.pt' does not fit recipe "),
    (["val", "weights=empty.pt"], "checkpoint 'empty.pt' does not fit recipe "),
    (["export", "weights=bad.pt"], "'bad.pt' is not a hookline checkpoint"),
    (["export", "weights=good.pt", "format=tflite"],
     "unknown export format 'tflite'; available: torchscript, pt2, onnx"),
    (["predict", "weights=good.pt", "source=absent.csv"], "data path 'absent.csv' does not exist"),
    (["predict", "weights=good.pt", "source=narrow.csv"],
     "source 'narrow.csv' has 2 feature columns; the model takes 64"),
]


def checkpoint_of(model_state: dict) -> bytes:
    payload = DigitsRecipe().task(demo_settings()).save_checkpoint({"task": {"model": model_state}})
    return checkpoint_file.encode(payload, "torch", {})


def demo_settings():
    options = Options()
    DigitsRecipe().hookline_add_options(options)
    return options.resolve({})


@pytest.mark.parametrize(("words", "message"), BAD_INPUTS, ids=[
    " ".join(words)[:40] for words, _ in BAD_INPUTS
])
def test_bad_input_gets_one_clear_line_and_exit_status_2(
    words, message, tmp_path, monkeypatch, capsys
):
    from hookline.backends.torch.digits_model import build_mlp

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "afile").write_text("a file where a folder should be")
    (tmp_path / "readonly").mkdir(mode=0o555)
    (tmp_path / "run.yaml").write_text("epochs: 3\n")
    (tmp_path / "narrow.csv").write_text("0.1,0.2,1\n0.3,0.4,0\n")
    good = DigitsRecipe().task(demo_settings()).model.state_dict()
    (tmp_path / "good.pt").write_bytes(checkpoint_of(good))
    (tmp_path / "narrow.pt").write_bytes(checkpoint_of(build_mlp(5, 16, 10).state_dict()))
    (tmp_path / "empty.pt").write_bytes(checkpoint_of({}))
    assert cli.main([*words, "--no-plugins"]) == 2
    captured = capsys.readouterr()
    error_lines = captured.err.strip().splitlines()
    assert len(error_lines) == 1, captured.err
    assert error_lines[0].startswith(f"hookline {words[0]}: error: ")
    assert message in error_lines[0]
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


def test_random_bytes_are_never_a_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    generator = np.random.default_rng(0)
    for index in range(100):
        path = tmp_path / f"random{index}.pt"
        path.write_bytes(generator.bytes(int(generator.integers(0, 4096))))
        assert cli.main(["val", f"weights={path.name}", "--no-plugins"]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"'{path.name}' is not a hookline checkpoint" in line


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_checkpoint(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: a write past it fails (EFBIG) like one."""
    import resource
    import signal

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = subprocess.run(
        [sys.executable, "-m", "hookline", "train", "epochs=2", "plots=False", "progress=False",
         "resources=False", "verbose=False", "--no-plugins"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=small_files,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("hookline train: error: cannot write checkpoint ")
    assert "runs/train/exp/weights/last.pt': File too large; the previous one is kept" in line


def test_a_checkpoint_write_that_fails_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    import hookline.plugins.checkpoint as checkpointing
    from hookline import CheckpointError, Model, PluginManager
    from tests.test_torch_backend import batches, make_task

    writes = {"n": 0}
    real = checkpointing.write_checkpoint_files

    def disk_fills_up(paths, format, args, write_payload):
        writes["n"] += 1

        def full(file):  # epoch 1's last.pt and best.pt (one file) fit; nothing after
            write_payload(file)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(paths, format, args, write_payload if writes["n"] == 1 else full)

    monkeypatch.setattr(checkpointing, "write_checkpoint_files", disk_fills_up)
    with pytest.raises(CheckpointError, match="No space left on device; the previous one is kept"):
        Model(make_task(), manager=PluginManager()).train(
            batches(64, 16), batches(32, 16, seed=1), epochs=3, project=str(tmp_path),
            verbose=False, plots=False, progress=False,
        )
    last = tmp_path / "train" / "exp" / "weights" / "last.pt"
    assert load_checkpoint(last)["progress"]["epoch"] == 1  # epoch 1's, intact


def test_config_file_settings_are_overridden_by_key_value_words(tmp_path, hookline_cli):
    (tmp_path / "run.yaml").write_text("epochs: 5\nhidden: 16\nverbose: false\n")
    result = hookline_cli("train", "--config", "run.yaml", "epochs=1", "--no-plugins")
    assert result.exit_code == 0, result.stderr
    args = (result.run_dir / "args.yaml").read_text()
    assert "epochs: 1" in args
    assert "hidden: 16" in args
    assert result.stdout == ""


def test_plugins_lists_builtins_as_json(capsys):
    assert cli.main(["plugins", "--json", "--no-plugins"]) == 0
    listing = json.loads(capsys.readouterr().out)
    by_name = {plugin["name"]: plugin for plugin in listing["plugins"]}
    assert by_name["checkpoint"]["source"] == "built-in"
    assert "on_fit_epoch_end" in by_name["checkpoint"]["hooks"]
    assert set(listing["flags"]) == set(DEFAULT_FLAGS)
    assert set(by_name) == {flag for flag, on in DEFAULT_FLAGS.items() if on} | {FLAGS_PLUGIN}
    assert {"csv", "jsonl", "progress", "resources", "summary"} <= set(by_name)
    assert not {"tensorboard", "mlflow", "wandb", "comet", "webhook"} & set(by_name)


def test_hooks_lists_every_hook_with_its_arguments(capsys):
    from hookline import PluginManager

    assert cli.main(["hooks"]) == 0
    text = capsys.readouterr().out
    for name in PluginManager().hook_names:
        assert f"\n{signature(name)}\n" in text
    assert "on_train_batch_end(trainer, batch, batch_idx, loss)" in text


def test_committed_hook_reference_matches_the_hookspecs(capsys):
    assert cli.main(["hooks", "--markdown"]) == 0
    committed = (REPO / "docs" / "hooks.md").read_text()
    assert capsys.readouterr().out == committed, (
        "docs/hooks.md is stale: run `hookline hooks --markdown > docs/hooks.md`"
    )


def test_trace_hooks_times_each_plugin_and_restores_them_when_done():
    import io

    from hookline import Callback, PluginManager

    class Slow(Callback):
        def on_train_end(self):
            import time

            time.sleep(0.01)

    class Fast(Callback):
        def on_train_end(self):
            pass

    manager = PluginManager()
    manager.register(Slow())
    manager.register(Fast())
    originals = [impl.function for impl in manager.hook.on_train_end.get_hookimpls()]
    out = io.StringIO()
    stop = trace_hooks(manager, out)
    manager.call("on_train_end", trainer=None)
    stop()
    manager.call("on_train_end", trainer=None)  # no longer traced
    (line,) = out.getvalue().splitlines()
    match = re.fullmatch(
        r"\[hook\] on_train_end +(\S+) ms  Fast (\S+) ms, Slow (\S+) ms", line
    )
    assert match, line
    total, fast, slow = map(float, match.groups())
    assert slow >= 10.0 > fast
    assert total >= slow
    assert [impl.function for impl in manager.hook.on_train_end.get_hookimpls()] == originals


def test_settings_lists_what_each_command_accepts(capsys):
    assert cli.main(["settings", "--json", "--no-plugins"]) == 0
    train = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"epochs", "data", "patience", "resume", "monitor", "verbose", "save"} <= set(train)
    assert train["epochs"] == {
        "name": "epochs", "default": 20, "type": "int", "owner": "hookline train",
        "help": "number of epochs", "choices": None,
    }
    assert cli.main(["settings", "val", "--json", "--no-plugins"]) == 0
    val = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert "weights" in val
    assert "epochs" not in val
    # every listed setting, given its listed default, is accepted by the command
    manager, _ = prepared_manager(build_parser().parse_args(["train", "--no-plugins"]))
    given = {name: row["default"] for name, row in train.items() if row["default"] is not None}
    settings, _ = resolve(manager, "train", given)
    assert settings["epochs"] == 20
    assert cli.main(["settings", "--no-plugins"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("epochs ")


def test_another_recipe_trains_validates_and_exports_through_the_command_line(
    tmp_path, hookline_cli
):
    recipe = "tests.sample_plugins.regression_recipe:LinearRecipe"
    trained = hookline_cli("train", f"recipe={recipe}", "epochs=5", "features=3", "--no-plugins")
    assert trained.exit_code == 0, trained.stderr
    assert "val/mae" in trained.stdout
    args = (trained.run_dir / "args.yaml").read_text()
    assert f"recipe: {recipe}" in args
    assert "features: 3" in args
    # a checkpoint is data: the recipe it names is imported only when the user names it again
    refused = hookline_cli("val", "--no-plugins")
    assert refused.exit_code == 2
    assert f"pass recipe={recipe} to use it" in refused.stderr
    # ... and the recipe's settings (features=3) then come from the checkpoint
    validated = hookline_cli("val", f"recipe={recipe}", "--no-plugins")
    assert validated.exit_code == 0, validated.stderr
    loss = float(re.search(r"val/loss (\S+)", validated.stdout).group(1))
    assert loss < 0.01  # y = sum(x) + 0.5 is learnt
    exported = hookline_cli("export", "format=pt2", f"recipe={recipe}", "--no-plugins")
    assert exported.exit_code == 0, exported.stderr
    artifact = Path(exported.stdout.split("exported pt2 to ")[1].strip())
    assert artifact == Path("runs") / "train" / "exp" / "weights" / "best.pt2"
    model = torch.export.load(str(tmp_path / artifact)).module()
    assert model(torch.ones(2, 3)).shape == (2, 1)
    listing = hookline_cli("settings", "--recipe", recipe, "--json", "--no-plugins")
    listed = {row["name"]: row["owner"] for row in json.loads(listing.stdout)}
    assert (listed["features"], listed["recipe"]) == ("linear", "hookline")
    assert "hidden" not in listed  # the demo's settings belong to the demo


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nowhere.module:Recipe", "cannot load recipe 'nowhere.module:Recipe': ModuleNotFound"),
        ("json:dumps", "'json:dumps' is not a recipe"),
        ("json", "recipe 'json' is neither package.module:Class nor an installed recipe's name"),
    ],
)
def test_a_bad_recipe_is_one_clear_line(spec, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", f"recipe={spec}", "--no-plugins"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line


def test_resume_continues_the_run_with_its_recorded_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "epochs=2", "hidden=16", "batch=64", "--no-plugins"]) == 0
    first = capsys.readouterr().out
    assert "epoch 2/2" in first
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    # hidden and batch come from the checkpoint; epochs is given again to extend the run
    assert cli.main(["train", f"resume={last}", "epochs=4", "--no-plugins"]) == 0
    resumed = capsys.readouterr().out
    epochs = [line.split()[1] for line in resumed.splitlines() if line.startswith("epoch ")]
    assert epochs == ["3/4", "4/4"]
    # the run directory is the one the checkpoint is in, not exp2
    assert f"\n  results {tmp_path / 'runs' / 'train' / 'exp'}: " in resumed
    assert not (tmp_path / "runs" / "train" / "exp2").exists()
    args = (tmp_path / "runs" / "train" / "exp" / "args.yaml").read_text()
    assert "hidden: 16" in args
    assert "batch: 64" in args
    assert "epochs: 4" in args
    assert load_checkpoint(last)["progress"]["epoch"] == 4
    results = (tmp_path / "runs" / "train" / "exp" / "results.csv").read_text().splitlines()
    assert [int(row["epoch"]) for row in csv.DictReader(results)] == [1, 2, 3, 4]
    assert "\ntraining finished after 4/4 epochs, " in "\n" + resumed


def test_a_checkpoint_names_no_code_address_or_folder_that_hookline_uses(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    options = Options()
    DigitsRecipe().hookline_add_options(options)
    task = DigitsRecipe().task(options.resolve({}))
    payload = task.save_checkpoint({"task": {"model": task.model.state_dict()}})
    # `this` prints the Zen of Python when imported: a recipe that names it must not load
    zen = checkpoint_file.encode(payload, "torch", {"recipe": "this:s"})
    (tmp_path / "zen.pt").write_bytes(zen)
    monkeypatch.delitem(sys.modules, "this", raising=False)
    assert cli.main(["val", "weights=zen.pt", "--no-plugins"]) == 2
    assert "trained with recipe 'this:s', which no installed package declares" in (
        capsys.readouterr().err
    )
    assert "this" not in sys.modules
    recorded = {
        "webhook": True, "webhook_url": "http://127.0.0.1:9/hook", "mlflow": True,
        "mlflow_uri": "http://127.0.0.1:9", "project": "/elsewhere", "save_dir": "/elsewhere/x",
        "csv": False, "hidden": 16,
    }
    manager, _ = prepared_manager(build_parser().parse_args(["val", "--no-plugins"]))
    settings, values = resolve(manager, "val", {}, recorded)
    assert not manager.has_plugin("webhook")
    assert not manager.has_plugin("mlflow")  # a checkpoint turns nothing on
    assert values.get("webhook") is not True  # ... nor do the values handed to the model
    assert values.get("mlflow") is not True
    assert not manager.has_plugin("csv")  # ... but may turn a built-in off, as its run had it
    assert settings["project"] == "runs"
    assert settings["hidden"] == 16  # the model's own settings still come from the checkpoint
    # a flag the checkpoint recorded as off does not undo what a given setting asks for
    manager, _ = prepared_manager(build_parser().parse_args(["train", "--no-plugins"]))
    settings, values = resolve(manager, "train", {"profile_memory": True}, {"profile": False})
    assert settings["profile"] is True
    assert values["profile"] is True


def test_a_misspelt_monitor_ends_the_run_with_one_line_listing_the_metrics(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    words = ["train", "epochs=3", "monitor=val/acc", "resources=False", "progress=False",
             "verbose=False", "--no-plugins"]
    assert cli.main(words) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("hookline train: error: ")
    assert "setting 'monitor' names 'val/acc', which is not reported; the metrics are: " in line
    assert "val/accuracy" in line  # the name that was meant
    summary = json.loads((tmp_path / "runs" / "train" / "exp" / "summary.json").read_text())
    assert summary["ended"].startswith("failed: SettingsError: ")  # at the first epoch end
    assert "names 'val/acc'" in summary["ended"]
