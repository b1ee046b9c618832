"""The ``hookline`` command (the top layer: it may use everything below it).

::

    hookline train [key=value ...] [--config FILE.yaml]     train a recipe (recipe=module:Class;
                                                            the digits demo by default)
    hookline val [weights=PATH] [key=value ...]             validate saved weights
    hookline predict [weights=PATH] [source=val|FILE]       write predictions.csv
    hookline export [weights=PATH] [format=torchscript|pt2|onnx]
    hookline settings [train|val|predict|export] [--json]   every setting, default and owner
    hookline plugins [--json]                               what is installed, and its hooks
    hookline hooks [--markdown]                             the hook catalog

Every subcommand takes the plugin choice flags ``--plugins A,B`` (load only these entry
points), ``--disable-plugins A,B``, ``--no-plugins`` and ``--strict``; the four phases also
take ``--trace-hooks``, ``--traceback`` and the setting ``callbacks=FILE.py:NAME,...`` (plugins
of the user's own).  Bad input ends with one line on standard error and exit status 2; a
plugin that fails mid-run, with one line naming it and exit status 1.

Modules: :mod:`~hookline.cli.parser` (words and YAML into settings),
:mod:`~hookline.cli.resolution` (which settings a command accepts, and their precedence),
:mod:`~hookline.cli.callbacks` (``callbacks=``),
:mod:`~hookline.cli.weights` (which checkpoint a command reads), :mod:`~hookline.cli.trace`
(``--trace-hooks``), :mod:`~hookline.cli.reference` (``hookline hooks``) and
:mod:`~hookline.cli.commands` (the subcommands and ``main``).
"""

from hookline.cli.commands import main

__all__ = ["main"]
