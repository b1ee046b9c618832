"""Recipes: what the ``hookline`` command trains.

A recipe is a plugin (its settings are declared through ``hookline_add_options``, so they are
checked, listed by ``hookline settings`` and recorded in checkpoints) that builds the task and
the data from the resolved settings.  ``recipe=package.module:Class`` picks one on the command
line; the default is the digits demo, :class:`hookline.backends.torch.demo.DigitsRecipe`.
The recipe a run was trained with is recorded in its checkpoints, so ``val``, ``predict`` and
``export`` rebuild the same model.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from hookline.engine import Task
from hookline.errors import UserError
from hookline.manager import Callback
from hookline.settings import Options, Settings

DEFAULT_RECIPE = "hookline.backends.torch.demo:DigitsRecipe"
#: Installed packages declare recipes as entry points of this group (name = "module:Class").
RECIPE_GROUP = "hookline.recipes"


@runtime_checkable
class Recipe(Protocol):
    """What the command line needs to train, validate, predict with and export a model."""

    def hookline_add_options(self, options: Options) -> None:
        """Declare the recipe's settings (model size, data, optimiser, ...)."""

    def data(self, settings: Settings) -> tuple[Iterable[Any], Iterable[Any] | None]:
        """The training data and the validation data (or None) as iterables of batches."""

    def task(self, settings: Settings) -> Task:
        """A new, untrained task."""

    def task_from_weights(self, settings: Settings, state: Mapping[str, Any]) -> Task:
        """A task holding a checkpoint's task state (``checkpoint["task"]``)."""

    def predict_inputs(self, settings: Settings, source: str) -> Iterable[Any]:
        """Input batches to predict, from ``source`` (a file, or ``val``)."""


def installed_recipes() -> dict[str, str]:
    """Recipe names to ``module:Class``, as installed packages declare them (entry points of
    :data:`RECIPE_GROUP`; hookline itself declares ``digits`` and ``digits-jax``)."""
    import importlib.metadata

    return {
        entry_point.name: entry_point.value
        for entry_point in importlib.metadata.entry_points(group=RECIPE_GROUP)
    }


def trusted_recipes() -> set[str]:
    """The recipes a checkpoint may name and get imported: the default, and those installed
    packages declare (by name or by ``module:Class``).  Any other needs the user to name it
    again (``recipe=``): hookline never imports code because a file says so."""
    installed = installed_recipes()
    return {DEFAULT_RECIPE, *installed, *installed.values()}


#: The extra that installs each framework a recipe may need.
_EXTRAS = {"torch": "torch", "jax": "jax", "jaxlib": "jax", "flax": "jax", "optax": "jax"}


def load_recipe(spec: str) -> Recipe:
    """Import ``module:Class`` (or the recipe an installed package declares under the name
    ``spec``) and instantiate it.

    :raises UserError: when it cannot be imported or is not a recipe.
    """
    if ":" not in spec:
        installed = installed_recipes()
        if spec not in installed:
            raise UserError(
                f"recipe {spec!r} is neither package.module:Class nor an installed recipe's "
                f"name ({', '.join(sorted(installed)) or 'none installed'})"
            )
        spec = installed[spec]
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UserError(f"recipe {spec!r} must look like package.module:Class")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        missing = getattr(error, "name", None)
        hint = (
            f"; install it with: pip install 'hookline[{_EXTRAS[missing]}]'"
            if missing in _EXTRAS else ""
        )
        raise UserError(
            f"cannot load recipe {spec!r}: {type(error).__name__}: {error}{hint}"
        ) from None
    recipe = target() if isinstance(target, type) else target
    if not isinstance(recipe, Recipe):
        raise UserError(
            f"{spec!r} is not a recipe: it needs hookline_add_options, data, task, "
            "task_from_weights and predict_inputs"
        )
    return recipe


class RecipeOption(Callback):
    """Declares the ``recipe`` setting, so that it is checked, listed and recorded with the
    run's other settings (``val``, ``predict`` and ``export`` read it back from checkpoints)."""

    def hookline_add_options(self, options: Options) -> None:
        options.add(
            "recipe", DEFAULT_RECIPE,
            help="what to train: package.module:Class, or an installed recipe's name "
            "(digits, digits-jax)",
            owner="hookline",
        )
