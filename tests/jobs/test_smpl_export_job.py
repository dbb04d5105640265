"""``dl3d smpl export`` end to end on a local Ray: equality with smplx, bad input (S3/faults/resume: test_job_contract)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from dl3d.data import list_shards, tensor_to_arrow
from dl3d.jobs.runner import RunnerConfig, run_shards
from dl3d.synthetic.smpl_params import SmplParamsSpec, write_smpl_params_dataset
from dl3d.workers.smpl_export import SmplExportConfig, SmplExportWorker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def params_url(tmp_path_factory) -> str:
    url = str(tmp_path_factory.mktemp("params") / "ds")
    write_smpl_params_dataset(url, SmplParamsSpec(videos=6, frames=12, shards=3, seed=3))
    return url


def _runner(**kw) -> RunnerConfig:
    return RunnerConfig(**({"workers": 2, "progress": False} | kw))


def _read_joints(path) -> np.ndarray:
    col = pq.read_table(path).column("joints").combine_chunks()
    return np.asarray(col.flatten().flatten().to_numpy()).reshape(len(col), -1, 3)


def test_export_equals_direct_smplx_forward(local_ray, params_url, body_model_path, tmp_path):
    import smplx

    out = tmp_path / "out"
    report = run_shards("export", SmplExportWorker, SmplExportConfig(model=body_model_path, meshes="ply", vertices=True),
                        params_url, str(out), _runner())
    assert report.exit_code == 0 and report.count("ok") == 3 and report.rows == 72
    model = smplx.create(body_model_path, model_type="smpl")
    worst = 0.0
    for shard in list_shards(params_url):
        src = pq.read_table(shard.url)
        t = lambda c: torch.tensor(np.array(src.column(c).to_pylist()), dtype=torch.float32)  # noqa: E731
        with torch.no_grad():
            ref = model(betas=t("betas"), global_orient=t("global_orient"), body_pose=t("body_pose"), transl=t("transl"))
        got = _read_joints(out / f"part-{shard.index:05d}.parquet")
        assert got.shape == tuple(ref.joints.shape)
        worst = max(worst, float(np.abs(got - ref.joints.numpy()).max()))
        res = pq.read_table(out / f"part-{shard.index:05d}.parquet")
        assert res.column("id").to_pylist() == src.column("id").to_pylist()
        assert res.column("frame").to_pylist() == src.column("frame").to_pylist()
        mesh = res.column("mesh_path").to_pylist()[-1]
        from pytorch3d.io import load_ply

        verts, faces = load_ply(str(out / mesh))
        assert verts.shape == (6890, 3) and faces.shape[0] == model.faces.shape[0]
        np.testing.assert_allclose(verts.numpy(), ref.vertices[-1].numpy(), atol=1e-5)
    assert worst <= 1e-5, f"max joint difference {worst:.2e} m"
    job = json.loads((out / "_job.json").read_text())
    assert job["status"] == "ok" and job["counts"]["rows"] == 72 and job["versions"]["torch"].startswith("2.12")

    again = run_shards("export", SmplExportWorker, SmplExportConfig(model=body_model_path, meshes="ply", vertices=True),
                       params_url, str(out), _runner())
    assert again.count("skipped") == 3 and again.count("ok") == 0, "a re-run skips committed shards"


def test_bad_input_shards_fail_cleanly_and_lose_nothing(local_ray, body_model_path, tmp_path):
    src = tmp_path / "bad"
    src.mkdir()
    rng = np.random.default_rng(0)

    def table(n=4, body_pose_len=69, nan=False, drop=None, prefix="x"):  # ids unique in the dataset: check_input
        bp = rng.normal(0, 0.2, size=(n, body_pose_len))
        if nan:
            bp[1, 3] = np.nan
        t = pa.table({"id": [f"{prefix}{i}" for i in range(n)], "betas": pa.array(list(np.zeros((n, 10))), pa.list_(pa.float32())),
                      "global_orient": tensor_to_arrow(np.zeros((n, 3))), "body_pose": pa.array(list(bp))})
        return t.drop_columns([drop]) if drop else t

    pq.write_table(table(prefix="a"), src / "part-00000.parquet")
    (src / "part-00001.parquet").write_bytes(b"garbage, not parquet")
    pq.write_table(table(drop="body_pose", prefix="b"), src / "part-00002.parquet")
    pq.write_table(table(body_pose_len=63, prefix="c"), src / "part-00003.parquet")
    pq.write_table(table(nan=True), src / "part-00004.parquet")
    pq.write_table(table(n=0), src / "part-00005.parquet")
    out = tmp_path / "out"
    report = run_shards("export", SmplExportWorker, SmplExportConfig(model=body_model_path), str(src), str(out), _runner())
    assert report.exit_code == 1
    assert {s.index for s in report.shards if s.status == "ok"} == {0, 5}
    assert pq.read_table(out / "part-00005.parquet").num_rows == 0, "an empty shard gives an empty output"
    expected = {
        1: "part-00001.parquet: not a readable Parquet file",
        2: "part-00002.parquet: missing column 'body_pose'",
        3: "part-00003.parquet: column 'body_pose': expected length 69 at level 0, found 63 (row 0)",
        4: "part-00004.parquet: column 'body_pose': NaN or infinite value in 1 row(s), first row 1 (id 'x1')",
    }
    for index, text in expected.items():
        err = json.loads((out / "_errors" / f"part-{index:05d}.json").read_text())
        assert text in err["error"], err["error"]
        assert err["status"] == "bad_input" and err["attempts"] == 1, "bad input is not retried"
        assert "Traceback" not in err["error"]
