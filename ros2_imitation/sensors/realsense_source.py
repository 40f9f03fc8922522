"""The Intel RealSense capture backend (pyrealsense2): colour as rgb8, optional depth (aligned to
colour or not) in 16-bit millimetres, intrinsics from the device, device timestamps mapped to host
time. camera_sources.open_source('realsense', ...) builds one.
"""
import time
from typing import Callable, Optional

import numpy as np

from ros2_imitation.sensors.camera_base import (
    DEFAULT_REALSENSE_COLOR,
    DEFAULT_REALSENSE_DEPTH,
    ClockMapper,
    Frame,
    Intrinsics,
    Source,
    SourceConfigError,
    SourceUnavailable,
)

_RS_DISTORTION = {'brown_conrady': 'plumb_bob', 'inverse_brown_conrady': 'plumb_bob',
                  'modified_brown_conrady': 'plumb_bob', 'none': 'plumb_bob',
                  'kannala_brandt4': 'equidistant', 'ftheta': 'equidistant'}


def import_realsense():
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        hint = ' (apt-get install libusb-1.0-0)' if 'libusb' in str(exc) else \
            ' (pip install pyrealsense2)'
        raise SourceConfigError(f'backend "realsense" needs pyrealsense2, which cannot be loaded: {exc}{hint}')
    return rs


class RealSenseSource(Source):
    """Colour (rgb8) and optional depth from an Intel RealSense through pyrealsense2."""
    name = 'realsense'

    def __init__(self, serial_no: str = '', color_profile: Optional[tuple] = None,
                 depth_profile: Optional[tuple] = None, enable_depth: bool = False,
                 align_depth: bool = False, timeout: float = 2.0, rs_module=None,
                 clock: Callable[[], float] = time.time):
        self.serial_no = str(serial_no).strip()
        self.color_profile = color_profile or DEFAULT_REALSENSE_COLOR
        self.depth_profile = depth_profile or DEFAULT_REALSENSE_DEPTH
        self.has_depth = bool(enable_depth)
        self.depth_aligned = bool(enable_depth and align_depth)
        self.timeout_ms = int(timeout * 1000)
        self.clock = clock
        self._rs = rs_module
        self._pipeline = None
        self._align = None
        self._depth_scale_mm = 1.0
        self._intrinsics = None
        self._depth_intrinsics = None
        self._mapper = ClockMapper()
        self._device_name = ''
        self.index = 0

    def open(self):
        rs = self._rs or import_realsense()
        self._rs = rs
        devices = rs.context().query_devices()
        found = []
        for i in range(devices.size()):
            dev = devices[i]
            found.append((dev.get_info(rs.camera_info.serial_number), dev.get_info(rs.camera_info.name)))
        if not found:
            raise SourceUnavailable('no RealSense device connected (pyrealsense2 found 0 devices; '
                                    'check the USB cable, a USB 3 port and udev rules)')
        if self.serial_no and self.serial_no not in [s for s, _ in found]:
            raise SourceUnavailable(f'no RealSense device with serial_no {self.serial_no!r} '
                                    f'(connected: {", ".join(f"{n} {s}" for s, n in found)})')
        serial = self.serial_no or found[0][0]
        self._device_name = f'{dict(found)[serial]} {serial}'
        config = rs.config()
        config.enable_device(serial)
        w, h, fps = self.color_profile
        config.enable_stream(rs.stream.color, w, h, rs.format.rgb8, fps)
        if self.has_depth:
            dw, dh, dfps = self.depth_profile
            config.enable_stream(rs.stream.depth, dw, dh, rs.format.z16, dfps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:
            text = str(exc)
            if 'resolve' in text.lower():
                raise SourceConfigError(
                    f'RealSense {self._device_name} does not support colour {w}x{h}@{fps}'
                    + (f' with depth {dw}x{dh}@{dfps}' if self.has_depth else '') + f': {text}')
            raise SourceUnavailable(f'RealSense {self._device_name} cannot start streaming: {text}')
        try:
            self._intrinsics = self._read_intrinsics(profile.get_stream(rs.stream.color))
            if self.has_depth:
                scale = profile.get_device().first_depth_sensor().get_depth_scale()
                self._depth_scale_mm = float(scale) * 1000.0
                self._depth_intrinsics = self._intrinsics if self.depth_aligned else \
                    self._read_intrinsics(profile.get_stream(rs.stream.depth))
                self._align = rs.align(rs.stream.color) if self.depth_aligned else None
        except Exception:
            pipeline.stop()
            raise
        self._pipeline = pipeline
        self._mapper = ClockMapper()
        self.index = 0

    @staticmethod
    def _read_intrinsics(stream_profile) -> Intrinsics:
        i = stream_profile.as_video_stream_profile().get_intrinsics()
        model = str(i.model).split('.')[-1]
        d = tuple(float(c) for c in i.coeffs)[:5]
        return Intrinsics(int(i.width), int(i.height), float(i.fx), float(i.fy), float(i.ppx), float(i.ppy),
                          _RS_DISTORTION.get(model, 'plumb_bob'), d + (0.0,) * (5 - len(d)))

    @property
    def size(self):
        return (self._intrinsics.width, self._intrinsics.height)

    def intrinsics(self):
        return self._intrinsics

    def depth_intrinsics(self):
        return self._depth_intrinsics

    def _capture_time(self, frame, received: float) -> float:
        rs = self._rs
        t = frame.get_timestamp() * 1e-3
        domain = frame.get_frame_timestamp_domain()
        if domain in (rs.timestamp_domain.global_time, rs.timestamp_domain.system_time):
            return min(t, received)       # already host (epoch) time
        return min(self._mapper(t, received), received)   # device hardware clock

    def read(self) -> Optional[Frame]:
        try:
            frames = self._pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError as exc:
            raise SourceUnavailable(f'RealSense {self._device_name} lost: {exc}')
        received = self.clock()
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            raise SourceUnavailable(f'RealSense {self._device_name} sent a frame set without colour')
        rgb = np.asanyarray(color.get_data()).copy()
        depth = None
        if self.has_depth:
            df = frames.get_depth_frame()
            if df:
                raw = np.asanyarray(df.get_data())
                if abs(self._depth_scale_mm - 1.0) < 1e-9:
                    depth = raw.copy()
                else:
                    depth = np.clip(np.rint(raw * self._depth_scale_mm), 0, 65535).astype(np.uint16)
        self.index += 1
        return Frame(rgb=rgb, depth=depth, capture_time=self._capture_time(color, received),
                     index=self.index - 1)

    def close(self):
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except RuntimeError:
                pass
            self._pipeline = None

    def describe(self):
        w, h, fps = self.color_profile
        depth = ''
        if self.has_depth:
            depth = f', depth {"aligned to colour" if self.depth_aligned else "%dx%d" % self.depth_profile[:2]}'
        return f'RealSense {self._device_name} (colour {w}x{h}@{fps}{depth})'
