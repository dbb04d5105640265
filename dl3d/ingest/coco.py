"""COCO-17 keypoint annotations (and PoseTrack's video variant) into a ``keypoints2d`` dataset.

A COCO keypoint file (``person_keypoints_*.json``) holds ``images`` (``id``, ``file_name``,
``width``, ``height``), ``annotations`` (``image_id``, ``keypoints`` = 17 x (x, y, v) = 51 numbers,
``iscrowd``) and ``categories`` (the person category lists its 17 keypoint names). PoseTrack's
files add ``vid_id`` and ``frame_id`` to the images and ``track_id`` to the annotations.

Videos: ``vid_id`` when the images have it, else the folder part of ``file_name`` (PoseTrack's
``images/val/000342_mpii_test/000000.jpg``), else every image is a one-frame video (plain COCO).
Within a video, frames are numbered by the digits of the file name, else by ``frame_id``, else in
file-name order. Visibility becomes confidence: v = 0 -> 0 (x = y = 0), v >= 1 -> 1, and a
fractional v in (0, 1) (a detector's score written in its place) is kept as the confidence.
The input is one JSON file or a folder of them (PoseTrack ships one file per video).
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dl3d.data import fs as fsx
from dl3d.ingest.config import IngestConfig, IngestReport, SkippedInput
from dl3d.ingest.tracking import associate_tracks, track_rows
from dl3d.ingest.writer import VideoKeypoints, finish_ingest

COCO_JOINTS = 17


class CocoFormatError(ValueError):
    """A file is not usable COCO-17 keypoint JSON; the message says why."""


@dataclass
class _Image:
    id: Any
    file_name: str
    record: dict
    people: list[np.ndarray] = field(default_factory=list)  # (17, 3) each
    track_ids: list[int] = field(default_factory=list)


def coco_keypoints(values: Any) -> np.ndarray:
    """One annotation's ``keypoints`` (51 numbers x, y, v) as (17, 3) float64 x, y pixels and confidence.

    Raises :class:`CocoFormatError` for a list of the wrong length or with non-numbers.
    """
    if not isinstance(values, list):
        raise CocoFormatError(f"keypoints is not a list but {type(values).__name__}")
    if len(values) != 3 * COCO_JOINTS:
        raise CocoFormatError(f"keypoints has {len(values)} numbers; expected 51 (COCO-17: 17 keypoints x, y, v)")
    bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise CocoFormatError(f"keypoints[{bad[0]}] is not a number: {values[bad[0]]!r}")
    kp = np.asarray(values, dtype=np.float64).reshape(COCO_JOINTS, 3)
    kp[~np.isfinite(kp).all(axis=1)] = 0.0
    kp[:, 2] = np.where(kp[:, 2] >= 1, 1.0, np.maximum(kp[:, 2], 0.0))
    kp[kp[:, 2] == 0] = 0.0
    return kp


def _person_categories(obj: dict) -> set | None:
    """Ids of the categories whose annotations are people with COCO-17 keypoints (None: no categories)."""
    cats = obj.get("categories")
    if not cats:
        return None
    if not isinstance(cats, list) or not all(isinstance(c, dict) for c in cats):
        raise CocoFormatError("'categories' is not a list of objects")
    with_kp = [c for c in cats if c.get("keypoints")]
    if not with_kp:
        return {c.get("id") for c in cats if c.get("name") == "person"} or None
    ok = {c.get("id") for c in with_kp if len(c["keypoints"]) == COCO_JOINTS}
    if not ok:
        c = with_kp[0]
        raise CocoFormatError(f"category {c.get('name')!r} declares {len(c['keypoints'])} keypoints; "
                              f"only COCO-17 (17 keypoints) is supported")
    return ok


def parse_coco(obj: Any, source: str) -> tuple[dict[Any, _Image], list[SkippedInput]]:
    """Images of a COCO keypoint file with their people attached; annotations that cannot be used are listed."""
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise CocoFormatError("expected a JSON object with an 'images' list (COCO keypoint format)")
    annotations = obj.get("annotations") or []
    if not isinstance(annotations, list):
        raise CocoFormatError("'annotations' is not a list")
    persons = _person_categories(obj)
    skipped: list[SkippedInput] = []
    images: dict[Any, _Image] = {}
    for n, im in enumerate(obj["images"]):
        if not isinstance(im, dict) or "id" not in im:
            skipped.append(SkippedInput(f"{source}#images[{n}]", "image without an 'id'"))
            continue
        images[im["id"]] = _Image(im["id"], str(im.get("file_name") or f"image{im['id']}"), im)
    for n, ann in enumerate(annotations):
        name = f"{source}#annotation {ann.get('id', n) if isinstance(ann, dict) else n}"
        if not isinstance(ann, dict):
            skipped.append(SkippedInput(name, "annotation is not an object"))
            continue
        category = ann.get("category_id")
        if ann.get("iscrowd") or (persons is not None and category is not None and category not in persons):
            continue
        image = images.get(ann.get("image_id"))
        if image is None:
            skipped.append(SkippedInput(name, f"image_id {ann.get('image_id')!r} is not in 'images'"))
            continue
        if "keypoints" not in ann:
            continue  # a box without keypoints
        try:
            kp = coco_keypoints(ann["keypoints"])
        except CocoFormatError as exc:
            skipped.append(SkippedInput(name, str(exc)))
            continue
        if (kp[:, 2] > 0).any():
            image.people.append(kp)
            image.track_ids.append(_track_id(ann.get("track_id")))
    return images, skipped


def _track_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return -1
    return int(value) if value == int(value) and value >= 0 else -1


def video_of(image: dict, file_name: str, key: str) -> str:
    """The video an image belongs to (see the module doc); ``key`` is :attr:`IngestConfig.video_key`."""
    own = posixpath.splitext(file_name)[0]
    folder = posixpath.dirname(file_name)
    if key in ("auto", "vid_id") and image.get("vid_id") is not None:
        return str(image["vid_id"])
    if key == "vid_id":
        raise CocoFormatError(f"image {image.get('id')!r} has no vid_id (video_key='vid_id')")
    if key in ("auto", "folder") and folder:
        return folder
    return own


def frame_numbers(images: list[_Image]) -> tuple[list[_Image], np.ndarray]:
    """A video's images in time order and their frame numbers (F,) int64.

    From the last digits of the file names when every one has them and they differ, else from
    ``frame_id`` under the same condition, else 0, 1, ... in file-name order.
    """
    for get in (_name_number, lambda im: _int_or_none(im.record.get("frame_id"))):
        nums = [get(im) for im in images]
        if None not in nums and len(set(nums)) == len(nums):
            order = sorted(range(len(images)), key=lambda i: nums[i])
            return [images[i] for i in order], np.asarray([nums[i] for i in order], dtype=np.int64)
    ordered = sorted(images, key=lambda im: (im.file_name, str(im.id)))
    return ordered, np.arange(len(ordered), dtype=np.int64)


def _name_number(im: _Image) -> int | None:
    found = re.findall(r"\d+", posixpath.splitext(posixpath.basename(im.file_name))[0])
    return int(found[-1]) if found else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _image_size(images: list[_Image]) -> tuple[int, int] | None:
    for im in images:
        w, h = _int_or_none(im.record.get("width")), _int_or_none(im.record.get("height"))
        if w and h and w > 0 and h > 0:
            return w, h
    return None


def coco_videos(
    images: dict[Any, _Image], cfg: IngestConfig, source: str,
) -> tuple[list[tuple[VideoKeypoints, int]], list[SkippedInput]]:
    """Group images into videos, track the people and build each video's rows.

    Returns (video rows, number of images) per video and the images that could not be placed.
    """
    groups: dict[str, list[_Image]] = {}
    skipped: list[SkippedInput] = []
    for im in images.values():
        try:
            groups.setdefault(video_of(im.record, im.file_name, cfg.video_key), []).append(im)
        except CocoFormatError as exc:
            skipped.append(SkippedInput(f"{source}#image {im.id}", str(exc)))
    videos = []
    for video in sorted(groups):
        ordered, numbers = frame_numbers(groups[video])
        dets = [np.asarray(im.people, dtype=np.float64).reshape(-1, COCO_JOINTS, 3) for im in ordered]
        ids = [np.asarray(im.track_ids, dtype=np.int64) for im in ordered]
        tracks = associate_tracks(dets, ids, max_distance=cfg.track_distance, min_confidence=cfg.min_confidence,
                                  max_gap=cfg.track_max_gap)
        frames, track, kp = track_rows(numbers, dets, tracks, COCO_JOINTS, cfg.min_track_length)
        size = _image_size(ordered) or cfg.image_size
        videos.append((VideoKeypoints(video, frames, track, kp, "coco17", size, cfg.focal_length), len(ordered)))
    return videos, skipped


def _json_files(fs, root: str) -> list[str]:
    fs.invalidate_cache(root)
    if not fs.exists(root):
        raise ValueError(f"{root}: input not found (no such file, folder or prefix)")
    if fs.isfile(root):
        return [root]
    return sorted(p for p in fs.find(root) if p.endswith(".json")
                  and not any(s.startswith((".", "_")) for s in p[len(root):].split("/") if s))


def ingest_coco(
    input_url: str,
    output_url: str,
    cfg: IngestConfig | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> IngestReport:
    """Turn COCO-17 / PoseTrack keypoint JSON (one file or a folder of them) into a ``keypoints2d`` dataset.

    Files and annotations that cannot be used are skipped and listed, with the reason, in the
    returned report and in ``_ingest_errors.json``. A video id found in two files is kept from the
    first. Raises ValueError when nothing could be read.
    """
    cfg = cfg or IngestConfig()
    fs, root = fsx.resolve(input_url, storage_options)
    paths = _json_files(fs, root)
    if not paths:
        raise ValueError(f"{input_url}: no .json files found")
    report = IngestReport(output_url)
    videos: dict[str, VideoKeypoints] = {}
    for path in paths:
        name = path if fsx.is_local(fs) else fs.unstrip_protocol(path)
        try:
            obj = json.loads(fs.cat_file(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            report.skipped.append(SkippedInput(name, f"not valid JSON ({exc})"))
            continue
        try:
            images, skipped = parse_coco(obj, name)
            found, more = coco_videos(images, cfg, name)
        except CocoFormatError as exc:
            report.skipped.append(SkippedInput(name, str(exc)))
            continue
        report.skipped += skipped + more
        for v, num_images in found:
            if v.video in videos:
                report.skipped.append(SkippedInput(name, f"video {v.video!r} was already read from another file"))
                continue
            videos[v.video] = v
            report.frames += num_images
    if not videos:
        first = report.skipped[0] if report.skipped else SkippedInput(input_url, "no images")
        raise ValueError(f"{input_url}: no video could be read from {len(paths)} JSON files; "
                         f"first problem: {first.name}: {first.reason}")
    return finish_ingest(output_url, list(videos.values()), report, cfg, {"ingest": "coco", "input": input_url},
                         storage_options)
