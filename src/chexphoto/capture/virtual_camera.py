"""A virtual phone camera that photographs whatever frame is on a (virtual) monitor.

``chexphoto capture --display file:PATH`` writes the frame on screen to ``PATH``; the camera
server's ``virtual:PATH`` source reads that file *at the moment of capture* and turns it into a
plausible smartphone photo of a monitor, so the whole capture loop (and every fault in it) can run
without hardware, and tests can check that a photo shows the x-ray its name claims.

The photo model, in the order it is rendered (in the photo's pixel grid, float32 planes):

* **pose** - the screen is a plane seen by a pinhole camera with a phone's field of view, at a
  seeded small yaw/pitch/roll and distance, so it fills most of the photo; the monitor's bezel and
  a bit of the room around it are visible;
* **screen** - the frame is shown with the display's black level (the letterbox is dark grey, not
  0) and a brightness; its RGB sub-pixel stripes and the dark gap between pixel rows are
  evaluated at the screen position each photo pixel sees, attenuated by the sensor's pixel
  footprint (a box-integrating pixel: |sinc|);
* **glare** - a soft, slightly warm reflection of a room light on the glossy screen and bezel;
  **colour cast** (white balance) and **vignetting**;
* **sensor** - an RGGB Bayer mosaic samples one colour per pixel, with signal-dependent shot
  **noise** (seeded); demosaicing it aliases the sub-pixel pattern into the coloured **moire**
  fringes of real photos of screens; a slight lens blur;
* **JPEG** at quality ~90, RGB.

As in :mod:`chexphoto.transforms`, randomness lives only in :func:`sample` (a JSON-serialisable
dict of parameters); :func:`apply` is a pure function of the frame and the parameters, so a photo
can be re-rendered from its recorded parameters. :class:`VirtualCamera` draws the parameters from
``derive_rng(seed, seq)``: the same seed, sequence number and frame always give the same bytes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import cv2
import numpy as np

from chexphoto.imageio import encode_image, read_image
from chexphoto.seeding import derive_rng

#: 4:3, the native aspect ratio of phone camera sensors
PHOTO_ASPECT = 4 / 3
#: default photo width for a full-HD frame; smaller frames get proportionally smaller photos
MAX_PHOTO_WIDTH = 1600
#: low-resolution factor for the smooth fields (room, vignetting, glare)
_FIELD_STEP = 8


@dataclass(frozen=True)
class CameraOptions:
    """Ranges the per-photo parameters are drawn from (the defaults keep the x-ray recognisable)."""

    photo_width: int | None = None  # None: min(1600, 1.25 x frame width)
    quality: int = 90  # JPEG quality
    fov_deg: float = 66.0  # horizontal field of view of a phone's main camera
    fill: tuple[float, float] = (0.84, 0.92)  # fraction of the photo width the screen spans
    max_tilt_deg: float = 3.0  # yaw and pitch of the phone relative to the screen
    max_roll_deg: float = 1.5
    max_offset: float = 0.02  # screen centre offset, fraction of the photo size
    moire: float = 1.0  # 0 disables the sub-pixel pattern
    glare: float = 1.0  # 0 disables the reflection
    noise: float = 1.0  # 0 disables sensor noise


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera rotation (radians): yaw about y, pitch about x, roll about the optical axis."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cr, sr = math.cos(roll), math.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


def _project(params: dict, points: np.ndarray) -> np.ndarray:
    """Photo coordinates of screen-plane points given in frame pixels (N x 2)."""
    frame_h, frame_w = params["frame_size"]
    photo_h, photo_w = params["photo_size"]
    pose = params["pose"]
    f = photo_w / (2 * math.tan(math.radians(pose["fov_deg"]) / 2))
    # distance (in screen-pixel units) at which the screen spans `fill` of the photo width head-on
    distance = f * frame_w / (pose["fill"] * photo_w)
    world = np.column_stack([points[:, 0] - frame_w / 2, points[:, 1] - frame_h / 2, np.zeros(len(points))])
    rot = _rotation(math.radians(pose["yaw_deg"]), math.radians(pose["pitch_deg"]),
                    math.radians(pose["roll_deg"]))
    cam = world @ rot.T + np.array([0.0, 0.0, distance])
    x = f * cam[:, 0] / cam[:, 2] + photo_w / 2 + pose["offset_x"] * photo_w
    y = f * cam[:, 1] / cam[:, 2] + photo_h / 2 + pose["offset_y"] * photo_h
    return np.column_stack([x, y])


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def screen_homography(params: dict) -> np.ndarray:
    """3x3 homography from frame pixel coordinates (pixel centres) to photo pixel coordinates.

    ``cv2.warpPerspective(photo, np.linalg.inv(H), (frame_w, frame_h))`` undoes the pose, e.g. to
    compare a photo with the frame it shows.
    """
    frame_h, frame_w = params["frame_size"]
    # pixel j covers [j - 0.5, j + 0.5]: the screen's physical edges
    src = _rect(-0.5, -0.5, frame_w - 0.5, frame_h - 0.5)
    dst = _project(params, _rect(0, 0, frame_w, frame_h))
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))


def default_photo_width(frame_w: int) -> int:
    """A photo a bit wider than the frame (a phone sees the whole monitor), at most 1600 px."""
    return int(max(64, min(MAX_PHOTO_WIDTH, round(1.25 * frame_w))))


def sample(rng: np.random.Generator, frame_h: int, frame_w: int,
           options: CameraOptions | None = None) -> dict:
    """Draw one photo's parameters (JSON-serialisable); the only place with randomness."""
    o = options or CameraOptions()
    photo_w = int(o.photo_width) if o.photo_width else default_photo_width(frame_w)
    photo_h = int(round(photo_w / PHOTO_ASPECT))

    def u(lo: float, hi: float) -> float:
        return float(rng.uniform(lo, hi))

    pose = {
        "fov_deg": float(o.fov_deg),
        "fill": u(*o.fill),
        "yaw_deg": u(-o.max_tilt_deg, o.max_tilt_deg),
        "pitch_deg": u(-o.max_tilt_deg, o.max_tilt_deg),
        "roll_deg": u(-o.max_roll_deg, o.max_roll_deg),
        "offset_x": u(-o.max_offset, o.max_offset),
        "offset_y": u(-o.max_offset, o.max_offset),
    }
    # a tall (portrait) frame would not fit the height at the width's fill: shrink to fit
    screen_ratio_w = pose["fill"]
    screen_ratio_h = pose["fill"] * (frame_h / frame_w) * PHOTO_ASPECT
    if screen_ratio_h > 0.92:
        pose["fill"] = screen_ratio_w * 0.92 / screen_ratio_h
    wall = [u(110, 175), 0.0, 0.0]
    wall[1] = wall[0] * u(0.93, 1.0)
    wall[2] = wall[0] * u(0.82, 0.95)  # warm indoor walls
    return {
        "frame_size": [int(frame_h), int(frame_w)],
        "photo_size": [photo_h, photo_w],
        "pose": pose,
        "screen": {
            "black_level": u(0.025, 0.06),
            "brightness": u(0.86, 0.97),
            "subpixel_phase": u(0.0, 1.0),
            "subpixel_amount": u(0.55, 0.8) * float(o.moire),
            "row_gap_amount": u(0.15, 0.3) * float(o.moire),
            "bezel_frac": u(0.015, 0.035),
            "bezel_grey": u(18, 38),
        },
        "room": {"wall_rgb": wall, "gradient": u(0.1, 0.3), "angle": u(0, 2 * math.pi)},
        "glare": {
            "x": u(0.2, 0.8), "y": u(0.15, 0.6),  # centre, fraction of the photo
            "sx": u(0.12, 0.3), "sy": u(0.08, 0.2),  # size, fraction of the photo width
            "angle": u(0, math.pi),
            "strength": u(0.08, 0.2) * float(o.glare),
        },
        "color_gain": [u(0.94, 1.06), 1.0, u(0.9, 1.04)],
        "vignette": u(0.15, 0.35),
        "blur_sigma": u(0.4, 0.8),
        "noise": {"sigma": u(0.012, 0.025) * float(o.noise), "seed": int(rng.integers(0, 2**63 - 1))},
        "quality": int(o.quality),
    }


def _smooth_fields(params: dict, photo_h: int, photo_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vignetting gain, room shading x vignetting, glare x vignetting: built small and upscaled
    (they vary slowly)."""
    small_h, small_w = max(2, -(-photo_h // _FIELD_STEP)), max(2, -(-photo_w // _FIELD_STEP))
    ys = (np.arange(small_h, dtype=np.float32) + 0.5) / small_h
    xs = (np.arange(small_w, dtype=np.float32) + 0.5) / small_w
    y, x = ys[:, None], xs[None, :]
    aspect = photo_h / photo_w

    dx, dy = x - 0.5, (y - 0.5) * aspect
    vignette = 1.0 - params["vignette"] * (dx * dx + dy * dy) / 0.39  # ~ strength at the corners

    room = params["room"]
    ramp = (x - 0.5) * math.cos(room["angle"]) + (y - 0.5) * math.sin(room["angle"])
    shade = 1.0 + room["gradient"] * ramp

    g = params["glare"]
    gx, gy = x - g["x"], (y - g["y"]) * aspect
    ca, sa = math.cos(g["angle"]), math.sin(g["angle"])
    rx, ry = (gx * ca + gy * sa) / g["sx"], (-gx * sa + gy * ca) / g["sy"]
    glare = g["strength"] * np.exp(-0.5 * (rx * rx + ry * ry))

    def up(a: np.ndarray) -> np.ndarray:
        return cv2.resize(a.astype(np.float32), (photo_w, photo_h), interpolation=cv2.INTER_LINEAR)

    return up(vignette), up(shade * vignette), up(glare * vignette)


def _screen_coordinates(hinv: np.ndarray, x0: int, y0: int, width: int, height: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Frame coordinates seen by the photo pixels of the box at (x0, y0). A homography is smooth:
    computed exactly on a coarse grid and interpolated bilinearly (error far below a screen pixel)."""
    step = _FIELD_STEP
    gx = x0 + np.arange(0, width + step, step, dtype=np.float64)
    gy = y0 + np.arange(0, height + step, step, dtype=np.float64)
    x, y = np.meshgrid(gx, gy)
    den = hinv[2, 0] * x + hinv[2, 1] * y + hinv[2, 2]
    u = (hinv[0, 0] * x + hinv[0, 1] * y + hinv[0, 2]) / den
    v = (hinv[1, 0] * x + hinv[1, 1] * y + hinv[1, 2]) / den
    # upscale so that grid node k lands exactly on box pixel k*step (dst -> src: x / step)
    to_coarse = np.array([[1.0 / step, 0, 0], [0, 1.0 / step, 0]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    full_u = cv2.warpAffine(u.astype(np.float32), to_coarse, (width, height), flags=flags,
                            borderMode=cv2.BORDER_REPLICATE)
    full_v = cv2.warpAffine(v.astype(np.float32), to_coarse, (width, height), flags=flags,
                            borderMode=cv2.BORDER_REPLICATE)
    return full_u, full_v


def _screen_box(params: dict, photo_h: int, photo_w: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the photo pixels that can see the screen, x0 and y0 even (Bayer phase)."""
    frame_h, frame_w = params["frame_size"]
    corners = _project(params, _rect(0, 0, frame_w, frame_h))
    x0 = max(0, int(math.floor(corners[:, 0].min())) - 2) // 2 * 2
    y0 = max(0, int(math.floor(corners[:, 1].min())) - 2) // 2 * 2
    x1 = min(photo_w, int(math.ceil(corners[:, 0].max())) + 2)
    y1 = min(photo_h, int(math.ceil(corners[:, 1].max())) + 2)
    return x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)


def _quad_masks(params: dict, photo_h: int, photo_w: int) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (0..1, anti-aliased) of the monitor (screen + bezel) and of the screen alone."""
    frame_h, frame_w = params["frame_size"]
    bezel = params["screen"]["bezel_frac"] * frame_w
    quads = (
        _project(params, _rect(-bezel, -bezel, frame_w + bezel, frame_h + bezel * 1.6)),  # chin below
        _project(params, _rect(0, 0, frame_w, frame_h)),
    )
    shift = 4  # fixed-point sub-pixel precision of the polygon fill
    masks = []
    for quad in quads:
        plane = np.zeros((photo_h, photo_w), np.uint8)
        pts = np.round((quad - 0.5) * (1 << shift)).astype(np.int32)
        cv2.fillConvexPoly(plane, pts, 255, cv2.LINE_AA, shift)
        masks.append(plane.astype(np.float32) * np.float32(1 / 255))
    return masks[0], masks[1]


def apply(frame: np.ndarray, params: dict) -> np.ndarray:
    """Render the photo (``uint8`` RGB) of ``frame`` under ``params``; pure and deterministic."""
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise ValueError("frame must be a uint8 grey or RGB image")
    frame_h, frame_w = frame.shape[:2]
    if [frame_h, frame_w] != list(params["frame_size"]):
        raise ValueError(f"params were drawn for a {params['frame_size']} frame, got {[frame_h, frame_w]}")
    photo_h, photo_w = params["photo_size"]
    scr = params["screen"]
    f32 = np.float32
    # Everything below works on single-channel float32 planes (numpy broadcasting over an RGB
    # axis is several times slower).

    # The screen only covers part of the photo: everything about its light is computed in its
    # bounding box, the rest (room, bezel, glare) over the whole photo.
    x0, y0, x1, y1 = _screen_box(params, photo_h, photo_w)
    box = (slice(y0, y1), slice(x0, x1))
    homography = screen_homography(params)
    map_u, map_v = _screen_coordinates(np.linalg.inv(homography), x0, y0, x1 - x0, y1 - y0)

    # what the screen emits (display space, 0..1), sampled where each photo pixel looks
    sampled = cv2.remap(frame, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    planes = [sampled] if sampled.ndim == 2 else list(cv2.split(sampled))
    gain = f32((1.0 - scr["black_level"]) * scr["brightness"] / 255.0)
    offset = f32(scr["black_level"] * scr["brightness"])

    # sub-pixel stripes (R, G, B side by side) and the dark gap between pixel rows: periodic in
    # screen pixels; the sensor integrates over its footprint (attenuating them by |sinc|) and
    # samples at its own pitch, which aliases the pattern into moire fringes
    footprint = frame_w / (photo_w * params["pose"]["fill"])  # screen pixels per photo pixel
    attenuation = abs(math.sin(math.pi * footprint) / (math.pi * footprint))
    attenuation = max(attenuation, 0.08)  # lens aberrations never give a perfect null
    map_u += f32(scr["subpixel_phase"])
    map_u *= f32(2 * math.pi)
    cos_u, sin_u = cv2.polarToCart(None, map_u)
    map_v *= f32(2 * math.pi)
    rows = cv2.polarToCart(None, map_v)[0]
    rows *= f32(scr["row_gap_amount"] * attenuation)
    rows += f32(1.0)

    monitor_alpha, screen_alpha = _quad_masks(params, photo_h, photo_w)
    vignette, room_light, glare = _smooth_fields(params, photo_h, photo_w)

    # Every colour plane is a linear combination of a few per-pixel "base" planes (screen light,
    # its sub-pixel cos/sin modulation, room, bezel, glare) with per-channel coefficients, and the
    # Bayer sensor needs each colour only at its own sites: so the bases are built once and each
    # channel is evaluated on its quarter of the pixels only.
    screen_weight = rows * screen_alpha[box]
    screen_weight *= vignette[box]
    off_screen = 1.0 - screen_alpha
    room_base = (1.0 - monitor_alpha) * off_screen
    room_base *= room_light
    bezel_base = monitor_alpha * off_screen
    bezel_base *= vignette
    bezel_base *= f32(scr["bezel_grey"] / 255.0)
    glare *= monitor_alpha  # a reflection on the glossy screen and bezel, not on the wall

    def screen_light(plane: np.ndarray) -> np.ndarray:
        light = plane.astype(np.float32)
        light *= gain
        light += offset
        light *= screen_weight
        return light

    lights = [screen_light(p) for p in planes]
    sub = scr["subpixel_amount"] * attenuation
    wall = [level / 255.0 for level in params["room"]["wall_rgb"]]
    glare_tint = (1.0, 0.97, 0.9)  # a warm room light
    mosaic = np.empty((photo_h, photo_w), np.float32)
    # RGGB: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1)
    for (dy, dx), c in (((0, 0), 0), ((0, 1), 1), ((1, 0), 1), ((1, 1), 2)):
        site = (slice(dy, None, 2), slice(dx, None, 2))
        shift = 2 * math.pi * c / 3
        value = room_base[site] * f32(wall[c])
        value += bezel_base[site]
        value += glare[site] * f32(glare_tint[c])
        light = lights[c if len(lights) == 3 else 0][site]  # box-local sites: x0, y0 are even
        stripe = cos_u[site] * f32(sub * math.cos(shift))
        stripe += sin_u[site] * f32(sub * math.sin(shift))
        stripe += f32(1.0)
        stripe *= light
        rows_n, cols_n = stripe.shape
        value[y0 // 2: y0 // 2 + rows_n, x0 // 2: x0 // 2 + cols_n] += stripe
        value *= f32(params["color_gain"][c])
        mosaic[site] = value
    raw = cv2.addWeighted(mosaic, 255.0, mosaic, 0.0, 0.0, dtype=cv2.CV_8U)  # rounds and saturates
    noise = params["noise"]
    if noise["sigma"] > 0:
        # shot noise: its standard deviation grows with the square root of the signal (a look-up
        # on the 8-bit raw value); the grain is one random byte per pixel (uniform; demosaicing
        # and the lens blur sum neighbours, which makes it look Gaussian), cheap to draw
        rng = derive_rng("chexphoto.virtual_camera.noise", noise["seed"])
        grain = np.frombuffer(rng.bytes(photo_h * photo_w), np.uint8).reshape(photo_h, photo_w)
        centred = cv2.addWeighted(grain, 1.0, grain, 0.0, -127.5, dtype=cv2.CV_32F)
        unit = math.sqrt(12.0) / 256.0  # makes the centred uniform byte unit-variance
        levels = np.arange(256, dtype=np.float64) / 255.0
        amplitude = (np.sqrt(levels) * (noise["sigma"] * 255.0 * unit)).astype(np.float32)
        raw = cv2.add(raw, cv2.multiply(cv2.LUT(raw, amplitude), centred), dtype=cv2.CV_8U)
    # OpenCV names Bayer patterns by the second row/column: an RGGB mosaic is its "BayerBG"
    photo = cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB)
    if params["blur_sigma"] > 0:  # the lens (and the phone's noise reduction)
        photo = cv2.GaussianBlur(photo, (3, 3), params["blur_sigma"])  # sigma <= 0.8: 3x3 suffices
    return photo


class VirtualCamera:
    """A phone on a tripod in front of a monitor whose current frame is the file ``frame_path``.

    ``capture(seq)`` reads the file at the moment of the call, so it photographs what is on the
    screen then, not what anyone asked for. Photos are deterministic for (seed, seq, frame).
    Keyword options are the fields of :class:`CameraOptions` (e.g. ``photo_width=800``).
    """

    def __init__(self, frame_path: str | os.PathLike, seed: int = 0, **options):
        self.frame_path = os.fspath(frame_path)
        self.seed = int(seed)
        self.options = CameraOptions(**options)

    def sample(self, rng: np.random.Generator, frame_h: int, frame_w: int) -> dict:
        """Draw one photo's parameters with this camera's options."""
        return sample(rng, frame_h, frame_w, self.options)

    def params_for(self, seq: int, frame_h: int, frame_w: int) -> dict:
        """The parameters photo ``seq`` of a ``frame_h`` x ``frame_w`` frame is rendered with."""
        return self.sample(derive_rng("chexphoto.virtual_camera", self.seed, int(seq)), frame_h, frame_w)

    def render(self, frame: np.ndarray, seq: int) -> np.ndarray:
        """The photo (``uint8`` RGB array) of ``frame`` taken as shot ``seq``."""
        return apply(frame, self.params_for(seq, *frame.shape[:2]))

    def capture(self, seq: int) -> bytes:
        """Photograph the frame file now; JPEG bytes. Raises ``ImageReadError`` if unreadable."""
        frame = read_image(self.frame_path)
        photo = self.render(frame, seq)
        return encode_image(photo, "jpg", quality=self.options.quality)
