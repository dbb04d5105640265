"""The binvox voxel format (Min / Kazhdan; R2N2's ``ShapeNetVox32/<synset>/<model>/model.binvox``).

A file is a short ASCII header, then run-length-encoded binary data::

    #binvox 1
    dim D D D
    translate tx ty tz        (optional)
    scale s                   (optional)
    data
    <value byte><count byte><value byte><count byte>...

- ``dim``: the grid's depth, width and height, all equal (dl3d refuses anything else, as pytorch3d does).
- ``translate``/``scale``: how binvox normalised the mesh into the unit cube; voxel (i, j, k) has its
  centre at ``((i, j, k) + 0.5) / D`` in that cube, and at ``((i, j, k) + 0.5) / D * s + t`` in the
  mesh's own coordinates (first scale, then translate).
- ``data``: pairs of bytes, a value (0 = empty, else set; version 1 writes 1, version 2 any 1..255)
  and a run length 1..255; the runs add up to exactly D^3 voxels.
- Axis order of the runs: y runs fastest, then z, then x, i.e. the linear index of voxel (x, y, z)
  is ``x * D * D + z * D + y``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Binvox:
    """A decoded binvox grid and its normalisation."""

    occupancy: np.ndarray
    """(D, D, D) bool, indexed [x, y, z] (binvox's i, j, k)."""
    translate: tuple[float, float, float] | None
    """Mesh coordinates of the unit cube's origin; None when the header has no ``translate`` line."""
    scale: float | None
    """Mesh length of the unit cube's side; None when the header has no ``scale`` line."""

    @property
    def size(self) -> int:
        return int(self.occupancy.shape[0])


def read_binvox(data: bytes, source: str = "binvox") -> Binvox:
    """Decode binvox bytes (see the module docstring for the format).

    Raises:
        ValueError: the bytes are not a binvox file, the grid is not cubic, or the runs do not cover
            exactly D^3 voxels; the message starts with ``source``.
    """
    first = data.split(b"\n", 1)[0].strip()
    if first not in (b"#binvox 1", b"#binvox 2"):
        raise ValueError(f"{source}: expected '#binvox 1' on the first line, found {first[:40]!r}")
    header: dict[str, list[bytes]] = {}
    pos = data.index(b"\n") + 1
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{source}: the header has no 'data' line")
        line = data[pos:end].strip()
        pos = end + 1
        if line == b"data":
            break
        if line:
            key, *values = line.split()
            header[key.decode("ascii", "replace")] = values
    try:
        dims = [int(v) for v in header["dim"]]
        translate = tuple(float(v) for v in header["translate"]) if "translate" in header else None
        scale = float(header["scale"][0]) if "scale" in header else None
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"{source}: the header needs 'dim D D D' and numeric translate/scale lines, "
                         f"found {sorted(header)}") from None
    if len(dims) != 3 or len(set(dims)) != 1 or dims[0] < 1:
        raise ValueError(f"{source}: expected a cubic grid 'dim D D D', found dim {dims}")
    if translate is not None and len(translate) != 3:
        raise ValueError(f"{source}: expected 'translate tx ty tz', found {len(translate)} numbers")
    d = dims[0]
    runs = np.frombuffer(data, np.uint8, offset=pos)
    if len(runs) % 2:
        raise ValueError(f"{source}: the data is {len(runs)} bytes, not (value, count) pairs")
    values, counts = runs[0::2], runs[1::2].astype(np.int64)
    if (counts == 0).any():
        raise ValueError(f"{source}: a run of length 0 (run lengths are 1..255)")
    if counts.sum() != d ** 3:
        raise ValueError(f"{source}: the runs cover {int(counts.sum())} voxels, the grid has {d}^3 = {d ** 3}")
    flat = np.repeat(values > 0, counts)
    occ = flat.reshape(d, d, d).transpose(0, 2, 1)  # stored [x, z, y] -> [x, y, z]
    return Binvox(np.ascontiguousarray(occ), translate, scale)
