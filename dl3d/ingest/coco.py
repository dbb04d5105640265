"""COCO-17 keypoint annotations (and PoseTrack's video variant) into a ``keypoints2d`` dataset.

A COCO keypoint file (``person_keypoints_*.json``) holds ``images`` (``id``, ``file_name``,
``width``, ``height``), ``annotations`` (``image_id``, ``keypoints`` = J x (x, y, v), ``iscrowd``)
and ``categories`` (the person category lists its J keypoint names). PoseTrack's files add
``vid_id`` and ``frame_id`` to the images and ``track_id`` to the annotations.

Keypoints are read by the names the category declares (``dl3d.keypoints.formats``): COCO's 17 names
give ``coco17``; PoseTrack 2018's (``nose, head_bottom, head_top, left_ear, ...``) give ``posetrack``
(head_bottom and head_top are not eyes). Names in another order are reordered. With
``--keypoint-format coco17|posetrack`` the rows are stored in that format (converted by name,
joints the file lacks at confidence 0); a category whose names dl3d does not know is then read in
that format's order. Every image's own ``width``/``height`` is its rows' image size.

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
from dl3d.ingest.openpose_files import header_sizes
from dl3d.ingest.sizes import lookup_size, read_sizes
from dl3d.ingest.tracking import associate_tracks, track_rows
from dl3d.ingest.writer import VideoKeypoints, finish_ingest
from dl3d.keypoints.formats import FORMATS, convert, get_format, joint_alias

COCO_JOINTS = 17
COCO_FORMATS = ("coco17", "posetrack")
"""Formats a COCO-style file can declare."""


class CocoFormatError(ValueError):
    """A file is not usable COCO keypoint JSON; the message says why."""


@dataclass
class _Image:
    id: Any
    file_name: str
    record: dict
    people: list[np.ndarray] = field(default_factory=list)  # (J, 3) each, in the stored format
    track_ids: list[int] = field(default_factory=list)


def coco_keypoints(values: Any, joints: int = COCO_JOINTS, what: str = "COCO-17") -> np.ndarray:
    """One annotation's ``keypoints`` (3 J numbers x, y, v) as (J, 3) float64 x, y pixels and confidence.

    Raises :class:`CocoFormatError` for a list of the wrong length or with non-numbers.
    """
    if not isinstance(values, list):
        raise CocoFormatError(f"keypoints is not a list but {type(values).__name__}")
    if len(values) != 3 * joints:
        raise CocoFormatError(f"keypoints has {len(values)} numbers; expected {3 * joints} "
                              f"({what}: {joints} keypoints x, y, v)")
    bad = [i for i, v in enumerate(values) if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise CocoFormatError(f"keypoints[{bad[0]}] is not a number: {values[bad[0]]!r}")
    kp = np.asarray(values, dtype=np.float64).reshape(joints, 3)
    kp[~np.isfinite(kp).all(axis=1)] = 0.0
    kp[:, 2] = np.where(kp[:, 2] >= 1, 1.0, np.maximum(kp[:, 2], 0.0))
    kp[kp[:, 2] == 0] = 0.0
    return kp


@dataclass
class _Layout:
    """How one category's keypoints become rows: read ``joints`` numbers in format ``src``, store as ``dst``."""

    src: str
    dst: str
    joints: int
    order: list[int] | None  # declared position -> position in ``src`` (None: already in order)
    reason: str

    def rows(self, kp: np.ndarray) -> np.ndarray:
        if self.order is not None:
            out = np.zeros((get_format(self.src).num_joints, 3))
            out[self.order] = kp
            kp = out
        return convert(kp, self.src, self.dst) if self.src != self.dst else kp


def _layout(cat: dict, requested: str) -> _Layout:
    """The layout of a category that declares keypoint names (see the module doc)."""
    declared = [joint_alias(n) for n in cat["keypoints"]]
    dst = requested if requested in COCO_FORMATS else None
    if requested not in ("auto",) + COCO_FORMATS:
        raise CocoFormatError(f"--keypoint-format {requested} is not a COCO-style format: use coco17 or posetrack")
    for name in COCO_FORMATS:
        fmt = FORMATS[name]
        if len(set(declared)) == len(declared) and set(declared) <= set(fmt.joints):
            order = None if tuple(declared) == fmt.joints else [fmt.index(n) for n in declared]
            how = "in order" if order is None else "reordered by name"
            return _Layout(name, dst or name, len(declared), order,
                           f"category {cat.get('name')!r} declares {fmt.title} keypoint names ({how})")
    if dst is not None and len(declared) == FORMATS[dst].num_joints:
        return _Layout(dst, dst, len(declared), None, f"unknown keypoint names read in {FORMATS[dst].title} order "
                                                      f"(--keypoint-format {dst})")
    known = FORMATS["coco17"].joints + FORMATS["posetrack"].joints
    unknown = [n for n in cat["keypoints"] if joint_alias(n) not in known]
    raise CocoFormatError(f"category {cat.get('name')!r} declares {len(declared)} keypoints with names dl3d does not "
                          f"know ({unknown[:4]}); only COCO-17 and PoseTrack names are read: pass --keypoint-format "
                          f"coco17 or posetrack to read 17 keypoints in that order")


def _person_categories(obj: dict, requested: str) -> dict | None:
    """Layout by category id of the categories whose annotations are people with keypoints; None when the
    file has no categories (then read as ``requested``, COCO-17 for auto). Ids of person categories
    without keypoint names map to that default too."""
    cats = obj.get("categories")
    if not cats:
        return None
    if not isinstance(cats, list) or not all(isinstance(c, dict) for c in cats):
        raise CocoFormatError("'categories' is not a list of objects")
    with_kp = [c for c in cats if c.get("keypoints")]
    if not with_kp:
        default = _default_layout(requested)
        return {c.get("id"): default for c in cats if c.get("name") == "person"} or None
    return {c.get("id"): _layout(c, requested) for c in with_kp}


def _default_layout(requested: str) -> _Layout:
    name = requested if requested in COCO_FORMATS else "coco17"
    return _Layout(name, name, FORMATS[name].num_joints, None,
                   f"no keypoint names declared: read as {FORMATS[name].title}")


def parse_coco(obj: Any, source: str, requested: str = "auto"
               ) -> tuple[dict[Any, _Image], list[SkippedInput], int, _Layout | None]:
    """Images of a COCO keypoint file with their people attached (in the stored format).

    Returns the images, the annotations that cannot be used (listed with the reason), the number of
    person annotations without any keypoint (counted, left out) and the layout used (None when no
    annotation had keypoints).
    """
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise CocoFormatError("expected a JSON object with an 'images' list (COCO keypoint format)")
    annotations = obj.get("annotations") or []
    if not isinstance(annotations, list):
        raise CocoFormatError("'annotations' is not a list")
    persons = _person_categories(obj, requested)
    layouts = list(persons.values()) if persons else []
    if len({(lay.dst) for lay in layouts}) > 1:
        raise CocoFormatError(f"categories declare different keypoint formats {sorted({lay.dst for lay in layouts})}")
    skipped: list[SkippedInput] = []
    empty = 0
    used: _Layout | None = None
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
            empty += 1  # a person box without keypoints
            continue
        layout = persons.get(category, layouts[0]) if persons else _default_layout(requested)
        try:
            kp = coco_keypoints(ann["keypoints"], layout.joints, get_format(layout.src).title)
        except CocoFormatError as exc:
            skipped.append(SkippedInput(name, str(exc)))
            continue
        if (kp[:, 2] > 0).any():
            image.people.append(layout.rows(kp))
            image.track_ids.append(_track_id(ann.get("track_id")))
            used = layout
        else:
            empty += 1
    return images, skipped, empty, used


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


def _image_size(im: _Image) -> tuple[int, int]:
    """(width, height) an image record declares, (0, 0) when it does not."""
    w, h = _int_or_none(im.record.get("width")), _int_or_none(im.record.get("height"))
    return (w, h) if w and h and w > 0 and h > 0 else (0, 0)


def coco_videos(
    images: dict[Any, _Image], cfg: IngestConfig, source: str, fmt: str = "coco17", sizes: dict | None = None,
    images_fs: tuple[Any, str] | None = None,
) -> tuple[list[tuple[VideoKeypoints, int]], list[SkippedInput]]:
    """Group images into videos, track the people and build each video's rows (format ``fmt``).

    Each row's image size is its image record's, else its image file's header under ``images_fs``
    ((filesystem, root path) of ``cfg.images``), else the video's entry in ``sizes``, else the config's.
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
        joints = get_format(fmt).num_joints
        dets = [np.asarray(im.people, dtype=np.float64).reshape(-1, joints, 3) for im in ordered]
        ids = [np.asarray(im.track_ids, dtype=np.int64) for im in ordered]
        tracks = associate_tracks(dets, ids, max_distance=cfg.track_distance, min_confidence=cfg.min_confidence,
                                  max_gap=cfg.track_max_gap)
        frames, track, kp = track_rows(numbers, dets, tracks, joints, cfg.min_track_length)
        entry = lookup_size(sizes, video) if sizes else None
        fallback = (entry.width, entry.height) if entry is not None else (cfg.image_size or (0, 0))
        size_of = {int(n): _image_size(im) for n, im in zip(numbers, ordered)}
        if images_fs is not None:  # records without a size: the image file's header
            todo = [(int(n), im) for n, im in zip(numbers, ordered) if not size_of[int(n)][0]]
            found = header_sizes(images_fs[0], [fsx.join(images_fs[1], im.file_name) for _, im in todo])
            size_of.update({n: (int(w), int(h)) for (n, _), (w, h) in zip(todo, found)})
        per_row = np.array([size_of[int(f)] if size_of[int(f)][0] else fallback for f in frames],
                           dtype=np.int64).reshape(-1, 2)
        focal = entry.focal if entry is not None and entry.focal is not None else cfg.focal_length
        videos.append((VideoKeypoints(video, frames, track, kp, fmt, per_row, focal), len(ordered)))
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
    """Turn COCO / PoseTrack keypoint JSON (one file or a folder of them) into a ``keypoints2d`` dataset.

    Files and annotations that cannot be used are skipped and listed, with the reason, in the
    returned report and in ``_ingest_errors.json``. A video id found in two files is kept from the
    first. Raises ValueError when nothing could be read.
    """
    cfg = cfg or IngestConfig()
    fs, root = fsx.resolve(input_url, storage_options)
    paths = _json_files(fs, root)
    if not paths:
        raise ValueError(f"{input_url}: no .json files found")
    sizes = read_sizes(cfg.sizes, storage_options) if cfg.sizes else {}
    images_fs = fsx.resolve(cfg.images, storage_options) if cfg.images else None
    report = IngestReport(output_url)
    reasons: list[str] = []
    videos: dict[str, VideoKeypoints] = {}
    for path in paths:
        name = path if fsx.is_local(fs) else fs.unstrip_protocol(path)
        try:
            obj = json.loads(fs.cat_file(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            report.skipped.append(SkippedInput(name, f"not valid JSON ({exc})"))
            continue
        try:
            images, skipped, empty, layout = parse_coco(obj, name, cfg.keypoint_format)
            layout = layout or _default_layout(cfg.keypoint_format)
            found, more = coco_videos(images, cfg, name, layout.dst, sizes, images_fs)
        except CocoFormatError as exc:
            report.skipped.append(SkippedInput(name, str(exc)))
            continue
        report.skipped += skipped + more
        report.people_without_keypoints += empty
        if found and layout.reason not in reasons:
            reasons.append(layout.reason)
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
    report.format_reason = "; ".join(reasons)
    return finish_ingest(output_url, list(videos.values()), report, cfg, {"ingest": "coco", "input": input_url},
                         storage_options)
