"""Teleoperation core (control/teleop.py): a SpaceMouse twist or gamepad axes move the end-effector
target only while the deadman is held and input is fresh, within the speed limits, the lead and the
workspace; bad Joy messages are refused with a reason."""
import numpy as np
import pytest

from ros2_imitation.control.task_space import Workspace
from ros2_imitation.control.teleop import Teleop, TeleopSettings

BOX = Workspace((0.2, -0.5, 0.05), (0.8, 0.5, 0.7))
TIP = np.array([0.5, 0.0, 0.4])
R = np.eye(3)


def drive(teleop, seconds, rate=100.0, t0=0.0, follow=True, twist=None, joy=None):
    """Run the cycle; the arm follows the target exactly (follow) or stays put."""
    tip = TIP.copy()
    t = t0
    for _ in range(int(seconds * rate)):
        t += 1.0 / rate
        if twist is not None:
            teleop.on_twist(twist[:3], twist[3:], t)
        if joy is not None:
            teleop.on_joy(*joy, t)
        p, r, width = teleop.update(t, tip, R)
        if follow:
            tip = p
    return p, r, width, t


def test_the_twist_moves_the_target_at_the_capped_speed_only_with_the_deadman_held():
    teleop = Teleop(TeleopSettings(BOX, max_linear_speed=0.1))
    p, _, _, t = drive(teleop, 1.0, twist=[1, 0, 0, 0, 0, 0])        # deadman not pressed yet
    assert np.allclose(p, TIP) and 'deadman released' in teleop.reason
    teleop.on_joy([], [1, 0], t)                                      # hold the deadman
    p, _, _, t = drive(teleop, 1.0, t0=t, twist=[1, 1, 0, 0, 0, 0])   # full deflection on two axes
    assert abs(np.linalg.norm(p - TIP) - 0.1) < 0.005                 # the norm is capped at 0.1 m/s
    teleop.on_joy([], [0, 0], t)                                      # released mid-motion: it stops
    q, _, _, t = drive(teleop, 0.5, t0=t, twist=[1, 0, 0, 0, 0, 0])
    assert np.allclose(q, p) and 'deadman released' in teleop.reason


def test_a_twist_stream_that_stops_mid_motion_holds_the_target():
    teleop = Teleop(TeleopSettings(BOX, deadman_button=None, timeout=0.25))
    p, _, _, t = drive(teleop, 0.5, twist=[0, 0, 1, 0, 0, 0])
    q, _, _, _ = drive(teleop, 1.0, t0=t)                             # no more twists
    assert np.linalg.norm(q - p) < 0.1 * 0.25 + 1e-6 and 'input stopped' in teleop.reason


def test_the_target_stays_in_the_workspace_and_near_a_lagging_arm():
    teleop = Teleop(TeleopSettings(BOX, deadman_button=None, max_lead=0.05))
    p, _, _, _ = drive(teleop, 3.0, twist=[1, 0, 0, 0, 0, 0], follow=False)   # the arm does not move
    assert abs(np.linalg.norm(p - TIP) - 0.05) < 1e-9
    teleop = Teleop(TeleopSettings(BOX, deadman_button=None, max_lead=0.05))
    p, _, _, _ = drive(teleop, 5.0, twist=[0, 0, -1, 0, 0, 0])               # down into the table
    assert p[2] == pytest.approx(0.05) and 'outside the workspace on z' in teleop.reason


def test_rotation_is_integrated_at_the_angular_limit():
    teleop = Teleop(TeleopSettings(BOX, deadman_button=None, max_angular_speed=0.5))
    _, r, _, _ = drive(teleop, 1.0, twist=[0, 0, 0, 0, 0, 1])
    assert np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))) == pytest.approx(np.degrees(0.5), abs=0.5)
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-9)


def test_the_gripper_button_toggles_on_each_press():
    teleop = Teleop(TeleopSettings(BOX, open_width=0.08, closed_width=0.0))
    widths = []
    for buttons in ([1, 0], [1, 1], [1, 1], [1, 0], [1, 1]):
        teleop.on_joy([], buttons, 0.0)
        widths.append(teleop.update(0.0, TIP, R)[2])
    assert widths == [0.08, 0.0, 0.0, 0.0, 0.08]


def test_a_gamepad_drives_through_its_axes_map_and_wrong_messages_are_refused():
    settings = TeleopSettings(BOX, joy_axes=8, axes_map=(1, 0, 4, -1, -1, 3), deadman_button=4, gripper_button=0)
    teleop = Teleop(settings)
    axes = [0.0, 1.0, 0, 0, 0, 0, 0, 0]                              # axis 1 -> vx
    p, _, _, _ = drive(teleop, 1.0, joy=(axes, [0, 0, 0, 0, 1]))
    assert p[0] == pytest.approx(TIP[0] + 0.1, abs=2e-3) and abs(p[1] - TIP[1]) < 1e-9
    reason = teleop.on_joy([0.0] * 6, [0, 0, 0, 0, 1], 2.0)          # a different device: 6 axes
    assert 'has 6 axes, expected 8' in reason and not teleop.deadman
    assert 'needs button 4' in teleop.on_joy(axes, [0, 0], 2.1)
    assert 'non-finite' in teleop.on_joy([0.0, np.nan, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1], 2.2)
    assert 'gamepad axes' in teleop.on_twist([1, 0, 0], [0, 0, 0], 2.3)
    assert teleop.stats['inputs_rejected'] == 4
