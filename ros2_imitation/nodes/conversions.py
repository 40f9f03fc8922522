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


# ---- end-effector chunks: trajectory_msgs/MultiDOFJointTrajectory <-> control/ee_chunk's Trajectory ----
# One "joint" per moving frame: the tip (its pose in header.frame_id, the robot's base frame), then,
# on a robot with a gripper, the gripper's command_name, whose transform carries the opening (m) in
# translation.x (identity rotation). Standard messages only: no custom interface for a pose chunk.

def ee_trajectory_to_msg(traj: Trajectory, base_frame: str, tip_frame: str, gripper: str | None = None):
    """A Trajectory of EE_COLUMNS (+ the gripper column) -> MultiDOFJointTrajectory."""
    import numpy as np
    from geometry_msgs.msg import Transform
    from trajectory_msgs.msg import MultiDOFJointTrajectory, MultiDOFJointTrajectoryPoint

    from ros2_imitation.control.ee_chunk import EE_COLUMNS
    from ros2_imitation.control.task_space import rotation_from_6d, rotation_to_quaternion
    names = list(EE_COLUMNS) + ([gripper] if gripper else [])
    values = traj.reordered(names).positions
    msg = MultiDOFJointTrajectory()
    msg.header.stamp = to_stamp(traj.stamp)
    msg.header.frame_id = base_frame
    msg.joint_names = [tip_frame] + ([gripper] if gripper else [])
    for row, t in zip(values, traj.times):
        point = MultiDOFJointTrajectoryPoint()
        pose = Transform()
        pose.translation.x, pose.translation.y, pose.translation.z = (float(v) for v in row[:3])
        x, y, z, w = rotation_to_quaternion(rotation_from_6d(row[3:9]))
        pose.rotation.x, pose.rotation.y, pose.rotation.z, pose.rotation.w = float(x), float(y), float(z), float(w)
        point.transforms.append(pose)
        if gripper:
            width = Transform()
            width.translation.x = float(row[9]) if np.isfinite(row[9]) else float('nan')
            width.rotation.w = 1.0
            point.transforms.append(width)
        stamp = to_stamp(float(t))
        point.time_from_start.sec, point.time_from_start.nanosec = stamp.sec, stamp.nanosec
        msg.points.append(point)
    return msg


def ee_trajectory_from_msg(msg, base_frame: str, tip_frame: str, gripper: str | None = None):
    """MultiDOFJointTrajectory -> (a Trajectory of EE_COLUMNS (+ the gripper column), None), or (None,
    the reason it is refused): another frame, no tip, ragged points, a quaternion that is no rotation.
    Times and finiteness are then trajectory.validate()'s to judge, as for joint chunks."""
    import numpy as np

    from ros2_imitation.control.ee_chunk import EE_COLUMNS, ee_columns
    from ros2_imitation.control.task_space import quaternion_to_rotation
    if msg.header.frame_id not in ('', base_frame):
        return None, f'end-effector chunk in frame {msg.header.frame_id!r}, expected {base_frame!r}'
    names = list(msg.joint_names)
    if tip_frame not in names:
        return None, f'end-effector chunk has no {tip_frame!r} among {names[:4]}'
    unknown = [n for n in names if n not in (tip_frame, gripper)]
    if unknown:
        return None, f'end-effector chunk has unknown frames {unknown[:4]}'
    tip, grip = names.index(tip_frame), names.index(gripper) if gripper in names else None
    positions, rotations, widths = [], [], []
    for i, point in enumerate(msg.points):
        if len(point.transforms) != len(names):
            return None, f'point {i} has {len(point.transforms)} transforms for {len(names)} frames'
        pose = point.transforms[tip]
        try:
            rotations.append(quaternion_to_rotation((pose.rotation.x, pose.rotation.y, pose.rotation.z,
                                                     pose.rotation.w)))
        except ValueError as exc:
            return None, f'point {i}: {exc}'
        positions.append((pose.translation.x, pose.translation.y, pose.translation.z))
        if grip is not None:
            widths.append(point.transforms[grip].translation.x)
    if not msg.points:
        return None, 'trajectory has no points'
    columns = ee_columns(np.array(positions, dtype=float), np.array(rotations))
    out_names = list(EE_COLUMNS)
    if grip is not None:
        columns = np.concatenate([columns, np.array(widths, dtype=float)[:, None]], axis=1)
        out_names.append(gripper)
    times = [_duration_sec(p.time_from_start) for p in msg.points]
    return Trajectory.from_arrays(out_names, to_sec(msg.header.stamp), times, columns.tolist()), None


def pose_to_msg(pose: tuple, frame_id: str, stamp: float):
    """(position (3,), rotation (3, 3)) -> geometry_msgs/PoseStamped."""
    from geometry_msgs.msg import PoseStamped

    from ros2_imitation.control.task_space import rotation_to_quaternion
    msg = PoseStamped()
    msg.header.frame_id, msg.header.stamp = frame_id, to_stamp(stamp)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pose[0])
    x, y, z, w = rotation_to_quaternion(pose[1])
    msg.pose.orientation.x, msg.pose.orientation.y = float(x), float(y)
    msg.pose.orientation.z, msg.pose.orientation.w = float(z), float(w)
    return msg
