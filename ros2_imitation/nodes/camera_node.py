"""Camera node: RealSense, USB (OpenCV) or a video file, published like realsense2_camera.

Image (rgb8) + CameraInfo on realsense2_camera's topic names, sensor-data QoS, stamped with the
capture time (device time mapped to ROS time when the backend has one). Capture runs in its own
thread; the executor only serves parameters and the like. The capture logic itself lives in
ros2_imitation.sensors.camera_sources (ROS-free).
"""
import math
import threading
import time

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ros2_imitation.nodes.common import StartupError, image_qos, run_node, to_stamp
from ros2_imitation.sensors.camera_sources import (
    BACKENDS,
    Backoff,
    ImageGeometry,
    Intrinsics,
    SourceConfigError,
    SourceError,
    SourceUnavailable,
    open_source,
    parse_profile,
)

PARAMETERS = dict(
    backend='realsense',
    # realsense (names as in realsense2_camera)
    serial_no='',
    **{'rgb_camera.color_profile': '', 'depth_module.depth_profile': '', 'align_depth.enable': False},
    enable_depth=False,
    # opencv
    device='0',
    # file
    video_file='',
    frame_rate=0.0,
    loop=True,
    # image geometry: crop (source pixels) then resize; 0 = off
    crop_x=0, crop_y=0, crop_width=0, crop_height=0,
    width=0, height=0,
    # intrinsics when the backend has none (opencv, file); 0 = from horizontal_fov
    fx=0.0, fy=0.0, cx=0.0, cy=0.0, horizontal_fov=69.0,
    frame_id='camera_color_optical_frame',
    depth_frame_id='camera_depth_optical_frame',
    image_topic='/camera/camera/color/image_raw',
    # reliable, as realsense2_camera's default: best-effort subscribers receive it too (common.image_qos)
    image_reliability='reliable',
    camera_info_topic='/camera/camera/color/camera_info',
    depth_topic='',        # '' = .../aligned_depth_to_color/image_raw or .../depth/image_rect_raw
    depth_info_topic='',
    retry=False,
    retry_initial_delay=0.5,
    retry_max_delay=10.0,
)
NS = '/camera/camera'


class CameraNode(Node):
    def __init__(self):
        super().__init__('camera')
        p = self.p = self._declare_all()
        if p['backend'] not in BACKENDS:
            raise StartupError(f'unknown backend {p["backend"]!r} (choose one of {", ".join(BACKENDS)})')
        try:
            self.source = open_source(
                p['backend'], serial_no=p['serial_no'],
                color_profile=parse_profile(p['rgb_camera.color_profile'], 'rgb_camera.color_profile'),
                depth_profile=parse_profile(p['depth_module.depth_profile'], 'depth_module.depth_profile'),
                enable_depth=p['enable_depth'], align_depth=p['align_depth.enable'],
                device=p['device'], video_file=p['video_file'], frame_rate=p['frame_rate'], loop=p['loop'])
            self.geometry = ImageGeometry(*(int(p[k]) for k in (
                'crop_x', 'crop_y', 'crop_width', 'crop_height', 'width', 'height')))
            self.backoff = Backoff(p['retry_initial_delay'], p['retry_max_delay'])
        except SourceConfigError as exc:
            raise StartupError(str(exc))
        if p['backend'] in ('opencv', 'file') and p['enable_depth']:
            raise StartupError(f'enable_depth needs the realsense backend (backend is {p["backend"]!r})')
        aligned = self.source.depth_aligned
        depth_topic = p['depth_topic'] or (f'{NS}/aligned_depth_to_color/image_raw' if aligned
                                           else f'{NS}/depth/image_rect_raw')
        depth_info_topic = p['depth_info_topic'] or (f'{NS}/aligned_depth_to_color/camera_info' if aligned
                                                     else f'{NS}/depth/camera_info')
        qos = image_qos(p['image_reliability'])
        self.image_pub = self.create_publisher(Image, p['image_topic'], qos)
        self.info_pub = self.create_publisher(CameraInfo, p['camera_info_topic'], qos)
        self.depth_pub = self.depth_info_pub = None
        if self.source.has_depth:
            self.depth_pub = self.create_publisher(Image, depth_topic, qos)
            self.depth_info_pub = self.create_publisher(CameraInfo, depth_info_topic, qos)

        self._stop = threading.Event()
        self._opened = False
        self._fatal = None
        self._fatal_guard = self.create_guard_condition(self._raise_fatal)
        self.published = 0
        if not p['retry']:
            # fail now, before spinning, so bringup and the user see why at once
            try:
                self._open()
            except SourceError as exc:
                raise StartupError(f'{exc} (set retry:=true to keep trying)'
                                   if isinstance(exc, SourceUnavailable) else str(exc))
        self._thread = threading.Thread(target=self._capture_loop, name='capture', daemon=True)
        self._thread.start()

    # ---- parameters ----
    def _declare_all(self) -> dict:
        """Declare every parameter; numbers and strings are typed leniently (`fx:=500` is a
        float, `serial_no:=123` a string), anything else that does not fit is a StartupError."""
        values = {}
        for name, default in PARAMETERS.items():
            lenient = isinstance(default, (float, str))
            try:
                value = self.declare_parameter(
                    name, default, ParameterDescriptor(dynamic_typing=lenient)).value
            except Exception as exc:  # wrong type given on the command line / params file
                raise StartupError(f'parameter {name}: {exc}')
            if isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise StartupError(f'parameter {name} must be a number, got {value!r}')
                value = float(value)
            elif isinstance(default, str):
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise StartupError(f'parameter {name} must be a string, got {value!r}')
                value = str(value)
            values[name] = value
        # realsense2_camera convention: serial_no:=_123456 keeps a numeric serial a string
        values['serial_no'] = values['serial_no'].lstrip('_')
        return values

    # ---- capture thread ----
    def _open(self):
        src = self.source
        src.open()
        try:
            out_size = self.geometry.check(*src.size)
            base = src.intrinsics()
            if base is None:
                base = Intrinsics.from_fov(*src.size, self.p['horizontal_fov']).with_overrides(
                    self.p['fx'], self.p['fy'], self.p['cx'], self.p['cy'])
        except SourceError:
            src.close()
            raise
        self.color_info = self._info_msg(self.geometry.intrinsics(base), self.p['frame_id'])
        self.depth_info = None
        if src.has_depth:
            if src.depth_aligned:
                self.depth_info = self._info_msg(self.geometry.intrinsics(base), self.p['frame_id'])
            else:
                self.depth_info = self._info_msg(src.depth_intrinsics(), self.p['depth_frame_id'])
        self._opened = True
        self.get_logger().info(f'streaming from {src.describe()} -> {self.p["image_topic"]} '
                               f'{out_size[0]}x{out_size[1]} rgb8')

    def _fail(self, message: str):
        self._fatal = message
        self._fatal_guard.trigger()

    def _raise_fatal(self):
        if self._fatal:
            raise StartupError(self._fatal)

    def _capture_loop(self):
        log = self.get_logger()
        next_due = None
        while not self._stop.is_set():
            if not self._opened:
                try:
                    self._open()
                    next_due = None
                except SourceConfigError as exc:
                    return self._fail(str(exc))
                except SourceError as exc:
                    delay = self.backoff.next()
                    log.warning(f'{exc}; retrying in {delay:.1f} s (attempt {self.backoff.attempts})')
                    self._stop.wait(delay)
                    continue
            period = self.source.period
            if period and self.get_clock().now().nanoseconds == 0:
                # a replayed file waits for /clock instead of playing its frames into the void
                self._warn_no_clock()
                self._stop.wait(0.05)
                next_due = None
                continue
            if period:
                now = time.monotonic()
                if next_due is None or now > next_due + period:
                    next_due = now        # start, or fell behind by more than a frame: re-anchor
                elif self._stop.wait(next_due - now):
                    break
                next_due += period
            try:
                frame = self.source.read()
            except SourceError as exc:
                self.source.close()
                self._opened = False
                if not self.p['retry']:
                    return self._fail(f'{exc} (set retry:=true to reconnect)')
                # back off here too: a device that opens but gives no frames must not spin the CPU
                delay = self.backoff.next()
                log.error(f'{exc}; reconnecting in {delay:.1f} s')
                self._stop.wait(delay)
                continue
            if frame is None:
                log.info(f'end of {self.source.describe()}; set loop:=true to replay it continuously')
                return
            self.backoff.reset()   # only a delivered frame proves the device works again
            self._publish(frame)

    def _warn_no_clock(self):
        self.get_logger().warning('use_sim_time is set and no /clock yet: no frames published until it comes',
                               throttle_duration_sec=5.0)

    def _stamp(self, capture_time: float):
        now_ns = self.get_clock().now().nanoseconds
        if now_ns == 0:
            return None  # sim time before the first /clock: a 0 stamp would be a lie
        latency = max(0.0, time.time() - capture_time)
        return to_stamp(now_ns * 1e-9 - latency)

    def _publish(self, frame):
        stamp = self._stamp(frame.capture_time)
        if stamp is None:
            self._warn_no_clock()
            return
        rgb = self.geometry.apply(frame.rgb)
        try:
            self.image_pub.publish(self._image_msg(rgb, 'rgb8', stamp, self.p['frame_id']))
            self.color_info.header.stamp = stamp
            self.info_pub.publish(self.color_info)
            if frame.depth is not None and self.depth_pub is not None:
                aligned = self.source.depth_aligned
                depth = self.geometry.apply(frame.depth, nearest=True) if aligned else frame.depth
                frame_id = self.p['frame_id'] if aligned else self.p['depth_frame_id']
                self.depth_pub.publish(self._image_msg(depth, '16UC1', stamp, frame_id))
                self.depth_info.header.stamp = stamp
                self.depth_info_pub.publish(self.depth_info)
        except Exception as exc:  # the context is shutting down under us
            if not self._stop.is_set():
                self.get_logger().error(f'publish failed: {exc}', throttle_duration_sec=5.0)
            return
        self.published += 1

    @staticmethod
    def _image_msg(array, encoding, stamp, frame_id) -> Image:
        msg = Image()
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        msg.height, msg.width = array.shape[:2]
        msg.encoding = encoding
        msg.is_bigendian = 0
        msg.step = msg.width * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
        msg.data = array.tobytes()
        return msg

    @staticmethod
    def _info_msg(k: Intrinsics, frame_id: str) -> CameraInfo:
        info = CameraInfo()
        info.header.frame_id = frame_id
        info.width, info.height = int(k.width), int(k.height)
        info.distortion_model = k.distortion_model
        info.d = [float(v) for v in k.d]
        info.k = [float(v) for v in k.k]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [float(v) for v in k.p]
        return info

    def close(self):
        self._stop.set()
        thread = getattr(self, '_thread', None)
        if thread is not None:
            thread.join(timeout=3.0)
        source = getattr(self, 'source', None)
        if source is not None and not (thread and thread.is_alive()):
            source.close()


def camera() -> CameraNode:  # named so that start-up errors read "[camera] cannot start: ..."
    return CameraNode()


def main(args=None):
    return run_node(camera, args)


if __name__ == '__main__':
    raise SystemExit(main())
