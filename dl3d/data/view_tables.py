"""Dataset kinds for view synthesis: ``view_pairs`` (training/eval) and ``images`` (render sources).

Cameras follow the OpenCV convention: x right, y down, z forward; poses are 4x4 world-to-camera
matrices (``x_cam = T @ x_world``); intrinsics are 3x3 in pixels of the stored image. The relative
pose that maps source-camera points into the target camera is ``T_tgt @ inv(T_src)``.
Images are stored as PNG (or, when kept from the input, JPEG) bytes.
"""

from __future__ import annotations

import pyarrow as pa

from dl3d.data.schema import Column, TableSchema, tensor_type

VIEW_PAIRS = TableSchema(
    kind="view_pairs",
    version=1,
    doc="Pairs of views of one scene with known intrinsics and poses.",
    columns=(
        Column("id", pa.string(), doc="pair id"),
        Column("scene", pa.string(), doc="scene or sequence id; a scene never straddles train/eval splits"),
        Column("src_frame", pa.int64(), required=False, doc="source frame number or timestamp"),
        Column("tgt_frame", pa.int64(), required=False, doc="target frame number or timestamp"),
        Column("src_image", pa.binary(), doc="source view, PNG or JPEG bytes (RGB)"),
        Column("tgt_image", pa.binary(), doc="target view, PNG or JPEG bytes (RGB), same size as the source"),
        Column("width", pa.int64(), doc="image width, pixels"),
        Column("height", pa.int64(), doc="image height, pixels"),
        Column("intrinsics", tensor_type((3, 3)), shape=(3, 3), doc="(3, 3) K in pixels, shared by both views"),
        Column("src_pose", tensor_type((4, 4)), shape=(4, 4), doc="(4, 4) source world-to-camera, OpenCV axes"),
        Column("tgt_pose", tensor_type((4, 4)), shape=(4, 4), doc="(4, 4) target world-to-camera, OpenCV axes"),
    ),
)

IMAGES = TableSchema(
    kind="images",
    version=1,
    doc="Single images with intrinsics: sources for mass view synthesis.",
    columns=(
        Column("id", pa.string()),
        Column("image", pa.binary(), doc="PNG (or JPEG) bytes"),
        Column("width", pa.int64(), required=False, doc="pixels; read from the image when absent"),
        Column("height", pa.int64(), required=False),
        Column("intrinsics", tensor_type((3, 3)), shape=(3, 3), required=False,
               doc="(3, 3) K in pixels; default: focal = image width, principal point at the centre"),
        Column("target_poses", pa.list_(tensor_type((4, 4))), shape=(None, 4, 4), required=False,
               doc="(T, 4, 4) explicit targets: source-camera-to-target-camera transforms, OpenCV axes"),
        # Truth of generated scenes (dl3d data make clevr): world frame z up, one entry per object.
        Column("object_count", pa.int64(), required=False, doc="objects in the scene"),
        Column("object_positions", pa.list_(tensor_type((3,))), shape=(None, 3), required=False,
               doc="(K, 3) object centres, world frame, z up"),
        Column("object_colors", pa.list_(tensor_type((3,))), shape=(None, 3), required=False,
               doc="(K, 3) object RGB in [0, 1]"),
        Column("object_shapes", pa.list_(pa.string()), required=False, doc="(K,) primitive names"),
        Column("object_masks", pa.list_(pa.binary()), required=False,
               doc="(K,) grey PNGs, 255 where that object is the visible surface"),
    ),
)

SYNSIN_RENDER = TableSchema(
    kind="synsin_render",
    version=1,
    doc="The index of `dl3d synsin render`: one row per requested view of each source image.",
    columns=(
        Column("id", pa.string(), doc="'{source_id}/{view:03d}'"),
        Column("source_id", pa.string(), doc="id of the source image"),
        Column("view", pa.int64(), doc="index of the target pose along the trajectory"),
        Column("pose", tensor_type((4, 4)), shape=(4, 4), doc="(4, 4) source-camera-to-target-camera, OpenCV axes"),
        Column("image_path", pa.string(), doc="PNG relative to the output prefix; null when not rendered"),
        Column("status", pa.string(), doc="'ok' or why the view could not be rendered (e.g. 'bad_image')"),
        Column("error", pa.string(), doc="the error text for a status other than 'ok'"),
    ),
)
