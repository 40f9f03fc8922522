"""Camera: ROS-free capture backends and geometry, then camera_node through real DDS.

The test video is written here with OpenCV (mp4v), so no binary is committed: top half pure red,
bottom half pure blue (RGB), which catches a BGR/RGB swap.
"""
import math
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from ros2_imitation.sensors.camera_sources import (
    Backoff,
    ClockMapper,
    FileSource,
    ImageGeometry,
    Intrinsics,
    OpenCVSource,
    SourceConfigError,
    SourceUnavailable,
    open_source,
    parse_profile,
)
from ros2_imitation.sensors.realsense_source import RealSenseSource

W, H, FPS, N_FRAMES = 64, 48, 20.0, 40
RED, BLUE = (255, 0, 0), (0, 0, 255)


def make_video(path, frames=N_FRAMES, fps=FPS, size=(W, H)):
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, size)
    assert writer.isOpened()
    w, h = size
    for i in range(frames):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[:h // 2] = RED
        rgb[h // 2:] = BLUE
        rgb[h // 2 - 4:h // 2 + 4, (i * 3) % (w - 8):(i * 3) % (w - 8) + 8] = (0, 255, 0)  # moving square
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return str(path)


@pytest.fixture(scope='module')
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp('video') / 'colours.mp4')


def assert_red_over_blue(rgb):
    h = rgb.shape[0]
    top = rgb[1:h // 4].reshape(-1, 3).mean(axis=0)
    bottom = rgb[-h // 4:-1].reshape(-1, 3).mean(axis=0)
    assert top[0] > 200 and top[1] < 60 and top[2] < 60, f'top should be red (RGB), got {top}'
    assert bottom[2] > 200 and bottom[0] < 60 and bottom[1] < 60, f'bottom should be blue (RGB), got {bottom}'


# ---------------------------------------------------------------- ROS-free

def test_parse_profile():
    assert parse_profile('640,480,30', 'p') == (640, 480, 30)
    assert parse_profile('1280x720x15', 'p') == (1280, 720, 15)
    assert parse_profile('', 'p') is None and parse_profile('0,0,0', 'p') is None
    for bad in ('640,480', 'a,b,c', '640,0,30', '-1,480,30'):
        with pytest.raises(SourceConfigError, match='WIDTH,HEIGHT,FPS|all be > 0'):
            parse_profile(bad, 'rgb_camera.color_profile')


def test_intrinsics_from_fov_crop_resize():
    k = Intrinsics.from_fov(640, 480, 90.0)
    assert k.fx == pytest.approx(320.0) and k.fy == pytest.approx(320.0)
    assert (k.cx, k.cy) == (320.0, 240.0)
    assert k.with_overrides(fx=500.0).fx == 500.0 and k.with_overrides(fx=500.0).fy == k.fy
    geometry = ImageGeometry(crop_x=80, crop_y=0, crop_width=480, crop_height=480, width=96, height=96)
    assert geometry.check(640, 480) == (96, 96)
    out = geometry.intrinsics(k)
    assert (out.width, out.height) == (96, 96)
    assert out.fx == pytest.approx(320.0 * 96 / 480) and out.cx == pytest.approx((320.0 - 80) * 96 / 480)
    # a 3-D point lands on the same (scaled, shifted) pixel before and after
    X = np.array([0.3, -0.2, 2.0])

    def project(kk):
        return np.array([kk.fx * X[0] / X[2] + kk.cx, kk.fy * X[1] / X[2] + kk.cy])
    u0, v0 = project(k)
    u1, v1 = project(out)
    assert u1 == pytest.approx((u0 - 80) * 96 / 480) and v1 == pytest.approx(v0 * 96 / 480)
    assert len(out.k) == 9 and len(out.p) == 12


def test_geometry_apply_and_checks():
    img = np.arange(48 * 64 * 3, dtype=np.uint8).reshape(48, 64, 3)
    g = ImageGeometry(crop_x=8, crop_y=4, crop_width=32, crop_height=20)
    assert np.array_equal(g.apply(img), img[4:24, 8:40])
    assert ImageGeometry(width=32).check(64, 48) == (32, 24)          # keeps the aspect ratio
    assert ImageGeometry(width=32).apply(img).shape == (24, 32, 3)
    depth = np.full((48, 64), 1234, np.uint16)
    out = ImageGeometry(width=16, height=12).apply(depth, nearest=True)
    assert out.dtype == np.uint16 and out.shape == (12, 16) and np.all(out == 1234)
    for bad in (ImageGeometry(crop_x=60, crop_width=10), ImageGeometry(crop_x=100), ImageGeometry(width=-1)):
        with pytest.raises(SourceConfigError):
            bad.check(64, 48)


def test_clock_mapper_takes_least_delayed_offset_and_follows_resets():
    mapper = ClockMapper()
    rng = np.random.default_rng(0)
    offset = 1_700_000_000.0
    for i in range(200):
        device = 10.0 + i / 30.0
        delay = 0.005 + rng.uniform(0, 0.02)        # transport delay, at least 5 ms
        mapped = mapper(device, device + offset + delay)
    assert mapped == pytest.approx(device + offset + 0.005, abs=0.002)
    mapped = mapper(0.5, device + offset + 0.04)    # device clock reset: re-learn at once
    assert mapped == pytest.approx(device + offset + 0.04)


def test_backoff_doubles_up_to_the_cap():
    b = Backoff(0.5, 3.0)
    assert [b.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    b.reset()
    assert b.next() == 0.5
    with pytest.raises(SourceConfigError):
        Backoff(0.0, 1.0)


def test_file_source_reads_rgb_loops_and_ends(video):
    src = FileSource(video, loop=True)
    src.open()
    assert src.size == (W, H) and src.period == pytest.approx(1 / FPS)
    frames = [src.read() for _ in range(N_FRAMES + 5)]    # past the end: loops
    assert all(f is not None and f.rgb.shape == (H, W, 3) for f in frames)
    assert_red_over_blue(frames[0].rgb)
    assert np.array_equal(frames[0].rgb, frames[N_FRAMES].rgb)
    src.close()
    once = FileSource(video, frame_rate=5.0, loop=False)
    once.open()
    assert once.period == pytest.approx(0.2)
    assert sum(1 for _ in iter(once.read, None)) == N_FRAMES
    once.close()


def test_file_source_errors(tmp_path):
    with pytest.raises(SourceConfigError, match='does not exist'):
        FileSource(str(tmp_path / 'missing.mp4')).open()
    junk = tmp_path / 'junk.mp4'
    junk.write_bytes(b'not a video at all')
    with pytest.raises(SourceConfigError, match='cannot decode'):
        FileSource(str(junk)).open()
    with pytest.raises(SourceConfigError, match='video_file'):
        FileSource('').open()


def test_opencv_source_missing_device_is_retryable():
    with pytest.raises(SourceUnavailable, match="cannot open camera '57'"):
        OpenCVSource('57').open()


def test_opencv_source_on_a_path_gives_rgb(video):
    src = OpenCVSource(video)
    src.open()
    assert_red_over_blue(src.read().rgb)
    src.close()


def test_unknown_backend():
    with pytest.raises(SourceConfigError, match="unknown backend 'kinect'"):
        open_source('kinect')


def test_realsense_without_a_device_says_so():
    src = RealSenseSource()
    try:
        import pyrealsense2  # noqa: F401
    except ImportError:
        with pytest.raises(SourceConfigError, match='pyrealsense2'):
            src.open()
        return
    t0 = time.monotonic()
    with pytest.raises(SourceUnavailable, match='no RealSense device connected'):
        src.open()
    assert time.monotonic() - t0 < 5.0, 'must not wait for pipeline.start() to time out'


class FakeRealSense:
    """Just enough of pyrealsense2 for RealSenseSource: one device, colour + depth frames."""
    stream = SimpleNamespace(color='color', depth='depth')
    format = SimpleNamespace(rgb8='rgb8', z16='z16')
    camera_info = SimpleNamespace(serial_number='serial_number', name='name')
    timestamp_domain = SimpleNamespace(hardware_clock='hw', system_time='sys', global_time='global')

    def __init__(self, serials=('123',), domain='hw', start_error=None, depth_scale=0.00025):
        self.serials, self.domain, self.start_error = serials, domain, start_error
        self.depth_scale = depth_scale
        self.enabled = []
        self.lost = False
        self.t_ms = 1000.0
        fake = self

        class Devices(list):
            def size(self):
                return len(self)

        class Device:
            def __init__(self, serial):
                self.serial = serial

            def get_info(self, what):
                return self.serial if what == 'serial_number' else 'Intel RealSense D435'

        self.context = lambda: SimpleNamespace(query_devices=lambda: Devices(Device(s) for s in serials))

        class Config:
            def enable_device(self, serial):
                fake.enabled.append(('device', serial))

            def enable_stream(self, *args):
                fake.enabled.append(args)
        self.config = Config

        def intr(w, h):
            return SimpleNamespace(width=w, height=h, fx=600.0, fy=601.0, ppx=w / 2 + 1, ppy=h / 2 - 1,
                                   model='distortion.inverse_brown_conrady', coeffs=[0.1, 0, 0, 0, 0])

        class Profile:
            def get_stream(self, s):
                w, h = (64, 48) if s == 'color' else (32, 24)
                return SimpleNamespace(as_video_stream_profile=lambda: SimpleNamespace(
                    get_intrinsics=lambda: intr(w, h)))

            def get_device(self):
                return SimpleNamespace(first_depth_sensor=lambda: SimpleNamespace(
                    get_depth_scale=lambda: fake.depth_scale))

        class Frame:
            def __init__(self, data):
                self.data = data

            def get_data(self):
                return self.data

            def get_timestamp(self):
                return fake.t_ms

            def get_frame_timestamp_domain(self):
                return fake.domain

        class Pipeline:
            def start(self, config):
                if fake.start_error:
                    raise RuntimeError(fake.start_error)
                return Profile()

            def wait_for_frames(self, timeout_ms):
                if fake.lost:
                    raise RuntimeError(f"Frame didn't arrive within {timeout_ms}")
                fake.t_ms += 33.3
                rgb = np.zeros((48, 64, 3), np.uint8)
                rgb[..., 0] = 255
                depth = np.full((48, 64), 4000, np.uint16)
                return SimpleNamespace(get_color_frame=lambda: Frame(rgb), get_depth_frame=lambda: Frame(depth))

            def stop(self):
                pass
        self.pipeline = Pipeline
        self.align = lambda stream: SimpleNamespace(process=lambda frames: frames)


def test_realsense_source_with_a_fake_device():
    rs = FakeRealSense()
    now = [5000.0]
    src = RealSenseSource(serial_no='123', color_profile=(64, 48, 30), enable_depth=True, align_depth=True,
                          rs_module=rs, clock=lambda: now[0])
    src.open()
    assert ('device', '123') in rs.enabled and ('color', 64, 48, 'rgb8', 30) in rs.enabled
    k = src.intrinsics()
    assert (k.width, k.height, k.fx, k.fy, k.cx, k.distortion_model) == (64, 48, 600.0, 601.0, 33.0, 'plumb_bob')
    assert src.depth_intrinsics() == k, 'aligned depth has the colour intrinsics'
    frames = []
    for _ in range(3):
        now[0] += 0.0333
        frames.append(src.read())
    f = frames[-1]
    assert f.rgb.shape == (48, 64, 3) and f.rgb[0, 0].tolist() == [255, 0, 0]
    assert f.depth.dtype == np.uint16 and np.all(f.depth == 1000), 'depth in millimetres (scale 0.25 mm)'
    assert f.capture_time <= now[0] and f.capture_time > now[0] - 0.1
    rs.lost = True
    with pytest.raises(SourceUnavailable, match='lost'):
        src.read()
    src.close()

    unaligned = RealSenseSource(enable_depth=True, rs_module=FakeRealSense(domain='global'),
                                clock=lambda: 1e9)
    unaligned.open()
    assert unaligned.depth_intrinsics().width == 32 and not unaligned.depth_aligned
    assert unaligned.read().capture_time == pytest.approx(1.0333, abs=1e-3), 'global time is host time already'


def test_realsense_source_errors_with_a_fake_device():
    with pytest.raises(SourceUnavailable, match="serial_no '999'.*123"):
        RealSenseSource(serial_no='999', rs_module=FakeRealSense()).open()
    with pytest.raises(SourceUnavailable, match='no RealSense device connected'):
        RealSenseSource(rs_module=FakeRealSense(serials=())).open()
    with pytest.raises(SourceConfigError, match='does not support colour 4096x2160@30'):
        RealSenseSource(color_profile=(4096, 2160, 30),
                        rs_module=FakeRealSense(start_error="Couldn't resolve requests")).open()


# ---------------------------------------------------------------- camera_node through DDS

def start_camera(ros_env, tmp_path, *params, name='camera'):
    from conftest import Process
    args = [a for p in params for a in ('-p', p)]
    return Process([sys.executable, '-m', 'ros2_imitation.nodes.camera_node', '--ros-args', *args],
                   ros_env, str(tmp_path / f'{name}.log'))


class Recorder:
    def __init__(self, node, msg_type, topic):
        from ros2_imitation.qos import SENSOR_QOS
        self.messages, self.times = [], []
        node.create_subscription(msg_type, topic, self._on, SENSOR_QOS)

    def _on(self, msg):
        self.messages.append(msg)
        self.times.append(time.monotonic())


def stamp_sec(msg):
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def test_file_replay_publishes_rgb_at_rate_with_geometry_and_info(spawn, probe, video):
    from conftest import wait_for
    from sensor_msgs.msg import CameraInfo, Image
    images = Recorder(probe, Image, '/camera/camera/color/image_raw')
    infos = Recorder(probe, CameraInfo, '/camera/camera/color/camera_info')
    proc = spawn('bringup', 'camera_replay', '--arg', f'video_file={video}', '--arg', 'width=16',
                 '--arg', 'height=24', '--set', 'camera.crop_x=16', '--set', 'camera.crop_width=32',
                 '--set', 'camera.rgb_camera.color_profile=640,480,30')   # ignored by the file backend
    wait_for(lambda: len(images.messages) >= 5, 30, what=f'images from camera_replay\n{proc.output()}')
    n0, t0 = len(images.messages), time.monotonic()
    time.sleep(2.0)
    rate = (len(images.messages) - n0) / (time.monotonic() - t0)
    assert abs(rate - FPS) < 0.2 * FPS, f'{rate:.1f} Hz, expected {FPS}'

    msgs = list(images.messages)
    img = msgs[-1]
    assert (img.encoding, img.width, img.height, img.step) == ('rgb8', 16, 24, 48)
    assert img.header.frame_id == 'camera_color_optical_frame'
    assert_red_over_blue(np.frombuffer(bytes(img.data), np.uint8).reshape(24, 16, 3))
    stamps = np.array([stamp_sec(m) for m in msgs])
    assert np.all(np.diff(stamps) > 0), 'stamps must increase'
    assert np.median(np.diff(stamps)) == pytest.approx(1 / FPS, rel=0.2)
    assert abs(stamps[-1] - time.time()) < 1.0, 'stamped with the capture time (ROS time, not sim)'

    expected = ImageGeometry(crop_x=16, crop_width=32, width=16, height=24).intrinsics(
        Intrinsics.from_fov(W, H, 69.0))
    wait_for(lambda: infos.messages, 5, what='camera_info')
    info = infos.messages[-1]
    assert (info.width, info.height) == (16, 24)
    assert np.allclose(info.k, expected.k) and np.allclose(info.p, expected.p)
    assert info.header.frame_id == img.header.frame_id
    image_stamps = {stamp_sec(m) for m in msgs}
    assert any(stamp_sec(i) in image_stamps for i in infos.messages), 'camera_info shares image stamps'


def test_robot_graph_camera_replays_a_file(ros_env, probe, video):
    """The robot graph's camera node (what `bringup robot` / robot.launch.py start) with
    camera_backend=file and video_file: frames from the file, the RealSense profile ignored."""
    from conftest import wait_for
    from sensor_msgs.msg import Image

    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.spec import load_graph
    graph = load_graph('robot', {'camera_backend': 'file', 'video_file': video, 'video_frame_rate': 10.0})
    graph.nodes = [graph.node('camera')]          # the camera alone: no policy, arm or controller here
    images = Recorder(probe, Image, '/camera/camera/color/image_raw')
    logs = []
    with Bringup(graph, log=logs.append, env=ros_env) as bringup:
        wait_for(lambda: len(images.messages) >= 8 or bringup.poll(), 30, what='images from the robot camera')
        assert bringup.poll() is None, 'camera_node exited'
    img = images.messages[-1]
    assert (img.encoding, img.width, img.height) == ('rgb8', W, H)
    assert_red_over_blue(np.frombuffer(bytes(img.data), np.uint8).reshape(H, W, 3))
    stamps = np.array([stamp_sec(m) for m in images.messages])
    assert np.median(np.diff(stamps)) == pytest.approx(1 / 10.0, rel=0.2)   # video_frame_rate, not the file's 20


def test_full_size_frames_arrive_reliably(spawn, probe, video):
    """640x480 rgb8 (921 kB): camera_node publishes reliable, and a reliable subscriber (policy_node's
    image_reliability:=reliable) gets every frame -- best effort in Fast DDS loses most of them."""
    from conftest import wait_for
    from rclpy.qos import ReliabilityPolicy
    from sensor_msgs.msg import Image

    from ros2_imitation.qos import image_qos
    topic = '/camera/camera/color/image_raw'
    frames = []
    probe.create_subscription(Image, topic, lambda m: frames.append(stamp_sec(m)), image_qos('reliable'))
    proc = spawn('bringup', 'camera_replay', '--arg', f'video_file={video}', '--arg', 'width=640',
                 '--arg', 'height=480')
    wait_for(lambda: len(frames) >= 5, 30, what=f'640x480 images\n{proc.output()}')
    offered = probe.get_publishers_info_by_topic(topic)
    assert offered and offered[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    n0 = len(frames)
    time.sleep(3.0)
    stamps = np.array(frames[n0:])
    expected = (stamps[-1] - stamps[0]) * FPS + 1
    assert len(stamps) >= 0.95 * expected, f'{len(stamps)} of {expected:.0f} frames arrived'
    assert np.diff(stamps).max() < 2.5 / FPS, 'no frame lost'


def test_sim_time_waits_for_clock_and_file_end_without_loop(ros_env, tmp_path, probe):
    from conftest import wait_for
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from ros2_imitation.nodes.common import to_stamp
    from ros2_imitation.qos import CLOCK_QOS
    short = make_video(tmp_path / 'short.mp4', frames=30)
    images = Recorder(probe, Image, '/camera/camera/color/image_raw')
    proc = start_camera(ros_env, tmp_path, 'backend:=file', f'video_file:={short}', 'loop:=false',
                        'use_sim_time:=true')
    wait_for(lambda: 'no /clock yet' in proc.output(), 15, what=f'a "no /clock" warning\n{proc.output()}')
    assert not images.messages, 'nothing may be stamped before /clock'
    clock = probe.create_publisher(Clock, '/clock', CLOCK_QOS)
    sim_t = [100.0]

    def tick():
        sim_t[0] += 0.01
        clock.publish(Clock(clock=to_stamp(sim_t[0])))
    timer = probe.create_timer(0.01, tick)
    wait_for(lambda: 'end of file' in proc.output(), 15, what=f'end of the video\n{proc.output()}')
    time.sleep(0.3)
    probe.destroy_timer(timer)
    assert 20 <= len(images.messages) <= 30, 'a replayed file waits for /clock'
    stamps = [stamp_sec(m) for m in images.messages]
    assert all(100.0 < s <= sim_t[0] + 1e-6 for s in stamps), 'stamped in sim time'
    assert proc.proc.poll() is None, 'the node stays up at the end of a non-looping file'
    assert proc.stop() == 0


@pytest.mark.parametrize('params, message', [
    (('backend:=kinect',), "unknown backend 'kinect'"),
    (('backend:=file', 'video_file:=/nonexistent/video.mp4'), "video file '/nonexistent/video.mp4' does not exist"),
    (('backend:=file',), 'needs the video_file parameter'),
    (('backend:=realsense', 'rgb_camera.color_profile:=640,480'), 'WIDTH,HEIGHT,FPS'),
    (('backend:=realsense',), 'no RealSense device connected'),
    (('backend:=opencv', 'device:=57'), "cannot open camera '57'"),
])
def test_bad_parameters_fail_at_start(ros_env, tmp_path, params, message):
    if 'RealSense device' in message:
        pytest.importorskip('pyrealsense2')
    proc = start_camera(ros_env, tmp_path, *params)
    assert proc.proc.wait(20) == 2
    out = proc.output()
    assert '[camera] cannot start' in out and message in out, out
    proc.stop()


def test_bad_crop_fails_at_start(ros_env, tmp_path, video):
    proc = start_camera(ros_env, tmp_path, 'backend:=file', f'video_file:={video}', 'crop_x:=100')
    assert proc.proc.wait(20) == 2
    assert 'does not fit in the 64x48 source image' in proc.output()
    proc.stop()


def test_realsense_retry_backs_off_without_crashing(ros_env, tmp_path):
    pytest.importorskip('pyrealsense2')
    proc = start_camera(ros_env, tmp_path, 'backend:=realsense', 'retry:=true',
                        'retry_initial_delay:=0.2', 'retry_max_delay:=0.8')
    from conftest import wait_for
    wait_for(lambda: proc.output().count('retrying in') >= 5, 15, what=f'5 retries\n{proc.output()}')
    assert proc.proc.poll() is None, 'retrying must not end the node'
    out = proc.output()
    delays = [float(line.split('retrying in ')[1].split(' s')[0]) for line in out.splitlines()
              if '[camera]' in line and 'retrying in' in line]
    assert delays[:5] == [0.2, 0.4, 0.8, 0.8, 0.8], delays
    assert 'no RealSense device connected' in out
    assert proc.stop() == 0, 'SIGTERM ends it cleanly'
    assert math.isfinite(delays[-1])


def test_device_lost_mid_stream_exits_or_reconnects(ros_env, tmp_path, probe):
    """An OpenCV 'camera' that is a 10-frame clip: at its end read() fails like an unplugged camera."""
    from conftest import wait_for
    from sensor_msgs.msg import Image
    clip = make_video(tmp_path / 'clip.mp4', frames=10)
    proc = start_camera(ros_env, tmp_path, 'backend:=opencv', f'device:={clip}', name='no_retry')
    assert proc.proc.wait(20) == 2
    out = proc.output()
    assert 'stopped giving frames' in out and 'set retry:=true to reconnect' in out, out
    proc.stop()

    images = Recorder(probe, Image, '/camera/camera/color/image_raw')
    proc = start_camera(ros_env, tmp_path, 'backend:=opencv', f'device:={clip}', 'retry:=true',
                        'retry_initial_delay:=0.3', name='retry')
    wait_for(lambda: len(images.messages) > 20, 20, what=f'frames after reconnects\n{proc.output()}')
    assert proc.output().count('reconnecting in 0.3 s') >= 2, 'reconnects back off, and reset after a frame'
    assert proc.proc.poll() is None
    assert proc.stop() == 0
