"""bag2dataset's topic map: which topics of a bag are the state, the cameras, the action and the gripper.

A bag recorded with plain `ros2 bag record` on any arm converts once its topics are named, in a YAML
file (`--topics map.yaml`) or with flags; a flag wins over the file, the file over the defaults (our
recorder's topics). Example, a Franka with two RealSense cameras:

    joint_states: /joint_states
    joints: [fr3_joint1, fr3_joint2, fr3_joint3, fr3_joint4, fr3_joint5, fr3_joint6, fr3_joint7]
    cameras:                                  # name -> sensor_msgs/Image or CompressedImage topic
      front: /camera/camera/color/image_raw/compressed
      wrist: /wrist/camera/color/image_raw
    action:
      source: trajectory                      # trajectory | command | next_state | chunk | label | auto
      topic: /fr3_arm_controller/joint_trajectory
    gripper:
      joint: fr3_finger_joint1
      topic: /franka_gripper/joint_states     # default: joint_states
      # or `profile: fr3` instead of joint: the profile's opening (m) from its finger joints, the
      # action from the chunks' gripper column (config/topic_maps/pick_place.yaml)
    task: push the cube onto the cross
    robot_type: fr3

A shipped map is named without its path (`--topics pick_place`: config/topic_maps/pick_place.yaml).
Everything is optional; unknown keys are an error (a typo must not silently fall back to a default).
"""
from __future__ import annotations

from pathlib import Path

from ros2_imitation.data.bag_reading import (
    ACTION_SOURCES,
    ARM_JOINTS,
    DEFAULT_TOPICS,
    ConvertConfig,
    GripperStream,
)

TOP_KEYS = {'joint_states', 'joints', 'cameras', 'action', 'gripper', 'task_state', 'task', 'robot_type',
            'rate', 'image_size', 'max_age', 'chunk_topic', 'label_topic'}
ACTION_KEYS = {'source', 'topic', 'joints'}
GRIPPER_KEYS = {'joint', 'topic', 'command', 'index', 'profile'}


class TopicMapError(ValueError):
    pass


def _names(value, where: str) -> tuple[str, ...]:
    """A list of names, or 'a,b,c'."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(',') if v.strip()]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise TopicMapError(f'{where} must be a list of names, got {value!r}')
    return tuple(value)


def _topic(value, where: str, empty_ok: bool = False) -> str:
    if value is None and empty_ok:
        return ''
    if not isinstance(value, str) or (not value and not empty_ok):
        raise TopicMapError(f'{where} must be a topic name, got {value!r}')
    if value and not value.startswith('/'):
        raise TopicMapError(f'{where}: topic {value!r} must start with /')
    return value


def _unknown(given: dict, allowed: set, where: str) -> None:
    extra = sorted(set(given) - allowed)
    if extra:
        raise TopicMapError(f'{where}: unknown key{"s" if len(extra) > 1 else ""} {extra} '
                            f'(known: {sorted(allowed)})')


def _joint_gripper(gripper: dict, where: str) -> dict:
    index = gripper.get('index', 0)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise TopicMapError(f'{where}: gripper.index must be an integer >= 0, got {index!r}')
    return {'joint': _names([gripper['joint']], f'{where}: gripper.joint')[0],
            'topic': _topic(gripper['topic'], f'{where}: gripper.topic') if gripper.get('topic') else None,
            'command': _topic(gripper['command'], f'{where}: gripper.command') if gripper.get('command') else None,
            'index': index}


def parse_topic_map(data, where: str = 'topic map') -> dict:
    """A topic map (the YAML's mapping) -> normalized dict with the keys of TOP_KEYS that were given."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TopicMapError(f'{where} must be a mapping, got {type(data).__name__}')
    _unknown(data, TOP_KEYS, where)
    out: dict = {}
    for key in ('joint_states', 'chunk_topic', 'label_topic'):
        if key in data:
            out[key] = _topic(data[key], f'{where}: {key}')
    if 'task_state' in data:
        out['task_state'] = _topic(data['task_state'], f'{where}: task_state', empty_ok=True)
    if 'joints' in data:
        out['joints'] = _names(data['joints'], f'{where}: joints')
    if 'cameras' in data:
        cams = data['cameras']
        if isinstance(cams, str):
            cams = {'image': cams}
        if not isinstance(cams, dict):
            raise TopicMapError(f'{where}: cameras must map a camera name to a topic, got {cams!r}')
        out['cameras'] = {str(name): _topic(t, f'{where}: cameras.{name}') for name, t in cams.items()}
    if 'action' in data:
        action = data['action']
        if isinstance(action, str):
            action = {'source': action}
        if not isinstance(action, dict):
            raise TopicMapError(f'{where}: action must be a source name or a mapping, got {action!r}')
        _unknown(action, ACTION_KEYS, f'{where}: action')
        parsed = {}
        if 'source' in action:
            if action['source'] not in ACTION_SOURCES:
                raise TopicMapError(f'{where}: action.source must be one of {list(ACTION_SOURCES)}, '
                                    f'got {action["source"]!r}')
            parsed['source'] = action['source']
        if 'topic' in action:
            parsed['topic'] = _topic(action['topic'], f'{where}: action.topic')
        if 'joints' in action:
            parsed['joints'] = _names(action['joints'], f'{where}: action.joints')
        out['action'] = parsed
    if 'gripper' in data:
        gripper = data['gripper']
        if isinstance(gripper, str):
            gripper = {'joint': gripper}
        if gripper is not None:
            if not isinstance(gripper, dict) or ('joint' in gripper) == ('profile' in gripper):
                raise TopicMapError(f'{where}: gripper must be a joint name or a mapping with joint or '
                                    f'profile (one of them), got {gripper!r}')
            _unknown(gripper, GRIPPER_KEYS, f'{where}: gripper')
            if 'profile' in gripper:
                if set(gripper) - {'profile', 'topic'} or not isinstance(gripper['profile'], str):
                    raise TopicMapError(f'{where}: gripper.profile (a robot profile name) takes only a topic '
                                        f'beside it, got {gripper!r}')
                out['gripper'] = {'profile': gripper['profile'], 'topic': _topic(
                    gripper['topic'], f'{where}: gripper.topic') if gripper.get('topic') else None}
            else:
                out['gripper'] = _joint_gripper(gripper, where)
    for key in ('task', 'robot_type'):
        if key in data:
            if not isinstance(data[key], str) or not data[key].strip():
                raise TopicMapError(f'{where}: {key} must be a non-empty string, got {data[key]!r}')
            out[key] = data[key].strip()
    for key in ('rate', 'max_age'):
        if key in data:
            if isinstance(data[key], bool) or not isinstance(data[key], (int, float)):
                raise TopicMapError(f'{where}: {key} must be a number, got {data[key]!r}')
            out[key] = float(data[key])
    if 'image_size' in data:
        size = data['image_size']
        if isinstance(size, str):
            out['image_size'] = size
        elif isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) for v in size):
            out['image_size'] = f'{size[0]}x{size[1]}'
        else:
            raise TopicMapError(f'{where}: image_size must be WIDTHxHEIGHT or [width, height], got {size!r}')
    return out


def load_topic_map(path) -> dict:
    """Read and check a topic map YAML file (safe_load: no tags are executed)."""
    import yaml

    from ros2_imitation.paths import resolve
    path = Path(path)
    if not path.suffix and not path.exists():      # a shipped map by name
        try:
            path = resolve('topic_maps', str(path))
        except FileNotFoundError as exc:
            raise TopicMapError(str(exc)) from None
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TopicMapError(f'{path}: cannot read ({exc.strerror or exc})') from None
    except yaml.YAMLError as exc:
        raise TopicMapError(f'{path}: not valid YAML ({exc})') from None
    return parse_topic_map(data, str(path))


def parse_camera_flags(values) -> dict:
    """['front=/cam/a', 'wrist=/cam/b'] -> {'front': '/cam/a', 'wrist': '/cam/b'}."""
    out = {}
    for value in values or []:
        name, sep, topic = str(value).partition('=')
        if not sep or not name.strip():
            raise TopicMapError(f'--camera takes NAME=TOPIC, got {value!r}')
        out[name.strip()] = _topic(topic.strip(), f'--camera {name.strip()}')
    return out


def build_config(file_map: dict | None = None, *, joint_states=None, joints=None, cameras=None,
                 image_topic=None, action_source=None, action_topic=None, command_joints=None,
                 chunk_topic=None, label_topic=None, task_state=None, gripper_joint=None, gripper_topic=None,
                 gripper_command=None, gripper_index=None, gripper_profile=None, rate=None, image_size=None, max_age=None,
                 task=None, robot_type=None) -> ConvertConfig:
    """ConvertConfig from a parsed topic map and flags (None = not given; a flag wins over the map).

    Cameras: --image-topic / --camera flags replace the map's cameras; neither given and no map
    cameras: one camera 'image' on the recorder's image topic. action_topic is the topic of the chosen
    source (chunk, label, trajectory or command)."""
    from ros2_imitation.data.bag_dataset import parse_image_size
    m = dict(file_map or {})
    action = dict(m.get('action') or {})
    topics = dict(DEFAULT_TOPICS)
    topics['joint_states'] = joint_states or m.get('joint_states') or topics['joint_states']
    topics['chunk'] = chunk_topic or m.get('chunk_topic') or topics['chunk']
    topics['label'] = label_topic or m.get('label_topic') or topics['label']
    topics['task_state'] = task_state if task_state is not None else m.get('task_state', topics['task_state'])

    source = action_source or action.get('source') or 'auto'
    topic = action_topic or (action.get('topic') if not action_source or action_source == action.get('source')
                             else None)
    if topic:
        if source in ('next_state', 'joint_states', 'auto'):
            raise TopicMapError(f'an action topic ({topic}) needs the action source that reads it '
                                '(trajectory, command, chunk or label), not ' + source)
        topics[source] = topic

    if cameras is not None or image_topic is not None:
        cams = {}
        if image_topic:
            cams['image'] = _topic(image_topic, '--image-topic')
        cams.update(cameras or {})
    elif 'cameras' in m:
        cams = dict(m['cameras'])
    else:
        cams = {'image': DEFAULT_TOPICS['image']}
    topics['image'] = cams.get('image', '')

    gripper_map = m.get('gripper') or {}
    g_joint = gripper_joint or gripper_map.get('joint')
    profile = gripper_profile or (None if gripper_joint else gripper_map.get('profile'))
    gripper = None
    if profile:
        if gripper_joint or gripper_command:
            raise TopicMapError('a gripper profile gives the finger joints and the action column: '
                                'leave out --gripper-joint and --gripper-command-topic')
        try:
            gripper = GripperStream.from_profile(profile, gripper_topic or gripper_map.get('topic'))
        except (FileNotFoundError, ValueError) as exc:
            raise TopicMapError(f'gripper profile: {exc}') from None
    elif g_joint:
        gripper = GripperStream(
            joint=g_joint,
            topic=gripper_topic or gripper_map.get('topic'),
            command_topic=gripper_command or gripper_map.get('command'),
            command_index=gripper_index if gripper_index is not None else gripper_map.get('index', 0))
    elif gripper_topic or gripper_command:
        raise TopicMapError('a gripper topic or command needs the gripper joint (--gripper-joint)')

    cmd_joints = command_joints or action.get('joints')
    size = image_size or m.get('image_size') or '96x96'
    return ConvertConfig(
        rate=rate if rate is not None else m.get('rate', 10.0),
        image_size=parse_image_size(size),
        max_age=max_age if max_age is not None else m.get('max_age', 0.15),
        action_source=source,
        joint_names=tuple(joints or m.get('joints') or ARM_JOINTS),
        topics=topics, cameras=cams,
        command_joints=tuple(cmd_joints) if cmd_joints else None,
        gripper=gripper, task=task or m.get('task'), robot_type=robot_type or m.get('robot_type'))
