"""Exporting a JAX model as serialized StableHLO (``jax.export``), loaded back and checked
against the model's own outputs before the file counts as written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from hookline.errors import UserError

EXPORT_SUFFIXES = {"stablehlo": ".stablehlo"}


class ExportError(UserError, RuntimeError):
    """An export could not be written, or its outputs differ from the model's."""


def export_function(
    forward: Callable[[jax.Array], jax.Array], example: np.ndarray, format: str, path: Path
) -> Path:
    """Write ``forward`` (parameters closed over, so stored in the artifact) as ``format`` for
    inputs shaped like ``example`` with any batch size, then load the file back with
    ``jax.export.deserialize`` and compare its outputs on ``example`` with ``forward``'s.
    Returns the file written (``path`` with the format's suffix)."""
    if format not in EXPORT_SUFFIXES:
        raise ValueError(
            f"unknown export format {format!r}; available: {', '.join(EXPORT_SUFFIXES)}"
        )
    target = path if path.suffix == EXPORT_SUFFIXES[format] else path.with_suffix(
        EXPORT_SUFFIXES[format]
    )
    features = ", ".join(str(size) for size in example.shape[1:])
    shape = jax.export.symbolic_shape(f"batch, {features}" if features else "batch")
    spec = jax.ShapeDtypeStruct(shape, example.dtype)
    try:
        exported = jax.export.export(jax.jit(forward))(spec)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(exported.serialize())
        restored = jax.export.deserialize(bytearray(target.read_bytes()))
        got = np.asarray(restored.call(example))
    except Exception as error:  # an export can fail in many framework-specific ways
        raise ExportError(f"{format} export to {target} failed: {error}") from error
    expected = np.asarray(forward(jax.numpy.asarray(example)))
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-5, atol=1e-6):
        raise ExportError(
            f"{format} export {target}: its outputs differ from the model's "
            f"(largest difference {float(np.max(np.abs(got - expected))):.3g})"
        )
    return target
