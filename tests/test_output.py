"""Quiet, consistent output: no GPU line on a CPU machine, other tools' setting names answered
with hookline's, no empty run directory after a refused resume, metrics printed in one order on
every backend, and a results chart with whole epochs whose coinciding series both show."""

from __future__ import annotations

import io
import subprocess
import sys
import types
from pathlib import Path

import pytest

import hookline
from hookline import Callback, CheckpointError, PluginManager, SettingsError, Trainer
from hookline.plugins import resources
from hookline.plugins.console import ConsoleLogger
from hookline.plugins.resources import ResourceMonitor
from hookline.plugins.support import format_metrics
from hookline.plugins.support.charts import COLOURS, nice_ticks
from hookline.settings import Options
from hookline.testing import run_cli
from tests.conftest import regression_batches

# -- GPU monitoring: one line only where a GPU is, or where it was asked for -----------------


class NVMLError(Exception):
    pass


@pytest.fixture
def no_nvml_library(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """pynvml installed, its shared library missing (a CPU machine, or a GPU container without
    the driver's libraries mounted)."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = NVMLError
    nvml.calls = 0

    def init() -> None:
        nvml.calls += 1
        raise NVMLError("NVML Shared Library Not Found")

    nvml.nvmlInit = init
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return nvml


def gpu_line(task, tmp_path: Path, gpu_file: bool, **settings: object) -> str:
    """What the resource monitor says about GPUs in a short run, with or without the device
    file an NVIDIA GPU has."""
    device = tmp_path / "nvidia0"
    if gpu_file:
        device.touch()
    stream = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resources, "GPU_DEVICES", str(tmp_path / "nvidia[0-9]*"))
        Trainer(task, [ResourceMonitor(0.01, stream)], manager=PluginManager()).fit(
            regression_batches(16, 8), epochs=1, **settings
        )
    return stream.getvalue()


def test_a_machine_without_a_gpu_hears_nothing_about_gpu_monitoring(
    task, tmp_path, no_nvml_library
):
    assert gpu_line(task, tmp_path, gpu_file=False) == ""


def test_a_machine_with_a_gpu_nvml_cannot_read_says_why_in_one_line(
    task, tmp_path, no_nvml_library
):
    assert gpu_line(task, tmp_path, gpu_file=True) == (
        "resources: no GPU monitoring: the NVML library is not available (NVML Shared Library "
        "Not Found); recording CPU and memory only\n"
    )


def test_gpu_monitoring_asked_for_says_why_it_cannot_and_turned_off_leaves_nvml_alone(
    task, tmp_path, no_nvml_library
):
    asked = gpu_line(task, tmp_path, gpu_file=False, resource_gpu=True)
    assert asked.startswith("resources: no GPU monitoring: the NVML library is not available")
    calls = no_nvml_library.calls
    assert gpu_line(task, tmp_path, gpu_file=True, resource_gpu="false") == ""
    assert no_nvml_library.calls == calls  # NVML was not even loaded


# -- names other tools use -------------------------------------------------------------------


def options_of_the_demo() -> Options:
    options = Options()
    for name, default in [("lr", 0.003), ("lr_patience", 5), ("lr_factor", 0.1), ("epochs", 20),
                          ("batch", 32), ("patience", 10), ("warmup_epochs", 0)]:
        options.add(name, default, help=name)
    return options


@pytest.mark.parametrize(
    ("written", "meant"),
    [("learning_rate", "lr"), ("lr0", "lr"), ("max_epochs", "epochs"),
     ("num_train_epochs", "epochs"), ("batch_size", "batch"), ("lr_patiense", "lr_patience")],
)
def test_an_unknown_setting_suggests_hookline_s_name_for_it(written, meant):
    with pytest.raises(SettingsError) as error:
        options_of_the_demo().resolve({written: 1})
    assert str(error.value) == f"unknown setting {written!r}; did you mean {meant!r}?"


def test_an_alias_whose_setting_is_not_declared_falls_back_to_the_closest_name():
    options = Options()
    options.add("batch_norm", True, help="x")
    with pytest.raises(SettingsError, match=r"unknown setting 'batch_size'; did you mean "
                                            r"'batch_norm'\?"):
        options.resolve({"batch_size": 8})


def test_the_command_line_answers_learning_rate_with_lr(tmp_path):
    result = run_cli(["train", "learning_rate=0.1"], tmp_path)
    assert result.exit_code == 2
    assert result.stderr == (
        "hookline train: error: unknown setting 'learning_rate'; did you mean 'lr'?\n"
    )


# -- a run refused before its first epoch leaves no directory --------------------------------


def train(task, project: Path, **settings: object):
    model = hookline.Model(task, manager=PluginManager())
    model.train(
        regression_batches(16, 8), regression_batches(8, 8, seed=1), epochs=1,
        project=str(project), verbose=False, progress=False, plots=False, resources=False,
        **settings,
    )
    return model


@pytest.fixture
def damaged(task, tmp_path) -> Path:
    """A checkpoint whose payload no longer matches its digest, outside any run folder."""
    train(task, tmp_path / "first")
    data = bytearray((tmp_path / "first" / "train" / "exp" / "weights" / "last.pt").read_bytes())
    data[-2] ^= 1
    path = tmp_path / "damaged.pt"
    path.write_bytes(bytes(data))
    return path


def test_a_resume_that_fails_leaves_no_run_directory(task, tmp_path, damaged):
    project = tmp_path / "runs"
    train(task, project)  # runs/train/exp
    with pytest.raises(CheckpointError, match="is corrupt"):
        train(task, project, resume=str(damaged))
    assert sorted(path.name for path in (project / "train").iterdir()) == ["exp"]
    train(task, project)  # the next run takes the number the failed one had
    assert sorted(path.name for path in (project / "train").iterdir()) == ["exp", "exp2"]


def test_a_directory_that_existed_before_the_failed_run_is_kept(task, tmp_path, damaged):
    project = tmp_path / "runs"
    train(task, project)
    before = sorted(path.name for path in (project / "train" / "exp").iterdir())
    with pytest.raises(CheckpointError):
        train(task, project, resume=str(damaged), exist_ok=True)
    after = sorted(path.name for path in (project / "train" / "exp").iterdir())
    assert set(before) <= set(after)


class Broken(Callback):
    def on_train_start(self) -> None:
        raise RuntimeError("a bug, not a user error")


def test_a_run_that_crashes_keeps_its_directory_and_its_record(task, tmp_path):
    model = hookline.Model(task, [Broken()], manager=PluginManager())
    with pytest.raises(RuntimeError, match="a bug"):
        model.train(regression_batches(16, 8), epochs=1, project=str(tmp_path), verbose=False,
                    progress=False, plots=False, resources=False, summary=False)
    assert (tmp_path / "train" / "exp" / "args.yaml").is_file()


# -- metrics in one order --------------------------------------------------------------------


def test_metrics_print_in_one_order_whatever_order_they_come_in():
    metrics = {"val/accuracy": 0.9, "resources/rss_mb_max": 1.0, "val/loss": 0.25, "lr": 0.1,
               "test/loss": 2.0, "train/grad_norm": 3.0, "train/loss": 1.5, "epoch_time": 4.0}
    expected = ("train/loss 1.5  train/grad_norm 3  epoch_time 4  lr 0.1  val/loss 0.25  "
                "val/accuracy 0.9  test/loss 2")
    assert format_metrics(metrics) == expected
    assert format_metrics(dict(reversed(metrics.items()))) == expected


def test_the_epoch_line_has_the_same_order_on_every_backend(backend):
    stream = io.StringIO()
    trainer = Trainer(backend.make_task(), [ConsoleLogger(stream)], manager=PluginManager())
    trainer.fit(backend.batches(32, 16), backend.batches(32, 16, seed=1), epochs=1)
    (line,) = [line for line in stream.getvalue().splitlines() if line.startswith("epoch 1/1")]
    assert line.split()[2::2] == ["train/loss", "val/loss", "val/accuracy"]


# -- results.png -----------------------------------------------------------------------------


def test_results_png_has_its_panels_in_the_same_order_on_every_backend():
    from hookline.plugins.plots import panels

    jax_order = {"epoch": 1, "train/loss": 1.0, "val/accuracy": 0.5, "val/loss": 0.7,
                 "resources/rss_mb_mean": 1.0, "resources/rss_mb_max": 2.0}
    assert list(panels([jax_order])) == [
        "train/loss", "val/loss", "val/accuracy", "resources/rss_mb"
    ]
    assert panels([jax_order])["resources/rss_mb"] == [
        "resources/rss_mb_mean", "resources/rss_mb_max"
    ]



def test_epoch_ticks_are_whole_numbers():
    assert nice_ticks(1, 3, integer=True) == [1, 2, 3]
    assert nice_ticks(1, 1, integer=True) == [0, 1, 2]  # one epoch: it sits in the middle
    assert nice_ticks(1, 40, integer=True) == [0, 10, 20, 30, 40]
    assert nice_ticks(1, 3) == [1, 1.5, 2, 2.5, 3]  # values keep their fractions


def test_values_one_rounding_apart_get_ticks_at_once():
    """A mean and a maximum of the same saturated samples (a busy machine's CPU share) can
    differ by one rounding: the ticks were summed step by step, and a step too small to change
    the value never reached the top, appending until the machine ran out of memory (an OOM
    kill under load, in a 'hookline train' run with plots).  A subprocess, so that a hang
    fails the test instead of the suite."""
    code = (
        "import math\n"
        "from hookline.plugins.support.charts import nice_ticks\n"
        "print(nice_ticks(33.3, math.nextafter(33.3, math.inf)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[31.0, 32.0, 33.0, 34.0, 35.0]"  # drawn as a flat line
    assert nice_ticks(1e9, 1e9 + 1) == [1e9, 1e9 + 0.5, 1e9 + 1]  # a narrow range still ticks


def test_a_mean_and_a_max_that_coincide_both_show(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    from hookline.plugins import plots

    # one sample in a short epoch: the mean and the maximum are the same number
    history = [{"epoch": 1, "resources/rss_mb_mean": 812.5, "resources/rss_mb_max": 812.5}]
    plots.draw(history, tmp_path / "results.png")
    with image_module.open(tmp_path / "results.png") as image:
        plot_area = image.convert("RGB").crop((0, 80, 360, 242))  # below the legend
        colours = {colour for _, colour in plot_area.getcolors(1 << 16)}
    mean, maximum = (tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in COLOURS[:2])
    assert mean in colours
    assert maximum in colours
