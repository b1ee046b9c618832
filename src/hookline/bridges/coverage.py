"""Which catalog hooks each host cannot fire, and why: declared here, without importing any
host, so that ``hookline hooks --markdown`` (docs/hooks.md) shows a column per host and each
bridge warns a plugin that implements one of them (:attr:`HookLoop.unsupported`).

A hook missing from a host's table fires there with the meaning the catalog gives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_EXPORT_AND_PREDICT = {
    "on_predict_start": "the bridge covers training; predict with the host",
    "on_predict_batch_start": "the bridge covers training; predict with the host",
    "on_predict_postprocess_end": "the bridge covers training; predict with the host",
    "on_predict_batch_end": "the bridge covers training; predict with the host",
    "on_predict_end": "the bridge covers training; predict with the host",
    "on_export_start": "the bridge covers training; export with the host",
    "on_export_end": "the bridge covers training; export with the host",
}

#: Host (as :data:`HOSTS` names it) -> hook -> why the host cannot fire it.
UNSUPPORTED: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "hf": MappingProxyType({
        **_EXPORT_AND_PREDICT,
        "on_before_backward": "the Trainer gives callbacks no event between loss and backward",
        "on_after_backward": "the Trainer gives callbacks no event after backward",
        "on_val_batch_start": "the Trainer's evaluation loop has no event before a batch "
                              "(on_prediction_step, after one, gives on_val_batch_end)",
    }),
    "lightning": MappingProxyType({
        **_EXPORT_AND_PREDICT,
        "on_load_checkpoint": "Lightning restores its own checkpoints (fit(ckpt_path=...)); "
                              "plugins get their state back through load_state_dict",
    }),
    "keras": MappingProxyType({
        **_EXPORT_AND_PREDICT,
        "on_before_backward": "backward is compiled into Keras's train_function",
        "on_after_backward": "backward is compiled into Keras's train_function",
        "on_before_optimizer_step": "the optimizer step is compiled into Keras's "
                                    "train_function",
        "on_before_zero_grad": "the optimizer step is compiled into Keras's train_function",
    }),
})

#: Host -> how the column is headed in docs/hooks.md.
HOSTS: Mapping[str, str] = MappingProxyType({
    "hf": "Hugging Face",
    "lightning": "Lightning",
    "keras": "Keras",
})
