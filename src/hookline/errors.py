"""The base of errors caused by the user's input (settings, files, formats).

The command line reports these as one line and exits with status 2, without a traceback.
"""


class UserError(Exception):
    """A problem with what the user asked for, with a message that says what to change."""


class CheckpointError(UserError):
    """A checkpoint file cannot be used; the message names the file and why."""


def add_note(error: BaseException, note: str) -> None:
    """Attach ``note`` to ``error``'s report (Python 3.11+; ignored on 3.10)."""
    add = getattr(error, "add_note", None)
    if add is not None:
        add(note)


def first_line(error: BaseException | str, default: str = "") -> str:
    """The first line of ``error``'s message (or of a text; ``default`` when it has none), for
    one-line reports of errors raised by libraries."""
    text = str(error).strip()
    return text.splitlines()[0] if text else default
