"""Plugins on the command line: an installed plugin that fails is named in one line, with its
traceback in the run folder; callbacks from the user's own files (``callbacks=``); a plugin
the user named that cannot be loaded is the user's error; an installed plugin given
explicitly is registered once."""

from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from tests.installed import install, install_counter  # noqa: E402
from tests.test_torch_backend import load_torch_checkpoint  # noqa: E402

#: A quick run of the demo, with nothing on standard error but what the test is about.
QUICK = ("hidden=16", "batch=256", "plots=false", "resources=false", "progress=false")

GRADNORM = """
    import hookline

    class GradNorm(hookline.Callback):
        def __init__(self):
            self.fail_at = 1

        def hookline_add_options(self, options):
            options.add("gradnorm_fail_at", 1, help="the epoch whose batches fail")

        def hookline_configure(self, settings):
            self.fail_at = settings["gradnorm_fail_at"]

        def on_train_batch_end(self, trainer):
            if trainer.epoch == self.fail_at:
                raise ValueError("grad norm is nan")
"""


@pytest.fixture
def gradnorm(tmp_path_factory, monkeypatch):
    """``hookline-gradnorm 0.1.0`` installed: entry point ``gradnorm``, which raises in
    ``on_train_batch_end`` of epoch ``gradnorm_fail_at``."""
    install(monkeypatch, tmp_path_factory.mktemp("site"), "hookline-gradnorm",
            "hookline_gradnorm", GRADNORM, {"gradnorm": "hookline_gradnorm:GradNorm"},
            version="0.1.0")
    monkeypatch.delenv("HOOKLINE_TRACEBACK", raising=False)


def test_a_failing_installed_plugin_ends_the_run_with_one_line_naming_it(
    gradnorm, hookline_cli
):
    result = hookline_cli("train", "epochs=2", *QUICK)
    assert result.exit_code == 1, result.output
    expected = (
        "hookline: plugin 'gradnorm' (hookline-gradnorm 0.1.0) failed in on_train_batch_end: "
        "ValueError: grad norm is nan; traceback in runs/train/exp/error.log"
    )
    assert result.stderr.splitlines() == [expected]
    assert "Traceback" not in result.output
    run = result.run_dir
    log = (run / "error.log").read_text()
    assert log.startswith("Traceback (most recent call last):")
    assert 'hookline_gradnorm.py", line 16, in on_train_batch_end' in log
    assert log.rstrip().endswith("ValueError: grad norm is nan")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["failure"] == {
        "plugin": "gradnorm", "distribution": "hookline-gradnorm 0.1.0",
        "hook": "on_train_batch_end", "error": "ValueError: grad norm is nan",
        "traceback": "error.log",
    }
    assert summary["ended"] == (
        "failed: plugin 'gradnorm' (hookline-gradnorm 0.1.0) failed in on_train_batch_end: "
        "ValueError: grad norm is nan"
    )
    assert "error.log" in summary["files"]
    assert "\ntraining failed: plugin 'gradnorm' (hookline-gradnorm" in result.stdout
    # the last checkpoint, the first epoch's, is kept
    assert load_torch_checkpoint(run / "weights" / "last.pt")["progress"]["epoch"] == 1


@pytest.mark.parametrize("ask", ["--traceback", "HOOKLINE_TRACEBACK=1"])
def test_the_traceback_is_printed_when_asked_for(ask, gradnorm, hookline_cli, monkeypatch):
    if ask.startswith("HOOKLINE_"):
        monkeypatch.setenv(*ask.split("="))
    flags = [ask] if ask.startswith("--") else []
    result = hookline_cli("train", "epochs=1", "gradnorm_fail_at=0", *QUICK, *flags)
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert any('hookline_gradnorm.py", line 16, in on_train_batch_end' in line for line in lines)
    assert lines[-1].startswith("hookline: plugin 'gradnorm' (hookline-gradnorm 0.1.0) failed ")
    assert lines[-1].endswith("; traceback in runs/train/exp/error.log")


def test_a_disabled_installed_plugin_is_named_with_its_distribution(gradnorm, hookline_cli):
    result = hookline_cli(
        "train", "epochs=1", "gradnorm_fail_at=0", "plugin_errors=gradnorm:disable", *QUICK
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "hookline: plugin 'gradnorm' (hookline-gradnorm 0.1.0) failed in on_train_batch_end: "
        "ValueError: grad norm is nan; it is disabled for the rest of the run"
    ]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["plugin_failures"][0]["distribution"] == "hookline-gradnorm 0.1.0"
    assert summary["failure"] is None


# -- callbacks of the user's own ---------------------------------------------------------------

MY_CALLBACKS = """
    import hookline

    class MyCallback(hookline.Callback):
        def on_epoch_end(self, trainer):
            print(trainer.epoch, trainer.metrics.get("val/loss"))
"""


def test_a_callback_in_a_local_file_runs_from_the_command_line_and_is_not_resumed(
    tmp_path, hookline_cli
):
    (tmp_path / "my_callbacks.py").write_text(textwrap.dedent(MY_CALLBACKS))
    result = hookline_cli("train", "epochs=2", "callbacks=my_callbacks.py:MyCallback", *QUICK,
                          "--no-plugins")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    val_losses = re.findall(r"^epoch \d/2 .* val/loss (\S+)", result.stdout, re.MULTILINE)
    printed = re.findall(r"^(\d) (\S+)$", result.stdout, re.MULTILINE)
    assert [epoch for epoch, _ in printed] == ["0", "1"]
    assert [f"{float(loss):.4g}" for _, loss in printed] == val_losses
    args = (result.run_dir / "args.yaml").read_text()
    assert "callbacks: my_callbacks.py:MyCallback" in args
    # a checkpoint is data: the callbacks it records are not imported again by themselves
    del sys.modules["my_callbacks"]
    last = result.run_dir / "weights" / "last.pt"
    resumed = hookline_cli("train", f"resume={last}", "epochs=3", "--no-plugins")
    assert resumed.exit_code == 0, resumed.output
    assert "my_callbacks" not in sys.modules
    assert not re.search(r"^2 ", resumed.stdout, re.MULTILINE)
    (line,) = resumed.stderr.splitlines()
    assert "was trained with callbacks=my_callbacks.py:MyCallback, which hookline never " in line
    # ... until the user names them again: several, a file's and a module's
    from tests.sample_plugins import module_plugin

    module_plugin.seen.clear()
    again = hookline_cli(
        "train", f"resume={last}", "epochs=4",
        "callbacks=my_callbacks.py:MyCallback, tests.sample_plugins.module_plugin",
        "--no-plugins",
    )
    assert again.exit_code == 0, again.output
    assert again.stderr == ""
    assert re.search(r"^3 \d", again.stdout, re.MULTILINE)
    assert ("epoch", 3) in module_plugin.seen


BROKEN_FILES = {
    "bad_import.py": "import no_such_module_anywhere\n",
    "misspelt.py": "import hookline\n\nclass Typo(hookline.Callback):\n"
                   "    def on_epoch_ned(self, trainer):\n        pass\n",
    "needs_args.py": "import hookline\n\nclass Needs(hookline.Callback):\n"
                     "    def __init__(self, level):\n        self.level = level\n",
    "my_callbacks.py": textwrap.dedent(MY_CALLBACKS),
    "json.py": "",
}


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["callbacks=nowhere.py:MyCallback"], "setting 'callbacks': file 'nowhere.py' does not"),
        (["callbacks=my_callbacks.py:MyCallbak"],
         "'my_callbacks.py' has no attribute 'MyCallbak'; did you mean 'MyCallback'?"),
        (["callbacks=bad_import.py:Anything"],
         "cannot load 'bad_import.py:Anything': ModuleNotFoundError: No module named "
         "'no_such_module_anywhere'"),
        (["callbacks=no_such_package.module:Thing"],
         "cannot load 'no_such_package.module:Thing': ModuleNotFoundError"),
        (["callbacks=misspelt.py:Typo"], "did you mean 'on_epoch_end'?"),
        (["callbacks=needs_args.py:Needs"],
         "cannot create needs_args.py:Needs() without arguments: TypeError"),
        (["callbacks=json.py:Anything"],
         "file 'json.py' has the name of the module 'json', which is already imported"),
        (["--plugins", "my_callbacks:MyCallback"],
         "--plugins takes the names of installed plugins, and 'my_callbacks:MyCallback' is "
         "none; a callback of your own is given as the setting "
         "callbacks=my_callbacks:MyCallback"),
        (["--plugins", "slack"], "plugin 'slack' is not installed (installed plugins: "),
        (["HOOKLINE_PLUGINS=slack"], "plugin 'slack' is not installed"),
    ],
    ids=["no-file", "no-attribute", "import-error", "no-module", "misspelt-hook",
         "needs-arguments", "a-module-name-taken", "plugins-with-a-spec",
         "plugins-not-installed", "env-not-installed"],
)
def test_a_plugin_the_user_named_that_cannot_be_used_is_one_line_and_exit_2(
    words, message, tmp_path, hookline_cli, monkeypatch
):
    for name, source in BROKEN_FILES.items():
        (tmp_path / name).write_text(source)
    if words[0].startswith("HOOKLINE_"):
        monkeypatch.setenv(*words[0].split("="))
        words = []
    result = hookline_cli("train", "epochs=1", *QUICK, *words)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("hookline train: error: ")
    assert message in line
    assert result.run_dir is None  # refused before anything was built


BROKEN_PLUGIN = "raise ImportError('hookline_broken needs a library that is not installed')\n"


def test_an_installed_plugin_nobody_named_that_fails_to_load_is_a_warning_only(
    tmp_path_factory, monkeypatch, hookline_cli
):
    install(monkeypatch, tmp_path_factory.mktemp("site"), "hookline-broken", "hookline_broken",
            BROKEN_PLUGIN, {"broken": "hookline_broken"})
    listing = hookline_cli("plugins", "--json")
    assert listing.exit_code == 0, listing.output
    (skipped,) = json.loads(listing.stdout)["skipped"]
    assert "plugin 'broken' (hookline_broken, from hookline-broken 1.0)" in skipped
    named = hookline_cli("plugins", "--plugins", "broken")
    assert named.exit_code == 2
    (line,) = named.stderr.splitlines()
    assert line.startswith("hookline plugins: error: plugin 'broken' (hookline_broken, from ")
    assert "ImportError: hookline_broken needs a library that is not installed" in line


def test_an_installed_plugin_named_in_callbacks_is_registered_once(
    tmp_path_factory, monkeypatch, hookline_cli
):
    install_counter(monkeypatch, tmp_path_factory.mktemp("site"))
    result = hookline_cli("train", "epochs=2", "callbacks=hookline_counter:Counter", *QUICK)
    assert result.exit_code == 0, result.output
    assert re.findall(r"^counted \d+$", result.stdout, re.MULTILINE) == [
        "counted 1", "counted 2"
    ]
