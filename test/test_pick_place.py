"""The pick_place task, ROS-free: seeded layouts, success (inside + released), a grasp that holds, the
wrist camera, 8-column (arm + gripper) chunks in the rollout, and the scripted expert."""
import hashlib
import re

import numpy as np
import pytest

from ros2_imitation.sim import PandaSim, scene, solve_ik
from ros2_imitation.sim.experts import make_expert
from ros2_imitation.sim.experts_pick import PickPlaceExpert
from ros2_imitation.sim.kinematics import down_quat
from ros2_imitation.sim.rollout import ExpertAgent, GripperFollower, Rollout


@pytest.fixture(scope='module')
def sim():
    s = PandaSim(task='pick_place')
    yield s
    s.close()


def move(s, goal, yaw, speed=0.12, settle=0.2):
    """Straight Cartesian line at `speed`, IK every 50 ms, position servo in between."""
    start, q = s.ee_position(), s.joint_positions()[:7]
    n = max(1, int(np.linalg.norm(goal - start) / speed / 0.05))
    for i in range(1, n + 1):
        q = solve_ik(s, start + (goal - start) * i / n, down_quat(yaw), q_init=q)
        s.set_position(q)
        s.step(25)
    s.step(int(settle / s.dt))


def close_gripper(s, to=0.0, seconds=1.0):
    start = s.gripper_width()
    for w in np.linspace(start, to, 50):
        s.set_gripper(w)
        s.step(int(seconds / 50 / s.dt))
    s.step(int(0.2 / s.dt))


def grasp(s, seed):
    """Reset, come down over the cube turned to its faces, close: the cube in the hand on the table."""
    s.reset(seed)
    state = s.task_state()
    cube = np.array(state['object_position'])
    yaw = min((state['object_yaw'] + k * np.pi / 2 for k in range(-4, 5)), key=abs)
    move(s, cube + [0, 0, 0.1], yaw)
    move(s, cube, yaw, speed=0.06)
    close_gripper(s)
    return cube, yaw


def test_layout_is_seeded_and_randomized():
    s = PandaSim(task='pick_place', render=False)
    task = s.task
    layouts = []
    for seed in range(6):
        s.reset(seed)
        state = s.task_state()
        layouts.append((*state['object_position'][:2], state['object_yaw'], *state['target_position'][:2]))
        x, y = state['object_position'][:2]
        assert task.CUBE_X[0] <= x <= task.CUBE_X[1] and task.CUBE_Y[0] <= y <= task.CUBE_Y[1]
        tx, ty = state['target_position'][:2]
        assert task.TARGET_X[0] <= tx <= task.TARGET_X[1] and task.TARGET_Y[0] <= ty <= task.TARGET_Y[1]
        assert not state['success'] and not state['inside'] and not state['grasped']
        assert state['gripper_width'] == pytest.approx(0.08, abs=1e-6)      # starts open
    layouts = np.array(layouts)
    for column in range(5):                  # cube x, y, yaw and target x, y all vary
        assert len(np.unique(np.round(layouts[:, column], 4))) == 6
    s.reset(3)
    again = s.task_state()
    assert (*again['object_position'][:2], again['object_yaw'], *again['target_position'][:2]) == \
        pytest.approx(layouts[3], abs=1e-9)
    assert task.action_dim == 8 and task.gripper_action and task.wrist_camera


def test_success_needs_the_cube_inside_resting_and_released(sim):
    cube, yaw = grasp(sim, 2)
    state = sim.task_state()
    assert state['grasped'] and not state['released'] and not state['success']
    assert not state['inside']                                         # cube outside: no success
    target = np.array(state['target_position'])
    move(sim, cube + [0, 0, 0.1], yaw)
    move(sim, np.array([target[0], target[1], cube[2] + 0.1]), yaw)
    move(sim, np.array([target[0], target[1], cube[2] + 0.003]), yaw, speed=0.06, settle=0.5)
    held = sim.task_state()
    assert held['inside'] and held['grasped'] and held['resting']
    assert not held['released'] and not held['success']               # inside but still held
    close_gripper(sim, to=0.08, seconds=0.8)                            # open
    released = sim.task_state()
    assert released['released'] and not any(released['finger_contacts'])
    assert released['inside'] and released['resting'] and released['success'] and sim.success()
    # the same cube, pushed just outside the square (released, at rest): no success
    half = sim.task.TARGET_HALF
    sim.task.place_cube(sim.data, target[:2] + [half + 0.005, 0.0])
    sim.forward()
    outside = sim.task_state()
    assert not outside['inside'] and not outside['success']
    sim.task.place_cube(sim.data, target[:2] + [half - 0.005, -(half - 0.005)])
    sim.forward()
    assert sim.task_state()['success']                                 # the footprint's corner counts


def test_grasp_holds_the_cube_lifted_and_carried(sim):
    """Closed fingers hold the 4.5 cm cube lifted 10 cm, for 2 s, and carried at the expert's top speed."""
    cube, yaw = grasp(sim, 5)
    assert sim.task_state()['grasped']
    move(sim, cube + [0, 0, 0.10], yaw, speed=0.06, settle=0.0)
    lifted = sim.task_state()['object_position'][2]
    assert lifted > cube[2] + 0.09
    for _ in range(20):                                                 # 2 s, checked every 0.1 s
        sim.step(int(0.1 / sim.dt))
        state = sim.task_state()
        assert state['grasped'] and abs(state['object_position'][2] - lifted) < 0.003, state
    move(sim, cube + [0, 0.2, 0.10], yaw, speed=0.14, settle=0.5)
    state = sim.task_state()
    hand = sim.ee_position()
    assert state['grasped'] and np.linalg.norm(np.array(state['object_position']) - hand) < 0.01, state


def _changed(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_wrist_camera_sees_the_cube_and_moves_with_the_hand(sim):
    sim.reset(0)
    state = sim.task_state()
    cube = np.array(state['object_position'])
    move(sim, cube + [0, 0, 0.12], 0.0)
    image = sim.render('wrist')
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8 and image.std() > 5
    red = (image[..., 0] > 150) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert red.sum() > 30                                              # the cube below the fingers
    u, v = sim.project(cube + [0, 0, sim.task.HALF], camera='wrist')
    assert red[int(round(v)), int(round(u))]                            # intrinsics and pose agree
    external = sim.render()
    assert _changed(image, external) > 10                               # not the fixed camera's view
    move(sim, cube + [0.05, 0.12, 0.2], 0.5)
    assert _changed(sim.render('wrist'), image) > 10                   # the view follows the hand
    assert _changed(sim.render(), external) < _changed(sim.render('wrist'), image)
    k = sim.camera_intrinsics('wrist')
    assert k['fy'] == pytest.approx(48 / np.tan(np.radians(scene.WRIST_CAMERA['fovy']) / 2))


def test_push_cube_has_no_wrist_camera_unless_asked():
    plain = PandaSim(task='push_cube', render=False)
    with pytest.raises(ValueError, match='wrist'):
        plain.render('wrist')
    asked = PandaSim(task='push_cube', wrist_camera=True)
    assert asked.render('wrist').std() > 5
    asked.close()


class ChunkAgent:
    """Holds the arm where it is and sends one chunk whose gripper column goes to `width`."""

    def __init__(self, width, columns=8):
        self.width, self.columns = width, columns

    def reset(self, seed):
        self.sent = False

    def act(self, now, obs, q, state):
        if self.sent:
            return None
        self.sent = True
        times = now + 0.1 * np.arange(1, 17)
        arm = np.tile(q[:7], (16, 1))
        if self.columns == 7:
            return times, arm, None
        widths = np.linspace(0.08, self.width, 16)
        return times, np.column_stack([arm, widths]), None


def test_an_8_column_chunk_drives_the_fingers_at_a_limited_rate():
    rollout = Rollout(task='pick_place', render=False)
    result = rollout.run(ChunkAgent(0.02), seed=1, timeout=2.5)
    widths = np.array([s['gripper_width'] for s in result.history])
    assert widths[0] == pytest.approx(0.08, abs=1e-4) and widths[-1] == pytest.approx(0.02, abs=0.002)
    assert np.all(np.diff(widths) <= 1e-4)                              # closing, never reopening
    rate = np.abs(np.diff(widths)).max() / rollout.timing.dt
    assert rate < GripperFollower.RATE * 1.2
    # a 7-column chunk leaves the gripper where it was; on push_cube an 8th column is refused
    held = Rollout(task='pick_place', render=False).run(ChunkAgent(0.0, columns=7), seed=1, timeout=1.0)
    assert held.final_state['gripper_width'] == pytest.approx(0.08, abs=1e-4)
    with pytest.raises(ValueError, match='8-column'):
        Rollout(task='push_cube', render=False).run(ChunkAgent(0.02), seed=1, timeout=0.5)


def test_gripper_follower_interpolates_clamps_and_limits_the_rate():
    follower = GripperFollower(0.08)
    follower.replace([1.0, 2.0], [0.04, -0.5], now=0.0)
    assert follower.target(0.5) == pytest.approx(0.06) and follower.target(3.0) == -0.5
    follower.replace([0.2, 2.0], [0.0, -0.5], now=0.0)                 # from the width commanded now
    assert follower.target(0.1) == pytest.approx(0.04)
    follower.update(0.0)
    assert follower.update(0.1) == pytest.approx(0.08 - 0.01)         # 0.1 m/s
    assert follower.update(10.0) == 0.0                                 # clamped to 0 .. 0.08
    follower.replace([11.0], [1.0], now=10.0)
    assert follower.update(20.0) == 0.08
    with pytest.raises(ValueError):
        follower.replace([1.0], [float('nan')], now=0.0)


def test_pick_place_expert_succeeds_in_both_modes():
    rollout = Rollout(task='pick_place', render=False, control_rate=250.0)
    agent = ExpertAgent(make_expert('pick_place', rollout.sim.model))
    results = []
    for seed in range(5):
        r = rollout.run(agent, seed, 25.0, record=True)
        results.append(dict(agent.info, seed=seed, success=r.success, time=r.duration))
        actions = r.data['action']
        assert actions.shape[1] == 8 and r.data['state'].shape[1] == 8
        assert actions[:, 7].min() == pytest.approx(0.0) and actions[:, 7].max() == pytest.approx(0.08)
    assert all(r['success'] for r in results), results
    assert {r['mode'] for r in results} == set(PickPlaceExpert.MODES), results
    assert max(r['max_ik_error'] for r in results) < 0.002


def test_the_two_modes_grasp_across_different_faces():
    s = PandaSim(task='pick_place', render=False)
    yaws = {}
    for mode in PickPlaceExpert.MODES:
        expert = make_expert('pick_place', s.model, seed=0, modes=[mode])
        s.reset(4)
        expert.reset()
        chunk = expert.plan(0.0, s.joint_positions()[:7], s.task_state())
        assert chunk.positions.shape == (16, 8)
        yaws[mode] = expert.waypoints(*expert.tcp(s.joint_positions()), s.task_state())[0].yaw
    turn = (yaws['faces_90'] - yaws['faces_0']) % np.pi
    assert turn == pytest.approx(np.pi / 2, abs=1e-6)


def test_a_dropped_cube_is_reported_and_picked_up_again():
    rollout = Rollout(task='pick_place', render=False, control_rate=250.0)
    agent = ExpertAgent(make_expert('pick_place', rollout.sim.model))
    sim, seed = rollout.sim, 6
    episode = rollout.episode(seed, 40.0)
    agent.reset(seed)
    start = None
    dropped = False
    try:
        request = next(episode)
        start = np.array(request[3]['object_position'])
        while True:
            if not dropped and agent.expert.phase == 'carry':
                sim.task.place_cube(sim.data, start[:2])      # the cube falls out of the hand
                sim.forward()
                dropped = True
            request = episode.send(agent.act(*request))
    except StopIteration as done:
        result = done.value
    assert dropped and agent.expert.slips >= 1 and agent.info['slips'] >= 1
    assert result.success, result.final_state


def _normalized_xml(xml: str) -> str:
    return re.sub(r'meshdir="[^"]*"', 'meshdir=""', xml)


def test_push_cube_is_unchanged():
    """push_cube's scene and its expert's chunk are what they were before pick_place existed
    (values computed on the commit before it)."""
    digest = hashlib.sha256(_normalized_xml(scene.build_xml()).encode()).hexdigest()
    assert digest == '371f948d229f21e2ba0cbf87038dd89f39305ec49cf73701a34966834df17f4c'
    s = PandaSim(task='push_cube', render=False)
    expert = make_expert('push_cube', s.model, seed=0)
    s.reset(3)
    expert.reset()
    chunk = expert.plan(1.0, s.joint_positions()[:7], s.task_state())
    assert chunk.positions.shape == (16, 7)
    assert chunk.positions[5] == pytest.approx(
        [0.060578918668898356, -0.7392435511074994, -0.07565308339595343, -2.461230672728853,
         -0.05154652801668975, 1.7232044345184487, 0.5604349060528324], abs=1e-9)
    rollout = Rollout(task='push_cube', render=False, control_rate=250.0)
    result = rollout.run(ExpertAgent(make_expert('push_cube', rollout.sim.model)), 7, 15.0)
    assert result.success and result.chunks == 11 and result.duration == pytest.approx(8.4)
    assert result.final_state['object_position'] == pytest.approx([0.550217, 0.087776, 0.024985], abs=1e-4)
