"""Keypoint files as other tools write them (issue 10): BODY_25B, COCO-18, PoseTrack names, file names,
photos, per-image and per-video sizes, empty people, zero-keypoint annotations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dl3d.data import read_meta
from dl3d.data.inspect import describe
from dl3d.ingest import IngestConfig, ingest_coco, ingest_openpose, read_sizes
from dl3d.keypoints import FORMATS, convert


def _body25b(helpers, cx, cy, height=200.0):
    """(25, 3) a standing person in BODY_25B order (OpenPose's experimental model, as Pose2Sim uses it):
    COCO order, then UpperNeck (just under the head), HeadTop, then the feet."""
    b25 = helpers.body25_pose(cx, cy, height)
    kp = convert(b25, "body25", "body25b")
    b = FORMATS["body25b"]
    kp[b.index("upper_neck")] = [cx, cy - 0.40 * height, 0.8]
    kp[b.index("head_top")] = [cx, cy - 0.55 * height, 0.7]
    return kp


def _people(*kps):
    return json.dumps({"version": 1.3, "people": [
        {"person_id": [-1], "pose_keypoints_2d": [round(float(x), 3) for x in np.asarray(k).reshape(-1)]}
        for k in kps]})


def test_body25b_is_detected_kept_in_its_order_and_can_be_forced(tmp_path, helpers):
    for f in range(4):
        (tmp_path / "in" / "trial").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / "trial" / f"trial_{f:012d}_keypoints.json").write_text(
            _people(_body25b(helpers, 300 + 5 * f, 400), _body25b(helpers, 700, 400)))
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"),
                             IngestConfig(image_width=1000, image_height=800))
    assert report.keypoint_format == "body25b" and "OpenPose BODY_25B" in report.format_reason
    # keypoint 1 is the left eye, far from the midpoint of the right eye and the left shoulder: not a neck
    assert float(report.format_reason.split("sits ")[1].split(" ")[0]) > 0.3
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    assert {r["keypoint_format"] for r in rows} == {"body25b"}
    first = [r for r in rows if r["frame"] == 0 and r["track"] == 0][0]
    np.testing.assert_allclose(first["keypoints"], _body25b(helpers, 300, 400), atol=1e-3)
    assert read_meta(str(tmp_path / "ds"))["keypoint_format"] == "body25b"
    forced = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds2"), IngestConfig(keypoint_format="body25"))
    assert forced.keypoint_format == "body25" and forced.format_reason == "--keypoint-format body25"


def test_real_body25_is_not_taken_for_body25b(tmp_path, helpers):
    rng = np.random.default_rng(0)
    for f in range(3):  # detector noise of a few pixels on the neck and shoulders
        kp = helpers.body25_pose(400, 400)
        kp[:, :2] += rng.normal(0, 3, (25, 2))
        helpers.write_frame(tmp_path / "in" / "v", "v", f, [helpers.openpose_person(kp)])
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"))
    assert report.keypoint_format == "body25"
    assert float(report.format_reason.split("sits ")[1].split(" ")[0]) < 0.1
    # A renderer that puts the neck at SMPL's neck joint (above the shoulders' midpoint, as dl3d's own
    # synthetic videos do) fails the midpoint test alone; keypoints 1 and 2 are not two eyes: BODY_25.
    for f in range(3):
        kp = helpers.body25_pose(400, 400)
        kp[1, 1] -= 12.0  # 0.3 shoulder widths above the midpoint
        helpers.write_frame(tmp_path / "smpl" / "v", "v", f, [helpers.openpose_person(kp)])
    report = ingest_openpose(str(tmp_path / "smpl"), str(tmp_path / "ds2"))
    assert report.keypoint_format == "body25" and "sits 0.30 shoulder widths" in report.format_reason
    assert "|k1 - k2| / |k2 - k5| = 0.58" in report.format_reason


def test_coco18_is_converted_to_body25(tmp_path, helpers):
    b25 = helpers.body25_pose(300, 300)
    c18 = convert(b25, "body25", "coco18")
    assert c18.shape == (18, 3)
    (tmp_path / "in" / "old").mkdir(parents=True)
    (tmp_path / "in" / "old" / "old_000000000000_keypoints.json").write_text(_people(c18))
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"))
    assert report.keypoint_format == "body25" and "COCO-18" in report.format_reason
    [[row]] = helpers.read_rows(str(tmp_path / "ds"))
    kp = row["keypoints"]
    np.testing.assert_allclose(kp[:8], b25[:8], atol=1e-3)  # nose, neck, arms
    np.testing.assert_allclose(kp[9:19], b25[9:19], atol=1e-3)  # legs, eyes, ears
    np.testing.assert_allclose(kp[8, :2], (b25[9, :2] + b25[12, :2]) / 2, atol=1e-3)  # MidHip derived from the hips
    assert not kp[19:].any()  # feet: missing (confidence 0)


def test_one_empty_person_is_skipped_and_counted_not_the_frame(tmp_path, helpers):
    a, b = helpers.body25_pose(200, 300), helpers.body25_pose(500, 300)
    for f in range(3):
        people = [helpers.openpose_person(a), helpers.openpose_person(b)]
        if f == 1:
            people.insert(1, {**helpers.openpose_person(a), "pose_keypoints_2d": []})
        helpers.write_frame(tmp_path / "in" / "v", "v", f, people)
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"),
                             IngestConfig(image_width=800, image_height=600))
    assert report.skipped == [] and report.people_without_keypoints == 1 and report.frames == 3
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    assert len(rows) == 6 and all(r["keypoints"][:, 2].max() > 0 for r in rows)
    assert "1 people without keypoints left out" in report.summary()
    assert read_meta(str(tmp_path / "ds"))["people_without_keypoints"] == 1
    (tmp_path / "body0" / "v").mkdir(parents=True)
    (tmp_path / "body0" / "v" / "v_000000000000_keypoints.json").write_text(
        json.dumps({"people": [{"pose_keypoints_2d": []}]}))
    with pytest.raises(ValueError, match=r"every person of every file had an empty pose_keypoints_2d \(1 people; "
                                         r"was OpenPose run with --body 0\?\)"):
        ingest_openpose(str(tmp_path / "body0"), str(tmp_path / "ds2"))


def test_file_names_of_other_tools_and_frame_order(tmp_path, helpers):
    kp = [helpers.body25_pose(100 + 10 * f, 300) for f in range(3)]
    pose2sim, spin = tmp_path / "in" / "pose2sim_cam1", tmp_path / "in" / "spin"
    pose2sim.mkdir(parents=True)
    spin.mkdir(parents=True)
    for f in (2, 0, 1):
        (pose2sim / f"cam1_walk.{f + 10:04d}.json").write_text(_people(kp[f]))  # Pose2Sim NAME.NNNN.json
        (spin / f"im{f + 1:04d}_openpose.json").write_text(_people(kp[f]))  # SPIN *_openpose.json
    (pose2sim / "calib.json").write_text(json.dumps({"K": [1, 0, 0]}))  # not a keypoint file
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"),
                             IngestConfig(image_width=640, image_height=480))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    got = {(r["video"], r["frame"]): r["keypoints"][8, 0] for r in rows}
    assert got == {("pose2sim_cam1", 10): 100, ("pose2sim_cam1", 11): 110, ("pose2sim_cam1", 12): 120,
                   ("spin", 1): 100, ("spin", 2): 110, ("spin", 3): 120}
    [skip] = report.skipped
    assert skip.name.endswith("calib.json") and "no 'people' list: not an OpenPose keypoint file" in skip.reason


def test_photo_ids_are_photos_each_with_its_own_image_size(tmp_path, helpers):
    """OpenPose's image-folder mode on photos: sparse ids, one size per photo (a 4016x6016 portrait
    beside a 153x192 thumbnail), never one video."""
    root = tmp_path / "photos"
    root.mkdir()
    for pid, size, cx in ((785, (4016, 6016), 2000.0), (1000, (153, 192), 76.0), (1296, (640, 480), 320.0)):
        height = 0.8 * size[1]
        kp = helpers.body25_pose(cx, 0.5 * size[1], height)
        (root / f"{pid:012d}_keypoints.json").write_text(_people(kp))
        Image.new("L", size).save(root / f"{pid:012d}.jpg")
    report = ingest_openpose(str(root), str(tmp_path / "ds"))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    assert report.videos == 3 and report.rows_without_image_size == 0 and report.warnings == []
    sizes = {r["video"]: (r["frame"], r["image_width"], r["image_height"]) for r in rows}
    assert sizes == {"photos/000000000785": (785, 4016, 6016), "photos/000000001000": (1000, 153, 192),
                     "photos/000000001296": (1296, 640, 480)}
    one = ingest_openpose(str(root), str(tmp_path / "ds2"), IngestConfig(video_key="folder"))
    assert one.videos == 1  # forced: one video, still a size per frame
    [rows] = helpers.read_rows(str(tmp_path / "ds2"))
    assert sorted(r["image_width"] for r in rows) == [153, 640, 4016]


def test_per_video_sizes_file_and_the_missing_size_warning(tmp_path, helpers):
    for v in ("clipA", "clipB", "clipC"):
        for f in range(2):
            helpers.write_frame(tmp_path / "in" / v, v, f, [helpers.openpose_person(helpers.body25_pose(300, 300))])
    csv = tmp_path / "sizes.csv"
    csv.write_text("video,width,height,focal\nclipA,1920,1080,1500\nclipB,640,480,\n")
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"), IngestConfig(sizes=str(csv)))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    got = {r["video"]: (r["image_width"], r["image_height"], r["focal_length"]) for r in rows}
    assert got == {"clipA": (1920, 1080, 1500.0), "clipB": (640, 480, None), "clipC": (None, None, None)}
    assert report.rows_without_image_size == 2
    [warning] = report.warnings
    assert warning.startswith("2 rows (1 videos, e.g. 'clipC') have no image size") and "--image-width" in warning
    assert "warning: 2 rows (1 videos" in report.summary()
    meta = read_meta(str(tmp_path / "ds"))
    assert meta["rows_without_image_size"] == 2 and meta["warnings"] == [warning]
    assert f"warning: {warning}" in describe(str(tmp_path / "ds"))
    js = tmp_path / "sizes.json"
    js.write_text(json.dumps({"clipA": {"width": 1280, "height": 720}, "clipB": {"width": 640, "height": 480},
                              "clipC": {"width": 320, "height": 240, "focal": 300}}))
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"), IngestConfig(sizes=str(js)))
    assert report.warnings == [] and "warning" not in describe(str(tmp_path / "ds"))
    (tmp_path / "bad.csv").write_text("name,w,h\n")
    with pytest.raises(ValueError, match=r"bad.csv: expected a CSV header with video,width,height\[,focal\]"):
        read_sizes(str(tmp_path / "bad.csv"))
    (tmp_path / "neg.csv").write_text("video,width,height\nclipA,-5,10\n")
    with pytest.raises(ValueError, match=r"neg.csv: video 'clipA': width must be > 0, got '-5'"):
        read_sizes(str(tmp_path / "neg.csv"))


POSETRACK_NAMES = ["nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                   "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                   "right_knee", "left_ankle", "right_ankle"]  # PoseTrack 2018 categories[0].keypoints


def _posetrack_file(path, helpers, frames=3, empty_ann=True):
    """A PoseTrack 2018 val file: vid_id, frame_id, track_id, its own keypoint names, an annotation
    with every keypoint at 0 (PoseTrack's un-annotated people) and one without keypoints."""
    images = [{"id": 10000 + i, "file_name": f"images/val/000342_mpii_test/{i:06d}.jpg", "vid_id": "000342",
               "frame_id": 10000 + i, "nframes": frames, "is_labeled": True, "width": 1280, "height": 720 - 40 * i}
              for i in range(frames)]
    anns = []
    for i in range(frames):
        kp = np.asarray(helpers.coco17_pose(400 + 5 * i, 400, height=300)).reshape(17, 3)
        kp[1] = [400 + 5 * i, 400 - 0.37 * 300, 1]  # head_bottom (chin)
        kp[2] = [400 + 5 * i, 400 - 0.58 * 300, 1]  # head_top
        kp[3:5] = 0  # ears are never annotated in PoseTrack
        anns.append({"id": 100 + i, "image_id": 10000 + i, "category_id": 1, "track_id": 0, "iscrowd": 0,
                     "keypoints": [float(x) for x in kp.reshape(-1)]})
    if empty_ann:
        anns.append({"id": 900, "image_id": 10000, "category_id": 1, "track_id": 5, "keypoints": [0] * 51})
        anns.append({"id": 901, "image_id": 10001, "category_id": 1, "track_id": 6, "bbox": [1, 2, 3, 4]})
    cats = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": POSETRACK_NAMES, "skeleton": []}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return str(path)


def test_posetrack_is_read_by_name_with_per_image_sizes_and_counted_empty_people(tmp_path, helpers):
    src = _posetrack_file(tmp_path / "000342_mpii_test.json", helpers)
    report = ingest_coco(src, str(tmp_path / "ds"))
    assert report.keypoint_format == "posetrack" and "PoseTrack 2018 keypoint names" in report.format_reason
    assert report.people_without_keypoints == 2 and report.skipped == []
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    assert [(r["keypoint_format"], r["frame"], r["image_height"]) for r in rows] == [
        ("posetrack", 0, 720), ("posetrack", 1, 680), ("posetrack", 2, 640)]  # frames from the file names
    assert rows[0]["keypoints"][2].tolist() == pytest.approx([400, 400 - 0.58 * 300, 1])  # head_top stays head_top
    as_coco = ingest_coco(src, str(tmp_path / "ds2"), IngestConfig(keypoint_format="coco17"))
    [rows] = helpers.read_rows(str(tmp_path / "ds2"))
    assert as_coco.keypoint_format == "coco17" and not rows[0]["keypoints"][1:5].any()  # eyes, ears: missing
    truth = np.asarray(helpers.coco17_pose(400, 400, 300, v=1)).reshape(17, 3)
    np.testing.assert_allclose(rows[0]["keypoints"][5:], truth[5:],
                               atol=1e-3)


def test_reordered_coco_names_are_reordered(tmp_path, helpers):
    names = list(reversed(POSETRACK_NAMES[:1] + ["left_eye", "right_eye"] + POSETRACK_NAMES[3:]))
    kp = np.asarray(helpers.coco17_pose(300, 300, v=1)).reshape(17, 3)
    ann = {"id": 1, "image_id": 1, "category_id": 1, "keypoints": [float(x) for x in kp[::-1].reshape(-1)]}
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}], "annotations": [ann],
           "categories": [{"id": 1, "name": "person", "keypoints": names}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    report = ingest_coco(str(tmp_path / "a.json"), str(tmp_path / "ds"))
    assert report.keypoint_format == "coco17" and "reordered by name" in report.format_reason
    [[row]] = helpers.read_rows(str(tmp_path / "ds"))
    np.testing.assert_allclose(row["keypoints"], kp, atol=1e-4)


def test_posetrack_records_without_sizes_take_them_from_the_images_folder(tmp_path, helpers):
    """PoseTrack 2018 image records carry no width/height: --images points at the folder file_name is relative to."""
    src = tmp_path / "annotations" / "val" / "000342_mpii_test.json"
    _posetrack_file(src, helpers, empty_ann=False)
    doc = json.loads(src.read_text())
    for im in doc["images"]:
        del im["width"], im["height"]
    src.write_text(json.dumps(doc))
    folder = tmp_path / "images" / "val" / "000342_mpii_test"
    folder.mkdir(parents=True)
    for i in range(2):  # the third frame's image is missing: no size for it
        Image.new("RGB", (1280 - 100 * i, 720)).save(folder / f"{i:06d}.jpg")
    report = ingest_coco(str(src), str(tmp_path / "ds"), IngestConfig(images=str(tmp_path)))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    assert [(r["image_width"], r["image_height"]) for r in rows] == [(1280, 720), (1180, 720), (None, None)]
    assert report.rows_without_image_size == 1 and len(report.warnings) == 1
