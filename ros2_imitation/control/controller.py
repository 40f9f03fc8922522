"""The low-level chunk controller, ROS-free: chunks in, safe commands out at the control rate.

States:
  waiting   no joint state yet, or joint states went stale: nothing is commanded (effort mode sends
            one zero torque first, so a forward controller does not keep applying an old torque)
  tracking  following the latest accepted chunk
  holding   the chunk stream stopped: hold the last commanded pose (with damping in effort mode)
  resting   held for `hold_timeout`: effort mode brakes with damping only, other modes stop sending
  stopped   the stop service was called: hold where the arm is, reject chunks until resume
            (and after shutdown(), the node's last command: the arm left holding, no torque kept on)
Every command goes through SafetyFilter, whatever the chunk contained.

A robot with a gripper (robot.py): a chunk may carry one more column, the gripper width named
`gripper.command_name`. It is split off (the arm columns follow the rules above unchanged) and
goes to a GripperChannel (control/gripper.py); gripper_update() gives its safe width each cycle.

With `ee` (an EEChunkConverter: chunk_space ee) chunks are end-effector paths (control/ee_chunk.py:
EE_COLUMNS, + the gripper column): each is turned into a joint chunk by IK from the joints commanded
now, inside the workspace box and the tip speed limits, and then follows every rule above. A chunk of
the other space is rejected: one controller takes one kind. Mode `cartesian_target` keeps the poses
instead (control/pose_target.py): one equilibrium pose per cycle for an external Cartesian impedance
controller, through the workspace box, the tip speed limits and a NaN guard.
"""
from dataclasses import dataclass

import numpy as np

from ros2_imitation.control.ee_chunk import EE_COLUMNS
from ros2_imitation.control.gripper import GRIPPER_MODES, GripperChannel
from ros2_imitation.control.pose_target import PoseFilter, PoseFollower
from ros2_imitation.control.safety import SafetyFilter, Watchdog
from ros2_imitation.control.trajectory import Trajectory, TrajectoryFollower, retime_for_jtc, validate
from ros2_imitation.robot import RobotProfile
from ros2_imitation.sensors.proprioception import JointMapper, MappingError

MODES = ('impedance', 'position', 'trajectory', 'impedance_target', 'cartesian_target')


@dataclass
class Command:
    kind: str                      # 'effort' | 'position' | 'target' | 'trajectory' | 'pose'
    values: np.ndarray | None      # torques or positions (arm joint order)
    velocity: np.ndarray | None = None
    trajectory: Trajectory | None = None
    pose: tuple | None = None      # (position (3,), rotation (3, 3)) in the base frame: mode cartesian_target


class ChunkController:
    def __init__(self, robot: RobotProfile, mode: str = 'impedance', rate: float = 500.0,
                 interpolation: str = 'cubic', chunk_timeout: float = 0.3, hold_timeout: float = 2.0,
                 joint_state_timeout: float = 0.1, trajectory_lead: float = 0.05,
                 jump_threshold: float = 0.3, gripper_mode: str = '', ee=None):
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        # the gripper's output: '' = the profile's default, 'none' without a gripper
        self.gripper_mode = gripper_mode or (robot.gripper.output if robot.gripper else 'none')
        if self.gripper_mode not in GRIPPER_MODES:
            raise ValueError(f'gripper_mode must be one of {GRIPPER_MODES}, got {gripper_mode!r}')
        if self.gripper_mode != 'none' and robot.gripper is None:
            raise ValueError(f'gripper_mode {self.gripper_mode}: robot {robot.name} has no gripper')
        if not rate > 0:
            raise ValueError(f'control rate must be positive, got {rate}')
        self.robot, self.mode = robot, mode
        self.joints = robot.arm_joints
        self._mapper = JointMapper(self.joints)   # joint order is the message's: map by name
        self.safety = SafetyFilter(robot.limits, 1.0 / rate, self.joints)
        self.follower = TrajectoryFollower(self.joints, interpolation)
        # the finger joints count as lost after as long as the arm's joint states do
        self.gripper = GripperChannel(robot.gripper, 1.0 / rate, joint_state_timeout) if robot.gripper else None
        self.chunk_timeout, self.hold_timeout = chunk_timeout, hold_timeout
        self.trajectory_lead = trajectory_lead
        # A real arm cannot move this far between two joint states: a jump means the state was
        # reset (a sim episode) or re-homed, and holding the old pose would yank the arm back.
        self.jump_threshold = jump_threshold
        self.joint_watchdog = Watchdog(joint_state_timeout)
        self.state = 'waiting'
        self.reason = 'no joint state yet'
        self.q = self.qd = None
        self.q_cmd = None              # last commanded position (the safety filter's step reference)
        self._pending_trajectory = None
        self._zero_sent = False
        self.stats = {'chunks_accepted': 0, 'chunks_rejected': 0, 'joint_states_rejected': 0}
        # end-effector chunks (chunk_space ee): an EEChunkConverter turns each into joints by IK
        self.ee = ee
        self.ee_note = None            # what the last end-effector chunk had clamped, slowed or cut
        # cartesian_target: the chunk's poses themselves, sampled and filtered each cycle (no IK)
        self.cartesian = mode == 'cartesian_target'
        if self.cartesian:
            if ee is None:
                raise ValueError('mode cartesian_target takes end-effector chunks: give it chunk_space ee')
            self.pose_follower, self.pose_filter = PoseFollower(), PoseFilter(ee.limits, 1.0 / rate)
        self.pose_cmd = None           # the last pose commanded (cartesian_target)

    # ---- inputs ----
    def on_joint_state(self, names, position, velocity, t: float) -> str | None:
        """Map a JointState by name; returns a rejection reason, or None when accepted."""
        reason = None
        try:
            q = self._mapper.map(names, position)
            qd = self._mapper.map(names, velocity) if len(velocity) else np.zeros(len(self.joints))
            if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
                reason = 'joint state has non-finite values'
        except MappingError as exc:
            reason = (f'joint state lacks {exc}' if exc.kind == 'missing'
                      else f'joint state arrays do not match its names: {exc}')
        if reason:
            self.stats['joint_states_rejected'] += 1
            return reason
        jump = 0.0 if self.q is None else float(np.max(np.abs(q - self.q)))
        self.q, self.qd = q, qd
        if jump > self.jump_threshold and self.q_cmd is not None:
            self.reset(t, f'joint state jumped by {jump:.2f} rad: re-anchored where the arm is')
        self.joint_watchdog.feed(t)
        if self.gripper is not None:     # the arm's part is fine: the fingers' own problems are the gripper's
            self.gripper.on_joint_state(names, position, t)
        return None

    def reset(self, now: float, why: str = 'reset'):
        """Drop the chunk and hold where the arm is now (a new episode, a re-homed arm)."""
        self.follower.clear()
        if self.gripper is not None:
            self.gripper.reset()
        self.q_cmd = None
        if self.q is not None:
            self._hold_where_measured(now)
            if self.mode == 'trajectory':
                self._pending_trajectory = self._hold_trajectory()
        if self.state != 'stopped':
            self.state = 'holding' if self.q_cmd is not None else 'waiting'
        self.reason = why

    def on_chunk(self, traj: Trajectory, now: float) -> str | None:
        """Validate and accept a chunk; returns a rejection reason, or None."""
        traj, widths = self._split_gripper(traj)
        ee_chunk = bool(set(EE_COLUMNS) & set(traj.joint_names))
        if ee_chunk != (self.ee is not None):
            reason = ('an end-effector chunk, but this controller takes joint chunks (chunk_space joint)' if ee_chunk
                      else 'a joint chunk, but this controller takes end-effector chunks (chunk_space ee)')
        else:
            reason = validate(traj, EE_COLUMNS if ee_chunk else self.joints, now, allow_nonzero_end_velocity=True)
        if reason is None and self.state == 'stopped':
            reason = 'controller is stopped (call resume)'
        if reason is None and (self.q is None or self.joint_watchdog.expired(now)):
            reason = f'no valid joint state ({self.reason})'
        if reason is None and self.cartesian:    # the poses themselves, filtered every cycle
            return self._on_pose_chunk(traj, widths, now)
        if reason is None and ee_chunk:      # IK: the tip's path -> joints (control/ee_chunk.py)
            start = self.q_cmd if self.q_cmd is not None and self.state in ('tracking', 'holding') else self.q
            traj, notes = self.ee.convert(traj, start, now)
            self.ee_note = '; '.join(notes) or None
            if traj is None:
                reason = notes[-1]
            elif widths is not None:
                widths = widths[:len(traj.times)]
        if reason:
            self.stats['chunks_rejected'] += 1
            return reason
        if self.state in ('resting', 'waiting') or self.q_cmd is None:
            # nothing commanded, or the arm drifted under damping: start from where it is
            self.follower.clear()
            self.q_cmd = self.q.copy()
        self.follower.replace(traj, now, self.q_cmd, np.zeros_like(self.q))
        if self.mode == 'trajectory':
            self._pending_trajectory = self._safe_trajectory(traj, now)
        self.state, self.reason = 'tracking', None
        self.stats['chunks_accepted'] += 1
        if widths is not None:
            self.gripper.on_chunk(traj.absolute_times(now), widths, now)
        return None

    def _measured_pose(self) -> tuple:
        return self.ee.ik.kin.tip_pose(self.q)

    def _on_pose_chunk(self, traj: Trajectory, widths, now: float) -> str | None:
        """cartesian_target: follow the chunk's poses from the pose commanded now."""
        current = self.pose_cmd if self.pose_cmd is not None and self.state in ('tracking', 'holding') \
            else self._measured_pose()
        try:
            self.pose_follower.replace(traj.absolute_times(now), traj.reordered(EE_COLUMNS).positions, now, current)
        except ValueError as exc:
            self.stats['chunks_rejected'] += 1
            return f'end-effector chunk rejected: {exc}'
        self.pose_cmd = current
        self.state, self.reason = 'tracking', None
        self.stats['chunks_accepted'] += 1
        if widths is not None:
            self.gripper.on_chunk(traj.absolute_times(now), widths, now)
        return None

    def _pose_command(self, now: float) -> Command | None:
        if self.state == 'resting':
            return None          # the Cartesian controller keeps its last equilibrium: the arm holds
        self.pose_cmd = self.pose_filter.pose(self.pose_follower.sample(now), self.pose_cmd)
        return Command('pose', None, pose=(self.pose_cmd[0].copy(), self.pose_cmd[1].copy()))

    def _split_gripper(self, traj: Trajectory):
        """(the arm's trajectory, the gripper column or None). Its NaNs are the gripper's to hold:
        the arm columns are validated on their own."""
        name = self.gripper.spec.command_name if self.gripper is not None else None
        if name is None or name not in traj.joint_names or not isinstance(traj.positions, np.ndarray) \
                or traj.positions.ndim != 2 or traj.positions.shape[1] != len(traj.joint_names):
            return traj, None      # validate() judges it as it is (an unknown column is rejected)
        g = traj.joint_names.index(name)
        keep = [i for i in range(len(traj.joint_names)) if i != g]
        vel = traj.velocities
        if isinstance(vel, np.ndarray) and vel.ndim == 2 and vel.shape[1] == len(traj.joint_names):
            vel = vel[:, keep]
        arm = Trajectory(tuple(traj.joint_names[i] for i in keep), traj.stamp, traj.times,
                         traj.positions[:, keep], vel)
        return arm, traj.positions[:, g].copy()

    def gripper_update(self, now: float) -> float | None:
        """The gripper's safe width this cycle (after update()), or None: nothing to send. Only while
        the arm tracks or holds: with joint states lost, resting or stopped the last width stands; so
        it does with the finger joints lost (GripperChannel.holding says why)."""
        if self.gripper is None or self.state not in ('tracking', 'holding'):
            return None
        return self.gripper.update(now)

    def _hold_where_measured(self, now: float) -> None:
        """Command where the arm measurably is, and hold it there: the joint follower, and in
        cartesian_target the pose follower at the measured tip pose (the one place both are set)."""
        self.q_cmd = self.q.copy()
        self.follower.hold(self.q_cmd, now)
        if self.cartesian:
            self.pose_cmd = self._measured_pose()
            self.pose_follower.hold(*self.pose_cmd, now)

    def stop(self, now: float, why: str = 'stop requested'):
        if self.gripper is not None:
            self.gripper.hold()
        if self.q is not None:
            self._hold_where_measured(now)
            if self.mode == 'trajectory':
                self._pending_trajectory = self._hold_trajectory()
        self.state, self.reason = 'stopped', why

    def shutdown(self, now: float) -> Command | None:
        """The last command before the controller goes away, or None when nothing needs sending.

        A forward command controller keeps applying the last command it got: effort mode sends a zero
        torque (as when joint states are lost), so no torque computed for a pose that is no longer
        tracked stays on; trajectory mode sends a hold where the arm is, which replaces a chunk the
        joint_trajectory_controller would otherwise keep executing to its end. Position and
        impedance-target modes leave their last (complete) command standing: the arm holds there.
        """
        commanded = self.q_cmd is not None and self.state != 'waiting'
        self.stop(now, 'shut down')
        self._pending_trajectory = None
        if not commanded or self.q is None:
            return None
        if self.mode == 'impedance':
            return Command('effort', np.zeros(len(self.joints)))
        if self.mode == 'trajectory':
            return Command('trajectory', None, trajectory=self._hold_trajectory())
        return None

    def resume(self, now: float):
        if self.state == 'stopped':
            self.state, self.reason = ('holding', 'resumed') if self.q is not None else ('waiting', 'no joint state yet')

    # ---- the control cycle ----
    def update(self, now: float) -> Command | None:
        if self.joint_watchdog.expired(now):
            return self._lost_joint_states(now)
        self._zero_sent = False
        if self.q_cmd is None or self.state == 'waiting':
            self._hold_where_measured(now)
            self.state, self.reason = 'holding', 'no chunk yet'
        end = (self.pose_follower if self.cartesian else self.follower).end_time
        if self.state == 'tracking' and now > end + self.chunk_timeout:
            self.state, self.reason = 'holding', 'chunk stream stopped'
        if self.state == 'holding' and end is not None and \
                now > end + self.chunk_timeout + self.hold_timeout:
            self.state, self.reason = 'resting', f'no chunk for {self.chunk_timeout + self.hold_timeout:.1f} s'
        if self.cartesian:
            return self._pose_command(now)
        if self.mode == 'trajectory':
            out, self._pending_trajectory = self._pending_trajectory, None
            return None if out is None else Command('trajectory', None, trajectory=out)
        if self.state == 'resting':
            if self.mode == 'impedance':
                return Command('effort', self.safety.damping_only(self.qd, self.robot.damping))
            return None
        q_d, qd_d = self.follower.sample(now)
        self.q_cmd = self.safety.position(q_d, self.q_cmd)
        qd_cmd = self.safety.velocity(qd_d)
        if self.mode == 'position':
            return Command('position', self.q_cmd.copy())
        if self.mode == 'impedance_target':
            return Command('target', self.q_cmd.copy(), velocity=qd_cmd)
        return Command('effort', self.safety.impedance(self.q_cmd, qd_cmd, self.q, self.qd,
                                                       self.robot.stiffness, self.robot.damping))

    def _lost_joint_states(self, now: float) -> Command | None:
        if self.q is not None and self.state != 'waiting':
            self.reason = f'joint states stale ({self.joint_watchdog.age(now):.2f} s old)'
        self.state = 'waiting'
        self.follower.clear()
        self.q_cmd = None
        if self.mode == 'impedance' and not self._zero_sent and self.q is not None:
            self._zero_sent = True
            return Command('effort', np.zeros(len(self.joints)))
        return None

    def tracking_error(self) -> float:
        if self.q is None or self.q_cmd is None:
            return float('nan')
        return float(np.max(np.abs(self.q_cmd - self.q)))

    # ---- trajectory passthrough ----
    def _safe_trajectory(self, traj: Trajectory, now: float) -> Trajectory:
        """Re-timed for a Jazzy JTC, positions clamped, segments slowed to the velocity limits."""
        out = retime_for_jtc(traj.reordered(self.joints), now, self.trajectory_lead)
        lim = self.robot.limits
        pos = np.clip(out.positions, lim.safe_lower, lim.safe_upper)
        times = out.times.copy()
        prev_q, prev_t = self.q, 0.0
        for i in range(len(times)):
            needed = float(np.max(np.abs(pos[i] - prev_q) / lim.velocity))
            times[i] = max(times[i], prev_t + needed, prev_t + 1e-3)
            prev_q, prev_t = pos[i], times[i]
        velocities = None
        if out.velocities is not None:
            velocities = np.clip(out.velocities, -lim.velocity, lim.velocity)
            velocities[-1] = 0.0
        return Trajectory(self.joints, out.stamp, times, pos, velocities)

    def _hold_trajectory(self) -> Trajectory:
        return Trajectory(self.joints, 0.0, np.array([self.trajectory_lead]), self.q_cmd[None, :].copy())
