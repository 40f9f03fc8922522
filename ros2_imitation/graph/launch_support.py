"""Build a `ros2 launch` description from a graph config, so launch and bringup run the same graph.

Only imported by the files in launch/, on a machine with the ROS 2 launch system.

A required node that exits on its own takes the launch down, as with bringup, and says which node
and its exit code. Upstream launch (Humble to Kilted) has no way to set `ros2 launch`'s exit code:
LaunchService.run() returns 1 only when an exception escapes an action or an event handler (and 0
after Shutdown, whatever its reason, which it does not even log). So an error exit of a required
node raises RequiredNodeExited in its on_exit handler: launch logs "Caught exception in launch ...:
required node 'controller' exited with code 1", shuts everything down with that as the reason, and
`ros2 launch` exits 1. A required node that exits 0 shuts the launch down with a logged reason and
exit 0; an exit while the launch is already shutting down (Ctrl-C) is no failure.
"""
from launch.actions import DeclareLaunchArgument, LogInfo, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from ros2_imitation.graph.spec import load_graph


class RequiredNodeExited(RuntimeError):
    """A required node exited with an error: raised inside launch so that `ros2 launch` exits 1."""


def on_required_exit(name: str):
    """An on_exit handler for launch_ros Node: called with the ProcessExited event (its returncode)
    and the LaunchContext."""
    def on_exit(event, context):
        if getattr(context, 'is_shutdown', False):
            return None      # stopping anyway (Ctrl-C, another node's exit): not this node's failure
        code = event.returncode
        reason = f'required node {name!r} exited with code {code}'
        if code != 0:
            raise RequiredNodeExited(f'{reason}; stopping the graph')
        return [LogInfo(msg=f'{reason}; stopping the graph'), Shutdown(reason=reason)]
    return on_exit


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
            extra['on_exit'] = on_required_exit(spec.name)
        actions.append(Node(package=spec.package, executable=spec.executable, name=spec.name,
                            namespace=spec.namespace, parameters=[parameters],
                            remappings=list(spec.remappings.items()), output='screen', **extra))
    return actions


def graph_launch_description(graph_name: str) -> LaunchDescription:
    return LaunchDescription(graph_actions(graph_name))
