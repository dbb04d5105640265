"""Dataset kinds for SMPL parameters and exported bodies.

``smpl_params``: one row per frame: ``id``, ``betas``, ``global_orient``, ``body_pose``, ``transl``
(optional) and, passed through when present, ``video`` and ``frame``. Tables from elsewhere may
give the 72 SMPL pose numbers in one ``pose`` column instead of ``global_orient`` + ``body_pose``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from dl3d.data.errors import DataError
from dl3d.data.schema import Column, TableSchema, arrow_to_tensor, tensor_type

PASSTHROUGH = ("video", "track", "frame")
"""Identifying columns that jobs copy from input rows to output rows when present."""

SMPL_PARAMS = TableSchema(
    kind="smpl_params",
    version=1,
    doc="SMPL parameters, one row per frame.",
    columns=(
        Column("id", pa.string(), doc="row identifier, unique within the dataset"),
        Column("betas", pa.list_(pa.float32()), shape=(None,), doc="shape coefficients (B,), B <= model's"),
        Column("global_orient", tensor_type((3,)), shape=(3,), required=False, doc="root rotation, axis-angle, radians"),
        Column("body_pose", tensor_type((69,)), shape=(69,), required=False, doc="23 joint rotations, axis-angle, radians"),
        Column("pose", tensor_type((72,)), shape=(72,), required=False, doc="alternative: global_orient + body_pose"),
        Column("transl", tensor_type((3,)), shape=(3,), required=False, doc="root translation, metres (zeros if absent)"),
        Column("video", pa.string(), required=False, doc="video or sequence id"),
        Column("track", pa.int64(), required=False, doc="person track within the video"),
        Column("frame", pa.int64(), required=False, doc="frame number within the video"),
        Column("joints", tensor_type((24, 3)), shape=(24, 3), required=False,
               doc="(24, 3) SMPL joints, metres, same frame as transl: the truth that `dl3d smpl evaluate` reads"),
    ),
)

SMPL_EXPORT = TableSchema(
    kind="smpl_export",
    version=1,
    doc="Posed SMPL joints (and optionally vertices) for each input row.",
    columns=(
        Column("id", pa.string()),
        Column("video", pa.string(), required=False),
        Column("track", pa.int64(), required=False),
        Column("frame", pa.int64(), required=False),
        Column("joints", pa.list_(tensor_type((3,))), shape=(None, 3), doc="(J, 3) posed joints, metres, model frame + transl; smplx order (24 SMPL joints, then the vertex joints)"),
        Column("vertices", pa.list_(tensor_type((3,))), shape=(None, 3), required=False, doc="(V, 3) posed vertices, metres"),
        Column("mesh_path", pa.string(), required=False, doc="mesh file relative to the output prefix"),
    ),
)


@dataclass
class SmplParams:
    """Decoded ``smpl_params`` rows as float32 arrays."""

    ids: list[str]
    betas: np.ndarray
    """(N, B) shape coefficients."""
    global_orient: np.ndarray
    """(N, 3) axis-angle, radians."""
    body_pose: np.ndarray
    """(N, 69) axis-angle, radians."""
    transl: np.ndarray
    """(N, 3) metres."""

    def __len__(self) -> int:
        return len(self.ids)


def decode_smpl_params(table: pa.Table, source: str, max_betas: int | None = None) -> SmplParams:
    """Check and decode an ``smpl_params`` table; every problem raises DataError naming ``source``.

    Args:
        table: the shard, already checked with ``SMPL_PARAMS.validate``.
        source: the file URL, for messages.
        max_betas: the body model's number of shape coefficients; more betas than that is an error.
    """
    SMPL_PARAMS.validate(table, source)
    n = table.num_rows
    cols = table.column_names
    raw_ids = table.column("id").to_pylist()
    if None in raw_ids:
        raise DataError(source, f"column 'id': null value at row {raw_ids.index(None)}")
    ids = [str(v) for v in raw_ids]
    betas = arrow_to_tensor(table.column("betas"), (None,), name="betas", source=source)
    if max_betas is not None and betas.shape[1] > max_betas:
        raise DataError(source, f"column 'betas': {betas.shape[1]} coefficients per row, the body model has {max_betas}")
    if "global_orient" in cols and "body_pose" in cols:
        go = arrow_to_tensor(table.column("global_orient"), (3,), name="global_orient", source=source)
        bp = arrow_to_tensor(table.column("body_pose"), (69,), name="body_pose", source=source)
    elif "pose" in cols:
        pose = arrow_to_tensor(table.column("pose"), (72,), name="pose", source=source)
        go, bp = pose[:, :3], pose[:, 3:]
    else:
        missing = [c for c in ("global_orient", "body_pose") if c not in cols]
        raise DataError(
            source,
            f"missing column {missing[0]!r} (axis-angle rotations: global_orient (3,), body_pose (69,)); "
            f"or give all 72 numbers in a 'pose' column; found columns {cols}",
        )
    if "transl" in cols:
        transl = arrow_to_tensor(table.column("transl"), (3,), name="transl", source=source)
    else:
        transl = np.zeros((n, 3), np.float32)
    for name, arr in (("betas", betas), ("global_orient", go), ("body_pose", bp), ("transl", transl)):
        bad = ~np.isfinite(arr).all(axis=tuple(range(1, arr.ndim)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(source, f"column {name!r}: NaN or infinite value in {int(bad.sum())} row(s), first row {i} (id {ids[i]!r})")
    return SmplParams(ids, betas, np.ascontiguousarray(go), np.ascontiguousarray(bp), transl)


def passthrough_columns(table: pa.Table) -> dict[str, pa.ChunkedArray]:
    """The identifying columns (video, track, frame) present in ``table``, cast to the export types."""
    out = {}
    for name in PASSTHROUGH:
        if name in table.column_names:
            out[name] = table.column(name).cast(SMPL_EXPORT.by_name[name].type)
    return out


SMPL_FIT = TableSchema(
    kind="smpl_fit",
    version=1,
    doc="SMPLify fits: SMPL parameters per keypoint row, in the camera frame, with fit diagnostics. "
        "Readable as smpl_params (dl3d smpl export takes it as input).",
    columns=(
        Column("id", pa.string(), doc="the keypoint row's id"),
        Column("video", pa.string()),
        Column("track", pa.int64()),
        Column("frame", pa.int64()),
        Column("betas", pa.list_(pa.float32()), shape=(None,), doc="(B,) shape, equal within a track when shared"),
        Column("global_orient", tensor_type((3,)), shape=(3,), doc="root rotation, axis-angle, camera frame (OpenCV)"),
        Column("body_pose", tensor_type((69,)), shape=(69,), doc="axis-angle, radians"),
        Column("transl", tensor_type((3,)), shape=(3,), doc="metres, camera frame"),
        Column("joints", tensor_type((24, 3)), shape=(24, 3), doc="(24, 3) fitted SMPL joints, camera frame, metres"),
        Column("focal_length", pa.float64(), doc="pixels, as used by the fit"),
        Column("principal_point", tensor_type((2,), pa.float64()), shape=(2,), doc="pixels, as used by the fit"),
        Column("reprojection_error_px", pa.float32(), doc="mean pixel distance over confident keypoints; NaN without any"),
        Column("loss", pa.float32(), doc="final objective of the row"),
        Column("status", pa.string(), doc="'ok' or why the row could not be fitted (e.g. 'no_keypoints', 'nan_keypoints')"),
        Column("flipped", pa.bool_(), doc="the flip check turned the body 180 degrees"),
        Column("mesh_path", pa.string(), required=False, doc="mesh file relative to the output prefix"),
    ),
)

SMPL_RENDER = TableSchema(
    kind="smpl_render",
    version=1,
    doc="The index of `dl3d smpl render`: one row per video of the fit shard, accounting for every frame.",
    columns=(
        Column("id", pa.string(), doc="the video id"),
        Column("video_path", pa.string(), doc="MP4 relative to the output prefix; null when nothing was rendered"),
        Column("frames", pa.int64(), doc="frames of the video: drawn + not_fitted + no_fit_row"),
        Column("drawn", pa.int64(), doc="frames with a mesh drawn"),
        Column("not_fitted", pa.int64(), doc="frames whose fit row's status was not ok (kept as they are)"),
        Column("no_fit_row", pa.int64(), doc="frames with no fit row"),
        Column("fps", pa.float64(), doc="frame rate used"),
        Column("status", pa.string(), doc="'ok', 'no_video' (not in --videos), 'decode_error' or the video's own status"),
        Column("error", pa.string(), doc="the error text for a status other than 'ok'"),
    ),
)

AMASS_INDEX = TableSchema(
    kind="smpl_export_amass",
    version=1,
    doc="The index of `dl3d smpl export --format amass-npz`: one row per (video, track).",
    columns=(
        Column("id", pa.string(), doc="'{video}/{track}'"),
        Column("video", pa.string()),
        Column("track", pa.int64()),
        Column("npz_path", pa.string(), doc="the track's AMASS-style NPZ, relative to the output prefix"),
        Column("frames", pa.int64(), doc="frames in the NPZ"),
        Column("ok_frames", pa.int64(), doc="of those, frames whose row status was 'ok'"),
        Column("status", pa.string(), doc="'ok', or 'betas_vary' when the track's rows hold different shapes"),
    ),
)
