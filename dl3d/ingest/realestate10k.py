"""RealEstate10K camera files and extracted frames into a ``view_pairs`` dataset.

RealEstate10K (Zhou et al., SIGGRAPH 2018; google.github.io/realestate10k) ships one text file per
clip, ``{sequence}.txt``: the first line is the YouTube URL, and each following line is one frame::

    timestamp fx fy cx cy k1 k2 p00 p01 p02 p03 p10 p11 p12 p13 p20 p21 p22 p23

``timestamp`` is an integer in microseconds from the start of the video; ``fx, fy, cx, cy`` are the
intrinsics NORMALISED by the image size (fx, cx by the width, fy, cy by the height); ``k1 k2`` are
radial distortion (0 throughout the released data, and ignored here); the last 12 numbers are the
3x4 world-to-camera matrix ``[R | t]`` in row-major order, OpenCV axes (x right, y down, z forward),
translation in the arbitrary scale of the SLAM reconstruction. SynSin's copies of these files
(``frames/train/{sequence}.txt``) lack the URL line; both are accepted.

Frames are extracted by the user (the videos are on YouTube) as ``{frames_url}/{sequence}/{timestamp}.png``
(SynSin's layout, ``frames_url = .../frames/train``) or ``.jpg``: any file in the sequence's folder whose
name is the timestamp as an integer (leading zeros allowed) with one of ``cfg.image_extensions``.

Intrinsics in pixels are ``fx * W, fy * H, cx * W, cy * H`` for the stored image of W x H pixels, so
they follow a resize (pixel (y, x) covers [x, x + 1) x [y, y + 1), as in ``dl3d.synsin``). Pairs are
sampled as SynSin's ``RealEstate10K`` loader does: a source frame at random, then a target within
``max_gap`` frames (lines of the camera file) of it, preferring pairs whose viewing direction turned at
least ``hard_angle_deg`` or whose camera centre moved at least ``hard_translation``; pairs are distinct.
Frame images are read only for the frames the sampled pairs use. A sequence never straddles two shards.
A frame stored at its own size keeps its original JPEG or PNG bytes; a resized or cropped one is
stored as PNG.

Aspect ratio: the normalised intrinsics describe the video's frame (16:9 for the released clips,
``fy / fx`` with square pixels). Frames of another aspect ratio (a 384x256 extraction) are refused
unless ``cfg.crop`` says how they were made: ``center`` (centre crops of the video, the layout
SynSin's data assumes: the intrinsics are cropped alike, ``center_crop_intrinsics``) or ``stretch``
(the whole frame resized: non-square pixels, normalised intrinsics unchanged).

Malformed camera lines, missing or unreadable images and sequences without a usable pair are skipped
and listed, by name, in the report and in ``_ingest_errors.json`` beside the shards.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dl3d.config import opt
from dl3d.data import DataError, DatasetWriter, to_table
from dl3d.data import fs as fsx
from dl3d.data.dataset import write_json
from dl3d.data.images import decode_image, encode_png, resize_image
from dl3d.data.view_tables import VIEW_PAIRS
from dl3d.ingest.realestate10k_cameras import (CameraFrame, center_crop_intrinsics, intrinsics_matrix,
                                               parse_camera_file, video_aspect)
from dl3d.ingest.report import INGEST_ERRORS, BaseIngestReport, SkippedInput

__all__ = [
    "CameraFrame", "IngestRealEstateConfig", "RealEstateIngestReport", "ingest_realestate10k", "intrinsics_matrix",
    "parse_camera_file", "sample_pairs",
]

NOT_CAMERA_FILES = ("video_loc.txt",)
"""Text files in a camera folder that are not camera files (SynSin's list of sequences)."""


@dataclass
class IngestRealEstateConfig:
    """How RealEstate10K camera files and frames become a ``view_pairs`` dataset."""

    pairs_per_sequence: int = opt(10, "view pairs sampled per sequence (fewer when it has fewer distinct pairs)")
    max_gap: int = opt(40, "largest distance in frames (camera-file lines) from source to target "
                           "(SynSin samples within +-40)")
    prefer_motion: bool = opt(True, "as SynSin: choose among the targets that turned >= hard_angle_deg or moved "
                                    ">= hard_translation when the source has any")
    hard_angle_deg: float = opt(5.0, "viewing-direction change that makes a target 'hard', degrees (SynSin: 5)")
    hard_translation: float = opt(0.15, "camera-centre move that makes a target 'hard', in the sequence's units "
                                        "(SynSin: 0.15)")
    image_width: int | None = opt(None, "resize every frame to this width, pixels (with image_height); "
                                        "None keeps the frames' size")
    image_height: int | None = opt(None, "resize every frame to this height, pixels (with image_width)")
    sequences_per_shard: int = opt(16, "whole sequences per Parquet shard (a sequence never straddles two shards)")
    image_extensions: str = opt("png,jpg,jpeg", "file extensions of the frame images, comma separated")
    seed: int = opt(0, "random seed of the pair sampling (each sequence draws from (seed, sequence id))")
    crop: Literal["check", "center", "stretch"] = opt(
        "check", "frames whose aspect ratio differs from the video's (fy/fx of the camera file): check = refuse "
                 "them with a message; center = they are centre crops of the video (the intrinsics are cropped "
                 "alike, and a resize to another aspect centre-crops the pixels); stretch = they are the whole "
                 "frame resized (non-square pixels; the normalised intrinsics hold as they are)")

    def __post_init__(self):
        for name in ("pairs_per_sequence", "max_gap", "sequences_per_shard"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not self.hard_angle_deg >= 0 or not self.hard_translation >= 0:
            raise ValueError(f"hard_angle_deg and hard_translation must be >= 0, "
                             f"got {self.hard_angle_deg} and {self.hard_translation}")
        if (self.image_width is None) != (self.image_height is None):
            raise ValueError(f"give both image_width and image_height or neither, "
                             f"got {self.image_width} and {self.image_height}")
        if self.image_width is not None and (self.image_width < 1 or self.image_height < 1):
            raise ValueError(f"image size must be positive, got {self.image_width}x{self.image_height}")
        if self.crop not in ("check", "center", "stretch"):
            raise ValueError(f"crop must be one of check, center, stretch; got {self.crop!r}")
        if not self.extensions:
            raise ValueError(f"image_extensions must name at least one extension, got {self.image_extensions!r}")

    @property
    def extensions(self) -> tuple[str, ...]:
        """Lower-case extensions without dots, e.g. ``('png', 'jpg', 'jpeg')``."""
        return tuple(e.strip().lower().lstrip(".") for e in self.image_extensions.split(",") if e.strip())

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) in pixels, or None."""
        return None if self.image_width is None else (self.image_width, self.image_height)


ASPECT_TOLERANCE = 0.02
"""Relative aspect-ratio difference above which frames do not match their camera file."""


@dataclass
class RealEstateIngestReport(BaseIngestReport):
    """What :func:`ingest_realestate10k` read and wrote."""

    sequences: int = 0
    """Sequences with at least one pair written."""
    frames: int = 0
    """Camera lines parsed (over all camera files)."""
    images: int = 0
    """Frame images decoded."""
    images_kept: int = 0
    """Frame images stored with their original bytes (JPEG/PNG, no resize or crop needed)."""
    pairs: int = 0
    """Rows written."""

    def _counts(self) -> list[str]:
        return [f"{self.sequences} sequences", f"{self.frames} camera frames", f"{self.images} images "
                f"({self.images_kept} kept as they were)"]

    def _written(self) -> str:
        return f"{self.pairs} pairs"


def sample_pairs(frames: list[CameraFrame], cfg: IngestRealEstateConfig, rng: np.random.Generator
                 ) -> list[tuple[int, int]]:
    """Up to ``cfg.pairs_per_sequence`` distinct (source, target) positions in ``frames``.

    A target must be another frame within ``cfg.max_gap`` frame numbers (``CameraFrame.index``) of the
    source with the same normalised intrinsics (to 1e-6, as one pair shares one K). Each draw takes a
    source uniformly among the frames that still have an unused target, then one of those targets
    uniformly. With ``cfg.prefer_motion`` (SynSin's preference for hard pairs) draws are made among the
    "hard" pairs (optical axis turned >= ``hard_angle_deg`` or camera centre moved
    >= ``hard_translation``) until none is left, then among the rest. Returned sorted by (source, target).
    """
    n = len(frames)
    if n < 2:
        return []
    idx = np.array([f.index for f in frames])
    intr = np.array([f.intrinsics for f in frames])
    poses = np.array([f.pose for f in frames])
    free = (np.abs(idx[:, None] - idx[None]) <= cfg.max_gap) & ~np.eye(n, dtype=bool)
    free &= np.abs(intr[:, None] - intr[None]).max(-1) <= 1e-6
    axes = poses[:, 2, :3]  # optical axes in world coordinates (third rows of R)
    centres = -np.einsum("nji,nj->ni", poses[:, :3, :3], poses[:, :3, 3])
    angle = np.degrees(np.arccos(np.clip(axes @ axes.T, -1.0, 1.0)))
    moved = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    hard = (angle >= cfg.hard_angle_deg) | (moved >= cfg.hard_translation)
    chosen: list[tuple[int, int]] = []
    while len(chosen) < cfg.pairs_per_sequence:
        pool = free & hard if cfg.prefer_motion and (free & hard).any() else free
        sources = np.flatnonzero(pool.any(axis=1))
        if not len(sources):
            break
        s = int(sources[rng.integers(len(sources))])
        targets = np.flatnonzero(pool[s])
        t = int(targets[rng.integers(len(targets))])
        free[s, t] = False
        chosen.append((s, t))
    return sorted(chosen)


def _list_camera_files(fs, root: str) -> list[str]:
    if fs.isfile(root):
        return [root]
    names = [p for p in fs.ls(root, detail=False) if p.endswith(".txt")]
    return sorted(p for p in names if not posixpath.basename(p).startswith((".", "_"))
                  and posixpath.basename(p) not in NOT_CAMERA_FILES)


def _frame_images(fs, folder: str, extensions: tuple[str, ...]) -> dict[int, str] | None:
    """timestamp -> image path in ``folder`` (first extension in ``extensions`` order wins); None if no folder."""
    try:
        paths = fs.ls(folder, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    found: dict[int, tuple[int, str]] = {}
    for p in paths:
        stem, _, ext = posixpath.basename(p.rstrip("/")).rpartition(".")
        ext = ext.lower()
        if stem.isdigit() and ext in extensions:
            rank = extensions.index(ext)
            if int(stem) not in found or rank < found[int(stem)][0]:
                found[int(stem)] = (rank, p)
    return {ts: p for ts, (_, p) in found.items()}


def _sequence_rows(seq: str, frames: list[CameraFrame], fs, folder: str, folder_url: str,
                   cfg: IngestRealEstateConfig, report: RealEstateIngestReport) -> dict[str, list] | None:
    """Sample, load and encode the pairs of one sequence; None when it has no usable pair.

    folder: the sequence's image folder as a path of ``fs``; folder_url: the same as the user wrote it
    (for names in the report).
    """
    images = _frame_images(fs, folder, cfg.extensions)
    if images is None:
        report.skipped.append(SkippedInput(seq, f"no frame folder {folder_url}"))
        return None
    usable = []
    for f in frames:
        if f.timestamp in images:
            usable.append(f)
        else:
            report.skipped.append(SkippedInput(
                f"{folder_url}/{f.timestamp}.{cfg.extensions[0]}",
                f"frame image not found (tried extensions {', '.join(cfg.extensions)})"))
    decoded: dict[int, bytes] = {}
    size, disk_size = cfg.image_size, None
    while True:  # resample without the frames whose image turns out unusable
        pairs = sample_pairs(usable, cfg, np.random.default_rng([cfg.seed, *seq.encode()]))
        needed = sorted({usable[i].timestamp for p in pairs for i in p} - set(decoded))
        if not needed:
            break
        paths = [images[ts] for ts in needed]
        blobs = fs.cat(paths, on_error="return") if len(paths) > 1 else {paths[0]: _cat(fs, paths[0])}
        bad: set[int] = set()
        for ts, path in zip(needed, paths):
            name = f"{folder_url}/{posixpath.basename(path)}"
            try:
                data = blobs.get(path)
                if not isinstance(data, bytes):
                    raise DataError(name, f"cannot read the file ({data!r})")
                img = decode_image(data, name)
            except DataError as exc:
                report.skipped.append(SkippedInput(name, exc.problem))
                bad.add(ts)
                continue
            disk = (img.shape[1], img.shape[0])
            if disk_size is None:
                disk_size, size = disk, size or disk
                _check_aspect(folder_url, usable[0].intrinsics, disk, size, cfg.crop)
            elif disk != disk_size and cfg.image_size is None:
                report.skipped.append(SkippedInput(name, f"image is {disk[0]}x{disk[1]} pixels, "
                                                         f"other frames of the sequence are {size[0]}x{size[1]}"))
                bad.add(ts)
                continue
            if disk == tuple(size) and (data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff"):
                decoded[ts] = data  # no resize, no crop: the original JPEG/PNG bytes
                report.images_kept += 1
            else:
                decoded[ts] = encode_png(_fit_image(img, size, cfg.crop))
            report.images += 1
        usable = [f for f in usable if f.timestamp not in bad]
    if not pairs:
        report.skipped.append(SkippedInput(seq, f"no usable pair: {len(usable)} frames with images, none within "
                                                f"{cfg.max_gap} frames of another with the same intrinsics"))
        return None
    w, h = size
    rows: dict[str, list] = {c.name: [] for c in VIEW_PAIRS.columns}
    for s, t in pairs:
        src, tgt = usable[s], usable[t]
        rows["id"].append(f"{seq}/{src.timestamp}-{tgt.timestamp}")
        rows["scene"].append(seq)
        rows["src_frame"].append(src.timestamp)
        rows["tgt_frame"].append(tgt.timestamp)
        rows["src_image"].append(decoded[src.timestamp])
        rows["tgt_image"].append(decoded[tgt.timestamp])
        rows["width"].append(w)
        rows["height"].append(h)
        normalised = _stored_intrinsics(src.intrinsics, disk_size, size, cfg.crop)
        rows["intrinsics"].append(intrinsics_matrix(normalised, w, h))
        rows["src_pose"].append(src.pose)
        rows["tgt_pose"].append(tgt.pose)
    return rows


def _differs(a: float, b: float) -> float:
    """Relative difference of two aspect ratios (>= 0), e.g. 0.185 for 16:9 against 3:2."""
    return max(a / b, b / a) - 1.0


def _check_aspect(folder_url: str, normalised: np.ndarray, disk: tuple[int, int], size: tuple[int, int],
                  crop: str) -> None:
    """``crop="check"``: DataError when the frames' (or the requested size's) aspect ratio is not the video's."""
    if crop != "check":
        return
    video, frame, out = video_aspect(normalised), disk[0] / disk[1], size[0] / size[1]
    if _differs(frame, video) > ASPECT_TOLERANCE:
        raise DataError(folder_url, (
            f"frames are {disk[0]}x{disk[1]} pixels (aspect {frame:.3f}) but the camera file's intrinsics are "
            f"normalised to a frame of aspect {video:.3f} (fy/fx): in pixels fx and fy would differ by "
            f"{100 * _differs(frame, video):.0f}%. Say how the frames were made: --crop center if they are centre "
            f"crops of the video (the intrinsics are cropped alike; SynSin's layout), --crop stretch if they are "
            f"the whole frame resized (non-square pixels)"))
    if _differs(out, frame) > ASPECT_TOLERANCE:
        raise DataError(folder_url, (
            f"--image-width/--image-height {size[0]}x{size[1]} (aspect {out:.3f}) change the frames' aspect "
            f"({disk[0]}x{disk[1]}, {frame:.3f}): pass --crop center to centre-crop them first, or --crop stretch "
            f"to stretch them (non-square pixels)"))


def _stored_intrinsics(normalised: np.ndarray, disk: tuple[int, int], size: tuple[int, int], crop: str) -> np.ndarray:
    """Normalised intrinsics of the stored image: the camera file's, centre-cropped with ``crop="center"``
    from the video's aspect to the frames', then to the stored size's."""
    if crop != "center":
        return normalised
    video, frame, out = video_aspect(normalised), disk[0] / disk[1], size[0] / size[1]
    return center_crop_intrinsics(center_crop_intrinsics(normalised, video, frame), frame, out)


def _fit_image(img: np.ndarray, size: tuple[int, int], crop: str) -> np.ndarray:
    """``img`` (H, W, 3) uint8 at ``size`` (width, height): centre-cropped to its aspect first with
    ``crop="center"``, else resized as it is."""
    h, w = img.shape[:2]
    target = size[0] / size[1]
    if crop == "center" and _differs(w / h, target) > 1e-6:
        if w / h > target:
            keep = int(round(h * target))
            x0 = (w - keep) // 2
            img = img[:, x0:x0 + keep]
        else:
            keep = int(round(w / target))
            y0 = (h - keep) // 2
            img = img[y0:y0 + keep]
    return resize_image(img, size)


def _cat(fs, path: str) -> bytes | BaseException:
    try:
        return fsx.get_bytes(fs, path)
    except (OSError, ValueError) as exc:
        return exc


def ingest_realestate10k(
    cameras_url: str,
    frames_url: str,
    output_url: str,
    cfg: IngestRealEstateConfig | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
) -> RealEstateIngestReport:
    """Read RealEstate10K camera files and extracted frames into a ``view_pairs`` dataset.

    cameras_url: a folder (or bucket prefix) of ``{sequence}.txt`` camera files, or one such file.
    frames_url: the folder holding ``{sequence}/{timestamp}.{png|jpg}`` frame images.
    output_url: where the dataset goes; an earlier dataset there is replaced (its ``_dataset.json``
    is removed first, its extra shards after). ``storage_options`` apply to all three URLs.

    Sequences are processed one at a time in sorted order and written in groups of
    ``cfg.sequences_per_shard`` sequences that yielded pairs. Returns the report; raises DataError
    when no camera file is found or no pair at all could be made (``_ingest_errors.json`` then says why).
    """
    cfg = cfg or IngestRealEstateConfig()
    cam_fs, cam_root = fsx.resolve(cameras_url, storage_options)
    img_fs, img_root = fsx.resolve(frames_url, storage_options)
    cam_fs.invalidate_cache(cam_root)
    if not cam_fs.exists(cam_root):
        raise DataError(cameras_url, "camera folder not found")
    files = _list_camera_files(cam_fs, cam_root)
    if not files:
        raise DataError(cameras_url, "no RealEstate10K camera files (*.txt) found")
    report = RealEstateIngestReport(output_url=output_url)
    writer = DatasetWriter(output_url, VIEW_PAIRS, storage_options=storage_options, produced_by={
        "ingest": "realestate10k", "cameras": cameras_url, "frames": frames_url, "config": dataclasses.asdict(cfg)})
    pending: list[dict[str, list]] = []

    def flush():
        merged = {k: [v for rows in pending for v in rows[k]] for k in pending[0]}
        writer.write_shard(report.shards, to_table(VIEW_PAIRS, merged))
        report.shards += 1
        pending.clear()

    for path in files:
        name = cameras_url if path == cam_root else f"{cameras_url.rstrip('/')}/{posixpath.basename(path)}"
        seq = posixpath.basename(path)[: -len(".txt")]
        try:
            text = fsx.get_bytes(cam_fs, path).decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            report.skipped.append(SkippedInput(name, f"unreadable camera file ({type(exc).__name__}: {exc})"))
            continue
        _, frames, bad_lines = parse_camera_file(text, name)
        report.skipped.extend(bad_lines)
        report.frames += len(frames)
        rows = _sequence_rows(seq, frames, img_fs, fsx.join(img_root, seq), f"{frames_url.rstrip('/')}/{seq}", cfg,
                              report)
        if rows is None:
            continue
        pending.append(rows)
        report.sequences += 1
        report.pairs += len(rows["id"])
        if len(pending) == cfg.sequences_per_shard:
            flush()
    if pending:
        flush()
    write_json(writer.fs, fsx.join(writer.root, INGEST_ERRORS), [dataclasses.asdict(s) for s in report.skipped])
    if not report.pairs:
        raise DataError(cameras_url, f"no view pair could be made from {len(files)} camera files "
                                     f"({len(report.skipped)} inputs skipped, see {output_url}/{INGEST_ERRORS})")
    writer.produced_by["skipped_inputs"] = len(report.skipped)
    writer.close(num_sequences=report.sequences)
    return report
