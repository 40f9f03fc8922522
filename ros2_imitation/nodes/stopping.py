"""How a node process stops on SIGINT and SIGTERM: the first one stops it in order, any later one is ignored.

A terminal's Ctrl-C reaches every node of `ros2 launch` and launch forwards another SIGINT, so nodes
get two; Ctrl-C pressed twice or `timeout -s INT` gives more. rclpy's own handlers shut the context
down on every signal (so a node can no longer publish its last command) and Python's default one
raises KeyboardInterrupt wherever the process is, also inside its clean-up. Nodes therefore run
with rclpy's handlers off (run_node) and these instead:

- while the node's modules are imported (ros2_imitation.nodes installs them first thing in a node
  process) a signal is only noted: the node then stops before it starts;
- while the node is being built (a policy loading for seconds) the first signal raises
  KeyboardInterrupt, so a long start-up is abandoned at once;
- while it runs, the first signal is noted and the spin loop ends within its poll period;
- any later signal, and every signal while the node is stopping, is counted and ignored, so that
  close(), destroy_node() and rclpy's shutdown always run to their end.

Standard library only: it is installed before anything heavy is imported.
"""
import os
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self):
        self.signum = None        # the first stop signal received, if any
        self.count = 0            # how many were received
        self.interrupt = False    # raise KeyboardInterrupt on the first signal (while starting)
        self._previous = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ''

    def install(self) -> bool:
        """Handle SIGINT and SIGTERM from now on (main thread only; False elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if self._previous is None:
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return True

    def starting(self):
        """From now on the first signal interrupts; one that already came interrupts now."""
        self.interrupt = True
        if self.requested:
            self.interrupt = False
            raise KeyboardInterrupt(self.name)

    def running(self):
        """From now on signals are only noted."""
        self.interrupt = False

    def restore(self):
        """Put back the handlers that were there before, unless a stop signal came: a process that
        was asked to stop ignores any further one until it has exited. SIG_IGN, not a Python
        handler: at exit Python resets its handlers to the default (which kills with -2) while the
        interpreter is still tearing down, but leaves an ignored signal ignored."""
        self.interrupt = False
        if self._previous is None:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self.requested else handler)
        self._previous = None

    def _handle(self, signum, _frame):
        self.count += 1
        if self.signum is not None:
            return
        self.signum = signum
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt(signal.Signals(signum).name)


STOP = StopSignals()


def is_node_process() -> bool:
    """True in a node's own process: a console script `<name>_node` (ros2 run, ros2 launch), or
    `python -m ros2_imitation.nodes.<name>_node` (bringup)."""
    if sys.argv and os.path.basename(sys.argv[0]).endswith('_node'):
        return True
    argv = list(getattr(sys, 'orig_argv', []))
    return any(a == '-m' and i + 1 < len(argv) and argv[i + 1].startswith('ros2_imitation.nodes.')
               and argv[i + 1].endswith('_node') for i, a in enumerate(argv))
