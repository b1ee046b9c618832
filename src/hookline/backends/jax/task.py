""":class:`JaxTask`: a Flax NNX model with an Optax optimizer behind the Task protocol.

The model is split once into pytrees (parameters, other state such as random keys and batch
statistics) and every step is a pure function of them compiled with :func:`jax.jit`.  A step
is one compiled call, as in a hand-written JAX loop: the batch's loss and gradients and, when
the engine's optimizer step is due next, the update they make, which
:meth:`~JaxTask.optimizer_step` then adopts without computing anything.  A run compiles one
training program, and losses never leave the device between log intervals.

Data is any iterable of ``(inputs, targets)`` batches of NumPy or JAX arrays (for instance
:class:`hookline.backends.arrays.ArrayBatches`), ``{"inputs": ..., "targets": ...}`` dicts,
or bare inputs for prediction.

Across processes (launched by torchrun, JAX's distributed runtime started first: see
:mod:`hookline.backends.jax.distributed`) the state is replicated on every device, each
training batch is one global array made of every process's share (an
:class:`~hookline.backends.arrays.ArrayBatches` is split by
:class:`~hookline.backends.arrays.ProcessShare`, its batch size being the global batch), and
the compiled step computes the global batch's loss and gradients, so that every process holds
the same weights as one process trained on the same global batches.  Evaluation and
prediction run the whole set on every process (a replicated computation: no process waits for
another, and the metrics, stateful ones included, are those of one process).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hookline.backends.arrays import ArrayBatches
from hookline.backends.batches import batch_parts
from hookline.backends.host_random import python_numpy_random_state, set_python_numpy_random_state
from hookline.backends.host_tree import copy_tree, leaves
from hookline.backends.jax import export as jax_export
from hookline.backends.jax.distributed import Processes, local_copy, running_processes
from hookline.backends.msgpack_payload import load_payload, save_payload
from hookline.distributed import env_world_size
from hookline.engine.task import Stage, StatefulMetric, split_metrics
from hookline.errors import UserError

LossFn = Callable[[jax.Array, Any], jax.Array]
MetricFn = Callable[[jax.Array, Any], jax.Array]
Leaves = list[Any]

#: Values summed by one call of the compiled weighted sum (see :meth:`JaxTask.weighted_sum`).
SUM_ARITY = 64


class TaskSettingError(UserError, ValueError):
    """A :class:`JaxTask` argument that cannot be used here."""


def accuracy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Share of rows whose highest-scoring class is the target (stays on the device)."""
    return jnp.mean(jnp.argmax(outputs, axis=-1) == targets)


def cross_entropy(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of logits against integer class labels."""
    return optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _span(distributed: bool | str) -> Processes | None:
    """The processes a task spans: ``None`` for one process."""
    if distributed not in (True, False, "auto"):
        raise TaskSettingError(f"distributed must be 'auto', True or False, got {distributed!r}")
    if distributed is False:
        return None
    if running_processes() > 1:
        return Processes()
    if distributed is True or env_world_size() > 1:
        raise TaskSettingError(
            f"this JaxTask should span {max(env_world_size(), 2)} processes, but JAX's "
            "distributed runtime is not running: call "
            "hookline.backends.jax.initialize_distributed() before the model is built"
        )
    return None


def _learning_rate_paths(opt_state: Any) -> list[int]:
    """Positions, among the optimizer state's leaves, of ``optax.inject_hyperparams``'
    ``learning_rate`` (one per injected transformation, in order)."""
    positions = []
    for index, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(opt_state)[0]):
        names = [getattr(entry, "key", getattr(entry, "name", None)) for entry in path]
        if "hyperparams" in names and names[-1] == "learning_rate":
            positions.append(index)
    return positions


class JaxTask:
    """A Flax NNX model with its loss and Optax optimizer, driven by the hookline engine.

    :param model: the ``flax.nnx.Module`` to train (its random streams, e.g. for dropout,
        live in the model as ``nnx.Rngs`` and are saved with it).
    :param loss: ``loss(outputs, targets)`` returning a scalar (traced under ``jax.jit``).
    :param optimizer: an ``optax.GradientTransformation``.  To schedule the learning rate
        (the LR schedule plugin sets it between steps) or report it, build it with
        ``optax.inject_hyperparams(optax.adamw)(learning_rate=...)``, which exposes the rate
        to plugins; a plain one (``optax.adamw(1e-3)``) keeps it to itself, and compiles a
        smaller training step.
    :param metrics: name to ``f(outputs, targets) -> scalar``, computed on the device inside
        the compiled evaluation and averaged over samples; or to a stateful metric with
        ``update``/``compute``/``reset`` (updated with each batch's outputs, computed once
        over the whole set: right for F1, AUC, ...); reported in validation as
        ``val/<name>`` next to ``val/loss``.
    :param accumulate_grad_batches: accumulate gradients over this many batches per step.
    :param grad_clip_norm: clip the gradients' global norm to this value before each step
        (as ``torch.nn.utils.clip_grad_norm_`` does).
    :param postprocess: applied to the model's outputs in prediction, inside the compiled call.
    :param example_input: an input batch used to check exports; by default the first batch the
        task sees.
    :param distributed: ``"auto"`` spans the processes of JAX's distributed runtime when it
        runs with more than one (a launch with ``WORLD_SIZE`` > 1 without it is refused:
        start it with :func:`~hookline.backends.jax.distributed.initialize_distributed`
        before building the model); ``False`` keeps to this process.

    The trained module is :attr:`model` (the object passed in, brought up to date when read).
    Across processes, the weights every process starts from are process zero's, every
    process must make the same calls (a plugin that computes on the device, such as one that
    reads the gradient norm, runs on every process), and :attr:`rank` and
    :attr:`world_size` are JAX's process index and count.
    """

    export_formats = tuple(jax_export.EXPORT_SUFFIXES)
    #: The running means of the loss sum as many values as the compiled sum takes at once.
    values_per_sum = SUM_ARITY
    checkpoint_format = "jax-msgpack"
    rank = 0
    world_size = 1

    def __init__(
        self,
        model: nnx.Module,
        loss: LossFn,
        optimizer: optax.GradientTransformation | None = None,
        *,
        metrics: Mapping[str, MetricFn | StatefulMetric] | None = None,
        accumulate_grad_batches: int = 1,
        grad_clip_norm: float | None = None,
        postprocess: Callable[[jax.Array], Any] | None = None,
        example_input: Any = None,
        distributed: bool | str = "auto",
    ) -> None:
        if accumulate_grad_batches < 1:
            raise TaskSettingError(
                f"accumulate_grad_batches must be >= 1, got {accumulate_grad_batches}"
            )
        if grad_clip_norm is not None and not grad_clip_norm > 0:
            raise TaskSettingError(f"grad_clip_norm must be > 0, got {grad_clip_norm}")
        self._module = model
        self.loss = loss
        self.optimizer = optimizer
        self.metrics = dict(metrics or {})
        self._functions, self._stateful = split_metrics(self.metrics)
        self.accumulate_grad_batches = accumulate_grad_batches
        self.grad_clip_norm = grad_clip_norm
        self.postprocess = postprocess
        self.example_input = example_input
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]
        self._graphdef = graphdef
        self._params_template, self._rest_template = params, rest
        self._params, self._params_def = jax.tree_util.tree_flatten(params)
        self._rest, self._rest_def = jax.tree_util.tree_flatten(rest)
        self._processes = _span(distributed)
        self._shares: dict[int, Any] = {}
        if self._processes is not None:
            self.rank, self.world_size = self._processes.rank, self._processes.world_size
            self._params = self._processes.replicate(self._params, from_rank_zero=True)
            self._rest = self._processes.replicate(self._rest, from_rank_zero=True)
        self._opt_state: Leaves | None = None
        self._opt_def: Any = None
        self._lr_positions: list[int] = []
        self._lrs: list[float] = []
        self._grads: Leaves | None = None  # accumulated since the last zero_grad
        #: Whether each training step also computes the gradients' global norm (turned on
        #: by the first :meth:`gradient_norm`), and the norm the last step computed.
        self._track_norm = False
        self._grad_norm: jax.Array | None = None
        self._batches = 0  # how many batches' gradients _grads holds
        #: The parameters and optimizer state that the accumulated gradients update to, as the
        #: last training step computed them for the optimizer step due next; None when none
        #: was computed or something it depends on changed since (the rates, the state).
        self._next: tuple[Leaves, Leaves] | None = None
        self._compiled: dict[str, Callable[..., Any]] = {}

    # -- the module and its pytrees --------------------------------------------------------------

    @property
    def model(self) -> nnx.Module:
        """The module, holding the current parameters and state."""
        params = jax.tree_util.tree_unflatten(self._params_def, self._params)
        rest = jax.tree_util.tree_unflatten(self._rest_def, self._rest)
        nnx.update(self._module, params, rest)
        return self._module

    def _merge(self, params: Leaves, rest: Leaves, training: bool) -> nnx.Module:
        """The module rebuilt from leaves, inside a traced function."""
        module = nnx.merge(
            self._graphdef,
            jax.tree_util.tree_unflatten(self._params_def, params),
            jax.tree_util.tree_unflatten(self._rest_def, rest),
        )
        if training:
            module.train()
        else:
            module.eval()
        return module

    # -- compiled functions (pure; built once per task) -------------------------------------------

    def _update(
        self, params: Leaves, opt_state: Leaves, grads: Leaves
    ) -> tuple[Leaves, Leaves]:
        if self.grad_clip_norm is not None:
            norm = optax.tree.norm(grads)
            factor = jnp.minimum(1.0, self.grad_clip_norm / (norm + 1e-6))
            grads = [leaf * factor for leaf in grads]
        assert self.optimizer is not None
        tree = partial(jax.tree_util.tree_unflatten, self._params_def)
        state = jax.tree_util.tree_unflatten(self._opt_def, opt_state)
        updates, state = self.optimizer.update(tree(grads), state, tree(params))
        params = optax.apply_updates(tree(params), updates)
        return jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state)

    def _train_step(
        self, params: Leaves, rest: Leaves, opt_state: Leaves, grads: Leaves,
        inputs: Any, targets: Any, *, fresh: bool, update: bool, norm: bool,
    ) -> tuple[jax.Array, Leaves, Leaves, jax.Array | None, tuple[Leaves, Leaves] | None]:
        """One training step as one compiled call: the batch's loss and gradients, which
        replace ``grads`` when ``fresh`` (the first batch since a ``zero_grad``; ``grads`` is
        then any leaves shaped like them) and are added to them otherwise; with ``norm``, the
        accumulated gradients' global norm; with ``update``, the parameters and optimizer state
        those gradients update to (the optimizer step is due after this batch), as a raw
        jitted loop computes them in its one step.  The choices are static: nothing per step
        decides on the device (a traced choice doubled a small model's step time on the CPU).
        With one batch per optimizer step a run compiles one variant."""
        module = self._merge(params, rest, training=True)

        def loss_of(candidate: nnx.Module) -> jax.Array:
            return self.loss(candidate(inputs), targets)

        loss, new = nnx.value_and_grad(loss_of)(module)
        scale = 1.0 / self.accumulate_grad_batches
        leaves = [leaf * scale for leaf in jax.tree_util.tree_leaves(new)]
        if not fresh:
            leaves = [old + leaf for old, leaf in zip(grads, leaves, strict=True)]
        rest = jax.tree_util.tree_leaves(nnx.state(module, nnx.Not(nnx.Param)))
        following = self._update(params, opt_state, leaves) if update else None
        return loss, rest, leaves, optax.tree.norm(leaves) if norm else None, following

    def _evaluate(
        self, params: Leaves, rest: Leaves, inputs: Any, targets: Any
    ) -> tuple[dict[str, jax.Array], jax.Array]:
        outputs = self._merge(params, rest, training=False)(inputs)
        results = {"loss": self.loss(outputs, targets).astype(jnp.float32)}
        for name, function in self._functions.items():
            results[name] = jnp.asarray(function(outputs, targets), jnp.float32)
        return results, outputs

    def _predict(self, params: Leaves, rest: Leaves, inputs: Any) -> Any:
        outputs = self._merge(params, rest, training=False)(inputs)
        return self.postprocess(outputs) if self.postprocess is not None else outputs

    def _compile(self, name: str) -> Callable[..., Any]:
        if name not in self._compiled:
            # the compiled functions hold the task weakly: the task holds them, and a cycle
            # would keep the task (its arrays, its compiled programs) alive after its last
            # reference went, until Python's cycle collector happened to run
            task, kind = weakref.proxy(self), type(self)
            functions: dict[str, Callable[..., Any]] = {
                "train": partial(kind._train_step, task),
                "update": partial(kind._update, task),
                "evaluate": partial(kind._evaluate, task),
                "predict": partial(kind._predict, task), "norm": optax.tree.norm,
            }
            static = ("fresh", "update", "norm") if name == "train" else ()
            if self._processes is None:
                self._compiled[name] = jax.jit(functions[name], static_argnames=static)
            else:  # everything a step returns is the same on every device
                self._compiled[name] = jax.jit(
                    functions[name], static_argnames=static,
                    out_shardings=self._processes.replicated,
                )
        return self._compiled[name]

    def __getstate__(self) -> dict[str, Any]:
        """A copy compiles its own functions: those compiled here trace this task."""
        return {**self.__dict__, "_compiled": {}}

    # -- set-up --------------------------------------------------------------------------------

    def setup(self, stage: Stage) -> None:
        # again at each phase, so that metrics added to the dict in between count
        functions, self._stateful = split_metrics(self.metrics)
        if functions != self._functions:
            self._compiled.pop("evaluate", None)  # the compiled evaluation computes them
            self._functions = functions
        if stage == "fit":
            self._ensure_optimizer()

    def teardown(self) -> None:
        """Across processes, wait for every process (so that JAX's shutdown, at exit, never
        waits for process zero's last files)."""
        if self._processes is not None:
            self._shares.clear()
            self._processes.barrier("hookline-teardown")

    def abort(self) -> None:
        """Nothing to do, and no collective: another process may never join it (JAX's runtime
        ends the processes of a failed run, see :mod:`hookline.backends.jax.distributed`)."""

    def _ensure_optimizer(self) -> None:
        if self._opt_state is not None:
            return
        if self.optimizer is None:
            raise ValueError("this JaxTask has no optimizer: it cannot be trained")
        params = jax.tree_util.tree_unflatten(self._params_def, self._params)
        state = self.optimizer.init(params)
        self._opt_state, self._opt_def = jax.tree_util.tree_flatten(state)
        if self._processes is not None:
            self._opt_state = self._processes.replicate(self._opt_state)
        self._lr_positions = _learning_rate_paths(state)
        self._lrs = [self.to_float(self._opt_state[index]) for index in self._lr_positions]

    def shard(self, data: Iterable[Any], epoch: int | None) -> Iterable[Any]:
        """In one process, ``data`` itself.  Across processes, for training (``epoch``
        given), this process's :class:`~hookline.backends.arrays.ProcessShare` of an
        :class:`~hookline.backends.arrays.ArrayBatches` (any other iterable is taken as this
        process's share already); evaluation data whole (every process evaluates all of it).

        :raises TaskSettingError: when the batch size is no multiple of the process count.
        """
        if self._processes is None or epoch is None or not isinstance(data, ArrayBatches):
            return data
        if id(data) not in self._shares:
            try:
                self._shares[id(data)] = data.share(self.rank, self.world_size)
            except ValueError as error:
                raise TaskSettingError(str(error)) from None
        return self._shares[id(data)]

    def weighted_sum(self, values: Sequence[Any], weights: Sequence[int]) -> Any:
        """One compiled call per :data:`SUM_ARITY` values, not an operation per value (eager
        ``jnp.stack`` of fifty scalars costs fifty dispatches, most of a log interval).  A
        shorter list is padded with its own first value at weight zero (masked out, so that
        an infinite loss stays infinite), so that every call has the same arguments, placed
        alike: the sum is compiled once per process, whatever the log interval, the epoch's
        length or the validation set's."""
        total: Any = np.float32(0.0) if not values else None
        for start in range(0, len(values), SUM_ARITY):
            chunk = list(values[start:start + SUM_ARITY])
            chunk_weights = np.zeros(SUM_ARITY, np.float32)
            chunk_weights[:len(chunk)] = weights[start:start + SUM_ARITY]
            chunk += [chunk[0]] * (SUM_ARITY - len(chunk))
            partial = _weighted_sum(chunk, chunk_weights)
            total = partial if total is None else total + partial
        return total

    def reduce_sum(self, value: Any) -> Any:
        """``value`` summed over the processes (a collective: every process calls it); itself
        in one process."""
        return value if self._processes is None else self._processes.sum(value)

    def train_mode(self, enabled: bool) -> None:
        """Nothing to switch: training steps always run the module in training mode,
        evaluation and prediction in evaluation mode (each compiled with its mode)."""

    # -- batches -------------------------------------------------------------------------------

    def _inputs_targets(self, batch: Any) -> tuple[Any, Any]:
        inputs, targets = batch_parts(batch)
        if self.example_input is None:
            self.example_input = np.asarray(inputs[:2])
        return inputs, targets

    def batch_size(self, batch: Any) -> int:
        inputs, _ = batch_parts(batch)
        return int(inputs.shape[0]) if hasattr(inputs, "shape") else len(inputs)

    # -- steps ---------------------------------------------------------------------------------

    def training_step(self, batch: Any) -> jax.Array:
        """The batch's loss; its gradients are computed in the same compiled call and added to
        those accumulated (:meth:`backward` has nothing left to do), and so is the update they
        make when this batch completes an optimizer step (every ``accumulate_grad_batches``
        batches since the last :meth:`zero_grad`)."""
        inputs, targets = self._inputs_targets(batch)
        if self._processes is not None:  # every process's share, one global batch
            inputs, targets = (self._processes.global_rows(inputs),
                               self._processes.global_rows(targets))
        if self._opt_state is None:
            self._ensure_optimizer()
        fresh = self._grads is None
        self._batches = 1 if fresh else self._batches + 1
        update = self._batches % self.accumulate_grad_batches == 0
        loss, self._rest, self._grads, self._grad_norm, self._next = self._compile("train")(
            self._params, self._rest, self._opt_state,
            self._params if fresh else self._grads,  # shaped like them
            inputs, targets, fresh=fresh, update=update, norm=self._track_norm,
        )
        return loss

    def backward(self, loss: Any) -> None:
        """Nothing to do: :meth:`training_step` computed and accumulated the gradients (JAX
        differentiates functions, not recorded values)."""

    def unscale_gradients(self) -> None:
        return None  # no loss scaling: the gradients are final as they are

    def optimizer_step(self) -> None:
        """Update the parameters from the accumulated gradients (clipped first when
        ``grad_clip_norm`` is set): the update the last training step computed, when it did
        and nothing it depends on changed since (no computation then); otherwise computed now
        in a compiled call of its own (an optimizer step before the batches it was due after,
        new learning rates set in between)."""
        self._ensure_optimizer()
        if self._grads is None:
            return  # no gradient since the last step
        if self._next is None:
            assert self._opt_state is not None
            self._next = self._compile("update")(self._params, self._opt_state, self._grads)
        self._params, self._opt_state = self._next
        self._next = None

    def zero_grad(self) -> None:
        self._grads, self._batches, self._next = None, 0, None

    def validation_step(self, batch: Any) -> dict[str, jax.Array]:
        inputs, targets = self._inputs_targets(batch)
        if self._processes is not None:  # the same batch on every process
            inputs, targets = (self._processes.global_copy(inputs),
                               self._processes.global_copy(targets))
        results: dict[str, jax.Array]
        results, outputs = self._compile("evaluate")(self._params, self._rest, inputs, targets)
        for metric in self._stateful.values():
            metric.update(outputs, targets)
        return results

    def reset_metrics(self) -> None:
        """Clear the stateful metrics before a validation run."""
        for metric in self._stateful.values():
            metric.reset()

    def compute_metrics(self) -> dict[str, Any]:
        """Each stateful metric over the whole run."""
        return {name: metric.compute() for name, metric in self._stateful.items()}

    def predict_step(self, batch: Any) -> Any:
        inputs, _ = self._inputs_targets(batch)
        if self._processes is not None:
            inputs = self._processes.global_copy(inputs)
        return self._compile("predict")(self._params, self._rest, inputs)

    def detach(self, value: Any) -> Any:
        return value  # JAX values carry no autograd history

    def is_ready(self, value: Any) -> bool:
        """Whether ``value`` is computed: JAX queues each step and returns at once, so the
        trainer asks before reading a loss rather than stall the queue (any other value is
        ready)."""
        ready = getattr(value, "is_ready", None)  # a concrete array's (not in jax.Array's type)
        return ready is None or bool(ready())

    def to_float(self, value: Any) -> float:
        """One explicit device-to-host transfer (``jax.device_get``): under
        ``jax.transfer_guard_device_to_host("disallow")`` it is the only one allowed."""
        return float(jax.device_get(value))

    # -- learning rates ----------------------------------------------------------------------

    def _check_injected(self) -> None:
        self._ensure_optimizer()
        if not self._lr_positions:
            raise TaskSettingError(
                "the optimizer does not expose its learning rate: build it with "
                "optax.inject_hyperparams, e.g. optax.inject_hyperparams(optax.adamw)"
                "(learning_rate=1e-3)"
            )

    def _by_name(self, leaves: Leaves) -> dict[str, Any]:
        """Leaves shaped like the parameters, by path (``['hidden']['kernel']``)."""
        tree = jax.tree_util.tree_unflatten(self._params_def, leaves)
        flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(tree))[0]
        return {jax.tree_util.keystr(path): value for path, value in flat}

    def parameters(self) -> dict[str, Any]:
        """The ``nnx.Param`` leaves by path (``['hidden']['kernel']``), as device arrays."""
        return self._by_name(self._params)

    def gradients(self) -> dict[str, Any]:
        """The gradients accumulated since the last step, by the parameters' paths: the arrays
        the compiled step already returned (no copy, no computation); empty before the first
        step."""
        return {} if self._grads is None else self._by_name(self._grads)

    def gradient_norm(self) -> jax.Array:
        """The accumulated gradients' global norm, a device scalar.  The first call computes
        it in one compiled call and asks every later training step to compute it inside its
        own compiled call, so that reading it costs no operation per step from Python."""
        if self._grads is None:
            return jnp.zeros(())
        if not self._track_norm or self._grad_norm is None:
            self._track_norm = True
            return self._compile("norm")(self._grads)
        return self._grad_norm

    def learning_rates(self) -> list[float]:
        """The ``learning_rate`` of each ``optax.inject_hyperparams`` transformation (kept on
        the host as well, so reading it costs no transfer); none for an optimizer that keeps
        its rate to itself (a plain ``optax.adamw(1e-3)``), which
        :meth:`set_learning_rates` then refuses, saying how to expose it."""
        self._ensure_optimizer()
        return list(self._lrs)

    def set_learning_rates(self, rates: Sequence[float]) -> None:
        """Set the injected learning rates; the next optimizer step applies them (an update
        computed before, under the old rates, is dropped)."""
        self._check_injected()
        if len(rates) != len(self._lr_positions):
            raise ValueError(
                f"{len(rates)} learning rates for {len(self._lr_positions)} injected ones"
            )
        self._next = None
        assert self._opt_state is not None
        for index, rate in zip(self._lr_positions, rates, strict=True):
            self._opt_state[index] = jnp.asarray(rate, dtype=self._opt_state[index].dtype)
            if self._processes is not None:  # the same rate on every process
                self._opt_state[index] = self._processes.replicate([self._opt_state[index]])[0]
        self._lrs = [float(rate) for rate in rates]

    # -- state ---------------------------------------------------------------------------------

    def random_state(self, data: Iterable[Any]) -> dict[str, Any]:
        """Python's and NumPy's generators, and the shuffle position of ``data`` when it has
        one (``state_dict()``, as :class:`~hookline.backends.arrays.ArrayBatches`).  JAX's
        keys live in the model (``nnx.Rngs``) and are saved with its state."""
        state = python_numpy_random_state()
        if callable(getattr(data, "state_dict", None)):
            state["data"] = data.state_dict()  # type: ignore[attr-defined]
        return state

    def set_random_state(self, state: Mapping[str, Any], data: Iterable[Any] | None) -> None:
        set_python_numpy_random_state(state)
        if data is not None and "data" in state:
            data.load_state_dict(state["data"])  # type: ignore[attr-defined]

    def save_checkpoint(self, checkpoint: Mapping[str, Any]) -> bytes:
        """MessagePack with arrays as raw bytes (see :mod:`hookline.backends.msgpack_payload`);
        JAX arrays reach the host by an explicit ``jax.device_get``."""
        return save_payload(checkpoint, _to_host)

    def load_checkpoint(self, data: bytes, source: str) -> dict[str, Any]:
        """Reads arrays as bytes into NumPy: nothing in the file can run code."""
        return load_payload(data, source)

    def write_checkpoint(self, checkpoint: Mapping[str, Any], file: IO[bytes]) -> None:
        """:meth:`save_checkpoint`'s bytes, written to ``file``."""
        file.write(save_payload(checkpoint, _to_host))

    def host_copy(self, checkpoint: Mapping[str, Any]) -> dict[str, Any]:
        """``checkpoint`` with every JAX array brought to the host (``jax.device_get``, all
        transfers started before the first is collected) and NumPy arrays and other values
        copied, for a background write.  A JAX array already on the CPU comes back as a
        read-only view of its buffer, no copy: JAX never changes a buffer that a view holds
        (a donation to a compiled step copies instead)."""
        for leaf in leaves(checkpoint):
            if isinstance(leaf, jax.Array) and leaf.is_fully_addressable:
                leaf.copy_to_host_async()
        copied: dict[str, Any] = copy_tree(dict(checkpoint), _to_host)  # as save_checkpoint
        return copied

    def state_dict(self) -> dict[str, Any]:
        """``model``: parameters and other state as nested dicts of arrays (random keys as
        their raw key data, plain arrays that copy and save like any other); ``optimizer``:
        the Optax state's leaves in pytree order."""
        params = jax.tree_util.tree_unflatten(self._params_def, self._params)
        rest = jax.tree_util.tree_unflatten(self._rest_def, self._rest)
        state: dict[str, Any] = {
            "model": {
                "params": nnx.to_pure_dict(params),
                "state": jax.tree_util.tree_map(_plain_key, nnx.to_pure_dict(rest)),
            }
        }
        if self._opt_state is not None:
            state["optimizer"] = list(self._opt_state)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (arrays from a checkpoint are NumPy);
        shapes must match the model's.

        :raises ValueError: naming the first array whose shape differs.
        """
        self.load_model_state(state["model"])
        if "optimizer" in state:
            self._ensure_optimizer()
            assert self._opt_state is not None
            saved = list(state["optimizer"])
            if len(saved) != len(self._opt_state):
                raise ValueError(
                    f"the optimizer state has {len(saved)} arrays; this optimizer has "
                    f"{len(self._opt_state)}"
                )
            self._opt_state = [
                _as_leaf(value, template, f"optimizer[{index}]")
                for index, (value, template) in enumerate(zip(saved, self._opt_state, strict=True))
            ]
            if self._processes is not None:
                self._opt_state = self._processes.replicate(self._opt_state)
            self._lrs = [self.to_float(saved[index]) for index in self._lr_positions]
        elif self.optimizer is not None:
            warnings.warn(
                "the checkpoint holds no optimizer state: the optimizer starts afresh (its "
                "moments and step counts are lost)", stacklevel=2,
            )

    def load_model_state(self, state: Mapping[str, Any]) -> None:
        """Restore the model alone (``state_dict()["model"]``), leaving the optimizer as it
        is: for a task that only validates, predicts or exports."""
        self._params = self._restore(self._params_template, state["params"], "params")
        self._rest = self._restore(self._rest_template, state["state"], "state")
        if self._processes is not None:  # every process loaded the same checkpoint
            self._params = self._processes.replicate(self._params)
            self._rest = self._processes.replicate(self._rest)
        self._grads, self._batches, self._next = None, 0, None

    def _restore(
        self, template: nnx.State[Any, Any], saved: Mapping[str, Any], part: str
    ) -> Leaves:
        paths = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(template))[0]
        values = jax.tree_util.tree_flatten_with_path(saved)[0]
        if [path for path, _ in paths] != [path for path, _ in values]:
            raise ValueError(f"the saved model {part} do not have this model's structure")
        return [
            _as_leaf(value, leaf, f"{part}{jax.tree_util.keystr(path)}")
            for (path, leaf), (_, value) in zip(paths, values, strict=True)
        ]

    # -- export --------------------------------------------------------------------------------

    def export(self, format: str, path: Path) -> Path:
        """Serialized StableHLO through ``jax.export``, loaded back and checked (see
        :func:`~hookline.backends.jax.export.export_function`)."""
        if self.example_input is None:
            raise jax_export.ExportError(
                "export needs an example input: pass example_input= to JaxTask"
            )
        # this process's copies: an export is one process's work
        params, rest = [local_copy(p) for p in self._params], [local_copy(r) for r in self._rest]

        def forward(inputs: jax.Array) -> jax.Array:
            return self._merge(params, rest, training=False)(inputs)

        return jax_export.export_function(forward, np.asarray(self.example_input), format, path)


@jax.jit
def _weighted_sum(values: list[Any], weights: jax.Array) -> jax.Array:
    stacked = jnp.stack([jnp.reshape(value, ()).astype(jnp.float32) for value in values])
    return jnp.dot(jnp.where(weights > 0, stacked, 0.0), weights)


def _plain_key(leaf: Any) -> Any:
    """A typed PRNG key as its raw key data; any other leaf as it is."""
    return jax.random.key_data(leaf) if _is_key(leaf) else leaf


def _as_leaf(value: Any, template: Any, where: str) -> Any:
    """``value`` (a saved array) as a device array shaped and typed like ``template``."""
    array = np.asarray(jax.device_get(value))  # explicit: a saved state may be on the device
    if _is_key(template):
        expected = jax.random.key_data(template)
        if array.shape != expected.shape:
            raise ValueError(f"{where}: saved key data of shape {array.shape}, expected "
                             f"{expected.shape}")
        return jax.random.wrap_key_data(
            jnp.asarray(array, expected.dtype), impl=jax.random.key_impl(template)
        )
    if array.shape != template.shape:
        raise ValueError(f"{where}: saved shape {array.shape}, this model has {template.shape}")
    return jnp.asarray(array, dtype=template.dtype)


def _to_host(value: Any) -> np.ndarray[Any, Any] | None:
    """A JAX array as a NumPy array, by an explicit transfer; ``None`` for anything else."""
    return np.asarray(jax.device_get(value)) if isinstance(value, jax.Array) else None
