"""The scripted Push-T expert (task push_t), ROS-free: pushes the T block onto the marked T with the
closed fingers, one push at a time, each planned from the block's measured pose.

A push: up to travel height (`lift`), over a point just outside the block (`above`), down to push
height (`down`), along the push direction (`push`), back off (`back`); then the next push is
planned from where the block ended up (a next push that starts close by is reached at push height).

Which push: every contact along the T's edges (every 5 mm, pushing along the inward normal) where
the fingers can come down clear of the block is scored by a quasi-static model of a pushed block
(_plan_push); the one that would leave the least centre-of-mass offset and yaw error is taken, for
the distance the model gives (a little less, plus the slack the arm's compliance takes up). Far off,
that means long pushes near the bar's ends that turn and slide at once; near the target, millimetre
pushes. A quasi-static pusher needs several, as a person does; the task's timeout is 60 s.

Modes: which end of the T the expert prefers when two pushes are nearly as good (`left_end`,
`right_end`), so the same block is pushed home in different ways. Per-episode variations: speeds,
push height, travel height.

Styles: `phased` (the default) commits to a push and walks its phases, remembering where it is;
`reactive` decides everything again at every plan from what it sees now (the hand's pose and the
block's), with no memory but the episode's mode and variations: the push scored as above plus REACH
times the hand's distance from the push's path (so it keeps the push it is on rather than
switching for a marginally better one), and the phase from where the hand is relative to that push
(on its line at push height: push; beside its start at push height: slide there; elsewhere low:
lift; above its start: come down; else travel over). A policy sees only the present (and one past
observation), so an expert whose choice is a function of it leaves nothing hidden to imitate.
"""
import numpy as np

from ros2_imitation.sim.expert_base import ScriptedExpert, Waypoint, distance_to_segment, wrap
from ros2_imitation.sim.push_t import PushT, UNIT, inside_t, to_frame, to_world

# the T's centre of mass in its own frame (bar 4 x 1 units above its origin, stem 1 x 3 below)
COM = np.array([0.0, (4 * 0.5 - 3 * 1.5) * UNIT / 7])
# its outline, counter-clockwise (units), and the contacts a push may use: every 5 mm along each
# edge, 6 mm clear of its corners, with the inward normal
OUTLINE = np.array([(-0.5, -3), (0.5, -3), (0.5, 0), (2, 0), (2, 1), (-2, 1), (-2, 0), (-0.5, 0)]) * UNIT


def _contacts(spacing: float = 0.005, clear: float = 0.006) -> list:
    out = []
    for p, q in zip(OUTLINE, np.roll(OUTLINE, -1, axis=0)):
        edge = q - p
        length = float(np.linalg.norm(edge))
        inward = np.array([-edge[1], edge[0]]) / length
        for t in np.arange(clear, length - clear + 1e-9, spacing):
            out.append((p + edge * (t / length), inward))
    return out


CONTACTS = _contacts()


class PushTExpert(ScriptedExpert):
    task = 'push_t'
    MODES = ('left_end', 'right_end')
    PHASES = ('lift', 'above', 'down', 'push', 'back', 'next')
    STYLES = ('phased', 'reactive')
    # the closed fingers' half-sizes at push height along the hand's x (the pads' thickness: the
    # hand's x leads the push) and y (across both fingers' upper pads, which reach the 3 cm block)
    FACE = 0.0105
    SPAN = 0.025
    MARGIN = 0.003
    HOME_YAW = 0.0               # the hand's heading at home: turns stay near it (joint 7's range)
    HOP = 0.025                  # m: a next push starting this close is reached at push height
    STALL = 6.0                  # s on one push without finishing it: plan another
    CLEAR = 0.012                # standoff from the block before a push starts
    MAX_PUSH = 0.06              # m per push
    C = 0.04                     # m: the limit surface's characteristic length (~ the T's size)
    LEVER = 0.06                 # m: a yaw error counts as this lever times it
    GAIN = 0.9                   # of the modelled distance: undershoot, the next push corrects
    SLACK = 0.0015               # m added to every push: what the arm's compliance and the contact take up
    # reactive style
    REACH = 0.03                 # m of modelled error a push is charged per m between the hand and its path
    LOW = 0.008                  # m above push height that still counts as at push height
    LANE = 0.004                 # m off a push's line (or its start) that still counts as on it

    def draw_variation(self) -> dict:
        r = self.rng
        return dict(speed_scale=r.uniform(0.9, 1.2), push_speed=r.uniform(0.05, 0.07),
                    push_height=r.uniform(0.012, 0.018), travel_height=r.uniform(0.05, 0.06))

    def reset(self, seed=None) -> dict:
        self._push = None        # (start, end, hand yaw, direction): the push being executed, world frame
        self.pushes = 0
        self._decided = None     # the reactive style's last phase (only to count its pushes)
        return super().reset(seed)

    def progress(self) -> dict:
        return {'pushes': self.pushes}

    # ---- planning one push ----
    @staticmethod
    def errors(state: dict) -> tuple:
        """(centre-of-mass offset to the target's (2,), yaw error, block pose), world frame."""
        pose = (*state['object_position'][:2], float(state['object_yaw']))
        target = PushT.TARGET
        com = to_world(COM[None], pose)[0]
        goal = to_world(COM[None], target)[0]
        return goal - com, wrap(target[2] - pose[2]), pose

    def _plan_push(self, state: dict, tcp, yaw):
        """The push that leaves the least error, by a quasi-static model of a pushed block: pushing
        at r (from the centre of mass) along the inward normal n for a distance d moves the centre
        d n / D and turns the block by d (r x n) / (C^2 D), D = 1 + (r x n)^2 / C^2 (an ellipsoidal
        limit surface, C its characteristic length). Error: the offset and LEVER x the yaw error.
        Only contacts the fingers can come down beside and reach count; among pushes nearly as good,
        the mode's side of the T is taken (multimodal demonstrations). The reactive style also charges
        each push REACH x the hand's distance from its path."""
        offset, dyaw, pose = self.errors(state)
        error = np.array([offset[0], offset[1], self.LEVER * dyaw])
        c, s = np.cos(pose[2]), np.sin(pose[2])
        rot = np.array([[c, -s], [s, c]])
        side = 1.0 if self.mode == 'right_end' else -1.0
        reach = self.REACH if self.style == 'reactive' else 0.0
        best = None
        for point, normal in CONTACTS:
            r, n = rot @ (point - COM), rot @ normal
            q = r[0] * n[1] - r[1] * n[0]
            d_com = 1.0 + q * q / self.C ** 2
            a = np.array([n[0] / d_com, n[1] / d_com, self.LEVER * q / (self.C ** 2 * d_com)])
            d = float(np.clip(error @ a / (a @ a), 0.0, self.MAX_PUSH))
            if d < 0.001:
                continue
            left = float(np.linalg.norm(error - d * a))
            score = left - 0.002 * side * np.sign(point[0])
            contact = to_world(point[None], pose)[0]
            if reach:
                score += reach * distance_to_segment(tcp[:2], contact - (self.FACE + self.CLEAR) * n,
                                                     contact + (d * self.GAIN + self.SLACK - self.FACE) * n)
            if best is not None and score >= best[0]:
                continue
            if self._overlaps(contact - (self.FACE + self.MARGIN + 0.001) * n, n, pose):
                continue                                  # the fingers do not fit there
            best = (score, contact, n, d)
        if best is None:                                  # nothing reduces the error: nudge toward the target
            n = offset / max(np.linalg.norm(offset), 1e-9)
            best = (0.0, to_world(COM[None], pose)[0] - 0.08 * n, n, 0.005)
        _, contact, u, distance = best
        var = self.variation
        z = var['push_height']
        heading = self._heading(u, yaw)
        back = self.FACE + self.CLEAR
        while back < 0.1 and self._overlaps(contact - back * u, u, pose):   # come down clear of the block
            back += 0.003
        start = np.append(contact - back * u, z)
        end = np.append(contact + (distance * self.GAIN + self.SLACK - self.FACE) * u, z)
        return start, end, heading, u

    def _heading(self, u, yaw: float) -> float:
        """The hand's yaw for a push along u (its x axis along u; the closed fingers look the same
        turned by pi): the nearer of the two to the current yaw among those within 100 degrees of
        home, so the wrist never runs into its limit."""
        along = np.arctan2(u[1], u[0])
        options = [yaw + wrap(along + k * np.pi - yaw) for k in (0, 1)]
        allowed = [o for o in options if abs(wrap(o - self.HOME_YAW)) < np.radians(100)] or options
        return min(allowed, key=lambda o: abs(o - yaw))

    def _overlaps(self, centre, u, pose) -> bool:
        """Whether the fingers at `centre` (world xy, pushing along u) would touch the block."""
        v = np.array([-u[1], u[0]])
        a, b = np.meshgrid(np.linspace(-self.FACE, self.FACE, 5), np.linspace(-self.SPAN, self.SPAN, 11))
        a, b = a.reshape(-1, 1) * (1 + self.MARGIN / self.FACE), b.reshape(-1, 1) + np.sign(b.reshape(-1, 1)) * self.MARGIN
        points = centre[None] + a * u[None] + b * v[None]
        return bool(inside_t(to_frame(points, pose)).any())

    # ---- the expert interface ----
    def plan(self, now, q, state):
        self._now = now
        return super().plan(now, q, state)

    def check(self, tcp, yaw, state):
        if self.style == 'reactive':
            self._push = self._plan_push(state, tcp, yaw)
            phase = self._phase_at(tcp)
            self.pushes += int(phase == 'push' and self._decided != 'push')
            self.phase = self._decided = phase
            return
        stalled = self._push is not None and self._now - self._push_since > self.STALL
        if self._push is None or self.phase == 'next' or stalled:
            self.recoveries += int(stalled)
            self._push = self._plan_push(state, tcp, yaw)
            self.pushes += 1
            self._push_since = self._now
            near = np.linalg.norm(self._push[0][:2] - tcp[:2]) < self.HOP and tcp[2] < 0.03
            self.phase = 'down' if near else 'lift'

    def _phase_at(self, tcp) -> str:
        """The reactive style's phase: where the hand is relative to the push it has chosen."""
        start, end, _, u = self._push
        rel = tcp[:2] - start[:2]
        along, across = float(rel @ u), abs(float(rel @ np.array([-u[1], u[0]])))
        low = tcp[2] < self.variation['push_height'] + self.LOW
        if low and across < self.LANE and -self.LANE < along < float((end - start)[:2] @ u):
            return 'push'
        if low:     # beside the start (not past it, where the block is): slide there; else lift
            return 'down' if np.linalg.norm(rel) < self.HOP and along < 0.002 else 'lift'
        return 'down' if np.linalg.norm(rel) < self.LANE else 'above'

    def waypoints(self, tcp, yaw, state):
        var = self.variation
        fast = self.speed * var['speed_scale']
        slow = var['push_speed']
        start, end, heading, u = self._push
        travel = var['travel_height']
        back = end - np.append(0.015 * u, 0.0)
        plan = {
            'lift': Waypoint(np.array([tcp[0], tcp[1], travel]), yaw, fast, 'lift'),
            'above': Waypoint(np.append(start[:2], travel), heading, fast, 'above'),
            'down': Waypoint(start, heading, fast * 0.5, 'down'),
            'push': Waypoint(end, heading, slow, 'push'),
            'back': Waypoint(back, heading, slow, 'back'),
        }
        order = list(self.PHASES)
        return [plan[p] for p in order[order.index(self.phase):] if p in plan]

