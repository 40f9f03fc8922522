"""Graph configs: parsing, includes, arguments, errors. ROS-free."""
import pytest
import yaml

from ros2_imitation.graph.spec import GraphError, load_graph
from ros2_imitation.paths import share_dir


def write(tmp_path, name, body):
    path = tmp_path / f'{name}.yaml'
    path.write_text(yaml.safe_dump(body))
    return str(path)


def test_every_shipped_graph_loads():
    names = [p.stem for p in (share_dir() / 'config' / 'graphs').glob('*.yaml')]
    assert 'sim' in names
    for name in names:
        graph = load_graph(name)
        assert graph.nodes, name
        for node in graph.nodes:
            assert 'use_sim_time' in node.parameters


def test_sim_graph_arguments_reach_parameters():
    graph = load_graph('sim', arguments={'task': 'reach'}, overrides={'sim.seed': 5})
    sim = graph.node('sim')
    assert sim.parameters['task'] == 'reach'
    assert sim.parameters['seed'] == 5
    assert sim.parameters['use_sim_time'] is True
    assert sim.module == 'ros2_imitation.nodes.sim_node'


def test_params_file_and_ros_arguments(tmp_path):
    graph = load_graph('sim')
    spec = graph.node('sim')
    spec.remappings = {'/joint_states': '/robot/joint_states'}
    path = spec.write_params_file(str(tmp_path))
    params = yaml.safe_load(open(path))['/**']['ros__parameters']
    assert params['task'] == 'push_cube'
    args = spec.ros_arguments(path)
    assert args[:3] == ['--ros-args', '-r', '__node:=sim']
    assert '/joint_states:=/robot/joint_states' in args


def test_include_merges_nodes(tmp_path):
    base = write(tmp_path, 'base', {'nodes': {'a': {'executable': 'sim_node', 'parameters': {'x': 1, 'y': 2}}}})
    top = write(tmp_path, 'top', {'include': [base], 'use_sim_time': True,
                                  'nodes': {'a': {'parameters': {'y': 3}},
                                            'b': {'executable': 'controller_node'}}})
    graph = load_graph(top)
    assert graph.node('a').parameters == {'x': 1, 'y': 3, 'use_sim_time': True}
    assert [n.name for n in graph.nodes] == ['a', 'b']


@pytest.mark.parametrize('body, message', [
    ({'nodes': {}}, 'non-empty'),
    ({'nodes': {'a': {'parameters': {}}}}, 'executable'),
    ({'nodes': {'a': {'executable': 'x', 'colour': 1}}}, 'unknown keys'),
    ({'nodes': {'a': {'executable': 'x', 'parameters': {'p': {'nested': 1}}}}}, 'cannot hold'),
    ({'nodes': {'a': {'executable': 'x'}}, 'arguments': {'t': {'sets': ['b.p']}}}, "no node 'b'"),
])
def test_malformed_graphs_fail_clearly(tmp_path, body, message):
    with pytest.raises(GraphError, match=message):
        load_graph(write(tmp_path, 'bad', body))


def test_unknown_graph_and_argument():
    with pytest.raises(FileNotFoundError, match="unknown graph 'nope'.*sim"):
        load_graph('nope')
    with pytest.raises(GraphError, match='unknown argument'):
        load_graph('sim', arguments={'colour': 'red'})


def test_include_cycle(tmp_path):
    (tmp_path / 'a.yaml').write_text(yaml.safe_dump({'include': [str(tmp_path / 'b.yaml')]}))
    (tmp_path / 'b.yaml').write_text(yaml.safe_dump({'include': [str(tmp_path / 'a.yaml')]}))
    with pytest.raises(GraphError, match='cycle'):
        load_graph(str(tmp_path / 'a.yaml'))
