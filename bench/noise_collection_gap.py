"""H5 of the noise study (docs/noise_study.md): does noise-injected collection label each step with an
action that departs from the pose the arm is in by the injected noise, which the policy cannot
observe? push_cube, the scripted expert, 30 episodes clean and 30 with ActionNoise(0.03 rad) (seeds
20000..), labelled with the plan the noisy chunk came from (`plan`) and, on the same perturbed
episodes, with DART labels (`dart`: each step, the expert's plan from the state the arm is in;
sim/collection.py); state only, 100 Hz control. Per recorded step: |label(t + dt) - q(t)| (how far
the label is from the measured arm), the same for the tip by forward kinematics (position, and the
hand's rotation), and |label(t + dt) - label(t)| (how smooth the labels are).

    python bench/noise_collection_gap.py      # ~1 minute; writes the h5 section of docs/noise_study.md
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import write_section  # noqa: E402
from study_common import CONTROL_RATE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    from ros2_imitation.control.kinematics import ArmKinematics
    from ros2_imitation.control.task_space import rotation_vector
    from ros2_imitation.robot import RobotProfile
    from ros2_imitation.sim.experts import ActionNoise, make_expert
    from ros2_imitation.sim.rollout import ExpertAgent, Rollout
    kin = ArmKinematics.for_robot(RobotProfile.load('panda'))
    rollout = Rollout(render=False, task_features=True, control_rate=CONTROL_RATE)

    def tip_gaps(action, state):
        """(tip position gap m, hand rotation gap rad) between label and measured arm, per step."""
        gaps = []
        for qa, qs in zip(action, state):
            (pa, ra), (ps, rs) = kin.tip_pose(qa), kin.tip_pose(qs)
            gaps.append((np.linalg.norm(pa - ps), np.linalg.norm(rotation_vector(ra @ rs.T))))
        return np.array(gaps)

    lines = ['| demonstrations | expert success | label - measured arm: mean, p90 (rad) | tip: position (mm), '
             'hand rotation (deg), mean | label step: mean, p99 (rad) |', '|---|---|---|---|---|']
    for name, noise, labels in (('clean', None, 'plan'),
                                ('noise-injected (0.03 rad), plan labels', ActionNoise(std=0.03), 'plan'),
                                ('noise-injected (0.03 rad), DART labels', ActionNoise(std=0.03), 'dart')):
        agent = ExpertAgent(make_expert('push_cube', rollout.sim.model), noise, labels)
        gaps, steps, tips, wins = [], [], [], 0
        for seed in range(20000, 20030):
            result = rollout.run(agent, seed, 20.0, record=True)
            wins += result.success
            action, state = result.data['action'][:, :7], result.data['state'][:, :7]
            gaps.append(np.linalg.norm(action - state, axis=1))
            tips.append(tip_gaps(action, state))
            steps.append(np.linalg.norm(np.diff(action, axis=0), axis=1))
        g, d, tip = np.concatenate(gaps), np.concatenate(steps), np.concatenate(tips).mean(axis=0)
        lines.append(f'| {name} | {wins}/30 | {g.mean():.4f}, {np.percentile(g, 90):.4f} | '
                     f'{tip[0] * 1000:.1f}, {np.degrees(tip[1]):.2f} | {d.mean():.4f}, {np.percentile(d, 99):.4f} |')
    body = '\n'.join(lines) + (
        '\n\nWith `plan` labels (the mode the earlier study used) the labels stay as smooth as the clean '
        'ones but sit farther from the measured arm: the label is the clean chunk planned at the last query, '
        'the arm has drifted off it by the injected noise since, and nothing the policy observes tells it by '
        'how much. This supports H5\'s hypothesis. DART labels (`ExpertAgent(labels=\'dart\')`, '
        '`sim/collection.py`) replan from the perturbed state at every step; the same seeds give '
        'the same perturbed execution, so the rows differ only in the label. Their tip position sits as near '
        'the measured tip as a clean label does, a third of the `plan` labels\' distance; their joint-space '
        'distance stays large because the plan from a perturbed pose turns the tilted hand straight at once '
        '(the rotation column) and returns the redundant joint: a correction of the pose the joints show, which '
        'the policy can observe. Policies trained on DART labels still fell short of clean demonstrations in '
        'the paired comparison (the grid\'s H5 row), so the collection mode left the product.')
    print(body)
    write_section('noise_h5', 'Results: H5, the noise-injected labels', body, doc=ROOT / 'docs' / 'noise_study.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
