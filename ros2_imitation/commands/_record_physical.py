"""record-demos on a physical arm (--source kinesthetic | leader | teleop): only the recorder (and,
for leader, the leader_arm bridge; for teleop, teleop_node: a SpaceMouse or gamepad driving the end
effector through a controller with chunk_space ee) are started -- with --sim, also the sim and
controller of record_sim -- and the operator starts and ends each episode from the keyboard."""
import json
import time
from pathlib import Path

from ros2_imitation.graph.session import GraphSession, liveness, log_episode

PHYSICAL_TOPICS = ['/joint_states', '/camera/camera/color/image_raw', '/camera/camera/color/camera_info']
CHUNK_TOPICS = ['/ros2_imitation/action_chunk', '/ros2_imitation/expert_label']
EE_CHUNK_TOPIC = '/ros2_imitation/ee_chunk'


def physical_graph(args, out: Path):
    """recorder (+ leader_arm) alone, or with sim + controller from record_sim when --sim."""
    from ros2_imitation.graph.spec import Graph, NodeSpec, load_graph
    base = load_graph('record_sim', {'output_dir': str(out), 'storage': args.storage,
                                     'real_time_factor': float(args.real_time_factor)})
    sim_time = bool(args.sim)
    extra = {'leader': CHUNK_TOPICS,
             'teleop': [EE_CHUNK_TOPIC, args.twist_topic, args.joy_topic]}.get(args.source, [])
    topics = list(args.topics or PHYSICAL_TOPICS + extra)
    recorder = base.node('recorder')
    recorder.parameters.update(topics=topics, use_sim_time=sim_time, info_topics=['/leader_arm/state'],
                               task_state_topic='/sim/task_state' if args.sim else '',
                               metadata=json.dumps({'source': args.source, 'task': args.task}))
    nodes = [recorder]
    if args.sim:
        nodes = [base.node('sim'), base.node('controller')] + nodes
        nodes[0].parameters.update(task=args.task)
        if args.source == 'teleop':     # the teleop node's tip poses -> joints by the controller's IK
            nodes[1].parameters.update(chunk_space='ee')
    if args.source == 'teleop':
        nodes.append(NodeSpec(name='teleop', executable='teleop_node', parameters=dict(
            twist_topic=args.twist_topic, joy_topic=args.joy_topic, use_sim_time=sim_time)))
    if args.source == 'leader':
        leader_joints = [j.strip() for j in args.leader_joints.split(',') if j.strip()] or ['']
        nodes.append(NodeSpec(name='leader_arm', executable='leader_arm_node', parameters=dict(
            leader_topic=args.leader_topic, leader_joints=leader_joints, use_sim_time=sim_time)))
    return Graph(name=f'record_{args.source}', description=f'{args.source} demonstrations', nodes=nodes,
                 arguments={}, use_sim_time=sim_time)


def record_interactive(args, log=print, read=input) -> dict:
    """Operator-driven episodes: Enter starts, then s(uccess, default) / f(ailure) / d(iscard) ends."""
    from ros2_imitation.graph.bringup import Bringup
    from ros2_imitation.graph.client import ClientNode
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    graph = physical_graph(args, out)

    def ask(prompt: str) -> str:
        try:
            return read(prompt)
        except EOFError:
            return 'q'

    results, t_start = [], time.monotonic()
    with Bringup(graph, log=(lambda m: None) if args.quiet else log) as bringup:
        client = ClientNode('record_demos')
        node = client.node
        try:
            calls = GraphSession(node, liveness(bringup))
            calls.wait_services(['/recorder/start', '/recorder/stop_success', '/recorder/stop_failure',
                        '/recorder/discard'], args.startup_timeout)
            missing = calls.wait_recorder_ready(graph.node('recorder').parameters['topics'],
                                                min(args.startup_timeout, 10.0))
            if missing:
                log(f'[record-demos] no publisher yet for {missing} (they are recorded once they appear)')
            for i in range(args.episodes):
                answer = ask(f'[record-demos] episode {i + 1}/{args.episodes}: Enter to start, q to quit: ')
                if answer.strip().lower().startswith('q'):
                    break
                started = json.loads(calls('/recorder/start').message)
                log(f'[record-demos] recording {started["path"]}')
                answer = ask('[record-demos] Enter or s = success, f = failure, d = discard, '
                             'q = discard and quit: ').strip().lower()
                t_end = time.monotonic()
                if answer.startswith(('d', 'q')):
                    calls('/recorder/discard')
                    results.append(dict(episode=i, bag=None, success=False, discarded=True))
                    log('[record-demos] discarded')
                    if answer.startswith('q'):
                        break
                    continue
                success = not answer.startswith('f')
                saved = json.loads(calls('/recorder/stop_success' if success else '/recorder/stop_failure').message)
                result = dict(episode=i, bag=saved['path'], success=success, messages=saved['message_count'],
                              topics=saved['topics'], source=args.source, wall_s=round(t_end - t_start, 1))
                results.append(result)
                log_episode(out, result)
                log(f'[record-demos] saved {saved["path"]}: {"success" if success else "failure"}, '
                    f'{saved["message_count"]} messages')
        finally:
            client.close()
    summary = dict(out=str(out), source=args.source, episodes=len(results),
                   kept=sum(r['bag'] is not None for r in results),
                   successes=sum(r['success'] for r in results), wall_s=round(time.monotonic() - t_start, 1))
    if not args.quiet:
        log(json.dumps(summary, indent=2))
    return summary
