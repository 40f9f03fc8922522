"""Messages <-> core types. The only place that knows both."""
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros2_imitation.control.trajectory import Trajectory
from ros2_imitation.nodes.common import to_sec, to_stamp


def _duration_sec(d) -> float:
    return d.sec + d.nanosec * 1e-9


def trajectory_from_msg(msg: JointTrajectory) -> Trajectory:
    """Possibly malformed (ragged rows): trajectory.validate() gives the rejection reason."""
    return Trajectory.from_arrays(
        msg.joint_names, to_sec(msg.header.stamp),
        [_duration_sec(p.time_from_start) for p in msg.points],
        [list(p.positions) for p in msg.points], [list(p.velocities) for p in msg.points])


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
