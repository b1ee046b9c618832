"""The JAX backend (Flax NNX and Optax): jax, flax and optax are imported here and nowhere
else in hookline.

* :mod:`~hookline.backends.jax.task`: :class:`JaxTask`, the Task protocol for a Flax model.
* checkpoint payloads: MessagePack, no pickle (:mod:`hookline.backends.msgpack_payload`).
* :mod:`~hookline.backends.jax.export`: serialized StableHLO, loaded back and checked.
* :mod:`~hookline.backends.jax.demo`: the digits demo on JAX (``hookline train recipe=digits-jax``).

Batches come from any iterable of arrays, e.g. :class:`hookline.backends.arrays.ArrayBatches`.
"""

from hookline.backends.jax.export import ExportError
from hookline.backends.jax.task import JaxTask, TaskSettingError, accuracy, cross_entropy

__all__ = ["ExportError", "JaxTask", "TaskSettingError", "accuracy", "cross_entropy"]
