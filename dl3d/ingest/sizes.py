"""Per-video image sizes (and focal lengths) a user gives in a small CSV or JSON file (``--sizes``).

CSV: a header naming the columns ``video``, ``width``, ``height`` and optionally ``focal`` (or
``focal_length``), then one row per video::

    video,width,height,focal
    clipA,1920,1080,1500
    clipB,640,480,

JSON: ``{"clipA": {"width": 1920, "height": 1080, "focal": 1500}, ...}`` or a list of objects with a
``video`` key. Widths and heights are pixels, focal lengths pixels (empty or absent: unknown).
A video is looked up by its id, then by the last part of its id (``sub/clipA`` -> ``clipA``).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from dl3d.data import fs as fsx

__all__ = ["VideoSize", "lookup_size", "read_sizes"]


@dataclass(frozen=True)
class VideoSize:
    """One video's image size in pixels and focal length in pixels (None = unknown)."""

    width: int
    height: int
    focal: float | None = None


def _entry(video: str, rec: dict, source: str) -> VideoSize:
    def number(key: str, kind: type) -> Any:
        value = rec.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            out = kind(float(value)) if kind is int else kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{source}: video {video!r}: {key} is not a number: {value!r}") from None
        if not out > 0:
            raise ValueError(f"{source}: video {video!r}: {key} must be > 0, got {value!r}")
        return out

    w, h = number("width", int), number("height", int)
    if w is None or h is None:
        raise ValueError(f"{source}: video {video!r}: expected a width and a height in pixels, got {rec}")
    focal = number("focal", float)
    if focal is None:
        focal = number("focal_length", float)
    return VideoSize(w, h, focal)


def parse_sizes(text: str, source: str) -> dict[str, VideoSize]:
    """``{video: VideoSize}`` from the text of a sizes file (JSON when it starts with ``{`` or ``[``, else CSV)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{source}: not valid JSON ({exc})") from None
        records = ([{"video": k, **(v if isinstance(v, dict) else {"width": None})} for k, v in obj.items()]
                   if isinstance(obj, dict) else obj)
        if not isinstance(records, list) or not all(isinstance(r, dict) and "video" in r for r in records):
            raise ValueError(f"{source}: expected {{video: {{width, height, focal}}}} or a list of objects with "
                             f"'video', 'width', 'height'")
    else:
        reader = csv.DictReader(io.StringIO(text))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        if not {"video", "width", "height"} <= set(header):
            raise ValueError(f"{source}: expected a CSV header with video,width,height[,focal], got {header}")
        records = [{k.strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
                   for row in reader]
    out: dict[str, VideoSize] = {}
    for rec in records:
        video = str(rec["video"]).strip()
        if video in out:
            raise ValueError(f"{source}: video {video!r} is listed twice")
        out[video] = _entry(video, rec, source)
    return out


def read_sizes(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, VideoSize]:
    """Read a sizes file (local path or any fsspec URL); ValueError naming the file and the problem."""
    fs, path = fsx.resolve(url, storage_options)
    try:
        text = fsx.get_bytes(fs, path).decode("utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{url}: sizes file not found") from None
    return parse_sizes(text, url)


def lookup_size(sizes: dict[str, VideoSize], video: str) -> VideoSize | None:
    """The entry for ``video`` (by id, then by the id's last part), or None."""
    return sizes.get(video) or sizes.get(posixpath.basename(video.rstrip("/")))
