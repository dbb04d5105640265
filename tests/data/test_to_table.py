"""``to_table``: every table is built from its declared schema; what it builds reads back through the schema."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest

from dl3d.data import arrow_to_tensor, to_table
from dl3d.data.keypoint_tables import KEYPOINTS2D
from dl3d.data.smpl_tables import SMPL_EXPORT, SMPL_FIT, SMPL_PARAMS, decode_smpl_params
from dl3d.data.view_tables import IMAGES, VIEW_PAIRS


def _view_rows(n: int, rng: np.random.Generator) -> dict:
    return {
        "id": [f"p{i}" for i in range(n)], "scene": ["s"] * n, "src_frame": list(range(n)), "tgt_frame": [None] * n,
        "src_image": [b"a"] * n, "tgt_image": [b"b"] * n, "width": [8] * n, "height": [6] * n,
        "intrinsics": [rng.normal(size=(3, 3)) for _ in range(n)],  # a list of per-row arrays
        "src_pose": rng.normal(size=(n, 4, 4)), "tgt_pose": rng.normal(size=(n, 4, 4)),
    }


def test_view_pairs_types_come_from_the_schema_and_values_round_trip():
    rng = np.random.default_rng(0)
    rows = _view_rows(3, rng)
    table = to_table(VIEW_PAIRS, rows)
    assert table.schema == VIEW_PAIRS.arrow_schema()
    VIEW_PAIRS.validate(table, "mem")
    np.testing.assert_allclose(arrow_to_tensor(table.column("intrinsics"), (3, 3), name="intrinsics", source="mem"),
                               np.stack(rows["intrinsics"]).astype(np.float32))
    np.testing.assert_allclose(arrow_to_tensor(table.column("tgt_pose"), (4, 4), name="tgt_pose", source="mem"),
                               rows["tgt_pose"].astype(np.float32))
    assert table.column("tgt_frame").null_count == 3 and table.column("src_frame").to_pylist() == [0, 1, 2]


def test_empty_inputs_build_empty_tables_of_every_kind():
    table = to_table(VIEW_PAIRS, {c.name: [] for c in VIEW_PAIRS.columns})
    assert table.num_rows == 0 and table.schema == VIEW_PAIRS.arrow_schema()
    for schema in (SMPL_PARAMS, SMPL_EXPORT, SMPL_FIT, KEYPOINTS2D, IMAGES):
        required = {c.name: [] for c in schema.columns if c.required}
        empty = to_table(schema, required)
        assert empty.num_rows == 0 and empty.schema == schema.arrow_schema(list(required))


def test_free_leading_dimension_takes_equal_or_ragged_rows():
    rng = np.random.default_rng(1)
    betas = rng.normal(size=(4, 10))
    params = to_table(SMPL_PARAMS, {"id": list("abcd"), "betas": betas, "global_orient": np.zeros((4, 3)),
                                    "body_pose": rng.normal(size=(4, 69)), "joints": rng.normal(size=(4, 24, 3))})
    decoded = decode_smpl_params(params, "mem")
    np.testing.assert_allclose(decoded.betas, betas.astype(np.float32))
    np.testing.assert_array_equal(decoded.transl, np.zeros((4, 3)))
    assert params.schema.field("betas").type == pa.list_(pa.float32())

    body25, coco = rng.normal(size=(25, 3)), rng.normal(size=(17, 3))
    kp = to_table(KEYPOINTS2D, {"id": ["x", "y"], "video": ["v", "v"], "track": [0, 0], "frame": [0, 1],
                                "keypoints": [body25, coco], "keypoint_format": ["body25", "coco17"]})
    back = kp.column("keypoints").to_pylist()
    assert [len(r) for r in back] == [25, 17]
    np.testing.assert_allclose(np.array(back[1]), coco.astype(np.float32))


def test_arrow_input_is_cast_to_the_declared_type():
    table = to_table(SMPL_EXPORT, {"id": pa.array(["a"], pa.large_string()), "frame": pa.array([3], pa.int32()),
                                   "joints": np.zeros((1, 45, 3))})
    assert table.schema.field("id").type == pa.string() and table.schema.field("frame").type == pa.int64()


@pytest.mark.parametrize(("columns", "message"), [
    ({"id": ["a"], "betas": np.zeros((1, 10)), "colour": ["red"]}, "smpl_params: unknown column 'colour'"),
    ({"betas": np.zeros((1, 10))}, "smpl_params: missing required column 'id'"),
    ({"id": ["a", "b"], "betas": np.zeros((1, 10))}, "smpl_params: columns have different lengths: {'id': 2, 'betas': 1}"),
    ({"id": ["a"], "betas": np.zeros((1, 10)), "body_pose": np.zeros((1, 72))},
     "smpl_params: column 'body_pose': expected (69) per row, found (72,) in rows"),
    ({"id": ["a"], "betas": np.zeros((1, 10)), "joints": np.zeros((1, 45, 3))},
     "smpl_params: column 'joints': expected (24, 3) per row, found (45, 3) in rows"),
])  # fmt: skip
def test_errors_name_the_kind_and_the_column(columns, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        to_table(SMPL_PARAMS, columns)


def test_ragged_rows_of_the_wrong_inner_shape_are_refused():
    with pytest.raises(ValueError, match=r"keypoints2d: column 'keypoints': expected \(\*, 3\) per row, found "
                                         r"\(17, 2\) in row 1"):
        to_table(KEYPOINTS2D, {"id": ["x", "y"], "video": ["v", "v"], "track": [0, 0], "frame": [0, 1],
                               "keypoints": [np.zeros((25, 3)), np.zeros((17, 2))],
                               "keypoint_format": ["body25", "coco17"]})


def test_two_free_dimensions_take_ragged_lists_of_ragged_arrays():
    from dl3d.data import Column, TableSchema, tensor_type

    objects = TableSchema(kind="objects", version=1, columns=(
        Column("id", pa.string()),
        Column("boxes", pa.list_(tensor_type((4,))), shape=(None, 4)),
        Column("verts", pa.list_(pa.list_(tensor_type((3,)))), shape=(None, None, 3)),
    ))
    rng = np.random.default_rng(2)
    verts = [[rng.normal(size=(5, 3)), rng.normal(size=(2, 3))], [], [rng.normal(size=(4, 3))]]
    table = to_table(objects, {"id": ["a", "b", "c"], "boxes": [rng.random((2, 4)), [], rng.random((1, 4))],
                               "verts": verts})
    assert table.schema == objects.arrow_schema()
    back = table.column("verts").to_pylist()
    assert [[len(v) for v in row] for row in back] == [[5, 2], [], [4]]
    np.testing.assert_allclose(np.array(back[0][1]), verts[0][1].astype(np.float32))
    assert [len(b) for b in table.column("boxes").to_pylist()] == [2, 0, 1]
    empty = to_table(objects, {"id": ["a", "b"], "boxes": [[], []], "verts": [[], []]})
    assert empty.column("verts").to_pylist() == [[], []]
    with pytest.raises(ValueError, match=r"objects: column 'boxes': expected \(\*, 4\) per row, found \(2, 3\) in row 0"):
        to_table(objects, {"id": ["a", "b"], "boxes": [np.zeros((2, 3)), np.zeros((1, 4))], "verts": [[], []]})


def test_amass_index_columns_are_the_declared_ones():
    from dl3d.body.amass import AMASS_INDEX_COLUMNS
    from dl3d.data.smpl_tables import AMASS_INDEX

    assert AMASS_INDEX_COLUMNS == tuple(c.name for c in AMASS_INDEX.columns)
