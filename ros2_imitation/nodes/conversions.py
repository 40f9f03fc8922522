"""Messages <-> core types. The only place that knows both."""
import numpy as np
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros2_imitation.nodes.common import to_sec, to_stamp
from ros2_imitation.trajectory import Trajectory


def _duration_sec(d) -> float:
    return d.sec + d.nanosec * 1e-9


def trajectory_from_msg(msg: JointTrajectory) -> Trajectory:
    """Raises ValueError when the message cannot even be read as a table of numbers."""
    names = tuple(msg.joint_names)
    n = len(names)
    times = np.array([_duration_sec(p.time_from_start) for p in msg.points], dtype=float)
    rows = [list(p.positions) for p in msg.points]
    if any(len(r) != n for r in rows):
        bad = next(i for i, r in enumerate(rows) if len(r) != n)
        raise ValueError(f'point {bad} has {len(rows[bad])} positions for {n} joints')
    positions = np.array(rows, dtype=float).reshape(len(rows), n)
    velocities = None
    if msg.points and any(len(p.velocities) for p in msg.points):
        vel_rows = [list(p.velocities) for p in msg.points]
        if any(len(r) != n for r in vel_rows):
            raise ValueError('velocities must be given for every joint of every point, or not at all')
        velocities = np.array(vel_rows, dtype=float).reshape(len(rows), n)
    return Trajectory(joint_names=names, stamp=to_sec(msg.header.stamp), times=times,
                      positions=positions, velocities=velocities)


def trajectory_to_msg(traj: Trajectory, frame_id: str = '') -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp = to_stamp(traj.stamp)
    msg.header.frame_id = frame_id
    msg.joint_names = list(traj.joint_names)
    for i, t in enumerate(traj.times):
        point = JointTrajectoryPoint()
        point.positions = traj.positions[i].tolist()
        if traj.velocities is not None:
            point.velocities = traj.velocities[i].tolist()
        stamp = to_stamp(float(t))
        point.time_from_start.sec, point.time_from_start.nanosec = stamp.sec, stamp.nanosec
        msg.points.append(point)
    return msg
