"""videos -> pose detect -> smpl fit -> smpl render, worker by worker without Ray, on a clip the test
renders itself (the procedural body walking; NOT SMPL, not a person), plus a file that is not a video."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from dl3d.data import Shard
from dl3d.workers.base import ShardTask

pytestmark = pytest.mark.slow  # renders a clip and runs three models: about 40 s on 2 idle cores

FRAMES, WIDTH, HEIGHT, FOCAL = 8, 256, 192, 260.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory, body_model_path):
    """clips/walk.mp4 (the rendered body), clips/broken.mp4 (text); the truth of the walk."""
    from dl3d.body import read_body_model_arrays
    from dl3d.synthetic.smpl_video import KeypointVideoSpec
    from dl3d.video.decode import encode_video
    from dl3d.video.synthetic_clip import render_body_clip

    root = tmp_path_factory.mktemp("pipeline")
    spec = KeypointVideoSpec(frames=FRAMES, image_width=WIDTH, image_height=HEIGHT, focal_length=FOCAL, min_depth=3.0,
                             max_depth=3.2, yaw_deg=0.0, yaw_range_deg=20.0, seed=3)
    frames, truth = render_body_clip(read_body_model_arrays(body_model_path), spec)
    (root / "clips").mkdir()
    (root / "clips" / "walk.mp4").write_bytes(encode_video(frames, fps=25.0, crf=10))
    (root / "clips" / "broken.mp4").write_text("not a video\n" * 10)
    return root, frames, truth


@pytest.fixture(scope="module")
def stages(clip, body_model_path):
    from dl3d.video.ingest import IngestVideosConfig, ingest_videos
    from dl3d.workers.pose_detect import PoseDetectWorker
    from dl3d.workers.smpl_config import SmplFitConfig
    from dl3d.workers.smpl_fit import SmplFitWorker
    from dl3d.workers.smpl_render import SmplRenderWorker
    from dl3d.workers.video_config import PoseDetectConfig, SmplRenderConfig

    root = clip[0]
    ingest_videos(str(root / "clips"), str(root / "videos"), IngestVideosConfig(videos_per_shard=4, focal_length=FOCAL))
    for name, worker, src in (("kp", PoseDetectWorker(PoseDetectConfig()), "videos"),
                              ("fit", SmplFitWorker(SmplFitConfig(model=body_model_path, preset="fast")), "kp"),
                              ("render", SmplRenderWorker(SmplRenderConfig(videos=str(root / "videos"),
                                                                           model=body_model_path, side_view=True)), "fit")):
        result = worker.process(ShardTask(Shard(0, str(root / src / "part-00000.parquet")), str(root / name)))
        assert result.status == "ok", result.error
    return root


def test_detection_finds_the_rendered_body_in_every_frame(stages, clip):
    from dl3d.video.keypoints import BODY_25

    rows = pq.read_table(stages / "kp" / "part-00000.parquet").to_pylist()
    walk = [r for r in rows if r["video"] == "walk"]
    assert [r["frame"] for r in walk] == list(range(FRAMES)) and {r["status"] for r in walk} == {"ok"}
    assert {(r["image_width"], r["image_height"], r["focal_length"], r["fps"]) for r in walk} == {(WIDTH, HEIGHT, FOCAL, 25.0)}
    kp = np.array([r["keypoints"] for r in walk])
    truth = clip[2].clean2d  # (F, 25, 2) BODY_25 projections of the body's keypoints
    limbs = [BODY_25.index(n) for n in ("RShoulder", "LShoulder", "RElbow", "LElbow", "RHip", "LHip", "RKnee", "LKnee",
                                        "RAnkle", "LAnkle")]
    err = np.linalg.norm(kp[:, limbs, :2] - truth[:, limbs], axis=-1)
    assert np.median(err) < 12.0, f"median limb keypoint error {np.median(err):.1f} px (body about 110 px tall)"


def test_every_frame_and_the_bad_file_are_accounted_for(stages):
    videos = {r["id"]: r for r in pq.read_table(stages / "videos" / "part-00000.parquet").to_pylist()}
    assert videos["broken"]["status"] == "unreadable" and videos["walk"]["num_frames"] == FRAMES
    kp = pq.read_table(stages / "kp" / "part-00000.parquet").to_pylist()
    assert {r["video"] for r in kp} == {"walk"}, "an unreadable video has no frame, so no keypoint row"
    fit = pq.read_table(stages / "fit" / "part-00000.parquet").to_pylist()
    assert sorted(r["status"] for r in fit) == ["ok"] * FRAMES
    index = {r["id"]: r for r in pq.read_table(stages / "render" / "part-00000.parquet").to_pylist()}
    walk = index["walk"]
    assert (walk["status"], walk["frames"], walk["drawn"], walk["not_fitted"], walk["no_fit_row"]) == ("ok", FRAMES, FRAMES, 0, 0)


def test_render_decodes_with_every_frame_and_the_mesh_lies_on_the_body(stages, clip):
    from dl3d.video.decode import VideoRef, iter_frames

    index = {r["id"]: r for r in pq.read_table(stages / "render" / "part-00000.parquet").to_pylist()}
    frames = np.stack(list(iter_frames(VideoRef("r", url=str(stages / "render" / index["walk"]["video_path"])))))
    assert frames.shape == (FRAMES, HEIGHT, 2 * WIDTH, 3)
    src = clip[1].astype(np.int16)
    from dl3d.video.synthetic_clip import room_background

    body = np.abs(src - room_background(HEIGHT, WIDTH)).sum(-1) > 30  # where the rendered body is
    changed = np.abs(frames[:, :, :WIDTH].astype(np.int16) - src).sum(-1) > 40  # where the overlay drew
    iou = (body & changed).sum() / (body | changed).sum()
    assert iou > 0.5, f"the drawn mesh covers the body with IoU {iou:.2f}"
    side = frames[:, :, WIDTH:]
    assert (np.abs(side.astype(np.int16) - 96).sum(-1) > 30).mean() > 0.01, "the side view shows a mesh"


def test_amass_export_of_the_fit_reproduces_its_joints(stages, body_model_path):
    """The real fit's stored joints (camera frame) vs the body model posed from the exported NPZ (world)."""
    import torch

    from dl3d.body import load_body_model
    from dl3d.body.amass import CAMERA_TO_WORLD
    from dl3d.workers.smpl_config import SmplExportConfig
    from dl3d.workers.smpl_export import SmplExportWorker

    worker = SmplExportWorker(SmplExportConfig(model=body_model_path, format="amass-npz", fps=25.0))
    result = worker.process(ShardTask(Shard(0, str(stages / "fit" / "part-00000.parquet")), str(stages / "amass")))
    assert result.status == "ok", result.error
    [row] = pq.read_table(stages / "amass" / "part-00000.parquet").to_pylist()
    npz = np.load(stages / "amass" / row["npz_path"])
    fit = sorted(pq.read_table(stages / "fit" / "part-00000.parquet").to_pylist(), key=lambda r: r["frame"])
    model = load_body_model(body_model_path)
    with torch.inference_mode():
        out = model(betas=torch.tensor(np.tile(npz["betas"], (FRAMES, 1)), dtype=torch.float32),
                    global_orient=torch.tensor(npz["poses"][:, :3], dtype=torch.float32),
                    body_pose=torch.tensor(npz["poses"][:, 3:], dtype=torch.float32),
                    transl=torch.tensor(npz["trans"], dtype=torch.float32))
    err = np.abs(out.joints[:, :24].double().numpy() - np.array([r["joints"] for r in fit]) @ CAMERA_TO_WORLD.T).max()
    assert err < 1e-5, f"the AMASS round trip is off by {err:.2e} m"
