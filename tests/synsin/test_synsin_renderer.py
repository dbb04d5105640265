"""The SynSin point renderer: projection conventions, identity and translated renders, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch3d.utils import cameras_from_opencv_projection

from dl3d.metrics.image import psnr
from dl3d.synsin.point_renderer import (
    PointRenderer,
    composite_points,
    lift_pixels,
    project_to_ndc,
    splat_alphas,
    transform_points,
)

H = W = 64
FOCAL = 64.0
ALPHA_MAX = 1.0 - math.sqrt(1e-3)  # the official clamp: d/r >= sqrt(1e-3), so alpha <= 0.9684


def px(radius_pixels: float, size: int = H) -> float:
    """A splat radius in pixels as pytorch3d NDC units."""
    return radius_pixels * 2.0 / size


def intrinsics(n: int = 1, size: int = H, focal: float = FOCAL) -> torch.Tensor:
    K = torch.tensor([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]])
    return K.expand(n, 3, 3).clone()


def smooth(n: int, c: int, size: int, coarse: int, seed: int) -> torch.Tensor:
    """Smooth random maps in [0, 1]: coarse noise up-sampled bicubically."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, coarse, coarse, generator=g)
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def translation(tx: float = 0.0, ty: float = 0.0, tz: float = 0.0) -> torch.Tensor:
    T = torch.eye(4)[None].clone()
    T[0, :3, 3] = torch.tensor([tx, ty, tz])
    return T


def test_projection_matches_pytorch3d_opencv_cameras():
    # Our lift/transform/project must land where pytorch3d's own OpenCV conversion puts points,
    # non-square image included (the shorter side spans [-1, 1]).
    g = torch.Generator().manual_seed(0)
    h, w = 48, 80
    K = torch.tensor([[[70.0, 0.0, 41.5], [0.0, 66.0, 22.0], [0.0, 0.0, 1.0]]])
    angle = 0.3
    R = torch.tensor([[math.cos(angle), 0.0, math.sin(angle)], [0.0, 1.0, 0.0],
                      [-math.sin(angle), 0.0, math.cos(angle)]])[None]
    t = torch.tensor([[0.2, -0.1, 0.5]])
    pts = torch.rand(1, 200, 3, generator=g) * torch.tensor([2.0, 2.0, 3.0]) + torch.tensor([-1.0, -1.0, 2.0])
    pose = torch.eye(4)[None].clone()
    pose[:, :3, :3], pose[:, :3, 3] = R, t
    ours = project_to_ndc(transform_points(pts, pose), K, h, w)
    cams = cameras_from_opencv_projection(R, t, K, torch.tensor([[h, w]]))
    theirs = cams.transform_points(pts)
    torch.testing.assert_close(ours[..., :2], theirs[..., :2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[..., 2], (pts @ R[0].T + t)[..., 2], atol=1e-6, rtol=1e-6)


def test_lift_pixels_reprojects_to_pixel_centres():
    depth = 1.0 + smooth(1, 1, 8, 3, seed=1) * 4.0
    K = intrinsics(1, size=8, focal=10.0)
    pts = lift_pixels(depth, K)
    assert pts.shape == (1, 64, 3)
    torch.testing.assert_close(pts[..., 2], depth.reshape(1, 64))
    uv = (pts[..., :2] / pts[..., 2:]) * 10.0 + 4.0
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    torch.testing.assert_close(uv, torch.stack((xs + 0.5, ys + 0.5), -1).reshape(1, 64, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("texture", ["smooth", "noise"])
def test_identity_render_reproduces_source(texture):
    # Identity pose, smooth random depth 2-3.5 m, RGB as features. With a splat radius below one pixel
    # (0.75 px) only a pixel's own point covers its centre (neighbouring centres are >= 1 px away), at
    # distance 0, so alpha compositing returns alpha_max * colour with alpha_max = 1 - sqrt(1e-3) = 0.9684
    # (the official clamp): PSNR is set by that 3.2 % darkening -- measured 35.27 dB (smooth) and
    # 34.75 dB (noise). A half-pixel error in the lift/projection would put every point 0.5 px off
    # its pixel centre and cut alpha to 0.33.
    if texture == "smooth":
        img = smooth(1, 3, H, 8, seed=2)
    else:
        img = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(3))
    depth = 2.0 + 1.5 * smooth(1, 1, H, 4, seed=4)
    out = PointRenderer(radius=px(0.75), points_per_pixel=8, accumulation="alphacomposite")(
        img, depth, intrinsics(), translation())
    torch.testing.assert_close(out["features"], ALPHA_MAX * img, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["coverage"], torch.full((1, 1, H, W), ALPHA_MAX), atol=1e-5, rtol=0)
    assert psnr(out["features"], img).item() >= 34.5
    # Normalised weighted sum divides the darkening out: the source comes back exactly.
    out = PointRenderer(radius=px(0.75), points_per_pixel=8, accumulation="wsumnorm")(
        img, depth, intrinsics(), translation())
    torch.testing.assert_close(out["features"], img, atol=1e-5, rtol=0)


def test_identity_render_with_overlapping_splats():
    # 1.5-px splats overlap the neighbours (up to 9 points per pixel), as in training; alpha compositing
    # then mixes in the nearest-in-depth neighbours. On a smooth texture the PSNR stays high:
    # measured 32.90 dB with K = 8 and 32.98 dB with K = 32.
    img = smooth(1, 3, H, 8, seed=2)
    depth = 2.0 + 1.5 * smooth(1, 1, H, 4, seed=4)
    out = PointRenderer(radius=px(1.5), points_per_pixel=8, accumulation="alphacomposite")(
        img, depth, intrinsics(), translation())
    assert psnr(out["features"], img).item() >= 32.5
    assert out["coverage"].min().item() > 0.8


def _patch_image() -> torch.Tensor:
    img = torch.zeros(1, 3, H, W)
    img[:, :, 20:36, 14:30] = 0.5 + 0.5 * torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return img


def _centroid(img: torch.Tensor) -> tuple[float, float]:
    wgt = img.sum(1)[0]
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    return ((wgt * xs).sum() / wgt.sum()).item(), ((wgt * ys).sum() / wgt.sum()).item()


@pytest.mark.parametrize("tx,ty", [(0.25, 0.0), (-0.13, 0.0), (0.0, 0.2), (0.1, -0.15)])
def test_translation_shifts_image_by_focal_times_baseline_over_depth(tx, ty):
    # A fronto-parallel plane at d = 2.5 m; rel_pose translation t moves every point to X + t in the
    # target camera (the camera moved by -t), so the image moves by f * t / d pixels: tx = 0.25 m -> 6.4 px.
    d = 2.5
    img, depth = _patch_image(), torch.full((1, 1, H, W), d)
    cx0, cy0 = _centroid(img)
    # Normalised weighted sum with 1.5-px splats: symmetric weights, measured errors < 0.02 px.
    out = PointRenderer(radius=px(1.5), points_per_pixel=16, accumulation="wsumnorm")(
        img, depth, intrinsics(), translation(tx, ty))
    cx, cy = _centroid(out["features"])
    assert abs((cx - cx0) - FOCAL * tx / d) < 0.05
    assert abs((cy - cy0) - FOCAL * ty / d) < 0.05
    # The paper's alpha compositing (sub-pixel splats): resampling holes/doubles, measured errors <= 0.26 px.
    out = PointRenderer(radius=px(0.75), points_per_pixel=16, accumulation="alphacomposite")(
        img, depth, intrinsics(), translation(tx, ty))
    cx, cy = _centroid(out["features"])
    assert abs((cx - cx0) - FOCAL * tx / d) < 0.5
    assert abs((cy - cy0) - FOCAL * ty / d) < 0.5


def test_forward_translation_magnifies_about_the_principal_point():
    # Moving 0.5 m towards a plane at 2.5 m scales image offsets from the principal point by 2.5 / 2.0.
    img, depth = _patch_image(), torch.full((1, 1, H, W), 2.5)
    cx0, cy0 = _centroid(img)
    out = PointRenderer(radius=px(1.5), points_per_pixel=16, accumulation="wsumnorm")(
        img, depth, intrinsics(), translation(tz=-0.5))
    cx, cy = _centroid(out["features"])
    assert (cx - 32.0) / (cx0 - 32.0) == pytest.approx(1.25, abs=0.005)
    assert (cy - 32.0) / (cy0 - 32.0) == pytest.approx(1.25, abs=0.005)


def test_points_behind_the_camera_are_dropped():
    img, depth = _patch_image(), torch.full((1, 1, H, W), 2.5)
    out = PointRenderer(radius=px(1.5), points_per_pixel=8)(img, depth, intrinsics(), translation(tz=-3.0))
    assert out["features"].abs().max().item() == 0.0
    assert out["coverage"].max().item() == 0.0
    assert torch.isfinite(out["points"]).all()


def test_gradients_reach_depth_and_features():
    # With a non-identity pose the projected positions depend on depth; pytorch3d back-propagates
    # the point-to-pixel distances into them. (Under the identity pose x/z, y/z do not depend on depth.)
    size = 32
    img = smooth(2, 3, size, 6, seed=5)
    depth = (2.0 + smooth(2, 1, size, 4, seed=6)).requires_grad_(True)
    feats = img.clone().requires_grad_(True)
    K = intrinsics(2, size=size, focal=32.0)
    T = translation(0.2, -0.1).expand(2, 4, 4).clone()
    w = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(7))
    out = PointRenderer(radius=px(2.0, size), points_per_pixel=32, accumulation="alphacomposite")(feats, depth, K, T)
    (out["features"] * w).sum().backward()
    for g in (depth.grad, feats.grad):
        assert torch.isfinite(g).all()
        assert (g != 0).float().mean().item() > 0.9  # measured 0.963: every point that lands in the image
    # Compositing is linear in the features: the analytic gradient equals the central difference exactly.
    v = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(8))
    r = PointRenderer(radius=px(2.0, size), points_per_pixel=32, accumulation="alphacomposite")
    with torch.no_grad():
        fd = ((r(img + v, depth, K, T)["features"] - r(img - v, depth, K, T)["features"]) * w).sum() / 2
    assert fd.item() == pytest.approx((feats.grad * v).sum().item(), rel=1e-4)


def test_depth_gradient_matches_finite_differences():
    # The normalised weighted sum is continuous in depth (alpha -> 0 at the splat edge; alpha
    # compositing is not: z-order swaps jump), so central differences along smooth directions match
    # the analytic gradient. Measured: 0.7324 vs 0.7162, 9.3994 vs 9.3979, -7.9041 vs -7.9100.
    size = 32
    img = smooth(1, 3, size, 6, seed=0)
    depth0 = 2.0 + smooth(1, 1, size, 4, seed=1)
    K, T = intrinsics(1, size=size, focal=32.0), translation(0.2, -0.1)
    w = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2))
    r = PointRenderer(radius=px(2.0, size), points_per_pixel=32, accumulation="wsumnorm")
    depth = depth0.clone().requires_grad_(True)
    (r(img, depth, K, T)["features"] * w).sum().backward()
    g = torch.Generator().manual_seed(3)
    eps = 1e-3
    for _ in range(3):
        v = F.interpolate(torch.randn(1, 1, 4, 4, generator=g), size=(size, size), mode="bicubic", align_corners=False)
        with torch.no_grad():
            fd = ((r(img, depth0 + eps * v, K, T)["features"] - r(img, depth0 - eps * v, K, T)["features"]) * w).sum()
        fd = fd.item() / (2 * eps)
        an = (depth.grad * v).sum().item()
        assert abs(fd - an) <= 0.05 * abs(an) + 0.05, (fd, an)


def test_splat_alphas_formula():
    r = 0.1
    d = torch.tensor([0.0, 0.05, 0.099, 0.2, -1.0])
    dists2 = (d * d).where(d >= 0, torch.tensor(-1.0)).view(1, 1, 1, 5)
    idx = torch.tensor([0, 1, 2, 3, -1]).view(1, 1, 1, 5)
    a = splat_alphas(dists2, idx, radius=r, gamma=2.0).flatten()
    expected = torch.tensor([ALPHA_MAX ** 2, 0.5 ** 2, 0.01 ** 2, 0.0, 0.0])
    torch.testing.assert_close(a, expected, atol=1e-6, rtol=1e-4)


def test_renderer_shape_errors():
    r = PointRenderer(radius=0.05, points_per_pixel=4)
    feats, depth, K, T = torch.rand(2, 5, 8, 8), torch.ones(2, 1, 8, 8), intrinsics(2, 8), torch.eye(4).expand(2, 4, 4)
    with pytest.raises(ValueError, match=r"expected depth of shape \(N, 1, H, W\), got \(2, 8, 8\)"):
        r(feats, depth[:, 0], K, T)
    with pytest.raises(ValueError, match=r"expected K of shape \(2, 3, 3\), got \(3, 3\)"):
        r(feats, depth, K[0], T)
    with pytest.raises(ValueError, match=r"expected rel_pose of shape \(2, 4, 4\), got \(2, 3, 4\)"):
        r(feats, depth, K, T[:, :3])
    with pytest.raises(ValueError, match=r"expected depth of shape \(2, 1, 8, 8\), got \(2, 1, 4, 4\)"):
        r(feats, torch.ones(2, 1, 4, 4), K, T)
    with pytest.raises(ValueError, match="points_per_pixel must be in"):
        PointRenderer(radius=0.05, points_per_pixel=151)


def test_true_depth_warps_multiview_source_onto_its_target():
    """End to end conventions on real generated data: ``dl3d data make multiview``'s poses, as
    ``decode_batch`` turns them into ``rel_pose``, and the renderer's true depth warp the source onto the
    target. Measured on this room (8 pairs, 32 px, 2-px splats, holes filled from the source): warp
    21.9 dB vs copy 17.3 dB; the inverse motion (a wrong pose convention) 17.0 dB."""
    from dl3d.synsin.config import SYNSIN_PRESETS
    from dl3d.synsin.family import decode_batch
    from dl3d.synthetic.multiview import MultiviewSpec, multiview_table, render_scene

    spec = MultiviewSpec(scenes=1, pairs_per_scene=8, image_size=32, shards=1, seed=0)
    batch = decode_batch(multiview_table([0], spec), SYNSIN_PRESETS["cpu-small"], torch.device("cpu"))
    depth = render_scene(0, spec).views.depth[0::2, None]
    renderer = PointRenderer(radius=px(2, 32), points_per_pixel=8)

    def warp_psnr(rel_pose):
        out = renderer(batch["src_img"], depth, batch["K"], rel_pose)
        cov = out["coverage"]
        img = torch.where(cov > 0.05, out["features"] / cov.clamp_min(1e-6), batch["src_img"])
        return psnr(img.clamp(0, 1), batch["tgt_img"]).mean().item()

    copy = psnr(batch["src_img"], batch["tgt_img"]).mean().item()
    right, wrong = warp_psnr(batch["rel_pose"]), warp_psnr(torch.linalg.inv(batch["rel_pose"]))
    assert right > copy + 3.0, (right, copy)
    assert wrong < right - 3.0, (wrong, right)


@pytest.mark.parametrize("accumulation", ["alphacomposite", "wsum", "wsumnorm"])
def test_cpu_compositor_equals_pytorch3d_in_values_and_gradients(accumulation):
    """The CPU compositor replaces pytorch3d's (whose alpha-composite backward is a serial loop): same
    output and gradients on z-buffers with empty slots, including pixels with no point at all."""
    from pytorch3d.renderer.compositing import alpha_composite, norm_weighted_sum, weighted_sum

    reference = {"alphacomposite": alpha_composite, "wsum": weighted_sum, "wsumnorm": norm_weighted_sum}[accumulation]
    g = torch.Generator().manual_seed(3)
    idx = torch.randint(-1, 40, (2, 6, 5, 7), generator=g).sort(dim=1, descending=True).values  # -1 last
    idx[0, :, 0, 0] = -1  # a pixel no point reaches
    alphas = torch.rand(2, 6, 5, 7, generator=g).requires_grad_()
    feats = torch.randn(3, 40, generator=g).requires_grad_()
    weight = torch.randn(2, 3, 5, 7, generator=g)
    ours = composite_points(idx, alphas, feats, accumulation)
    ref = reference(idx, alphas, feats)
    assert ours.shape == ref.shape == (2, 3, 5, 7)
    assert torch.allclose(ours, ref, atol=1e-6) and float(ours[0, :, 0, 0].abs().max()) == 0.0
    grads = [torch.autograd.grad((out * weight).sum(), (alphas, feats)) for out in (ours, ref)]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5), float((a - b).abs().max())


def test_cpu_compositor_passes_gradcheck():
    g = torch.Generator().manual_seed(4)
    idx = torch.randint(-1, 9, (1, 4, 3, 3), generator=g).sort(dim=1, descending=True).values
    alphas = (torch.rand(1, 4, 3, 3, generator=g, dtype=torch.float64) * 0.9).requires_grad_()
    feats = torch.randn(2, 9, generator=g, dtype=torch.float64).requires_grad_()
    for mode in ("alphacomposite", "wsum", "wsumnorm"):
        assert torch.autograd.gradcheck(lambda a, f: composite_points(idx, a, f, mode), (alphas, feats))
