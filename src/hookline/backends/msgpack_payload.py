"""Checkpoint payloads as MessagePack with arrays as raw bytes, no pickle: the format of the
JAX backend and of any task whose arrays convert to NumPy (a bridge's over Keras, ...).

A payload is nested maps (string or integer keys), lists, numbers, strings, ``None`` and
arrays.  An array is a MessagePack extension holding its dtype's name, its shape and its bytes;
reading one builds a NumPy array from those bytes and nothing else, so a payload can never run
code.  The format knows NumPy only: a framework's own arrays reach it through the ``to_host``
function its task passes to :func:`save_payload` (an explicit transfer, never an implicit one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgpack
import numpy as np

from hookline.errors import CheckpointError

_ARRAY = 1  # the extension type code of an array


def _array_bytes(array: np.ndarray[Any, Any]) -> msgpack.ExtType:
    if array.dtype.kind in "OV":
        raise TypeError(f"arrays of dtype {array.dtype} cannot be stored")
    header = msgpack.packb([str(array.dtype), list(array.shape)])
    return msgpack.ExtType(_ARRAY, header + array.tobytes(order="C"))


#: Turns a framework's array into a NumPy array on the host, or returns ``None`` for a value
#: that is no array of that framework.
ToHost = Callable[[Any], "np.ndarray[Any, Any] | None"]


def _no_framework(value: Any) -> None:
    return None


def _plain(value: Any, where: str, to_host: ToHost) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"{where}: key {key!r} is neither a string nor an integer")
            plain[key] = _plain(item, f"{where}.{key}", to_host)
        return plain
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{index}]", to_host) for index, item in enumerate(value)]
    if isinstance(value, (np.ndarray, np.generic)):
        return _array_bytes(np.asarray(value))
    host = to_host(value)
    if host is not None:
        return _array_bytes(host)
    raise TypeError(f"{where}: a {type(value).__name__} cannot be stored in a checkpoint")


def save_payload(checkpoint: Mapping[str, Any], to_host: ToHost = _no_framework) -> bytes:
    """``checkpoint`` as MessagePack bytes; ``to_host`` converts the framework's arrays.

    :raises TypeError: naming the entry (``checkpoint.plugins.mine.x``) that is not plain
        data or an array.
    """
    plain = _plain(checkpoint, "checkpoint", to_host)
    try:
        return bytes(msgpack.packb(plain, use_bin_type=True))
    except OverflowError as error:
        raise TypeError(f"checkpoint: an integer does not fit in 64 bits ({error})") from None


def _restore_array(code: int, data: bytes) -> Any:
    if code != _ARRAY:
        raise ValueError(f"unknown extension type {code}")
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    dtype_name, shape = unpacker.unpack()
    dtype = np.dtype(dtype_name)
    if dtype.kind in "OV":
        raise ValueError(f"arrays of dtype {dtype_name} are refused")
    body = data[unpacker.tell():]
    return np.frombuffer(body, dtype=dtype).reshape(tuple(shape)).copy()


def load_payload(data: bytes, source: str) -> dict[str, Any]:
    """What :func:`save_payload` wrote, with arrays as NumPy arrays on the host.

    :raises CheckpointError: naming ``source`` when the bytes are no such payload.
    """
    try:
        loaded = msgpack.unpackb(
            data, raw=False, strict_map_key=False, ext_hook=_restore_array
        )
    except Exception as error:  # msgpack raises several unrelated types for bad input
        raise CheckpointError(
            f"checkpoint {source!r} holds no readable MessagePack payload: {type(error).__name__}: "
            f"{error}"
        ) from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"checkpoint {source!r} holds no MessagePack checkpoint payload")
    return loaded
