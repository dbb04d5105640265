"""``dl3d ingest r2n2`` on a tiny tree laid out as 3D-R2N2 and ShapeNetCore v1 ship it, in their real
formats written here: RGBA PNGs rendered with pytorch3d from an independent look-at camera built from the
metadata's azimuth/elevation/distance, ``rendering_metadata.txt``, a binvox file run-length encoded here,
and a ``model.obj``. Checks the camera against the silhouettes (pixels), the voxel decode against the
known grid, K against the field of view, the skipped inputs, and that training reads the rows back."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from dl3d.data import list_shards, read_table
from dl3d.data.mesh_tables import OBJECT_IMAGES, decode_mask, decode_objects

SYNSET, W, D = "03001627", 137, 32  # chair: class id 5 of R2N2's 13
HALF = np.array([0.30, 0.18, 0.12])  # an off-centre box: a mirrored or rolled camera moves its silhouette
CENTRE = np.array([0.06, -0.03, 0.04])
VIEWS = [(30.0, 25.0, 0.8), (200.0, 10.0, 0.9)]  # azimuth, elevation (degrees), distance ratio
F_BLENDER = 2.1875 * W / 2


def box_mesh():
    from dl3d.synthetic.shapes import primitive_mesh

    v, f = primitive_mesh("cube")
    return v.astype(np.float64) * HALF + CENTRE, f


def look_at(azimuth: float, elevation: float, ratio: float) -> np.ndarray:
    """(4, 4) model -> OpenCV camera, from the geometry alone: the camera at distance 1.75 * ratio, at
    the azimuth (from +x towards +z) and elevation (towards +y) looking at the origin, model +y up."""
    a, e = math.radians(azimuth), math.radians(elevation)
    eye = 1.75 * ratio * np.array([math.cos(e) * math.cos(a), math.sin(e), math.cos(e) * math.sin(a)])
    z = -eye / np.linalg.norm(eye)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z])
    T[:3, 3] = -T[:3, :3] @ eye
    return T


def encode_binvox(occ_xyz: np.ndarray, translate, scale) -> bytes:
    """binvox bytes of a (D, D, D) [x, y, z] grid: runs over x slowest, then z, then y, each <= 255."""
    flat = occ_xyz.transpose(0, 2, 1).reshape(-1).astype(np.uint8)
    out, i = bytearray(), 0
    while i < len(flat):
        j = i
        while j < len(flat) and flat[j] == flat[i] and j - i < 255:
            j += 1
        out += bytes([flat[i], j - i])
        i = j
    d = occ_xyz.shape[0]
    head = f"#binvox 1\ndim {d} {d} {d}\ntranslate {translate[0]} {translate[1]} {translate[2]}\nscale {scale}\ndata\n"
    return head.encode() + bytes(out)


def box_voxels():
    """The box's binvox grid as binvox normalises it: bbox min at the unit cube's origin, longest side 1."""
    v, _ = box_mesh()
    t, s = v.min(0), float((v.max(0) - v.min(0)).max())
    c = (np.arange(D) + 0.5) / D * s
    x, y, z = np.meshgrid(c + t[0], c + t[1], c + t[2], indexing="ij")
    p = np.stack([x, y, z], -1)
    return (np.abs(p - CENTRE) <= HALF).all(-1), t, s


def write_model(r2n2, shapenet, model: str, *, metadata: str | None = None, obj=True, binvox: bytes | None = None,
                pngs=(0, 1)):
    from PIL import Image

    from dl3d.synthetic.shapes import render_objects

    v, f = box_mesh()
    rendering = r2n2 / "ShapeNetRendering" / SYNSET / model / "rendering"
    rendering.mkdir(parents=True)
    lines = [f"{az} {el} 0 {r} 25" for az, el, r in VIEWS]
    (rendering / "rendering_metadata.txt").write_text(metadata if metadata is not None else "\n".join(lines) + "\n")
    K = np.array([[F_BLENDER, 0, W / 2], [0, F_BLENDER, W / 2], [0, 0, 1]])
    for i in pngs:
        T = look_at(*VIEWS[i])
        cam = v @ T[:3, :3].T + T[:3, 3]
        img, index = render_objects([{"verts": cam, "faces": f, "colour": np.array([0.8, 0.4, 0.2])}], K, W,
                                    np.array([0.0, -1.0, 0.0]), np.zeros(3))
        rgba = np.concatenate([img * 255, np.where(index >= 0, 255, 0)[..., None]], -1)
        Image.fromarray(np.rint(rgba).astype(np.uint8), mode="RGBA").save(rendering / f"{i:02d}.png")
    if obj:
        (shapenet / SYNSET / model).mkdir(parents=True)
        (shapenet / SYNSET / model / "model.obj").write_text(
            "".join(f"v {a} {b} {c}\n" for a, b, c in v) + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in f))
    if binvox is not None:
        (r2n2 / "ShapeNetVox32" / SYNSET / model).mkdir(parents=True)
        (r2n2 / "ShapeNetVox32" / SYNSET / model / "model.binvox").write_bytes(binvox)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """good (2 views, voxels); badmeta (view 1's metadata line is text); novox (no binvox, 01.png missing);
    noobj (no ShapeNet model); badvox (truncated binvox); flat (an RGB and an empty RGBA view); and a
    synset folder that is not R2N2's."""
    from PIL import Image

    root = tmp_path_factory.mktemp("r2n2")
    r2n2, shapenet = root / "R2N2", root / "ShapeNetCore.v1"
    occ, t, s = box_voxels()
    vox = encode_binvox(occ, t, s)
    write_model(r2n2, shapenet, "good", binvox=vox)
    rendering = r2n2 / "ShapeNetRendering" / SYNSET
    for name in ("badmeta", "novox", "noobj", "badvox"):
        shutil.copytree(rendering / "good", rendering / name)
        if name != "noobj":
            shutil.copytree(shapenet / SYNSET / "good", shapenet / SYNSET / name)
    meta = (rendering / "badmeta/rendering/rendering_metadata.txt").read_text().splitlines()
    (rendering / "badmeta/rendering/rendering_metadata.txt").write_text(meta[0] + "\nnot a camera\n")
    (rendering / "novox/rendering/01.png").unlink()
    for name, data in (("noobj", vox), ("badmeta", vox), ("badvox", vox[:-8])):
        (r2n2 / "ShapeNetVox32" / SYNSET / name).mkdir(parents=True)
        (r2n2 / "ShapeNetVox32" / SYNSET / name / "model.binvox").write_bytes(data)
    (r2n2 / "ShapeNetRendering" / "99999999" / "x").mkdir(parents=True)
    flat = rendering / "flat" / "rendering"  # degenerate images: no alpha channel, nothing opaque
    shutil.copytree(rendering / "good", rendering / "flat")
    shutil.copytree(shapenet / SYNSET / "good", shapenet / SYNSET / "flat")
    Image.open(flat / "00.png").convert("RGB").save(flat / "00.png")
    Image.new("RGBA", (W, W), (10, 20, 30, 0)).save(flat / "01.png")
    return {"r2n2": str(r2n2), "shapenet": str(shapenet), "occ": occ, "translate": t, "scale": s}


def _rows(url: str) -> list[tuple[str, dict, np.ndarray, object]]:
    out = []
    for shard in list_shards(url):
        table = read_table(shard.url, OBJECT_IMAGES)
        for i in range(table.num_rows):
            K = np.asarray(table.column("intrinsics")[i].as_py(), np.float64).reshape(3, 3)
            out.append((table.column("id")[i].as_py(), decode_objects(table, i, "r"), K, table.slice(i, 1)))
    return out


def test_binvox_decode_is_the_known_grid_and_axis_order():
    from dl3d.ingest.binvox import read_binvox

    occ = np.random.default_rng(0).random((D, D, D)) < 0.3
    vox = read_binvox(encode_binvox(occ, (0.5, -1.25, 2.0), 0.75), "v")
    assert (vox.occupancy == occ).all() and vox.translate == (0.5, -1.25, 2.0) and vox.scale == 0.75
    # one voxel at x=1, y=2, z=3 sits at linear index x*D*D + z*D + y of the runs (y fastest, then z, then x)
    n = 1 * D * D + 3 * D + 2
    runs = [(0, 255)] * (n // 255) + [(0, n % 255), (1, 1)]
    rest = D ** 3 - n - 1
    runs += [(0, 255)] * (rest // 255) + [(0, rest % 255)]
    one = read_binvox(b"#binvox 1\ndim 32 32 32\ndata\n" + bytes(b for r in runs if r[1] for b in r), "one")
    assert np.argwhere(one.occupancy).tolist() == [[1, 2, 3]] and one.translate is None
    for bad, match in ((b"#binvox 1\ndim 32 32 32\ndata\n\x00\xff", "cover 255 voxels"),
                       (b"#binvox 1\ndim 4 4 8\ndata\n", "cubic grid"), (b"PNG...", "'#binvox 1'"),
                       (b"#binvox 1\ndim 1 1 1\ndata\n\x01", "not \\(value, count\\) pairs")):
        with pytest.raises(ValueError, match=match):
            read_binvox(bad, "bad")


def test_r2n2_tree_becomes_object_images(tree, tmp_path):
    from dl3d.ingest.r2n2 import IngestR2N2Config, ingest_r2n2

    out = str(tmp_path / "out")
    report = ingest_r2n2(tree["r2n2"], tree["shapenet"], out, IngestR2N2Config(views=(0, 1), images_per_shard=3))
    skipped = {s.name: s.reason for s in report.skipped}
    assert sorted(skipped) == [f"{SYNSET}/badmeta/01", f"{SYNSET}/badvox", f"{SYNSET}/flat/00", f"{SYNSET}/flat/01",
                               f"{SYNSET}/noobj", f"{SYNSET}/novox/01", "ShapeNetRendering/99999999"]
    assert "RGB without alpha" in skipped[f"{SYNSET}/flat/00"] and "no opaque pixel" in skipped[f"{SYNSET}/flat/01"]
    assert "not 5 numbers" in skipped[f"{SYNSET}/badmeta/01"] and "runs cover" in skipped[f"{SYNSET}/badvox"]
    assert "model.obj" in skipped[f"{SYNSET}/noobj"] and "01.png" in skipped[f"{SYNSET}/novox/01"]
    assert json.loads((tmp_path / "out" / "_ingest_errors.json").read_text())[0]["name"] in skipped
    assert (report.models, report.views, report.shards, report.models_without_voxels) == (3, 4, 2, 1)
    assert report.per_synset == {"chair": 4} and "1 models have no ShapeNetVox32 voxels" in report.warnings[0]
    rows = {r[0]: r for r in _rows(out)}
    assert sorted(rows) == [f"{SYNSET}/{m}" for m in ("badmeta/00", "good/00", "good/01", "novox/00")]
    assert rows[f"{SYNSET}/novox/00"][1].get("occupancy") is None

    from scipy.ndimage import distance_transform_edt

    v_model, _ = box_mesh()
    errors, voxel_errors = [], []
    for view in (0, 1):
        _, o, K, table = rows[f"{SYNSET}/good/{view:02d}"]
        np.testing.assert_allclose(K, [[F_BLENDER, 0, 68.5], [0, F_BLENDER, 68.5], [0, 0, 1]], rtol=1e-6)
        assert o["labels"].tolist() == [5]
        T_ref = look_at(*VIEWS[view])
        verts = o["verts"][0].astype(np.float64)
        np.testing.assert_allclose(verts, v_model @ T_ref[:3, :3].T + T_ref[:3, 3], atol=1e-5)
        # the stored camera puts the mesh on the PNG's silhouette: the projected box vs the alpha's box, pixels
        uv = (verts @ K.T)[:, :2] / verts[:, 2:]
        mask = decode_mask(o["masks"][0], "m")
        ys, xs = np.nonzero(mask)
        alpha_box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        np.testing.assert_array_equal(o["boxes"][0], alpha_box)
        errors.append(np.abs(np.r_[uv.min(0), uv.max(0)] - alpha_box).max())
        # the image is the RGBA composited over white: transparent pixels white, the object as rendered
        from dl3d.data.images import decode_image

        img = decode_image(table.column("image")[0].as_py(), "img")
        assert (img[~mask] == 255).all() and (img[mask] < 250).any()
        # voxels: the decoded grid, indexed [z, y, x], and its map to the camera (bbox alignment): the
        # occupied centres' extent lands on the mesh's box, and every centre projects onto the silhouette
        occ, G = o["occupancy"][0], o["occupancy_to_camera"][0].astype(np.float64)
        assert (occ == tree["occ"].transpose(2, 1, 0)).all()
        zyx = np.argwhere(occ)
        g = -1 + (2 * zyx[:, ::-1] + 1) / D
        cam = g @ G[:3, :3].T + G[:3, 3]
        model = (cam - T_ref[:3, 3]) @ T_ref[:3, :3]
        np.testing.assert_allclose([model.min(0), model.max(0)], [v_model.min(0), v_model.max(0)], atol=1e-5)
        px = np.floor((cam @ K.T)[:, :2] / cam[:, 2:]).astype(int).clip(0, W - 1)
        outside = distance_transform_edt(~mask)[px[:, 1], px[:, 0]]  # pixels to the nearest silhouette pixel
        voxel_errors.append(outside.max())
    assert max(errors) < 1.0, f"projected model vs silhouette box: {errors} px"
    # the outermost centres lie on the mesh's faces (bbox alignment), so on the silhouette's edge: their
    # pixel may be one diagonal step from the nearest silhouette pixel, never more
    assert max(voxel_errors) <= math.sqrt(2) + 1e-9, f"voxel centres outside the silhouette by {voxel_errors} px"


def test_header_alignment_metadata_fov_and_the_training_schema(tree, tmp_path):
    import torch

    from dl3d.ingest.r2n2 import IngestR2N2Config, ingest_r2n2
    from dl3d.meshrcnn.config import MESHRCNN_PRESETS
    from dl3d.meshrcnn.family import MESHRCNN_FAMILY

    out = str(tmp_path / "out")
    cfg = IngestR2N2Config(views=(1, 0), synsets=("chair",), intrinsics="metadata", voxel_alignment="header",
                           occupancy_size=16)
    report = ingest_r2n2(tree["r2n2"], tree["shapenet"], out, cfg)
    assert report.views == 4
    rows = {r[0]: r for r in _rows(out)}
    _, o, K, _ = rows[f"{SYNSET}/good/01"]
    f = 68.5 / math.tan(math.radians(25))  # the metadata's 25 degrees as the half field of view
    np.testing.assert_allclose(K, [[f, 0, 68.5], [0, f, 68.5], [0, 0, 1]], rtol=1e-6)
    # header: grid centre g -> (index + 0.5) / D * scale + translate in the model frame, exactly
    G, T_ref = o["occupancy_to_camera"][0].astype(np.float64), look_at(*VIEWS[1])
    idx = np.array([[0, 0, 0], [31, 5, 17]])
    g = -1 + (2 * idx + 1) / D
    model = (g @ G[:3, :3].T + G[:3, 3] - T_ref[:3, 3]) @ T_ref[:3, :3]
    np.testing.assert_allclose(model, (idx + 0.5) / D * tree["scale"] + tree["translate"], atol=1e-5)
    pooled = tree["occ"].reshape(16, 2, 16, 2, 16, 2).any(axis=(1, 3, 5)).transpose(2, 1, 0)
    assert o["occupancy"][0].shape == (16, 16, 16) and (o["occupancy"][0] == pooled).all()
    # the rows with voxels decode into a ShapeNet-style training batch
    table = [r[3] for k, r in sorted(rows.items()) if "novox" not in k]
    import pyarrow as pa

    batch = MESHRCNN_FAMILY.decode_batch(pa.concat_tables(table), MESHRCNN_PRESETS["cpu-small"], torch.device("cpu"))
    assert batch["images"].shape == (3, 3, 64, 64) and batch["occupancy"].shape == (3, 16, 16, 16)
    np.testing.assert_allclose(batch["K"][0, 0, 0].item(), f * 64 / W, rtol=1e-5)


def test_cli_and_refusals(tree, tmp_path, capsys):
    from dl3d.ingest.r2n2 import IngestR2N2Config
    from dl3d.jobs.cli import main

    out = str(tmp_path / "out")
    rc = main(["ingest", "r2n2", "--input", tree["r2n2"], "--shapenet", tree["shapenet"], "--output", out,
               "--views", "0", "--synsets", "03001627"])
    printed = capsys.readouterr().out
    assert rc == 0 and printed.startswith("3 models, 1 synsets -> 3 object_images rows in 1 shards")
    assert f"skipped {SYNSET}/noobj:" in printed and "warning: 1 models have no ShapeNetVox32" in printed
    rc = main(["ingest", "r2n2", "--input", tree["shapenet"], "--shapenet", tree["shapenet"], "--output", out])
    err = capsys.readouterr().err
    assert rc == 2 and "no ShapeNetRendering/ folder (expected R2N2's layout" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="synsets must be R2N2 synset ids or names"):
        IngestR2N2Config(synsets=("sofa", "spaceship"))
    with pytest.raises(ValueError, match="views must be distinct numbers in 0..23"):
        IngestR2N2Config(views=(0, 24))


def test_reads_through_fsspec_urls(tree, tmp_path):
    """The same tree under memory:// (no local path anywhere): the same rows."""
    import fsspec

    from dl3d.ingest.r2n2 import IngestR2N2Config, ingest_r2n2

    mem = fsspec.filesystem("memory")
    for key, prefix in (("r2n2", "/r2n2"), ("shapenet", "/shapenet")):
        local = fsspec.filesystem("file")
        for path in local.find(tree[key]):
            mem.pipe_file(prefix + path[len(tree[key]):], local.cat_file(path))
    try:
        report = ingest_r2n2("memory://r2n2", "memory://shapenet", str(tmp_path / "out"), IngestR2N2Config(views=(0,)))
    finally:
        mem.rm("/r2n2", recursive=True)
        mem.rm("/shapenet", recursive=True)
    assert (report.models, report.views) == (3, 3)


def test_splits_file_selects_models_and_views(tree, tmp_path):
    from dl3d.ingest.r2n2 import IngestR2N2Config, ingest_r2n2

    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": {SYNSET: {"badmeta": [0, 1]}},
                                  "test": {SYNSET: {"good": [1], "novox": [0, 5]}, "12345678": {"m": [0]}}}))
    report = ingest_r2n2(tree["r2n2"], tree["shapenet"], str(tmp_path / "out"),
                         IngestR2N2Config(splits=str(splits), split="test"))
    assert sorted(r[0] for r in _rows(str(tmp_path / "out"))) == [f"{SYNSET}/good/01", f"{SYNSET}/novox/00"]
    skipped = {s.name: s.reason for s in report.skipped}
    assert "no line for view 5" in skipped[f"{SYNSET}/novox/05"] and f"{splits}#12345678" in skipped
    with pytest.raises(ValueError, match="expected {'val'"):
        ingest_r2n2(tree["r2n2"], tree["shapenet"], str(tmp_path / "o2"),
                    IngestR2N2Config(splits=str(splits), split="val"))
