"""Which files of a folder are OpenPose-style keypoint JSON, their frame order, and the images beside them.

The naming rule (the README repeats it):

- Every ``*.json`` file below the input root is a keypoint file, except hidden or ``_``-prefixed
  files and folders. Its *stem* is the name without ``.json`` and without a trailing ``_keypoints``
  (OpenPose ``--write_json``) or ``_openpose`` (SPIN): ``clip_000000000012_keypoints.json``,
  ``walk.0012.json`` (Pose2Sim) and ``im0001_openpose.json`` have stems ``clip_000000000012``,
  ``walk.0012`` and ``im0001``. Files not named ``*_keypoints.json`` must hold a ``people`` list.
- The image of a frame, when there is one, sits in the same folder as ``{stem}.png|jpg|jpeg`` (or
  OpenPose's ``{stem}_rendered.png``); its header gives that frame's width and height.
- Frame numbers: the digit groups of the stems of one folder are compared position by position;
  when every stem has the same number of groups, the last position whose numbers differ between
  all files is the frame number (``cam2_000000000012`` -> 12, not 2). Otherwise the frames are
  numbered 0, 1, ... in name order (numbers inside names compared as numbers).
- Videos: with ``--video-key folder`` a folder is one video (its path below the root; files directly
  in the root form a video named after the root); with ``image`` every file is a photo, a one-frame
  video ``{folder}/{stem}``; with ``auto`` a folder is a video when its frame numbers are dense (at
  least half of the numbers between the first and the last are present) and its images, where
  there are any, all have one size; else its files are photos (photo ids such as COCO's
  ``000000000785`` are not consecutive frames: the temporal term must not link them).
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Sequence

import numpy as np

SUFFIXES = ("_keypoints.json", "_openpose.json")
"""Name endings that mark a keypoint file on their own (other ``.json`` files must hold ``people``)."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

__all__ = ["SUFFIXES", "find_openpose_files", "frame_numbers", "frame_stem", "header_sizes", "image_sizes", "is_dense",
           "natural_key"]


def frame_stem(json_name: str) -> str:
    """``clip_000000000012`` for ``.../clip_000000000012_keypoints.json`` (see the module doc)."""
    name = posixpath.basename(json_name)
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name[: -len(".json")] if name.lower().endswith(".json") else posixpath.splitext(name)[0]


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers: ``a2`` < ``a10``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


def frame_numbers(stems: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """The frame order of one folder's stems and their frame numbers (see the module doc).

    Returns the indices of ``stems`` in time order and (F,) int64 frame numbers.
    """
    groups = [[int(g) for g in re.findall(r"\d+", s)] for s in stems]
    if stems and len({len(g) for g in groups}) == 1 and groups[0]:
        for pos in reversed(range(len(groups[0]))):
            nums = [g[pos] for g in groups]
            if len(set(nums)) == len(nums):
                order = sorted(range(len(stems)), key=lambda i: nums[i])
                return order, np.asarray([nums[i] for i in order], dtype=np.int64)
    order = sorted(range(len(stems)), key=lambda i: natural_key(stems[i]))
    return order, np.arange(len(stems), dtype=np.int64)


def is_dense(numbers: np.ndarray) -> bool:
    """Whether frame numbers look like a video's: at least half of first..last present."""
    if len(numbers) <= 1:
        return True
    return len(numbers) >= 0.5 * (int(numbers.max()) - int(numbers.min()) + 1)


def find_openpose_files(fs, root: str) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """The JSON files under ``root`` grouped by folder (relative to ``root``; ``""`` for the root
    itself), and ``{folder path: {image stem: image path}}`` of the images beside them."""
    fs.invalidate_cache(root)
    if not fs.exists(root):
        raise ValueError(f"{root}: input not found (no such folder or prefix)")
    if fs.isfile(root):
        raise ValueError(f"{root}: expected a folder of OpenPose *_keypoints.json (or *.json) files, got a file")
    folders: dict[str, list[str]] = {}
    images: dict[str, dict[str, str]] = {}
    for path in sorted(fs.find(root)):
        rel = path[len(root):].lstrip("/")
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue
        folder, name = posixpath.split(rel)
        if name.lower().endswith(".json"):
            folders.setdefault(folder, []).append(path)
        elif name.lower().endswith(IMAGE_SUFFIXES):
            images.setdefault(posixpath.dirname(path), {})[posixpath.splitext(name)[0]] = path
    return folders, images


def _header_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.size[0]), int(im.size[1])
    except (OSError, ValueError, SyntaxError, EOFError):
        return None


def image_sizes(fs, paths: Sequence[str], images: dict[str, dict[str, str]]) -> np.ndarray:
    """(F, 2) int64 width, height of the image beside each keypoint file, 0 where there is none."""
    out = np.zeros((len(paths), 2), dtype=np.int64)
    found: list[tuple[int, str]] = []
    for i, path in enumerate(paths):
        beside = images.get(posixpath.dirname(path), {})
        stem = frame_stem(path)
        for candidate in (stem, stem + "_rendered"):
            if candidate in beside:
                found.append((i, beside[candidate]))
                break
    if found:
        out[[i for i, _ in found]] = header_sizes(fs, [p for _, p in found])
    return out


def header_sizes(fs, paths: Sequence[str]) -> np.ndarray:
    """(N, 2) int64 width, height of image files from their headers, 0 for a missing or unreadable one.

    Reads the first 64 KiB of each (one batched request), the whole file only when its header lies
    further in (a large EXIF block).
    """
    out = np.zeros((len(paths), 2), dtype=np.int64)
    if not paths:
        return out
    heads = fs.cat_ranges(list(paths), [0] * len(paths), [1 << 16] * len(paths), on_error="return")
    for i, (path, head) in enumerate(zip(paths, heads)):
        size = _header_size(head) if isinstance(head, bytes) else None
        if size is None and isinstance(head, bytes):
            try:
                size = _header_size(fs.cat_file(path))
            except OSError:
                size = None
        if size is not None:
            out[i] = size
    return out
