"""Fixtures for the ingest tests: synthetic BODY_25 / COCO-17 poses and reading a written dataset back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dl3d.data import arrow_to_tensor, list_shards, read_table
from dl3d.data.keypoint_tables import KEYPOINTS2D

# A standing person, BODY_25 joint order, in units of body height, origin at the mid hip.
BODY25_TEMPLATE = np.array([
    [0.0, -0.45], [0.0, -0.35], [-0.1, -0.35], [-0.2, -0.2], [-0.25, -0.05], [0.1, -0.35], [0.2, -0.2],
    [0.25, -0.05], [0.0, 0.0], [-0.07, 0.0], [-0.08, 0.22], [-0.08, 0.45], [0.07, 0.0], [0.08, 0.22],
    [0.08, 0.45], [-0.02, -0.47], [0.02, -0.47], [-0.05, -0.46], [0.05, -0.46], [0.1, 0.5], [0.12, 0.5],
    [0.07, 0.47], [-0.1, 0.5], [-0.12, 0.5], [-0.07, 0.47],
])
# COCO-17 order: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles (left before right).
COCO17_FROM_BODY25 = [0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11]


def body25_pose(cx: float, cy: float, height: float = 200.0, conf: float = 0.9) -> np.ndarray:
    """(25, 3): a standing person with mid hip at (cx, cy) pixels, ``height`` pixels tall."""
    xy = BODY25_TEMPLATE * height + np.array([cx, cy])
    return np.concatenate([xy, np.full((25, 1), conf)], axis=1)


def coco17_pose(cx: float, cy: float, height: float = 200.0, v: int = 2) -> list[float]:
    """51 numbers x, y, v of a standing person (COCO annotation ``keypoints``)."""
    kp = body25_pose(cx, cy, height)[COCO17_FROM_BODY25]
    kp[:, 2] = v
    return [float(x) for x in kp.reshape(-1)]


def openpose_person(kp: np.ndarray, person_id=(-1,)) -> dict:
    return {"person_id": list(person_id) if isinstance(person_id, tuple) else person_id,
            "pose_keypoints_2d": [round(float(x), 3) for x in np.asarray(kp).reshape(-1)],
            "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
            "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": []}


def write_frame(folder, video: str, frame: int, people: list[dict] | None, *, raw: str | None = None) -> str:
    """Write ``{video}_{frame:012d}_keypoints.json`` into ``folder`` (a pathlib.Path); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{video}_{frame:012d}_keypoints.json"
    path.write_text(raw if raw is not None else json.dumps({"version": 1.3, "people": people or []}))
    return str(path)


def read_rows(url: str) -> list[list[dict]]:
    """Rows of every shard of a ``keypoints2d`` dataset, keypoints as (J, 3) arrays, in shard order."""
    out = []
    for shard in list_shards(url):
        table = read_table(shard.url, KEYPOINTS2D)
        rows = table.drop_columns(["keypoints"]).to_pylist()
        if len(rows):
            kp = arrow_to_tensor(table.column("keypoints"), (None, 3), name="keypoints", source=shard.url)
            for r, k in zip(rows, kp):
                r["keypoints"] = k
        out.append(rows)
    return out


@pytest.fixture
def helpers():
    """The helper functions of this module, for tests to call."""
    return type("Helpers", (), {k: staticmethod(v) for k, v in {
        "body25_pose": body25_pose, "coco17_pose": coco17_pose, "openpose_person": openpose_person,
        "write_frame": write_frame, "read_rows": read_rows}.items()})
