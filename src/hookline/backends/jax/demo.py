"""The digits demo on JAX: ``hookline train recipe=digits-jax``.

The same data, split, settings and MLP shape as the PyTorch demo (see
:mod:`hookline.backends.digits`), as a Flax NNX module trained with Optax's AdamW; batches are
:class:`~hookline.backends.arrays.ArrayBatches`, so no torch is needed.  The model code is in
:mod:`hookline.backends.jax.digits_model`, imported when the recipe builds it: declaring the
settings (``hookline settings recipe=digits-jax``) imports no JAX.

Under torchrun (``torchrun --nproc_per_node=2 -m hookline train recipe=digits-jax``) the
recipe starts JAX's distributed runtime before it builds anything (see
:func:`hookline.backends.jax.distributed.initialize_distributed`); ``batch`` is then the
global batch, each process feeding ``batch / processes`` rows of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hookline.backends.digits import DigitsSettings
from hookline.settings import Settings

if TYPE_CHECKING:
    from hookline.backends.arrays import ArrayBatches
    from hookline.backends.jax.task import JaxTask


def _start_runtime() -> None:
    """JAX's distributed runtime, when the launch has several processes: before any JAX
    computation, so before the model is built."""
    from hookline.backends.jax.distributed import initialize_distributed

    initialize_distributed()


class DigitsRecipe(DigitsSettings):
    """The demo recipe on JAX: an MLP classifier on ``data`` (the digits by default), on the
    default JAX device, or across the processes torchrun launched; see
    :mod:`hookline.recipe`."""

    def task(self, settings: Settings) -> JaxTask:
        """An untrained MLP sized for the features and classes of ``data``."""
        _start_runtime()
        from hookline.backends.jax.digits_model import make_task

        n_features, n_classes = self.shape(settings)
        return make_task(settings, n_features, settings["hidden"], n_classes)

    def task_from_weights(self, settings: Settings, state: Mapping[str, Any]) -> JaxTask:
        """A task holding the saved model ``state`` (its shape is read from the weights)."""
        _start_runtime()
        from hookline.backends.jax.digits_model import make_task, mlp_shape

        n_features, hidden, n_classes = mlp_shape(state["model"]["params"])
        self.check_shape(settings, n_features, n_classes)
        task = make_task(settings, n_features, hidden, n_classes)
        task.load_model_state(state["model"])
        return task

    def data(self, settings: Settings) -> tuple[ArrayBatches, ArrayBatches]:
        """Training batches reshuffled each epoch, and validation batches, over a seeded split
        of ``data``."""
        _start_runtime()
        from hookline.backends.jax.digits_model import batches

        train, val = self.split_arrays(settings)
        return batches(settings, train, val)

    def predict_inputs(self, settings: Settings, source: str) -> ArrayBatches:
        """Input batches from ``source`` (see :meth:`DigitsSettings.predict_arrays`)."""
        from hookline.backends.arrays import ArrayBatches

        return ArrayBatches(self.predict_arrays(settings, source), batch_size=256)
