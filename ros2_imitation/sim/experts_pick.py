"""The scripted pick-and-place expert (task pick_place), ROS-free. It acts like the others (see
experts.py): a 16-point chunk every 0.8 s, re-planned from the measured arm and the task state.

Its chunks have 8 columns: the 7 arm joint positions (rad) and the gripper opening (m, 0 closed ..
0.08 open, the Franka Hand), the action layout of tasks.Task with gripper_action.

Phases: over the cube with the hand turned to a pair of its faces (`above`), down to grasp height
(`descend`), close the fingers while holding still (`close`), up (`lift`), over the target
(`carry`), down until the cube almost touches the table (`lower`), open while holding still
(`release`), straight up (`retreat`) and hold. Modes: which pair of faces the fingers close on,
`faces_0` (across the cube's y axis: the hand turned to the cube's yaw) or `faces_90` (across its
x axis: yaw + 90 degrees); both are valid for every cube, so the demonstrations are bimodal.
Per-episode variations: speeds, travel height, grasp height, and where in the square the cube goes.

Closed loop, and a slip is loud: a grasp that misses (fingers closed on nothing) or a cube that
leaves the hand while lifted, carried or lowered sends the expert back to `above` (gripper opening
on the way) to pick it up again; each such event counts in `slips` and `recoveries` (in info()),
and a cube that ends up outside the target after the release is picked up again too.
"""
import numpy as np

from ros2_imitation.sim.expert_base import ScriptedExpert, Waypoint, nearest_symmetric_yaw


class PickPlaceExpert(ScriptedExpert):
    task = 'pick_place'
    MODES = ('faces_0', 'faces_90')
    PHASES = ('above', 'descend', 'close', 'lift', 'carry', 'lower', 'release', 'retreat', 'hold')
    GRIPPER = True
    OPEN = 0.08
    CLOSED = 0.0                 # commanded while holding: the fingers squeeze (PandaSim's servo)
    HALF = 0.0225                # the cube's half side (tasks.PickPlace.HALF)
    CLOSE_TIME = 1.0             # s: 0.08 -> 0 at 0.08 m/s, under the 0.1 m/s gripper limit
    RELEASE_TIME = 0.8
    PLACE_CLEARANCE = 0.004      # the cube's bottom this far over the table when it is let go
    MISSED = 0.01                # an opening under this with the fingers closed: nothing in the hand

    def draw_variation(self) -> dict:
        r = self.rng
        return dict(speed_scale=r.uniform(0.85, 1.15), travel_height=r.uniform(0.10, 0.14),
                    grasp_height=r.uniform(-0.004, 0.004),         # around the cube's centre
                    place_dx=r.uniform(-0.015, 0.015), place_dy=r.uniform(-0.015, 0.015))

    def reset(self, seed=None) -> dict:
        self.slips = 0
        self._grasp = None       # (x, y, z, yaw) frozen when the fingers start to close
        return super().reset(seed)

    def info(self) -> dict:
        return {**super().info(), 'slips': getattr(self, 'slips', 0)}

    def progress(self) -> dict:
        return {'slips': self.slips, 'recoveries': self.recoveries}

    def plan(self, now, q, state):
        self._now = now
        return super().plan(now, q, state)

    def _grasp_yaw(self, state: dict, yaw: float) -> float:
        cube_yaw = float(state['object_yaw'])
        turn = 0.0 if self.mode == 'faces_0' else np.pi / 2
        return nearest_symmetric_yaw(cube_yaw + turn, yaw)

    def _retry(self) -> None:
        self.phase = 'above'
        self._grasp = None
        self.slips += 1
        self.recoveries += 1

    def check(self, tcp, yaw, state):
        held = bool(state.get('grasped'))
        if self.phase in ('lift', 'carry', 'lower'):
            width = float(state.get('gripper_width', self.OPEN))
            if not held or width < self.MISSED:
                self._retry()
        elif self.phase in ('retreat', 'hold') and not state.get('success') and not state.get('inside') \
                and not held:
            self._retry()   # let go outside the target (or it rolled out): pick it up again

    def waypoints(self, tcp, yaw, state):
        var = self.variation
        fast = self.speed * var['speed_scale']
        slow = 0.5 * fast
        cube = np.array(state['object_position'], dtype=float)
        target = np.array(state['target_position'], dtype=float)
        travel = var['travel_height']
        if self.phase in ('above', 'descend') or self._grasp is None:
            grasp_yaw = self._grasp_yaw(state, yaw)
            grasp = np.array([cube[0], cube[1], self.HALF + var['grasp_height']])
            if self.phase in ('close', 'lift', 'carry', 'lower'):   # entering close: freeze it
                self._grasp = (*grasp, grasp_yaw)
        else:
            *grasp, grasp_yaw = self._grasp
            grasp = np.array(grasp)
        # where the cube sits in the hand, for putting it down at the right height
        in_hand = cube[2] - tcp[2] if state.get('grasped') else self.HALF - grasp[2]
        place = np.array([target[0] + var['place_dx'], target[1] + var['place_dy'],
                          self.HALF + self.PLACE_CLEARANCE - in_hand])
        plan = {
            'above': Waypoint(np.array([grasp[0], grasp[1], travel]), grasp_yaw, fast, 'above', self.OPEN),
            'descend': Waypoint(grasp, grasp_yaw, slow, 'descend', self.OPEN),
            'close': Waypoint(grasp, grasp_yaw, slow, 'close', self.CLOSED, self.CLOSE_TIME),
            'lift': Waypoint(np.array([grasp[0], grasp[1], travel]), grasp_yaw, slow, 'lift', self.CLOSED),
            'carry': Waypoint(np.array([place[0], place[1], travel]), yaw if self.phase == 'carry' else grasp_yaw,
                              fast, 'carry', self.CLOSED),
            'lower': Waypoint(place, yaw if self.phase == 'lower' else grasp_yaw, slow, 'lower', self.CLOSED),
            'release': Waypoint(place, yaw, slow, 'release', self.OPEN, self.RELEASE_TIME),
            'retreat': Waypoint(np.array([place[0], place[1], travel]), yaw, slow, 'retreat', self.OPEN),
        }
        if self.phase == 'release':
            plan['release'].position = tcp.copy()      # open where the hand is: do not drag the cube
        # The dwells last as long as the opening still has to change: counted from the opening the
        # last chunk commands now, so re-planning every 0.8 s does not restart them.
        opening = self.gripper_at(self._now)
        span = self.OPEN - self.CLOSED
        if self.phase == 'close':
            plan['close'].duration = max(0.1, self.CLOSE_TIME * (opening - self.CLOSED) / span)
        if self.phase == 'release':
            plan['release'].duration = max(0.1, self.RELEASE_TIME * (self.OPEN - opening) / span)
        order = list(self.PHASES)
        out = [plan[p] for p in order[order.index(self.phase):] if p in plan]
        if self.phase in ('retreat', 'hold'):
            top = np.array([tcp[0], tcp[1], travel])
            out = [Waypoint(top, yaw, slow, 'retreat', self.OPEN)] if self.phase == 'retreat' else []
            out.append(Waypoint(top, yaw, slow, 'hold', self.OPEN, 0.5))
        return out
