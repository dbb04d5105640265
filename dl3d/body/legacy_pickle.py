"""Restricted unpickling of SMPL-era files (SMPL model pickles, SMPLify GMM priors), without chumpy.

The official SMPL downloads are Python-2 pickles that hold some arrays as ``chumpy.ch.Ch`` objects
and ``J_regressor`` as a ``scipy.sparse`` matrix; SMPLify's ``gmm_08.pkl`` holds plain numpy arrays.
``load_restricted_pickle`` reads both without importing chumpy and without running code: it admits
plain containers, numpy arrays and, on request, chumpy classes (unpickled into stubs that keep their
pickled state: a ``Ch`` keeps its value under ``'x'``, see ``Ch.__getstate__`` in chumpy/ch.py) and
scipy.sparse matrices (real ones when scipy is installed, stubs with their fields otherwise).
``to_array`` then turns any such value into an ndarray.
"""

from __future__ import annotations

import io
import pickle
from typing import Any, Final

import numpy as np

__all__ = ["Unconvertible", "load_restricted_pickle", "to_array"]


class _PickledStub:
    """Stand-in for a class that is not importable here; keeps what the pickle gave it."""

    pickled_module: str = ""
    pickled_name: str = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> _PickledStub:
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    @classmethod
    def qualname(cls) -> str:
        return f"{cls.pickled_module}.{cls.pickled_name}"


class _ChumpyStub(_PickledStub):
    """A pickled ``chumpy`` object (``chumpy.ch.Ch``: its state dict holds the value under ``'x'``)."""


class _SparseStub(_PickledStub):
    """A pickled ``scipy.sparse`` matrix, read while scipy is not installed."""


_BUILTIN_NAMES: Final = frozenset(
    {"object", "set", "frozenset", "list", "dict", "tuple", "slice", "complex", "bytearray",
     "bytes", "int", "float", "str", "bool", "long", "unicode", "basestring"}
)  # fmt: skip
_NUMPY_MODULES: Final = frozenset(
    {"numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric"}
)
_NUMPY_NAMES: Final = frozenset({"_reconstruct", "scalar", "dtype", "ndarray", "_frombuffer"})
_OTHER_GLOBALS: Final = frozenset(
    {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"), ("_codecs", "encode"),
     ("collections", "OrderedDict")}
)  # fmt: skip


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits plain containers and numpy arrays; chumpy (as stubs) and scipy.sparse when asked."""

    def __init__(self, file: io.BytesIO, *, chumpy: bool, sparse: bool, holds: str) -> None:
        super().__init__(file, encoding="latin1")
        self._chumpy, self._sparse, self._holds = chumpy, sparse, holds
        self._stubs: dict[tuple[str, str], type[_PickledStub]] = {}

    def _stub(self, base: type[_PickledStub], module: str, name: str) -> type[_PickledStub]:
        key = (module, name)
        if key not in self._stubs:
            self._stubs[key] = type(name, (base,), {"pickled_module": module, "pickled_name": name})
        return self._stubs[key]

    def find_class(self, module: str, name: str) -> Any:
        if self._chumpy and (module == "chumpy" or module.startswith("chumpy.")):
            return self._stub(_ChumpyStub, module, name)
        if self._sparse and (module == "scipy.sparse" or module.startswith("scipy.sparse.")):
            if not name.endswith(("_matrix", "_array")):
                raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
            try:
                import scipy.sparse
            except ImportError:
                return self._stub(_SparseStub, module, name)
            return getattr(scipy.sparse, name, None) or self._stub(_SparseStub, module, name)
        allowed = (
            (module in ("builtins", "__builtin__") and name in _BUILTIN_NAMES)
            or (module in _NUMPY_MODULES and name in _NUMPY_NAMES)
            or (module, name) in _OTHER_GLOBALS
        )
        if not allowed:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: {self._holds}")
        return super().find_class(module, name)


def load_restricted_pickle(data: bytes, *, holds: str, chumpy: bool = False, sparse: bool = False) -> Any:
    """The object a pickle holds, admitting only the classes a data file of this kind can hold.

    Args:
        data: the pickle's bytes (Python-2 pickles are read with ``encoding="latin1"``).
        holds: what such a file holds, for the refusal message (``"a GMM prior file holds numpy arrays"``).
        chumpy: admit ``chumpy.*`` classes, as stubs (``to_array`` evaluates plain ``Ch`` values).
        sparse: admit ``scipy.sparse`` matrices (stubs when scipy is not installed).

    Raises:
        pickle.UnpicklingError: a class outside the allow-list (nothing of it is run); any other
            exception pickle raises for a damaged file passes through.
    """
    return _RestrictedUnpickler(io.BytesIO(data), chumpy=chumpy, sparse=sparse, holds=holds).load()


class Unconvertible(Exception):
    """A pickled value that cannot be turned into an ndarray; the message says why."""


def to_array(value: Any) -> np.ndarray:
    """``value`` (ndarray, chumpy stub, sparse matrix, string, number) as an ndarray."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise Unconvertible("it is an array of Python objects")
        return value
    if isinstance(value, _ChumpyStub):
        return _chumpy_to_array(value)
    if isinstance(value, _SparseStub):
        return _sparse_state_to_dense(value.state, type(value).qualname())
    if type(value).__module__.startswith("scipy.sparse"):
        return _scipy_sparse_to_dense(value)
    if isinstance(value, bytes):
        return np.asarray(value.decode("latin1"))
    if isinstance(value, (str, bool, int, float, np.generic)):
        return np.asarray(value)
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError as err:
            raise Unconvertible(f"a ragged {type(value).__name__}") from err
        if arr.dtype == object:
            raise Unconvertible(f"a {type(value).__name__} of non-numbers")
        return arr
    raise Unconvertible(f"it is a {type(value).__module__}.{type(value).__name__}, not an array")


def _chumpy_to_array(stub: _ChumpyStub) -> np.ndarray:
    """The value of a pickled chumpy object: its ``'x'`` term, else the one ndarray in its state."""
    state = stub.state
    name = type(stub).qualname()
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        state = state[0]  # (dict, slots) form
    if not isinstance(state, dict):
        raise Unconvertible(f"a {name} object with no pickled state dict")
    if "x" in state:
        try:
            return np.asarray(to_array(state["x"]), dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise Unconvertible(f"a {name} object whose 'x' is not numeric") from err
    candidates = [v for v in state.values() if isinstance(v, np.ndarray) and v.dtype != object]
    if len(candidates) == 1:
        return candidates[0]
    raise Unconvertible(
        f"a {name} object (a chumpy expression, not a plain array) that cannot be evaluated "
        "without chumpy; load the file once with chumpy installed and save its arrays as .npz"
    )


def _scipy_sparse_to_dense(matrix: Any) -> np.ndarray:
    """A scipy.sparse matrix as a dense float64 array (from its fields if ``toarray`` fails)."""
    try:
        return np.asarray(matrix.toarray(), dtype=np.float64)
    except Exception:  # an old pickle scipy cannot finish restoring: decode its fields
        return _sparse_state_to_dense(vars(matrix), type(matrix).__name__)


def _sparse_state_to_dense(state: Any, name: str) -> np.ndarray:
    """Decode the pickled fields of a csc/csr/coo matrix into a dense float64 array."""
    need_scipy = Unconvertible(
        f"a {name} matrix this reader cannot decode without scipy; run `pip install scipy` and retry"
    )
    if not isinstance(state, dict):
        raise need_scipy
    shape = state.get("_shape", state.get("shape"))
    fmt = state.get("format", name.split(".")[-1][:3])
    try:
        rows, cols = (int(n) for n in shape)
        dense = np.zeros((rows, cols), dtype=np.float64)
        data = np.asarray(state["data"], dtype=np.float64)
        if fmt in ("csc", "csr"):
            indices = np.asarray(state["indices"], dtype=np.int64)
            indptr = np.asarray(state["indptr"], dtype=np.int64)
            outer = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            r, c = (indices, outer) if fmt == "csc" else (outer, indices)
        elif fmt == "coo":
            r = np.asarray(state.get("row", state.get("coords", (None, None))[0]), dtype=np.int64)
            c = np.asarray(state.get("col", state.get("coords", (None, None))[1]), dtype=np.int64)
        else:
            raise need_scipy
        np.add.at(dense, (r, c), data)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise need_scipy from err
    return dense


