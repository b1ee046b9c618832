"""Resource monitoring: CPU, memory and GPU use, sampled in a background thread.

Each sample holds, with psutil: the process's CPU use (percent of one core, so 2 busy cores
read 200) and resident memory, and the system's memory in use; with NVML (the ``pynvml``
module of nvidia-ml-py), for each GPU: utilisation, memory used, temperature and power draw;
and when the training process has initialised CUDA, torch's allocated and reserved memory per
device.  Where NVML or a GPU is missing, CPU and memory are recorded alone; one line says why
when the machine has a GPU (its device files exist, or CUDA is in use) or GPU monitoring was
asked for (``resource_gpu=true``), and nothing is said on a machine without one.
``resource_gpu=false`` leaves GPUs alone (NVML is not even loaded).

Per epoch (from the epoch's start to the end of its validation) every quantity's mean and
maximum are added to the epoch's metrics, so that every logger receives them through
``on_log``: ``resources/cpu_percent_mean``, ``resources/rss_mb_max``,
``resources/gpu0_util_percent_mean``, ``resources/cuda0_allocated_mb_max``, ...

In distributed training the monitor runs on rank zero and measures that process: the figures
are for watching, not for decisions that every rank must agree on (do not monitor them for
checkpoints or early stopping).

The training loop never waits for a sample: the sampler thread measures on its own time and
the loop only takes the epoch's samples (a list swap under a lock) at the epoch's end.
"""

from __future__ import annotations

import glob
import importlib
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TextIO

import psutil

from hookline.manager import Callback, hookimpl
from hookline.settings import Options, Settings, SettingsError

Sample = dict[str, float]
MB = 1024**2
#: Seconds before the first sample.
FIRST_SAMPLE = 0.02
#: The device files an NVIDIA GPU has (Linux), whether or not NVML can be loaded.
GPU_DEVICES = "/dev/nvidia[0-9]*"


def gpu_present() -> bool:
    """Whether this machine appears to have an NVIDIA GPU: its device files exist, or torch
    has initialised CUDA (the check itself initialises nothing)."""
    torch = sys.modules.get("torch")
    return bool(glob.glob(GPU_DEVICES)) or (torch is not None and torch.cuda.is_initialized())


class _Gpus:
    """The GPUs NVML sees, read one sample at a time; ``reason`` says why there are none.
    With ``enabled`` false, none (NVML is not loaded)."""

    def __init__(self, enabled: bool = True) -> None:
        self.handles: list[Any] = []
        self.reason = ""
        if not enabled:
            self.reason = "turned off (resource_gpu=false)"
            return
        try:
            self.nvml: Any = importlib.import_module("pynvml")
        except ImportError:
            self.reason = "the nvidia-ml-py package (pynvml) is not installed"
            return
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as error:
            self.reason = f"the NVML library is not available ({error})"
            return
        try:
            count = self.nvml.nvmlDeviceGetCount()
            self.handles = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except self.nvml.NVMLError as error:
            self.reason = f"NVML cannot list the GPUs ({error})"
        if not self.handles:
            self.reason = self.reason or "NVML reports no GPU"
            self.nvml.nvmlShutdown()

    def read(self, sample: Sample) -> None:
        nvml = self.nvml
        readers: dict[str, Callable[[Any], float]] = {
            "util_percent": lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu,
            "memory_mb": lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used / MB,
            "temperature_c": lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
            "power_w": lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000,
        }
        for index, handle in enumerate(self.handles):
            for name, read in readers.items():
                try:
                    sample[f"gpu{index}_{name}"] = float(read(handle))
                except nvml.NVMLError:
                    continue  # this GPU does not report this quantity

    def close(self) -> None:
        if self.handles:
            self.nvml.nvmlShutdown()
            self.handles = []


def _read_torch_cuda(sample: Sample) -> None:
    """torch's allocated and reserved memory per device, only once training initialised CUDA
    (the monitor never initialises CUDA itself)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    for index in range(torch.cuda.device_count()):
        sample[f"cuda{index}_allocated_mb"] = torch.cuda.memory_allocated(index) / MB
        sample[f"cuda{index}_reserved_mb"] = torch.cuda.memory_reserved(index) / MB


class ResourceSampler:
    """Samples resource use every ``interval`` seconds in a daemon thread.

    :meth:`take` returns the samples gathered since the previous call (at least the latest
    one, when the sampler has sampled at all).
    """

    def __init__(self, interval: float, gpus: bool = True) -> None:
        self.interval = interval
        self.gpus = _Gpus(gpus)
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the measurement
        self._samples: list[Sample] = []
        self._latest: Sample | None = None
        self._lock = threading.Lock()
        self._sampling = threading.Lock()  # held while a sample reads the drivers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hookline-resources", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sample(self) -> Sample:
        """One measurement of everything available."""
        memory = self._process.memory_info()
        sample = {
            "cpu_percent": self._process.cpu_percent(None),
            "rss_mb": memory.rss / MB,
            "system_memory_percent": psutil.virtual_memory().percent,
        }
        self.gpus.read(sample)
        _read_torch_cuda(sample)
        return sample

    def _run(self) -> None:
        # the first sample comes soon (a short first epoch still gets one), but not at once:
        # CPU use is measured over the time since the previous reading
        wait = min(self.interval, FIRST_SAMPLE)
        try:
            while not self._stop.wait(wait):
                with self._sampling:
                    if self._stop.is_set():
                        break
                    sample = self.sample()
                with self._lock:
                    self._samples.append(sample)
                    self._latest = sample
                wait = self.interval
        finally:
            self._close()

    def take(self) -> list[Sample]:
        with self._lock:
            samples, self._samples = self._samples, []
            if not samples and self._latest is not None:
                samples = [self._latest]
        return samples

    def stop(self) -> None:
        """Stop sampling, without waiting for the thread (joining it cost the end of every run
        about 1.6 ms here, waiting for it to wake): NVML is closed now when no sample is being
        taken, else by the thread once its sample ends, so that a hung driver call never holds
        the run up."""
        self._stop.set()
        if self._sampling.acquire(blocking=False):
            try:
                self._close()
            finally:
                self._sampling.release()

    def _close(self) -> None:
        with self._lock:  # once, by whichever of stop() and the thread comes first
            self.gpus.close()


def summarize(samples: list[Sample]) -> dict[str, float]:
    """``resources/<quantity>_mean`` and ``_max`` over ``samples``."""
    metrics: dict[str, float] = {}
    for name in dict.fromkeys(name for sample in samples for name in sample):
        values = [sample[name] for sample in samples if name in sample]
        metrics[f"resources/{name}_mean"] = sum(values) / len(values)
        metrics[f"resources/{name}_max"] = max(values)
    return metrics


class ResourceMonitor(Callback):
    """Samples CPU, memory and GPU use during training and adds each epoch's mean and maximum
    to the epoch's metrics.

    :param resource_interval: seconds between samples (also a setting).
    :param resource_gpu: GPU monitoring: ``None`` (the default) where a GPU is present, saying
        why in one line when NVML cannot read it; ``True`` asks for it (the line also appears
        on a machine without a GPU); ``False`` turns it off (also a setting).
    :param stream: where the one line about missing GPU monitoring goes; standard error by
        default.
    """

    rank_zero_only = True
    error_policy = "disable"  # an observer: a failure drops it, the run goes on
    SETTINGS: ClassVar[Mapping[str, str]] = {
        "resource_interval": "seconds between resource samples",
        "resource_gpu": "GPU monitoring: true (say why when NVML cannot), false (none); "
                        "default: when a GPU is present",
    }

    def __init__(
        self, resource_interval: float = 1.0, stream: TextIO | None = None,
        resource_gpu: bool | None = None,
    ) -> None:
        self.resource_interval = resource_interval
        self.resource_gpu = resource_gpu
        self.stream = stream
        self.sampler: ResourceSampler | None = None

    def hookline_add_options(self, options: Options) -> None:
        options.add_attributes(
            self, self.SETTINGS, owner="resources", types={"resource_gpu": bool}
        )

    def hookline_configure(self, settings: Settings) -> None:
        settings.apply(self, self.SETTINGS)
        if not self.resource_interval > 0:
            raise SettingsError(
                f"resource_interval must be > 0 seconds, got {self.resource_interval}"
            )

    def on_train_start(self) -> None:
        self._stop_sampler()
        wanted = self.resource_gpu
        self.sampler = ResourceSampler(self.resource_interval, gpus=wanted is not False)
        if self.sampler.gpus.reason and (wanted or (wanted is None and gpu_present())):
            stream = self.stream if self.stream is not None else sys.stderr
            stream.write(
                f"resources: no GPU monitoring: {self.sampler.gpus.reason}; "
                "recording CPU and memory only\n"
            )
        self.sampler.start()

    def on_train_epoch_start(self) -> None:
        if self.sampler is not None:
            self.sampler.take()  # the time between epochs belongs to no epoch

    @hookimpl(tryfirst=True)  # other plugins see the figures in the same hook
    def on_fit_epoch_end(self, metrics: dict[str, float]) -> None:
        if self.sampler is not None:
            metrics.update(summarize(self.sampler.take()))

    def teardown(self) -> None:
        self._stop_sampler()

    def _stop_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None
