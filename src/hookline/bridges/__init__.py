"""Bridges: hookline's plugins inside trainers hookline does not own.

* :mod:`~hookline.bridges.loop`: :class:`~hookline.bridges.loop.HookLoop`, the public API
  with which a hand-written training loop fires the catalog's hooks; every bridge below is a
  thin translation of its host's events onto it.
* :mod:`~hookline.bridges.hf`: ``HooklineCallback``, a ``transformers.TrainerCallback``.
* :mod:`~hookline.bridges.lightning`: ``HooklineCallback``, a ``lightning.pytorch.Callback``.
* :mod:`~hookline.bridges.keras`: ``HooklineCallback``, a ``keras.callbacks.Callback`` (Keras
  3 on the torch and JAX backends).

Each host module imports its host, and only it does (``tests/test_layers.py``).  Plugins see
the same :class:`hookline.TrainingRun` and :class:`hookline.StateTask` everywhere, so a plugin
written once runs in each of them unchanged.
"""
