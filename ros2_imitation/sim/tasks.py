"""Tasks for the Panda table scene: the objects they add, their seeded randomization, and success.

Positions are in the world frame, which is the robot base frame (the table top is z = 0).
"""
import mujoco
import numpy as np


class Task:
    name = ''
    gripper_width = 0.0     # the width the gripper is commanded to at reset

    def xml(self) -> str:
        """Bodies and geoms added to the worldbody."""
        raise NotImplementedError

    def bind(self, model: mujoco.MjModel) -> None:
        """Look up ids once the model is compiled."""

    def randomize(self, model, data, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def state(self, model, data, ee: np.ndarray) -> dict:
        raise NotImplementedError

    def success(self, model, data, ee: np.ndarray) -> bool:
        return bool(self.state(model, data, ee)['success'])


def _list(v) -> list:
    return [round(float(x), 6) for x in v]


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
    <body name="cube" pos="0.5 -0.08 {h}">
      <freejoint name="cube_joint"/>
      <geom name="cube" type="box" size="{h} {h} {h}" mass="0.1" rgba="0.85 0.1 0.1 1"
            friction="0.5 0.005 0.0001" condim="4"/>
    </body>
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
                    object_position=_list(cube[:3]), object_yaw=round(float(2 * np.arctan2(z, w)), 6),
                    goal_position=_list(goal), distance=round(distance, 6),
                    success_radius=self.SUCCESS_RADIUS, ee_position=_list(ee))


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
                    target_position=_list(target), goal_position=_list(target),
                    distance=round(distance, 6), success_radius=self.SUCCESS_RADIUS, ee_position=_list(ee))


TASKS = {cls.name: cls for cls in (PushCube, Reach)}


def make_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise ValueError(f'unknown task {name!r}; valid tasks: {sorted(TASKS)}') from None
