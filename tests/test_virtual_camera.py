"""The virtual camera: deterministic, photographs the frame file as it is now, keeps the x-ray."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from chexphoto.capture.displays import letterbox
from chexphoto.capture.virtual_camera import (
    VirtualCamera,
    apply,
    default_photo_width,
    sample,
    screen_homography,
)
from chexphoto.imageio import ImageReadError, decode_image, write_image
from chexphoto.seeding import derive_rng

SCREEN = (240, 320)  # the reliability tests' small screen (h, w)


@pytest.fixture(scope="module")
def frames(request) -> list[np.ndarray]:
    """Four different 'x-rays' (views of the real radiograph) on a 320x240 screen."""
    img = request.getfixturevalue("rg1_small")
    h, w = img.shape
    sources = [img, np.rot90(img), img[h // 2:, :], 255 - img[:, : 2 * w // 3]]
    return [letterbox(np.ascontiguousarray(s), SCREEN[1], SCREEN[0]) for s in sources]


def test_deterministic_per_seed_and_seq(tmp_path, frames):
    path = tmp_path / "frame.png"
    write_image(path, frames[0])
    a, b = VirtualCamera(path, seed=3), VirtualCamera(path, seed=3)
    assert a.capture(5) == b.capture(5) == a.capture(5)
    assert a.capture(5) != a.capture(6)
    assert VirtualCamera(path, seed=4).capture(5) != a.capture(5)


def test_photographs_the_file_content_at_capture_time(tmp_path, frames):
    path = tmp_path / "frame.png"
    camera = VirtualCamera(path, seed=0)
    write_image(path, frames[0])
    first = camera.capture(7)
    write_image(path, frames[1])  # the screen changed; same seq
    second = camera.capture(7)
    assert first != second
    assert np.array_equal(decode_image(second), decode_image_of_render(camera, frames[1], 7))
    assert np.array_equal(decode_image(first), decode_image_of_render(camera, frames[0], 7))


def decode_image_of_render(camera: VirtualCamera, frame: np.ndarray, seq: int) -> np.ndarray:
    from chexphoto.imageio import encode_image

    return decode_image(encode_image(camera.render(frame, seq), "jpg", quality=camera.options.quality))


def test_colour_jpeg_of_expected_size(tmp_path, frames):
    path = tmp_path / "frame.png"
    write_image(path, frames[0])
    data = VirtualCamera(path).capture(0)
    assert data[:3] == b"\xff\xd8\xff"
    photo = decode_image(data)
    assert photo.shape == (300, 400, 3) and default_photo_width(320) == 400
    # full HD frame -> 1600 x 1200 phone photo; an RGB frame is accepted too
    big = cv2.resize(frames[0], (1920, 1080), interpolation=cv2.INTER_LINEAR)
    write_image(path, np.dstack([big, big, big // 2]))
    photo = decode_image(VirtualCamera(path, seed=1).capture(1))
    assert photo.shape == (1200, 1600, 3)
    assert VirtualCamera(path, photo_width=800).render(big, 0).shape == (600, 800, 3)


def test_unreadable_frame_raises_image_read_error(tmp_path):
    camera = VirtualCamera(tmp_path / "nothing.png")
    with pytest.raises(ImageReadError):
        camera.capture(0)
    (tmp_path / "nothing.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ImageReadError):
        camera.capture(0)


def _unwarped(camera: VirtualCamera, photo: np.ndarray, frame_shape, seq: int) -> np.ndarray:
    params = camera.params_for(seq, *frame_shape)
    back = cv2.warpPerspective(photo, np.linalg.inv(screen_homography(params)), frame_shape[::-1],
                               flags=cv2.INTER_AREA)
    return cv2.cvtColor(back, cv2.COLOR_RGB2GRAY)


def _signature(img: np.ndarray) -> np.ndarray:
    small = cv2.resize(img, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-9)


def test_xray_stays_recognisable(tmp_path, frames):
    path = tmp_path / "frame.png"
    camera = VirtualCamera(path, seed=11)
    sigs = [_signature(f) for f in frames]
    for seq in range(12):
        shown = seq % len(frames)
        write_image(path, frames[shown])
        photo = decode_image(camera.capture(seq))
        corr = [float(_signature(_unwarped(camera, photo, SCREEN, seq)) @ s) for s in sigs]
        others = max(c for k, c in enumerate(corr) if k != shown)
        assert corr[shown] > 0.85, corr
        assert corr[shown] > others + 0.15, corr
        # even without unwarping (pose is mild), the centre of the photo matches best
        h, w = photo.shape[:2]
        centre = cv2.cvtColor(photo[h // 6: -h // 6, w // 8: -w // 8], cv2.COLOR_RGB2GRAY)
        plain = [float(_signature(centre) @ _signature(f[20:-20, 20:-20])) for f in frames]
        assert int(np.argmax(plain)) == shown, plain


def test_sample_apply_are_pure_and_params_json(frames):
    params = sample(derive_rng("t", 1), *SCREEN)
    again = json.loads(json.dumps(params))
    assert again == params
    assert np.array_equal(apply(frames[0], params), apply(frames[0], again))
    assert sample(derive_rng("t", 1), *SCREEN) == params
    with pytest.raises(ValueError):
        apply(frames[0][:100], params)  # params drawn for another frame size


def test_monitor_effects_present(frames):
    """A plain grey screen: the sub-pixel grid gives colour fringes; bezel and room surround it."""
    grey = np.full(SCREEN, 128, np.uint8)
    params = sample(derive_rng("fx", 0), *SCREEN)
    params["noise"]["sigma"] = 0.0
    photo = apply(grey, params).astype(np.int16)
    h, w = photo.shape[:2]
    centre = photo[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    assert np.std(centre[..., 0] - centre[..., 1]) > 1.5  # moire: colour varies across a flat frame
    flat = json.loads(json.dumps(params))
    flat["screen"]["subpixel_amount"] = flat["screen"]["row_gap_amount"] = 0.0
    flat_centre = apply(grey, flat).astype(np.int16)[h // 3: 2 * h // 3, w // 3: 2 * w // 3]
    assert np.std(flat_centre[..., 0] - flat_centre[..., 1]) < np.std(centre[..., 0] - centre[..., 1]) / 2
    # the corners see the room, not the screen; the screen is brighter than its black surround
    assert abs(photo[2, 2].mean() - centre.mean()) > 10
    black = apply(np.zeros(SCREEN, np.uint8), params)
    assert black[h // 2, w // 2].mean() < centre.mean() / 2


def test_portrait_frame_fits_in_photo():
    params = sample(derive_rng("p", 0), 400, 300)
    corners = cv2.perspectiveTransform(np.array([[[0, 0], [300, 0], [300, 400], [0, 400]]], np.float32),
                                       screen_homography(params))[0]
    ph, pw = params["photo_size"]
    assert (corners[:, 0] > 0).all() and (corners[:, 0] < pw).all()
    assert (corners[:, 1] > 0).all() and (corners[:, 1] < ph).all()
