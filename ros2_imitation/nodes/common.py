"""What every node shares: start-up and shutdown, QoS profiles, time and parameter helpers."""
import sys
import time

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from ros2_imitation import throttle

# Sensors: best effort, latest few. A best-effort subscriber also receives from reliable
# publishers (joint_state_broadcaster, ros_gz_bridge), so subscribers use it everywhere.
SENSOR_QOS = qos_profile_sensor_data
# Commands and chunks: nothing silently lost.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE)
# State that several subscribers want, such as /joint_states (joint_state_broadcaster's QoS).
STATE_QOS = COMMAND_QOS
# What rclcpp's ClockQoS is; rclpy's time source subscribes best effort, depth 1.
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.BEST_EFFORT)
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


class StartupError(RuntimeError):
    """A node cannot start with the parameters it was given; the message says why."""


def to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def to_stamp(seconds: float) -> Time:
    sec = int(np.floor(seconds))
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def now_sec(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def declare(node: Node, name: str, default):
    """Declare a parameter and return its value."""
    return node.declare_parameter(name, default).value


class NodeReasonLog:
    """A node's warnings through throttle.ReasonLog: each kind of problem at most once a period."""

    def __init__(self, node: Node, period: float = 1.0):
        self.node = node
        self.log = throttle.ReasonLog(period)

    def warn(self, what: str, reason: str, kind: str | None = None):
        line = self.log.should_log(f'{what}: {reason}', time.monotonic(), kind or f'{what}: {reason[:60]}')
        if line:
            self.node.get_logger().warning(line)


def publish_status(node: Node, pub, level: int, what: str, message: str, hardware_id: str,
                   values: dict) -> None:
    """One DiagnosticStatus named '<node>: <what>' on /diagnostics, values as strings."""
    status = DiagnosticStatus(level=bytes([level]) if isinstance(level, int) else level,
                              name=f'{node.get_name()}: {what}', message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)


def run_node(node_factory, args=None, threads: int = 1) -> int:
    """Create a node, spin it until SIGINT/SIGTERM, and exit with a reason if start-up fails."""
    rclpy.init(args=args)  # handles SIGINT and SIGTERM: both end the spin below
    node = None
    code = 0
    try:
        node = node_factory()
        executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else None
        rclpy.spin(node, executor=executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StartupError as exc:
        name = node.get_name() if node else getattr(node_factory, '__name__', 'node')
        print(f'[{name}] cannot start: {exc}', file=sys.stderr, flush=True)
        code = 2
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if close:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
