"""The gripper column of chunks -> one safe width per control cycle, and when to send it (ROS-free).

Convention (robot.py): a gripper policy's chunk carries the arm joints then one column named
`gripper.command_name`, the finger-to-finger opening in metres. ChunkController splits that column
off (the arm part follows the arm rules unchanged) and hands it to a GripperChannel:

- every cycle the chunk is sampled (linear between points) and passed through GripperFilter
  (control/safety.py): range, rate limit at the profile's max speed, NaN -> the last safe width;
- when the chunk ends or chunks stop, the width stays where it was: the gripper never opens on
  a hold (releasing a grasped object would drop it); stop and reset keep it too;
- nothing is commanded before the first gripper chunk (or after a reset until the next one): the
  gripper stays as it is. The first command starts from the measured width when the finger joints
  are in /joint_states, else from the first (clamped) target;
- once the finger joints have been measured, their loss holds the gripper: when no joint state has
  given a width for `finger_timeout` (the controller's joint_state_timeout: the finger joints left
  out, or NaN), nothing more is commanded (`holding` says why) until they are back, then the width
  goes on from the last command, rate-limited as ever. As the arm without joint states: no command
  without knowing where it is. (A robot whose /joint_states never carry the finger joints commands the
  width open-loop from the start, as before.)

How the width leaves the controller is the node's choice of output (GRIPPER_MODES): `forward` sends
it every cycle; `trajectory` and `action` send it through a SendGate: only when it moved by more
than a deadband since the last send, or settled somewhere else, and (`action`) one goal at a time:
a newer target waits for the goal in flight to finish, then the newest one goes.
"""
import math
from typing import Optional

import numpy as np

from ros2_imitation.control.gripper_spec import GripperSpec
from ros2_imitation.control.safety import GripperFilter, Watchdog

GRIPPER_MODES = ('none', 'forward', 'trajectory', 'action')


class GripperChannel:
    def __init__(self, spec: GripperSpec, dt: float, finger_timeout: float = 0.1):
        self.spec = spec
        self.filter = GripperFilter(spec, dt)
        self.times: Optional[np.ndarray] = None     # absolute times of the chunk's points
        self.widths: Optional[np.ndarray] = None    # may hold NaN: held over when sampled
        self.width_cmd: Optional[float] = None      # the last width commanded (None: nothing yet)
        self.measured: Optional[float] = None       # from the finger joints in /joint_states
        self.engaged = False                        # a gripper chunk came since the start or reset
        self.fingers = Watchdog(finger_timeout)     # fed with each joint state that gave a width
        self.fingers_seen = False                   # one did (timed): from then on their loss holds
        self.finger_problem: Optional[str] = None   # why the newest joint state gave no width
        self.holding: Optional[str] = None          # why the width is held whatever the chunk says
        self.stats = {'gripper_chunks': 0, 'gripper_finger_states_unusable': 0}

    def on_joint_state(self, names, positions, t: Optional[float] = None) -> Optional[str]:
        """Measure the width when every finger joint of the profile is in the message, finite; t:
        when it came (the controller's clock) for the finger watchdog (None: untimed, nothing is
        watched). Returns why no width came from it, or None."""
        index = {n: i for i, n in enumerate(names)}
        missing = [j for j in self.spec.joints if j not in index]
        problem = f'joint state lacks finger joints {missing}' if missing else None
        if not missing:
            try:
                values = [float(positions[index[j]]) for j in self.spec.joints]
            except (IndexError, TypeError, ValueError):
                problem = 'joint state arrays do not match its names'
            else:
                width = float(self.spec.width_from_fingers(values))
                if math.isfinite(width):
                    self.measured, self.finger_problem = width, None
                    if t is not None:
                        self.fingers.feed(t)
                        self.fingers_seen = True
                    return None
                problem = 'non-finite finger joints ' + ', '.join(
                    f'{j}={v}' for j, v in zip(self.spec.joints, values))
        if self.fingers_seen:
            self.stats['gripper_finger_states_unusable'] += 1
        self.finger_problem = problem
        return problem

    def fingers_lost(self, now: float) -> Optional[str]:
        """Why the fingers count as lost at `now` (measured before, not for finger_timeout), or None."""
        if not self.fingers_seen or not self.fingers.expired(now):
            return None
        return (f'finger joints not measured for {max(self.fingers.age(now), 0.0):.2f} s: '
                f'{self.finger_problem or "no joint state"}')

    def on_chunk(self, abs_times, widths, now: Optional[float] = None) -> None:
        self.times = np.asarray(abs_times, dtype=float).copy()
        self.widths = np.asarray(widths, dtype=float).copy()
        if not self.engaged:
            # the rate limit starts where the fingers are (with them lost: where they are once back)
            lost = now is not None and self.fingers_lost(now)
            self.width_cmd = None if lost else self.measured
            self.engaged = True
        self.stats['gripper_chunks'] += 1

    def hold(self) -> None:
        """Drop the chunk, keep the width (stop: the gripper holds, whatever the arm does)."""
        self.times = self.widths = None

    def reset(self) -> None:
        """A new episode or a re-anchored arm: forget the chunk and the width; nothing is commanded
        until the next gripper chunk (the gripper stays wherever the reset left it)."""
        self.hold()
        self.width_cmd, self.engaged, self.holding = None, False, None

    def sample(self, now: float) -> Optional[float]:
        """The chunk's width at `now`: linear between points, NaN where a neighbour is NaN, the last
        point's after the end; None (hold the command) with no chunk or before its first point."""
        if self.times is None or now < self.times[0]:
            return None
        t, w = self.times, self.widths
        if now >= t[-1]:
            return float(w[-1])
        i = int(np.searchsorted(t, now, side='right')) - 1
        a = (now - t[i]) / (t[i + 1] - t[i])
        return float(w[i] + a * (w[i + 1] - w[i]))   # NaN in, NaN out

    def update(self, now: float) -> Optional[float]:
        """The safe width to command this cycle, or None while nothing is to be commanded (no
        gripper chunk yet, or the finger joints lost: `holding` says so)."""
        if not self.engaged:
            return None
        self.holding = self.fingers_lost(now)
        if self.holding:
            return None
        if self.width_cmd is None:
            self.width_cmd = self.measured      # nothing commanded yet: from where the fingers are
        target = self.sample(now)
        if target is None:       # hold: the last command (none yet and nothing measured: nothing)
            target = self.width_cmd
            if target is None:
                return None
        out = self.filter.width(target, self.width_cmd)
        if out is not None:
            self.width_cmd = out
        return out


class SendGate:
    """When a width goes to a trajectory controller or an action server: it moved by more than
    `deadband` since the last send, or it settled (unchanged for a cycle) more than `settle` away
    from it; with `one_at_a_time`, never while the previous goal is in flight (the newest target
    goes once it finished). `force()` sends the next width whatever (a stop: hold here)."""

    def __init__(self, deadband: float, settle: float = 5e-4, one_at_a_time: bool = False):
        if not (math.isfinite(deadband) and deadband >= 0):
            raise ValueError(f'deadband must be >= 0 m, got {deadband}')
        self.deadband, self.settle, self.one_at_a_time = float(deadband), float(settle), one_at_a_time
        self.sent: Optional[float] = None
        self.in_flight = False
        self._previous: Optional[float] = None
        self._forced = False
        self.stats = {'gripper_sent': 0, 'gripper_waited': 0}

    def force(self) -> None:
        self._forced = True

    def reset(self) -> None:
        self.sent = self._previous = None
        self._forced = False

    def done(self) -> None:
        """The goal in flight finished (succeeded, aborted, rejected or canceled)."""
        self.in_flight = False

    def offer(self, width: Optional[float]) -> Optional[float]:
        """The width to send now, or None."""
        previous, self._previous = self._previous, width
        if width is None:
            return None
        moved = self.sent is None or abs(width - self.sent) > self.deadband
        settled = previous is not None and width == previous and \
            self.sent is not None and abs(width - self.sent) > self.settle
        if not (moved or settled or self._forced):
            return None
        if self.one_at_a_time and self.in_flight:
            self.stats['gripper_waited'] += 1
            return None
        self._forced = False
        self.sent = width
        self.in_flight = self.one_at_a_time
        self.stats['gripper_sent'] += 1
        return width
