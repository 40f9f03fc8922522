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
import numpy as np

from ros2_imitation.runtime.chunking import ChunkTiming
from ros2_imitation.sim import scene
from ros2_imitation.sim.expert_base import (  # noqa: F401  (re-exported: the experts' public names)
    Chunk,
    Path,
    ScriptedExpert,
    Waypoint,
    hand_yaw,
    nearest_symmetric_yaw,
    wrap,
)
from ros2_imitation.sim.experts_pick import PickPlaceExpert
from ros2_imitation.sim.experts_push_t import PushTExpert

ARM_JOINTS = scene.ARM_JOINTS


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
                 speed: float = 0.12, push_speed: float = PUSH_SPEED, style: str | None = None):
        self.push_speed = float(push_speed)
        super().__init__(model, timing, seed, modes, speed, style)

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


EXPERTS = {cls.task: cls for cls in (PushCubeExpert, ReachExpert, PickPlaceExpert, PushTExpert)}


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
