"""``hookline hooks``: the hook catalog, as text or as the reference page docs/hooks.md.

The catalog comes from :mod:`hookline.hookspecs`: its :data:`~hookline.hookspecs.SECTIONS`,
:data:`~hookline.hookspecs.ALIASES` and each hook's docstring and signature.  The text also
lists the hooks that installed plugins declare (custom events), with the plugin of each.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from hookline import hookspecs
from hookline.bridges.coverage import HOSTS, UNSUPPORTED
from hookline.manager import PluginManager

#: Hook names of the frameworks people port callbacks from, next to hookline's:
#: (hookline hook, Ultralytics, Keras, Lightning), "-" where a framework has no such hook.
#: Every hook of the catalog has a row (a test checks it).
PORTING = (
    ("on_pretrain_routine_start", "on_pretrain_routine_start", "-", "setup"),
    ("on_pretrain_routine_end", "on_pretrain_routine_end", "-", "-"),
    ("on_train_start", "on_train_start", "on_train_begin", "on_train_start"),
    ("on_train_epoch_start", "on_train_epoch_start", "on_epoch_begin", "on_train_epoch_start"),
    ("on_train_epoch_end", "on_train_epoch_end", "-", "-"),
    # Lightning's on_train_epoch_end fires after the epoch's validation, like Keras' on_epoch_end
    ("on_fit_epoch_end", "on_fit_epoch_end", "on_epoch_end", "on_train_epoch_end"),
    ("on_train_batch_start", "on_train_batch_start", "on_train_batch_begin",
     "on_train_batch_start"),
    ("on_before_backward", "-", "-", "on_before_backward"),
    ("on_after_backward", "-", "-", "on_after_backward"),
    ("on_before_optimizer_step", "optimizer_step", "-", "on_before_optimizer_step"),
    ("on_params_update", "on_params_update", "-", "-"),
    ("on_before_zero_grad", "on_before_zero_grad", "-", "on_before_zero_grad"),
    ("on_train_batch_end", "on_train_batch_end", "on_train_batch_end", "on_train_batch_end"),
    ("on_save_checkpoint", "-", "-", "on_save_checkpoint"),
    ("on_load_checkpoint", "-", "-", "on_load_checkpoint"),
    ("on_model_save", "on_model_save", "-", "-"),
    ("on_log", "-", "-", "-"),
    ("on_train_end", "on_train_end", "on_train_end", "on_train_end"),
    ("on_exception", "-", "-", "on_exception"),
    ("teardown", "teardown", "-", "teardown"),
    ("on_val_start", "on_val_start", "on_test_begin", "on_validation_start"),
    ("on_val_batch_start", "on_val_batch_start", "on_test_batch_begin",
     "on_validation_batch_start"),
    ("on_val_batch_end", "on_val_batch_end", "on_test_batch_end", "on_validation_batch_end"),
    ("on_val_end", "on_val_end", "on_test_end", "on_validation_end"),
    ("on_predict_start", "on_predict_start", "on_predict_begin", "on_predict_start"),
    ("on_predict_batch_start", "on_predict_batch_start", "on_predict_batch_begin",
     "on_predict_batch_start"),
    ("on_predict_postprocess_end", "on_predict_postprocess_end", "-", "-"),
    ("on_predict_batch_end", "on_predict_batch_end", "on_predict_batch_end",
     "on_predict_batch_end"),
    ("on_predict_end", "on_predict_end", "on_predict_end", "on_predict_end"),
    ("on_export_start", "on_export_start", "-", "-"),
    ("on_export_end", "on_export_end", "-", "-"),
)


def signature(name: str, spec: Callable[..., Any] | None = None) -> str:
    """``name(arg, ...)`` of a hook (of the catalog, unless its specification is given)."""
    function = spec if spec is not None else getattr(hookspecs, name)
    parameters = [p for p in inspect.signature(function).parameters if p != "self"]
    return f"{name}({', '.join(parameters)})"


def documentation(name: str, spec: Callable[..., Any] | None = None) -> str:
    """A hook's docstring, dedented."""
    return inspect.getdoc(spec if spec is not None else getattr(hookspecs, name)) or ""


def hooks_text(manager: PluginManager | None = None) -> str:
    """The catalog for a terminal: each section, each hook's signature and documentation; then
    the hooks that ``manager``'s plugins declared."""
    parts = []
    sections: list[tuple[str, list[tuple[str, Callable[..., Any] | None, str]]]] = [
        (section, [(name, None, "") for name in names]) for section, names in hookspecs.SECTIONS
    ]
    if manager is not None and manager.custom_hooks:
        declared = []
        for name, plugin in sorted(manager.custom_hooks.items()):
            spec = getattr(manager.hook, name).spec
            declared.append((name, spec.function, f"    (declared by plugin {plugin!r})\n"))
        sections.append(("Declared by plugins", declared))
    for section, hooks in sections:
        parts.append(f"== {section} ==\n")
        for name, spec, origin in hooks:
            parts.append(f"\n{signature(name, spec)}\n{origin}")
            text = documentation(name, spec)
            parts.append("    " + text.replace("\n", "\n    ").rstrip() + "\n")
        parts.append("\n")
    return "".join(parts)


def hooks_markdown() -> str:
    """The hook reference page (docs/hooks.md)."""
    parts = [
        "# Hook reference\n",
        "Generated by `hookline hooks --markdown` from `src/hookline/hookspecs.py`; "
        "do not edit by hand.\n",
        "An implementation takes any subset of a hook's arguments, by name; one with a default "
        "gets the hook's value when the hook passes one (pluggy 1.7's rule). "
        "Aliases (resolved at registration, free at run time): "
        + ", ".join(f"`{alias}` = `{name}`" for alias, name in hookspecs.ALIASES.items())
        + ".\n",
        "## Porting callbacks from other frameworks\n",
        "The hook that fires at the same moment in Ultralytics, Keras and Lightning. Every "
        "Ultralytics name works unchanged in hookline. Keras' validation hooks "
        "(`on_test_*`) are the ones `model.evaluate` fires.\n",
        "| hookline | Ultralytics | Keras | Lightning |\n|---|---|---|---|",
    ]
    rows = [" | ".join(f"`{cell}`" if cell != "-" else "-" for cell in row) for row in PORTING]
    parts.append("\n".join(f"| {row} |" for row in rows) + "\n")
    parts.append(hosts_markdown())
    for section, names in hookspecs.SECTIONS:
        parts.append(f"## {section}\n")
        for name in names:
            parts.append(f"### `{signature(name)}`\n\n{documentation(name)}\n")
    return "\n".join(parts)


def hosts_markdown() -> str:
    """Which hooks fire inside each host trainer a bridge runs plugins in, from the bridges'
    own declarations (:mod:`hookline.bridges.coverage`)."""
    hosts = list(HOSTS)
    lines = [
        "## Inside host trainers (bridges)\n",
        "Which hooks fire when plugins run in a host trainer through `hookline.bridges` "
        "(a hand-written loop, through `HookLoop`, can fire every one). A plugin that "
        "implements a hook its host cannot fire is warned once, when it is registered.\n",
        "| hook | " + " | ".join(HOSTS[host] for host in hosts) + " |",
        "|---|" + "---|" * len(hosts),
    ]
    for _, names in hookspecs.SECTIONS:
        for name in names:
            if name.startswith("hookline_") or name == "on_plugin_registered":
                continue
            cells = [
                f"no: {UNSUPPORTED[host][name]}" if name in UNSUPPORTED[host] else "yes"
                for host in hosts
            ]
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
