"""GIRAFFE's data: CLEVR-like scenes seen by the model's own camera, with truth; image folders ingested."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from dl3d.data import list_shards, read_meta, read_table
from dl3d.data.images import decode_image
from dl3d.data.view_tables import IMAGES
from dl3d.giraffe.camera import camera_pose, focal_from_fov
from dl3d.synthetic.clevr import COUNT_PROBS, ClevrScene, ClevrSpec, render_scene, sample_scene


def _project(point: np.ndarray, spec: ClevrSpec) -> tuple[float, float]:
    """(row, column) of a world point in GIRAFFE's camera (dl3d.giraffe.camera's pixel convention)."""
    pose = camera_pose(torch.zeros(1), torch.tensor([spec.elevation_v]), spec.radius)[0].double()
    cam = torch.linalg.inv(pose) @ torch.tensor([*point, 1.0], dtype=torch.float64)
    f, s = focal_from_fov(spec.fov), spec.image_size
    x, y = float(cam[0] / -cam[2]) * f, float(cam[1] / -cam[2]) * f
    return (1 - y) * (s - 1) / 2, (x + 1) * (s - 1) / 2


def test_object_counts_follow_the_official_probabilities_and_objects_do_not_overlap():
    spec = ClevrSpec(scenes=1500, shards=1)
    scenes = [sample_scene(spec, i) for i in range(1500)]
    counts = np.bincount([len(s.shapes) for s in scenes], minlength=6)[2:] / 1500
    assert np.allclose(counts, [COUNT_PROBS[k] for k in (2, 3, 4, 5)], atol=0.035)
    for s in scenes[:200]:
        d = np.linalg.norm(s.positions[:, None, :2] - s.positions[None, :, :2], axis=-1) + np.eye(len(s.shapes)) * 9
        assert d.min() >= 2 * 0.17 * np.sqrt(2) and np.abs(s.positions[:, :2]).max() <= 0.713
        assert np.allclose(s.positions[:, 2], 0.17), "objects rest on the ground"
    two = ClevrSpec(scenes=50, min_objects=2, max_objects=2)
    assert {len(sample_scene(two, i).shapes) for i in range(50)} == {2}
    assert sample_scene(spec, 7).positions.tolist() == sample_scene(ClevrSpec(scenes=9, shards=3), 7).positions.tolist()


def test_rendered_objects_appear_where_the_giraffe_camera_projects_them():
    spec = ClevrSpec(scenes=1, shards=1, image_size=64)
    pos = np.array([[0.3, 0.45, 0.17], [-0.5, -0.2, 0.17]])
    scene = ClevrScene(["sphere", "cube"], pos, np.array([[0.9, 0.1, 0.1], [0.1, 0.2, 0.9]]), np.zeros(2))
    img, masks = render_scene(scene, spec)
    assert img.shape == (64, 64, 3) and masks.shape == (2, 64, 64)
    assert not (masks[0] & masks[1]).any(), "visible masks are disjoint"
    rows, cols = np.nonzero(masks[0])
    r, c = _project(pos[0], spec)
    assert abs(rows.mean() - r) < 0.6 and abs(cols.mean() - c) < 0.6, ((rows.mean(), cols.mean()), (r, c))
    # inside a mask the pixels carry that object's colour (shaded: 45-100 % of it)
    red = img[masks[0]].astype(float) / 255
    assert (red[:, 0] > 2 * red[:, 1]).mean() > 0.95
    assert (img[~masks.any(0)].astype(float) / 255).std(0).max() < 0.2, "ground and sky are grey"


def test_clevr_dataset_has_truth_columns_and_the_cli_writes_it(tmp_path):
    from dl3d.jobs.cli import main

    out = tmp_path / "clevr"
    assert main(["data", "make", "clevr", "--out", str(out), "--scenes", "4", "--shards", "2",
                 "--image-size", "32", "--seed", "3"]) == 0
    meta = read_meta(str(out))
    assert meta["kind"] == "images" and meta["num_rows"] == 4 and len(list_shards(str(out))) == 2
    table = read_table(list_shards(str(out))[0].url, IMAGES)
    row = table.to_pylist()[0]
    assert decode_image(row["image"], "x").shape == (32, 32, 3)
    k = row["object_count"]
    assert 2 <= k <= 5 and len(row["object_positions"]) == k and len(row["object_colors"]) == k
    assert len(row["object_masks"]) == k and len(row["object_shapes"]) == k
    mask = np.asarray(Image.open(io.BytesIO(row["object_masks"][0])))
    assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 255}
    scene = sample_scene(ClevrSpec(scenes=4, shards=2, image_size=32, seed=3), 0)
    assert np.allclose(np.array(row["object_positions"]), scene.positions, atol=1e-6)


def _write(path, img: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_ingest_images_keeps_bytes_crops_resizes_and_skips_bad_files(tmp_path):
    from dl3d.ingest.images import IngestImagesConfig, ingest_images

    rng = np.random.default_rng(0)
    wide = rng.integers(0, 255, (30, 50, 3), dtype=np.uint8)
    jpg = _write(tmp_path / "in" / "a" / "001.jpg", wide, "JPEG")
    png = _write(tmp_path / "in" / "b.png", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8), "PNG")
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    report = ingest_images(str(tmp_path / "in"), str(tmp_path / "orig"), IngestImagesConfig(images_per_shard=1))
    assert report.rows == 2 and report.kept_original == 2 and report.shards == 2
    assert [s.name for s in report.skipped] == ["broken.jpg"] and "not a readable image" in report.skipped[0].reason
    rows = [r for part in sorted((tmp_path / "orig").glob("part-*.parquet")) for r in pq.read_table(part).to_pylist()]
    assert [r["id"] for r in rows] == ["a/001", "b"]
    assert rows[0]["image"] == jpg and rows[1]["image"] == png, "original bytes are kept"
    assert (rows[0]["width"], rows[0]["height"]) == (50, 30)
    report = ingest_images(str(tmp_path / "in"), str(tmp_path / "sq"), IngestImagesConfig(size=16, crop="center"))
    rows = pq.read_table(tmp_path / "sq" / "part-00000.parquet").to_pylist()
    img = decode_image(rows[0]["image"], "x")
    assert img.shape == (16, 16, 3) and rows[0]["width"] == 16 and report.kept_original == 0
    crop = np.asarray(Image.fromarray(decode_image(jpg, "j")[:, 10:40]).resize((16, 16), Image.Resampling.BICUBIC))
    assert np.abs(img.astype(int) - crop.astype(int)).max() <= 1, "the centred square, resized"
    report = ingest_images(str(tmp_path / "in"), str(tmp_path / "short"), IngestImagesConfig(size=15))
    first = pq.read_table(tmp_path / "short" / "part-00000.parquet").to_pylist()[0]
    assert (first["width"], first["height"]) == (25, 15), "no crop: the shorter side becomes SIZE"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .jpg/.jpeg/.png files under"):
        ingest_images(str(tmp_path / "empty"), str(tmp_path / "x"), IngestImagesConfig())
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ingest_images(str(tmp_path / "missing"), str(tmp_path / "x"), IngestImagesConfig())


def test_object_masks_have_the_size_of_the_geometry_seen_through_the_model_camera():
    """The masks cover what GIRAFFE's own rays (dl3d.giraffe.camera.pixel_rays) hit: an object the size of
    the CLEVR presets' box scale (0.17) at the prior's position projects to the mask's pixels (the old
    "half of the 2 x 2 sub-pixels" rule made this cube's mask 86 px for 75 px hit)."""
    from dl3d.giraffe.camera import pixel_rays

    spec = ClevrSpec(scenes=1, shards=1, image_size=64)
    pos = np.array([[0.3, 0.45, 0.17], [-0.5, -0.2, 0.17]])
    scene = ClevrScene(["sphere", "cube"], pos, np.array([[0.9, 0.1, 0.1], [0.1, 0.2, 0.9]]), np.zeros(2))
    _, masks = render_scene(scene, spec)
    pose = camera_pose(torch.zeros(1), torch.tensor([spec.elevation_v]), spec.radius).double()
    o, d = pixel_rays(64, focal_from_fov(spec.fov), pose)
    o, d = o[0].numpy(), d[0].numpy()
    # sphere: the ray passes within 0.17 of the centre; cube: slab test on the axis-aligned box
    rel = pos[0] - o
    t = (d @ rel) / (d * d).sum(1)
    hit_sphere = np.linalg.norm(o + t[:, None] * d - pos[0], axis=1) <= 0.17
    lo, hi = (pos[1] - 0.17 - o) / d, (pos[1] + 0.17 - o) / d
    hit_cube = np.minimum(lo, hi).max(1) <= np.maximum(lo, hi).min(1)
    for mask, hit in zip(masks, (hit_sphere, hit_cube)):
        hit = hit.reshape(64, 64)
        iou = (mask & hit).sum() / (mask | hit).sum()
        assert iou > 0.95 and abs(int(mask.sum()) - int(hit.sum())) <= 0.04 * hit.sum(), (iou, mask.sum(), hit.sum())
