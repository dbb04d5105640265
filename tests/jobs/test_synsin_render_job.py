"""``dl3d synsin render``: every requested view once, poses recorded, corrupt images as per-row errors."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from render_inputs import write_images_dataset

from dl3d.data import Shard, list_shards
from dl3d.data.images import decode_image, encode_png
from dl3d.synsin.trajectory import trajectory
from dl3d.workers.base import ShardTask
from dl3d.workers.synsin_render import SynSinRenderConfig, SynSinRenderWorker


def test_views_match_the_model_and_poses_follow_the_trajectory(job_assets, tmp_path):
    from dl3d.synsin import load_synsin_checkpoint

    write_images_dataset(str(tmp_path / "imgs"), shards=1, per_shard=3)
    cfg = SynSinRenderConfig(checkpoint=job_assets["synsin_checkpoint"], trajectory="pan", steps=5, magnitude=0.2,
                             gif=True, batch_size=2)
    worker = SynSinRenderWorker(cfg)
    shard = list_shards(str(tmp_path / "imgs"))[0]
    result = worker.process(ShardTask(shard, str(tmp_path / "out")))
    assert result.status == "ok" and result.rows == 15
    index = pq.read_table(tmp_path / "out" / "part-00000.parquet")
    assert index.column("id").to_pylist()[:5] == [f"img0_0/{t:03d}" for t in range(5)]
    poses = np.array(index.column("pose").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(poses[:5], trajectory("pan", 5, 0.2).numpy(), atol=1e-6)
    assert poses[2, 0, 3] == 0.0 and poses[0, 0, 3] == np.float32(0.2), "pan: camera moves from -0.2 m to +0.2 m"
    # The third source's middle view equals a direct synthesize call on the decoded image (PNG-quantised).
    model = load_synsin_checkpoint(job_assets["synsin_checkpoint"], with_discriminator=False)["generator"].eval()
    src = pq.read_table(shard.url)
    img = torch.from_numpy(decode_image(src.column("image")[2].as_py(), "x")).permute(2, 0, 1).float()[None] / 255
    K = torch.tensor(src.column("intrinsics")[2].as_py(), dtype=torch.float32)[None]
    with torch.inference_mode():
        ref = model.synthesize(img, K, trajectory("pan", 5, 0.2)[None])[0, 2].clamp(0, 1)
    rendered = decode_image((tmp_path / "out" / index.column("image_path")[12].as_py()).read_bytes(), "y")
    assert np.abs(rendered.astype(np.float32) / 255 - ref.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    assert len(list((tmp_path / "out" / "gifs").rglob("*.gif"))) == 3


def test_corrupt_image_is_a_row_error_and_explicit_poses_are_used(job_assets, tmp_path):
    good = encode_png(np.full((40, 48, 3), 128, np.uint8))
    poses = [trajectory("orbit", 2, 0.1).numpy(), trajectory("dolly", 3, 0.5).numpy(), trajectory("pan", 1, 0.0).numpy()]
    table = pa.table({
        "id": ["a", "broken", "c"],
        "image": pa.array([good, b"\x89PNG not really", good], pa.binary()),
        "target_poses": pa.array([p.tolist() for p in poses], pa.list_(pa.list_(pa.list_(pa.float32(), 4), 4))),
    })
    src = tmp_path / "part-00000.parquet"
    pq.write_table(table, src)
    cfg = SynSinRenderConfig(checkpoint=job_assets["synsin_checkpoint"], trajectory="explicit")
    result = SynSinRenderWorker(cfg).process(ShardTask(Shard(0, str(src)), str(tmp_path / "out")))
    assert result.status == "ok" and result.rows == 6
    index = pq.read_table(tmp_path / "out" / "part-00000.parquet").to_pylist()
    broken = [r for r in index if r["source_id"] == "broken"]
    assert len(broken) == 3 and all(r["status"] == "bad_image" and r["image_path"] is None for r in broken)
    assert "part-00000.parquet row 1 (id 'broken'): not a readable image" in broken[0]["error"]
    ok = [r for r in index if r["status"] == "ok"]
    assert [r["id"] for r in ok] == ["a/000", "a/001", "c/000"]
    for r in ok:
        img = decode_image((tmp_path / "out" / r["image_path"]).read_bytes(), r["id"])
        assert img.shape == (32, 32, 3), "views come out at the checkpoint's resolution"
    np.testing.assert_allclose(np.array(ok[1]["pose"]), poses[0][1], atol=1e-6)


def test_preflight_checks_files_only(job_assets, tmp_path, monkeypatch):
    """The driver's check reads headers and train.json; it never unpickles or builds a model."""
    import json

    import pytest

    import dl3d.synsin
    from dl3d.workers.checkpoints import check_checkpoint

    def check_render_checkpoint(url):
        check_checkpoint(url, "synsin", "SynSin checkpoint")

    def no_build(*a, **k):
        raise AssertionError("preflight built a model")

    monkeypatch.setattr(dl3d.synsin, "load_synsin_checkpoint", no_build)
    monkeypatch.setattr(torch, "load", no_build)
    SynSinRenderWorker.preflight(SynSinRenderConfig(checkpoint=job_assets["synsin_checkpoint"]))

    with pytest.raises(FileNotFoundError, match="SynSin checkpoint not found: .*missing.pt"):
        check_render_checkpoint(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"GIF89a....")
    with pytest.raises(ValueError, match="junk.pt is not a torch checkpoint .*found b'GIF8'"):
        check_render_checkpoint(str(tmp_path / "junk.pt"))
    folder = tmp_path / "step-00000001"
    folder.mkdir()
    (folder / "state.pt").write_bytes(open(job_assets["synsin_checkpoint"], "rb").read())
    with pytest.raises(FileNotFoundError, match="without train.json"):
        check_render_checkpoint(str(folder))
    (folder / "train.json").write_text(json.dumps({"family": "toy"}))
    with pytest.raises(ValueError, match="written by model family 'toy', not 'synsin'"):
        check_render_checkpoint(str(folder))
    (folder / "train.json").write_text(json.dumps({"family": "synsin"}))
    check_render_checkpoint(str(folder))
