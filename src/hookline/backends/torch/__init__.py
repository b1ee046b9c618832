"""The PyTorch backend: torch is imported in this package and nowhere else in hookline.

* :mod:`~hookline.backends.torch.task`: :class:`TorchTask`, the Task protocol for torch.
* :mod:`~hookline.backends.torch.distributed`: process groups and sharding under torchrun.
* :mod:`~hookline.backends.torch.export`: TorchScript, pt2 and ONNX exports, checked.
* :mod:`~hookline.backends.torch.state`: random state and checkpoint payloads.
* :mod:`~hookline.backends.torch.demo`: the digits demo that ``hookline train`` runs.
"""

from hookline.backends.torch.export import ExportError
from hookline.backends.torch.task import TaskSettingError, TorchTask, accuracy, select_device

__all__ = ["ExportError", "TaskSettingError", "TorchTask", "accuracy", "select_device"]
