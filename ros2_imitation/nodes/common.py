"""What every node shares: start-up and shutdown, time and parameter helpers (QoS profiles: ros2_imitation.qos)."""
import math
import sys
import threading
import time
import traceback

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ros2_imitation import qos
from ros2_imitation.nodes import stopping, throttle


class StartupError(RuntimeError):
    """A node cannot start with the parameters it was given; the message says why."""


def image_qos(reliability: str):
    """qos.image_qos, a bad value being a start-up error."""
    try:
        return qos.image_qos(reliability)
    except ValueError as exc:
        raise StartupError(str(exc)) from None


def to_sec(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def to_stamp(seconds: float) -> Time:
    sec = int(np.floor(seconds))
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


def now_sec(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


def _typed(name: str, value, default):
    """`value` as the type of `default`, or StartupError naming the parameter."""
    def wrong(what):
        return StartupError(f'parameter {name} must be {what}, got {value!r} ({type(value).__name__})')

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong('true or false')
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong('an integer')
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong('a number')
        if not math.isfinite(value):
            raise wrong('a finite number')
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise wrong('a string')
        return value
    if isinstance(default, (list, tuple)):
        element = type(default[0]) if len(default) else str
        if not isinstance(value, (list, tuple)):
            raise wrong(f'a list of {element.__name__}')
        return [_typed(f'{name}[{i}]', v, element()) for i, v in enumerate(value)]
    return value


def declare(node: Node, name: str, default):
    """Declare a parameter and return its value, typed like `default`.

    Parameter files and `--set` values are typed by YAML, so `control_rate: 250` is an integer where
    a float is meant: it is taken as 250.0. Any other mismatch (text for a number, a number for a
    flag, NaN) is a StartupError naming the parameter, so the node exits with that reason instead of
    a traceback. Afterwards the parameter has the default's type: a later `ros2 param set` of another
    type is refused by rclpy.
    """
    try:
        value = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
    except ParameterException as exc:
        raise StartupError(f'parameter {name}: {exc}') from None
    value = _typed(name, value, default)
    if not (isinstance(value, list) and not value):   # rclpy cannot type an empty list
        node.undeclare_parameter(name)
        node.declare_parameter(name, value, ignore_override=True)
    return value


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


def check_positive(params: dict, *names: str, allow_zero: tuple = ()) -> None:
    """StartupError naming the first of `names` that is not > 0 (>= 0 for those in allow_zero)."""
    for name in names:
        value = params[name]
        if not (value > 0 or (name in allow_zero and value == 0)):
            raise StartupError(f'parameter {name} must be {">= 0" if name in allow_zero else "> 0"}, '
                               f'got {value!r}')


def _node_name(node_factory, args) -> str:
    """The node's name for start-up errors: `-r __node:=NAME` if given, else the factory's name."""
    for arg in list(args or sys.argv):
        if str(arg).startswith('__node:='):
            return str(arg).split(':=', 1)[1]
    name = getattr(node_factory, '__name__', 'node')   # ControllerNode -> controller
    return name[:-4].lower() if name.endswith('Node') and len(name) > 4 else name


def run_node(node_factory, args=None, threads: int = 1) -> int:
    """Create a node, spin it until SIGINT/SIGTERM, and exit with a logged reason otherwise.

    Exit codes: 0 stopped by a signal or shutdown; 2 cannot start (bad parameter, missing file...):
    one line `[name] cannot start: reason` on stderr; 1 an unexpected error in a callback or a
    worker thread: `[name] stopped: reason` and the traceback. A worker thread that dies takes the
    node down with it instead of leaving a node that answers services but no longer works.

    Signals (nodes/stopping.py): SIGINT and SIGTERM alike, any number of them, at any time. One
    during start-up abandons it (exit 0, no "cannot start"); one while running ends the spin; then
    the node's close() (its orderly stop: the controller's last command, a bag finished), destroy_node()
    and the context's shutdown run in that order, with the context still valid for close(), and no
    further signal interrupts them.
    """
    stop = stopping.STOP
    stop.install()
    name = _node_name(node_factory, args)
    node = None
    code = 0
    crashed = []
    threads_before = set(threading.enumerate())

    def thread_died(hook):
        if hook.exc_type is SystemExit:
            return
        crashed.append(f'thread {hook.thread.name if hook.thread else "?"}: '
                       f'{hook.exc_type.__name__}: {hook.exc_value}')
        traceback.print_exception(hook.exc_type, hook.exc_value, hook.exc_traceback, file=sys.stderr)
        rclpy.try_shutdown()   # ends the spin below

    previous_hook = threading.excepthook
    threading.excepthook = thread_died
    try:
        try:
            stop.starting()     # a signal from now on (or one during the imports) abandons the start
            # rclpy's handlers would shut the context down on the first signal, before close() can
            # publish, and raise KeyboardInterrupt again on the next one: ours instead
            rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
            try:
                node = node_factory()
            except (StartupError, ParameterException) as exc:
                raise StartupError(str(exc)) from None
        finally:
            stop.running()      # from here on a signal is only noted (at most one was ever raised)
        if not stop.requested:
            _spin(node, threads, stop)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass                    # a start-up abandoned on a signal; a node already built is closed below
    except StartupError as exc:
        if not stop.requested:
            print(f'[{name}] cannot start: {exc}', file=sys.stderr, flush=True)
            code = 2
    except Exception as exc:  # noqa: BLE001 - reported, then the node exits
        if not stop.requested and (node is None or rclpy.ok()):
            traceback.print_exc()
            print(f'[{name}] {"cannot start" if node is None else "stopped"}: unexpected '
                  f'{type(exc).__name__}: {exc}', file=sys.stderr, flush=True)
            code = 2 if node is None else 1
        # else: the context was shut down (a worker thread died) while the executor was between
        # two waits, and rclpy raised RCLError instead of ending the spin: that is a shutdown
    finally:
        threading.excepthook = previous_hook
        if node is not None:
            close = getattr(node, 'close', None)
            if close:
                try:
                    close()
                except Exception as exc:  # noqa: BLE001 - shutting down anyway
                    print(f'[{name}] error while closing: {exc}', file=sys.stderr, flush=True)
            try:
                node.destroy_node()
            except Exception as exc:  # noqa: BLE001
                print(f'[{name}] error while closing: {exc}', file=sys.stderr, flush=True)
        try:
            rclpy.try_shutdown()
        except Exception:  # noqa: BLE001 - a start-up interrupted inside rclpy.init
            pass
        if node is None:
            # start-up abandoned: the half-built node's threads see the context gone and end
            _join_new_threads(threads_before, 2.0)
        stop.restore()
    if crashed:
        print(f'[{name}] stopped: {crashed[0]}', file=sys.stderr, flush=True)
        code = 1
    return code


# How often the spin loop looks at the stop flag (a signal handler runs between two waits).
SPIN_POLL_S = 0.1


def _spin(node, threads: int, stop) -> None:
    """rclpy.spin, ending when a stop signal was noted (or the context was shut down)."""
    executor = MultiThreadedExecutor(num_threads=threads) if threads > 1 else SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.requested and executor.context.ok():
            executor.spin_once(timeout_sec=SPIN_POLL_S)
    finally:
        try:
            executor.shutdown(timeout_sec=2.0)   # callbacks in other threads finish first
        except Exception:  # noqa: BLE001 - the context is already gone
            pass


def _join_new_threads(before: set, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread not in before and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
