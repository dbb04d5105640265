"""Datasets over fsspec: layout, schema checks with named errors, local and S3 (moto server)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dl3d.data import DataError, DatasetWriter, JobOutput, list_shards, read_meta, read_table, tensor_to_arrow
from dl3d.data.schema import arrow_to_tensor
from dl3d.data.smpl_tables import SMPL_PARAMS, decode_smpl_params


def _params_table(n: int, seed: int = 0, body_pose_len: int = 69) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({
        "id": pa.array([f"r{i}" for i in range(n)]),
        "betas": pa.array(list(rng.normal(size=(n, 10)).astype(np.float32)), pa.list_(pa.float32())),
        "global_orient": tensor_to_arrow(rng.normal(size=(n, 3))),
        "body_pose": pa.array(list(rng.normal(size=(n, body_pose_len))), pa.list_(pa.float64())),
        "transl": tensor_to_arrow(rng.normal(size=(n, 3))),
    })


@pytest.mark.parametrize("where", ["local", "s3"])
def test_dataset_round_trip(where, tmp_path, request):
    if where == "s3":
        request.getfixturevalue("s3_server")
        url = f"s3://dl3d-test/roundtrip-{tmp_path.name}"
    else:
        url = str(tmp_path / "ds")
    writer = DatasetWriter(url, SMPL_PARAMS, produced_by={"test": True})
    tables = [_params_table(5, seed=0), _params_table(3, seed=1)]
    for i, t in enumerate(tables):
        writer.write_shard(i, t)
    writer.close()
    meta = read_meta(url)
    assert meta["kind"] == "smpl_params" and meta["num_rows"] == 8 and meta["num_shards"] == 2
    shards = list_shards(url)
    assert [s.index for s in shards] == [0, 1]
    got = decode_smpl_params(read_table(shards[1].url, SMPL_PARAMS), shards[1].url)
    want = tables[1]
    np.testing.assert_allclose(got.body_pose, np.array(want.column("body_pose").to_pylist()), rtol=0, atol=1e-6)
    assert got.ids == ["r0", "r1", "r2"]


def test_plain_parquet_folder_from_elsewhere(tmp_path):
    """A folder of arbitrarily named Parquet files (nested, with a _SUCCESS-style sidecar) is a dataset."""
    (tmp_path / "year=2024").mkdir()
    pq.write_table(_params_table(2), tmp_path / "year=2024" / "b.parquet")
    pq.write_table(_params_table(4), tmp_path / "a.parquet")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "_tmp").mkdir()
    pq.write_table(_params_table(1), tmp_path / "_tmp" / "ignored.parquet")
    shards = list_shards(str(tmp_path))
    assert [s.index for s in shards] == [0, 1]
    assert shards[0].url.endswith("a.parquet") and shards[1].url.endswith("b.parquet")
    assert read_meta(str(tmp_path)) is None


def test_parts_are_written_without_dictionary_pages():
    """The writer's Parquet: the same table back, deterministic, no dictionary pages (Parquet's default
    tries one on every column: a bigger file for the all-distinct float arrays)."""
    import io

    from dl3d.data.dataset import table_to_parquet

    n = 500
    rng = np.random.default_rng(0)
    table = _params_table(n).append_column("status", pa.array(["ok"] * (n - 3) + ["failed"] * 3))
    table = table.append_column("joints", tensor_to_arrow(rng.normal(size=(n, 24, 3)).astype(np.float32)))
    data = table_to_parquet(table)
    assert data == table_to_parquet(table)  # deterministic
    assert pq.read_table(io.BytesIO(data)).equals(table)
    meta = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0)
    assert not any(meta.column(i).has_dictionary_page for i in range(meta.num_columns))
    default = pa.BufferOutputStream()
    pq.write_table(table, default, compression="zstd")
    assert len(data) < 0.85 * len(default.getvalue())


@pytest.mark.parametrize("chunks,row,shown", [
    ([[800.0, None], [700.0, float("nan"), -1.0]], 3, "nan"),  # a null is unknown, NaN is not: the row across chunks
    ([[1280, 0]], 1, "0"),  # integers
    ([[1.5, float("inf")]], 1, "inf"),
    ([["800", "x"]], 0, "'800'"),  # not a number column at all: the first row named
])
def test_check_positive_names_the_first_bad_row(chunks, row, shown):
    from dl3d.data.dataset import check_positive

    values = pa.chunked_array(chunks)
    table = pa.table({"id": [f"r{i}" for i in range(len(values))], "focal_length": values})
    with pytest.raises(DataError, match=rf"column 'focal_length': row {row} \(id 'r{row}'\) holds {shown};"):
        check_positive(table, "focal_length", "src.parquet")
    check_positive(table.slice(0, row), "focal_length", "src.parquet")  # the rows before it pass
    check_positive(pa.table({"focal_length": pa.array([None, 2.0])}), "focal_length", "src.parquet")


def test_pose72_column_is_accepted(tmp_path):
    t = _params_table(4)
    pose = np.concatenate([np.array(t.column("global_orient").to_pylist()), np.array(t.column("body_pose").to_pylist())], 1)
    t2 = t.drop_columns(["global_orient", "body_pose"]).append_column("pose", pa.array(list(pose)))
    got = decode_smpl_params(t2, "x.parquet")
    np.testing.assert_allclose(got.global_orient, pose[:, :3], atol=1e-6)
    np.testing.assert_allclose(got.body_pose, pose[:, 3:], atol=1e-6)


def test_errors_name_file_column_and_problem(tmp_path):
    bad = tmp_path / "part-00003.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"part-00003\.parquet: not a readable Parquet file"):
        read_table(str(bad), SMPL_PARAMS)

    with pytest.raises(DataError, match=r"f\.parquet: missing column 'body_pose'"):
        decode_smpl_params(_params_table(3).drop_columns(["body_pose"]), "f.parquet")
    with pytest.raises(DataError, match=r"f\.parquet: missing column 'betas'"):
        SMPL_PARAMS.validate(_params_table(3).drop_columns(["betas"]), "f.parquet")
    with pytest.raises(DataError, match=r"column 'body_pose': expected length 69 at level 0, found 66 \(row 0\)"):
        decode_smpl_params(_params_table(3, body_pose_len=66), "f.parquet")
    t = _params_table(3)
    wrong_type = t.set_column(t.column_names.index("transl"), "transl", pa.array(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"column 'transl': expected numeric list of shape \(3\) per row, found type string"):
        SMPL_PARAMS.validate(wrong_type, "f.parquet")

    bp = np.random.default_rng(0).normal(size=(3, 69))
    bp[2, 5] = np.nan
    t = _params_table(3)
    nan_table = t.set_column(t.column_names.index("body_pose"), "body_pose", pa.array(list(bp)))
    with pytest.raises(DataError, match=r"f\.parquet: column 'body_pose': NaN or infinite value in 1 row\(s\), first row 2 \(id 'r2'\)"):
        decode_smpl_params(nan_table, "f.parquet")
    with pytest.raises(DataError, match=r"column 'betas': 10 coefficients per row, the body model has 5"):
        decode_smpl_params(_params_table(2), "f.parquet", max_betas=5)


def test_arrow_tensor_codec_nulls_and_shapes():
    x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    np.testing.assert_array_equal(arrow_to_tensor(tensor_to_arrow(x), (4, 3), name="x", source="s"), x)
    np.testing.assert_array_equal(arrow_to_tensor(tensor_to_arrow(x), (None, 3), name="x", source="s"), x)
    with_null = pa.array([[1.0, 2.0, 3.0], None], pa.list_(pa.float32()))
    with pytest.raises(DataError, match=r"s: column 'x': null value at row 1"):
        arrow_to_tensor(with_null, (3,), name="x", source="s")


def test_job_output_commit_protocol(tmp_path):
    out = JobOutput(str(tmp_path / "out"))
    assert out.committed() == set()
    out.write_part(7, _params_table(2))
    out.record_error(7, {"error": "boom"})
    assert out.committed() == set() and 7 in out.errors()
    out.commit(7, {"rows": 2})
    assert out.committed() == {7}
    assert out.errors() == {}, "a commit clears the shard's earlier error record"
    assert json.loads((tmp_path / "out" / "_committed" / "part-00007.json").read_text())["rows"] == 2
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")], "no temporary files left behind"
