"""Camera image transport through DDS: sensor_msgs/Image rgb8 at 30 Hz, 96x96, 320x240 and 640x480.

A publisher process (as camera_node and realsense2_camera: reliable, header.stamp = capture time)
and a subscriber process (as policy_node, best effort or reliable: its image_reliability) on one
machine; latency = receive time - header.stamp, drops = published - received. Writes the
`image_transport` section of docs/benchmarks.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402

TOPIC = '/camera/camera/color/image_raw'


def publish(width: int, height: int, rate: float, seconds: float) -> None:
    """The publisher process: prints how many images it sent."""
    from sensor_msgs.msg import Image

    from ros2_imitation.graph.client import ClientNode
    from ros2_imitation.qos import image_qos
    client = ClientNode('bench_camera', spin=False)
    node, executor = client.node, client.executor
    pub = node.create_publisher(Image, TOPIC, image_qos('reliable'))
    frame = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding='rgb8', step=3 * width, data=frame.tobytes())
    msg.header.frame_id = 'camera_color_optical_frame'
    time.sleep(2.0)                        # discovery before the measured stream
    sent, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        target = start + sent / rate
        executor.spin_once(timeout_sec=max(0.0, target - time.monotonic()))
        if time.monotonic() >= target:
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            sent += 1
    time.sleep(0.5)
    print(json.dumps({'sent': sent}), flush=True)
    client.close()


def measure(width: int, height: int, rate: float, seconds: float, reliability: str = 'best_effort') -> dict:
    from sensor_msgs.msg import Image

    from ros2_imitation.graph.client import ClientNode
    from ros2_imitation.nodes.common import to_sec
    from ros2_imitation.qos import image_qos
    client = ClientNode('bench_policy', spin=False)
    node, executor = client.node, client.executor
    latencies = []

    def on_image(msg):
        latencies.append(node.get_clock().now().nanoseconds * 1e-9 - to_sec(msg.header.stamp))
    node.create_subscription(Image, TOPIC, on_image, image_qos(reliability))
    publisher = subprocess.Popen([sys.executable, __file__, '--publish', f'{width}x{height}', '--rate', str(rate),
                                  '--seconds', str(seconds)], stdout=subprocess.PIPE, text=True, env=os.environ)
    while publisher.poll() is None:
        executor.spin_once(timeout_sec=0.01)
    for _ in range(20):                    # anything still in flight
        executor.spin_once(timeout_sec=0.01)
    sent = json.loads(publisher.stdout.read().strip().splitlines()[-1])['sent']
    client.close()
    ms = 1e3 * np.asarray(latencies)
    return {'size': f'{width}x{height}', 'reliability': reliability, 'mb_per_s': width * height * 3 * rate / 1e6, 'sent': sent,
            'received': len(ms), 'dropped': max(0, sent - len(ms)),
            'p50_ms': float(np.percentile(ms, 50)) if len(ms) else float('nan'),
            'p99_ms': float(np.percentile(ms, 99)) if len(ms) else float('nan'),
            'max_ms': float(ms.max()) if len(ms) else float('nan')}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seconds', type=float, default=20.0, help='streaming time per size')
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--quick', action='store_true', help='5 s per size')
    parser.add_argument('--publish', metavar='WxH', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        width, height = (int(v) for v in args.publish.split('x'))
        publish(width, height, args.rate, args.seconds)
        return
    seconds = 5.0 if args.quick else args.seconds
    rows = []
    for width, height, reliability in ((96, 96, 'best_effort'), (320, 240, 'best_effort'),
                                       (640, 480, 'best_effort'), (640, 480, 'reliable')):
        row = measure(width, height, args.rate, seconds, reliability)
        print(row)
        rows.append(row)
    rmw = os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp (default)')
    table = ['| image (WxH rgb8) | subscriber | MB/s | sent | received | dropped | latency p50 (ms) | p99 (ms) | max (ms) |',
             '|---|---|---|---|---|---|---|---|---|']
    table += [f"| {r['size']} | {r['reliability']} | {r['mb_per_s']:.2f} | {r['sent']} | {r['received']} | {r['dropped']} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} |" for r in rows]
    body = (f'sensor_msgs/Image at {args.rate:g} Hz for {seconds:g} s per row from a publisher process (reliable, '
            f'as camera_node and realsense2_camera publish) to a subscriber process on this machine, best effort '
            f'(sensor-data QoS, policy_node\'s default) or reliable (`image_reliability:=reliable`, what '
            f'config/graphs/robot.yaml sets), {rmw}. Latency = receive time - header.stamp (one clock). Fast DDS '
            f'carries samples up to its 512 kB shared-memory segment in shared memory; a larger best-effort '
            f'sample goes as UDP fragments, and a lost fragment loses the frame.\n\n' + '\n'.join(table))
    write_section('image_transport', 'Camera image transport over DDS', body)


if __name__ == '__main__':
    main()
