"""Synthetic faces: identity appearance, per-clip head motion and blinks, and OpenCV rendering of a
frame from its 68 landmarks.

Geometry lives in template units (`stylesync.face.template`); a per-frame similarity transform M
(2x3, units -> frame pixels) places the face like a VoxCeleb2 crop (eyebrows-to-chin 50% of the
frame height, centred, slightly above the middle) and adds the head motion. Everything else that
is drawn (forehead, hair, ears, neck, body) is defined in the same units and moved by the same M.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ..face.template import TEMPLATE_BOX, canonical_landmarks

FACE_SPAN = 0.5  # eyebrows-to-chin height / frame height
FACE_Y = 0.48  # face centre height / frame height (slightly above the middle)
SKIN = [(250, 222, 196), (238, 196, 160), (222, 170, 128), (196, 136, 98), (156, 102, 72), (108, 72, 52)]
HAIR = [(28, 22, 20), (58, 38, 26), (105, 70, 42), (168, 128, 78), (206, 176, 118), (138, 62, 32), (150, 148, 146)]
IRIS = [(72, 46, 30), (104, 72, 42), (64, 104, 142), (74, 112, 82), (42, 32, 26)]
HAIR_STYLES = ("short", "long", "buzz", "bob")
BACKGROUNDS = ("gradient", "stripes", "blobs", "shelves")
_SHIFT = 4  # sub-pixel bits for cv2 drawing


@dataclass
class Appearance:
    """What an identity looks like (fixed across its clips)."""

    jaw_width: float
    face_length: float
    eye_spacing: float
    mouth_width: float
    skin: tuple
    lip: tuple
    hair: tuple
    hair_style: str
    hairline: float  # template y of the hairline
    parting: float  # -1..1, side of the fringe
    iris: tuple
    brow: float  # eyebrow thickness, units
    shirt: tuple
    light: float  # -1..1, side of the key light
    background: str
    bg_colours: tuple  # two RGB colours
    bg_seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def _jitter(rng: np.random.Generator, rgb, amount: float) -> tuple:
    return tuple(float(v) for v in np.clip(np.asarray(rgb, float) * rng.uniform(1 - amount, 1 + amount, 3), 0, 255))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    skin = _jitter(rng, SKIN[int(rng.integers(len(SKIN)))], 0.05)
    red = np.array([176.0, 62.0, 70.0])
    lip = np.clip(0.47 * np.asarray(skin) + 0.45 * red * rng.uniform(0.75, 1.05), 0, 255)
    hsv = np.stack([rng.uniform(0, 180, 2), rng.uniform(20, 160, 2), rng.uniform(60, 230, 2)], 1)  # (2, 3)
    bg = cv2.cvtColor(hsv[None].astype(np.uint8), cv2.COLOR_HSV2RGB)[0].astype(float)  # (2, 3)
    return Appearance(
        jaw_width=float(rng.uniform(0.9, 1.1)), face_length=float(rng.uniform(0.92, 1.08)),
        eye_spacing=float(rng.uniform(0.92, 1.08)), mouth_width=float(rng.uniform(0.88, 1.1)),
        skin=skin, lip=tuple(float(v) for v in lip), hair=_jitter(rng, HAIR[int(rng.integers(len(HAIR)))], 0.1),
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))], hairline=float(rng.uniform(-4, 3)),
        parting=float(rng.uniform(-1, 1)), iris=_jitter(rng, IRIS[int(rng.integers(len(IRIS)))], 0.1),
        brow=float(rng.uniform(1.6, 2.8)), shirt=tuple(float(v) for v in rng.uniform(20, 235, 3)),
        light=float(rng.uniform(-1, 1)), background=BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
        bg_colours=(tuple(bg[0]), tuple(bg[1])), bg_seed=int(rng.integers(2**31)),
    )


# ------------------------------------------------------------------------------ motion
@dataclass
class Motion:
    """Per-frame head pose and eyes: each (T,) except gaze (T, 2)."""

    tx: np.ndarray  # pixels at 224
    ty: np.ndarray
    rot: np.ndarray  # degrees, in-plane
    scale: np.ndarray  # relative
    eye_open: np.ndarray  # 0 closed .. 1 open
    gaze: np.ndarray  # iris offset, units
    yaw: np.ndarray  # radians: head turn (not removable by 2-D alignment)
    exposure: np.ndarray  # camera gain drift (1 = none)


def _wander(rng: np.random.Generator, t: np.ndarray, amp: float) -> np.ndarray:
    """A smooth random signal (T,): 3 sinusoids, 0.08-0.7 Hz, peak ~amp."""
    f = rng.uniform(0.08, 0.7, 3)
    a = rng.uniform(0.3, 1.0, 3)
    y = (a[:, None] * np.sin(2 * np.pi * f[:, None] * t + rng.uniform(0, 2 * np.pi, 3)[:, None])).sum(0)
    return amp * y / a.sum()


def blinks(rng: np.random.Generator, n_frames: int, fps: float) -> np.ndarray:
    """eye_open (T,): 1 open, a 4-6 frame dip through 0 every 2-5 s (the first at 0.2-2 s)."""
    eye = np.ones(n_frames)
    t = rng.uniform(0.2, 2.0)
    while int(t * fps) < n_frames:
        d = int(rng.integers(4, 7))
        profile = np.r_[0.4, np.zeros(d - 3), 0.35, 0.75]  # fast close, slower reopening
        i = int(t * fps)
        eye[i:i + d] = profile[: n_frames - i]
        t += rng.uniform(2.0, 5.0)
    return eye


def sample_motion(rng: np.random.Generator, n_frames: int, fps: float, yaw: float = 0.12,
                  exposure: float = 0.07) -> Motion:
    t = np.arange(n_frames) / fps
    gaze = np.stack([_wander(rng, t, 0.8) + rng.uniform(-0.6, 0.6), _wander(rng, t, 0.3)], 1)
    return Motion(tx=_wander(rng, t, 4.0), ty=_wander(rng, t, 3.0), rot=_wander(rng, t, 3.0),
                  scale=1 + _wander(rng, t, 0.05), eye_open=blinks(rng, n_frames, fps), gaze=gaze,
                  yaw=_wander(rng, t, yaw), exposure=1 + _wander(rng, t, exposure))


def head_transform(app: Appearance, res: int, tx: float, ty: float, rot_deg: float, scale: float) -> np.ndarray:
    """(2, 3) similarity: template units -> frame pixels (x, y). Like a face-detector crop, the
    eyebrows-to-chin height is FACE_SPAN of the frame for every identity (before `scale`)."""
    neutral = canonical_landmarks(jaw_width=app.jaw_width, face_length=app.face_length)
    top, chin = neutral[17:27, 1].mean(), neutral[8, 1]
    s = scale * FACE_SPAN * res / (chin - top)
    c, si = np.cos(np.deg2rad(rot_deg)) * s, np.sin(np.deg2rad(rot_deg)) * s
    a = np.array([[c, -si], [si, c]])
    centre = np.array([TEMPLATE_BOX[0] / 2, (top + chin) / 2])  # units
    b = np.array([res / 2 + tx * res / 224, FACE_Y * res + ty * res / 224]) - a @ centre
    return np.concatenate([a, b[:, None]], 1)


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(2, 3) affine on (..., 2) points."""
    return pts @ m[:, :2].T + m[:, 2]


def frame_landmarks(app: Appearance, m: np.ndarray, mouth_open: float, mouth_width: float,
                    eye_open: float, yaw: float = 0.0) -> np.ndarray:
    """(68, 2) landmarks in frame pixels."""
    lm = canonical_landmarks(mouth_open=mouth_open, mouth_width=mouth_width, jaw_width=app.jaw_width,
                             face_length=app.face_length, eye_open=eye_open, eye_spacing=app.eye_spacing, yaw=yaw)
    return apply(m, lm)


# ------------------------------------------------------------------------------ background
def background(app: Appearance, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the identity's procedural, slightly defocused background."""
    rng = np.random.default_rng(app.bg_seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (S, S) in [0, 1)
    ang = rng.uniform(0, np.pi)
    u = x * np.cos(ang) + y * np.sin(ang)  # (S, S)
    c1, c2 = (np.asarray(c, np.float32) for c in app.bg_colours)
    if app.background == "gradient":
        w = (u - u.min()) / (u.max() - u.min())
    elif app.background == "stripes":
        w = 0.5 + 0.5 * np.tanh(3 * np.sin(2 * np.pi * u * rng.uniform(4, 12)))
    elif app.background == "blobs":
        w = np.zeros_like(x)
        for _ in range(int(rng.integers(5, 12))):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
            w += rng.uniform(0.4, 1) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        w = np.clip(w, 0, 1)
    else:  # shelves: columns of book-like bars between horizontal boards
        w = np.zeros_like(x)
        edges = np.cumsum(rng.uniform(0.02, 0.06, 60))
        levels = rng.uniform(0.2, 1.0, 60)
        w = levels[np.minimum(np.searchsorted(edges, x), 59)]
        for yb in np.arange(rng.uniform(0.1, 0.3), 1, rng.uniform(0.25, 0.4)):
            w[np.abs(y - yb) < 0.02] = 0.0
    img = c1 * (1 - w[..., None]) + c2 * w[..., None]  # (S, S, 3)
    img *= (1 - 0.25 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))[..., None]  # vignette
    img += rng.normal(0, 2.5, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), size / 250)
    return np.clip(img, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ rendering
def _spline(p: np.ndarray, closed: bool = False, k: int = 6) -> np.ndarray:
    """Catmull-Rom curve through (K, 2) points -> (~K*k, 2)."""
    p = np.asarray(p, np.float64)
    if closed:
        q = np.concatenate([p[-1:], p, p[:2]])
    else:
        q = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]])
    t = np.linspace(0, 1, k, endpoint=False)[None, :, None]  # (1, k, 1)
    p0, p1, p2, p3 = (q[i:len(q) - 3 + i, None] for i in range(4))  # (S, 1, 2)
    c = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
               + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)
    c = c.reshape(-1, 2)
    return c if closed else np.concatenate([c, p[-1:]])


def _ellipse(c, ax: float, ay: float, a0: float, a1: float, n: int = 24) -> np.ndarray:
    """(n, 2) points on an ellipse from angle a0 to a1 (radians; y down, so -pi/2 is the top)."""
    a = np.linspace(a0, a1, n)
    return np.stack([c[0] + ax * np.cos(a), c[1] + ay * np.sin(a)], 1)


def _head_geometry(app: Appearance) -> dict[str, np.ndarray]:
    """Static outlines in template units: skull arc, hair, ears, neck, shirt."""
    cx = TEMPLATE_BOX[0] / 2
    neutral = canonical_landmarks(jaw_width=app.jaw_width, face_length=app.face_length)
    hx, yt = neutral[16, 0] - cx, neutral[16, 1]  # half width and height of the temples
    hy = yt + 14.0  # skull top at y = -14
    g = {"skull": _ellipse((cx, yt), hx, hy, -0.02, -np.pi + 0.02, 20)}  # right temple -> over the top -> left
    outer = _ellipse((cx, yt), hx + 3, hy + 4, 0.15, -np.pi - 0.15, 28)  # hair volume, right -> left
    u = np.linspace(-1, 1, 11)
    hairline = np.stack([cx + u * (hx + 1.5), app.hairline + (yt + 3 - app.hairline) * np.abs(u) ** 2.2
                         + 3 * app.parting * u], 1)  # left -> right
    g["hair_front"] = np.concatenate([outer, hairline])
    low = {"short": yt + 4, "buzz": yt + 1, "bob": 80.0, "long": 112.0}[app.hair_style]
    g["hair_back"] = np.concatenate([[[cx + hx + 5, low]], outer, [[cx - hx - 5, low]]])
    g["ears"] = np.stack([_ellipse((cx - hx - 1.5, 37), 4.5, 9, 0, 2 * np.pi, 20),
                          _ellipse((cx + hx + 1.5, 37), 4.5, 9, 0, 2 * np.pi, 20)])
    nw = 0.55 * hx
    g["neck"] = np.array([[cx - nw, 60], [cx + nw, 60], [cx + nw + 2, 112], [cx, 118], [cx - nw - 2, 112]])
    side = np.array([[100, 170], [92, 128], [70, 112], [40, 104], [16, 104]])
    g["shirt"] = np.concatenate([np.c_[cx - side[:, 0], side[:, 1]], [[cx, 116]],
                                 np.c_[cx + side[::-1, 0], side[::-1, 1]]])
    return g


def _pts(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * (1 << _SHIFT)).astype(np.int32)


def _fill(img: np.ndarray, polys, colour) -> None:
    cv2.fillPoly(img, [_pts(p) for p in polys], tuple(float(c) for c in colour), cv2.LINE_AA, _SHIFT)


def _line(img: np.ndarray, p: np.ndarray, colour, width: float, closed: bool = False) -> None:
    cv2.polylines(img, [_pts(p)], closed, tuple(float(c) for c in colour), max(int(round(width)), 1),
                  cv2.LINE_AA, _SHIFT)


def _roi(img: np.ndarray, p: np.ndarray, pad: float) -> tuple[slice, slice, np.ndarray]:
    """Bounding box of points (+pad) clipped to the image, and the offset to subtract."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(p.min(0) - pad).astype(int)
    x1, y1 = np.ceil(p.max(0) + pad).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(max(x1, 1), w), min(max(y1, 1), h)
    return slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1)), np.array([x0, y0], float)


def _blend(img: np.ndarray, p: np.ndarray, alpha: float, draw, pad: float = 4) -> None:
    """Draw `draw(layer, offset)` over the region of points p with opacity alpha."""
    ys, xs, off = _roi(img, p, pad)
    roi = img[ys, xs]
    layer = roi.copy()
    draw(layer, off)
    cv2.addWeighted(layer, alpha, roi, 1 - alpha, 0, dst=roi)


def _clipped(img: np.ndarray, clip: np.ndarray, draw) -> None:
    """Draw `draw(layer, offset)` only inside the polygon `clip` (anti-aliased)."""
    ys, xs, off = _roi(img, clip, 2)
    roi = img[ys, xs]
    layer = roi.copy()
    draw(layer, off)
    mask = np.zeros(roi.shape[:2], np.uint8)
    _fill(mask, [clip - off], (255,))
    a = (mask.astype(np.float32) / 255)[..., None]
    roi[:] = (layer * a + roi * (1 - a) + 0.5).astype(np.uint8)


def _scaled(colour, k: float) -> tuple:
    return tuple(float(np.clip(c * k, 0, 255)) for c in colour)


def _disc(c: np.ndarray, rx: float, ry: float, n: int = 16) -> np.ndarray:
    """(n, 2) closed ellipse outline around c."""
    return _ellipse(c, rx, ry, 0, 2 * np.pi, n)


def _circle(img: np.ndarray, c: np.ndarray, r: float, colour) -> None:
    cv2.circle(img, tuple(int(v) for v in _pts(c)), int(r * (1 << _SHIFT)), colour, -1, cv2.LINE_AA, _SHIFT)


class FaceRenderer:
    """Renders one identity's frames: `render(landmarks (68, 2) px, M (2, 3), gaze (2,))`.

    Drawn at `supersample` x the resolution with anti-aliased OpenCV primitives, then area-resized."""

    def __init__(self, app: Appearance, res: int, supersample: int = 2):
        self.app, self.res, self.ss = app, res, supersample
        self.bg = background(app, res * supersample)
        self.geo = _head_geometry(app)

    def render(self, landmarks: np.ndarray, m: np.ndarray, gaze=(0.0, 0.0)) -> np.ndarray:
        """(res, res, 3) uint8 RGB frame."""
        app = self.app
        k = self.ss  # supersampled pixel centres: X = (x + 0.5) * k - 0.5
        m = np.asarray(m, np.float64) * k
        m[:, 2] += (k - 1) / 2  # units -> supersampled pixels
        lm = np.asarray(landmarks, np.float64) * k + (k - 1) / 2  # (68, 2)
        unit = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # pixels per template unit

        def vec(dx: float, dy: float) -> np.ndarray:  # a displacement in template units -> pixels
            return m[:, :2] @ np.array([dx, dy])

        geo = {k: apply(m, v) for k, v in self.geo.items()}
        img = self.bg.copy()
        skin = np.asarray(app.skin)
        _fill(img, [_spline(geo["shirt"], k=4)], app.shirt)
        _fill(img, [geo["hair_back"]], _scaled(app.hair, 0.8))
        _fill(img, [geo["neck"]], _scaled(skin, 0.8))
        shadow = [_disc(lm[8] + vec(0, 1 - r), 22 * unit, r * unit) for r in (9.0, 6.0)]  # under the chin

        def chin_shadow(layer, off):
            for q, k in zip(shadow, (0.72, 0.64)):
                _fill(layer, [q - off], _scaled(skin, k))
        _clipped(img, geo["neck"], chin_shadow)
        if app.hair_style in ("short", "buzz"):
            _fill(img, list(geo["ears"]), _scaled(skin, 0.92))
        face = np.concatenate([_spline(lm[0:17], k=4), geo["skull"]])
        _fill(img, [face], skin)
        self._shade(img, face, lm)
        hair_colour = app.hair if app.hair_style != "buzz" else 0.6 * np.asarray(app.hair) + 0.4 * skin
        _fill(img, [_spline(geo["hair_front"], closed=True, k=3)], hair_colour)
        self._brows(img, lm, unit)
        self._eyes(img, lm, unit, vec, vec(*gaze))
        self._nose(img, lm, unit, vec)
        self._mouth(img, lm, unit, vec)
        return cv2.resize(img, (self.res, self.res), interpolation=cv2.INTER_AREA)

    def _shade(self, img: np.ndarray, face: np.ndarray, lm: np.ndarray) -> None:
        """Darken the face towards its outline and on the side away from the light (at 1/4 scale)."""
        k = 4
        h, w = img.shape[0] // k, img.shape[1] // k
        mask = np.zeros((h, w), np.uint8)
        _fill(mask, [face / k], (255,))
        inside = mask.astype(np.float32) / 255  # (h, w)
        edge = 1 - cv2.GaussianBlur(inside, (0, 0), h / 25)
        half = max(np.ptp(face[:, 0]) / 2 / k, 1)
        lateral = np.clip((np.arange(w, dtype=np.float32) - lm[30, 0] / k) / half, -1, 1)[None] * -self.app.light
        dark = inside * np.clip(0.55 * edge + 0.1 * lateral, -0.05, 0.5)  # (h, w)
        factor = cv2.resize(1 - dark, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
        ys, xs, _ = _roi(img, face, 2)
        img[ys, xs] = (img[ys, xs] * factor[ys, xs, None] + 0.5).astype(np.uint8)

    def _brows(self, img: np.ndarray, lm: np.ndarray, unit: float) -> None:
        """Tapered ribbons along 17-21 and 22-26."""
        colour = _scaled(self.app.hair, 0.75)
        prof = np.array([0.7, 1.0, 1.0, 0.8, 0.45])  # thickness, inner -> outer end of the left brow
        for sl, p in ((slice(17, 22), prof), (slice(22, 27), prof[::-1])):
            c = _spline(lm[sl], k=4)  # (K, 2)
            t = np.interp(np.linspace(0, 4, len(c)), np.arange(5), p) * self.app.brow * unit / 2  # (K,)
            d = np.gradient(c, axis=0)
            n = np.stack([-d[:, 1], d[:, 0]], 1) / (np.linalg.norm(d, axis=1, keepdims=True) + 1e-9)
            _fill(img, [np.concatenate([c + n * t[:, None], (c - n * t[:, None])[::-1]])], colour)

    def _eyes(self, img, lm, unit, vec, gaze) -> None:
        """Sclera, iris, pupil and glint clipped to the lids; lash line, lower lid, crease."""
        lash, crease = _scaled(self.app.hair, 0.4), _scaled(self.app.skin, 0.6)
        for i in (36, 42):
            eye = lm[i:i + 6]
            upper, lower = _spline(eye[0:4], k=5), _spline(np.r_[eye[3:6], eye[:1]], k=5)
            c = (eye[0] + eye[3]) / 2 + gaze
            if np.linalg.norm(eye[1] - eye[5]) > 0.3 * unit:  # open enough to see the eyeball
                def draw(layer, off, c=c):
                    layer[:] = (232, 226, 220)
                    _circle(layer, c - off, 3.1 * unit, self.app.iris)
                    _circle(layer, c - off, 1.3 * unit, (15, 12, 12))
                    _circle(layer, c - off + vec(-0.8, -0.9), 0.45 * unit, (250, 250, 250))
                _clipped(img, np.concatenate([upper, lower[1:-1]]), draw)
                _blend(img, lower, 0.35, lambda lay, o, lower=lower: _line(lay, lower - o, lash, 0.35 * unit))
            fold = upper + vec(0, -1.8)
            _blend(img, fold, 0.4, lambda lay, o, fold=fold: _line(lay, fold - o, crease, 0.4 * unit))
            _line(img, upper, lash, 0.7 * unit)

    def _nose(self, img, lm, unit, vec) -> None:
        """A faint bridge shadow on the side away from the light, the nose base and nostrils."""
        dark = _scaled(self.app.skin, 0.55)
        bridge = lm[28:31] + vec(1.6 * np.sign(self.app.light or 1), 0)
        _blend(img, bridge, 0.12, lambda lay, o: _line(lay, bridge - o, dark, 1.0 * unit))
        base = _spline(lm[31:36], k=4)
        _blend(img, base, 0.45, lambda lay, o: _line(lay, base - o, dark, 0.5 * unit))
        nostrils = [_disc(lm[j] + vec(0, -0.4), 1.2 * unit, 0.6 * unit, 12) for j in (32, 34)]
        _blend(img, np.concatenate(nostrils), 0.7, lambda lay, o: _fill(lay, [q - o for q in nostrils], (40, 20, 20)))

    def _mouth(self, img, lm, unit, vec) -> None:
        """Lips (outer contour), a lower-lip highlight, the dark mouth with tongue and upper teeth when
        open, and the lip seam."""
        lip = np.asarray(self.app.lip)
        outer, inner = _spline(lm[48:60], closed=True, k=4), _spline(lm[60:68], closed=True, k=4)
        _fill(img, [outer], lip)
        shine = _disc(lm[57] + vec(0, -1.5), 4 * unit, 1.0 * unit)
        _blend(img, shine, 0.25, lambda lay, o: _fill(lay, [shine - o], _scaled(lip, 1.35)))
        gap = np.linalg.norm(lm[62] - lm[66]) / unit  # lip gap, units
        if gap > 0.15:
            top = _spline(lm[60:65], k=6)
            top = top[int(0.12 * len(top)):int(0.88 * len(top)) + 1]  # upper teeth between the canines
            teeth = np.concatenate([top, (top + vec(0, min(1.1, 0.3 * gap)))[::-1]])
            tongue = _disc(lm[66] + vec(0, 0.5), 0.3 * np.linalg.norm(lm[64] - lm[60]), 0.35 * gap * unit)

            def draw(layer, off):
                layer[:] = (48, 14, 20)
                _fill(layer, [tongue - off], (150, 60, 70))
                _fill(layer, [teeth - off], (236, 230, 214))
            _clipped(img, inner, draw)
        seam = _spline(np.r_[lm[48:49], lm[60:65], lm[54:55]], k=4)
        _line(img, seam, _scaled(lip, 0.45), 0.45 * unit)
