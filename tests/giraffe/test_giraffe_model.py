"""GIRAFFE's math against its formulas, its layer sizes against the official model's, and the box-masked
evaluation against the official evaluate-everywhere-then-mask scheme."""

from __future__ import annotations

import math

import pytest
import torch

from dl3d.giraffe import GIRAFFE_PRESETS, DCDiscriminator, GiraffeConfig, GiraffeGenerator, positional_encoding
from dl3d.giraffe.boxes import boxes_from_controls, rotation_z, sample_object_existence, to_box
from dl3d.giraffe.camera import camera_pose, focal_from_fov, pixel_rays
from dl3d.giraffe.neural_renderer import blur
from dl3d.giraffe.volume import composite, sample_depths, volume_weights

SMALL = GIRAFFE_PRESETS["cpu-small"]


def test_positional_encoding_equals_its_formula():
    x = torch.tensor([[0.3, -0.7, 0.05], [1.0, 0.0, -1.0]], dtype=torch.float64)
    out = positional_encoding(x, 4)
    assert out.shape == (2, 24)
    for i in range(4):
        for d in range(3):
            assert torch.allclose(out[:, 6 * i + d], torch.sin(2 ** i * math.pi * x[:, d]))
            assert torch.allclose(out[:, 6 * i + 3 + d], torch.cos(2 ** i * math.pi * x[:, d]))
    with pytest.raises(ValueError, match="n_freq must be >= 1"):
        positional_encoding(x, 0)


def test_composition_sums_densities_and_weights_features_by_density():
    # 3 fields, 1 scene, 1 ray, 3 samples, 2 channels; the last sample is empty in every field.
    sigma = torch.tensor([[1.0, 0.0, 0.0], [3.0, 2.0, 0.0], [0.0, 2.0, 0.0]]).reshape(3, 1, 1, 3)
    feat = torch.tensor([[[1.0, 0.0]] * 3, [[0.0, 1.0]] * 3, [[5.0, 5.0]] * 3]).reshape(3, 1, 1, 3, 2)
    total, mixed = composite(sigma, feat)
    assert torch.equal(total.flatten(), torch.tensor([4.0, 4.0, 0.0]))
    expected = torch.tensor([[0.25, 0.75], [2.5, 3.0], [0.0, 0.0]])  # (1*f0 + 3*f1)/4, (2*f1 + 2*f2)/4, zero
    assert torch.allclose(mixed.reshape(3, 2), expected)
    # one field: passed through unchanged
    one_s, one_f = composite(sigma[:1], feat[:1])
    assert torch.equal(one_s, sigma[0]) and torch.equal(one_f, feat[0])


def test_volume_weights_equal_their_formula():
    depths = torch.tensor([[[0.5, 1.0, 2.0, 2.5]]], dtype=torch.float64)
    sigma = torch.tensor([[[0.4, -1.0, 2.0, 0.7]]], dtype=torch.float64)
    norm = torch.tensor([[[1.3]]], dtype=torch.float64)
    w = volume_weights(depths, norm, sigma, last_dist=1e10)
    dist = torch.tensor([0.5, 1.0, 0.5, 1e10], dtype=torch.float64) * 1.3
    sig = sigma.flatten().clamp_min(0)
    expected = [(1 - math.exp(-sig[i] * dist[i])) * math.exp(-float((sig[:i] * dist[:i]).sum())) for i in range(4)]
    assert torch.allclose(w.flatten(), torch.tensor(expected, dtype=torch.float64), atol=1e-9)
    assert abs(float(w.sum()) - 1.0) < 1e-9, "an opaque last sample makes the weights sum to one"
    # degenerate: no density anywhere -> no weight; an opaque first sample takes all of it
    assert torch.equal(volume_weights(depths, norm, torch.zeros_like(sigma)), torch.zeros_like(sigma))
    w = volume_weights(depths, norm, torch.tensor([[[1e6, 5.0, 5.0, 5.0]]], dtype=torch.float64))
    assert abs(float(w[0, 0, 0]) - 1.0) < 1e-9 and float(w[0, 0, 1:].abs().max()) < 1e-9


def test_jittered_depths_stay_in_their_interval_and_keep_the_order():
    torch.manual_seed(0)
    d = sample_depths(0.5, 6.0, 2, 10, 8, jitter=True)
    grid = torch.linspace(0.5, 6.0, 8)
    mid = (grid[1:] + grid[:-1]) / 2
    lo, hi = torch.cat((grid[:1], mid)), torch.cat((mid, grid[-1:]))
    assert bool(((d >= lo) & (d <= hi)).all()) and bool((d.diff(dim=-1) >= 0).all())
    assert torch.equal(sample_depths(0.5, 6.0, 1, 1, 8, jitter=False).flatten(), grid)


def test_camera_looks_at_the_origin_with_world_z_up():
    pose = camera_pose(torch.tensor([0.0]), torch.tensor([0.25]), 2.732)
    eye = pose[0, :3, 3]
    assert torch.allclose(eye, torch.tensor([2.732 * math.sin(math.pi / 3), 0.0, 2.732 * 0.5]), atol=1e-6)
    origin, rays = pixel_rays(17, focal_from_fov(49.13), pose)
    centre = rays[0].reshape(17, 17, 3)[8, 8]
    assert torch.allclose(torch.linalg.cross(centre, -eye), torch.zeros(3), atol=1e-5), "centre pixel sees the origin"
    right = rays[0].reshape(17, 17, 3)[8, 16]
    assert float(right[1]) > 0, "with the camera on +x, world +y is on the image's right"
    top = rays[0].reshape(17, 17, 3)[0, 8]
    assert float(top[2]) > float(centre[2]), "row 0 is the top of the image"
    half = math.atan2(float((right - centre).norm()), float(centre.norm()))
    assert abs(math.degrees(2 * half) - 49.13) < 1e-3, "the fov spans the pixel-centre extent"


def test_box_controls_follow_the_preset_ranges():
    cfg = GIRAFFE_PRESETS["cars64"]
    s, t, R = boxes_from_controls(cfg, torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[[0.0, 1.0, 0.5]]]),
                                  torch.tensor([[0.25]]))
    assert torch.allclose(s, torch.tensor([[[0.25, 0.2, 0.2]]])), "fix_scale_ratio: one value scales x, y, z"
    assert torch.allclose(t, torch.tensor([[[-0.22, 0.12, 0.0]]]))
    assert torch.allclose(R, rotation_z(torch.tensor([[0.25]])))
    assert torch.allclose(R[0, 0] @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    # a box's own corner maps to (1, 1, 1) in its frame
    p = t[:, 0] + (R[0, 0].T @ s[0, 0]).reshape(1, 3)
    assert torch.allclose(to_box(p[:, None], s[:, 0], t[:, 0], R[:, 0]), torch.ones(1, 1, 3), atol=1e-6)
    clevr = GIRAFFE_PRESETS["clevr-64"]
    _, t, _ = boxes_from_controls(clevr, torch.zeros(1, 2, 3), torch.rand(1, 2, 3), torch.zeros(1, 2))
    assert torch.allclose(t[..., 2], torch.full((1, 2), 0.1665)), "CLEVR objects sit on the plane"


def test_object_existence_follows_the_clevr2345_count_probabilities():
    present = sample_object_existence(20000, 5, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(present.sum(1), minlength=6)[2:].double() / 20000
    assert torch.allclose(freq, torch.tensor([0.1946, 0.2436, 0.2527, 0.3092], dtype=torch.float64), atol=0.015)
    assert present.sum(1).min() == 2 and present.sum(1).max() == 5


def test_blur_is_the_normalised_121_filter():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 16.0
    y = blur(x)[0, 0]
    assert torch.allclose(y[1:4, 1:4], torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]))
    assert torch.allclose(blur(torch.full((1, 3, 4, 4), 0.7)), torch.full((1, 3, 4, 4), 0.7)), "keeps constants"


# ---- parameter counts of the official model, from its layer definitions --------------------------------------
def _linear(i: int, o: int) -> int:
    return i * o + o


def _official_decoder(hidden: int, blocks: int, skips: tuple[int, ...], z: int, out: int) -> int:
    """im2scene/giraffe/models/decoder.py: fc_in, fc_z, blocks-1 hidden layers, (fc_z_skips, fc_p_skips) per
    skip in range(blocks - 1), sigma_out, fc_z_view, feat_view, fc_view, feat_out (10 / 4 frequencies)."""
    n_skips = sum(i in skips for i in range(blocks - 1))
    return (_linear(60, hidden) + _linear(z, hidden) + (blocks - 1) * _linear(hidden, hidden)
            + n_skips * (_linear(z, hidden) + _linear(60, hidden)) + _linear(hidden, 1) + _linear(z, hidden)
            + _linear(hidden, hidden) + _linear(24, hidden) + _linear(hidden, out))


def _official_renderer(n_feat: int, input_dim: int, min_feat: int, img_size: int) -> int:
    """neural_renderer.py with use_rgb_skip: conv_in (1x1 when n_feat != input_dim), conv_layers, conv_rgb."""
    n = int(math.log2(img_size) - 4)
    conv = lambda i, o, k: i * o * k * k + o  # noqa: E731
    total = 0 if n_feat == input_dim else conv(input_dim, n_feat, 1)
    total += conv(n_feat, n_feat // 2, 3)
    total += sum(conv(max(n_feat // 2 ** (i + 1), min_feat), max(n_feat // 2 ** (i + 2), min_feat), 3)
                 for i in range(n - 1))
    total += conv(input_dim, 3, 3) + sum(conv(max(n_feat // 2 ** (i + 1), min_feat), 3, 3) for i in range(n))
    return total


def _official_discriminator(img_size: int, n_feat: int = 512) -> int:
    """discriminator/conv.py DCDiscriminator: log2(S) - 2 convs 4x4 without bias, then a 4x4 conv to 1."""
    n = int(math.log2(img_size) - 2)
    widths = [3] + [n_feat // 2 ** (n - 1 - i) for i in range(n)]
    return sum(widths[i] * widths[i + 1] * 16 for i in range(n)) + n_feat * 16


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# The official configs' totals (generator = object decoder + background decoder + neural renderer), computed
# by hand from the layer definitions above: 64 px 411,595 (266,241 + 47,041 + 98,313) and 2,763,776;
# 256 px 748,497 and 2,802,432; CLEVR2345 at 256 px 195,441.
PINNED = {"cars64": (411_595, 2_763_776), "cars256": (748_497, 2_802_432), "clevr2345-256": (195_441, 2_802_432)}


@pytest.mark.parametrize("preset", sorted(GIRAFFE_PRESETS))
def test_parameter_counts_equal_the_official_model(preset):
    cfg = GIRAFFE_PRESETS[preset]
    gen = GiraffeGenerator(cfg)
    disc = DCDiscriminator(image_size=cfg.image_size, top_width=cfg.disc_features)
    obj = _official_decoder(cfg.object_hidden, cfg.object_blocks, cfg.object_skips, cfg.z_dim, cfg.feature_dim)
    bg = _official_decoder(cfg.bg_hidden, cfg.bg_blocks, cfg.bg_skips, cfg.z_dim_bg, cfg.feature_dim)
    nr = _official_renderer(cfg.renderer_features, cfg.feature_dim, cfg.renderer_min_features, cfg.image_size
                            * 16 // cfg.feature_resolution)
    assert _count(gen.object_field) == obj
    assert _count(gen.background_field) == bg
    assert _count(gen.neural_renderer) == nr
    assert _count(disc) == _official_discriminator(cfg.image_size, cfg.disc_features)
    if preset in PINNED:
        assert (_count(gen), _count(disc)) == PINNED[preset]


def _scene(gen: GiraffeGenerator, batch: int, seed: int) -> dict:
    torch.manual_seed(seed)
    return gen.sample_scene(batch)


@pytest.mark.parametrize("mode", ["eval", "training"])
def test_box_masked_evaluation_equals_evaluating_everywhere_then_masking(mode):
    cfg = GIRAFFE_PRESETS["clevr-64"].replace(n_samples=24, object_hidden=32, z_dim=16, z_dim_bg=8, bg_hidden=16,
                                              image_size=32)
    torch.manual_seed(3)
    gen = GiraffeGenerator(cfg)
    with torch.no_grad():  # an untrained field is mostly empty: give the objects density to compare
        gen.object_field.sigma_out.bias.fill_(3.0)
    scene = _scene(gen, 3, 7)
    assert not bool(scene["existence"].all()), "some objects are absent in this draw"
    with torch.no_grad():
        torch.manual_seed(11)
        dense = gen.render(**scene, mode=mode, scheme="dense", return_alpha=True)
        torch.manual_seed(11)
        box = gen.render(**scene, mode=mode, scheme="box", return_alpha=True)
    assert float((dense.image - box.image).abs().max()) <= 1e-5
    assert float((dense.features - box.features).abs().max()) <= 1e-5 * float(dense.features.abs().max())
    assert float((dense.alpha - box.alpha).abs().max()) <= 1e-5
    # not vacuous: the objects are visible (some opacity) and dropping them changes the image
    assert float(box.alpha.max()) > 0.05
    with torch.no_grad():
        torch.manual_seed(11)
        bg_only = gen.render(**scene, mode=mode, only_background=True)
    assert float((bg_only.image - box.image).abs().max()) > 1e-3


def test_absent_and_out_of_view_objects_have_zero_opacity():
    cfg = SMALL
    torch.manual_seed(0)
    gen = GiraffeGenerator(cfg)
    with torch.no_grad():
        gen.object_field.sigma_out.bias.fill_(3.0)
    scene = _scene(gen, 2, 1)
    s, t, R = scene["boxes"]
    t = t.clone()
    t[1, 1] = torch.tensor([0.0, 0.0, -50.0])  # far below the ground, behind every ray's samples
    scene["boxes"] = (s, t, R)
    scene["existence"] = torch.tensor([[True, False], [True, True]])
    with torch.no_grad():
        out = gen.render(**scene, return_alpha=True)
    assert out.alpha.shape == (2, 2, 16, 16)
    assert float(out.alpha[0, 1].abs().max()) == 0.0 and float(out.alpha[1, 1].abs().max()) == 0.0
    assert float(out.alpha[0, 0].max()) > 0.05 and float(out.alpha[1, 0].max()) > 0.05, "present objects show"
    assert out.image.shape == (2, 3, 32, 32) and 0 < float(out.image.min()) and float(out.image.max()) < 1


def test_bad_inputs_are_rejected_with_the_expected_shapes():
    gen = GiraffeGenerator(SMALL)
    scene = _scene(gen, 2, 0)
    s, t, R = scene["boxes"]
    with pytest.raises(ValueError, match=r"boxes must have shapes \(B, K, 3\)"):
        gen.render(**{**scene, "boxes": (s[:, :1], t, R)})
    with pytest.raises(ValueError, match="scheme must be 'box' or 'dense'"):
        gen.render(**scene, scheme="sparse")
    with pytest.raises(ValueError, match="image_size must be a power of two"):
        GiraffeConfig(image_size=48)
    with pytest.raises(ValueError, match="sample_object_existence draws 2-5 objects"):
        GiraffeConfig(sample_object_existence=True, n_boxes=2)
    with pytest.raises(ValueError, match="depth_range must have 2 values"):
        GiraffeConfig(depth_range=(1.0,))


def test_box_masked_training_gradients_equal_the_dense_ones():
    """The speed trick is used in training: the object field's gradients match the official scheme's."""
    cfg = SMALL.replace(n_samples=12)
    torch.manual_seed(5)
    gen = GiraffeGenerator(cfg)
    with torch.no_grad():
        gen.object_field.sigma_out.bias.fill_(3.0)
    scene = _scene(gen, 2, 9)
    grads = {}
    for scheme in ("dense", "box"):
        gen.zero_grad()
        torch.manual_seed(4)
        gen.render(**scene, mode="training", scheme=scheme).image.square().sum().backward()
        grads[scheme] = {k: p.grad.clone() for k, p in gen.named_parameters()}
    for k, g in grads["dense"].items():
        scale = float(g.abs().max())
        assert float((grads["box"][k] - g).abs().max()) <= 1e-4 * max(scale, 1e-3), k
    assert float(grads["dense"]["object_field.fc_in.weight"].abs().max()) > 1e-6, "the objects get gradients"
