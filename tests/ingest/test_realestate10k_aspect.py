"""RealEstate10K frames of another aspect ratio than the video their camera file describes (issue 10, point 4)."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dl3d.data import DataError
from dl3d.data.images import decode_image
from dl3d.ingest import IngestRealEstateConfig, ingest_realestate10k
from dl3d.ingest.realestate10k_cameras import center_crop_intrinsics, video_aspect

# A 16:9 video (say 64x36 pixels, focal 32 px, centred) whose frames were extracted at 48x32 (3:2),
# as the real 384x256 clips are; the camera file keeps intrinsics normalised by the 16:9 frame.
FX, FY, CX, CY = 32 / 64, 32 / 36, 0.5, 0.5
W, H = 48, 32


def _tree(tmp_path, frames=4):
    cams, imgs = tmp_path / "cams", tmp_path / "frames" / "seq"
    cams.mkdir()
    imgs.mkdir(parents=True)
    lines = ["https://www.youtube.com/watch?v=abc"]
    for i in range(frames):
        pose = np.eye(4)[:3].copy()
        pose[0, 3] = 0.3 * i  # the camera moves sideways: every pair is "hard"
        lines.append(" ".join([str(1000 * i)] + [f"{v:.9f}" for v in (FX, FY, CX, CY, 0, 0, *pose.reshape(-1))]))
        ramp = np.repeat(np.repeat(np.arange(W, dtype=np.uint8)[None, :, None] * 5, H, 0), 3, 2)  # column x: 5 x
        buf = io.BytesIO()
        Image.fromarray(ramp).save(buf, format="JPEG", quality=95)
        (imgs / f"{1000 * i}.jpg").write_bytes(buf.getvalue())
    (cams / "seq.txt").write_text("\n".join(lines) + "\n")
    return str(cams), str(tmp_path / "frames")


def _rows(url):
    return pq.read_table(f"{url}/part-00000.parquet").to_pylist()


def test_mismatch_is_refused_with_a_message_that_says_which_flag(tmp_path):
    cams, frames = _tree(tmp_path)
    assert video_aspect(np.array([FX, FY, CX, CY])) == pytest.approx(16 / 9)
    with pytest.raises(DataError, match=r"frames are 48x32 pixels \(aspect 1.500\) but the camera file's intrinsics "
                                        r"are normalised to a frame of aspect 1.778 \(fy/fx\): in pixels fx and fy "
                                        r"would differ by 19%.*--crop center if they are centre crops of the video.*"
                                        r"--crop stretch if they are the whole frame resized"):
        ingest_realestate10k(cams, frames, str(tmp_path / "out"))


def test_center_crop_gives_square_pixels_and_keeps_the_jpeg_bytes(tmp_path):
    cams, frames = _tree(tmp_path)
    report = ingest_realestate10k(cams, frames, str(tmp_path / "out"), IngestRealEstateConfig(crop="center"))
    rows = _rows(str(tmp_path / "out"))
    assert report.pairs == len(rows) > 0 and report.images_kept == report.images > 0
    # 64x36 video -> centre 54x36 (3:2) -> 48x32: focal 32 px * 32/36 on both axes, principal point centred.
    f = 32 * 32 / 36
    for r in rows:
        K = np.asarray(r["intrinsics"]).reshape(3, 3)
        np.testing.assert_allclose(K, [[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], rtol=1e-5)
        assert r["src_image"] == (tmp_path / "frames" / "seq" / f"{r['src_frame']}.jpg").read_bytes()
    np.testing.assert_allclose(center_crop_intrinsics(np.array([FX, FY, CX, CY]), 16 / 9, 1.5),
                               [FX * 16 / 9 / 1.5, FY, 0.5, 0.5])


def test_center_crop_to_another_output_size_crops_the_pixels(tmp_path):
    cams, frames = _tree(tmp_path)
    cfg = IngestRealEstateConfig(crop="center", image_width=16, image_height=16)
    ingest_realestate10k(cams, frames, str(tmp_path / "out"), cfg)
    r = _rows(str(tmp_path / "out"))[0]
    img = decode_image(r["src_image"], "src")
    assert img.shape == (16, 16, 3) and r["src_image"][:4] == b"\x89PNG"
    # the middle 32 of 48 columns (x = 8..39, values 40..195) resized to 16: left edge ~45, right ~190
    assert abs(int(img[8, 0, 0]) - 45) <= 8 and abs(int(img[8, -1, 0]) - 190) <= 8
    f = 32 * 32 / 36 * 16 / 32  # the 3:2 frame's focal, then the square crop resized by 1/2
    np.testing.assert_allclose(np.asarray(r["intrinsics"]).reshape(3, 3), [[f, 0, 8], [0, f, 8], [0, 0, 1]],
                               rtol=1e-5)


def test_stretch_keeps_the_normalised_intrinsics(tmp_path):
    cams, frames = _tree(tmp_path)
    ingest_realestate10k(cams, frames, str(tmp_path / "out"), IngestRealEstateConfig(crop="stretch"))
    K = np.asarray(_rows(str(tmp_path / "out"))[0]["intrinsics"]).reshape(3, 3)
    np.testing.assert_allclose(K, [[FX * W, 0, CX * W], [0, FY * H, CY * H], [0, 0, 1]], rtol=1e-6)
    assert K[1, 1] / K[0, 0] == pytest.approx(1.185, abs=1e-3)  # non-square pixels, as the user said
    with pytest.raises(ValueError, match="crop must be one of check, center, stretch; got 'left'"):
        IngestRealEstateConfig(crop="left")
