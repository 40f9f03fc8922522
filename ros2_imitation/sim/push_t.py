"""Push-T on the Panda's table: push a T-shaped block onto a T marked on the table.

The block and the marked target have Push-T's shape (gym-pusht: a bar 4 units long and 1 unit thick,
with a stem 1 unit thick and 3 units long below its centre; here 1 unit = 3 cm, so the bar is
12 x 3 cm and the T is 12 cm tall) and the block is 3 cm high. The target pose is fixed, as in
Push-T; the block starts anywhere in a region around it with any yaw, drawn from the episode's seed
and never already mostly on the target. The gripper is closed: the fingers push.

Coverage is Push-T's: the fraction of the target T's area that the block's footprint covers (the
block must lie flat on the table). Success: coverage >= 0.95. Measured on a fixed grid of points
inside the target T (1 mm spacing: the area is exact to well under a percent). Like Push-T it asks
for precision: a 1 cm offset across the 3 cm bar already loses a quarter of the coverage.
"""
import numpy as np

from ros2_imitation.sim.task_base import Task, rounded

UNIT = 0.03                                       # Push-T's 30 px
HEIGHT = 0.03
# the T's two rectangles in the block frame: (x_min, x_max, y_min, y_max); origin at the bar's
# bottom edge centre as gym-pusht's body; the T points along -y (stem below the bar)
BAR = (-2 * UNIT, 2 * UNIT, 0.0, UNIT)
STEM = (-0.5 * UNIT, 0.5 * UNIT, -3 * UNIT, 0.0)
AREA = (BAR[1] - BAR[0]) * (BAR[3] - BAR[2]) + (STEM[1] - STEM[0]) * (STEM[3] - STEM[2])


def t_points(spacing: float = 0.001) -> np.ndarray:
    """(N, 2) grid points covering the T in its own frame, one per spacing^2 of area."""
    points = []
    for x0, x1, y0, y1 in (BAR, STEM):
        xs = np.arange(x0 + spacing / 2, x1, spacing)
        ys = np.arange(y0 + spacing / 2, y1, spacing)
        gx, gy = np.meshgrid(xs, ys)
        points.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
    return np.concatenate(points)


def inside_t(points: np.ndarray) -> np.ndarray:
    """(N,) bool: which points (block frame) lie in the T."""
    x, y = points[:, 0], points[:, 1]
    return (((BAR[0] <= x) & (x <= BAR[1]) & (BAR[2] <= y) & (y <= BAR[3])) |
            ((STEM[0] <= x) & (x <= STEM[1]) & (STEM[2] <= y) & (y <= STEM[3])))


def to_world(points, pose) -> np.ndarray:
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    return points @ np.array([[c, s], [-s, c]]) + np.array([x, y])


def to_frame(points, pose) -> np.ndarray:
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    return (points - np.array([x, y])) @ np.array([[c, -s], [s, c]])


_GRID = t_points()


def coverage(block_pose, target_pose) -> float:
    """The fraction of the target T (x, y, yaw) covered by the block's T (x, y, yaw)."""
    world = to_world(_GRID, target_pose)
    return float(inside_t(to_frame(world, block_pose)).mean())


def push_t_score(best_coverages) -> float:
    """Diffusion Policy's Push-T figure: the mean over episodes of each episode's best reward, the
    reward being coverage / 0.95 capped at 1 (gym-pusht's). Success rates are a stricter figure."""
    best = np.asarray(best_coverages, dtype=float)
    return float(np.mean(np.minimum(best / PushT.SUCCESS_COVERAGE, 1.0))) if best.size else float('nan')


class PushT(Task):
    name = 'push_t'
    gripper_width = 0.0                           # closed: the fingers push
    TARGET = (0.52, 0.02, np.pi / 4)              # x, y, yaw of the marked T (fixed, as in Push-T)
    START_X = (0.40, 0.64)
    START_Y = (-0.14, 0.18)
    MAX_START_COVERAGE = 0.3
    SUCCESS_COVERAGE = 0.95
    MASS = 0.15
    REST_HEIGHT = 0.005                            # m above its resting height: still flat on the table
    timeout = 60.0                                 # a push at a time: the expert needs 20-45 s

    def xml(self) -> str:
        def boxes(prefix, z, half_h, rgba, extra):
            out = []
            for name, (x0, x1, y0, y1) in (('bar', BAR), ('stem', STEM)):
                out.append(f'<geom name="{prefix}_{name}" type="box" pos="{(x0 + x1) / 2} {(y0 + y1) / 2} {z}" '
                           f'size="{(x1 - x0) / 2} {(y1 - y0) / 2} {half_h}" rgba="{rgba}" {extra}/>')
            return '\n      '.join(out)
        tx, ty, tyaw = self.TARGET
        return f'''
    <body name="block" pos="0.5 -0.1 {HEIGHT / 2}">
      <freejoint name="block_joint"/>
      {boxes('block', 0.0, HEIGHT / 2, '0.45 0.55 0.75 1', f'mass="{self.MASS / 2}" friction="0.5 0.005 0.0001" condim="4"')}
    </body>
    <body name="target" mocap="true" pos="{tx} {ty} 0.0005" quat="{np.cos(tyaw / 2)} 0 0 {np.sin(tyaw / 2)}">
      {boxes('target', 0.0, 0.0005, '0.1 0.75 0.2 1', 'contype="0" conaffinity="0"')}
    </body>'''

    def bind(self, model):
        joint = model.joint('block_joint')
        self._qpos = int(joint.qposadr[0])
        self._qvel = int(joint.dofadr[0])

    def randomize(self, model, data, rng):
        for _ in range(1000):
            pose = (rng.uniform(*self.START_X), rng.uniform(*self.START_Y), rng.uniform(-np.pi, np.pi))
            if coverage(pose, self.TARGET) < self.MAX_START_COVERAGE:
                break
        self.place_block(data, pose)

    def place_block(self, data, pose) -> None:
        x, y, yaw = pose
        data.qpos[self._qpos:self._qpos + 7] = [x, y, HEIGHT / 2, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
        data.qvel[self._qvel:self._qvel + 6] = 0.0

    def block_pose(self, data) -> tuple:
        """(x, y, yaw) on the table, and whether it lies flat on it."""
        q = data.qpos[self._qpos:self._qpos + 7]
        w, x, y, z = q[3:7]
        flat = abs(q[2] - HEIGHT / 2) < self.REST_HEIGHT and (x * x + y * y) < 1e-3
        return (float(q[0]), float(q[1]), float(2 * np.arctan2(z, w))), bool(flat)

    def state(self, model, data, ee):
        pose, flat = self.block_pose(data)
        cover = coverage(pose, self.TARGET) if flat else 0.0
        return dict(task=self.name, success=bool(cover >= self.SUCCESS_COVERAGE), coverage=round(cover, 4),
                    object_position=rounded([pose[0], pose[1], HEIGHT / 2]), object_yaw=round(pose[2], 6),
                    goal_position=rounded([*self.TARGET[:2], 0.0]), goal_yaw=round(self.TARGET[2], 6),
                    yaw_symmetry=1,                # a T looks the same only after a full turn
                    flat=flat, ee_position=rounded(ee))

