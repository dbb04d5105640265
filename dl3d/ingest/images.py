"""``dl3d ingest images``: a folder (or bucket prefix) of JPEG/PNG files -> an ``images`` dataset.

The layout CelebA, CompCars or LSUN exports use: image files anywhere under the input, found
recursively, in sorted path order. A row's ``id`` is the file's path relative to the input, without its
extension. Without ``size`` and ``crop`` the file's bytes are kept as they are (JPEG stays JPEG); with
``crop center`` the centred square is cut out, with ``size`` the image is resized (the square to
``size`` x ``size``; without a crop, the shorter side to ``size``, keeping the aspect ratio), and the
result is stored as PNG. Files that are not readable images are skipped and listed in the report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dl3d.config import opt
from dl3d.data import DataError, DatasetWriter, to_table
from dl3d.data import fs as fsx
from dl3d.data.images import decode_image, encode_png, image_size, resize_image
from dl3d.data.dataset import write_json
from dl3d.data.view_tables import IMAGES
from dl3d.ingest.report import INGEST_ERRORS, BaseIngestReport, SkippedInput

EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass
class IngestImagesConfig:
    """Options of ``dl3d ingest images``."""

    size: int | None = opt(None, "resize: the square crop to SIZE x SIZE, else the shorter side to SIZE (none = keep)")
    crop: Literal["none", "center"] = opt("none", "center: cut the centred square out of each image")
    images_per_shard: int = opt(1000, "rows per Parquet shard")

    def __post_init__(self):
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be >= 1 pixel, got {self.size}")
        if self.images_per_shard < 1:
            raise ValueError(f"images_per_shard must be >= 1, got {self.images_per_shard}")


@dataclass
class ImagesReport(BaseIngestReport):
    """What an images ingest wrote and skipped."""

    rows: int = 0
    kept_original: int = 0
    """Rows whose bytes are the input file's, unchanged."""

    def _counts(self) -> list[str]:
        return [f"{self.rows + len(self.skipped)} image files"]

    def _written(self) -> str:
        return f"{self.rows} images ({self.kept_original} with their original bytes)"


def list_image_files(url: str) -> list[str]:
    """Paths (scheme-less, as the filesystem sees them) of the image files under ``url``, sorted."""
    fs, root = fsx.resolve(url)
    if not fsx.exists(fs, root):
        raise FileNotFoundError(f"image folder not found: {url}")
    if not fs.isdir(root):
        return [root] if root.lower().endswith(EXTENSIONS) else []
    return sorted(p for p in fs.find(root) if p.lower().endswith(EXTENSIONS))


def transform_image(data: bytes, cfg: IngestImagesConfig, source: str) -> tuple[bytes, int, int, bool]:
    """(bytes, width, height, original?) of one input file under ``cfg``; DataError for an unreadable file."""
    if cfg.size is None and cfg.crop == "none":
        w, h = image_size(data, source)
        decode_image(data, source)  # the pixels must decode too, not only the header
        return data, w, h, True
    img = decode_image(data, source)
    h, w = img.shape[:2]
    if cfg.crop == "center":
        m = min(h, w)
        y0, x0 = (h - m) // 2, (w - m) // 2
        img = img[y0:y0 + m, x0:x0 + m]
        h = w = m
    if cfg.size is not None:
        scale = cfg.size / min(h, w)
        size = (cfg.size, cfg.size) if h == w else (max(1, round(w * scale)), max(1, round(h * scale)))
        img = resize_image(img, size)
    return encode_png(np.ascontiguousarray(img)), img.shape[1], img.shape[0], False


def ingest_images(input_url: str, output_url: str, cfg: IngestImagesConfig) -> ImagesReport:
    """Write every readable image under ``input_url`` into an ``images`` dataset at ``output_url``.

    Raises:
        FileNotFoundError: the input does not exist.
        ValueError: no image file under the input.
    """
    fs, root = fsx.resolve(input_url)
    paths = list_image_files(input_url)
    if not paths:
        raise ValueError(f"no {'/'.join(EXTENSIONS)} files under {input_url}")
    writer = DatasetWriter(output_url, IMAGES, produced_by={"ingest": "images", "input": input_url,
                                                            "config": dataclasses.asdict(cfg)})
    report = ImagesReport(output_url)
    cols: dict[str, list] = {"id": [], "image": [], "width": [], "height": []}
    base = root.rstrip("/") + "/" if fs.isdir(root) else ""

    def flush():
        if cols["id"]:
            writer.write_shard(report.shards, to_table(IMAGES, cols))
            report.shards += 1
            for v in cols.values():
                v.clear()

    for path in paths:
        rel = path[len(base):] if base and path.startswith(base) else path.rsplit("/", 1)[-1]
        try:
            data, w, h, original = transform_image(fsx.get_bytes(fs, path), cfg, path)
        except DataError as exc:
            report.skipped.append(SkippedInput(rel, str(exc)))
            continue
        cols["id"].append(rel.rsplit(".", 1)[0])
        cols["image"].append(data)
        cols["width"].append(w)
        cols["height"].append(h)
        report.rows += 1
        report.kept_original += original
        if len(cols["id"]) == cfg.images_per_shard:
            flush()
    flush()
    if report.rows == 0:
        raise ValueError(f"none of the {len(paths)} image files under {input_url} could be read: "
                         f"{report.skipped[0].reason}")
    if report.skipped:
        write_json(writer.fs, fsx.join(writer.root, INGEST_ERRORS), [dataclasses.asdict(x) for x in report.skipped])
    writer.close(num_images=report.rows)
    return report
