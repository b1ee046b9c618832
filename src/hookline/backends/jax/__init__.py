"""The JAX backend (Flax NNX and Optax): jax, flax and optax are imported here and nowhere
else in hookline.

* :mod:`~hookline.backends.jax.task`: :class:`JaxTask`, the Task protocol for a Flax model.
* checkpoint payloads: MessagePack, no pickle (:mod:`hookline.backends.msgpack_payload`).
* :mod:`~hookline.backends.jax.export`: serialized StableHLO, loaded back and checked.
* :mod:`~hookline.backends.jax.distributed`: JAX across processes (launched by torchrun),
  :func:`initialize_distributed` first.
* :mod:`~hookline.backends.jax.demo`: the digits demo on JAX (``hookline train recipe=digits-jax``).

Batches come from any iterable of arrays, e.g. :class:`hookline.backends.arrays.ArrayBatches`.
"""

from typing import TYPE_CHECKING

from hookline.lazy import lazy_exports

_EXPORTS = {
    "ExportError": "hookline.backends.jax.export",
    "JaxTask": "hookline.backends.jax.task",
    "TaskSettingError": "hookline.backends.jax.task",
    "initialize_distributed": "hookline.backends.jax.distributed",
    "accuracy": "hookline.backends.jax.task",
    "cross_entropy": "hookline.backends.jax.task",
}
__all__ = [
    "ExportError", "JaxTask", "TaskSettingError", "accuracy", "cross_entropy",
    "initialize_distributed",
]
# JAX loads with the first name used: the demo recipe declares its settings without it
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from hookline.backends.jax.distributed import initialize_distributed
    from hookline.backends.jax.export import ExportError
    from hookline.backends.jax.task import JaxTask, TaskSettingError, accuracy, cross_entropy
