"""COCO-17 and PoseTrack keypoint JSON into keypoints2d datasets."""

from __future__ import annotations

import json

import pytest

from dl3d.ingest import CocoFormatError, IngestConfig, ingest_coco
from dl3d.ingest.coco import coco_keypoints

COCO_NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
              "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
              "left_ankle", "right_ankle"]  # person_keypoints_val2017.json's categories[0].keypoints
CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": COCO_NAMES, "skeleton": []}]


def _write(path, images, annotations, categories=CATEGORIES):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return str(path)


def _ann(aid, image_id, keypoints, **extra):
    return {"id": aid, "image_id": image_id, "category_id": 1, "keypoints": keypoints, "iscrowd": 0, **extra}


def test_visibility_becomes_confidence():
    values = [10.0, 20.0, 2, 30.0, 40.0, 1, 50.0, 60.0, 0, 70.0, 80.0, 0.4] + [0] * 39
    kp = coco_keypoints(values)
    assert kp[:4].tolist() == [[10, 20, 1], [30, 40, 1], [0, 0, 0], [70, 80, 0.4]]
    with pytest.raises(CocoFormatError,
                       match=r"keypoints has 54 numbers; expected 51 \(COCO-17: 17 keypoints x, y, v\)"):
        coco_keypoints([0] * 54)
    with pytest.raises(CocoFormatError, match=r"keypoints\[1\] is not a number: 'a'"):
        coco_keypoints([0, "a"] + [0] * 49)


def test_two_image_sequences_by_folder(tmp_path, helpers):
    images = [{"id": i + 1, "file_name": f"seqA/{i + 1:06d}.jpg", "width": 640, "height": 480} for i in range(3)]
    images += [{"id": 10 + i, "file_name": f"seqB/frame_{10 + i}.jpg", "width": 320, "height": 240} for i in range(2)]
    anns = []
    for i in range(3):  # two people, listed in a different order in frame 2, no track ids
        a = _ann(100 + 2 * i, i + 1, helpers.coco17_pose(100 + 5 * i, 300))
        b = _ann(101 + 2 * i, i + 1, helpers.coco17_pose(400 - 5 * i, 300))
        anns += [b, a] if i == 1 else [a, b]
    anns.append(_ann(200, 10, helpers.coco17_pose(150, 150, v=1)))
    anns.append(_ann(201, 11, helpers.coco17_pose(152, 150, v=1)))
    anns.append(_ann(99, 11, [1.0] * 50))  # malformed: reported
    anns.append({**_ann(98, 11, [0] * 51), "iscrowd": 1})  # crowd: ignored
    anns.append(_ann(97, 11, [0] * 51))  # no visible keypoint: ignored
    anns.append(_ann(96, 55, helpers.coco17_pose(1, 1)))  # unknown image: reported
    src = _write(tmp_path / "person_keypoints_seq.json", images, anns)
    report = ingest_coco(src, str(tmp_path / "ds"), IngestConfig(focal_length=500.0))
    assert (report.videos, report.frames, report.rows, report.tracks, report.shards) == (2, 5, 8, 3, 1)
    assert [(s.name, s.reason) for s in report.skipped] == [
        (f"{src}#annotation 99", "keypoints has 50 numbers; expected 51 (COCO-17: 17 keypoints x, y, v)"),
        (f"{src}#annotation 96", "image_id 55 is not in 'images'"),
    ]
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    got = {(r["video"], r["track"], r["frame"]): r for r in rows}
    assert list(got) == [("seqA", 0, 1), ("seqA", 0, 2), ("seqA", 0, 3), ("seqA", 1, 1), ("seqA", 1, 2),
                         ("seqA", 1, 3), ("seqB", 0, 10), ("seqB", 0, 11)]
    for i in range(3):  # left hip (COCO 11) sits 0.07 * 200 px right of the mid hip
        assert got["seqA", 0, i + 1]["keypoints"][11, 0] == pytest.approx(100 + 5 * i + 14, abs=1e-3)
        assert got["seqA", 1, i + 1]["keypoints"][11, 0] == pytest.approx(400 - 5 * i + 14, abs=1e-3)
    r = got["seqB", 0, 11]
    assert r["keypoints"].shape == (17, 3) and r["keypoints"][:, 2].tolist() == [1.0] * 17
    assert (r["keypoint_format"], r["image_width"], r["image_height"], r["focal_length"]) == ("coco17", 320, 240, 500.0)
    assert got["seqA", 1, 2]["image_width"] == 640
    errors = json.loads((tmp_path / "ds" / "_ingest_errors.json").read_text())
    assert [e["name"] for e in errors] == [f"{src}#annotation 99", f"{src}#annotation 96"]

    per_image = ingest_coco(src, str(tmp_path / "ds2"), IngestConfig(video_key="image", videos_per_shard=2))
    assert per_image.videos == 5 and per_image.shards == 3
    videos = [sorted({r["video"] for r in s}) for s in helpers.read_rows(str(tmp_path / "ds2"))]
    assert videos == [["seqA/000001", "seqA/000002"], ["seqA/000003", "seqB/frame_10"], ["seqB/frame_11"]]


def _posetrack(vid: str, n: int, helpers, x0: float):
    images = [{"id": int(f"1{vid}{i:04d}"), "file_name": f"images/val/{vid}_mpii_test/{i:06d}.jpg", "vid_id": vid,
               "frame_id": int(f"1{vid}{i:04d}"), "nframes": n, "is_labeled": True, "width": 1280, "height": 720}
              for i in range(n)]
    anns = []
    for i in range(n):
        pair = [_ann(10 * i, images[i]["id"], helpers.coco17_pose(x0 + i, 300), track_id=4),
                _ann(10 * i + 1, images[i]["id"], helpers.coco17_pose(x0 + 300 - i, 300), track_id=2)]
        anns += pair[::-1] if i % 2 else pair
    return images, anns


def test_posetrack_folder_with_video_ids_and_track_ids(tmp_path, helpers):
    for vid, n in (("000342", 3), ("000522", 2)):
        _write(tmp_path / "annotations" / "val" / f"{vid}_mpii_test.json", *_posetrack(vid, n, helpers, 100))
    (tmp_path / "annotations" / "val" / "broken.json").write_text("{")
    report = ingest_coco(str(tmp_path / "annotations"), str(tmp_path / "ds"))
    assert (report.videos, report.frames, report.rows, report.tracks) == (2, 5, 10, 4)
    assert len(report.skipped) == 1 and report.skipped[0].name.endswith("broken.json")
    assert report.skipped[0].reason.startswith("not valid JSON")
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    keys = [(r["video"], r["track"], r["frame"]) for r in rows]
    assert keys == [("000342", 2, 0), ("000342", 2, 1), ("000342", 2, 2), ("000342", 4, 0), ("000342", 4, 1),
                    ("000342", 4, 2), ("000522", 2, 0), ("000522", 2, 1), ("000522", 4, 0), ("000522", 4, 1)]
    assert [r["keypoints"][11, 0] for r in rows[3:6]] == pytest.approx([114, 115, 116], abs=1e-3)
    assert {(r["image_width"], r["image_height"]) for r in rows} == {(1280, 720)}


def test_plain_coco_images_are_one_frame_videos(tmp_path, helpers):
    images = [{"id": 397133, "file_name": "000000397133.jpg", "width": 640, "height": 427},
              {"id": 37777, "file_name": "000000037777.jpg", "width": 352, "height": 230}]
    anns = [_ann(1, 397133, helpers.coco17_pose(100, 200)), _ann(2, 397133, helpers.coco17_pose(400, 200))]
    report = ingest_coco(_write(tmp_path / "person_keypoints_val2017.json", images, anns), str(tmp_path / "ds"))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    assert [(r["video"], r["track"], r["frame"]) for r in rows] == [
        ("000000037777", 0, 37777), ("000000397133", 0, 397133), ("000000397133", 1, 397133)]
    assert not rows[0]["keypoints"].any()  # nobody annotated: one zero row
    assert report.tracks == 2 and report.frames == 2


def test_unsupported_keypoint_set_is_named(tmp_path, helpers):
    cats = [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(18)]}]
    src = _write(tmp_path / "kp18.json", [{"id": 1, "file_name": "a.jpg"}], [], categories=cats)
    with pytest.raises(ValueError, match=r"no video could be read from 1 JSON files; first problem: .*kp18.json: "
                                         r"category 'person' declares 18 keypoints with names dl3d does not know "
                                         r"\(\['k0', 'k1', 'k2', 'k3'\]\); only COCO-17 and PoseTrack names are read"):
        ingest_coco(src, str(tmp_path / "ds"))
