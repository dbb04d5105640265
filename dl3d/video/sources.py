"""Find the videos under a local folder or any fsspec prefix.

A video is a file with a video extension (``VIDEO_EXTENSIONS``), or a folder of numbered images
(``IMAGE_EXTENSIONS``), whose frames are ordered by the last number in each file name
(``frame_9.png`` before ``frame_10.png``). Hidden and ``_``-prefixed paths are skipped.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from dl3d.data import fs as fsx

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_NUMBER = re.compile(r"(\d+)")


@dataclass(frozen=True)
class VideoSource:
    """One video found by :func:`list_video_sources`."""

    id: str
    """Path relative to the listed root, without extension ('clips/walk01'); a root that is itself a
    video file or image folder gets its own base name."""
    url: str
    """The file's URL, or the image folder's URL."""
    frame_files: tuple[str, ...] | None = None
    """For an image folder: the frames' URLs in frame order; None for a video file."""


def frame_number(name: str) -> int | None:
    """The last run of digits in a file name's stem (``img_0012.png`` -> 12), or None."""
    found = _NUMBER.findall(posixpath.splitext(posixpath.basename(name))[0])
    return int(found[-1]) if found else None


def list_video_sources(url: str, storage_options: dict[str, Any] | None = None) -> list[VideoSource]:
    """Every video file and numbered-image folder under ``url``, sorted by id.

    Raises:
        FileNotFoundError: nothing at ``url``.
        ValueError: ``url`` holds no video file and no numbered image.
    """
    fs, root = fsx.resolve(url, storage_options)
    fs.invalidate_cache(root)
    if not fs.exists(root):
        raise FileNotFoundError(f"no such file or folder: {url}")
    if fs.isfile(root):
        if not root.lower().endswith(VIDEO_EXTENSIONS):
            raise ValueError(f"{url}: expected a video file ({', '.join(VIDEO_EXTENSIONS)}) or a folder")
        return [VideoSource(posixpath.splitext(posixpath.basename(root))[0], fs.unstrip_protocol(root))]
    files = [p for p in fs.find(root)
             if not any(part.startswith((".", "_")) for part in p[len(root):].split("/") if part)]
    sources: list[VideoSource] = []
    image_dirs: dict[str, list[str]] = {}
    for path in files:
        rel = path[len(root):].lstrip("/")
        low = rel.lower()
        if low.endswith(VIDEO_EXTENSIONS):
            sources.append(VideoSource(posixpath.splitext(rel)[0], fs.unstrip_protocol(path)))
        elif low.endswith(IMAGE_EXTENSIONS) and frame_number(rel) is not None:
            image_dirs.setdefault(posixpath.dirname(rel), []).append(path)
    for rel_dir, paths in image_dirs.items():
        paths.sort(key=lambda p: (frame_number(p), p))
        vid = rel_dir or posixpath.basename(root)
        sources.append(VideoSource(vid, fs.unstrip_protocol(fsx.join(root, rel_dir) if rel_dir else root),
                                   tuple(fs.unstrip_protocol(p) for p in paths)))
    if not sources:
        raise ValueError(f"{url}: found no video file ({', '.join(VIDEO_EXTENSIONS)}) and no folder of numbered "
                         f"images ({', '.join(IMAGE_EXTENSIONS)})")
    ids = [s.id for s in sources]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{url}: two videos would get the same id {dup[0]!r} (e.g. walk.mp4 and walk.avi, or a "
                         "video file beside a folder of images of the same name); rename one")
    return sorted(sources, key=lambda s: s.id)
