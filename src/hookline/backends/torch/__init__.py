"""The PyTorch backend: torch is imported in this package and nowhere else in hookline.

* :mod:`~hookline.backends.torch.task`: :class:`TorchTask`, the Task protocol for torch.
* :mod:`~hookline.backends.torch.distributed`: process groups and sharding under torchrun.
* :mod:`~hookline.backends.torch.export`: TorchScript, pt2 and ONNX exports, checked.
* :mod:`~hookline.backends.torch.state`: random state and checkpoint payloads.
* :mod:`~hookline.backends.torch.demo`: the digits demo that ``hookline train`` runs.
"""

from typing import TYPE_CHECKING

from hookline.lazy import lazy_exports

_EXPORTS = {
    "ExportError": "hookline.backends.torch.export",
    "TaskSettingError": "hookline.backends.torch.task",
    "TorchTask": "hookline.backends.torch.task",
    "accuracy": "hookline.backends.torch.task",
    "select_device": "hookline.backends.torch.task",
}
__all__ = ["ExportError", "TaskSettingError", "TorchTask", "accuracy", "select_device"]
# torch loads with the first name used: the demo recipe declares its settings without it
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from hookline.backends.torch.export import ExportError
    from hookline.backends.torch.task import TaskSettingError, TorchTask, accuracy, select_device
