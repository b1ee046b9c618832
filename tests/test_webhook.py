"""The webhook plugin against a real HTTP server on 127.0.0.1: what arrives, and what a failing
or hanging server costs the run."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hookline import Callback, PluginManager, SettingsError, Trainer
from hookline.plugins.early_stopping import EarlyStopping
from hookline.plugins.webhook import Webhook, WebhookSender
from tests.test_early_stopping import Script

SECRET = "T000/B000/XXXXsecretXXXX"


class Receiver(ThreadingHTTPServer):
    """Answers POSTs with ``status`` after ``delay`` seconds (``None``: not until the test
    ends) and keeps what it received."""

    daemon_threads = True

    def __init__(self, status: int = 200, delay: float | None = 0.0) -> None:
        self.status, self.delay = status, delay
        self.messages: list[dict] = []
        self.attempts = 0
        self.closing = threading.Event()
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/{SECRET}"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.attempts += 1
        if self.server.closing.wait(self.server.delay):
            return
        if self.server.status == 200:
            assert self.headers["Content-Type"] == "application/json"
            self.server.messages.append(json.loads(body))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(status: int = 200, delay: float | None = 0.0) -> Receiver:
        server = Receiver(status, delay)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.closing.set()
        server.shutdown()
        server.server_close()


def run(backend, plugins, epochs: int = 4, **settings) -> tuple[Trainer, float]:
    trainer = Trainer(backend.make_task(), plugins, manager=PluginManager())
    started = time.monotonic()
    trainer.fit(backend.batches(32, 8), epochs=epochs, **settings)
    return trainer, time.monotonic() - started


def test_chosen_events_arrive_with_their_content(backend, serve, capsys):
    server = serve()
    stream = io.StringIO()
    plugins = [Webhook(stream=stream), Script("val/loss", [3.0, 2.0, 2.5, 2.6]),
               EarlyStopping(patience=2)]
    run(backend, plugins, webhook_url=server.url)
    events = [message["event"] for message in server.messages]
    assert events == ["train_start", "best", "early_stop"]
    start, best, stop = server.messages
    assert start["text"] == "hookline: training started: 4 epochs"
    assert best["text"] == "hookline: new best val/loss 2 at epoch 2"
    assert best["best"] == {"monitor": "val/loss", "value": 2.0, "epoch": 2}
    assert stop["text"].startswith("hookline: training stopped early after 4/4 epochs: early "
                                   "stopping: val/loss has not improved for 2 epochs")
    assert stop["metrics"]["val/loss"] == 2.6
    assert stream.getvalue() == ""
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err


class Fail(Callback):
    def on_train_epoch_end(self, trainer) -> None:
        raise ValueError("the data ran out")


def test_an_exception_is_announced_and_still_raised(backend, serve):
    server = serve()
    with pytest.raises(ValueError, match="the data ran out"):
        run(backend, [Webhook(), Fail()], webhook_url=server.url, webhook_events="exception")
    (message,) = server.messages
    assert message["event"] == "exception"
    assert message["text"] == "hookline: train failed: ValueError: the data ran out"


def test_the_url_may_come_from_the_environment_and_is_never_shown(backend, serve, monkeypatch):
    server = serve()
    monkeypatch.setenv("HOOKLINE_WEBHOOK_URL", server.url)
    plugin = Webhook(webhook_events="train_end")
    run(backend, [plugin], epochs=1)
    assert [message["event"] for message in server.messages] == ["train_end"]
    assert SECRET not in repr(plugin)
    assert repr(plugin) == "Webhook(http://127.0.0.1/…)"


def test_a_failing_server_is_retried_with_backoff_and_never_fails_the_run(backend, serve, capsys):
    server = serve(status=500)
    stream = io.StringIO()
    _, baseline = run(backend, [], epochs=2)
    trainer, elapsed = run(
        backend, [Webhook(stream=stream)], epochs=2, webhook_url=server.url,
        webhook_events="train_start", webhook_retries=2, webhook_timeout=5,
    )
    assert trainer.epoch == 1
    # three attempts (0.5 s and 1 s apart) overlap training; the end waits for the last one
    assert server.attempts == 3
    assert elapsed < baseline + 3.0
    assert stream.getvalue() == "webhook http://127.0.0.1/…: could not deliver 'train_start' " \
                                "message (HTTP 500)\n"
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err + stream.getvalue()


def test_a_refused_request_is_not_retried(backend, serve):
    server = serve(status=404)
    run(backend, [Webhook(stream=io.StringIO())], epochs=1, webhook_url=server.url,
        webhook_events="train_start")
    assert server.attempts == 1


class TimedWebhook(Webhook):
    """The webhook plugin, adding up the time the run spends in its hooks, the end included."""

    spent = 0.0

    def _timed(self, call: Callable[..., None], *args: object) -> None:
        started = time.monotonic()
        try:
            call(*args)
        finally:
            self.spent += time.monotonic() - started

    def on_train_start(self, trainer) -> None:
        self._timed(super().on_train_start, trainer)

    def on_fit_epoch_end(self, trainer, metrics) -> None:
        self._timed(super().on_fit_epoch_end, trainer, metrics)

    def on_train_end(self, trainer) -> None:
        self._timed(super().on_train_end, trainer)

    def teardown(self) -> None:
        self._timed(super().teardown)


def test_a_hanging_server_delays_the_end_of_the_run_by_at_most_the_timeout(backend, serve):
    server = serve(delay=None)  # answers nothing while the run lasts
    stream = io.StringIO()
    plugin = TimedWebhook(stream=stream)
    trainer, _ = run(backend, [plugin], epochs=2, webhook_url=server.url, webhook_timeout=0.5,
                     webhook_retries=5)
    # The run went to its end while the server held back every answer, and the plugin said
    # that it gave up on the messages.
    assert trainer.epoch == 1
    assert server.messages == []
    assert "gave up on the undelivered messages after waiting 0.5 s" in stream.getvalue()
    # What the webhook cost the run is timed around its own hooks, not as the difference
    # between two whole runs (whose training time alone varies by more than the timeout on a
    # loaded machine): the final wait for the queued messages, which is the timeout (the
    # server never answers), and only the hooks' own little time besides.  Waiting for the
    # server or for the retries would take many seconds.
    assert 0.5 <= plugin.spent < 0.5 + 0.5


def test_an_unreachable_host_is_reported_not_raised():
    stream = io.StringIO()
    sender = WebhookSender(f"http://127.0.0.1:9/{SECRET}", timeout=1, retries=0, backoff=0,
                           stream=stream)
    sender.send({"event": "train_end", "text": "x"})
    sender.close()
    assert sender.failed == 1
    assert stream.getvalue() == "webhook http://127.0.0.1/…: could not deliver 'train_end' " \
                                "message (ConnectionRefusedError)\n"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "webhook needs webhook_url=... or the HOOKLINE_WEBHOOK_URL variable"),
        ({"webhook_url": f"ftp://example.com/{SECRET}"},
         "webhook_url must be an http(s) URL, got ftp://example.com/…"),
        ({"webhook_url": "https://example.com/x", "webhook_events": "train_end,bset"},
         "unknown webhook event 'bset'; did you mean 'best'?"),
        ({"webhook_url": "https://example.com/x", "webhook_timeout": 0},
         "webhook_timeout must be > 0"),
    ],
)
def test_bad_settings_are_refused_before_training(backend, settings, message, monkeypatch):
    monkeypatch.delenv("HOOKLINE_WEBHOOK_URL", raising=False)
    with pytest.raises(SettingsError, match=re.escape(message)):
        run(backend, [Webhook()], **settings)
