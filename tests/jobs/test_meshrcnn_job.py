"""``dl3d meshrcnn reconstruct``: meshes equal the model's own prediction placed as the row says, corrupt
images are row errors, an image without detections gets a row, bad checkpoints exit 2; and the shared
job contract (S3 = local and a second run skipping every shard, dead workers, failing shards; the killed-
driver CLI resume is the runner's, tested once in test_resume_cli.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from job_cases import JobCase

from dl3d.data import Shard, list_shards
from dl3d.data.images import encode_png
from dl3d.workers.base import ShardTask

CATEGORIES = ["cube", "ellipsoid", "cylinder", "cone", "torus"]


def _write_checkpoint(path: str, preset: str, **over) -> str:
    from dl3d.meshrcnn import MESHRCNN_PRESETS, build_meshrcnn
    from dl3d.meshrcnn.checkpoint import meshrcnn_checkpoint

    cfg = MESHRCNN_PRESETS[preset].replace(**over)
    torch.manual_seed(0)
    torch.save(meshrcnn_checkpoint(build_meshrcnn(cfg), cfg, categories=CATEGORIES, step=0), path)
    return path


@pytest.fixture(scope="module")
def mr_assets(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("meshrcnn-ckpt")
    return {"small": _write_checkpoint(str(root / "small.pt"), "cpu-small"),
            "rcnn": _write_checkpoint(str(root / "rcnn.pt"), "rcnn", min_size=48, max_size=64, num_classes=5,
                                      box_score_thresh=0.0, roi_batch_size=8)}


def _images_input(url: str, assets, shards: int) -> int:
    from render_inputs import write_images_dataset

    return write_images_dataset(url, shards=shards, per_shard=2, size=48)


def _worker():
    from dl3d.workers.meshrcnn_reconstruct import MeshRCNNReconstructWorker

    return MeshRCNNReconstructWorker


def _config(assets):
    from dl3d.workers.meshrcnn_config import MeshRCNNReconstructConfig

    return MeshRCNNReconstructConfig(checkpoint=assets["small"])


RECONSTRUCT = JobCase("meshrcnn", ("meshrcnn", "reconstruct"), _worker, _config, _images_input,
                      lambda a: ("--checkpoint", a["small"]), "mesh_path", "meshes")


def _read_ply(data: bytes):
    import os
    import tempfile

    from pytorch3d.io import load_ply

    fd, path = tempfile.mkstemp(suffix=".ply")
    os.write(fd, data)
    os.close(fd)
    try:
        return load_ply(path)
    finally:
        os.unlink(path)


def test_voxmesh_meshes_equal_the_model_and_corrupt_images_are_row_errors(mr_assets, tmp_path):
    from dl3d.meshrcnn.checkpoint import load_meshrcnn_checkpoint
    from dl3d.workers.meshrcnn_config import MeshRCNNReconstructConfig
    from dl3d.workers.meshrcnn_reconstruct import MeshRCNNReconstructWorker

    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    K = np.array([[60.0, 0, 32], [0, 60, 24], [0, 0, 1]], np.float32)
    table = pa.table({"id": ["a", "broken"], "image": pa.array([encode_png(good), b"\x89PNG nope"], pa.binary()),
                      "intrinsics": pa.array([K.tolist(), K.tolist()], pa.list_(pa.list_(pa.float32(), 3), 3))})
    src = tmp_path / "part-00000.parquet"
    pq.write_table(table, src)
    worker = MeshRCNNReconstructWorker(MeshRCNNReconstructConfig(checkpoint=mr_assets["small"], meshes="ply"))
    result = worker.process(ShardTask(Shard(0, str(src)), str(tmp_path / "out")))
    assert result.status == "ok" and result.rows == 2
    rows = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok", "bad_image"]
    assert rows[1]["mesh_path"] is None and "row 1 (id 'broken'): not a readable image" in rows[1]["error"]
    verts, faces = _read_ply((tmp_path / "out" / rows[0]["mesh_path"]).read_bytes())
    model, cfg, _ = load_meshrcnn_checkpoint(torch.load(mr_assets["small"], weights_only=True))
    from dl3d.data.images import resize_image

    x = torch.from_numpy(np.array(resize_image(good, (64, 64)))).permute(2, 0, 1).float()[None] / 255
    Ks = torch.from_numpy(K)[None].clone()
    Ks[:, 0] *= 64 / 64
    Ks[:, 1] *= 64 / 48
    with torch.no_grad():
        ref = model(x, Ks)["meshes"][-1]
    torch.testing.assert_close(verts, ref.verts_packed(), atol=1e-5, rtol=1e-5)
    assert torch.equal(faces, ref.faces_packed())
    zc = (float(verts[:, 2].min()) + float(verts[:, 2].max())) / 2
    assert rows[0]["object_distance"] == pytest.approx(zc, rel=1e-5) and rows[0]["focal_length"] == 60.0
    assert rows[0]["num_verts"] == len(verts) and rows[0]["box"] == [0.0, 0.0, 64.0, 48.0]


def test_rcnn_rows_record_the_placement_and_an_image_without_detections_says_so(mr_assets, tmp_path):
    from dl3d.data.mesh_tables import decode_mask
    from dl3d.workers.meshrcnn_config import MeshRCNNReconstructConfig
    from dl3d.workers.meshrcnn_reconstruct import MeshRCNNReconstructWorker

    _images_input(str(tmp_path / "imgs"), None, 1)
    shard = list_shards(str(tmp_path / "imgs"))[0]
    cfg = MeshRCNNReconstructConfig(checkpoint=mr_assets["rcnn"], score_threshold=0.0, max_detections=2,
                                    object_distance=3.0, focal_length=80.0, meshes="obj")
    result = MeshRCNNReconstructWorker(cfg).process(ShardTask(shard, str(tmp_path / "out")))
    rows = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()
    assert result.rows == 4 and [r["id"] for r in rows] == ["img0_0/000", "img0_0/001", "img0_1/000", "img0_1/001"]
    for r in rows:
        assert r["status"] == "ok" and r["class_name"] == CATEGORIES[r["label"] - 1]
        assert r["focal_length"] == 80.0 and r["object_distance"] == 3.0
        assert decode_mask(r["mask"], "m").shape == (48, 48)
        text = (tmp_path / "out" / r["mesh_path"]).read_text()
        v = np.array([[float(t) for t in ln.split()[1:4]] for ln in text.splitlines() if ln.startswith("v ")])
        # An untrained refiner leaves the cubified full grid (w in [-1, 1]): its depth range is the placement's,
        # z = d (1 -+ dz / 2f), so f (z1 - z0) / ((z0 + z1) / 2) gives back the row's dz.
        z0, z1 = v[:, 2].min(), v[:, 2].max()
        assert (z0 + z1) / 2 == pytest.approx(3.0, rel=1e-4)
        assert 80.0 * (z1 - z0) / ((z0 + z1) / 2) == pytest.approx(r["dz"], rel=1e-3)
    none = MeshRCNNReconstructConfig(checkpoint=mr_assets["rcnn"], score_threshold=1.0)
    MeshRCNNReconstructWorker(none).process(ShardTask(shard, str(tmp_path / "out2")))
    rows = pq.read_table(tmp_path / "out2" / "part-00000.parquet").to_pylist()
    assert [(r["id"], r["status"], r["mesh_path"]) for r in rows] == [("img0_0/none", "no_detection", None),
                                                                     ("img0_1/none", "no_detection", None)]


def test_missing_or_corrupt_checkpoint_exits_2_naming_the_file(mr_assets, tmp_path, capsys):
    from dl3d.jobs.cli import main

    _images_input(str(tmp_path / "imgs"), None, 1)
    base = ["meshrcnn", "reconstruct", "--input", str(tmp_path / "imgs"), "--no-progress"]
    assert main([*base, "--output", str(tmp_path / "o1"), "--checkpoint", str(tmp_path / "nowhere.pt")]) == 2
    assert "nowhere.pt" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    assert main([*base, "--output", str(tmp_path / "o2"), "--checkpoint", str(tmp_path / "junk.pt")]) == 2
    assert "junk.pt is not a torch checkpoint" in capsys.readouterr().err
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    assert main([*base, "--output", str(tmp_path / "o3"), "--checkpoint", str(tmp_path / "other.pt")]) == 2
    assert "not a dl3d Mesh R-CNN checkpoint" in capsys.readouterr().err


# ---- the shared job contract, on this job ----------------------------------------------------------------


@pytest.fixture(scope="module")
def mr_inputs(tmp_path_factory, mr_assets) -> dict[str, tuple[str, int]]:
    url = str(tmp_path_factory.mktemp("meshrcnn-inputs") / "imgs")
    return {RECONSTRUCT.name: (url, RECONSTRUCT.make_input(url, mr_assets, 3))}


@pytest.mark.slow
def test_contract_output_over_s3_is_identical_to_local(local_ray, s3_server, mr_inputs, mr_assets, tmp_path):
    from test_job_contract import test_output_over_s3_is_identical_to_local as contract

    contract(RECONSTRUCT, local_ray, s3_server, mr_inputs, mr_assets, tmp_path)


@pytest.mark.slow
def test_contract_dead_worker_is_replaced_and_failing_shard_is_recorded(local_ray, mr_inputs, mr_assets, tmp_path):
    from test_job_contract import test_dead_worker_is_replaced_and_failing_shard_is_recorded as contract

    contract(RECONSTRUCT, local_ray, mr_inputs, mr_assets, tmp_path)
