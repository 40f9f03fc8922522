"""Build a `ros2 launch` description from a graph config, so launch and bringup run the same graph.

Only imported by the files in launch/, on a machine with the ROS 2 launch system.
"""
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ros2_imitation.graph.spec import load_graph


def graph_actions(graph_name: str, skip_nodes=(), declare_arguments: bool = True, conditions=None) -> list:
    """DeclareLaunchArgument for each graph argument, then one launch_ros Node per graph node
    (`conditions`: {node name: a launch condition} for nodes that only run sometimes)."""
    graph = load_graph(graph_name)
    actions = []
    bound = {}
    for arg in graph.arguments.values():
        if declare_arguments:
            actions.append(DeclareLaunchArgument(arg.name, default_value=str(arg.default),
                                                 description=arg.description))
        for target in arg.sets:
            bound[target] = LaunchConfiguration(arg.name)
    for spec in graph.nodes:
        if spec.name in skip_nodes:
            continue
        parameters = {key: bound.get(f'{spec.name}.{key}', value)
                      for key, value in spec.parameters.items()}
        extra = {}
        if conditions and spec.name in conditions:
            extra['condition'] = conditions[spec.name]
        if spec.required:
            extra['on_exit'] = Shutdown(reason=f'required node {spec.name} exited')
        actions.append(Node(package=spec.package, executable=spec.executable, name=spec.name,
                            namespace=spec.namespace, parameters=[parameters],
                            remappings=list(spec.remappings.items()), output='screen', **extra))
    return actions


def graph_launch_description(graph_name: str) -> LaunchDescription:
    return LaunchDescription(graph_actions(graph_name))
