"""SelectedPointsKernel against smplx's full SMPL forward: values, gradients, layouts, errors.

Uses the project's procedural body model when ``dl3d.body.procedural`` is importable, otherwise a
random SMPL-format array dict with the same shapes. Both are rounded to float32 first, as smplx's
loader does, so the float64 comparison sees identical constants.
"""

from __future__ import annotations

import numpy as np
import pytest
import smplx
import torch
from smplx.utils import Struct
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from dl3d.body.joints_kernel import (
    BODY25_FROM_SMPL45,
    COCO17_FROM_SMPL45,
    SMPLX_EXTRA_VERTEX_IDS,
    SMPLX_EXTRA_VERTEX_NAMES,
    SelectedPointsKernel,
    batch_rodrigues,
    build_points_kernel,
)

SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
EXTRA_IDS = [100, 5000]  # two more vertices beyond the keypoint ones
VERTEX_IDS = list(SMPLX_EXTRA_VERTEX_IDS) + EXTRA_IDS
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
GRAD_RTOL = {torch.float32: 1e-4, torch.float64: 1e-9}


def random_smpl_arrays(seed: int = 0, num_verts: int = 6890, num_betas: int = 10) -> dict[str, np.ndarray]:
    """A random SMPL-format body: not a body, but every array has SMPL's shape and invariants."""
    rng = np.random.default_rng(seed)
    nj = len(SMPL_PARENTS)
    weights = rng.random((num_verts, nj)) ** 8
    weights /= weights.sum(1, keepdims=True)
    jreg = np.zeros((nj, num_verts))
    for j in range(nj):
        cols = rng.choice(num_verts, 16, replace=False)
        jreg[j, cols] = rng.random(16) + 0.1
    jreg /= jreg.sum(1, keepdims=True)
    return {
        "v_template": rng.normal(scale=0.4, size=(num_verts, 3)),
        "f": rng.integers(0, num_verts, size=(13776, 3)).astype(np.int64),
        "weights": weights,
        "kintree_table": np.stack([np.array(SMPL_PARENTS), np.arange(nj)]).astype(np.int64),
        "J_regressor": jreg,
        "shapedirs": rng.normal(scale=0.02, size=(num_verts, 3, num_betas)),
        "posedirs": rng.normal(scale=0.005, size=(num_verts, 3, 9 * (nj - 1))),
    }


@pytest.fixture(scope="module")
def smpl_arrays() -> dict[str, np.ndarray]:
    try:
        from dl3d.body.procedural import make_procedural_body_model
    except ImportError:
        arrays = random_smpl_arrays()
    else:
        arrays = dict(make_procedural_body_model(num_betas=10, seed=0))
    out = {}
    for key, val in arrays.items():
        if hasattr(val, "toarray"):
            val = val.toarray()
        val = np.asarray(val)
        out[key] = val.astype(np.float32) if val.dtype.kind == "f" else val
    return out


def make_smplx(arrays: dict[str, np.ndarray], dtype: torch.dtype) -> smplx.SMPL:
    return smplx.SMPL("", data_struct=Struct(**arrays), num_betas=10, dtype=dtype)


def random_inputs(n: int, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "betas": torch.randn(n, 10, generator=g, dtype=dtype),
        "global_orient": 0.3 * torch.randn(n, 3, generator=g, dtype=dtype),
        "body_pose": 0.3 * torch.randn(n, 69, generator=g, dtype=dtype),
        "transl": torch.randn(n, 3, generator=g, dtype=dtype),
    }


def smplx_reference(model: smplx.SMPL, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    out = model(**inputs)
    return out.joints, out.vertices


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_forward_matches_smplx(smpl_arrays, n, dtype):
    model = make_smplx(smpl_arrays, dtype)
    kernel = build_points_kernel(smpl_arrays, VERTEX_IDS, dtype=dtype)
    inputs = random_inputs(n, dtype, seed=n)
    with torch.no_grad():
        joints45, verts = smplx_reference(model, inputs)
        out = kernel(**inputs)
    assert out.joints.shape == (n, 24, 3) and out.points.shape == (n, len(VERTEX_IDS), 3)
    assert out.joints.dtype == dtype and out.points.dtype == dtype
    torch.testing.assert_close(out.joints, joints45[:, :24], rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(out.points, verts[:, VERTEX_IDS], rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(kernel.smplx_layout(out), joints45[:, :35], rtol=0, atol=TOL[dtype])
    # The comparison is not vacuous: the pose moves the joints well away from rest.
    assert (out.joints - kernel(inputs["betas"], 0 * inputs["global_orient"],
                                0 * inputs["body_pose"], inputs["transl"]).joints).abs().max() > 1e-2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 64])
def test_gradients_match_smplx(smpl_arrays, n, dtype):
    model = make_smplx(smpl_arrays, dtype)
    kernel = build_points_kernel(smpl_arrays, VERTEX_IDS, dtype=dtype)
    g = torch.Generator().manual_seed(100 + n)
    w_joints = torch.randn(n, 24, 3, generator=g, dtype=dtype)
    w_points = torch.randn(n, len(VERTEX_IDS), 3, generator=g, dtype=dtype)

    def grads(fn):
        inputs = {k: v.requires_grad_() for k, v in random_inputs(n, dtype, seed=n).items()}
        joints, points = fn(inputs)
        loss = (w_joints * joints).sum() + (w_points * points).sum() + (points ** 2).sum()
        return torch.autograd.grad(loss, list(inputs.values())), list(inputs)

    ref, names = grads(lambda x: (lambda j, v: (j[:, :24], v[:, VERTEX_IDS]))(*smplx_reference(model, x)))
    got, _ = grads(lambda x: (lambda o: (o.joints, o.points))(kernel(**x)))
    for name, r, k in zip(names, ref, got):
        scale = r.abs().max().item()
        assert scale > 0, name
        err = (k - r).abs().max().item() / scale
        assert err <= GRAD_RTOL[dtype], f"{name}: relative gradient error {err:.2e}"


def test_gradcheck_float64(smpl_arrays):
    kernel = build_points_kernel(smpl_arrays, VERTEX_IDS, dtype=torch.float64)
    inputs = [v.requires_grad_() for v in random_inputs(2, torch.float64, seed=3).values()]

    def fn(*args):
        out = kernel(*args)
        return out.joints, out.points

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, fast_mode=True)  # a random projection: seconds, not minutes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fmt, table", [("body25", BODY25_FROM_SMPL45), ("coco17", COCO17_FROM_SMPL45)])
def test_keypoints_match_smplx_mapping(smpl_arrays, fmt, table, dtype):
    model = make_smplx(smpl_arrays, dtype)
    kernel = build_points_kernel(smpl_arrays, dtype=dtype)
    inputs = {k: v.requires_grad_() for k, v in random_inputs(16, dtype, seed=5).items()}
    joints45, _ = smplx_reference(model, inputs)
    ref = joints45[:, list(table)]
    got = kernel.keypoints(fmt, **inputs)
    assert got.shape == (16, len(table), 3)
    torch.testing.assert_close(got, ref, rtol=0, atol=TOL[dtype])
    w = torch.randn(got.shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    g_ref = torch.autograd.grad((w * ref).sum(), list(inputs.values()))
    g_got = torch.autograd.grad((w * got).sum(), list(inputs.values()))
    for r, k in zip(g_ref, g_got):
        assert (k - r).abs().max() <= GRAD_RTOL[dtype] * r.abs().max()


def test_keypoints_prune_the_chain_for_sparse_weights():
    """With SMPL-like sparse skinning, formats skip joints nothing needs (here 10, 11, 22, 23 or
    22, 23), which exercises the reordered, pruned kinematic chain."""
    arrays = random_smpl_arrays(seed=1)
    weights = arrays["weights"] * ~np.isin(np.arange(24), [10, 11, 22, 23])
    weights = np.where(weights >= np.sort(weights, axis=1)[:, -4:-3], weights, 0.0)  # 4 per vertex
    eye = np.eye(24)
    ids = list(SMPLX_EXTRA_VERTEX_IDS)
    weights[ids[:5]] = eye[15]  # face: head
    weights[ids[5:8]] = 0.5 * (eye[7] + eye[10])  # left foot: ankle and foot
    weights[ids[8:]] = 0.5 * (eye[8] + eye[11])  # right foot
    weights /= weights.sum(1, keepdims=True)
    arrays["weights"] = weights
    arrays = {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    model = make_smplx(arrays, torch.float64)
    kernel = build_points_kernel(arrays, dtype=torch.float64)
    assert kernel.formats["body25"].num_joints == 22 and kernel.formats["coco17"].num_joints == 20
    inputs = {k: v.requires_grad_() for k, v in random_inputs(6, torch.float64, seed=11).items()}
    joints45, _ = smplx_reference(model, inputs)
    for fmt, table in [("body25", BODY25_FROM_SMPL45), ("coco17", COCO17_FROM_SMPL45)]:
        got, ref = kernel.keypoints(fmt, **inputs), joints45[:, list(table)]
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)
        g_ref = torch.autograd.grad(ref.square().sum(), list(inputs.values()), retain_graph=True)
        g_got = torch.autograd.grad(got.square().sum(), list(inputs.values()))
        for r, k in zip(g_ref, g_got):
            torch.testing.assert_close(k, r, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n, shared", [(1, False), (6, False), (6, True)])
def test_fused_forward_backward_equal_the_autograd_path(n, shared):
    """``forward`` (``FusedPlan``: hand-written backward) against ``_Plan.run`` (plain autograd ops),
    float64, on a tree whose depth order is not its index order (joint 10 hangs off the root), so
    the reordered-joint branches run too."""
    arrays = random_smpl_arrays(seed=2)
    parents = list(SMPL_PARENTS)
    parents[10] = 0
    arrays["kintree_table"] = np.stack([np.array(parents), np.arange(24)]).astype(np.int64)
    kernel = build_points_kernel(arrays, VERTEX_IDS, dtype=torch.float64)
    assert not kernel.fused.rot_identity and not kernel.fused.out_identity
    inputs = random_inputs(n, torch.float64, seed=7)
    if shared:
        inputs["betas"] = inputs["betas"][:1]
    inputs["body_pose"][0, :3] = 0.0  # a zero rotation: smplx's |r + 1e-8| keeps its gradient finite
    w = [torch.randn(n, 24, 3, dtype=torch.float64), torch.randn(n, len(VERTEX_IDS), 3, dtype=torch.float64)]

    def run(fused: bool):
        x = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        if fused:
            out = kernel(**x)
            joints, points = out.joints, out.points
        else:
            pose = torch.cat([x["global_orient"], x["body_pose"]], 1).view(n, 24, 3)
            joints, points = kernel.full.run(x["betas"], pose, x["transl"])
        loss = (w[0] * joints).sum() + (w[1] * points).sum() + (points ** 2).sum()
        return [joints, points] + list(torch.autograd.grad(loss, list(x.values())))

    names = ["joints", "points"] + list(inputs)
    for name, got, ref in zip(names, run(True), run(False)):
        assert ref.abs().max() > 0, name
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10, msg=name)


def test_rest_root_is_the_zero_pose_root(smpl_arrays):
    kernel = build_points_kernel(smpl_arrays, VERTEX_IDS, dtype=torch.float64)
    betas = random_inputs(4, torch.float64, seed=4)["betas"]
    zero = torch.zeros(4, 3, dtype=torch.float64)
    ref = kernel(betas, zero, torch.zeros(4, 69, dtype=torch.float64)).joints[:, 0]
    torch.testing.assert_close(kernel.rest_root(betas), ref, rtol=0, atol=1e-12)
    assert (ref - ref[:1]).abs().max() > 1e-3  # betas move the root: the comparison is not vacuous


def test_keypoint_tables():
    assert len(BODY25_FROM_SMPL45) == 25 and len(COCO17_FROM_SMPL45) == 17
    assert BODY25_FROM_SMPL45[8] == 0  # MidHip <- pelvis
    names = dict(zip(SMPLX_EXTRA_VERTEX_NAMES, range(24, 35)))
    assert [COCO17_FROM_SMPL45[i] for i in range(5)] == [names[k] for k in ("nose", "leye", "reye", "lear", "rear")]
    assert BODY25_FROM_SMPL45[15:] == tuple(names[k] for k in (
        "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"))
    assert SMPLX_EXTRA_VERTEX_IDS == tuple(SMPLX_VERTEX_IDS["smplh"][k] for k in SMPLX_EXTRA_VERTEX_NAMES)


def test_builder_from_smplx_module_and_chain_orders(smpl_arrays):
    model = make_smplx(smpl_arrays, torch.float64)
    from_arrays = build_points_kernel(smpl_arrays, VERTEX_IDS, dtype=torch.float64)
    from_module = build_points_kernel(model, VERTEX_IDS, dtype=torch.float64)
    inputs = random_inputs(9, torch.float64, seed=9)
    a, b = from_arrays(**inputs), from_module(**inputs)
    torch.testing.assert_close(a.joints, b.joints, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.points, b.points, rtol=0, atol=1e-12)
    pose = torch.cat([inputs["global_orient"], inputs["body_pose"]], 1).view(9, 24, 3)
    joints, points = from_arrays.full.run(inputs["betas"], pose, inputs["transl"], chain="joint")
    torch.testing.assert_close(joints, a.joints, rtol=0, atol=1e-12)
    torch.testing.assert_close(points, a.points, rtol=0, atol=1e-12)


def test_shared_betas_empty_batch_and_dtype_following(smpl_arrays):
    kernel = build_points_kernel(smpl_arrays, VERTEX_IDS)
    inputs = random_inputs(5, torch.float32)
    shared = kernel(inputs["betas"][:1], inputs["global_orient"], inputs["body_pose"], inputs["transl"])
    expanded = kernel(inputs["betas"][:1].expand(5, -1), inputs["global_orient"], inputs["body_pose"],
                      inputs["transl"])
    torch.testing.assert_close(shared.joints, expanded.joints, rtol=0, atol=1e-6)
    torch.testing.assert_close(shared.points, expanded.points, rtol=0, atol=1e-6)
    no_transl = kernel(inputs["betas"], inputs["global_orient"], inputs["body_pose"])
    with_transl = kernel(**inputs)
    torch.testing.assert_close(with_transl.joints - no_transl.joints,
                               inputs["transl"][:, None].expand(5, 24, 3), rtol=0, atol=1e-6)
    empty = kernel(**random_inputs(0, torch.float32))
    assert empty.joints.shape == (0, 24, 3) and empty.points.shape == (0, len(VERTEX_IDS), 3)
    out64 = kernel(**random_inputs(3, torch.float64))  # float32 buffers, float64 inputs
    assert out64.joints.dtype == torch.float64 and out64.points.dtype == torch.float64
    joints_only = build_points_kernel(smpl_arrays, [])(**inputs)
    assert joints_only.points.shape == (5, 0, 3)
    torch.testing.assert_close(joints_only.joints, with_transl.joints, rtol=0, atol=1e-6)


def test_batch_rodrigues_matches_smplx():
    rot = 0.7 * torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rot[0] = 0.0
    torch.testing.assert_close(batch_rodrigues(rot), smplx.lbs.batch_rodrigues(rot), rtol=0, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_follows_input_device(smpl_arrays):
    kernel = build_points_kernel(smpl_arrays, VERTEX_IDS)  # buffers stay on the CPU
    inputs = random_inputs(4, torch.float32)
    cpu = kernel(**inputs)
    gpu = kernel(**{k: v.cuda() for k, v in inputs.items()})
    assert gpu.joints.is_cuda and gpu.points.is_cuda
    torch.testing.assert_close(gpu.joints.cpu(), cpu.joints, rtol=0, atol=1e-5)
    torch.testing.assert_close(gpu.points.cpu(), cpu.points, rtol=0, atol=1e-5)
    torch.testing.assert_close(kernel.keypoints("body25", **{k: v.cuda() for k, v in inputs.items()}).cpu(),
                               kernel.keypoints("body25", **inputs), rtol=0, atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"body_pose": torch.zeros(2, 66)}, "expected body_pose of shape (N, 69) with N=2, got (2, 66)"),
    ({"global_orient": torch.zeros(2, 3, 1)}, "expected global_orient of shape (N, 3), got (2, 3, 1)"),
    ({"transl": torch.zeros(3, 3)}, "expected transl of shape (N, 3) with N=2, got (3, 3)"),
    ({"betas": torch.zeros(2, 16)}, "expected betas of shape (N, 10) or (1, 10) with N=2, got (2, 16)"),
    ({"betas": torch.zeros(3, 10)}, "expected betas of shape (N, 10) or (1, 10) with N=2, got (3, 10)"),
    ({"betas": torch.zeros(2, 10, dtype=torch.float64)}, "expected betas, global_orient, body_pose, transl of one float dtype"),
])
def test_bad_inputs_raise(smpl_arrays, change, message):
    kernel = build_points_kernel(smpl_arrays, VERTEX_IDS)
    inputs = {"betas": torch.zeros(2, 10), "global_orient": torch.zeros(2, 3),
              "body_pose": torch.zeros(2, 69), "transl": torch.zeros(2, 3)} | change
    with pytest.raises(ValueError) as err:
        kernel(**inputs)
    assert message in str(err.value)
    with pytest.raises(ValueError) as err:
        kernel.keypoints("body25", **inputs)
    assert message in str(err.value)


def test_bad_model_and_format_raise(smpl_arrays):
    bad = dict(smpl_arrays, posedirs=smpl_arrays["posedirs"][:, :, :200])
    with pytest.raises(ValueError, match=r"expected posedirs of shape \(6890, 3, 207\), got \(6890, 3, 200\)"):
        build_points_kernel(bad)
    with pytest.raises(ValueError, match=r"expected v_template of shape \(V, 3\), got \(6890, 2\)"):
        build_points_kernel(dict(smpl_arrays, v_template=smpl_arrays["v_template"][:, :2]))
    with pytest.raises(ValueError, match=r"expected SMPL arrays with keys \['weights'\]"):
        build_points_kernel({k: v for k, v in smpl_arrays.items() if k != "weights"})
    with pytest.raises(ValueError, match=r"expected vertex_ids in \[0, 6890\), got \[6890\]"):
        build_points_kernel(smpl_arrays, [6890])
    kernel = build_points_kernel(smpl_arrays, EXTRA_IDS)
    inputs = random_inputs(2, torch.float32)
    with pytest.raises(ValueError, match="expected a 24-joint kernel holding vertex_ids"):
        kernel.keypoints("coco17", **inputs)
    with pytest.raises(ValueError, match="expected a 24-joint kernel holding vertex_ids"):
        kernel.smplx_layout(kernel(**inputs))
    with pytest.raises(ValueError, match=r"expected fmt in \['body25', 'coco17'\], got 'h36m'"):
        build_points_kernel(smpl_arrays).keypoints("h36m", **inputs)  # type: ignore[arg-type]
    assert isinstance(kernel, SelectedPointsKernel)
