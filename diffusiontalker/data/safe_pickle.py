"""Read dataset pickles (VOCASET's ``templates.pkl``, ``raw_audio_fixed.pkl``, ...) without running their code.

A pickle can name any importable callable and the standard unpickler will call it (``os.system`` included). This
unpickler admits only what numpy arrays and plain containers need; anything else raises :class:`DataError` before
it is imported or called. Python-2 pickles are decoded with latin-1, as their byte strings were written.
"""

from __future__ import annotations

import collections
import importlib
import io
import os
import pickle
from typing import Any

from diffusiontalker.errors import DataError

# (module, name) pairs a numpy-array pickle may reference; both the numpy 1 and numpy 2 module paths.
_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}
_PLAIN_ALLOWED = {
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str",
                              "bytes", "bytearray")
} | {("collections", "OrderedDict"), ("_codecs", "encode")}  # _codecs.encode: bytes in protocol-2 pickles


_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _resolve_numpy(module: str, name: str) -> Any:
    """Import a whitelisted numpy object, preferring numpy 2's private module over the deprecated shim."""
    candidates = [module]
    if module.startswith("numpy.core."):
        candidates.insert(0, "numpy._core." + module[len("numpy.core."):])
    elif module.startswith("numpy._core."):
        candidates.append("numpy.core." + module[len("numpy._core."):])
    for mod in candidates:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise DataError(f"this numpy cannot rebuild {module}.{name} from the pickle")


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and plain containers and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)  # Python-2 pickles name builtins "__builtin__"
        if (module, name) in _NUMPY_ALLOWED:
            return _resolve_numpy(module, name)
        if (module, name) in _PLAIN_ALLOWED:
            if module == "collections":
                return collections.OrderedDict
            return getattr(importlib.import_module(module), name)
        raise DataError(f"refusing to unpickle {module}.{name}: only numpy arrays and plain containers are "
                        f"allowed in dataset pickles (the file may be corrupt or malicious)")


def loads(data: bytes, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` safely (see :class:`SafeUnpickler`)."""
    try:
        return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"not a readable pickle ({type(exc).__name__}: {exc})") from exc


def load(path: str | os.PathLike, encoding: str = "latin1") -> Any:
    """Unpickle the file at ``path`` safely; Python-2 pickles decode with latin-1 by default."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read pickle {path}: {exc}") from exc
    try:
        return loads(data, encoding=encoding)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
