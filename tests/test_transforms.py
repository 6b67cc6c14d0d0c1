"""The synthetic transforms: contract (sample/apply, JSON params, levels), PIL equality, geometry."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from chexphoto import transforms
from chexphoto.transforms import LEVELS, Chain, apply_recorded, get, pixel_scale, preset
from chexphoto.transforms.optics import gaussian_blur
from chexphoto.transforms.photometric import EXPOSURE_GAIN, enhance_brightness, enhance_contrast
from chexphoto.transforms.registry import params_roundtrip
from chexphoto.transforms.screen import MOIRE_LEVELS, glossy_rectangle

ISSUE_NAMES = [
    "identity",
    "brightness_up",
    "brightness_down",
    "contrast_up",
    "contrast_down",
    "random_digital",
    "exposure",
    "blur",
    "motion",
    "rotation",
    "translation",
    "tilt",
    "glare_matte",
    "glare_glossy",
    "moire",
]
SEEDS = (0, 1, 2, 3)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def sample_apply(name: str, image: np.ndarray, level: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    transform = get(name)
    params = transform.sample(rng(seed), level, *image.shape[:2])
    return params, transform.apply(image, params)


def to_rgb(grey: np.ndarray) -> np.ndarray:
    """A genuinely coloured version (channels differ) of a grey image."""
    return np.ascontiguousarray(np.stack([grey, grey // 2 + 64, 255 - grey], axis=-1))


def test_names_are_the_issue_list_in_order():
    assert transforms.names() == ISSUE_NAMES


def test_families():
    for name in ("brightness_up", "brightness_down", "contrast_up", "contrast_down", "random_digital"):
        assert get(name).family == "digital"
    for name in ("glare_matte", "moire", "tilt"):
        assert get(name).family == "photographic"
    for name in ISSUE_NAMES:
        assert get(name).summary
        for level in LEVELS:
            json.dumps(get(name).level_table(level))


# ------------------------------------------------------------------------------ the contract


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_contract_every_level(name, rg1_small):
    transform = get(name)
    height, width = rg1_small.shape
    colour = to_rgb(rg1_small)
    for level in LEVELS:
        params = transform.sample(rng(7), level, height, width)
        # same seeded rng, same params; JSON-serialisable as is (no numpy types)
        assert params == transform.sample(rng(7), level, height, width)
        text = json.dumps(params, allow_nan=False)
        expected_size = transform.output_size(params, height, width)
        for image in (rg1_small, colour):
            before = image.copy()
            out = transform.apply(image, params)
            assert np.array_equal(image, before), "apply must not modify its input"
            assert out.dtype == np.uint8
            assert out.shape[:2] == expected_size
            assert out.ndim == image.ndim and out.shape[2:] == image.shape[2:]
            # replay from the JSON text reproduces the output byte for byte
            replay = transform.apply(image, json.loads(text))
            assert np.array_equal(out, replay)
        if name != "rotation":
            assert expected_size == (height, width)


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_colour_channels_are_processed_like_grey(name, rg1_small):
    """An RGB image with three equal channels gives the grey result in each channel."""
    grey3 = np.ascontiguousarray(np.repeat(rg1_small[..., None], 3, axis=-1))
    for level in (1, 4):
        params, grey_out = sample_apply(name, rg1_small, level, seed=3)
        colour_out = get(name).apply(grey3, params)
        for channel in range(3):
            assert np.array_equal(colour_out[..., channel], grey_out)


def _effect(name: str, image: np.ndarray, out: np.ndarray) -> float:
    if out.shape != image.shape:  # rotation: compare the centre, where the input was
        height, width = image.shape[:2]
        top, left = (out.shape[0] - height) // 2, (out.shape[1] - width) // 2
        out = out[top : top + height, left : left + width]
    return float(np.abs(out.astype(np.int16) - image.astype(np.int16)).mean())


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_effect_grows_with_level(name, rg1_small):
    effects = []
    for level in LEVELS:
        per_seed = [_effect(name, rg1_small, sample_apply(name, rg1_small, level, seed)[1]) for seed in SEEDS]
        effects.append(float(np.mean(per_seed)))
    if name == "identity":
        assert effects == [0.0, 0.0, 0.0, 0.0]
    else:
        assert effects[0] > 0
        assert all(a < b for a, b in zip(effects, effects[1:], strict=False)), effects


def test_unknown_inputs_are_rejected(rg1_small):
    with pytest.raises(ValueError):
        get("blur").apply(rg1_small.astype(np.float32), {"sigma": 1.0, "scale": 1.0})
    with pytest.raises(ValueError):
        get("moire").apply(np.zeros((10, 10, 4), np.uint8), get("moire").sample(rng(), 1, 10, 10))
    with pytest.raises(ValueError):
        Chain([("tilt", 5)])
    with pytest.raises(KeyError):
        get("sharpen")


# ---------------------------------------------------------------- brightness / contrast = PIL


@pytest.mark.parametrize("kind", ["brightness", "contrast"])
def test_enhance_is_byte_exact_with_pil(kind, rg1_small):
    ours = enhance_brightness if kind == "brightness" else enhance_contrast
    pil = ImageEnhance.Brightness if kind == "brightness" else ImageEnhance.Contrast
    noise = rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    noise.reshape(-1, 3)[:256] = np.arange(256)[:, None]  # every level present
    images = [rg1_small, to_rgb(rg1_small), noise, noise[..., 0].copy()]
    factors = [0.0, 0.5, 1.0, 1.1, 1.0 / 1.2, 2.0] + list(rng(6).uniform(0.2, 2.0, 12))
    for direction in ("up", "down"):
        for level in LEVELS:
            factors.append(get(f"{kind}_{direction}").sample(rng(level), level, 10, 10)["factor"])
    for image in images:
        for factor in factors:
            expected = np.asarray(pil(Image.fromarray(image)).enhance(factor))
            assert np.array_equal(ours(image, factor), expected), (kind, factor, image.shape)


def test_transforms_match_pil_on_the_radiograph(rg1_small):
    for name, pil in (("brightness_up", ImageEnhance.Brightness), ("contrast_down", ImageEnhance.Contrast)):
        for level in LEVELS:
            params, out = sample_apply(name, rg1_small, level, seed=level)
            expected = np.asarray(pil(Image.fromarray(rg1_small)).enhance(params["factor"]))
            assert np.array_equal(out, expected)


def test_level_one_factors_are_the_papers():
    for seed in SEEDS:
        for kind in ("brightness", "contrast"):
            up = get(f"{kind}_up").sample(rng(seed), 1, 100, 100)["factor"]
            down = get(f"{kind}_down").sample(rng(seed), 1, 100, 100)["factor"]
            assert abs(up - 1.1) <= 0.01
            assert abs(down - 0.83) <= 0.01
    assert abs(get("brightness_up").sample(rng(), 4, 10, 10)["factor"] - 1.8) <= 0.01
    assert abs(get("contrast_down").sample(rng(), 3, 10, 10)["factor"] - 1 / 2.2) <= 0.01


def test_random_digital_is_contrast_then_brightness(rg1_small):
    seen = set()
    for seed in range(12):
        params, out = sample_apply("random_digital", rg1_small, 2, seed)
        seen.add((params["contrast"], params["brightness"]))
        contrast = np.asarray(
            ImageEnhance.Contrast(Image.fromarray(rg1_small)).enhance(params["contrast_factor"])
        )
        expected = np.asarray(
            ImageEnhance.Brightness(Image.fromarray(contrast)).enhance(params["brightness_factor"])
        )
        assert np.array_equal(out, expected)
    assert len(seen) == 4  # both coins are fair enough to show every combination


def test_exposure_is_a_sigmoid_whose_gain_grows():
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    gains = [get("exposure").sample(rng(), level, 16, 16)["gain"] for level in LEVELS]
    assert gains[0] == 5 and gains == sorted(gains) and len(set(gains)) == 4
    for level in LEVELS:
        out = get("exposure").apply(ramp, get("exposure").sample(rng(), level, 16, 16)).ravel()
        gain = EXPOSURE_GAIN[level]
        expected = (255 / (1 + np.exp(gain * (0.5 - np.arange(256) / 255)))).astype(np.uint8)
        assert np.array_equal(out, expected)
        assert np.all(np.diff(out.astype(int)) >= 0)


# --------------------------------------------------------------------------------- optics


@pytest.mark.parametrize("sigma", [1.5, 3.0, 6.0, 12.0])
def test_blur_sigma_is_the_gaussian_standard_deviation(sigma):
    # the derivative of a blurred step is the kernel's profile: measure its standard deviation
    step = np.zeros((64, 301), np.uint8)
    step[:, 150:] = 200
    edge = gaussian_blur(step, sigma)[32].astype(np.float64) / 200
    derivative = np.diff(edge)
    centre = (derivative * np.arange(300)).sum() / derivative.sum()
    var = (derivative * (np.arange(300) - centre) ** 2).sum() / derivative.sum()
    assert abs(np.sqrt(var) - sigma) / sigma < 0.1, (np.sqrt(var), sigma)


def test_blur_and_motion_scale_with_the_short_side():
    small = get("blur").sample(rng(), 2, 512, 800)
    large = get("blur").sample(rng(), 2, 2048, 1600)
    assert small["sigma"] == pytest.approx(3.0 * 0.5) and large["sigma"] == pytest.approx(3.0 * 1600 / 1024)
    assert get("motion").sample(rng(), 3, 1024, 1024)["length"] == 25
    assert get("motion").sample(rng(), 3, 2048, 3000)["length"] == 50
    assert get("motion").sample(rng(), 1, 100, 100)["length"] == 2  # never the identity


def test_motion_blurs_horizontally_only():
    bars = np.zeros((40, 40), np.uint8)
    bars[:, ::8] = 255
    horizontal = np.zeros((40, 40), np.uint8)
    horizontal[::8, :] = 255
    params = {"length": 10, "scale": 1.0}
    assert not np.array_equal(get("motion").apply(bars, params), bars)
    assert np.array_equal(get("motion").apply(horizontal, params), horizontal)


# ------------------------------------------------------------------------------- geometry


def test_rotation_enlarges_the_canvas_on_black(rg1_small):
    height, width = rg1_small.shape
    for level in LEVELS:
        params, out = sample_apply("rotation", rg1_small, level, seed=level)
        assert abs(params["angle"]) == 5 * level
        assert out.shape[0] > height and out.shape[1] > width
        assert out[0, 0] == out[0, -1] == out[-1, 0] == out[-1, -1] == 0
    # the whole image is still there: almost no bright pixel lost
    bright = np.full((200, 300), 200, np.uint8)
    out = get("rotation").apply(bright, {"angle": 20.0})
    assert abs(int((out > 100).sum()) - 200 * 300) < 0.02 * 200 * 300


def test_translation_insets_and_shifts(rg1_small):
    white = np.full((400, 500), 255, np.uint8)
    params = get("translation").sample(rng(0), 2, 400, 500)
    scale = pixel_scale(400, 500)
    assert params["inset"] == round(100 * scale)
    assert abs(params["dx"]) == abs(params["dy"]) == round(40 * scale)
    out = get("translation").apply(white, params)
    ys, xs = np.nonzero(out)
    assert xs.min() == params["inset"] + params["dx"] and ys.min() == params["inset"] + params["dy"]
    assert xs.max() == 500 - params["inset"] + params["dx"] - 1
    assert ys.max() == 400 - params["inset"] + params["dy"] - 1
    assert int((out == 255).sum()) == (500 - 2 * params["inset"]) * (400 - 2 * params["inset"])


def test_tilt_is_black_outside_the_quadrilateral():
    height, width = 300, 400
    white = np.full((height, width), 255, np.uint8)
    for level in LEVELS:
        for seed in SEEDS:
            params = get("tilt").sample(rng(seed), level, height, width)
            assert all(0 <= f <= 0.05 * level for corner in params["inward"] for f in corner)
            out = get("tilt").apply(white, params)
            corners = np.array(
                [
                    [width * params["inward"][0][0], height * params["inward"][0][1]],
                    [width * (1 - params["inward"][1][0]), height * params["inward"][1][1]],
                    [width * (1 - params["inward"][2][0]), height * (1 - params["inward"][2][1])],
                    [width * params["inward"][3][0], height * (1 - params["inward"][3][1])],
                ]
            )
            inside = np.zeros((height, width), np.uint8)
            cv2.fillPoly(inside, [np.round(corners - 0.5).astype(np.int32)], 1)
            near = cv2.dilate(inside, np.ones((5, 5), np.uint8))
            assert not out[near == 0].any(), "pixels outside the quadrilateral must be black"
            shrunk = cv2.erode(
                inside, np.ones((5, 5), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0
            )
            assert (out[shrunk == 1] >= 250).all(), "the whole image is mapped inside it"


# --------------------------------------------------------------------------------- screen


def test_glare_matte_opacity_is_a_clipped_gaussian():
    black = np.zeros((512, 512), np.uint8)
    for level in LEVELS:
        params = get("glare_matte").sample(rng(level), level, 512, 512)
        assert params["sigma"] == pytest.approx(50 * level * 0.5)
        out = get("glare_matte").apply(black, params)
        peak = int(out.max())  # white over black at opacity a gives a
        expected = min(100 * level, 150 + 20 * level)
        assert expected - 1 <= peak <= expected
    params = {"centre": [100.0, 100.0], "sigma": 10.0, "peak": 100.0, "cap": 170.0, "scale": 1.0}
    out = get("glare_matte").apply(black, params).astype(float)
    # isotropic Gaussian: opacity at distance sigma is exp(-1/2) of the peak
    assert out[100, 110] == pytest.approx(100 * np.exp(-0.5), abs=1)
    assert out[110, 100] == pytest.approx(100 * np.exp(-0.5), abs=1)
    assert out[100, 100] == 100 and out[100, 200] == 0


def test_glare_glossy_is_a_hard_rectangle():
    height, width = 300, 400
    black = np.zeros((height, width), np.uint8)
    locations = set()
    for seed in range(40):
        level = 1 + seed % 4
        params = get("glare_glossy").sample(rng(seed), level, height, width)
        locations.add(params["location"])
        assert 150 + 20 * level <= params["opacity"] <= 170 + 20 * level
        out = get("glare_glossy").apply(black, params)
        y0, y1, x0, x1 = glossy_rectangle(params, height, width)
        assert (out[y0:y1, x0:x1] == params["opacity"]).all()
        assert int((out > 0).sum()) == (y1 - y0) * (x1 - x0)
        box_w, box_h = params["box"]
        assert 0.1 * level <= box_w <= 0.1 * level + 0.05 and 0.1 * level <= box_h <= 0.1 * level + 0.05
    assert len(locations) == 9


def test_moire_darkens_by_the_lines_coverage():
    white = np.full((600, 500), 255, np.uint8)
    for level in LEVELS:
        params = get("moire").sample(rng(level), level, 600, 500)
        out = get("moire").apply(white, params)
        gap, opacity = MOIRE_LEVELS[level]
        coverage = 1.0 / (1.0 + gap)
        expected = 255 * (1 - int(opacity * 255) / 255 * coverage) ** 2
        assert abs(out.mean() - expected) < 0.03 * 255, (level, out.mean(), expected)
        assert out.min() < 255  # lines are visible
    # the two line sets are near vertical: the pattern varies across columns much more than rows
    params = get("moire").sample(rng(0), 1, 600, 500)
    out = get("moire").apply(white, params).astype(float)
    assert np.abs(np.diff(out, axis=1)).mean() > 3 * np.abs(np.diff(out, axis=0)).mean()


def test_moire_pixel_sizes_scale_with_the_image():
    small = get("moire").sample(rng(0), 3, 512, 700)
    large = get("moire").sample(rng(0), 3, 2048, 2048)
    assert small["gap"] == pytest.approx(2.5 * 0.5) and large["gap"] == pytest.approx(2.5 * 2)
    assert small["thickness"] == pytest.approx(0.5) and large["scale"] == 2.0
    assert small["angles"][0] == 90 and abs(small["angles"][1] - 90) < 6


# ----------------------------------------------------------------------------------- chains


def test_photographic_chain_sample_apply_and_replay(rg1_small):
    chain = preset("photographic")
    assert [s.name for s in chain.steps] == ["glare_matte", "moire", "tilt"]
    recorded = chain.sample(rng(11), *rg1_small.shape)
    assert recorded == chain.sample(rng(11), *rg1_small.shape)
    out = chain.apply(rg1_small, recorded)
    assert out.shape == rg1_small.shape and out.dtype == np.uint8
    assert not np.array_equal(out, rg1_small)
    stored = params_roundtrip(recorded)
    assert np.array_equal(apply_recorded(rg1_small, stored), out)
    assert np.array_equal(chain(rg1_small, rng(11)), out)


def test_chain_tracks_the_size_through_rotation(rg1_small):
    chain = Chain([("rotation", 2), ("tilt", 2), ("moire", 2)])
    recorded = chain.sample(rng(4), *rg1_small.shape)
    out = chain.apply(rg1_small, recorded)
    assert out.shape == get("rotation").output_size(recorded[0]["params"], *rg1_small.shape)


def test_digital_chain_is_random_digital(rg1_small):
    recorded = preset("digital").sample(rng(2), *rg1_small.shape)
    assert [r["name"] for r in recorded] == ["random_digital"] and recorded[0]["level"] == 1


def test_full_size_photographic_chain(rg1_image):
    """One full-resolution pass (1841 x 1955): the chain runs, keeps the size and is reproducible."""
    chain = preset("photographic")
    recorded = chain.sample(rng(0), *rg1_image.shape)
    out = chain.apply(rg1_image, recorded)
    assert out.shape == rg1_image.shape and out.dtype == np.uint8
    assert np.array_equal(apply_recorded(rg1_image, params_roundtrip(recorded)), out)
    difference = np.abs(out.astype(np.int16) - rg1_image).mean()
    assert 1 < difference < 100


def _moire_by_brute_force(params: dict, height: int, width: int) -> np.ndarray:
    """The reference's moiré literally: every 2x-canvas pixel, both line sets, then 2x2 means.

    Written independently of the implementation, from the reference's steps (PIL coordinates):
    a square mask of side 2 * max(2w, 2h) with horizontal lines, a perspective transform whose
    left edge samples the middle ``spread`` of the mask, ``rotate(angle)`` about the centre, a
    centred crop plus offset, black lines composited twice at ``alpha``.
    """
    up_w, up_h = 2 * width, 2 * height
    side = 2 * max(up_w, up_h)
    spread = params["spread"]
    pa = [(0, 0), (side, 0), (side, side), (0, side)]
    pb = [(0, side * (0.5 - spread / 2)), (side, 0), (side, side), (0, side * (0.5 + spread / 2))]
    rows = []
    for (x, y), (u, v) in zip(pa, pb, strict=True):  # coefficients mapping pa (output) to pb (input)
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a, b, c, d, e, f, g, h = np.linalg.solve(np.array(rows, float), np.array(pb, float).ravel())
    ys, xs = np.mgrid[0:up_h, 0:up_w].astype(np.float64) + 0.5  # canvas pixel centres
    count = np.zeros((up_h, up_w))
    for angle, (off_x, off_y) in zip(params["angles"], params["offsets"], strict=True):
        rx = xs + (side - up_w) // 2 + off_x  # crop position in the rotated mask
        ry = ys + (side - up_h) // 2 + off_y
        t = np.radians(angle)  # PIL rotate: input = R(-angle) (output - centre) + centre
        mx = np.cos(t) * (rx - side / 2) - np.sin(t) * (ry - side / 2) + side / 2
        my = np.sin(t) * (rx - side / 2) + np.cos(t) * (ry - side / 2) + side / 2
        row = (d * mx + e * my + f) / (g * mx + h * my + 1)  # perspective: the base mask's row
        period = params["thickness"] + params["gap"]
        count += np.mod(row, period) < params["thickness"]
    canvas = 255 * ((255 - params["alpha"]) / 255) ** count
    return canvas.reshape(height, 2, width, 2).mean(axis=(1, 3))


def test_moire_matches_a_literal_2x_rendering(rg1_small):
    height, width = rg1_small.shape
    white = np.full((height, width), 255, np.uint8)
    for level in LEVELS:
        params = get("moire").sample(rng(level), level, height, width)
        ours = get("moire").apply(white, params).astype(np.float64)
        literal = _moire_by_brute_force(params, height, width)
        assert abs(ours.mean() - literal.mean()) < 1.0
        assert abs(ours.std() - literal.std()) < 0.2 * literal.std()
        # Level 1's lines are wider than a canvas pixel: the same pixels are hit. At levels 3-4 the
        # lines alias and tiny sub-sample position differences flip single hits; the pattern's
        # statistics above still agree.
        if level == 1:
            assert np.abs(ours - literal).mean() < 0.5
