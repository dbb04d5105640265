"""OpenPose ``--write_json`` output: read it into a ``keypoints2d`` dataset, and write it for tests and benchmarks.

OpenPose writes one JSON file per frame, ``{video}_{frame:012d}_keypoints.json`` for a video input
(``{image}_keypoints.json`` for a folder of images)::

    {"version": 1.3,
     "people": [{"person_id": [-1],
                 "pose_keypoints_2d": [x0, y0, c0, x1, y1, c1, ...],
                 "face_keypoints_2d": [], "hand_left_keypoints_2d": [], "hand_right_keypoints_2d": [],
                 "pose_keypoints_3d": [], "face_keypoints_3d": [], "hand_left_keypoints_3d": [],
                 "hand_right_keypoints_3d": []}]}

``person_id`` is ``[-1]`` unless OpenPose ran with ``--tracking`` (older versions omit it, some
tools write a bare integer); versions before 1.2 call the body array ``pose_keypoints``. Only the
BODY_25 body model (25 keypoints, 75 numbers) is read: the COCO_18 (54 numbers), MPI_15 (45) and
BODY_135 (405) models are reported as unsupported. Coordinates are taken as pixels of the input
image (OpenPose's default ``--keypoint_scale 0``).

Input layout: a root folder holding one folder per video, each with that video's JSON files, or
a root that directly holds the JSON files of one video (named after the root folder). Paths may be
local or any fsspec URL (``s3://...``).
"""

from __future__ import annotations

import io
import json
import math
import posixpath
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from dl3d.data import fs as fsx
from dl3d.ingest.config import IngestConfig, IngestReport, SkippedInput
from dl3d.ingest.tracking import associate_tracks, track_rows
from dl3d.ingest.writer import VideoKeypoints, finish_ingest

BODY25_JOINTS = 25
JSON_SUFFIX = "_keypoints.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
OTHER_MODELS = {54: "COCO_18 (18 keypoints)", 45: "MPI_15 (15 keypoints)", 405: "BODY_135 (135 keypoints)"}
"""Numbers per person of the other OpenPose body models, by the length of ``pose_keypoints_2d``."""
EMPTY_PARTS = ("face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "pose_keypoints_3d",
               "face_keypoints_3d", "hand_left_keypoints_3d", "hand_right_keypoints_3d")


class OpenPoseFormatError(ValueError):
    """A file is not usable OpenPose BODY_25 JSON; the message says why."""


def parse_openpose_frame(data: bytes | str) -> tuple[np.ndarray, np.ndarray]:
    """The people of one OpenPose JSON file.

    Returns keypoints (P, 25, 3) float32 (x, y pixels; confidence clipped to [0, 1]; keypoints with
    confidence 0 or non-finite numbers become all zero) and person ids (P,) int64 (-1 = unknown).
    People with no keypoint above confidence 0 are left out; a missing or empty ``people`` list is a
    frame with nobody (P = 0). Raises :class:`OpenPoseFormatError` for anything else.
    """
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise OpenPoseFormatError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise OpenPoseFormatError(f"expected a JSON object with a 'people' list, got {type(obj).__name__}")
    people = obj.get("people")
    if people is None:
        people = []
    if not isinstance(people, list):
        raise OpenPoseFormatError(f"expected 'people' to be a list, got {type(people).__name__}")
    poses, ids = [], []
    for p, person in enumerate(people):
        if not isinstance(person, dict):
            raise OpenPoseFormatError(f"people[{p}] is not an object")
        kp = _body_keypoints(person, p)
        if (kp[:, 2] > 0).any():
            poses.append(kp)
            ids.append(_person_id(person.get("person_id")))
    keypoints = np.asarray(poses, dtype=np.float32).reshape(len(poses), BODY25_JOINTS, 3)
    return keypoints, np.asarray(ids, dtype=np.int64)


def _body_keypoints(person: dict, p: int) -> np.ndarray:
    key = "pose_keypoints_2d" if "pose_keypoints_2d" in person else "pose_keypoints"
    values = person.get(key)
    if values is None:
        raise OpenPoseFormatError(f"people[{p}] has no pose_keypoints_2d")
    if not isinstance(values, list):
        raise OpenPoseFormatError(f"people[{p}].{key} is not a list")
    bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise OpenPoseFormatError(f"people[{p}].{key}[{bad[0]}] is not a number: {values[bad[0]]!r}")
    n = len(values)
    if n == 0:
        raise OpenPoseFormatError(f"people[{p}].{key} is empty (was OpenPose run with --body 0?)")
    if n != 3 * BODY25_JOINTS:
        model = f" - the OpenPose {OTHER_MODELS[n]} body model" if n in OTHER_MODELS else ""
        raise OpenPoseFormatError(
            f"people[{p}].{key} has {n} numbers{model}; only BODY_25 (25 keypoints x, y, confidence = 75 "
            f"numbers) is supported: run OpenPose with --model_pose BODY_25")
    kp = np.asarray(values, dtype=np.float64).reshape(BODY25_JOINTS, 3)
    kp[~np.isfinite(kp).all(axis=1)] = 0.0
    kp[:, 2] = np.clip(kp[:, 2], 0.0, 1.0)
    kp[kp[:, 2] == 0] = 0.0
    return kp


def _person_id(value: Any) -> int:
    """OpenPose writes ``[-1]`` (or ``[id]`` with ``--tracking``); other tools a bare int. Unknown: -1."""
    if isinstance(value, list):
        value = value[0] if value else -1
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return -1
    return int(value) if value == int(value) and value >= 0 else -1


def frame_number(json_name: str) -> int | None:
    """The frame number in an OpenPose file name: the last group of digits before ``_keypoints``.

    ``clip_000000000012_keypoints.json`` -> 12; ``clip_keypoints.json`` -> None.
    """
    stem = frame_stem(json_name)
    found = re.findall(r"\d+", stem)
    return int(found[-1]) if found else None


def frame_stem(json_name: str) -> str:
    """``clip_000000000012`` for ``.../clip_000000000012_keypoints.json`` (the image's stem)."""
    name = posixpath.basename(json_name)
    return name[: -len(JSON_SUFFIX)] if name.endswith(JSON_SUFFIX) else posixpath.splitext(name)[0]


def order_frames(paths: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Paths in time order and their frame numbers (F,) int64.

    The numbers in the names are used when every name has one and no two are equal; otherwise the
    frames are numbered 0, 1, ... in sorted name order.
    """
    nums = [frame_number(p) for p in paths]
    if paths and None not in nums and len(set(nums)) == len(nums):
        order = sorted(range(len(paths)), key=lambda i: nums[i])
        return [paths[i] for i in order], np.asarray([nums[i] for i in order], dtype=np.int64)
    ordered = sorted(paths)
    return ordered, np.arange(len(ordered), dtype=np.int64)


def find_openpose_videos(fs, root: str) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """The OpenPose JSON files under ``root``, grouped into videos by folder, and the images beside them.

    Returns ``{video id: [json paths]}`` (the id is the folder's path below ``root``, or the root's
    own name for files directly in it) and ``{folder: {image stem: image path}}``. Hidden and
    ``_``-prefixed files and folders are ignored.
    """
    fs.invalidate_cache(root)
    if not fs.exists(root):
        raise ValueError(f"{root}: input not found (no such folder or prefix)")
    if fs.isfile(root):
        raise ValueError(f"{root}: expected a folder of OpenPose *{JSON_SUFFIX} files, got a file")
    videos: dict[str, list[str]] = {}
    images: dict[str, dict[str, str]] = {}
    for path in sorted(fs.find(root)):
        rel = path[len(root):].lstrip("/")
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        folder, name = posixpath.split(rel)
        if name.endswith(JSON_SUFFIX):
            video = folder or posixpath.basename(root.rstrip("/")) or "video"
            videos.setdefault(video, []).append(path)
        elif name.lower().endswith(IMAGE_SUFFIXES):
            images.setdefault(posixpath.dirname(path), {})[posixpath.splitext(name)[0]] = path
    return videos, images


def image_size_of(fs, path: str) -> tuple[int, int]:
    """(width, height) in pixels from an image file's header (reads the whole file only if needed)."""
    from PIL import Image

    head = fs.cat_file(path, start=0, end=1 << 16)
    try:
        with Image.open(io.BytesIO(head)) as im:
            return im.size
    except (OSError, ValueError):  # header past the first 64 KiB (large EXIF block): read it all
        with Image.open(io.BytesIO(fs.cat_file(path))) as im:
            return im.size


def _video_image_size(fs, paths: Sequence[str], images: dict[str, dict[str, str]]) -> tuple[int, int] | None:
    """Size of the first image whose stem matches a frame's (``{stem}.png`` or ``{stem}_rendered.png``)."""
    for path in paths:
        beside = images.get(posixpath.dirname(path), {})
        stem = frame_stem(path)
        for candidate in (stem, stem + "_rendered"):
            if candidate in beside:
                try:
                    return image_size_of(fs, beside[candidate])
                except (OSError, ValueError, SyntaxError):  # not an image PIL can read: try the next
                    continue
    return None


def read_openpose_video(
    fs, video: str, paths: Sequence[str], images: dict[str, dict[str, str]], cfg: IngestConfig,
) -> tuple[VideoKeypoints | None, int, list[SkippedInput]]:
    """Read, track and fill one video's frames.

    Returns the video's rows (None when no frame could be read), the number of frames read and
    the skipped files with their reasons.
    """
    ordered, numbers = order_frames(list(paths))
    contents = fs.cat(ordered, on_error="return") if ordered else {}
    skipped: list[SkippedInput] = []
    detections: list[np.ndarray | None] = []
    person_ids: list[np.ndarray | None] = []
    for path in ordered:
        data = contents.get(path)
        try:
            if data is None or isinstance(data, BaseException):
                raise OpenPoseFormatError(f"could not be read ({data!r})")
            kp, ids = parse_openpose_frame(data)
        except OpenPoseFormatError as exc:
            skipped.append(SkippedInput(_display(fs, path), str(exc)))
            detections.append(None)
            person_ids.append(None)
            continue
        detections.append(kp)
        person_ids.append(ids)
    read = sum(d is not None for d in detections)
    if read == 0:
        return None, 0, skipped
    track_ids = associate_tracks(detections, person_ids, max_distance=cfg.track_distance,
                                 min_confidence=cfg.min_confidence, max_gap=cfg.track_max_gap)
    frames, tracks, keypoints = track_rows(numbers, detections, track_ids, BODY25_JOINTS, cfg.min_track_length)
    size = _video_image_size(fs, ordered, images) or cfg.image_size
    return VideoKeypoints(video, frames, tracks, keypoints, "body25", size, cfg.focal_length), read, skipped


def ingest_openpose(
    input_url: str,
    output_url: str,
    cfg: IngestConfig | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> IngestReport:
    """Turn a folder of OpenPose BODY_25 JSON files into a ``keypoints2d`` dataset at ``output_url``.

    Files that cannot be used are skipped and listed, with the reason, in the returned report and in
    ``_ingest_errors.json`` of the dataset. Raises ValueError when the input has no OpenPose files or
    none of them could be read.
    """
    cfg = cfg or IngestConfig()
    fs, root = fsx.resolve(input_url, storage_options)
    found, images = find_openpose_videos(fs, root)
    if not found:
        raise ValueError(f"{input_url}: no OpenPose *{JSON_SUFFIX} files found")
    report = IngestReport(output_url)
    videos: list[VideoKeypoints] = []
    for video in sorted(found):
        rows, read, skipped = read_openpose_video(fs, video, found[video], images, cfg)
        report.skipped += skipped
        report.frames += read
        if rows is not None:
            videos.append(rows)
    if not videos:
        first = report.skipped[0]
        raise ValueError(f"{input_url}: none of the {len(report.skipped)} OpenPose files could be read; "
                         f"first: {first.name}: {first.reason}")
    return finish_ingest(output_url, videos, report, cfg, {"ingest": "openpose", "input": input_url},
                         storage_options)


def _display(fs, path: str) -> str:
    return path if fsx.is_local(fs) else fs.unstrip_protocol(path)


def openpose_frame_json(keypoints: np.ndarray, person_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The OpenPose 1.3 JSON object of one frame.

    keypoints: (P, 25, 3) x, y pixels and confidence; person_ids: (P,) ints or None (all ``[-1]``).
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, BODY25_JOINTS, 3)
    ids = [-1] * len(kp) if person_ids is None else [int(i) for i in person_ids]
    people = [{"person_id": [pid], "pose_keypoints_2d": [float(v) for v in p.reshape(-1)],
               **{k: [] for k in EMPTY_PARTS}} for p, pid in zip(kp, ids)]
    return {"version": 1.3, "people": people}


def write_openpose_video(
    root_url: str,
    video: str,
    keypoints: np.ndarray | Sequence[np.ndarray],
    person_ids: np.ndarray | Sequence[Sequence[int]] | None = None,
    *,
    start_frame: int = 0,
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Write one video as OpenPose ``--write_json`` output: ``{root}/{video}/{video}_{frame:012d}_keypoints.json``.

    keypoints: (F, P, 25, 3) array or F arrays (P_f, 25, 3): x, y in pixels, confidence in [0, 1].
    A person whose confidences are all 0 is not written (OpenPose never reports one).
    person_ids: None (every person ``[-1]``), an (F, P) int array or F sequences of P_f ints.
    Frames are numbered from ``start_frame``. Returns the paths written.
    """
    if not video or "/" in video:
        raise ValueError(f"expected a video name without '/', got {video!r}")
    frames = [np.asarray(k, dtype=np.float64) for k in keypoints]
    for f, kp in enumerate(frames):
        if kp.ndim != 3 or kp.shape[1:] != (BODY25_JOINTS, 3):
            raise ValueError(f"expected keypoints of shape (P, 25, 3) for each frame, got {kp.shape} at frame {f}")
        if not np.isfinite(kp).all():
            raise ValueError(f"keypoints of frame {f} contain NaN or infinite values")
    if person_ids is not None and len(person_ids) != len(frames):
        raise ValueError(f"expected person_ids for each of the {len(frames)} frames, got {len(person_ids)}")
    fs, root = fsx.resolve(root_url, storage_options)
    files: dict[str, bytes] = {}
    for f, kp in enumerate(frames):
        ids = [-1] * len(kp) if person_ids is None else [int(i) for i in person_ids[f]]
        if len(ids) != len(kp):
            raise ValueError(f"expected {len(kp)} person ids at frame {f}, got {len(ids)}")
        keep = [p for p in range(len(kp)) if (kp[p, :, 2] > 0).any()]
        doc = openpose_frame_json(kp[keep], [ids[p] for p in keep])
        name = f"{video}_{start_frame + f:012d}{JSON_SUFFIX}"
        files[fsx.join(root, video, name)] = json.dumps(doc, separators=(",", ":")).encode()
    if fsx.is_local(fs):
        for path, data in files.items():
            fsx.put_bytes(fs, path, data)
    else:
        fs.pipe(files)
    return list(files)
