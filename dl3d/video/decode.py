"""Decode and encode videos with PyAV (its wheel ships FFmpeg), streaming through fsspec.

A video file is opened as an fsspec file object and handed to ``av.open``: FFmpeg reads it in
pieces (range requests on S3), so a worker never needs the whole file on disk, and frames come one
at a time, so a long video never has to fit in memory. A folder of numbered images decodes with
Pillow, one image at a time.

Frames are ``(H, W, 3)`` uint8 RGB arrays in the stored (unrotated) orientation; pixel (0, 0) is the
top-left corner, x right, y down.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any, Iterator

import numpy as np

from dl3d.data import fs as fsx

DEFAULT_IMAGE_FPS = 30.0
"""Frame rate given to a folder of numbered images when ingest is not told one."""


@dataclass(frozen=True)
class VideoRef:
    """Where one video's frames come from: a file URL, its bytes, or an ordered list of image URLs."""

    id: str
    url: str | None = None
    data: bytes | None = None
    frame_files: tuple[str, ...] | None = None

    def __post_init__(self):
        if self.url is None and self.data is None and not self.frame_files:
            raise ValueError(f"video {self.id!r}: expected a url, bytes or frame files, got none")


@dataclass(frozen=True)
class VideoInfo:
    """What decoding a video found (one row of the ``videos`` dataset, without id and location)."""

    status: str
    """'ok', or 'unreadable', 'no_video_stream', 'truncated', 'no_frames' (``VIDEO_STATUSES``)."""
    container: str | None = None
    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    num_frames: int = 0
    rotation: int = 0
    focal_length: float | None = None
    error: str | None = None


@contextlib.contextmanager
def open_binary(ref: VideoRef, storage_options: dict[str, Any] | None = None) -> Iterator[IO[bytes]]:
    """A readable, seekable binary file object of a video file (bytes in memory, else streamed)."""
    if ref.data is not None:
        yield io.BytesIO(ref.data)
        return
    fs, path = fsx.resolve(ref.url, storage_options)
    with fs.open(path, "rb") as f:
        yield f


def probe_video(ref: VideoRef, storage_options: dict[str, Any] | None = None) -> VideoInfo:
    """Open a video and demux its whole video stream (no decoding but the first frame) to count frames.

    Never raises for a bad video: the problem comes back as a non-ok ``status`` with FFmpeg's message.
    """
    if ref.frame_files:
        return _probe_images(ref, storage_options)
    import av

    try:
        with open_binary(ref, storage_options) as f, av.open(f, mode="r") as c:
            if not c.streams.video:
                return VideoInfo("no_video_stream", container=c.format.name, error="the container has no video stream")
            stream = c.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            declared = int(stream.frames or 0)
            info = dict(container=c.format.name, codec=stream.codec_context.name,
                        fps=float(rate) if rate else None)
            first = next(c.decode(stream), None)
            if first is None:
                return VideoInfo("no_frames", **info, error="no frame could be decoded")
            info.update(width=first.width, height=first.height, rotation=int(round(first.rotation or 0)) % 360)
            c.seek(0, stream=stream)
            count, error = 0, None
            try:
                for packet in c.demux(stream):
                    if packet.size:
                        count += 1
            except av.error.FFmpegError as exc:
                error = f"demuxing stopped after {count} frames: {exc}"
    except (av.error.FFmpegError, OSError) as exc:
        return VideoInfo("unreadable", error=f"{type(exc).__name__}: {exc}")
    if error is not None or (declared and count < declared):
        return VideoInfo("truncated", num_frames=count, **info,
                         error=error or f"the container declares {declared} frames, {count} are present")
    return VideoInfo("ok", num_frames=count, **info)


def _probe_images(ref: VideoRef, storage_options: dict[str, Any] | None) -> VideoInfo:
    try:
        first = _read_image(ref.frame_files[0], storage_options)
    except (OSError, ValueError) as exc:
        return VideoInfo("unreadable", container="images", error=f"{ref.frame_files[0]}: {exc}")
    return VideoInfo("ok", container="images", codec="image", width=first.shape[1], height=first.shape[0],
                     fps=DEFAULT_IMAGE_FPS, num_frames=len(ref.frame_files))


def _read_image(url: str, storage_options: dict[str, Any] | None) -> np.ndarray:
    from PIL import Image

    fs, path = fsx.resolve(url, storage_options)
    with Image.open(io.BytesIO(fs.cat_file(path))) as im:
        return np.asarray(im.convert("RGB"))


def iter_frames(ref: VideoRef, storage_options: dict[str, Any] | None = None) -> Iterator[np.ndarray]:
    """The video's frames in order, each ``(H, W, 3)`` uint8 RGB, decoded one at a time.

    Raises:
        av.error.FFmpegError / OSError: the file cannot be opened, or decoding fails part way
        (frames before the failure have been yielded). Images of a size other than the first's
        raise ValueError.
    """
    if ref.frame_files:
        size = None
        for url in ref.frame_files:
            img = _read_image(url, storage_options)
            if size is not None and img.shape != size:
                raise ValueError(f"{url}: image of shape {img.shape}, the video's first frame is {size}")
            size = img.shape
            yield img
        return
    import av

    with open_binary(ref, storage_options) as f, av.open(f, mode="r") as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in c.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """A stored ``(H, W, 3)`` frame turned the way a player shows it.

    ``rotation`` is the stream's display-matrix angle as FFmpeg's ``av_display_rotation_get`` gives it
    (PyAV's ``frame.rotation``, the ``videos`` dataset's ``rotation``): the degrees by which the frame
    is rotated counter-clockwise for display, a multiple of 90 (a phone held upright typically
    records 270, i.e. -90: turned 90 degrees clockwise). 90 and 270 swap width and height.
    """
    if int(rotation) % 90:
        raise ValueError(f"expected a rotation that is a multiple of 90 degrees, got {rotation}")
    k = (int(rotation) // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


def iter_frame_batches(ref: VideoRef, batch_size: int, storage_options: dict[str, Any] | None = None,
                       rotation: int = 0) -> Iterator[np.ndarray]:
    """:func:`iter_frames` in groups: ``(B, H, W, 3)`` uint8, B <= ``batch_size`` (the last may be shorter),
    each frame turned by ``rotation`` (:func:`upright`; 0 = as stored)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch: list[np.ndarray] = []
    for frame in iter_frames(ref, storage_options):
        batch.append(upright(frame, rotation))
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def encode_video(frames: Iterator[np.ndarray] | list[np.ndarray], fps: float, fmt: str = "mp4",
                 codec: str = "libx264", crf: int = 20) -> bytes:
    """Encode ``(H, W, 3)`` uint8 RGB frames into a video file in memory; returns its bytes.

    H and W are rounded down to even numbers for yuv420p (libx264, mpeg4). ``fps`` may be fractional
    (29.97 is stored as 30000/1001). Raises ValueError for no frames or frames of differing sizes.
    """
    import av

    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    buf = io.BytesIO()
    n = 0
    with av.open(buf, mode="w", format=fmt) as c:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"expected frames of shape (H, W, 3), got {frame.shape}")
            if stream is None:
                size = frame.shape
                stream = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = size[1] // 2 * 2, size[0] // 2 * 2
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    # note: libx264 output here is not bit-exact run to run (seen even single-threaded),
                    # so equal videos are compared by their decoded frames, not their bytes
                    stream.options = {"crf": str(crf)}
            elif frame.shape != size:
                raise ValueError(f"frame {n} has shape {frame.shape}, the first frame {size}")
            vf = av.VideoFrame.from_ndarray(frame[: stream.height, : stream.width], format="rgb24")
            for packet in stream.encode(vf):
                c.mux(packet)
            n += 1
        if stream is None:
            raise ValueError("expected at least one frame to encode, got none")
        for packet in stream.encode():
            c.mux(packet)
    return buf.getvalue()


def count_decoded_frames(ref: VideoRef, storage_options: dict[str, Any] | None = None) -> int:
    """Frames that actually decode (slower than :func:`probe_video`'s demux count; for tests and checks)."""
    return sum(1 for _ in iter_frames(ref, storage_options))
