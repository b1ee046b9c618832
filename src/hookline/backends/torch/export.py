"""Exporting a torch model: TorchScript, ``torch.export`` programs (pt2) and ONNX, each loaded
back and checked against the model's own outputs."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hookline.errors import UserError

EXPORT_SUFFIXES = {"torchscript": ".torchscript", "pt2": ".pt2", "onnx": ".onnx"}


class ExportError(UserError, RuntimeError):
    """An export could not be written, or its outputs differ from the model's."""


def export_model(model: nn.Module, example: torch.Tensor, format: str, path: Path) -> Path:
    """Write ``model`` (on the CPU, in evaluation mode) as ``format`` and check the artifact:
    it is loaded back and its outputs on ``example`` must match the model's (else
    :class:`ExportError`).  Returns the file written (``path`` with the format's suffix)."""
    if format not in EXPORT_SUFFIXES:
        raise ValueError(
            f"unknown export format {format!r}; available: {', '.join(EXPORT_SUFFIXES)}"
        )
    target = path if path.suffix == EXPORT_SUFFIXES[format] else path.with_suffix(
        EXPORT_SUFFIXES[format]
    )
    with torch.no_grad():
        expected = model(example)
        writer, reader = _EXPORTERS[format]
        try:
            with warnings.catch_warnings():
                # torch's exporters warn about their own internals; nothing a user can act on
                warnings.simplefilter("ignore", FutureWarning)
                writer(model, example, target)
        except Exception as error:
            raise ExportError(f"{format} export failed: {type(error).__name__}: {error}") from error
        actual = reader(target, example)
    if not torch.allclose(actual, expected, rtol=1e-4, atol=1e-5):
        difference = float((actual - expected).abs().max())
        raise ExportError(
            f"{format} export at {target} does not reproduce the model: "
            f"largest difference {difference:.3g}"
        )
    return target


def _batch_dimension() -> dict[int, Any]:
    return {0: torch.export.Dim.DYNAMIC}


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.jit.trace(model, example).save(str(path))


def _read_torchscript(path: Path, example: torch.Tensor) -> torch.Tensor:
    result: torch.Tensor = torch.jit.load(str(path), map_location="cpu")(example)
    return result


def _write_pt2(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=(_batch_dimension(),))
    torch.export.save(program, str(path))


def _read_pt2(path: Path, example: torch.Tensor) -> torch.Tensor:
    result: torch.Tensor = torch.export.load(str(path)).module()(example)
    return result


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ExportError(
            "ONNX export needs the onnx extra: pip install 'hookline[onnx]'"
        ) from error
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        torch.onnx.export(
            model, (example,), str(path), dynamo=True, verbose=False,
            input_names=["input"], output_names=["output"],
            dynamic_shapes=(_batch_dimension(),),
        )
    finally:
        quiet.setLevel(level)


def _read_onnx(path: Path, example: torch.Tensor) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError as error:
        raise ExportError("checking an ONNX export needs onnxruntime (the onnx extra)") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": example.numpy()})
    return torch.from_numpy(output)


_EXPORTERS: dict[
    str,
    tuple[
        Callable[[nn.Module, torch.Tensor, Path], None],
        Callable[[Path, torch.Tensor], torch.Tensor],
    ],
] = {
    "torchscript": (_write_torchscript, _read_torchscript),
    "pt2": (_write_pt2, _read_pt2),
    "onnx": (_write_onnx, _read_onnx),
}
