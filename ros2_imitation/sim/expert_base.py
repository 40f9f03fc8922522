"""What every scripted expert shares: Cartesian waypoints, a timed path through them, and the
phase bookkeeping and planning (path -> IK -> chunk) of ScriptedExpert. The experts themselves are
in experts.py (push_cube, reach) and experts_pick.py (pick_place); see experts.py for how they act.
"""
from dataclasses import dataclass, field

import numpy as np

from ros2_imitation.runtime.chunking import ChunkTiming
from ros2_imitation.sim.kinematics import down_quat, solver_for


@dataclass
class Waypoint:
    position: np.ndarray        # fingertip centre (world, m)
    yaw: float                  # hand heading about world z (rad), see kinematics.down_quat
    speed: float                # m/s along the segment that ends here
    phase: str = ''             # what reaching it completes
    gripper: float | None = None  # opening (m) reached here, linear along the segment; None: unchanged
    duration: float = 0.0       # the segment takes at least this long (s): a dwell where it stays put


@dataclass
class Chunk:
    times: np.ndarray           # (N,) absolute times (s) on the node clock
    positions: np.ndarray       # (N, 7) arm joint targets, ARM_JOINTS order; (N, 8) with the
    #                             gripper opening (m) last, for experts with a gripper action
    phase: str = ''
    ik_error: float = 0.0       # worst IK position error in the chunk (m)
    info: dict = field(default_factory=dict)


def hand_yaw(quat) -> float:
    """Heading of the hand's x axis about world z, for a fingertip frame pointing down."""
    w, x, y, z = quat
    # first column of the rotation matrix
    r00, r10 = 1 - 2 * (y * y + z * z), 2 * (x * y + w * z)
    return float(np.arctan2(r10, r00))


def wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def nearest_symmetric_yaw(target: float, current: float) -> float:
    """target or target + pi, whichever is closer to current, unwrapped next to current.

    The closed fingers look the same turned by pi, so the expert never turns the wrist further.
    """
    best = min((wrap(target + k * np.pi - current) for k in (0, 1)), key=abs)
    return current + best


def distance_to_segment(p, a, b) -> float:
    ab = b - a
    s = float(np.clip((p - a) @ ab / max(ab @ ab, 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + s * ab)))


class Path:
    """A timed polyline from a start pose through waypoints; yaw turns at most `yaw_rate`. With a
    start `gripper` opening it also carries the gripper, interpolated between waypoints."""

    def __init__(self, start: np.ndarray, yaw: float, waypoints: list, yaw_rate: float = 1.2,
                 gripper: float | None = None):
        self.knots = [0.0]
        self.positions = [np.asarray(start, dtype=float)]
        self.yaws = [float(yaw)]
        self.grippers = [gripper]
        self.phases = []
        for wp in waypoints:
            p0, y0 = self.positions[-1], self.yaws[-1]
            y1 = y0 + wrap(wp.yaw - y0)
            duration = max(np.linalg.norm(wp.position - p0) / wp.speed, abs(y1 - y0) / yaw_rate, 1e-3,
                           wp.duration)
            self.knots.append(self.knots[-1] + duration)
            self.positions.append(np.asarray(wp.position, dtype=float))
            self.yaws.append(y1)
            self.grippers.append(self.grippers[-1] if wp.gripper is None else float(wp.gripper))
            self.phases.append(wp.phase)
        self.knots = np.asarray(self.knots)

    @property
    def duration(self) -> float:
        return float(self.knots[-1])

    def arrivals(self) -> dict:
        """phase -> time (from the start) at which its waypoint is reached."""
        return {phase: float(t) for phase, t in zip(self.phases, self.knots[1:])}

    def sample(self, tau: float) -> tuple:
        if tau >= self.knots[-1]:
            return self.positions[-1].copy(), self.yaws[-1]
        k = max(int(np.searchsorted(self.knots, tau, side='right')) - 1, 0)
        s = (tau - self.knots[k]) / (self.knots[k + 1] - self.knots[k])
        pos = self.positions[k] + s * (self.positions[k + 1] - self.positions[k])
        return pos, self.yaws[k] + s * (self.yaws[k + 1] - self.yaws[k])

    def gripper(self, tau: float) -> float:
        """The gripper opening at tau (needs a start opening)."""
        return float(np.interp(tau, self.knots, self.grippers))


class ScriptedExpert:
    """Base: per-episode mode and variations, phase bookkeeping, path -> IK -> chunk.

    Subclasses define MODES, PHASES and waypoints(tcp, yaw, state) -> list of Waypoint for the
    phases still to do (self.phase is the first of them), and may override check(), which can
    send the expert back to an earlier phase when the world did not do what was planned.

    With GRIPPER, chunks carry an 8th column, the gripper opening (m), which waypoints set; a
    plan starts from the opening the previous chunk commanded at that time (OPEN at reset).
    """
    task = ''
    MODES: tuple = ()
    PHASES: tuple = ()
    STYLES: tuple = ('phased',)  # how it decides; the first is the default (push_t also has 'reactive')
    ARRIVAL_TOLERANCE = 0.03     # m: a phase is not done while the fingertip is further off
    GRIPPER = False
    OPEN = 0.08

    def __init__(self, model, timing: ChunkTiming = ChunkTiming(), seed=None, modes=None,
                 speed: float = 0.12, style: str | None = None):
        if style is not None and style not in self.STYLES:
            raise ValueError(f'{self.task} expert: unknown style {style!r}; valid: {list(self.STYLES)}')
        self.style = style or self.STYLES[0]
        self.kin = solver_for(model)
        self.timing = timing
        self.speed = float(speed)
        modes = tuple(modes) if modes else self.MODES
        unknown = [m for m in modes if m not in self.MODES]
        if unknown:
            raise ValueError(f'{self.task} expert: unknown modes {unknown}; valid: {list(self.MODES)}')
        self.modes = modes
        self.rng = np.random.default_rng(seed)
        self.episodes = 0
        self.reset()

    # ---- episode ----
    def reset(self, seed=None) -> dict:
        """Forget the plan and draw a new mode (and variations); returns them for the metadata."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.mode = str(self.rng.choice(self.modes))
        self.variation = self.draw_variation()
        self.phase = self.PHASES[0]
        self.recoveries = 0
        self._arrivals = {}          # phase -> absolute time the last plan reaches it
        self._targets = {}           # phase -> its waypoint in the last plan
        self._gripper_plan = None    # (absolute times, openings) of the last chunk
        self.episodes += 1
        return self.info()

    def draw_variation(self) -> dict:
        return {}

    def info(self) -> dict:
        return {'task': self.task, 'mode': self.mode, 'style': self.style,
                **{k: round(float(v), 4) for k, v in self.variation.items()}}

    def progress(self) -> dict:
        """What the episode did so far that its metadata should show (after each plan)."""
        return {}

    # ---- planning ----
    def tcp(self, q) -> tuple:
        pos, quat = self.kin.fk(np.asarray(q, dtype=float)[:7])
        return pos, hand_yaw(quat)

    def waypoints(self, tcp: np.ndarray, yaw: float, state: dict) -> list:
        raise NotImplementedError

    def check(self, tcp: np.ndarray, yaw: float, state: dict) -> None:
        """Closed-loop checks before planning; may move self.phase (e.g. back to recover)."""

    def gripper_at(self, t: float) -> float:
        """The opening the last chunk commands at t (OPEN before any)."""
        if self._gripper_plan is None:
            return self.OPEN
        return float(np.interp(t, *self._gripper_plan))

    def _advance(self, t_start: float, tcp: np.ndarray) -> None:
        """A phase is done when the previous plan reached its waypoint before the new chunk
        starts and the fingertip is actually there, or on the way to the next waypoint (noise or
        contact may have held it back: then the phase is planned again, from where it is)."""
        order = list(self.PHASES)
        while self.phase in self._arrivals and self._arrivals[self.phase] <= t_start \
                and order.index(self.phase) + 1 < len(order):
            here = self._targets[self.phase]
            nxt = self._targets.get(order[order.index(self.phase) + 1], here)
            if distance_to_segment(tcp, here, nxt) > self.ARRIVAL_TOLERANCE:
                break
            self.phase = order[order.index(self.phase) + 1]

    def plan(self, now: float, q, state: dict) -> Chunk:
        """The clean chunk for the arm at joint positions q (7+) and the task state, at time now."""
        times = self.timing.times(now)
        tcp, yaw = self.tcp(q)
        self._advance(times[0], tcp)
        self.check(tcp, yaw, state)
        waypoints = self.waypoints(tcp, yaw, state)
        path = Path(tcp, yaw, waypoints, gripper=self.gripper_at(now) if self.GRIPPER else None)
        self._arrivals = {phase: now + t for phase, t in path.arrivals().items()}
        self._targets = {wp.phase: wp.position for wp in waypoints}
        q_prev = np.asarray(q, dtype=float)[:7]
        out, worst = np.empty((len(times), 7)), 0.0
        for i, t in enumerate(times):
            pos, y = path.sample(t - now)
            q_prev, err, _, _ = self.kin.solve(pos, down_quat(y), q_init=q_prev)
            out[i] = q_prev
            worst = max(worst, err)
        if self.GRIPPER:
            widths = np.array([path.gripper(t - now) for t in times])
            self._gripper_plan = (np.concatenate([[now], times]), np.concatenate([[path.gripper(0.0)], widths]))
            out = np.column_stack([out, widths])
        return Chunk(times, out, self.phase, worst)
