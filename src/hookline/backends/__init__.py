"""Framework adapters: the only place hookline imports an ML framework.

Each backend package (``torch``, ``jax``) implements the Task protocol
(:class:`hookline.engine.task.Task`) for its framework; the engine and the built-in plugins
reach a framework through that protocol alone.  Modules directly in this package
(``host_random``, ``arrays``, ``batches``, ``digits``) are shared by the backends; one backend
never imports another, and nothing imports a backend eagerly.
"""
