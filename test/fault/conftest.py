"""The fault suite's results: each fault test records a row; when every fault has one, the session's
end rewrites docs/reliability.md from them (a single test run leaves the file alone)."""
import datetime
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
from report import machine  # noqa: E402  (the machine line every benchmark section carries)

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'reliability.md'

# The table's rows, in order: key -> fault. Every key must be recorded for the table to be written.
FAULTS = {
    'camera_stops': 'camera stops',
    'wrist_camera_stops': 'the wrist camera stops (two-camera gripper policy)',
    'bad_frames': 'frames with a wrong encoding or size',
    'huge_image': 'a huge image',
    'nan_joint_states': 'NaN joint states',
    'inf_joint_states': 'infinite joint states',
    'missing_joint': 'joint states with a missing joint',
    'renamed_joints': 'joint states with renamed joints',
    'bad_joint_states_graph': 'bad joint states mixed into /joint_states (whole graph)',
    'joint_states_stop': 'joint states stop',
    'policy_killed': 'policy process killed and restarted',
    'controller_restarted': 'controller killed and restarted',
    'sim_reset': 'sim reset mid-chunk',
    'clock_jump': 'clock jump mid-chunk',
    'clock_jump_policy': 'clock jump with the policy running',
    'chunk_flood': 'a flood of 1000 chunks/s on a busy CPU',
    'absurd_chunks': 'chunks with absurd lengths',
    'absurd_values': 'chunks with absurd values',
    'gripper_bad_target': 'gripper widths NaN or far out of range',
    'gripper_joint_states_missing': "the gripper's finger joints missing from the joint states",
    'gripper_server_faults': 'gripper action server absent, rejecting or aborting goals',
    'ee_workspace': 'end-effector targets outside the workspace',
    'ee_bad_rotation': 'end-effector rotations that are no rotation',
    'ik_not_converging': 'end-effector targets the IK cannot reach',
    'twist_stops': 'a teleoperation Twist stream that stops mid-motion',
    'joy_wrong_axes': 'a Joy message with the wrong axis count',
    'corrupt_checkpoint': 'a corrupt checkpoint',
    'corrupt_bag': 'a corrupt bag',
    'bad_config': 'configs with missing keys or wrong types',
    'bad_parameters': 'nodes given bad parameters',
}


class Reliability:
    def __init__(self):
        self.rows = {}
        self.seconds = 0.0      # summed durations of the fault tests

    def record(self, key, injected, outcome, checked, out_of_limits, recovered, recovery_s=None):
        """checked: commands checked by the monitor (None: no command path, e.g. an offline tool);
        recovered: True/False; recovery_s: seconds from the fault clearing to recovery."""
        assert key in FAULTS, key
        self.rows[key] = dict(injected=injected, outcome=outcome, checked=checked,
                              out_of_limits=out_of_limits, recovered=recovered, recovery_s=recovery_s)

    def complete(self) -> bool:
        return set(FAULTS) <= set(self.rows)

    def markdown(self) -> str:
        lines = [
            '# Reliability: faults injected and what the stack did',
            '',
            'Written by the fault-injection suite (`python -m pytest test/fault`, part of `make test`) each time it '
            'runs in full; do not edit by hand. Every row is measured in that run: the real node processes over '
            'DDS (one fresh `ROS_DOMAIN_ID` per graph), faults injected by publishing bad messages, killing '
            'processes and calling services. A command monitor subscribes to every topic the controller commands '
            'on (position, effort, trajectory, impedance target, the gripper\'s width, and their dry-run twins) '
            'and checks each command against `config/robots/panda.yaml`: finite, inside the position limits, '
            'torques and velocities inside their limits, and no position step larger than `max_step` per control '
            'cycle (unless it lands where the arm measurably is: re-anchoring after a reset or restart); the '
            'gripper\'s width inside the profile\'s width range and moving at most `gripper.max_speed` per control '
            'period (unless it lands where the fingers measurably are). GripperCommand goals (the action output) '
            'are checked by the test\'s action server: in range, one at a time. A row fails its test if any '
            'node crashed without a logged reason, any command was out of limits, or it did not recover.',
            '',
            f'Last run: {datetime.date.today().isoformat()}, {machine()}; the suite took {self.seconds:.0f} s.',
            '',
            '| fault | injected | outcome | commands checked | out of limits | recovered |',
            '|---|---|---|---|---|---|',
        ]
        for key, fault in FAULTS.items():
            row = self.rows[key]
            checked = 'offline' if row['checked'] is None else str(row['checked'])
            recovered = 'yes' if row['recovered'] else 'NO'
            if row['recovered'] and row['recovery_s'] is not None:
                recovered += f' ({row["recovery_s"]:.1f} s)'
            cells = [fault, row['injected'], row['outcome'], checked, str(row['out_of_limits']), recovered]
            lines.append('| ' + ' | '.join(c.replace('|', '/').replace('\n', ' ') for c in cells) + ' |')
        lines += [
            '',
            '"commands checked" counts the commands the monitor saw from the fault until 1 s after recovery; "offline" '
            'rows exercise a tool or a start-up path that commands nothing. Recovery time runs from the moment '
            'the fault cleared (or the process was restarted) until the graph did its job again: the controller '
            'tracking chunks within 0.05 rad (and the gripper\'s width within 5 mm of theirs, or its goals '
            'succeeding again), or the policy publishing chunks again.',
            '',
        ]
        return '\n'.join(lines)


RELIABILITY = Reliability()


@pytest.fixture(scope='session')
def reliability():
    return RELIABILITY


def pytest_runtest_logreport(report):
    RELIABILITY.seconds += report.duration


def pytest_terminal_summary(terminalreporter):
    if not RELIABILITY.rows:
        return
    terminalreporter.section('faults injected')
    for key, row in RELIABILITY.rows.items():
        terminalreporter.write_line(
            f'{key}: out of limits {row["out_of_limits"]}/{row["checked"]}, recovered {row["recovered"]} '
            f'({row["recovery_s"] if row["recovery_s"] is None else round(row["recovery_s"], 1)} s): {row["outcome"]}')
    if not RELIABILITY.complete():
        terminalreporter.write_line(f'{DOC.name} not rewritten: the run did not cover '
                                    f'{sorted(set(FAULTS) - set(RELIABILITY.rows))}')


def pytest_sessionfinish(session, exitstatus):
    if RELIABILITY.complete():
        DOC.write_text(RELIABILITY.markdown())
