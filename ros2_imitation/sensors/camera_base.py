"""What every camera backend shares, without ROS: the Source interface and its Frame, the two kinds
of error, intrinsics and image geometry, profile parsing, device-to-host clock mapping and
reconnect back-off. The backends are in camera_sources.py (file, OpenCV) and realsense_source.py.

Every backend yields `Frame`s whose ``capture_time`` is host wall-clock time (``time.time()``
domain) at which the image was taken, as well as it is known. Errors come in two kinds:
`SourceConfigError` (the parameters are wrong: retrying cannot help) and `SourceUnavailable`
(no device, device busy or lost: worth retrying).

`ImageGeometry` crops then resizes images and keeps the intrinsics consistent with that.
"""
import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

BACKENDS = ('realsense', 'opencv', 'file')
DEFAULT_REALSENSE_COLOR = (640, 480, 30)
DEFAULT_REALSENSE_DEPTH = (640, 480, 30)


class SourceError(RuntimeError):
    """Base class of capture errors."""


class SourceConfigError(SourceError):
    """The source cannot work with these parameters; retrying will not help."""


class SourceUnavailable(SourceError):
    """No device, device busy, or device lost: may work later."""


# ---------------------------------------------------------------- geometry and intrinsics

@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = 'plumb_bob'
    d: tuple = (0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def from_fov(cls, width: int, height: int, horizontal_fov_deg: float) -> 'Intrinsics':
        """Pinhole with square pixels and the principal point at the image centre."""
        if not 0.0 < horizontal_fov_deg < 180.0:
            raise SourceConfigError(f'horizontal_fov must be in (0, 180) degrees, got {horizontal_fov_deg}')
        f = (width / 2.0) / math.tan(math.radians(horizontal_fov_deg) / 2.0)
        return cls(int(width), int(height), f, f, width / 2.0, height / 2.0)

    def with_overrides(self, fx=0.0, fy=0.0, cx=0.0, cy=0.0) -> 'Intrinsics':
        """Replace the values given as > 0 (0 keeps the current one)."""
        return replace(self, fx=fx if fx > 0 else self.fx, fy=fy if fy > 0 else self.fy,
                       cx=cx if cx > 0 else self.cx, cy=cy if cy > 0 else self.cy)

    def cropped(self, x: int, y: int, width: int, height: int) -> 'Intrinsics':
        return replace(self, width=int(width), height=int(height), cx=self.cx - x, cy=self.cy - y)

    def resized(self, width: int, height: int) -> 'Intrinsics':
        sx, sy = width / self.width, height / self.height
        return replace(self, width=int(width), height=int(height), fx=self.fx * sx, fy=self.fy * sy,
                       cx=self.cx * sx, cy=self.cy * sy)

    @property
    def k(self) -> list:
        return [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]

    @property
    def p(self) -> list:
        return [self.fx, 0.0, self.cx, 0.0, 0.0, self.fy, self.cy, 0.0, 0.0, 0.0, 1.0, 0.0]


@dataclass(frozen=True)
class ImageGeometry:
    """Crop (x, y, width, height; in source pixels) then resize to (width, height).

    Zero width/height means "no crop" / "no resize"; a resize with only one of width and height
    keeps the aspect ratio.
    """
    crop_x: int = 0
    crop_y: int = 0
    crop_width: int = 0
    crop_height: int = 0
    width: int = 0
    height: int = 0

    def check(self, src_width: int, src_height: int) -> tuple:
        """Validate against the source size; returns the output (width, height)."""
        for name in ('crop_x', 'crop_y', 'crop_width', 'crop_height', 'width', 'height'):
            if getattr(self, name) < 0:
                raise SourceConfigError(f'{name} must be >= 0, got {getattr(self, name)}')
        w, h = self._crop_size(src_width, src_height)
        if self.crop_x + w > src_width or self.crop_y + h > src_height or w <= 0 or h <= 0:
            raise SourceConfigError(
                f'crop x={self.crop_x} y={self.crop_y} {w}x{h} does not fit in the '
                f'{src_width}x{src_height} source image')
        return self._out_size(w, h)

    def _crop_size(self, src_width, src_height):
        w = self.crop_width or (src_width - self.crop_x)
        h = self.crop_height or (src_height - self.crop_y)
        return w, h

    def _out_size(self, w, h):
        if self.width and self.height:
            return self.width, self.height
        if self.width:
            return self.width, max(1, round(h * self.width / w))
        if self.height:
            return max(1, round(w * self.height / h)), self.height
        return w, h

    def apply(self, image: np.ndarray, nearest: bool = False) -> np.ndarray:
        """Crop then resize one image (nearest neighbour for depth, area/linear for colour)."""
        import cv2
        src_h, src_w = image.shape[:2]
        w, h = self._crop_size(src_w, src_h)
        out = image[self.crop_y:self.crop_y + h, self.crop_x:self.crop_x + w]
        ow, oh = self._out_size(w, h)
        if (ow, oh) != (w, h):
            interp = cv2.INTER_NEAREST if nearest else (
                cv2.INTER_AREA if ow < w and oh < h else cv2.INTER_LINEAR)
            out = cv2.resize(out, (ow, oh), interpolation=interp)
        return np.ascontiguousarray(out)

    def intrinsics(self, k: Intrinsics) -> Intrinsics:
        w, h = self._crop_size(k.width, k.height)
        out = k.cropped(self.crop_x, self.crop_y, w, h) if (w, h) != (k.width, k.height) or \
            self.crop_x or self.crop_y else k
        ow, oh = self._out_size(w, h)
        return out.resized(ow, oh) if (ow, oh) != (w, h) else out


def parse_profile(text: str, what: str) -> Optional[tuple]:
    """'640,480,30' or '640x480x30' -> (640, 480, 30); '' or '0,0,0' -> None (backend default)."""
    text = str(text).strip()
    if not text:
        return None
    parts = text.replace('x', ',').replace('X', ',').split(',')
    try:
        values = tuple(int(p.strip()) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 0 for v in values):
        raise SourceConfigError(f'{what} must be "WIDTH,HEIGHT,FPS" such as "640,480,30", got {text!r}')
    if values == (0, 0, 0):
        return None
    if 0 in values:
        raise SourceConfigError(f'{what}: width, height and fps must all be > 0 (or all 0), got {text!r}')
    return values


# ---------------------------------------------------------------- timing

class ClockMapper:
    """Maps a device clock to host time: host = device + offset.

    The offset is the smallest (host receive time - device time) seen, i.e. the sample with the
    least transport delay; it may creep up by `max_drift` (s/s) to follow a device clock running
    slower than the host, and is re-learned when the device clock jumps (a reset or wrap).
    """

    def __init__(self, max_drift: float = 1e-4, jump: float = 1.0):
        self.max_drift = max_drift
        self.jump = jump
        self.offset = None
        self._last_host = None
        self._last_device = None

    def __call__(self, device_time: float, host_time: float) -> float:
        d = host_time - device_time
        if self.offset is None or device_time < self._last_device or \
                abs((device_time - self._last_device) - (host_time - self._last_host)) > self.jump:
            self.offset = d
        else:
            self.offset = min(d, self.offset + self.max_drift * (host_time - self._last_host))
        self._last_host, self._last_device = host_time, device_time
        return device_time + self.offset


class Backoff:
    """Exponential back-off delays: initial, 2x initial, ... capped at maximum."""

    def __init__(self, initial: float = 0.5, maximum: float = 10.0, factor: float = 2.0):
        if not (initial > 0 and maximum >= initial and factor >= 1):
            raise SourceConfigError(f'retry delays must satisfy 0 < initial <= maximum, got {initial}, {maximum}')
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.attempts = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.attempts)
        self.attempts += 1
        return delay

    def reset(self):
        self.attempts = 0


# ---------------------------------------------------------------- sources

@dataclass
class Frame:
    rgb: np.ndarray                      # (H, W, 3) uint8, RGB order
    capture_time: float                  # host wall-clock seconds (time.time() domain)
    depth: Optional[np.ndarray] = None   # (H, W) uint16 millimetres
    index: int = 0


class Source:
    """A capture backend. `open()` may raise SourceError; `read()` blocks until the next frame
    and returns it, returns None at the end of a finite stream, or raises SourceUnavailable when
    the device is lost."""
    name = 'source'
    period: Optional[float] = None       # seconds between frames when the caller must pace reads
    has_depth = False
    depth_aligned = False

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Optional[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @property
    def size(self) -> tuple:
        raise NotImplementedError

    def intrinsics(self) -> Optional[Intrinsics]:
        """Colour intrinsics when the device knows them, else None."""
        return None

    def depth_intrinsics(self) -> Optional[Intrinsics]:
        return None

    def describe(self) -> str:
        return self.name
