"""Secret settings (a webhook URL, a tracker URI with a password, an API key) are used where they
are needed and written nowhere: every file a run with every tracker writes, and its console,
are searched for the secret, given as a setting and through its environment variable."""

from __future__ import annotations

import json
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from hookline import Callback, PluginManager, SettingsError, Trainer
from hookline.engine import checkpoint_file, read_header
from hookline.flags import apply_flags
from hookline.settings import Options, redact
from hookline.testing import run_cli

TOKEN = "xoxbSECRETtoken4711"
SECRET_PATH = f"/services/T0000/B0000/{TOKEN}"


# -- the secret as a value: what may be shown ----------------------------------------------


def test_a_secret_is_shown_as_scheme_and_host_or_not_at_all():
    assert redact(f"https://hooks.slack.com{SECRET_PATH}") == "https://hooks.slack.com/…"
    assert redact(f"https://user:{TOKEN}@mlflow.example.com:5000/") == (
        "https://mlflow.example.com/…"
    )
    assert redact(f"sqlite:////data/{TOKEN}/mlflow.db") == "sqlite:///…"
    assert redact(f"http://[::1{TOKEN}/x") == "http:///…"  # malformed: no host to show
    assert redact(TOKEN) == "…"
    assert redact("") == ""  # no secret given: nothing to hide
    assert redact(None) is None


def secret_options() -> Options:
    options = Options()
    options.add("api_key", "", help="the service's key", secret=True)
    options.add("pin", 0, help="a numeric secret", secret=True)
    options.add("region", "eu", help="not a secret", choices=("eu", "us"))
    return options


def test_settings_give_the_secret_to_plugins_and_redact_it_everywhere_else():
    settings = secret_options().resolve({"api_key": TOKEN, "pin": "1234"})
    assert settings["api_key"] == TOKEN
    assert settings.api_key == TOKEN
    assert settings.public() == {"api_key": "…", "pin": "…", "region": "eu"}
    assert TOKEN not in repr(settings)
    assert "1234" not in repr(settings)
    with pytest.raises(SettingsError, match=r"setting 'pin' expects int, got '…'") as error:
        secret_options().resolve({"pin": TOKEN})
    assert TOKEN not in str(error.value)


def test_a_setting_is_secret_when_any_plugin_declaring_it_says_so():
    options = Options()
    options.add("uri", "", help="first declaration")
    options.add("uri", "", help="second declaration", secret=True)
    assert options.resolve({"uri": TOKEN}).public()["uri"] == "…"


class ServiceClient(Callback):
    """A plugin that takes an API key: it needs the key as given."""

    def __init__(self) -> None:
        self.api_key = ""
        self.seen: list[str] = []

    def hookline_add_options(self, options: Options) -> None:
        options.add("api_key", "", help="the service's API key", secret=True)

    def hookline_configure(self, settings) -> None:
        self.api_key = settings["api_key"]

    def on_train_start(self, trainer) -> None:
        self.seen.append(self.api_key)
        self.seen.append(trainer.args["api_key"])


def test_a_plugin_gets_its_key_and_the_run_records_it_redacted(task, tmp_path):
    from tests.conftest import regression_batches

    client = ServiceClient()
    manager = PluginManager()
    apply_flags(manager, {"save": True, "checkpoint": True})
    Trainer(task, [client], manager=manager).fit(
        regression_batches(16, 8), epochs=1, save_dir=tmp_path / "run", api_key=TOKEN,
        save=True, checkpoint=True,
    )
    assert client.seen == [TOKEN, "…"]
    assert yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())["api_key"] == "…"
    assert read_header(tmp_path / "run" / "weights" / "last.pt")["args"]["api_key"] == "…"
    assert not places_holding(TOKEN, tmp_path)


# -- a run with every tracker on: the secret is found nowhere ------------------------------


class Receiver(ThreadingHTTPServer):
    """Records the path of each POST it receives."""

    daemon_threads = True

    def __init__(self) -> None:
        self.paths: list[str] = []
        super().__init__(("127.0.0.1", 0), Recorder)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{SECRET_PATH}"


class Recorder(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def places_holding(secret: str, folder: Path) -> list[str]:
    """Every file under ``folder`` whose bytes hold ``secret``, and every member of a zip
    archive (Comet's offline archive, a checkpoint's payload) whose content holds it."""
    needle = secret.encode()
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        if needle in path.read_bytes():
            found.append(str(path))
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                found.extend(
                    f"{path}:{member}" for member in archive.namelist()
                    if needle in archive.read(member)
                )
    return found


TRACKERS = [
    "tensorboard=True", "mlflow=True", "wandb=True", "comet=True", "webhook=True",
    "checkpoint=True", "csv=True", "jsonl=True", "summary=True", "save=True",
]


@pytest.fixture
def tracker_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trackers' own folders (configuration, caches) inside the searched folder."""
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_DIR"):
        monkeypatch.setenv(variable, str(tmp_path / "home" / variable.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("HOOKLINE_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def hookline(words: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch):
    """``hookline WORDS`` run in ``folder``, with ``sys.argv`` as the command line has it
    (trackers may record the command line)."""
    monkeypatch.setattr(sys, "argv", ["hookline", *words])
    return run_cli(words, folder)


@pytest.mark.slow
@pytest.mark.usefixtures("tracker_homes")
def test_no_file_and_no_console_line_holds_the_webhook_secret(
    receiver, tmp_path, monkeypatch, capfd
):
    folder = tmp_path / "work"
    quick = ["epochs=1", "batch=256", "plot_interval=0", "resource_interval=0.05"]
    # given as a setting
    first = hookline(
        ["train", *quick, *TRACKERS, f"webhook_url={receiver.url}"], folder, monkeypatch
    )
    assert first.exit_code == 0, first.output
    assert receiver.paths
    assert set(receiver.paths) == {SECRET_PATH}
    args = yaml.safe_load((first.run_dir / "args.yaml").read_text())
    assert args["webhook_url"] == "http://127.0.0.1/…"
    delivered = len(receiver.paths)
    # the run resumed, the secret now given through the environment: said in one line
    monkeypatch.setenv("HOOKLINE_WEBHOOK_URL", receiver.url)
    last = first.run_dir / "weights" / "last.pt"
    resumed = hookline(
        ["train", "epochs=2", f"resume={last}", *TRACKERS[:5]], folder, monkeypatch
    )
    assert resumed.exit_code == 0, resumed.output
    assert len(receiver.paths) > delivered
    notices = [line for line in resumed.stderr.splitlines() if "webhook_url" in line]
    assert notices == [
        "hookline: webhook_url is a secret setting, which checkpoints do not keep: give it "
        "again (webhook_url=...) unless its environment variable holds it"
    ]
    files = {path.name for path in first.run_dir.iterdir()}
    assert {"args.yaml", "weights", "wandb", "comet", "summary.json", "results.csv"} <= files
    assert (folder / "runs" / "train" / "mlflow.db").is_file()
    assert any(first.run_dir.glob("events.out.tfevents.*"))
    console = capfd.readouterr()
    assert places_holding(TOKEN, tmp_path) == []
    assert TOKEN not in first.output + resumed.output + console.out + console.err


def test_a_resumed_run_without_the_secret_says_how_to_give_it(tmp_path, monkeypatch):
    monkeypatch.delenv("HOOKLINE_WEBHOOK_URL", raising=False)
    recorded = {"webhook": True, "webhook_url": "https://hooks.slack.com/…", "patience": 3}
    last = tmp_path / "runs" / "train" / "exp" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(checkpoint_file.encode(b"payload", "torch", recorded))
    result = run_cli(["train", f"resume={last}", "webhook=True"], tmp_path)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "hookline: webhook_url is a secret setting, which checkpoints do not keep: give it "
        "again (webhook_url=...) unless its environment variable holds it",
        "hookline train: error: webhook needs webhook_url=... or the HOOKLINE_WEBHOOK_URL "
        "variable",
    ]
