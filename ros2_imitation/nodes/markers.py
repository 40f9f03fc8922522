"""A predicted chunk as visualization_msgs/MarkerArray (RViz, Foxglove): the executed end-effector
path coloured by time, its points, the dropped (overtaken) part in grey, and a label."""
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ros2_imitation.control.kinematics import ArmKinematics, KinematicsError
from ros2_imitation.viz.chunk_path import DROPPED_RGBA

NAMESPACE = 'predicted_chunk'


def _points(xyz):
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz]


def _marker(kind, marker_id, frame_id, stamp, scale, rgba=(1.0, 1.0, 1.0, 1.0)):
    m = Marker(type=kind, id=marker_id, ns=NAMESPACE, action=Marker.ADD)
    m.header.frame_id, m.header.stamp = frame_id, stamp
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = scale
    m.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
    m.lifetime = Duration(sec=2)     # a policy that stops leaves no stale path behind
    return m


def chunk_markers(path, frame_id: str, stamp, label: str = '') -> MarkerArray:
    """MarkerArray of a viz.chunk_path.ChunkPath in `frame_id` (the robot's base frame)."""
    line = _marker(Marker.LINE_STRIP, 0, frame_id, stamp, 0.004)
    spheres = _marker(Marker.SPHERE_LIST, 1, frame_id, stamp, 0.012)
    line.points = spheres.points = _points(path.executed)
    line.colors = spheres.colors = [ColorRGBA(r=c[0], g=c[1], b=c[2], a=c[3]) for c in path.colors]
    dropped = _marker(Marker.LINE_STRIP, 2, frame_id, stamp, 0.003, DROPPED_RGBA)
    # joined to the first executed point, so the gap the latency made is visible
    dropped.points = _points(list(path.dropped) + list(path.executed[:1])) if len(path.dropped) else []
    if not dropped.points:
        dropped.action = Marker.DELETE
    text = _marker(Marker.TEXT_VIEW_FACING, 3, frame_id, stamp, 0.025)
    text.text = label
    if len(path.executed):
        text.pose.position = _points(path.executed[-1:])[0]
        text.pose.position.z += 0.03
    return MarkerArray(markers=[line, spheres, dropped, text])


def marker_kinematics(robot, logger):
    """The arm's forward kinematics for chunk markers, or None (said once) when the profile has none."""
    try:
        return ArmKinematics.for_robot(robot)
    except (KinematicsError, ImportError) as exc:
        logger.info(f'no predicted-chunk markers: {exc}')
        return None
