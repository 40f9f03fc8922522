"""The QoS profiles of the package's topics, in one place: nodes, the episode runner, the commands and
the tests import them from here (rclpy, but none of the node adapters)."""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# Sensors: best effort, latest few. A best-effort subscriber also receives from reliable
# publishers (joint_state_broadcaster, ros_gz_bridge), so subscribers use it everywhere.
SENSOR_QOS = qos_profile_sensor_data
# Commands and chunks: nothing silently lost.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE)
# The controller's chunk intake: reliable (matches every chunk publisher), but only the newest few
# chunks wait in the queue. A chunk replaces the previous one, so when the controller falls behind,
# the chunks it has not read yet are worth nothing: DDS drops them instead of queueing them. (Not 1:
# a large chunk still being reassembled from its fragments would lose to any small one after it.)
CHUNK_INTAKE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=3,
                              reliability=ReliabilityPolicy.RELIABLE)
# State that several subscribers want, such as /joint_states (joint_state_broadcaster's QoS).
STATE_QOS = COMMAND_QOS
# What rclcpp's ClockQoS is; rclpy's time source subscribes best effort, depth 1.
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.BEST_EFFORT)
# The controller's commands to the arm. Receivers (forward_command_controller, the sim) act on the
# latest only; a deep history lets a slower reader that wants every command (rosbag2, a monitor) keep up.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
# Latest value for late joiners (recorder status, episode info).
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
# Camera images. Fast DDS hands a best-effort sample over 512 kB (its shared-memory segment)
# to UDP fragments, and loses most 640x480 rgb8 frames (bench/image_transport.py); reliable
# delivery keeps them. A reliable publisher serves both kinds of subscriber, so cameras publish
# reliable; a subscriber picks: best_effort (any publisher, small frames) or reliable.
IMAGE_RELIABILITY = ('reliable', 'best_effort')


def image_qos(reliability: str) -> QoSProfile:
    if reliability not in IMAGE_RELIABILITY:
        raise ValueError(f'image_reliability must be one of {IMAGE_RELIABILITY}, got {reliability!r}')
    if reliability == 'best_effort':
        return SENSOR_QOS
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE)
