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
tools write a bare integer); versions before 1.2 call the body array ``pose_keypoints``.

Body models, by the numbers per person: 75 is BODY_25 or BODY_25B (same count, different joint
order, see ``dl3d.keypoints.formats``); ``--keypoint-format auto`` tells them apart by the neck: on
BODY_25, keypoint 1 (the neck) sits at the midpoint of keypoints 2 and 5 (the shoulders), within a
few percent of the shoulder width; on BODY_25B keypoints 1, 2, 5 are the left eye, right eye and left
shoulder, and the "neck" is half a shoulder-to-eye distance away. 54 is the older COCO-18 model: it is
converted to BODY_25 by joint name (MidHip from the hips, the feet missing). MPI_15 (45) and BODY_135
(405) are reported as unsupported. A person with an empty ``pose_keypoints_2d`` (``--body 0`` writes
those) or with every confidence 0 is left out and counted. Coordinates are taken as pixels of the
input image (OpenPose's default ``--keypoint_scale 0``).

File names, frame numbers, videos versus photos and image sizes: see ``dl3d.ingest.openpose_files``.
Paths may be local or any fsspec URL (``s3://...``).
"""

from __future__ import annotations

import json
import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dl3d.data import fs as fsx
from dl3d.ingest.config import IngestConfig, IngestReport, SkippedInput
from dl3d.ingest.openpose_files import SUFFIXES, find_openpose_files, frame_numbers, frame_stem, image_sizes, is_dense
from dl3d.ingest.sizes import lookup_size, read_sizes
from dl3d.ingest.tracking import associate_tracks, track_rows
from dl3d.ingest.writer import VideoKeypoints, finish_ingest
from dl3d.keypoints.formats import convert, get_format

JSON_SUFFIX = "_keypoints.json"
MODELS = {75: "BODY_25 or BODY_25B (25 keypoints)", 54: "COCO_18 (18 keypoints)"}
"""Numbers per person of the OpenPose body models dl3d reads."""
OTHER_MODELS = {45: "MPI_15 (15 keypoints)", 405: "BODY_135 (135 keypoints)"}
"""Numbers per person of the OpenPose body models dl3d does not read."""
EMPTY_PARTS = ("face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "pose_keypoints_3d",
               "face_keypoints_3d", "hand_left_keypoints_3d", "hand_right_keypoints_3d")
NECK_RATIO_BODY25 = 0.25
"""Median distance of keypoint 1 from the midpoint of keypoints 2 and 5, as a fraction of their
distance, up to which 75-number people are BODY_25 (real BODY_25: about 0; BODY_25B: 0.4-0.5)."""
PAIR_RATIO_BODY25B = 0.35
"""Median ``|k1 - k2| / |k2 - k5|`` below which people may be BODY_25B (the two eyes are close, the eye
and the opposite shoulder far: 0.05-0.25); on BODY_25 (neck to shoulder over shoulder width) it is
0.5 or more. BODY_25B needs both signs, so BODY_25 whose neck is not the shoulders' midpoint (a
SMPL-based renderer's) is not taken for it."""


class OpenPoseFormatError(ValueError):
    """A file is not usable OpenPose JSON; the message says why."""


class _NotKeypointFile(OpenPoseFormatError):
    """A ``.json`` file without a keypoint-file name and without ``people``: no frame of the video."""


@dataclass
class _Frame:
    people: list[np.ndarray] = field(default_factory=list)  # (J, 3) each
    ids: list[int] = field(default_factory=list)
    empty: int = 0  # people with no keypoint


def _parse(data: bytes | str, strict: bool = False) -> _Frame:
    """The people of one file; ``strict``: the file must hold a ``people`` key (names without a known suffix)."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise OpenPoseFormatError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise OpenPoseFormatError(f"expected a JSON object with a 'people' list, got {type(obj).__name__}")
    if strict and "people" not in obj:
        raise _NotKeypointFile(f"no 'people' list: not an OpenPose keypoint file (keys: {sorted(obj)[:5]})")
    people = obj.get("people")
    if people is None:
        people = []
    if not isinstance(people, list):
        raise OpenPoseFormatError(f"expected 'people' to be a list, got {type(people).__name__}")
    frame = _Frame()
    for p, person in enumerate(people):
        if not isinstance(person, dict):
            raise OpenPoseFormatError(f"people[{p}] is not an object")
        kp = _body_keypoints(person, p)
        if kp is None or not (kp[:, 2] > 0).any():
            frame.empty += 1
            continue
        frame.people.append(kp)
        frame.ids.append(_person_id(person.get("person_id")))
    if len({len(k) for k in frame.people}) > 1:
        counts = [3 * len(k) for k in frame.people]
        raise OpenPoseFormatError(f"people of one frame have different body models: {counts} numbers")
    return frame


def parse_openpose_frame(data: bytes | str) -> tuple[np.ndarray, np.ndarray]:
    """The people of one OpenPose JSON file.

    Returns keypoints (P, J, 3) float32 in the file's own order (J = 25 for BODY_25/BODY_25B, 18 for
    COCO-18; 25 when P = 0; x, y pixels; confidence clipped to [0, 1]; keypoints with confidence 0 or
    non-finite numbers become all zero) and person ids (P,) int64 (-1 = unknown). People with no
    keypoint above confidence 0, or an empty array, are left out; a missing or empty ``people`` list
    is a frame with nobody (P = 0). Raises :class:`OpenPoseFormatError` for anything else.
    """
    frame = _parse(data)
    j = len(frame.people[0]) if frame.people else 25
    return (np.asarray(frame.people, dtype=np.float32).reshape(len(frame.people), j, 3),
            np.asarray(frame.ids, dtype=np.int64))


def _body_keypoints(person: dict, p: int) -> np.ndarray | None:
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
        return None
    if n not in MODELS:
        model = f" - the OpenPose {OTHER_MODELS[n]} body model" if n in OTHER_MODELS else ""
        raise OpenPoseFormatError(
            f"people[{p}].{key} has {n} numbers{model}; only BODY_25 / BODY_25B (75 numbers) and COCO_18 (54) "
            f"are supported: run OpenPose with --model_pose BODY_25")
    kp = np.asarray(values, dtype=np.float64).reshape(n // 3, 3)
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


def neck_ratio(keypoints: np.ndarray) -> np.ndarray:
    """Distance of keypoint 1 from the midpoint of keypoints 2 and 5 over the 2-5 distance.

    keypoints: (P, 25, 3) in the file's order. Returns (P,) float64, NaN where one of the three is
    missing or 2 and 5 coincide. About 0 on BODY_25 (neck, shoulders), about 0.5 on BODY_25B.
    """
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 25, 3)
    ok = (kp[:, [1, 2, 5], 2] > 0).all(axis=1)
    width = np.linalg.norm(kp[:, 2, :2] - kp[:, 5, :2], axis=1)
    off = np.linalg.norm(kp[:, 1, :2] - (kp[:, 2, :2] + kp[:, 5, :2]) / 2, axis=1)
    return np.where(ok & (width > 1e-6), off / np.maximum(width, 1e-6), np.nan)


def pair_ratio(keypoints: np.ndarray) -> np.ndarray:
    """``|k1 - k2| / |k2 - k5|`` per person (P, 25, 3) -> (P,) float64, NaN where not measurable."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 25, 3)
    ok = (kp[:, [1, 2, 5], 2] > 0).all(axis=1)
    d12 = np.linalg.norm(kp[:, 1, :2] - kp[:, 2, :2], axis=1)
    d25 = np.linalg.norm(kp[:, 2, :2] - kp[:, 5, :2], axis=1)
    return np.where(ok & (d25 > 1e-6), d12 / np.maximum(d25, 1e-6), np.nan)


def detect_format(people: Sequence[np.ndarray], requested: str) -> tuple[str, str, int]:
    """Input format of the people read (each (J, 3)), the reason, and the joint count files must have.

    requested: ``IngestConfig.keypoint_format``. Returns (format of the input, reason, J).
    """
    counts = {25: sum(len(k) == 25 for k in people), 18: sum(len(k) == 18 for k in people)}
    if requested != "auto":
        if requested not in ("body25", "body25b", "coco18"):
            raise ValueError(f"--keypoint-format {requested} is not an OpenPose body model: "
                             f"use body25, body25b or coco18 (or auto)")
        return requested, f"--keypoint-format {requested}", get_format(requested).num_joints
    j = 25 if counts[25] >= counts[18] else 18
    if j == 18:
        return "coco18", f"{counts[18]} people with 54 numbers (OpenPose COCO-18)", 18
    kp = np.asarray([k for k in people if len(k) == 25]).reshape(-1, 25, 3)
    ratios, pairs = neck_ratio(kp), pair_ratio(kp)
    ratios, pairs = ratios[np.isfinite(ratios)], pairs[np.isfinite(pairs)]
    if not len(ratios):
        return "body25", ("75 numbers per person; no person shows keypoints 1, 2 and 5 to tell BODY_25 from "
                          "BODY_25B: assumed BODY_25 (pass --keypoint-format body25b if it is not)"), 25
    med, pair = float(np.median(ratios)), float(np.median(pairs))
    fmt = "body25b" if med > NECK_RATIO_BODY25 and pair < PAIR_RATIO_BODY25B else "body25"
    return fmt, (f"75 numbers per person; keypoint 1 sits {med:.2f} shoulder widths from the midpoint of 2 and 5 "
                 f"(<= {NECK_RATIO_BODY25}: a neck) and |k1 - k2| / |k2 - k5| = {pair:.2f} (< {PAIR_RATIO_BODY25B}: "
                 f"two eyes); medians of {len(ratios)} people: {get_format(fmt).title}"), 25


@dataclass
class _Folder:
    """One folder's readable frames in time order."""

    folder: str
    paths: list[str]
    stems: list[str]
    numbers: np.ndarray
    frames: list[_Frame | None]
    sizes: np.ndarray  # (F, 2), 0 = no image


def _read_folder(fs, folder: str, paths: list[str], images: dict, report: IngestReport) -> _Folder:
    """Parse one folder's files; files that are not keypoint files take no frame number."""
    contents = fs.cat(paths, on_error="return") if len(paths) > 1 else {paths[0]: _cat(fs, paths[0])}
    parsed: dict[str, _Frame | None] = {}
    for path in paths:
        data = contents.get(path)
        try:
            if data is None or isinstance(data, BaseException):
                raise OpenPoseFormatError(f"could not be read ({data!r})")
            parsed[path] = _parse(data, strict=not posixpath.basename(path).endswith(SUFFIXES))
        except _NotKeypointFile as exc:
            report.skipped.append(SkippedInput(_display(fs, path), str(exc)))
        except OpenPoseFormatError as exc:
            report.skipped.append(SkippedInput(_display(fs, path), str(exc)))
            parsed[path] = None
    paths = list(parsed)
    stems = [frame_stem(p) for p in paths]
    order, numbers = frame_numbers(stems)
    paths, stems = [paths[i] for i in order], [stems[i] for i in order]
    return _Folder(folder, paths, stems, numbers, [parsed[p] for p in paths], image_sizes(fs, paths, images))


def _cat(fs, path: str) -> bytes | BaseException:
    try:
        return fs.cat_file(path)
    except OSError as exc:
        return exc


def _split_videos(f: _Folder, root_name: str, key: str) -> list[tuple[str, list[int]]]:
    """(video id, frame positions) of one folder: one video, or one per file (photos)."""
    name = f.folder or root_name
    known = f.sizes[f.sizes[:, 0] > 0]
    one_size = len(np.unique(known, axis=0)) <= 1
    if key == "folder" or (key in ("auto", "vid_id") and is_dense(f.numbers) and one_size):
        return [(name, list(range(len(f.paths))))]
    return [(f"{name}/{stem}", [i]) for i, stem in enumerate(f.stems)]


def ingest_openpose(
    input_url: str,
    output_url: str,
    cfg: IngestConfig | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> IngestReport:
    """Turn a folder of OpenPose JSON files (BODY_25, BODY_25B or COCO-18) into a ``keypoints2d`` dataset.

    Files that cannot be used are skipped and listed, with the reason, in the returned report and in
    ``_ingest_errors.json`` of the dataset. Rows get their image size from the image beside their
    file, else from ``cfg.sizes``, else from ``cfg.image_width/height``; rows without any are counted
    and warned about. Raises ValueError when the input has no JSON files or none could be read.
    """
    cfg = cfg or IngestConfig()
    fs, root = fsx.resolve(input_url, storage_options)
    found, images = find_openpose_files(fs, root)
    if not found:
        raise ValueError(f"{input_url}: no OpenPose *{JSON_SUFFIX} (or other *.json) files found")
    sizes = read_sizes(cfg.sizes, storage_options) if cfg.sizes else {}
    report = IngestReport(output_url)
    folders = [_read_folder(fs, folder, found[folder], images, report) for folder in sorted(found)]
    people = [k for f in folders for fr in f.frames if fr is not None for k in fr.people]
    report.people_without_keypoints = sum(fr.empty for f in folders for fr in f.frames if fr is not None)
    if not people and report.people_without_keypoints:
        raise ValueError(f"{input_url}: every person of every file had an empty pose_keypoints_2d "
                         f"({report.people_without_keypoints} people; was OpenPose run with --body 0?)")
    src, report.format_reason, joints = detect_format(people, cfg.keypoint_format)
    stored = "body25" if src == "coco18" else src
    root_name = posixpath.basename(root.rstrip("/")) or "video"
    videos: list[VideoKeypoints] = []
    for f in folders:
        for i, frame in enumerate(f.frames):  # files of another body model than the input's
            if frame is not None and frame.people and len(frame.people[0]) != joints:
                report.skipped.append(SkippedInput(_display(fs, f.paths[i]), (
                    f"people with {3 * len(frame.people[0])} numbers in an input read as {get_format(src).title} "
                    f"({3 * joints} numbers)")))
                f.frames[i] = None
        for video, rows in _split_videos(f, root_name, cfg.video_key):
            v = _video(video, f, rows, src, stored, cfg, lookup_size(sizes, video) if sizes else None)
            if v is not None:
                videos.append(v)
                report.frames += sum(f.frames[i] is not None for i in rows)
    if not videos:
        first = report.skipped[0]
        raise ValueError(f"{input_url}: none of the {len(report.skipped)} OpenPose files could be read; "
                         f"first: {first.name}: {first.reason}")
    return finish_ingest(output_url, videos, report, cfg, {"ingest": "openpose", "input": input_url},
                         storage_options)


def _video(video: str, f: _Folder, rows: list[int], src: str, stored: str, cfg: IngestConfig,
           entry: Any) -> VideoKeypoints | None:
    """Track, convert and size one video's frames (None when no frame of it could be read)."""
    frames = [f.frames[i] for i in rows]
    if all(fr is None for fr in frames):
        return None
    joints = get_format(stored).num_joints
    dets = [None if fr is None else convert(np.asarray(fr.people).reshape(-1, get_format(src).num_joints, 3),
                                            src, stored) for fr in frames]
    ids = [None if fr is None else np.asarray(fr.ids, dtype=np.int64) for fr in frames]
    track_ids = associate_tracks(dets, ids, max_distance=cfg.track_distance, min_confidence=cfg.min_confidence,
                                 max_gap=cfg.track_max_gap)
    numbers = f.numbers[rows]
    out_f, out_t, kp = track_rows(numbers, dets, track_ids, joints, cfg.min_track_length)
    fallback = (entry.width, entry.height) if entry is not None else (cfg.image_size or (0, 0))
    frame_sizes = f.sizes[rows].copy()
    frame_sizes[frame_sizes[:, 0] == 0] = fallback
    size_of = {int(n): s for n, s in zip(numbers, frame_sizes)}
    per_row = np.array([size_of[int(n)] for n in out_f], dtype=np.int64).reshape(-1, 2)
    focal = entry.focal if entry is not None and entry.focal is not None else cfg.focal_length
    return VideoKeypoints(video, out_f, out_t, kp, stored, per_row, focal)


def _display(fs, path: str) -> str:
    return path if fsx.is_local(fs) else fs.unstrip_protocol(path)


def openpose_frame_json(keypoints: np.ndarray, person_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """The OpenPose 1.3 JSON object of one frame.

    keypoints: (P, J, 3) x, y pixels and confidence (J = 25: BODY_25 or BODY_25B; 18: COCO-18);
    person_ids: (P,) ints or None (all ``[-1]``).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    kp = kp.reshape(-1, kp.shape[-2] if kp.ndim >= 2 else 25, 3)
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

    keypoints: (F, P, J, 3) array or F arrays (P_f, J, 3): x, y in pixels, confidence in [0, 1]; J = 25
    (BODY_25 or BODY_25B order) or 18 (COCO-18), the same in every frame.
    A person whose confidences are all 0 is not written (OpenPose never reports one).
    person_ids: None (every person ``[-1]``), an (F, P) int array or F sequences of P_f ints.
    Frames are numbered from ``start_frame``. Returns the paths written.
    """
    if not video or "/" in video:
        raise ValueError(f"expected a video name without '/', got {video!r}")
    frames = [np.asarray(k, dtype=np.float64) for k in keypoints]
    joints = frames[0].shape[1] if frames and frames[0].ndim == 3 and frames[0].shape[1] in (25, 18) else 25
    for f, kp in enumerate(frames):
        if kp.ndim != 3 or kp.shape[1:] != (joints, 3):
            raise ValueError(f"expected keypoints of shape (P, 25 or 18, 3), the same in each frame, "
                             f"got {kp.shape} at frame {f}")
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
