"""OpenPose BODY_25 JSON folders into keypoints2d datasets: variants, tracking, bad files, round trip, S3."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dl3d.data import read_meta
from dl3d.ingest import IngestConfig, OpenPoseFormatError, ingest_openpose, parse_openpose_frame, write_openpose_video
from dl3d.ingest.openpose_files import frame_numbers, frame_stem


def _doc(*people) -> str:
    return json.dumps({"version": 1.3, "people": list(people)})


def test_parse_person_id_variants_and_legacy_key(helpers):
    kp = helpers.body25_pose(100, 200)
    people = [helpers.openpose_person(kp, (-1,)), helpers.openpose_person(kp, (4,)),
              helpers.openpose_person(kp, 9), {"pose_keypoints": [float(x) for x in kp.reshape(-1)]}]
    got, ids = parse_openpose_frame(_doc(*people))
    assert got.shape == (4, 25, 3) and got.dtype == np.float32
    assert ids.tolist() == [-1, 4, 9, -1]
    np.testing.assert_allclose(got[3], kp, atol=1e-4)


def test_parse_empty_frames():
    for text in ('{"version": 1.3, "people": []}', '{"version": 1.3}', '{"people": null}'):
        kp, ids = parse_openpose_frame(text)
        assert kp.shape == (0, 25, 3) and ids.shape == (0,)


def test_parse_zeroes_unconfident_and_non_finite_keypoints_and_drops_empty_people(helpers):
    kp = helpers.body25_pose(100, 200)
    kp[3] = [55.0, 66.0, 0.0]  # OpenPose never does this, other tools do
    kp[4, 2] = 1.7
    person = helpers.openpose_person(kp)
    person["pose_keypoints_2d"][5 * 3] = float("nan")  # json.dumps writes NaN, json.loads reads it
    got, _ = parse_openpose_frame(_doc(person))
    assert got[0, 3].tolist() == [0, 0, 0]
    assert got[0, 4, 2] == 1.0
    assert got[0, 5].tolist() == [0, 0, 0]
    nobody, _ = parse_openpose_frame(_doc(helpers.openpose_person(np.zeros((25, 3)))))
    assert nobody.shape == (0, 25, 3)


@pytest.mark.parametrize("text,message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object with a 'people' list, got list"),
    ('{"people": {}}', "expected 'people' to be a list, got dict"),
    ('{"people": [{"face_keypoints_2d": []}]}', r"people\[0\] has no pose_keypoints_2d"),
    ('{"people": [{"pose_keypoints_2d": [1, 2, "x"]}]}', r"people\[0\].pose_keypoints_2d\[2\] is not a number: 'x'"),
    ('{"people": [{"pose_keypoints_2d": [1, 2, null]}]}', r"pose_keypoints_2d\[2\] is not a number: None"),
    ('{"people": [{"pose_keypoints_2d": [' + ",".join(["1"] * 45) + "]}]}",
     r"people\[0\].pose_keypoints_2d has 45 numbers - the OpenPose MPI_15 \(15 keypoints\) body model; only "
     r"BODY_25 / BODY_25B \(75 numbers\) and COCO_18 \(54\) are supported"),
    ('{"people": [{"pose_keypoints_2d": [' + ",".join(["1"] * 60) + "]}]}", "has 60 numbers; only BODY_25"),
])
def test_parse_errors_say_what_is_wrong(text, message):
    with pytest.raises(OpenPoseFormatError, match=message):
        parse_openpose_frame(text)


def test_frame_numbers_from_names_with_sorted_order_fallback():
    assert frame_stem("s3://b/x/clip7_000000000012_keypoints.json") == "clip7_000000000012"
    assert frame_stem("walk.0012.json") == "walk.0012" and frame_stem("im0001_openpose.json") == "im0001"
    order, nums = frame_numbers(["clip7_000000000012", "clip7_000000000003"])  # 7 is constant: not the frame
    assert order == [1, 0] and nums.tolist() == [3, 12]
    assert frame_numbers(["v_10", "v_9"])[1].tolist() == [9, 10]
    order, nums = frame_numbers(["b", "a", "c"])  # no numbers: name order, 0, 1, 2
    assert order == [1, 0, 2] and nums.tolist() == [0, 1, 2]
    order, nums = frame_numbers(["x2", "x10", "y"])  # not one structure: natural name order
    assert order == [0, 1, 2] and nums.tolist() == [0, 1, 2]


@pytest.fixture
def two_videos(tmp_path, helpers):
    """walk: two people without ids that swap order, a frame with nobody, a malformed and a COCO_18 file.
    tracked: two people with OpenPose ids 7 and 3; empty: nobody in any frame."""
    root = tmp_path / "openpose"
    w, person = helpers.write_frame, helpers.openpose_person
    for f in range(8):
        a, b = helpers.body25_pose(100 + 10 * f, 300), helpers.body25_pose(400 - 10 * f, 300)
        people = [person(a), person(b)] if f % 2 == 0 else [person(b), person(a)]
        if f == 3:
            people = []
        if f == 5:
            w(root / "walk", "walk", f, None, raw='{"version": 1.3, "people": [{"pose_keypoints_2d": [1, 2')
        elif f == 6:
            w(root / "walk", "walk", f, None, raw=_doc({"person_id": [-1], "pose_keypoints_2d": [1.0] * 54}))
        else:
            w(root / "walk", "walk", f, people)
    for f in range(3):
        a, b = helpers.body25_pose(100, 300 + f), helpers.body25_pose(400, 300 - f)
        pair = [person(a, (7,)), person(b, (3,))]
        w(root / "tracked", "tracked", f, pair if f != 1 else pair[::-1])
    w(root / "empty", "empty", 0, [])
    w(root / "empty", "empty", 1, None, raw='{"version": 1.3}')
    (root / "_ignored").mkdir()
    (root / "_ignored" / "x_keypoints.json").write_text("garbage")
    return root


def test_ingest_two_videos_tracks_gaps_and_bad_files(two_videos, tmp_path, helpers):
    out = str(tmp_path / "ds")
    report = ingest_openpose(str(two_videos), out, IngestConfig(focal_length=1000.0))
    assert (report.videos, report.frames, report.shards, report.tracks) == (3, 11, 1, 4)
    assert report.keypoint_format == "body25" and "BODY_25" in report.format_reason
    assert [(s.name.rsplit("/", 1)[-1], s.reason.split(" (")[0]) for s in report.skipped] == [
        ("walk_000000000005_keypoints.json", "not valid JSON"),
        ("walk_000000000006_keypoints.json",
         "people with 54 numbers in an input read as OpenPose BODY_25"),
    ]
    errors = json.loads((tmp_path / "ds" / "_ingest_errors.json").read_text())
    assert [e["name"] for e in errors] == [s.name for s in report.skipped]
    [rows] = helpers.read_rows(out)
    assert report.rows == len(rows) == 2 + 2 * 3 + 2 * 8
    key = [(r["video"], r["track"], r["frame"]) for r in rows]
    assert key == sorted(key)
    by_key = {(r["video"], r["track"], r["frame"]): r for r in rows}
    # walk: A (x from 100) is track 0, B (x from 400) track 1 in every frame, whatever the order in the file
    for f in (0, 1, 2, 4, 7):
        assert by_key["walk", 0, f]["keypoints"][8, 0] == pytest.approx(100 + 10 * f, abs=1e-3)
        assert by_key["walk", 1, f]["keypoints"][8, 0] == pytest.approx(400 - 10 * f, abs=1e-3)
    for f in (3, 5, 6):  # nobody / malformed / unsupported: zero rows inside both tracks' spans
        assert not by_key["walk", 0, f]["keypoints"].any() and not by_key["walk", 1, f]["keypoints"].any()
    # tracked: OpenPose's ids are the tracks
    assert sorted({t for v, t, _ in key if v == "tracked"}) == [3, 7]
    assert by_key["tracked", 7, 1]["keypoints"][8].tolist() == pytest.approx([100, 301, 0.9], abs=1e-3)
    # empty: one zero row per frame, track 0
    assert [(t, f) for v, t, f in key if v == "empty"] == [(0, 0), (0, 1)]
    assert not by_key["empty", 0, 1]["keypoints"].any()
    r = by_key["walk", 0, 0]
    assert (r["id"], r["keypoint_format"], r["image_width"], r["focal_length"]) == ("walk/0/000000", "body25", None, 1000.0)
    assert read_meta(out)["num_videos"] == 3


def test_videos_never_straddle_shards(tmp_path, helpers):
    for v in range(5):
        for f in range(v + 1):
            person = helpers.openpose_person(helpers.body25_pose(200, 200))
            helpers.write_frame(tmp_path / "in" / f"v{v}", f"v{v}", f, [person])
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"), IngestConfig(videos_per_shard=2))
    shards = helpers.read_rows(str(tmp_path / "ds"))
    assert report.shards == 3 and [sorted({r["video"] for r in s}) for s in shards] == [["v0", "v1"], ["v2", "v3"], ["v4"]]
    report = ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"), IngestConfig(videos_per_shard=16, rows_per_shard=5))
    shards = helpers.read_rows(str(tmp_path / "ds"))  # rows per video 1..5; earlier part-00002 is removed
    assert [sorted({r["video"] for r in s}) for s in shards] == [["v0", "v1"], ["v2"], ["v3"], ["v4"]]
    assert report.shards == 4 and sorted(p.name for p in (tmp_path / "ds").glob("part-*")) == [
        f"part-0000{i}.parquet" for i in range(4)]
    seen = [v for s in shards for v in {r["video"] for r in s}]
    assert len(seen) == len(set(seen)) == 5


def test_round_trip_write_openpose_video(tmp_path, helpers):
    rng = np.random.default_rng(0)
    frames, people = 12, 3
    kp = np.zeros((frames, people, 25, 3))
    for p in range(people):
        path = np.cumsum(rng.normal(0, 3, (frames, 2)), axis=0) + [150 + 300 * p, 400]
        for f in range(frames):
            kp[f, p] = helpers.body25_pose(*path[f], height=250)
            kp[f, p, :, :2] += rng.normal(0, 2, (25, 2))
            kp[f, p, :, 2] = rng.uniform(0.3, 1.0, 25)
    kp[4, 1] = 0  # person 1 missed in frame 4: not written, bridged by a zero row
    order = [rng.permutation(people) for _ in range(frames)]
    written = write_openpose_video(str(tmp_path / "in"), "clip", [kp[f, order[f]] for f in range(frames)])
    assert written[3].endswith("in/clip/clip_000000000003_keypoints.json")
    doc = json.loads((tmp_path / "in" / "clip" / "clip_000000000004_keypoints.json").read_text())
    assert doc["version"] == 1.3 and len(doc["people"]) == 2 and doc["people"][0]["person_id"] == [-1]
    assert doc["people"][0]["face_keypoints_2d"] == [] and len(doc["people"][0]["pose_keypoints_2d"]) == 75
    ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    got = np.stack([r["keypoints"] for r in rows]).reshape(people, frames, 25, 3)
    assert [r["frame"] for r in rows] == list(range(frames)) * people
    # tracks are numbered in the order the people are listed in the first frame
    np.testing.assert_allclose(got.transpose(1, 0, 2, 3), kp[:, order[0]], rtol=0, atol=1e-4)
    assert not got[list(order[0]).index(1), 4].any()


def test_write_openpose_video_checks_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"expected keypoints of shape \(P, 25 or 18, 3\), the same in each frame, "
                                         r"got \(2, 17, 3\) at frame 0"):
        write_openpose_video(str(tmp_path), "v", np.zeros((1, 2, 17, 3)))
    with pytest.raises(ValueError, match="expected 2 person ids at frame 0, got 1"):
        write_openpose_video(str(tmp_path), "v", np.ones((1, 2, 25, 3)), person_ids=[[1]])
    with pytest.raises(ValueError, match="expected a video name without '/'"):
        write_openpose_video(str(tmp_path), "a/b", np.ones((1, 1, 25, 3)))


def test_person_ids_round_trip_and_image_size_from_images(tmp_path, helpers):
    from PIL import Image

    kp = np.stack([[helpers.body25_pose(100, 300), helpers.body25_pose(400, 300)]] * 2)
    write_openpose_video(str(tmp_path / "in"), "withimg", kp, person_ids=[[5, 6], [6, 5]])
    write_openpose_video(str(tmp_path / "in"), "noimg", kp[:, :1])
    Image.new("RGB", (800, 600)).save(tmp_path / "in" / "withimg" / "withimg_000000000001.png")
    ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"), IngestConfig(image_width=640, image_height=480))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    sizes = {r["video"]: (r["image_width"], r["image_height"]) for r in rows}
    assert sizes == {"withimg": (800, 600), "noimg": (640, 480)}
    tracks = {(r["track"], r["frame"]): r["keypoints"][8, 0] for r in rows if r["video"] == "withimg"}
    assert tracks == {(5, 0): 100, (5, 1): 400, (6, 0): 400, (6, 1): 100}


def test_root_holding_json_files_is_one_video(tmp_path, helpers):
    root = tmp_path / "myclip"
    for f in range(2):
        helpers.write_frame(root, "myclip", f, [helpers.openpose_person(helpers.body25_pose(100, 100))])
    report = ingest_openpose(str(root), str(tmp_path / "ds"))
    [rows] = helpers.read_rows(str(tmp_path / "ds"))
    assert report.videos == 1
    assert [(r["video"], r["track"], r["frame"]) for r in rows] == [("myclip", 0, 0), ("myclip", 0, 1)]


def test_nothing_readable_is_an_error_naming_the_problem(tmp_path, helpers):
    helpers.write_frame(tmp_path / "in" / "v", "v", 0, None, raw=_doc({"pose_keypoints_2d": [0.5] * 45}))
    with pytest.raises(ValueError, match=r"none of the 1 OpenPose files could be read; "
                                         r"first: .*v_000000000000_keypoints.json: "
                                         r"people\[0\].pose_keypoints_2d has 45 numbers - the OpenPose MPI_15"):
        ingest_openpose(str(tmp_path / "in"), str(tmp_path / "ds"))
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match=r"no OpenPose \*_keypoints.json \(or other \*.json\) files found"):
        ingest_openpose(str(tmp_path / "none"), str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="input not found"):
        ingest_openpose(str(tmp_path / "missing"), str(tmp_path / "ds"))


def test_s3_input_and_output(s3_server, tmp_path, helpers):
    kp = np.stack([[helpers.body25_pose(100 + f, 300), helpers.body25_pose(400 - f, 300)] for f in range(3)])
    src, dst = f"s3://dl3d-test/openpose-{tmp_path.name}", f"s3://dl3d-test/keypoints-{tmp_path.name}"
    write_openpose_video(src, "s3clip", kp)
    import fsspec

    fsspec.filesystem("s3", client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True).pipe(
        f"{src[5:]}/s3clip/s3clip_000000000003_keypoints.json", b"{oops")
    report = ingest_openpose(src, dst)
    assert (report.videos, report.frames, report.rows, report.shards) == (1, 3, 6, 1)
    assert [s.name for s in report.skipped] == [f"{src}/s3clip/s3clip_000000000003_keypoints.json"]
    [rows] = helpers.read_rows(dst)
    got = np.stack([r["keypoints"] for r in rows]).reshape(2, 3, 25, 3).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(got, kp, atol=1e-4)
    assert read_meta(dst)["kind"] == "keypoints2d"
