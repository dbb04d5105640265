"""Tests of reading SMPL-format model files: official-style chumpy pickles, .npz, and bad files."""

from __future__ import annotations

import os
import pickle
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import torch

from dl3d.body import (
    BODY_MODEL_NOTE_KEY,
    BodyModelError,
    body_model_from_arrays,
    is_procedural,
    load_body_model,
    make_procedural_body_model,
    read_body_model_arrays,
    write_body_model,
)

REQUIRED = "v_template, f, weights, kintree_table, J_regressor, shapedirs, posedirs"


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return make_procedural_body_model(num_betas=10, seed=0)


def dump(obj: Any, path: Path) -> Path:
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=2)
    return path


# ---- a pickle like the official SMPL download -----------------------------------------------------


class _Ch:
    """Pickles like ``chumpy.ch.Ch``: ``Ch.__getstate__`` is ``__dict__`` minus two weak dicts."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dirty_vars: set[str] = set()
        self._itr = None
        self._make_dense = False
        self._make_sparse = False
        self._depends_on_deps: dict[str, Any] = {}


class _Transpose(_Ch):
    """A chumpy expression (``chumpy.reordering.transpose``): no value of its own under 'x'."""

    def __init__(self, a: _Ch) -> None:
        super().__init__(np.zeros(0))
        del self.x
        self.a = a
        self.axes = None


class _CscMatrix:
    """Pickles like an old ``scipy.sparse.csc.csc_matrix``: a plain ``__dict__``."""

    def __init__(self, dense: np.ndarray) -> None:
        rows, cols = np.nonzero(dense.T)  # column-major order
        self.data = dense.T[rows, cols]
        self.indices = cols.astype(np.int32)
        per_column = np.bincount(rows, minlength=dense.shape[1])
        self.indptr = np.concatenate([[0], np.cumsum(per_column)]).astype(np.int32)
        self._shape = dense.shape
        self.maxprint = 50  # old scipy kept `format` on the class, not in the pickled __dict__


class _DiaMatrix:
    """A sparse format the reader only decodes through scipy."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self._shape = shape
        self.data = np.ones((1, shape[1]))
        self.offsets = np.zeros(1, dtype=np.int32)


@pytest.fixture
def fake_foreign_modules(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Make ``chumpy.ch.Ch`` and ``scipy.sparse.csc.csc_matrix`` picklable while the test writes.

    Yields a function that removes the fake modules again, as a fresh interpreter without chumpy
    (and, if it is not installed, scipy) would see it.
    """
    classes = {
        ("chumpy.ch", "Ch"): _Ch,
        ("chumpy.reordering", "transpose"): _Transpose,
        ("scipy.sparse.csc", "csc_matrix"): _CscMatrix,
        ("scipy.sparse.dia", "dia_matrix"): _DiaMatrix,
    }
    saved = {cls: (cls.__module__, cls.__qualname__) for cls in classes.values()}
    created: list[str] = []
    for (module, name), cls in classes.items():
        for part in ("chumpy", "scipy", "scipy.sparse", module):
            if part not in sys.modules or part == module:
                monkeypatch.setitem(sys.modules, part, types.ModuleType(part))
                created.append(part)
        setattr(sys.modules[module], name, cls)
        cls.__module__, cls.__qualname__ = module, name

    def forget() -> None:
        for part in dict.fromkeys(created):
            monkeypatch.delitem(sys.modules, part, raising=False)

    yield forget
    for cls, (module, qualname) in saved.items():
        cls.__module__, cls.__qualname__ = module, qualname


def official_style(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The procedural arrays laid out as SMPL_NEUTRAL.pkl holds them (chumpy, sparse, extras)."""
    return {
        "v_template": _Ch(arrays["v_template"]),
        "shapedirs": _Ch(arrays["shapedirs"]),
        "posedirs": arrays["posedirs"],
        "weights": _Ch(arrays["weights"]),
        "J_regressor": _CscMatrix(arrays["J_regressor"]),
        "J_regressor_prior": _CscMatrix(arrays["J_regressor"]),
        "f": arrays["f"].astype(np.uint32),
        "kintree_table": arrays["kintree_table"],
        "J": _Ch(arrays["J"]),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "pose_training_info": {"num_subjects": 1},
    }


def test_reads_official_style_pickle_without_chumpy(
    arrays: dict[str, np.ndarray], tmp_path: Path, fake_foreign_modules: Callable[[], None]
) -> None:
    path = dump(official_style(arrays), tmp_path / "SMPL_NEUTRAL.pkl")
    data = path.read_bytes()
    assert b"chumpy.ch" in data and b"scipy.sparse.csc" in data
    fake_foreign_modules()
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules

    back = read_body_model_arrays(path)
    for key in ("v_template", "shapedirs", "posedirs", "weights", "J_regressor", "f", "kintree_table", "J"):
        np.testing.assert_array_equal(back[key], arrays[key], err_msg=key)
    assert back["f"].dtype == np.int64 and back["v_template"].dtype == np.float64
    assert back["bs_style"].item() == "lbs"
    assert "pose_training_info" not in back  # not an array: dropped
    assert not is_procedural(back)

    model = load_body_model(tmp_path)  # a folder holding SMPL_NEUTRAL.pkl
    reference = body_model_from_arrays(arrays)
    g = torch.Generator().manual_seed(0)
    params = {
        "betas": torch.randn(2, 10, generator=g),
        "global_orient": 0.3 * torch.randn(2, 3, generator=g),
        "body_pose": 0.3 * torch.randn(2, 69, generator=g),
    }
    with torch.no_grad():
        diff = (model(**params).vertices - reference(**params).vertices).abs().max().item()
    assert diff < 1e-6


def test_sparse_matrix_without_scipy_needs_known_format(
    arrays: dict[str, np.ndarray],
    tmp_path: Path,
    fake_foreign_modules: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = official_style(arrays)
    raw["J_regressor"] = _DiaMatrix((24, 6890))
    path = dump(raw, tmp_path / "model.pkl")
    fake_foreign_modules()
    monkeypatch.setitem(sys.modules, "scipy", None)  # `import scipy` now fails
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)
    pattern = re.escape(f"{path}: cannot read 'J_regressor': a scipy.sparse.dia.dia_matrix matrix")
    pattern += r".*pip install scipy"
    with pytest.raises(BodyModelError, match=pattern):
        read_body_model_arrays(path)


def test_chumpy_expression_is_reported(
    arrays: dict[str, np.ndarray], tmp_path: Path, fake_foreign_modules: Callable[[], None]
) -> None:
    raw = official_style(arrays)
    raw["shapedirs"] = _Transpose(_Ch(arrays["shapedirs"]))
    path = dump(raw, tmp_path / "model.pkl")
    fake_foreign_modules()
    pattern = re.escape(f"{path}: cannot read 'shapedirs': a chumpy.reordering.transpose object")
    pattern += ".*without chumpy"
    with pytest.raises(BodyModelError, match=pattern):
        read_body_model_arrays(path)


# ---- bad files ------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothere.pkl"
    message = (
        f"file not found: {path}; "
        "download SMPL from https://smpl.is.tue.mpg.de and pass the path of SMPL_NEUTRAL.pkl"
    )
    with pytest.raises(BodyModelError, match=re.escape(message)):
        read_body_model_arrays(path)
    with pytest.raises(BodyModelError, match=re.escape(message)):
        load_body_model(path)


def test_folder_without_a_model(tmp_path: Path) -> None:
    message = f"{tmp_path}: is a folder with no single body model file"
    with pytest.raises(BodyModelError, match=re.escape(message)):
        read_body_model_arrays(tmp_path)


@pytest.mark.parametrize(
    ("name", "payload", "problem"),
    [
        ("model.pkl", b"\x80\x02}q\x00(X\x01\x00\x00\x00a", "not a readable SMPL model pickle"),  # truncated
        ("model.pkl", b"this is not a pickle at all", "not a readable SMPL model pickle"),
        ("model.npz", b"PK\x03\x04 garbled zip bytes", "not a readable .npz body model"),
        ("model.pkl", pickle.dumps([1, 2, 3], protocol=2), "the pickle holds a list, expected a dict of arrays"),
    ],
)
def test_garbled_files(tmp_path: Path, name: str, payload: bytes, problem: str) -> None:
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(BodyModelError, match=re.escape(f"{path}: {problem}")):
        read_body_model_arrays(path)
    with pytest.raises(BodyModelError, match=re.escape(f"{path}: {problem}")):
        load_body_model(path)


def test_truncated_real_pickle(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    good = write_body_model(arrays, tmp_path / "good")
    path = tmp_path / "cut.pkl"
    path.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(BodyModelError, match=re.escape(f"{path}: not a readable SMPL model pickle")):
        read_body_model_arrays(path)


def test_refuses_foreign_classes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    path = dump({"v_template": Exploit()}, tmp_path / "model.pkl")
    with pytest.raises(BodyModelError, match=re.escape(f"{path}: not a readable") + ".*refusing to unpickle"):
        read_body_model_arrays(path)
    assert not marker.exists()


def test_missing_key(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    raw = {k: v for k, v in arrays.items() if k != "J_regressor"}
    path = dump(raw, tmp_path / "model.pkl")
    message = f"{path}: missing key 'J_regressor'; an SMPL model file needs {REQUIRED}"
    with pytest.raises(BodyModelError, match=re.escape(message)):
        read_body_model_arrays(path)


WRONG_ARRAYS: list[tuple[str, Callable[[dict[str, np.ndarray]], np.ndarray], str]] = [
    ("shapedirs", lambda a: a["shapedirs"][:, :, 0],
     "shapedirs has shape (6890, 3), expected (V, 3, B) = (6890, 3, B)"),
    ("weights", lambda a: a["weights"][:, :23],
     "weights has shape (6890, 23), expected (V, J) = (6890, 24)"),
    ("J_regressor", lambda a: a["J_regressor"][:, :100],
     "J_regressor has shape (24, 100), expected (J, V) = (24, 6890)"),
    ("v_template", lambda a: a["v_template"][:, :2],
     "v_template has shape (6890, 2), expected (V, 3)"),
    ("posedirs", lambda a: a["posedirs"][:, :, :200],
     "posedirs has shape (6890, 3, 200), expected (V, 3, (J - 1) * 9) = (6890, 3, 207)"),
    ("f", lambda a: a["f"] + 1,
     "f indexes vertices 1..6890, but v_template has only 6890 vertices"),
    ("kintree_table", lambda a: np.zeros((2, 52), np.int64),
     "kintree_table has 52 joints, expected 24 (SMPL)"),
    ("kintree_table", lambda a: a["kintree_table"][:, ::-1],
     "kintree_table row 0 gives joint 1 the parent 20"),
    ("v_template", lambda a: np.where(np.arange(6890)[:, None] == 5, np.nan, a["v_template"]),
     "v_template contains NaN"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "bad", "message"), WRONG_ARRAYS)
def test_wrong_arrays(arrays: dict[str, np.ndarray], tmp_path: Path, key: str, bad: Any, message: str) -> None:
    raw = dict(arrays)
    raw[key] = bad(arrays)
    path = dump(raw, tmp_path / "model.pkl")
    with pytest.raises(BodyModelError, match=re.escape(f"{path}: {message}")):
        read_body_model_arrays(path)


def test_flattened_posedirs_accepted(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    raw = dict(arrays)
    raw["posedirs"] = arrays["posedirs"].reshape(-1, 207).T  # smplx's in-memory (207, V * 3) layout
    back = read_body_model_arrays(dump(raw, tmp_path / "model.pkl"))
    np.testing.assert_array_equal(back["posedirs"], arrays["posedirs"])


# ---- other sources and options --------------------------------------------------------------------


def test_fsspec_url(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    import fsspec

    path = write_body_model(arrays, tmp_path, fmt="npz")
    url = "memory://dl3d-test/body/smpl_procedural.npz"
    with fsspec.open(url, "wb") as handle:
        handle.write(path.read_bytes())
    back = read_body_model_arrays(url)
    np.testing.assert_array_equal(back["shapedirs"], arrays["shapedirs"])
    assert is_procedural(back) and "NOT SMPL" in back[BODY_MODEL_NOTE_KEY].item()
    with pytest.raises(BodyModelError, match=re.escape("file not found: memory://dl3d-test/none.npz")):
        read_body_model_arrays("memory://dl3d-test/none.npz")


def test_num_betas_and_device(arrays: dict[str, np.ndarray]) -> None:
    model = body_model_from_arrays(arrays, num_betas=5, device=torch.device("cpu"))
    assert model.num_betas == 5 and model.betas.shape == (1, 5)
    assert model.shapedirs.shape == (6890, 3, 5)
    assert not model.training
    with pytest.raises(ValueError, match="expected num_betas >= 1, got 0"):
        body_model_from_arrays(arrays, num_betas=0)
    few = make_procedural_body_model(num_betas=4)
    assert body_model_from_arrays(few, num_betas=10).num_betas == 4
