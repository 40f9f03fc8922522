"""A node this process runs for itself beside a graph (the episode runner, the live view, record-demos, a
test's probe): its own rclpy context on the graph's domain, spun in a background thread, and closed in an
order that keeps DDS teardown from hanging.

Why the order matters. With rmw_fastrtps, destroying a context's last node destroys its DDS participant,
and the participant first removes its listener (`DomainParticipant::set_listener(nullptr)`), waiting with
no timeout for any discovery callback in flight. That wait busy-spins (eProsima/Fast-DDS#6513), and with a
callback that needs the mutex the spin keeps re-taking it can last minutes. Seen here once: a probe
destroyed a few milliseconds after this process had closed another participant, whose endpoints' removal
was being reported to the probe's listener at that moment; the destroy ran in the executor thread, under
the GIL, so every Python thread stopped with it. So `close()`:
  1. stops the executor and joins its thread, so the destroy runs in the caller's thread, after the
     executor let go of the node;
  2. waits until `SETTLE_S` has passed since this process last destroyed a participant, so the removal of
     that one's endpoints has been reported before this one removes its listener;
  3. destroys the node, shuts the context down and frees it now (not in the interpreter's teardown, when
     other threads may be busy and the process can end in an abort).
"""
from __future__ import annotations

import os
import threading
import time

SETTLE_S = 1.0          # seconds between two participants' destruction in this process
JOIN_TIMEOUT_S = 5.0    # for the executor thread to leave its wait once shut down

_close_lock = threading.Lock()
_last_destroyed = -float('inf')   # time.monotonic() when this process last destroyed a participant


def domain_from_env() -> int | None:
    domain = os.environ.get('ROS_DOMAIN_ID')
    return int(domain) if domain else None


class ClientNode:
    """`rclpy` node `name` on its own context (domain `domain_id`, or ROS_DOMAIN_ID), with a
    SingleThreadedExecutor spun in a daemon thread when `spin` (else the caller spins `executor`)."""

    def __init__(self, name: str, domain_id: int | None = None, spin: bool = True):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_from_env() if domain_id is None else domain_id)
        try:
            self.node = rclpy.create_node(name, context=self.context)
        except Exception:
            rclpy.try_shutdown(context=self.context)
            raise
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = None
        self.closed = False
        if spin:
            self._thread = threading.Thread(target=self.executor.spin, daemon=True, name=f'{name}-executor')
            self._thread.start()

    def close(self) -> None:
        """Stop spinning, then destroy the node and its context (see the module's docstring); idempotent."""
        global _last_destroyed
        import rclpy
        if self.closed:
            return
        self.closed = True
        self.executor.shutdown(timeout_sec=JOIN_TIMEOUT_S)
        if self._thread is not None:
            self._thread.join(timeout=JOIN_TIMEOUT_S)
        with _close_lock:
            time.sleep(max(0.0, _last_destroyed + SETTLE_S - time.monotonic()))
            try:
                self.node.destroy_node()
                rclpy.try_shutdown(context=self.context)
                self.context.destroy()
            finally:
                _last_destroyed = time.monotonic()

    def __enter__(self) -> ClientNode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
