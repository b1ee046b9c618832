"""Webhook notifications: a JSON message POSTed on chosen events of a training run.

The message is Slack-compatible (``{"text": ...}``, which Slack, Mattermost and Rocket.Chat
incoming webhooks post as is) and also carries the event and the run's figures for other
receivers::

    {"text": "hookline: training finished after 10/10 epochs; best val/loss 0.08 at epoch 7",
     "event": "train_end", "epoch": 10, "metrics": {...}, "best": {...}, "save_dir": "..."}

Events: ``train_start``, ``best`` (the monitored metric improved on an earlier best),
``early_stop`` (training ended by a stop request: early stopping, NaN guard, time limit),
``train_end`` (all epochs ran) and ``exception``.

Messages go out from a background thread: the run never waits for the network, each request
has a timeout, and a failed delivery (network error, HTTP 429 or 5xx) is retried with
exponential backoff.  When the run ends, the plugin waits at most ``webhook_timeout`` seconds
for the messages still queued, then gives up on them with one line on standard error.  A
delivery problem never fails the run.  The URL (a secret, for Slack) comes from the
``webhook_url`` setting (a secret setting: the run's files, checkpoints and trackers record it
redacted, and a resumed run needs it given again) or the ``HOOKLINE_WEBHOOK_URL`` environment
variable, and is only ever shown as its scheme and host.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, ClassVar, TextIO

from hookline.manager import Callback
from hookline.plugins.support import BestTracker, format_metrics, resolve_mode
from hookline.run import Run, TrainingRun
from hookline.settings import Options, Settings, SettingsError, closest, redact

EVENTS = ("train_start", "best", "early_stop", "train_end", "exception")
URL_VARIABLE = "HOOKLINE_WEBHOOK_URL"


class WebhookSender:
    """Delivers JSON messages to one URL from a daemon thread, with timeouts and retries.

    :param retries: further attempts after a failed one; the n-th waits ``backoff * 2**n`` s.
    """

    def __init__(
        self, url: str, timeout: float, retries: int, backoff: float = 0.5,
        stream: TextIO | None = None,
    ) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.stream = stream
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hookline-webhook", daemon=True)
        self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message``; returns at once."""
        self._queue.put(message)

    def close(self) -> None:
        """Wait up to ``timeout`` seconds for queued messages, then leave the rest."""
        self._queue.put(None)
        self._thread.join(self.timeout)
        self._closing.set()  # cuts any backoff short; the thread then drops what is left
        pending = self._queue.qsize()
        if self._thread.is_alive() or pending:
            self._report(f"gave up on the undelivered messages after waiting {self.timeout:g} s")

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            if message is None or self._closing.is_set():
                return
            self._deliver(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        body = json.dumps(message).encode()
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt and self._closing.wait(self.backoff * 2 ** (attempt - 1)):
                break
            request = urllib.request.Request(
                self.url, data=body, method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "hookline"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                self.delivered += 1
                return
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}"
                if error.code != 429 and error.code < 500:
                    break  # the request itself is refused: sending it again will not help
            except (OSError, ValueError) as error:  # URLError, timeouts, refused connections
                reason = getattr(error, "reason", error)
                problem = type(reason).__name__ if isinstance(reason, BaseException) else "error"
        self.failed += 1
        self._report(f"could not deliver {message.get('event', 'a')!r} message ({problem})")

    def _report(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(f"webhook {redact(self.url)}: {text}\n")
        stream.flush()


class Webhook(Callback):
    """POSTs a message to a webhook on chosen training events (see the module's description).

    Settings: ``webhook_url`` (or ``HOOKLINE_WEBHOOK_URL``), ``webhook_events`` (comma-separated,
    default all), ``webhook_timeout`` (seconds per request, and the longest the end of the run
    waits), ``webhook_retries``; ``monitor`` and ``mode`` decide what a new best is.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "webhook_url": f"URL to POST to (default: ${URL_VARIABLE})",
        "webhook_events": f"comma-separated events: {','.join(EVENTS)}",
        "webhook_timeout": "seconds per request and for the final wait",
        "webhook_retries": "attempts after a failed delivery",
        "monitor": "metric that decides 'best'",
        "mode": "min, max or auto for the monitor",
    }

    def __init__(
        self,
        webhook_url: str = "",
        webhook_events: str = ",".join(EVENTS),
        webhook_timeout: float = 5.0,
        webhook_retries: int = 3,
        monitor: str = "val/loss",
        mode: str = "auto",
        stream: TextIO | None = None,
    ) -> None:
        self.webhook_url, self.webhook_events = webhook_url, webhook_events
        self.webhook_timeout, self.webhook_retries = webhook_timeout, webhook_retries
        self.monitor, self.mode = monitor, mode
        self.stream = stream
        self.events: frozenset[str] = frozenset()
        self.url = ""
        self.best = BestTracker(monitor, mode)
        self.sender: WebhookSender | None = None

    def __repr__(self) -> str:
        return f"Webhook({redact(self.url) if self.url else 'no URL'})"

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(self, self.SETTINGS, owner="webhook", secret={"webhook_url"})

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        self.url = self.webhook_url or os.environ.get(URL_VARIABLE, "")
        if not self.url:
            raise SettingsError(f"webhook needs webhook_url=... or the {URL_VARIABLE} variable")
        if urllib.parse.urlsplit(self.url).scheme not in ("http", "https"):
            raise SettingsError(f"webhook_url must be an http(s) URL, got {redact(self.url)}")
        events = {name.strip() for name in self.webhook_events.split(",") if name.strip()}
        for name in events - set(EVENTS):
            hint = closest(name, EVENTS)
            raise SettingsError(
                f"unknown webhook event {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                + f" (events: {', '.join(EVENTS)})"
            )
        if self.webhook_timeout <= 0 or self.webhook_retries < 0:
            raise SettingsError("webhook_timeout must be > 0 and webhook_retries >= 0")
        resolve_mode(self.monitor, self.mode)
        self.events = frozenset(events)
        self.best = BestTracker(self.monitor, self.mode)

    def state_dict(self) -> dict[str, Any]:
        """The best result so far, so that a resumed run does not announce an old best."""
        return {"best": self.best.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.best.load_state_dict(state["best"])

    def _notify(self, event: str, text: str, trainer: Run) -> None:
        if event not in self.events:
            return
        if self.sender is None:
            self.sender = WebhookSender(
                self.url, self.webhook_timeout, self.webhook_retries, stream=self.stream
            )
        self.sender.send({
            "text": f"hookline: {text}",
            "event": event,
            "epoch": getattr(trainer, "epoch", 0) + 1,
            "metrics": dict(trainer.metrics),
            "best": {"monitor": self.monitor, **self.best.state_dict()},
            "save_dir": None if trainer.save_dir is None else str(trainer.save_dir),
            "time": time.time(),
        })

    def on_train_start(self, trainer: TrainingRun) -> None:
        where = f" -> {trainer.save_dir}" if trainer.save_dir is not None else ""
        self._notify("train_start", f"training started: {trainer.epochs} epochs{where}", trainer)

    def on_fit_epoch_end(self, trainer: TrainingRun, metrics: Mapping[str, float]) -> None:
        had_best = self.best.value is not None
        if self.best.update(metrics, trainer.epoch) and had_best:
            text = f"new best {self.monitor} {self.best.value:.4g} at epoch {self.best.epoch}"
            self._notify("best", text, trainer)

    def on_train_end(self, trainer: TrainingRun) -> None:
        best = ""
        if self.best.value is not None:
            best = f"; best {self.monitor} {self.best.value:.4g} at epoch {self.best.epoch}"
        progress = f"after {trainer.epoch + 1}/{trainer.epochs} epochs"
        if trainer.stop_reason:
            text = f"training stopped early {progress}: {trainer.stop_reason}{best}"
            self._notify("early_stop", text, trainer)
        else:
            last = f" ({format_metrics(trainer.metrics)})" if trainer.metrics else ""
            self._notify("train_end", f"training finished {progress}{best}{last}", trainer)

    def on_exception(self, run: Run, exception: BaseException) -> None:
        text = f"{run.name} failed: {type(exception).__name__}: {exception}"
        self._notify("exception", text, run)

    def teardown(self) -> None:
        if self.sender is not None:
            self.sender.close()
            self.sender = None
