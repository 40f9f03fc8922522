"""Camera capture backends, without ROS (`open_source`):

* ``realsense``: an Intel RealSense through pyrealsense2 (realsense_source.py); colour as rgb8,
  optional depth (aligned to colour or not) converted to 16-bit millimetres, intrinsics from the
  device, device timestamps mapped to host time.
* ``opencv``: ``cv2.VideoCapture`` on a device index ('0') or a path/URL (USB/V4L2 cameras).
* ``file``: a video file replayed at its own frame rate or a configured one, optionally looping.

The interface they share (Source, Frame, errors, geometry, clock mapping) is camera_base.py.
"""
import math
import os
import time
from typing import Callable, Optional

from ros2_imitation.sensors.camera_base import (  # noqa: F401
    BACKENDS,
    DEFAULT_REALSENSE_COLOR,
    DEFAULT_REALSENSE_DEPTH,
    Backoff,
    ClockMapper,
    Frame,
    ImageGeometry,
    Intrinsics,
    Source,
    SourceConfigError,
    SourceError,
    SourceUnavailable,
    parse_profile,
)


def _cv2():
    import cv2
    return cv2


class _CaptureSource(Source):
    """What the two cv2.VideoCapture backends share: the size, BGR -> RGB frames, release."""
    _cap = None
    _size = (0, 0)
    index = 0

    @property
    def size(self):
        return self._size

    def _frame(self, bgr, t: float) -> Frame:
        self.index += 1
        return Frame(rgb=_cv2().cvtColor(bgr, _cv2().COLOR_BGR2RGB), capture_time=t, index=self.index - 1)

    def close(self):
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FileSource(_CaptureSource):
    """A video file replayed at `frame_rate` (0: the file's own rate), looping if asked."""
    name = 'file'

    def __init__(self, path: str, frame_rate: float = 0.0, loop: bool = True,
                 clock: Callable[[], float] = time.time):
        self.path = str(path)
        self.frame_rate = float(frame_rate)
        self.loop = bool(loop)
        self.clock = clock
        self._cap = None
        self._size = None
        self.file_fps = 0.0
        self.index = 0

    def open(self):
        cv2 = _cv2()
        if not self.path:
            raise SourceConfigError('backend "file" needs the video_file parameter (a video path)')
        if not os.path.isfile(self.path):
            raise SourceConfigError(f'video file {self.path!r} does not exist')
        if self.frame_rate < 0 or not math.isfinite(self.frame_rate):
            raise SourceConfigError(f'frame_rate must be >= 0 (0: the file\'s rate), got {self.frame_rate}')
        cap = cv2.VideoCapture(self.path)
        ok, first = cap.read() if cap.isOpened() else (False, None)
        if not ok:
            cap.release()
            raise SourceConfigError(f'cannot decode video file {self.path!r} with OpenCV')
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        self.file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        rate = self.frame_rate or self.file_fps
        if not (rate > 0 and math.isfinite(rate)):
            cap.release()
            raise SourceConfigError(f'video file {self.path!r} does not say its frame rate: set frame_rate')
        self.period = 1.0 / rate
        self._size = (first.shape[1], first.shape[0])
        self._cap = cap
        self.index = 0

    def read(self) -> Optional[Frame]:
        cv2 = _cv2()
        ok, bgr = self._cap.read()
        if not ok:
            if not self.loop:
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
            if not ok:
                raise SourceUnavailable(f'video file {self.path!r} cannot be rewound')
        return self._frame(bgr, self.clock())

    def describe(self):
        return (f'file {self.path} ({self._size[0]}x{self._size[1]}, {1.0 / self.period:g} fps'
                f'{", looping" if self.loop else ""})')


class OpenCVSource(_CaptureSource):
    """cv2.VideoCapture on a device index ('0') or a device path / URL."""
    name = 'opencv'

    def __init__(self, device: str = '0', profile: Optional[tuple] = None,
                 clock: Callable[[], float] = time.time):
        self.device = str(device).strip()
        self.profile = profile
        self.clock = clock
        self._cap = None
        self._size = None
        self.index = 0

    def open(self):
        cv2 = _cv2()
        if not self.device:
            raise SourceConfigError('backend "opencv" needs the device parameter (an index like "0" or a path)')
        target = int(self.device) if self.device.isdigit() else self.device
        cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            raise SourceUnavailable(f'cannot open camera {self.device!r} with OpenCV '
                                    f'(no such device, no permission, or it is busy)')
        if self.profile:
            w, h, fps = self.profile
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
            cap.set(cv2.CAP_PROP_FPS, fps)
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise SourceUnavailable(f'camera {self.device!r} opened but gives no frames')
        self._size = (first.shape[1], first.shape[0])
        if self.profile and self._size != tuple(self.profile[:2]):
            cap.release()
            raise SourceConfigError(f'camera {self.device!r} does not support {self.profile[0]}x{self.profile[1]}'
                                    f' (it gives {self._size[0]}x{self._size[1]})')
        self._cap = cap
        self.index = 0

    def read(self) -> Optional[Frame]:
        ok, bgr = self._cap.read()
        t = self.clock()
        if not ok:
            raise SourceUnavailable(f'camera {self.device!r} stopped giving frames (unplugged?)')
        return self._frame(bgr, t)

    def describe(self):
        return f'OpenCV camera {self.device} ({self._size[0]}x{self._size[1]})'


def open_source(backend: str, **kwargs) -> Source:
    """A Source for `backend` (not yet opened). Unknown backend: SourceConfigError."""
    if backend == 'realsense':
        from ros2_imitation.sensors.realsense_source import RealSenseSource
        return RealSenseSource(**{k: v for k, v in kwargs.items() if k in (
            'serial_no', 'color_profile', 'depth_profile', 'enable_depth', 'align_depth', 'rs_module')})
    if backend == 'opencv':
        return OpenCVSource(device=kwargs.get('device', '0'), profile=kwargs.get('color_profile'))
    if backend == 'file':
        return FileSource(kwargs.get('video_file', ''), kwargs.get('frame_rate', 0.0), kwargs.get('loop', True))
    raise SourceConfigError(f'unknown backend {backend!r} (choose one of {", ".join(BACKENDS)})')
