"""Teleoperation through the real nodes over DDS: Twist and Joy messages (as spacenav publishes them)
drive the sim's end effector through teleop_node and the controller's IK; the deadman holds it."""
import time

import numpy as np
from conftest import GraphRun, wait_for
from geometry_msgs.msg import Twist
from sensor_msgs.msg import JointState, Joy

from ros2_imitation.control.kinematics import ArmKinematics
from ros2_imitation.nodes.common import to_sec
from ros2_imitation.qos import SENSOR_QOS
from ros2_imitation.robot import RobotProfile

ROBOT = RobotProfile.load('panda')
KIN = ArmKinematics.for_robot(ROBOT)


def tip(msg) -> np.ndarray:
    index = {n: i for i, n in enumerate(msg.name)}
    return KIN.tip_pose(np.array([msg.position[index[j]] for j in ROBOT.arm_joints]))[0]


def sim_now(joints) -> float:
    return to_sec(joints.messages[-1].header.stamp)


def drive(twist_pub, joy_pub, joints, seconds, vx=0.0, vz=0.0, deadman=1, gripper=0):
    """Publish the device's messages for `seconds` of sim time (a loaded machine's sim runs slower
    than the wall clock: sim_node max_catch_up), at 50 Hz of wall time as spacenav does."""
    end = sim_now(joints) + seconds
    while sim_now(joints) < end:
        msg = Twist()
        msg.linear.x, msg.linear.z = vx, vz
        twist_pub.publish(msg)
        joy_pub.publish(Joy(axes=[0.0] * 6, buttons=[deadman, gripper]))
        time.sleep(0.02)


def test_a_spacemouse_moves_the_tip_only_with_the_deadman_held(tmp_path):
    with GraphRun(tmp_path / 'bringup.log', 'teleop_sim', '--arg', 'task=pick_place') as run:
        joints = run.record(JointState, '/joint_states')
        twist = run.node.create_publisher(Twist, '/spacenav/twist', SENSOR_QOS)
        joy = run.node.create_publisher(Joy, '/spacenav/joy', SENSOR_QOS)
        wait_for(lambda: len(joints.messages) > 10 and twist.get_subscription_count() > 0, 60,
                 what='the sim and teleop_node')
        start = tip(joints.messages[-1])
        drive(twist, joy, joints, 2.0, vx=1.0, deadman=0)  # no deadman: nothing moves
        still = tip(joints.messages[-1])
        assert np.linalg.norm(still - start) < 0.003, still - start
        drive(twist, joy, joints, 2.0, vx=1.0)  # held: +x at 0.1 m/s
        time.sleep(0.3)
        moved = tip(joints.messages[-1])
        print(f'teleop: tip moved {np.round((moved - still) * 1000, 1)} mm in 2 s at full +x deflection')
        assert 0.1 < (moved - still)[0] < 0.25 and abs((moved - still)[1]) < 0.01
        drive(twist, joy, joints, 1.0, vx=1.0, deadman=0)  # released mid-motion: it stops
        held = tip(joints.messages[-1])
        assert np.linalg.norm(held - moved) < 0.02
        floor = ROBOT.kinematics.task_limits.workspace.lower[2]
        drive(twist, joy, joints, 1.5 + (held[2] - floor) / 0.1, vz=-1.0)  # down into the table: the box stops it
        time.sleep(0.3)
        low = tip(joints.messages[-1])
        print(f'teleop: pushed down for {(held[2] - floor) / 0.1 + 1.5:.1f} s, the tip stopped at z = {low[2] * 1000:.1f} mm '
              f'(workspace floor {floor * 1000:.0f} mm)')
        assert floor - 0.003 < low[2] < floor + 0.01
