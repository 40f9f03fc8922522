"""MJCF for a Franka Panda on a table with a fixed external camera, built from the meshes that
gymnasium-robotics ships.

The kinematic chain is written here rather than taken from that package's chain.xml: its link6 and
link7 frames are rotated against the Franka (DH) frames, so its joint values would not mean what
they mean on a real arm. The meshes themselves are franka_description's, in the standard frames.
"""
import importlib.util
import os

import numpy as np

ARM_JOINTS = tuple(f'panda_joint{i}' for i in range(1, 8))
GRIPPER_JOINTS = ('panda_finger_joint1', 'panda_finger_joint2')
HOME = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
# Franka's joint-space limits (control-parameters page), the same as config/robots/panda.yaml.
ARM_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
ARM_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
EFFORT_LIMIT = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
FINGER_MAX = 0.04              # per finger; the gripper opens to 0.08 m
TCP_OFFSET = 0.1034            # flange -> fingertip centre, franka_description's panda_hand_tcp
CAMERA = dict(name='external', pos=(0.98, -0.03, 0.70), lookat=(0.44, -0.03, 0.0), fovy=42.0)
# A RealSense-like (D405: 58 degrees vertical) camera on the hand's +x side, in the hand frame
# (z along the fingers), looking past the fingertips: the fingers sit at the bottom of its image.
WRIST_CAMERA = dict(name='wrist', pos=(0.055, 0.0, 0.04), lookat=(0.0, 0.0, 0.16), up=(1.0, 0.0, 0.0),
                    fovy=58.0)
# Finger pads for grasping (tasks that ask for them, scene options `grip`): high friction with
# torsional friction (condim 4, so a held cube does not spin about the grasp axis) and stiffer,
# harder contacts than the default, so a squeezed 0.1 kg cube neither sinks into the pads nor slips.
GRIP_IMPRATIO = 10
GRIP_PAD = dict(friction='1.5 0.02 0.0001', condim='4', solref='0.004 1', solimp='0.95 0.99 0.001')

# Link masses from the gymnasium-robotics chain; inertia follows from the collision hulls.
_MASS = dict(link0=2.91, link1=2.71, link2=2.73, link3=2.04, link4=2.08, link5=3.00,
             link6=1.32, link7=0.20, hand=0.82)
# Franka's standard (Craig DH) link frames, child relative to parent: (pos, quat wxyz).
_S = np.sqrt(0.5)
_LINKS = (
    ('link1', (0, 0, 0.333), (1, 0, 0, 0)),
    ('link2', (0, 0, 0), (_S, -_S, 0, 0)),
    ('link3', (0, -0.316, 0), (_S, _S, 0, 0)),
    ('link4', (0.0825, 0, 0), (_S, _S, 0, 0)),
    ('link5', (-0.0825, 0.384, 0), (_S, -_S, 0, 0)),
    ('link6', (0, 0, 0), (_S, _S, 0, 0)),
    ('link7', (0.088, 0, 0), (_S, _S, 0, 0)),
)


def franka_mesh_dir() -> str:
    # find_spec locates the package without importing it (its import prints warnings and
    # registers gym environments we do not need).
    spec = importlib.util.find_spec('gymnasium_robotics')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('gymnasium-robotics is not installed; it provides the Panda meshes')
    path = os.path.join(list(spec.submodule_search_locations)[0],
                        'envs', 'assets', 'kitchen_franka', 'franka_assets', 'meshes')
    if not os.path.isdir(path):
        raise FileNotFoundError(f'Franka meshes not found at {path}; is gymnasium-robotics installed?')
    return path


def _v(values) -> str:
    return ' '.join(f'{float(x):.6g}' for x in values)


def camera_xyaxes(pos, lookat, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """MuJoCo cameras look along -z with +y up; x and y axes for a camera at pos looking at lookat
    (in the frame of its body), the image's up as close to `up` as the view allows."""
    forward = np.asarray(lookat, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, float))
    right /= np.linalg.norm(right)
    return np.concatenate([right, np.cross(right, forward)])


def _finger(side: str, joint: str, quat: str) -> str:
    # Boxes instead of the finger hull: flat pads give clean, predictable pushing contacts.
    return f'''
          <body name="{side}_finger" pos="0 0 0.0584" quat="{quat}" gravcomp="1">
            <inertial pos="0 0.012 0.027" mass="0.015" diaginertia="2.4e-6 2.4e-6 1.2e-6"/>
            <joint name="{joint}" class="finger"/>
            <geom class="visual" mesh="finger" material="dark"/>
            <geom class="pad" size="0.0105 0.0095 0.017" pos="0 0.0155 0.017"/>
            <geom class="pad" size="0.0085 0.006 0.0105" pos="0 0.0075 0.0435"/>
          </body>'''


def _wrist_camera() -> str:
    cam = WRIST_CAMERA
    return f'''
          <camera name="{cam['name']}" pos="{_v(cam['pos'])}" fovy="{cam['fovy']}"
                  xyaxes="{_v(camera_xyaxes(cam['pos'], cam['lookat'], cam['up']))}"/>
          <geom name="wrist_camera_housing" type="box" size="0.0125 0.021 0.01" pos="0.055 0 0.03"
                contype="0" conaffinity="0" group="2" mass="0" material="dark"/>'''


def _arm(wrist_camera: bool = False) -> str:
    closing = ''
    xml = f'''
    <body name="link0" childclass="panda">
      <geom class="visual" mesh="link0_v"/>
      <geom class="collision" mesh="link0_c" mass="{_MASS['link0']}"/>'''
    for i, (name, pos, quat) in enumerate(_LINKS):
        material = ' material="dark"' if name in ('link7',) else ''
        xml += f'''
      <body name="{name}" pos="{_v(pos)}" quat="{_v(quat)}" gravcomp="1">
        <joint name="{ARM_JOINTS[i]}" range="{ARM_LOWER[i]} {ARM_UPPER[i]}"
               damping="{1.0 if i < 4 else 0.3}" armature="{0.1 if i < 4 else 0.05}"/>
        <geom class="visual" mesh="{name}_v"{material}/>
        <geom class="collision" mesh="{name}_c" mass="{_MASS[name]}"/>'''
        closing += '</body>'
    xml += f'''
        <body name="hand" pos="0 0 0.107" quat="0.9238795 0 0 -0.3826834" gravcomp="1">
          <geom class="visual" mesh="hand_v"/>
          <geom class="collision" mesh="hand_c" mass="{_MASS['hand']}"/>
          <site name="tcp" pos="0 0 {TCP_OFFSET}" size="0.006" group="4"/>{_wrist_camera() if wrist_camera else ''}
          {_finger('left', GRIPPER_JOINTS[0], '1 0 0 0')}
          {_finger('right', GRIPPER_JOINTS[1], '0 0 0 1')}
        </body>
      {closing}
    </body>'''
    return xml


def _actuators() -> str:
    # One general actuator per joint whose gain/bias env.py switches between torque (gain 1,
    # no bias) and position servo (kp, -kp q - kv qdot): the servo's damping then sits in the
    # actuator, where the implicitfast integrator treats it implicitly and stays stable.
    arm = ''.join(f'''
    <general name="{j}" joint="{j}" gainprm="1" biastype="affine" forcerange="{-e} {e}"/>'''
                  for j, e in zip(ARM_JOINTS, EFFORT_LIMIT))
    grip = ''.join(f'''
    <general name="{j}" joint="{j}" gainprm="300" biastype="affine" biasprm="0 -300 -8"
             ctrlrange="0 {FINGER_MAX}" forcerange="-30 30"/>''' for j in GRIPPER_JOINTS)
    return f'<actuator>{arm}{grip}\n  </actuator>'


def _pad_class(grip: bool) -> str:
    if not grip:
        return 'friction="0.5 0.005 0.0001"'
    return ' '.join(f'{k}="{v}"' for k, v in GRIP_PAD.items())


def _grip_option(grip: bool) -> str:
    # A higher friction-to-normal impedance ratio makes friction hard: with the default 1 a
    # squeezed cube creeps down the pads by millimetres a second (MuJoCo's advice for grasping).
    return f' impratio="{GRIP_IMPRATIO}"' if grip else ''


def build_xml(physics_rate: float = 500.0, task_xml: str = '', width: int = 96, height: int = 96,
              wrist_camera: bool = False, grip: bool = False) -> str:
    """The whole scene; task_xml is inserted into the worldbody (objects, goal markers).

    wrist_camera adds the hand camera (WRIST_CAMERA) and its housing; grip gives the finger pads
    the grasping contacts of GRIP_PAD. Both off, the scene is the one push_cube and reach have
    always run in, to the byte."""
    if not (np.isfinite(physics_rate) and 50.0 <= physics_rate <= 20000.0):
        raise ValueError(f'physics_rate must be within 50..20000 Hz, got {physics_rate}')
    mesh_dir = franka_mesh_dir()
    links = ['link0', *(name for name, _, _ in _LINKS), 'hand']
    meshes = ''.join(f'''
    <mesh name="{n}_v" file="visual/{n}.stl"/>
    <mesh name="{n}_c" file="collision/{n}.stl"/>''' for n in links)
    cam = CAMERA
    return f'''<mujoco model="panda_table">
  <compiler angle="radian" meshdir="{mesh_dir}" autolimits="true"/>
  <option timestep="{1.0 / physics_rate:.9g}" integrator="implicitfast" cone="elliptic"{_grip_option(grip)}/>
  <visual>
    <global offwidth="{max(640, int(width))}" offheight="{max(480, int(height))}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.55 0.55 0.55" specular="0 0 0"/>
  </visual>
  <default>
    <default class="panda">
      <!-- Stiffer than the default soft limit: a fast joint should stop at its stop, not 0.1 rad past it. -->
      <joint axis="0 0 1" solreflimit="0.005 1" solimplimit="0.95 0.99 0.001"/>
      <default class="visual">
        <geom type="mesh" contype="0" conaffinity="0" group="2" mass="0" material="white"/>
      </default>
      <!-- The arm collides with the world and objects but not with itself: convex hulls of
           non-adjacent links touch at ordinary poses. -->
      <default class="collision">
        <geom type="mesh" contype="1" conaffinity="0" group="3" friction="0.5 0.005 0.0001"/>
      </default>
      <default class="finger">
        <joint type="slide" axis="0 1 0" range="0 {FINGER_MAX}" damping="2" armature="0.05"/>
      </default>
      <default class="pad">
        <geom type="box" contype="1" conaffinity="0" group="3" mass="0" {_pad_class(grip)}/>
      </default>
    </default>
  </default>
  <asset>
    <material name="white" rgba="0.93 0.93 0.93 1"/>
    <material name="dark" rgba="0.25 0.25 0.27 1"/>
    <material name="table" rgba="0.62 0.52 0.40 1"/>
    <material name="floor" rgba="0.30 0.32 0.35 1"/>
    <mesh name="finger" file="visual/finger.stl"/>{meshes}
  </asset>
  <worldbody>
    <light pos="0.6 -0.4 2.0" dir="-0.1 0.2 -1" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor"/>
    <!-- The robot base stands on the table top, which is the z = 0 plane: world = base frame. -->
    <geom name="table" type="box" size="0.55 0.6 0.02" pos="0.35 0 -0.02" material="table"
          friction="0.5 0.005 0.0001"/>
    <geom name="table_leg" type="box" size="0.5 0.55 0.365" pos="0.35 0 -0.405" rgba="0.35 0.3 0.25 1"
          contype="0" conaffinity="0"/>
    <camera name="{cam['name']}" pos="{_v(cam['pos'])}"
            xyaxes="{_v(camera_xyaxes(cam['pos'], cam['lookat']))}" fovy="{cam['fovy']}"/>
    {_arm(wrist_camera)}
    {task_xml}
  </worldbody>
  {_actuators()}
</mujoco>'''
