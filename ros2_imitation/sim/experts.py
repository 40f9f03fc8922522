"""Scripted experts for the simulated tasks, ROS-free: privileged task state in, action chunks out.

An expert acts the way the policy will: every `execute` steps of the policy clock (8 x 0.1 s) it
sends a chunk of `size` joint-position targets (16 at 10 Hz) whose first point applies `lead`
seconds in the future; the chunk controller interpolates them. Each chunk is re-planned from the
measured arm pose and the latest task state (cube pose, goal), so the expert is closed-loop: it
corrects what noise, contact or a slow arm did to the previous chunk.

Cartesian waypoints -> a timed polyline from the current fingertip pose -> IK (warm-started point
to point) -> joint positions. Experts are multimodal: at reset each draws a `mode` (the side it
approaches from) and a few human-like per-episode variations (speeds, offsets), so the same
initial state is solved in more than one way.

`ActionNoise` is the data-collection noise of FIELD_NOTES section 3: a smooth, temporally
correlated joint-space perturbation added to the executed chunk, while the clean chunk is kept as
the label.
"""
from dataclasses import dataclass, field

import numpy as np

from ros2_imitation.runtime.chunking import ChunkTiming
from ros2_imitation.sim import scene
from ros2_imitation.sim.kinematics import down_quat, solver_for

ARM_JOINTS = scene.ARM_JOINTS


@dataclass
class Waypoint:
    position: np.ndarray        # fingertip centre (world, m)
    yaw: float                  # hand heading about world z (rad), see kinematics.down_quat
    speed: float                # m/s along the segment that ends here
    phase: str = ''             # what reaching it completes


@dataclass
class Chunk:
    times: np.ndarray           # (N,) absolute times (s) on the node clock
    positions: np.ndarray       # (N, 7) arm joint targets, ARM_JOINTS order
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


def _distance_to_segment(p, a, b) -> float:
    ab = b - a
    s = float(np.clip((p - a) @ ab / max(ab @ ab, 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + s * ab)))


class Path:
    """A timed polyline from a start pose through waypoints; yaw turns at most `yaw_rate`."""

    def __init__(self, start: np.ndarray, yaw: float, waypoints: list, yaw_rate: float = 1.2):
        self.knots = [0.0]
        self.positions = [np.asarray(start, dtype=float)]
        self.yaws = [float(yaw)]
        self.phases = []
        for wp in waypoints:
            p0, y0 = self.positions[-1], self.yaws[-1]
            y1 = y0 + wrap(wp.yaw - y0)
            duration = max(np.linalg.norm(wp.position - p0) / wp.speed, abs(y1 - y0) / yaw_rate, 1e-3)
            self.knots.append(self.knots[-1] + duration)
            self.positions.append(np.asarray(wp.position, dtype=float))
            self.yaws.append(y1)
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


class ScriptedExpert:
    """Base: per-episode mode and variations, phase bookkeeping, path -> IK -> chunk.

    Subclasses define MODES, PHASES and waypoints(tcp, yaw, state) -> list of Waypoint for the
    phases still to do (self.phase is the first of them), and may override check(), which can
    send the expert back to an earlier phase when the world did not do what was planned.
    """
    task = ''
    MODES: tuple = ()
    PHASES: tuple = ()
    ARRIVAL_TOLERANCE = 0.03     # m: a phase is not done while the fingertip is further off

    def __init__(self, model, timing: ChunkTiming = ChunkTiming(), seed=None, modes=None,
                 speed: float = 0.12):
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
        self.episodes += 1
        return self.info()

    def draw_variation(self) -> dict:
        return {}

    def info(self) -> dict:
        return {'task': self.task, 'mode': self.mode,
                **{k: round(float(v), 4) for k, v in self.variation.items()}}

    # ---- planning ----
    def tcp(self, q) -> tuple:
        pos, quat = self.kin.fk(np.asarray(q, dtype=float)[:7])
        return pos, hand_yaw(quat)

    def waypoints(self, tcp: np.ndarray, yaw: float, state: dict) -> list:
        raise NotImplementedError

    def check(self, tcp: np.ndarray, yaw: float, state: dict) -> None:
        """Closed-loop checks before planning; may move self.phase (e.g. back to recover)."""

    def _advance(self, t_start: float, tcp: np.ndarray) -> None:
        """A phase is done when the previous plan reached its waypoint before the new chunk
        starts and the fingertip is actually there, or on the way to the next waypoint (noise or
        contact may have held it back: then the phase is planned again, from where it is)."""
        order = list(self.PHASES)
        while self.phase in self._arrivals and self._arrivals[self.phase] <= t_start \
                and order.index(self.phase) + 1 < len(order):
            here = self._targets[self.phase]
            nxt = self._targets.get(order[order.index(self.phase) + 1], here)
            if _distance_to_segment(tcp, here, nxt) > self.ARRIVAL_TOLERANCE:
                break
            self.phase = order[order.index(self.phase) + 1]

    def plan(self, now: float, q, state: dict) -> Chunk:
        """The clean chunk for the arm at joint positions q (7+) and the task state, at time now."""
        times = self.timing.times(now)
        tcp, yaw = self.tcp(q)
        self._advance(times[0], tcp)
        self.check(tcp, yaw, state)
        waypoints = self.waypoints(tcp, yaw, state)
        path = Path(tcp, yaw, waypoints)
        self._arrivals = {phase: now + t for phase, t in path.arrivals().items()}
        self._targets = {wp.phase: wp.position for wp in waypoints}
        q_prev = np.asarray(q, dtype=float)[:7]
        out, worst = np.empty((len(times), 7)), 0.0
        for i, t in enumerate(times):
            pos, y = path.sample(t - now)
            q_prev, err, _, _ = self.kin.solve(pos, down_quat(y), q_init=q_prev)
            out[i] = q_prev
            worst = max(worst, err)
        return Chunk(times, out, self.phase, worst)


class PushCubeExpert(ScriptedExpert):
    """Push the cube to the goal with the closed fingers' broad face.

    Modes: the hand comes down beside the cube on its `left` or `right` (seen along the push
    direction), then slides behind it to the pre-push pose, pushes along the cube -> goal line
    (re-aimed every chunk from the cube's pose), and holds. A push that loses the cube (pusher
    off the line, or past it) lifts and starts over from the approach.
    """
    task = 'push_cube'
    MODES = ('left', 'right')
    PHASES = ('lift', 'above', 'side', 'pre', 'push', 'hold')
    HALF = 0.025
    FACE = 0.0105               # finger pad half-thickness along the push direction
    Z_PUSH = 0.02               # fingertip height while pushing
    Z_TRAVEL = 0.10             # fingertip height when moving over the cube
    BEHIND = 0.06               # pre-push: fingertip this far behind the cube centre
    PAST_GOAL = 0.04            # the push ends with the fingertip this far short of the goal
    MAX_LATERAL = 0.04          # pusher centre this far off the cube -> goal line: start over
    PUSH_SPEED = 0.08

    def __init__(self, model, timing: ChunkTiming = ChunkTiming(), seed=None, modes=None,
                 speed: float = 0.12, push_speed: float = PUSH_SPEED):
        self.push_speed = float(push_speed)
        super().__init__(model, timing, seed, modes, speed)

    def reset(self, seed=None) -> dict:
        info = super().reset(seed)
        self.phase = 'above'      # from the start pose (over the table) no lift is needed
        return info

    def draw_variation(self) -> dict:
        r = self.rng
        return dict(side_offset=r.uniform(0.06, 0.10),     # how far beside the cube it comes down
                    speed_scale=r.uniform(0.85, 1.15),
                    push_speed_scale=r.uniform(0.85, 1.1),
                    travel_height=r.uniform(0.09, 0.13))

    def _frame(self, state: dict) -> tuple:
        cube = np.array(state['object_position'], dtype=float)
        goal = np.array(state['goal_position'], dtype=float)
        d = (goal - cube)[:2]
        u = np.append(d / max(np.linalg.norm(d), 1e-6), 0.0)
        v = np.array([-u[1], u[0], 0.0])                 # left of the push direction
        return cube, goal, u, v

    def check(self, tcp, yaw, state):
        cube, goal, u, v = self._frame(state)
        rel = tcp - cube
        along, lateral = float(rel @ u), float(rel @ v)
        radius = float(state.get('success_radius', 0.035))
        cube_at_goal = np.linalg.norm((goal - cube)[:2]) < 0.6 * radius
        if self.phase == 'push':
            lost = abs(lateral) > self.MAX_LATERAL or along > -(self.HALF - 0.005)
            end = goal - self.PAST_GOAL * u
            stalled = np.linalg.norm((tcp - end)[:2]) < 0.01 and not cube_at_goal
            if (lost or stalled) and not cube_at_goal:
                self.phase = 'lift'
                self.recoveries += 1
        elif self.phase == 'hold' and not state.get('success', False) and not cube_at_goal:
            self.phase = 'lift'
            self.recoveries += 1

    def waypoints(self, tcp, yaw, state):
        cube, goal, u, v = self._frame(state)
        var = self.variation
        fast, slow = self.speed * var['speed_scale'], self.push_speed * var['push_speed_scale']
        side = 1.0 if self.mode == 'left' else -1.0
        heading = nearest_symmetric_yaw(np.arctan2(u[1], u[0]), yaw)
        z_push, z_travel = self.Z_PUSH, var['travel_height']
        pre = cube - self.BEHIND * u
        pre[2] = z_push
        beside = pre + side * var['side_offset'] * v
        end = goal - self.PAST_GOAL * u
        end[2] = z_push
        plan = {
            'lift': Waypoint(np.array([tcp[0], tcp[1], z_travel]), yaw, fast, 'lift'),
            'above': Waypoint(beside + [0, 0, z_travel - z_push], heading, fast, 'above'),
            'side': Waypoint(beside, heading, fast * 0.7, 'side'),
            'pre': Waypoint(pre, heading, slow, 'pre'),
        }
        if self.phase == 'push':
            # back onto the cube -> goal line where the pusher is, then along it
            along = float((tcp - cube) @ u)
            on_line = cube + (along + 0.01) * u
            on_line[2] = z_push
            push = [Waypoint(on_line, heading, slow, 'push_align'), Waypoint(end, heading, slow, 'push')]
        else:
            push = [Waypoint(end, heading, slow, 'push')]
        order = list(self.PHASES)
        out = [plan[p] for p in order[order.index(self.phase):order.index('push')] if p in plan]
        if self.phase != 'hold':
            out += push
        return out


class ReachExpert(ScriptedExpert):
    """Bring the fingertip to the target, detouring to its `left` or `right` (or `over` it)."""
    task = 'reach'
    MODES = ('left', 'right', 'over')
    PHASES = ('via', 'target', 'hold')

    def draw_variation(self) -> dict:
        r = self.rng
        return dict(detour=r.uniform(0.06, 0.12), speed_scale=r.uniform(0.85, 1.15),
                    via_fraction=r.uniform(0.4, 0.6))

    def reset(self, seed=None) -> dict:
        info = super().reset(seed)
        self._start = None
        return info

    def waypoints(self, tcp, yaw, state):
        target = np.array(state.get('target_position', state['goal_position']), dtype=float)
        var = self.variation
        speed = self.speed * var['speed_scale']
        if self._start is None:
            self._start = tcp.copy()
        d = target - self._start
        horizontal = np.array([d[0], d[1], 0.0])
        n = np.linalg.norm(horizontal)
        left = np.array([-horizontal[1], horizontal[0], 0.0]) / n if n > 1e-6 else np.array([0.0, 1.0, 0.0])
        offset = {'left': left, 'right': -left, 'over': np.array([0.0, 0.0, 1.0])}[self.mode]
        via = self._start + var['via_fraction'] * d + var['detour'] * offset
        out = []
        if self.phase == 'via':
            out.append(Waypoint(via, yaw, speed, 'via'))
        if self.phase in ('via', 'target'):
            out.append(Waypoint(target, yaw, speed * 0.8, 'target'))
        return out or [Waypoint(target, yaw, speed * 0.5, 'hold')]


EXPERTS = {cls.task: cls for cls in (PushCubeExpert, ReachExpert)}


def make_expert(task: str, model, **kwargs) -> ScriptedExpert:
    try:
        cls = EXPERTS[task]
    except KeyError:
        raise ValueError(f'no scripted expert for task {task!r}; experts: {sorted(EXPERTS)}') from None
    return cls(model, **kwargs)


class ActionNoise:
    """Smooth joint-space noise for executing an expert with perturbations (FIELD_NOTES sec. 3).

    Per joint a stationary AR(1) (discretised Ornstein-Uhlenbeck) process with std `std` (rad)
    and correlation time `tau` (s), on a grid of `dt`, linearly interpolated: a function of
    absolute time, so the overlapping parts of successive chunks get the same perturbation and
    the executed motion stays smooth. Per episode it is off with probability `clean_fraction`.
    """

    def __init__(self, std: float = 0.0, clean_fraction: float = 0.0, tau: float = 0.4,
                 dt: float = 0.1, dof: int = 7, seed=None):
        if not (std >= 0 and 0.0 <= clean_fraction <= 1.0 and tau > 0 and dt > 0):
            raise ValueError(f'need std >= 0, 0 <= clean_fraction <= 1, tau > 0, dt > 0; got '
                             f'{std}, {clean_fraction}, {tau}, {dt}')
        self.std, self.clean_fraction, self.tau, self.dt, self.dof = float(std), float(clean_fraction), \
            float(tau), float(dt), int(dof)
        self.rng = np.random.default_rng(seed)
        self.active = False
        self._origin = None
        self._values = np.zeros((0, self.dof))

    def reset(self) -> bool:
        """New episode: draws whether it is noisy; returns that."""
        self.active = self.std > 0 and self.rng.random() >= self.clean_fraction
        self._origin = None
        self._values = np.zeros((0, self.dof))
        return self.active

    def _extend(self, n: int) -> None:
        a = np.exp(-self.dt / self.tau)
        values = list(self._values)
        x = values[-1] if values else self.rng.normal(0.0, self.std, self.dof)
        if not values:
            values.append(x)
        while len(values) < n:
            x = a * x + np.sqrt(1 - a * a) * self.rng.normal(0.0, self.std, self.dof)
            values.append(x)
        self._values = np.array(values)

    def __call__(self, times) -> np.ndarray:
        """(N, dof) perturbation at absolute times (zeros when this episode is clean)."""
        times = np.asarray(times, dtype=float)
        if not self.active:
            return np.zeros((len(times), self.dof))
        if self._origin is None:
            self._origin = float(times[0])
        s = np.maximum((times - self._origin) / self.dt, 0.0)
        self._extend(int(np.ceil(s.max())) + 2)
        k = np.floor(s).astype(int)
        frac = (s - k)[:, None]
        return (1 - frac) * self._values[k] + frac * self._values[k + 1]

    def info(self) -> dict:
        return {'noisy': self.active, 'action_noise': self.std if self.active else 0.0,
                'noise_tau': self.tau, 'clean_fraction': self.clean_fraction}
