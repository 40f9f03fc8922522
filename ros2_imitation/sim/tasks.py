"""Tasks for the Panda table scene: the objects they add, their seeded randomization, and success.

Positions are in the world frame, which is the robot base frame (the table top is z = 0).
"""
import numpy as np

from ros2_imitation.sim.push_t import PushT
from ros2_imitation.sim.task_base import Task, rounded


def cube_xml(half: float, mass: float, friction: str, xy: tuple) -> str:
    """A free red cube of side 2 * half resting on the table at xy (the body and geom named cube)."""
    return f'''<body name="cube" pos="{xy[0]} {xy[1]} {half}">
      <freejoint name="cube_joint"/>
      <geom name="cube" type="box" size="{half} {half} {half}" mass="{mass}" rgba="0.85 0.1 0.1 1"
            friction="{friction}" condim="4"/>
    </body>'''


class PushCube(Task):
    """Push a red cube into a green circle drawn on the table, with the gripper closed."""
    name = 'push_cube'
    HALF = 0.025                                   # a 5 cm cube
    CUBE_X = (0.42, 0.58)                          # cube start region (m)
    CUBE_Y = (-0.14, -0.02)
    CUBE_YAW = (-0.5, 0.5)                         # rad
    GOAL = (0.55, 0.12)                            # goal centre on the table
    GOAL_DRAWN_RADIUS = 0.05                       # the circle; larger than the tolerance so the
    SUCCESS_RADIUS = 0.035                         # goal stays visible around a successful cube

    def __init__(self, goal_jitter: float = 0.0):
        self.goal_jitter = float(goal_jitter)      # uniform +- (m) on the goal centre

    def xml(self) -> str:
        h = self.HALF
        return f'''
{cube_xml(h, 0.1, '0.5 0.005 0.0001', (0.5, -0.08))}
    <body name="goal" mocap="true" pos="{self.GOAL[0]} {self.GOAL[1]} 0.0005">
      <geom name="goal" type="cylinder" size="{self.GOAL_DRAWN_RADIUS} 0.0005" rgba="0.1 0.75 0.2 1"
            contype="0" conaffinity="0"/>
    </body>'''

    def bind(self, model):
        joint = model.joint('cube_joint')
        self._qpos = int(joint.qposadr[0])
        self._qvel = int(joint.dofadr[0])
        self._goal_mocap = int(model.body('goal').mocapid[0])

    def randomize(self, model, data, rng):
        x, y = rng.uniform(self.CUBE_X[0], self.CUBE_X[1]), rng.uniform(self.CUBE_Y[0], self.CUBE_Y[1])
        yaw = rng.uniform(*self.CUBE_YAW)
        data.qpos[self._qpos:self._qpos + 7] = [x, y, self.HALF, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        data.qvel[self._qvel:self._qvel + 6] = 0.0
        goal = np.array([*self.GOAL, 0.0005])
        if self.goal_jitter > 0:
            goal[:2] += rng.uniform(-self.goal_jitter, self.goal_jitter, 2)
        data.mocap_pos[self._goal_mocap] = goal

    def place_cube(self, data, xy, yaw: float = 0.0) -> None:
        """Put the cube at rest at (x, y) on the table (tests and scripted set-ups)."""
        pose = [xy[0], xy[1], self.HALF, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        data.qpos[self._qpos:self._qpos + 7] = pose
        data.qvel[self._qvel:self._qvel + 6] = 0.0

    def cube_pose(self, data) -> np.ndarray:
        """(x, y, z, qw, qx, qy, qz)"""
        return data.qpos[self._qpos:self._qpos + 7].copy()

    def goal_position(self, data) -> np.ndarray:
        return data.mocap_pos[self._goal_mocap].copy()

    def state(self, model, data, ee):
        cube = self.cube_pose(data)
        goal = self.goal_position(data)
        distance = float(np.linalg.norm(cube[:2] - goal[:2]))
        w, z = cube[3], cube[6]
        on_table = cube[2] < 2 * self.HALF
        return dict(task=self.name, success=bool(distance < self.SUCCESS_RADIUS and on_table),
                    object_position=rounded(cube[:3]), object_yaw=round(float(2 * np.arctan2(z, w)), 6),
                    goal_position=rounded(goal), distance=round(distance, 6),
                    success_radius=self.SUCCESS_RADIUS, ee_position=rounded(ee))


class Reach(Task):
    """Bring the fingertip centre to a yellow sphere floating over the table."""
    name = 'reach'
    TARGET_LOW = (0.38, -0.18, 0.05)            # all inside the camera view
    TARGET_HIGH = (0.62, 0.18, 0.22)
    SUCCESS_RADIUS = 0.02

    def xml(self) -> str:
        return '''
    <body name="target" mocap="true" pos="0.45 0 0.2">
      <geom name="target" type="sphere" size="0.02" rgba="0.95 0.8 0.1 1" contype="0" conaffinity="0"/>
    </body>'''

    def bind(self, model):
        self._mocap = int(model.body('target').mocapid[0])

    def randomize(self, model, data, rng):
        data.mocap_pos[self._mocap] = rng.uniform(self.TARGET_LOW, self.TARGET_HIGH)

    def place_target(self, data, pos) -> None:
        data.mocap_pos[self._mocap] = pos

    def state(self, model, data, ee):
        target = data.mocap_pos[self._mocap].copy()
        distance = float(np.linalg.norm(ee - target))
        return dict(task=self.name, success=bool(distance < self.SUCCESS_RADIUS),
                    target_position=rounded(target), goal_position=rounded(target),
                    distance=round(distance, 6), success_radius=self.SUCCESS_RADIUS, ee_position=rounded(ee))


class PickPlace(Task):
    """Pick a cube up and put it down inside a green square marked on the table.

    Actions: 7 arm joint positions + the gripper opening (m, 0 .. 0.08), see Task. The cube (4.5 cm)
    starts anywhere in a region right of the robot's centre line with any yaw; the target, a
    10 cm square drawn on the table (a marked square rather than a bin: no walls for the fingers
    to catch on, and a placed cube is judged on the table plane), lies in a region left of it. Both
    are drawn from the episode's seed. Success: the cube's centre is over the square, the cube rests
    flat on the table and has (almost) stopped, and the gripper has let go -- fingers opened wider
    than the cube and neither finger touching it. The gripper starts open and the scene has the
    grasping finger pads and the wrist camera.
    """
    name = 'pick_place'
    gripper_width = 0.08
    gripper_action = True
    wrist_camera = True
    grip = True
    HALF = 0.0225                                  # a 4.5 cm cube
    MASS = 0.08
    CUBE_X = (0.42, 0.58)                          # cube start region (m)
    CUBE_Y = (-0.17, -0.05)
    TARGET_X = (0.42, 0.58)                        # target centre region
    TARGET_Y = (0.07, 0.17)
    TARGET_HALF = 0.05                             # the square's half side: the success footprint
    REST_SPEED = 0.05                              # m/s: slower than this the cube counts as resting
    REST_SPIN = 0.5                                # rad/s
    RELEASE_MARGIN = 0.006                         # fingers open this much wider than the cube

    def xml(self) -> str:
        h, t = self.HALF, self.TARGET_HALF
        return f'''
{cube_xml(h, self.MASS, '1.0 0.01 0.0001', (0.5, -0.1))}
    <body name="target" mocap="true" pos="0.5 0.12 0.0005">
      <geom name="target" type="box" size="{t} {t} 0.0005" rgba="0.1 0.75 0.2 1" contype="0" conaffinity="0"/>
    </body>'''

    def bind(self, model):
        joint = model.joint('cube_joint')
        self._qpos = int(joint.qposadr[0])
        self._qvel = int(joint.dofadr[0])
        self._target_mocap = int(model.body('target').mocapid[0])
        self._cube_geom = model.geom('cube').id
        self._finger_bodies = (model.body('left_finger').id, model.body('right_finger').id)
        self._finger_qpos = [int(model.joint(n).qposadr[0]) for n in ('panda_finger_joint1', 'panda_finger_joint2')]

    def randomize(self, model, data, rng):
        xy = rng.uniform((self.CUBE_X[0], self.CUBE_Y[0]), (self.CUBE_X[1], self.CUBE_Y[1]))
        self.place_cube(data, xy, rng.uniform(-np.pi, np.pi))
        target = rng.uniform((self.TARGET_X[0], self.TARGET_Y[0]), (self.TARGET_X[1], self.TARGET_Y[1]))
        data.mocap_pos[self._target_mocap] = [target[0], target[1], 0.0005]

    def place_cube(self, data, xy, yaw: float = 0.0, z: float = None) -> None:
        """Put the cube at (x, y) (on the table unless z is given), at rest (tests, scripted set-ups)."""
        z = self.HALF if z is None else z
        data.qpos[self._qpos:self._qpos + 7] = [xy[0], xy[1], z, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        data.qvel[self._qvel:self._qvel + 6] = 0.0

    def place_target(self, data, xy) -> None:
        data.mocap_pos[self._target_mocap] = [xy[0], xy[1], 0.0005]

    def cube_pose(self, data) -> np.ndarray:
        """(x, y, z, qw, qx, qy, qz)"""
        return data.qpos[self._qpos:self._qpos + 7].copy()

    def finger_contacts(self, model, data) -> tuple:
        """(left, right): whether each finger touches the cube."""
        touching = [False, False]
        for geoms in data.contact.geom[:data.ncon]:
            if self._cube_geom not in geoms:
                continue
            other = geoms[1] if geoms[0] == self._cube_geom else geoms[0]
            body = model.geom_bodyid[other]
            for i, finger in enumerate(self._finger_bodies):
                touching[i] |= bool(body == finger)
        return tuple(touching)

    def state(self, model, data, ee):
        cube = self.cube_pose(data)
        target = data.mocap_pos[self._target_mocap].copy()
        offset = cube[:2] - target[:2]
        w, z = cube[3], cube[6]
        speed = float(np.linalg.norm(data.qvel[self._qvel:self._qvel + 3]))
        spin = float(np.linalg.norm(data.qvel[self._qvel + 3:self._qvel + 6]))
        left, right = self.finger_contacts(model, data)
        width = float(data.qpos[self._finger_qpos].sum())
        inside = bool(np.all(np.abs(offset) <= self.TARGET_HALF))
        # flat on a face (any face: the cube is symmetric) and on the table
        resting = bool(abs(cube[2] - self.HALF) < 0.004 and speed < self.REST_SPEED and spin < self.REST_SPIN)
        released = bool(not (left or right) and width > 2 * self.HALF + self.RELEASE_MARGIN)
        return dict(task=self.name, success=bool(inside and resting and released),
                    object_position=rounded(cube[:3]), object_quat=rounded(cube[3:]),
                    object_yaw=round(float(2 * np.arctan2(z, w)), 6),
                    object_speed=round(speed, 6),
                    target_position=rounded(target), target_yaw=0.0, goal_position=rounded(target),
                    target_half=self.TARGET_HALF, distance=round(float(np.linalg.norm(offset)), 6),
                    inside=inside, resting=resting, grasped=bool(left and right), released=released,
                    finger_contacts=[bool(left), bool(right)], gripper_width=round(width, 6),
                    ee_position=rounded(ee))


TASKS = {cls.name: cls for cls in (PushCube, Reach, PickPlace, PushT)}


def episode_timeout(task: str, timeout: float | None = None) -> float:
    """The episode length limit (sim seconds): `timeout` when given, else the task's own (push_t 60)."""
    return float(timeout) if timeout else make_task(task).timeout


def make_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f'unknown task {name!r}; valid tasks: {sorted(TASKS)}') from None
