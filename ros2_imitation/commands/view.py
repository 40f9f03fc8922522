HELP = 'live view of a running graph in the browser: cameras, the arm, the predicted chunk, task and latency'


def add_arguments(p):
    p.add_argument('--robot', default='panda', help='robot profile (for the arm skeleton by forward kinematics)')
    p.add_argument('--camera', nargs='+', default=['/camera/camera/color/image_raw'], metavar='TOPIC',
                   help='Image topics to show')
    p.add_argument('--markers', default='/policy/predicted_chunk', help="policy_node's MarkerArray topic")
    p.add_argument('--port', type=int, default=9090, help='web port (the data server uses port + 786)')
    p.add_argument('--open', action='store_true', help='open the browser')
    p.add_argument('--seconds', type=float, default=0.0, help='stop after this long (0: until Ctrl-C)')


def run(args) -> int:
    import time

    from ros2_imitation.graph.client import ClientNode
    from ros2_imitation.viz.live_view import LiveView
    with ClientNode('live_view') as client:
        try:
            view = LiveView(client.node, args.robot, args.camera, args.markers, web_port=args.port,
                            grpc_port=args.port + 786, open_browser=args.open)
            print(f'live view: {view.url}', flush=True)
            deadline = time.monotonic() + args.seconds if args.seconds > 0 else float('inf')
            while time.monotonic() < deadline:
                time.sleep(0.2)
            print(f'live view: received {view.counts}', flush=True)
        except KeyboardInterrupt:
            pass
    return 0
