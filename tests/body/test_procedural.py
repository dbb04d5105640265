"""Tests of the procedural body model: SMPL's format, geometry, skinning, blend shapes, keypoints."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from dl3d.body import (
    BODY_MODEL_NOTE_KEY,
    SMPL_JOINT_NAMES,
    SMPL_KEYPOINT_VERTEX_IDS,
    SMPL_PARENTS,
    is_procedural,
    load_body_model,
    make_procedural_body_model,
    read_body_model_arrays,
    write_body_model,
)

K = SMPL_KEYPOINT_VERTEX_IDS
J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return make_procedural_body_model(num_betas=10, seed=0)


@pytest.fixture(scope="module")
def model_dir(arrays: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("procedural")
    write_body_model(arrays, folder, fmt="pkl")
    write_body_model(arrays, folder, fmt="npz")
    return folder


@pytest.fixture(scope="module")
def pkl_path(model_dir: Path) -> Path:
    return model_dir / "smpl_procedural.pkl"


@pytest.fixture(scope="module")
def npz_path(model_dir: Path) -> Path:
    return model_dir / "smpl_procedural.npz"


def shaped(arrays: dict[str, np.ndarray], betas: list[float]) -> np.ndarray:
    """(V, 3) rest vertices for ``betas`` (padded with zeros)."""
    b = np.zeros(arrays["shapedirs"].shape[2])
    b[: len(betas)] = betas
    return arrays["v_template"] + arrays["shapedirs"] @ b


def stature(verts: np.ndarray) -> float:
    return float(verts[:, 1].max() - verts[:, 1].min())


def random_params(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "betas": torch.randn(n, 10, generator=g),
        "global_orient": 0.5 * torch.randn(n, 3, generator=g),
        "body_pose": 0.4 * torch.randn(n, 69, generator=g),
        "transl": torch.randn(n, 3, generator=g),
    }


# ---- SMPL's format and smplx ---------------------------------------------------------------------


def test_vertex_id_table_matches_installed_smplx() -> None:
    assert SMPL_KEYPOINT_VERTEX_IDS == SMPLX_VERTEX_IDS["smplh"]


def test_shapes_and_kintree(arrays: dict[str, np.ndarray]) -> None:
    assert arrays["v_template"].shape == (6890, 3)
    assert arrays["weights"].shape == (6890, 24)
    assert arrays["J_regressor"].shape == (24, 6890)
    assert arrays["shapedirs"].shape == (6890, 3, 10)
    assert arrays["posedirs"].shape == (6890, 3, 207)
    assert arrays["kintree_table"].tolist() == [[4294967295, *SMPL_PARENTS[1:]], list(range(24))]
    assert SMPL_PARENTS == (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
    assert is_procedural(arrays)


def test_smplx_create_loads_written_pickle(arrays: dict[str, np.ndarray], pkl_path: Path) -> None:
    model = smplx.create(str(pkl_path), model_type="smpl")
    out = model()
    assert out.vertices.shape == (1, 6890, 3)
    assert out.joints.shape == (1, 45, 3)
    rest = out.joints[0].detach().double().numpy()
    np.testing.assert_allclose(rest[:24], arrays["J"], atol=1e-5)
    order = ["nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe",
             "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring",
             "rpinky"]
    ids = [K[name] for name in order]
    np.testing.assert_allclose(out.joints[0, 24:].detach().numpy(), out.vertices[0, ids].detach().numpy())
    with pkl_path.open("rb") as handle:
        raw = pickle.load(handle, encoding="latin1")
    assert all(isinstance(v, (np.ndarray, str)) for v in raw.values())
    assert "NOT SMPL" in raw[BODY_MODEL_NOTE_KEY]
    assert "NOT SMPL" in (pkl_path.parent / "README.txt").read_text()


@pytest.mark.parametrize("fmt", ["pkl", "npz"])
def test_load_body_model_matches_smplx_create(fmt: str, pkl_path: Path, model_dir: Path) -> None:
    reference = smplx.create(str(pkl_path), model_type="smpl")
    model = load_body_model(model_dir / f"smpl_procedural.{fmt}", num_betas=10)
    assert not model.training and model.num_betas == 10
    params = random_params(3, seed=1)
    with torch.no_grad():
        want, got = reference(**params), model(**params)
    assert (got.vertices - want.vertices).abs().max().item() < 1e-6
    assert (got.joints - want.joints).abs().max().item() < 1e-6
    assert want.vertices.abs().max().item() > 0.5  # a real, non-degenerate output


def test_npz_and_pkl_round_trip(arrays: dict[str, np.ndarray], pkl_path: Path, npz_path: Path) -> None:
    for path in (pkl_path, npz_path):
        back = read_body_model_arrays(path)
        assert set(back) == set(arrays)
        for key, value in arrays.items():
            np.testing.assert_array_equal(back[key], value, err_msg=f"{path.name}: {key}")


def test_deterministic_per_seed(arrays: dict[str, np.ndarray]) -> None:
    again = make_procedural_body_model(num_betas=10, seed=0)
    other = make_procedural_body_model(num_betas=10, seed=1)
    for key in ("v_template", "f", "weights", "J_regressor", "shapedirs", "posedirs"):
        np.testing.assert_array_equal(again[key], arrays[key])
    np.testing.assert_array_equal(other["shapedirs"][..., :4], arrays["shapedirs"][..., :4])
    assert np.abs(other["shapedirs"][..., 4:] - arrays["shapedirs"][..., 4:]).max() > 1e-3


def test_bad_arguments(arrays: dict[str, np.ndarray], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected num_betas in 1..300, got 0"):
        make_procedural_body_model(num_betas=0)
    with pytest.raises(ValueError, match="expected fmt 'pkl' or 'npz', got 'obj'"):
        write_body_model(arrays, tmp_path, fmt="obj")  # type: ignore[arg-type]
    assert make_procedural_body_model(num_betas=2)["shapedirs"].shape == (6890, 3, 2)


# ---- mesh -----------------------------------------------------------------------------------------


def components(faces: np.ndarray, num_verts: int) -> np.ndarray:
    """(V,) connected-component label of each vertex (union-find over face edges)."""
    parent = np.arange(num_verts)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]]):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return np.array([find(i) for i in range(num_verts)])


def test_mesh_is_closed_and_faces_outward(arrays: dict[str, np.ndarray]) -> None:
    v, f = arrays["v_template"], arrays["f"]
    assert f.dtype == np.int64 and f.min() == 0 and f.max() == 6889
    assert np.all(f[:, 0] != f[:, 1]) and np.all(f[:, 1] != f[:, 2]) and np.all(f[:, 0] != f[:, 2])
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    _, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert np.all(counts == 2)  # every edge shared by exactly two faces: closed
    assert len(np.unique(directed, axis=0)) == len(directed)  # opposite directions: consistent
    tri = v[f]
    signed = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0
    labels = components(f, len(v))
    face_label = labels[f[:, 0]]
    volumes = {lab: signed[face_label == lab].sum() for lab in np.unique(labels)}
    assert len(volumes) == 19  # torso, neck, head, and eight left/right part pairs
    assert min(volumes.values()) > 0  # every part encloses positive volume: normals point out
    assert 0.05 < sum(volumes.values()) < 0.09  # m^3, a human's 50-90 litres (parts overlap a little)


def test_proportions(arrays: dict[str, np.ndarray]) -> None:
    v, joints = arrays["v_template"], arrays["J"]
    assert 1.65 < stature(v) < 1.85
    assert np.linalg.norm(joints[J["pelvis"]]) < 0.05
    assert v[:, 1].max() > joints[J["head"], 1] > joints[J["neck"], 1] > joints[J["spine3"], 1]
    assert joints[J["left_wrist"], 0] > joints[J["left_elbow"], 0] > joints[J["left_shoulder"], 0] > 0
    assert joints[J["right_wrist"], 0] < joints[J["right_elbow"], 0] < joints[J["right_shoulder"], 0] < 0
    assert joints[J["left_ankle"], 1] < joints[J["left_knee"], 1] < joints[J["left_hip"], 1] < 0
    assert joints[J["left_foot"], 2] > joints[J["left_ankle"], 2] + 0.08  # feet point to +z
    np.testing.assert_allclose(joints[[2, 5, 8, 11, 14, 17, 19, 21, 23]] * [-1, 1, 1],
                               joints[[1, 4, 7, 10, 13, 16, 18, 20, 22]])


# ---- joints, skinning, blend shapes --------------------------------------------------------------


def test_regressor_reproduces_build_joints(arrays: dict[str, np.ndarray]) -> None:
    reg = arrays["J_regressor"]
    assert reg.min() >= 0.0
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-12)
    assert np.abs(reg @ arrays["v_template"] - arrays["J"]).max() < 1e-3
    # Girth grows each ring about its centre, so the joints do not move.
    assert np.abs(reg @ shaped(arrays, [0.0, 2.0]) - arrays["J"]).max() < 1e-6


def test_skinning_weights(arrays: dict[str, np.ndarray]) -> None:
    w, v = arrays["weights"], arrays["v_template"]
    assert w.min() >= 0.0
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
    mid_thigh = (np.abs(v[:, 1] + 0.27) < 0.02) & (v[:, 0] > 0)
    assert mid_thigh.sum() > 20 and w[mid_thigh, J["left_hip"]].min() > 0.99
    mid_forearm = (np.abs(v[:, 0] - 0.55) < 0.02) & (v[:, 1] > 0.3)
    assert mid_forearm.sum() > 10 and w[mid_forearm, J["left_elbow"]].min() > 0.99
    # The ring on the knee is shared half and half between thigh and shin bones.
    knee_ring = arrays["J_regressor"][J["left_knee"]] > 0
    np.testing.assert_allclose(w[knee_ring, J["left_knee"]], 0.5, atol=0.05)
    np.testing.assert_allclose(w[knee_ring, J["left_hip"]], 0.5, atol=0.05)
    head = w.argmax(axis=1) == J["head"]
    assert head.sum() > 800


def test_bending_left_elbow_moves_only_left_forearm(pkl_path: Path) -> None:
    model = load_body_model(pkl_path)
    pose = torch.zeros(1, 69)
    with torch.no_grad():
        rest = model(body_pose=pose)
        pose[0, (J["left_elbow"] - 1) * 3 + 1] = np.pi / 2
        bent = model(body_pose=pose)
    moved = (bent.vertices - rest.vertices).norm(dim=-1)[0]
    x = rest.vertices[0, :, 0]
    assert moved[x < 0].max().item() < 1e-6
    assert moved[x > 0.6].min().item() > 0.05  # hand swings round
    wrist, elbow = J["left_wrist"], J["left_elbow"]
    forearm = (bent.joints[0, wrist] - bent.joints[0, elbow]).norm().item()
    assert abs(forearm - 0.25) < 0.005  # bone length kept
    assert bent.joints[0, wrist, 2].item() < rest.joints[0, wrist, 2].item() - 0.2


def test_stature_direction(arrays: dict[str, np.ndarray]) -> None:
    base = stature(arrays["v_template"])
    assert 1.05 < stature(shaped(arrays, [1.0])) / base < 1.10
    assert 0.90 < stature(shaped(arrays, [-1.0])) / base < 0.95


def torso_width(verts: np.ndarray, arrays: dict[str, np.ndarray]) -> float:
    waist = (np.abs(arrays["v_template"][:, 1] - 0.15) < 0.03) & (arrays["weights"][:, J["spine1"]] > 0.5)
    return float(verts[waist, 0].max() - verts[waist, 0].min())


def test_girth_direction(arrays: dict[str, np.ndarray]) -> None:
    v = arrays["v_template"]
    fat = shaped(arrays, [0.0, 1.0])
    assert torso_width(fat, arrays) / torso_width(v, arrays) > 1.08
    assert abs(stature(fat) / stature(v) - 1.0) < 0.02


def test_limb_length_and_shoulder_width(arrays: dict[str, np.ndarray]) -> None:
    reg, v = arrays["J_regressor"], arrays["v_template"]
    rest = reg @ v
    long = reg @ shaped(arrays, [0.0, 0.0, 1.0])
    span = lambda j: j[J["left_wrist"], 0] - j[J["right_wrist"], 0]  # noqa: E731
    leg = lambda j: j[J["left_hip"], 1] - j[J["left_ankle"], 1]  # noqa: E731
    assert span(long) / span(rest) > 1.04 and leg(long) / leg(rest) > 1.05
    wide = reg @ shaped(arrays, [0.0, 0.0, 0.0, 1.0])
    shoulders = lambda j: j[J["left_shoulder"], 0] - j[J["right_shoulder"], 0]  # noqa: E731
    assert shoulders(wide) - shoulders(rest) > 0.06
    np.testing.assert_allclose(wide[J["left_collar"]], rest[J["left_collar"]], atol=1e-3)
    np.testing.assert_allclose(wide[J["left_hip"]], rest[J["left_hip"]], atol=1e-9)


def test_pose_blend_shapes_small_and_local(arrays: dict[str, np.ndarray]) -> None:
    pd, v, joints = arrays["posedirs"], arrays["v_template"], arrays["J"]
    assert 1e-3 < np.abs(pd).max() < 5e-3  # a few mm per unit of (R - I)
    for j in range(1, 24):
        dist = np.linalg.norm(v - joints[j], axis=1)
        ring_radius = dist[arrays["J_regressor"][j] > 0].max()
        far = dist > ring_radius + 0.06
        assert np.abs(pd[far, :, (j - 1) * 9:(j - 1) * 9 + 9]).max() == 0.0
        assert np.abs(pd[~far, :, (j - 1) * 9:(j - 1) * 9 + 9]).max() > 1e-3


# ---- surface keypoints ---------------------------------------------------------------------------


def test_keypoints_lie_where_their_names_say(arrays: dict[str, np.ndarray]) -> None:
    v, w, joints = arrays["v_template"], arrays["weights"], arrays["J"]
    p = {name: v[i] for name, i in K.items()}
    head = w.argmax(axis=1) == J["head"]
    assert v[head, 2].max() == p["nose"][2]  # the nose is the front-most point of the head
    assert abs(p["nose"][0]) < 1e-9 and p["nose"][1] > joints[J["head"], 1]
    assert p["leye"][0] > 0.01 and p["reye"][0] < -0.01
    for eye in ("leye", "reye"):
        assert p[eye][1] > p["nose"][1] and p[eye][2] > p["lear"][2] + 0.05
    assert abs(p["lear"][0]) > abs(p["leye"][0]) + 0.03 and p["lear"][0] > 0 > p["rear"][0]
    assert abs(p["rear"][0]) > abs(p["reye"][0]) + 0.03
    for s, side in (("L", 1.0), ("R", -1.0)):
        big, small, heel = p[f"{s}BigToe"], p[f"{s}SmallToe"], p[f"{s}Heel"]
        assert big[2] > joints[J["left_foot"], 2] and small[2] > joints[J["left_foot"], 2]
        assert heel[2] < joints[J["left_ankle"], 2] - 0.03 < big[2]
        assert side * big[0] > 0 and abs(big[0]) < abs(small[0])  # big toe medial
        assert max(big[1], small[1], heel[1]) < joints[J["left_ankle"], 1] - 0.05  # at the sole
    for s, side in (("l", 1.0), ("r", -1.0)):
        hand = joints[J[f"{'left' if s == 'l' else 'right'}_hand"]]
        tips = [p[f"{s}{finger}"] for finger in ("thumb", "index", "middle", "ring", "pinky")]
        for tip in tips[1:]:
            assert side * tip[0] > side * hand[0] + 0.06  # past the knuckles, at the hand's end
        assert side * tips[0][0] > side * joints[J[f"{'left' if s == 'l' else 'right'}_wrist"]][0]
        zs = [tip[2] for tip in tips]
        assert zs == sorted(zs, reverse=True)  # thumb forward, then index ... pinky backward
