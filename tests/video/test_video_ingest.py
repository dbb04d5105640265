"""``dl3d ingest videos``: exact width, height, fps and frame count; bad files become named row errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pyarrow.parquet as pq
import pytest
from video_files import gradient_frames, write_video

from dl3d.video.decode import VideoRef, count_decoded_frames, encode_video, iter_frame_batches, probe_video
from dl3d.video.ingest import IngestVideosConfig, ingest_videos
from dl3d.video.sources import list_video_sources


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """mp4 (h264, 25 fps, 17 frames, 176x144), avi (mpeg4, 12.5 fps, 11 frames, 96x64), a folder of 12
    numbered PNGs (frame_1 ... frame_12: number order is not name order), a truncated avi and mp4, and a
    text file named .mp4, in one shard."""
    from PIL import Image

    root = tmp_path_factory.mktemp("videos")
    write_video(root / "walk" / "a.mp4", gradient_frames(17, 176, 144), 25, "libx264")
    avi = write_video(root / "b.avi", gradient_frames(11, 96, 64), Fraction(25, 2), "mpeg4")
    (root / "seq").mkdir()
    for i in range(1, 13):
        Image.fromarray(gradient_frames(i, 40, 30)[-1]).save(root / "seq" / f"frame_{i}.png")
    full = avi.read_bytes()
    (root / "cut_avi.avi").write_bytes(full[: len(full) * 9 // 10])  # header kept, the last frames cut
    mp4 = (root / "walk" / "a.mp4").read_bytes()
    (root / "cut_mp4.mp4").write_bytes(mp4[: len(mp4) // 2])
    (root / "notes.mp4").write_text("this is not a video\n" * 20)
    (root / "_hidden.mp4").write_bytes(mp4)  # skipped: _-prefixed
    return root


def test_sources_are_found_by_extension_and_image_folders_in_number_order(folder):
    sources = {s.id: s for s in list_video_sources(str(folder))}
    assert sorted(sources) == ["b", "cut_avi", "cut_mp4", "notes", "seq", "walk/a"]
    assert sources["b"].frame_files is None and sources["b"].url.endswith("b.avi")
    assert [f.rsplit("/", 1)[-1] for f in sources["seq"].frame_files] == [f"frame_{i}.png" for i in range(1, 13)]


def test_ingest_reports_exact_sizes_rates_counts_and_names_bad_files(folder, tmp_path):
    out = tmp_path / "ds"
    report = ingest_videos(str(folder), str(out), IngestVideosConfig(videos_per_shard=10, image_fps=10.0))
    rows = {r["id"]: r for r in pq.read_table(out / "part-00000.parquet").to_pylist()}
    assert sorted(rows) == ["b", "cut_avi", "cut_mp4", "notes", "seq", "walk/a"]
    a, b, seq = rows["walk/a"], rows["b"], rows["seq"]
    assert (a["width"], a["height"], a["fps"], a["num_frames"], a["codec"], a["status"]) == (176, 144, 25.0, 17, "h264", "ok")
    assert (b["width"], b["height"], b["fps"], b["num_frames"], b["codec"], b["status"]) == (96, 64, 12.5, 11, "mpeg4", "ok")
    assert (seq["width"], seq["height"], seq["fps"], seq["num_frames"], seq["container"]) == (40, 30, 10.0, 12, "images")
    assert [f.rsplit("/", 1)[-1] for f in seq["frame_files"]] == [f"frame_{i}.png" for i in range(1, 13)]
    assert rows["cut_avi"]["status"] == "truncated" and "declares 11 frames" in rows["cut_avi"]["error"]
    assert 0 < rows["cut_avi"]["num_frames"] < 11
    assert rows["cut_mp4"]["status"] == "unreadable" and "InvalidDataError" in rows["cut_mp4"]["error"]
    assert rows["notes"]["status"] == "unreadable" and rows["notes"]["num_frames"] == 0
    assert report.videos == 6 and report.frames == 17 + 11 + 12
    assert set(report.bad) == {"cut_avi", "cut_mp4", "notes"}
    assert "3 not decodable" in report.summary()
    for vid in ("walk/a", "b"):  # the demux count is the decoded count
        assert count_decoded_frames(VideoRef(vid, url=rows[vid]["url"])) == rows[vid]["num_frames"]


def test_embedded_bytes_and_streaming_batches(folder, tmp_path):
    out = tmp_path / "ds"
    ingest_videos(str(folder / "walk"), str(out), IngestVideosConfig(embed=True))
    row = pq.read_table(out / "part-00000.parquet").to_pylist()[0]
    assert row["data"] == (folder / "walk" / "a.mp4").read_bytes() and row["num_frames"] == 17
    batches = list(iter_frame_batches(VideoRef("a", data=row["data"]), 5))
    assert [len(b) for b in batches] == [5, 5, 5, 2] and batches[0].shape[1:] == (144, 176, 3)
    expected = gradient_frames(17, 176, 144)
    err = np.abs(np.concatenate(batches).astype(float) - np.stack(expected)).mean()
    assert err < 6.0, f"decoded frames differ from the encoded ones by {err:.1f} levels on average"


def test_rotation_and_our_encoder(tmp_path):
    path = write_video(tmp_path / "r.mp4", gradient_frames(4, 64, 48), 30, "libx264", rotation=90)
    info = probe_video(VideoRef("r", url=str(path)))
    assert (info.rotation, info.width, info.height, info.num_frames) == (90, 64, 48, 4)
    data = encode_video(gradient_frames(9, 65, 49), fps=29.97)  # odd sizes are cut to even
    info = probe_video(VideoRef("e", data=data))
    assert (info.width, info.height, info.num_frames, round(info.fps, 2)) == (64, 48, 9, 29.97)
    with pytest.raises(ValueError, match="expected at least one frame"):
        encode_video([], fps=25)


def test_listing_errors_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_video_sources(str(tmp_path / "nope"))
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="found no video file"):
        list_video_sources(str(tmp_path))
    write_video(tmp_path / "x.mp4", gradient_frames(2, 32, 32), 25, "libx264")
    write_video(tmp_path / "x.avi", gradient_frames(2, 32, 32), 25, "mpeg4")
    with pytest.raises(ValueError, match="the same id 'x'"):
        list_video_sources(str(tmp_path))


def test_cli_ingest_videos_prints_the_bad_files(folder, tmp_path, capsys):
    from dl3d.jobs.cli import main

    assert main(["ingest", "videos", "--input", str(folder), "--output", str(tmp_path / "ds"),
                 "--videos-per-shard", "2"]) == 0
    printed = capsys.readouterr().out
    assert "6 videos, 40 frames in 3 shards" in printed and "notes: unreadable" in printed
    assert len(list((tmp_path / "ds").glob("part-*.parquet"))) == 3


def test_videos_stream_from_s3(s3_server, folder, tmp_path):
    """Listing, probing and decoding through s3fs file objects (a moto S3 server), no local copy."""
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server}, skip_instance_cache=True)
    fs.put(str(folder / "walk" / "a.mp4"), "dl3d-test/video-src/walk/a.mp4")
    fs.put(str(folder / "seq"), "dl3d-test/video-src/seq", recursive=True)
    report = ingest_videos("s3://dl3d-test/video-src", "s3://dl3d-test/video-ds", IngestVideosConfig(image_fps=10.0))
    assert report.videos == 2 and report.frames == 17 + 12 and not report.bad
    with fs.open("dl3d-test/video-ds/part-00000.parquet", "rb") as f:
        rows = {r["id"]: r for r in pq.read_table(f).to_pylist()}
    assert rows["walk/a"]["url"] == "s3://dl3d-test/video-src/walk/a.mp4"
    assert (rows["walk/a"]["num_frames"], rows["walk/a"]["width"], rows["seq"]["num_frames"]) == (17, 176, 12)
    batches = list(iter_frame_batches(VideoRef("a", url=rows["walk/a"]["url"]), 8))
    local = np.concatenate(list(iter_frame_batches(VideoRef("a", url=str(folder / "walk" / "a.mp4")), 8)))
    np.testing.assert_array_equal(np.concatenate(batches), local)
