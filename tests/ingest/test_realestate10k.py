"""RealEstate10K ingest: camera lines -> pixel K and exact poses, pairs within the gap, skipped inputs named."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from dl3d.data import DataError, arrow_to_tensor, list_shards, read_meta, read_table
from dl3d.data.images import decode_image
from dl3d.data.view_tables import VIEW_PAIRS
from dl3d.ingest.realestate10k import (
    CameraFrame,
    IngestRealEstateConfig,
    ingest_realestate10k,
    intrinsics_matrix,
    parse_camera_file,
    sample_pairs,
)

STEP = 33367  # microseconds between frames at 29.97 fps, as in the real files
W, H = 24, 16
NORM = {"seqA": (0.6, 0.9, 0.5, 0.45), "seqB": (0.62, 0.93, 0.48, 0.52)}  # fx fy cx cy, normalised; fy/fx = W/H


def _pose(i: int, seq: str) -> np.ndarray:
    """(3, 4) world-to-camera of frame i: turning 4 degrees and moving 0.1 per frame."""
    a = math.radians(4.0 * i + (10 if seq == "seqB" else 0))
    R = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])
    c = np.array([0.1 * i, -0.02 * i, 0.3])
    return np.concatenate([R, (-R @ c)[:, None]], axis=1)


def _line(i: int, seq: str) -> str:
    fx, fy, cx, cy = NORM[seq]
    numbers = [fx, fy, cx, cy, 0.0, 0.0, *_pose(i, seq).reshape(-1)]
    return " ".join([str(1000 + i * STEP)] + [f"{x:.9f}" for x in numbers])


def _colour(i: int) -> tuple[int, int, int]:
    return (40 * i, 255 - 40 * i, 100)


def _image(i: int, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((H, W, 3), _colour(i), np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def tree(tmp_path):
    """A tiny RealEstate10K tree: 2 sequences of 6 frames; seqA line 5 (frame 3) is malformed;
    seqB frame 4 has no image and frame 5 a corrupt one. seqA frames are PNG, seqB JPEG."""
    cams, frames = tmp_path / "RealEstate10K" / "train", tmp_path / "frames"
    cams.mkdir(parents=True)
    for seq, ext, fmt in (("seqA", "png", "PNG"), ("seqB", "jpg", "JPEG")):
        lines = [f"https://www.youtube.com/watch?v={seq}xyz"] + [_line(i, seq) for i in range(6)]
        if seq == "seqA":
            lines[4] = lines[4].replace(" 0.000000000 ", " 0.0oops ", 1)
        (cams / f"{seq}.txt").write_text("\n".join(lines) + "\n")
        (frames / seq).mkdir(parents=True)
        for i in range(6):
            if seq == "seqB" and i == 4:
                continue
            data = b"\xff\xd8\xff\xe0 definitely not a jpeg" if (seq == "seqB" and i == 5) else _image(i, fmt)
            (frames / seq / f"{1000 + i * STEP}.{ext}").write_bytes(data)
    (cams / "video_loc.txt").write_text("seqA\nseqB\n")  # SynSin's sequence list: not a camera file
    return cams, frames


def _rows(url: str) -> list[dict]:
    rows = []
    for shard in list_shards(url):
        t = read_table(shard.url, VIEW_PAIRS)
        decoded = {k: arrow_to_tensor(t.column(k), s, name=k, source=shard.url)
                   for k, s in (("intrinsics", (3, 3)), ("src_pose", (4, 4)), ("tgt_pose", (4, 4)))}
        for i, r in enumerate(t.to_pylist()):
            r.update({k: v[i] for k, v in decoded.items()})
            r["shard"] = shard.index
            rows.append(r)
    return rows


def test_ingest_intrinsics_poses_gaps_and_skipped_inputs(tree, tmp_path):
    cams, frames = tree
    out = str(tmp_path / "pairs")
    # more pairs than there are: every pair within the gap is taken, so every usable frame is read
    cfg = IngestRealEstateConfig(pairs_per_sequence=20, max_gap=2, sequences_per_shard=1, seed=3)
    report = ingest_realestate10k(str(cams), str(frames), out, cfg)
    assert (report.sequences, report.frames, report.shards) == (2, 11, 2)  # 5 good lines in seqA, 6 in seqB
    # seqA frames 0 1 2 4 5 and seqB 0 1 2 3 (4 missing, 5 corrupt): 5 + 5 adjacent-within-2 pairs, both ways
    assert report.pairs == 20 and report.images == 9
    skipped = {s.name: s.reason for s in report.skipped}
    assert set(skipped) == {f"{cams}/seqA.txt:5", f"{frames}/seqB/{1000 + 4 * STEP}.png",
                            f"{frames}/seqB/{1000 + 5 * STEP}.jpg"}
    assert skipped[f"{cams}/seqA.txt:5"] == "malformed camera line: not a number: '0.0oops'"
    assert skipped[f"{frames}/seqB/{1000 + 4 * STEP}.png"] == "frame image not found (tried extensions png, jpg, jpeg)"
    assert skipped[f"{frames}/seqB/{1000 + 5 * STEP}.jpg"].startswith("not a readable image")
    errors = json.loads((tmp_path / "pairs" / "_ingest_errors.json").read_text())
    assert errors == [{"name": s.name, "reason": s.reason} for s in report.skipped]
    assert read_meta(out)["num_rows"] == 20 and read_meta(out)["produced_by"]["skipped_inputs"] == 3

    rows = _rows(out)
    assert [r["shard"] for r in rows] == [0] * 10 + [1] * 10
    assert [r["scene"] for r in rows] == ["seqA"] * 10 + ["seqB"] * 10
    assert len({r["id"] for r in rows}) == 20
    for r in rows:
        seq = r["scene"]
        i, j = (r["src_frame"] - 1000) // STEP, (r["tgt_frame"] - 1000) // STEP
        assert r["id"] == f"{seq}/{r['src_frame']}-{r['tgt_frame']}"
        assert 0 < abs(i - j) <= 2  # frame numbers: lines of the camera file
        assert not {i, j} & ({3} if seq == "seqA" else {4, 5})  # malformed line, missing and corrupt images
        fx, fy, cx, cy = NORM[seq]
        K = np.float32([[fx * W, 0, cx * W], [0, fy * H, cy * H], [0, 0, 1]])
        np.testing.assert_array_equal(r["intrinsics"], K)
        for key, k in (("src_pose", i), ("tgt_pose", j)):
            np.testing.assert_array_equal(r[key][:3], np.float32(np.round(_pose(k, seq), 9)))  # rows exact
            np.testing.assert_array_equal(r[key][3], [0, 0, 0, 1])
        assert (r["width"], r["height"]) == (W, H)
        for key, k in (("src_image", i), ("tgt_image", j)):
            img = decode_image(r[key], key)
            assert img.shape == (H, W, 3)
            assert np.abs(img.astype(int) - _colour(k)).max() <= (0 if seq == "seqA" else 4)  # PNG exact, JPEG close
            ext = "png" if seq == "seqA" else "jpg"
            assert r[key] == (frames / seq / f"{1000 + k * STEP}.{ext}").read_bytes()  # the original bytes, kept


def test_resize_scales_intrinsics_and_images(tree, tmp_path):
    cams, frames = tree
    cfg = IngestRealEstateConfig(pairs_per_sequence=3, max_gap=1, image_width=12, image_height=20, crop="stretch")
    ingest_realestate10k(str(cams), str(frames), str(tmp_path / "small"), cfg)
    rows = _rows(str(tmp_path / "small"))
    assert len(rows) == 6
    for r in rows:
        fx, fy, cx, cy = NORM[r["scene"]]
        K = [[fx * 12, 0, cx * 12], [0, fy * 20, cy * 20], [0, 0, 1]]
        np.testing.assert_allclose(r["intrinsics"], K, rtol=1e-6)
        assert (r["width"], r["height"]) == (12, 20)
        assert decode_image(r["src_image"], "src").shape == (20, 12, 3)
    np.testing.assert_allclose(intrinsics_matrix(np.array(NORM["seqA"]), 640, 360),
                               [[384, 0, 320], [0, 324, 162], [0, 0, 1]])


def test_sampling_is_seeded_and_rewrites_replace_the_dataset(tree, tmp_path):
    cams, frames = tree
    out = str(tmp_path / "pairs")
    ids = []
    for seed in (0, 0, 1):
        ingest_realestate10k(str(cams), str(frames), out,
                             IngestRealEstateConfig(pairs_per_sequence=4, max_gap=3, seed=seed, sequences_per_shard=1))
        ids.append([r["id"] for r in _rows(out)])
    assert ids[0] == ids[1] and ids[0] != ids[2]
    ingest_realestate10k(str(cams), str(frames), out, IngestRealEstateConfig(pairs_per_sequence=2))
    assert [s.name for s in list_shards(out)] == ["part-00000.parquet"]  # the old second shard is gone
    assert read_meta(out)["num_rows"] == 4


def _frames(poses: list[np.ndarray], indices=None) -> list[CameraFrame]:
    indices = range(len(poses)) if indices is None else indices
    return [CameraFrame(i, 1000 * i, np.array([0.5, 0.9, 0.5, 0.5]), p) for i, p in zip(indices, poses)]


def test_sample_pairs_prefers_motion_and_respects_gap_and_count():
    still = np.eye(4)
    turned = np.eye(4)
    a = math.radians(10)
    turned[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    frames = _frames([still] * 3 + [turned] + [still] * 6)
    cfg = IngestRealEstateConfig(pairs_per_sequence=10, max_gap=9)
    pairs = sample_pairs(frames, cfg, np.random.default_rng(0))
    assert len(pairs) == 10 == len(set(pairs))
    assert all(3 in p for p in pairs)  # the 18 hard pairs are those with frame 3 (turned 10 degrees)
    lazy = sample_pairs(frames, IngestRealEstateConfig(pairs_per_sequence=10, max_gap=9, prefer_motion=False),
                        np.random.default_rng(0))
    assert sum(3 not in p for p in lazy) >= 5
    # gap in frame numbers, not list positions: frames 0, 1, 5 -> only (0, 1) and (1, 0) within 2
    gapped = _frames([still, turned, still], indices=[0, 1, 5])
    assert sample_pairs(gapped, IngestRealEstateConfig(pairs_per_sequence=10, max_gap=2), np.random.default_rng(0)) \
        == [(0, 1), (1, 0)]
    # different intrinsics never pair (one K per row)
    mixed = _frames([still, turned])
    mixed[1].intrinsics = np.array([0.6, 0.9, 0.5, 0.5])
    assert sample_pairs(mixed, cfg, np.random.default_rng(0)) == []


def test_parse_camera_file_lines():
    good = _line(0, "seqA")
    text = "\n".join([good, "", _line(1, "seqA"), _line(1, "seqA"), "12 0.5 0.5", _line(2, "seqA").replace(
        " 1.000000000 ", " 2.000000000 ", 1), " ".join(["1.5"] + _line(3, "seqA").split()[1:])]) + "\n"
    url, frames, skipped = parse_camera_file(text, "cams/x.txt")  # SynSin's copies: no URL line
    assert url is None
    assert [(f.index, f.timestamp) for f in frames] == [(0, 1000), (1, 1000 + STEP)]
    np.testing.assert_array_equal(frames[1].pose[:3], np.round(_pose(1, "seqA"), 9))
    np.testing.assert_array_equal(frames[0].intrinsics, NORM["seqA"])
    assert [(s.name, s.reason) for s in skipped] == [
        ("cams/x.txt:4", f"duplicate timestamp {1000 + STEP}"),
        ("cams/x.txt:5", "malformed camera line: expected 19 numbers (timestamp fx fy cx cy k1 k2 and a "
                         "row-major 3x4 world-to-camera matrix), got 3 fields"),
        ("cams/x.txt:6", "malformed camera line: the 3x3 part of the pose is not a rotation"),
        ("cams/x.txt:7", "malformed camera line: timestamp '1.5' is not an integer"),
    ]
    url, frames, skipped = parse_camera_file("https://www.youtube.com/watch?v=abc\n" + good, "y.txt")
    assert url == "https://www.youtube.com/watch?v=abc" and len(frames) == 1 and not skipped


def test_missing_inputs_are_named(tree, tmp_path):
    cams, frames = tree
    (frames / "seqB").rename(frames / "elsewhere")
    report = ingest_realestate10k(str(cams), str(frames), str(tmp_path / "a"))
    assert report.sequences == 1
    assert {(s.name, s.reason) for s in report.skipped} >= {("seqB", f"no frame folder {frames}/seqB")}
    (frames / "seqA").rename(frames / "gone")
    with pytest.raises(DataError, match=r"no view pair could be made from 2 camera files \(3 inputs skipped"):
        ingest_realestate10k(str(cams), str(frames), str(tmp_path / "b"))
    assert len(json.loads((tmp_path / "b" / "_ingest_errors.json").read_text())) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no RealEstate10K camera files \(\*\.txt\) found"):
        ingest_realestate10k(str(tmp_path / "empty"), str(frames), str(tmp_path / "c"))
    with pytest.raises(DataError, match="camera folder not found"):
        ingest_realestate10k(str(tmp_path / "nope"), str(frames), str(tmp_path / "c"))


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_gap=0), "max_gap must be >= 1, got 0"),
    (dict(pairs_per_sequence=0), "pairs_per_sequence must be >= 1, got 0"),
    (dict(image_width=64), "give both image_width and image_height or neither, got 64 and None"),
    (dict(image_width=0, image_height=5), "image size must be positive, got 0x5"),
    (dict(image_extensions=" , "), "image_extensions must name at least one extension"),
    (dict(seed=-1), "seed must be >= 0, got -1"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IngestRealEstateConfig(**kwargs)


def test_s3_input_and_output(s3_server, tree, tmp_path):
    import fsspec

    cams, frames = tree
    fs = fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    root = f"dl3d-test/re10k-{tmp_path.name}"
    fs.put(str(cams), f"{root}/cams", recursive=True)
    fs.put(str(frames), f"{root}/frames", recursive=True)
    out = f"s3://{root}/pairs"
    report = ingest_realestate10k(f"s3://{root}/cams", f"s3://{root}/frames", out,
                                  IngestRealEstateConfig(pairs_per_sequence=20, max_gap=2, seed=3))
    assert (report.sequences, report.pairs, report.shards) == (2, 20, 1)
    assert {s.name for s in report.skipped} == {f"s3://{root}/cams/seqA.txt:5",
                                                f"s3://{root}/frames/seqB/{1000 + 4 * STEP}.png",
                                                f"s3://{root}/frames/seqB/{1000 + 5 * STEP}.jpg"}
    local = str(tmp_path / "local")
    ingest_realestate10k(str(cams), str(frames), local,
                         IngestRealEstateConfig(pairs_per_sequence=20, max_gap=2, seed=3))
    assert [r["id"] for r in _rows(out)] == [r["id"] for r in _rows(local)]
    assert [r["src_image"] for r in _rows(out)] == [r["src_image"] for r in _rows(local)]
