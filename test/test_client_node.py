"""graph/client.ClientNode: a node of this process beside a graph, closed in the order that keeps DDS
teardown from hanging; and the harness's teardown watchdog that turns such a hang into a failure."""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import next_domain_id
from std_msgs.msg import String

from ros2_imitation.graph import client as client_module
from ros2_imitation.graph.client import ClientNode

TEST_DIR = Path(__file__).parent


def watch_destroy(client, events):
    """Records, around the node's destroy, the thread it runs in, whether the executor thread still runs,
    and its start and end times."""
    destroy = client.node.destroy_node

    def watched():
        start = time.monotonic()
        events.append(dict(thread=threading.current_thread(), spinning=client._thread.is_alive(), start=start))
        destroy()
        events[-1]['end'] = time.monotonic()
    client.node.destroy_node = watched


def test_a_client_node_spins_then_is_destroyed_in_the_callers_thread_after_its_executor_stopped():
    client = ClientNode('client_under_test', next_domain_id())
    received = []
    client.node.create_subscription(String, '/client_test', received.append, 10)
    pub = client.node.create_publisher(String, '/client_test', 10)
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:     # spun by its own thread, not by this test
        pub.publish(String(data='ping'))
        time.sleep(0.05)
    assert received and received[0].data == 'ping'
    events = []
    watch_destroy(client, events)
    client.close()
    assert len(events) == 1
    assert events[0]['thread'] is threading.current_thread()
    assert not events[0]['spinning'], 'the node was destroyed while its executor thread still ran'
    assert client.closed
    client.close()                                             # idempotent: no second destroy
    assert len(events) == 1


def test_two_participants_of_this_process_are_destroyed_at_least_settle_s_apart():
    domain = next_domain_id()
    first, second = ClientNode('first', domain), ClientNode('second', domain)
    events = []
    watch_destroy(first, events)
    watch_destroy(second, events)
    first.close()
    second.close()
    gap = events[1]['start'] - events[0]['end']
    assert gap >= client_module.SETTLE_S - 0.01, f'second participant destroyed {gap:.3f} s after the first'


def test_a_ros_test_whose_teardown_hangs_fails_with_every_threads_stack(tmp_path):
    (tmp_path / 'test_hang.py').write_text(
        'import time\n\nimport pytest\n\n\n'
        '@pytest.fixture\ndef stuck(ros_env):\n    yield ros_env\n    time.sleep(60)\n\n\n'
        'def test_stuck(stuck):\n    assert stuck\n')
    env = dict(os.environ, ROS2_IMITATION_TEARDOWN_WATCHDOG_S='2',
               PYTHONPATH=os.pathsep.join([str(TEST_DIR), os.environ.get('PYTHONPATH', '')]))
    start = time.monotonic()
    run = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'conftest', '-p', 'no:cacheprovider',
                          '-p', 'no:rerunfailures', str(tmp_path / 'test_hang.py')],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert run.returncode != 0
    assert elapsed < 50, f'the run took {elapsed:.0f} s: the watchdog did not end it'
    assert 'Timeout (0:00:02)' in run.stderr and 'in stuck' in run.stderr, run.stderr[-2000:]
