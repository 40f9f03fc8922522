"""Write config/urdf/fr3.urdf and config/urdf/ur5e.urdf: the kinematic chains (joint origins, axes
and limits, tool frames) that robot profiles name for forward kinematics and IK (pinocchio).

Sources: the FR3 has the Panda's kinematics (Franka's "Robot and interface specifications": the same
Denavit-Hartenberg parameters; franka_description's fr3 xacro) with its own joint limits; the UR5e
chain is ur_description's (default_kinematics.yaml for ur5e: d1 0.1625, a2 -0.425, a3 -0.3922,
d4 0.1333, d5 0.0997, d6 0.0996), with a `tcp` frame 0.1493 m along tool0's z (a Robotiq 2F-85's
fingertip centre). test/test_kinematics.py checks both against the DH forward kinematics.

    python tools/urdf/make_kinematic_urdfs.py     # rewrites the two files
"""
from math import pi
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / 'config' / 'urdf'
H = pi / 2

# (name, parent, child, xyz, rpy, axis or None for fixed, (lower, upper, velocity, effort))
FR3 = [
    ('fr3_joint1', 'fr3_link0', 'fr3_link1', (0, 0, 0.333), (0, 0, 0), (-2.7437, 2.7437, 2.62, 87)),
    ('fr3_joint2', 'fr3_link1', 'fr3_link2', (0, 0, 0), (-H, 0, 0), (-1.7837, 1.7837, 2.62, 87)),
    ('fr3_joint3', 'fr3_link2', 'fr3_link3', (0, -0.316, 0), (H, 0, 0), (-2.9007, 2.9007, 2.62, 87)),
    ('fr3_joint4', 'fr3_link3', 'fr3_link4', (0.0825, 0, 0), (H, 0, 0), (-3.0421, -0.1518, 2.62, 87)),
    ('fr3_joint5', 'fr3_link4', 'fr3_link5', (-0.0825, 0.384, 0), (-H, 0, 0), (-2.8065, 2.8065, 5.26, 12)),
    ('fr3_joint6', 'fr3_link5', 'fr3_link6', (0, 0, 0), (H, 0, 0), (0.5445, 4.5169, 4.18, 12)),
    ('fr3_joint7', 'fr3_link6', 'fr3_link7', (0.088, 0, 0), (H, 0, 0), (-3.0159, 3.0159, 5.26, 12)),
    ('fr3_joint8', 'fr3_link7', 'fr3_link8', (0, 0, 0.107), (0, 0, 0), None),
    ('fr3_hand_joint', 'fr3_link8', 'fr3_hand', (0, 0, 0), (0, 0, -pi / 4), None),
    ('fr3_hand_tcp_joint', 'fr3_hand', 'fr3_hand_tcp', (0, 0, 0.1034), (0, 0, 0), None),
]
FR3_FINGERS = [('fr3_finger_joint1', 'fr3_hand', 'fr3_leftfinger', (0, 1, 0)),
               ('fr3_finger_joint2', 'fr3_hand', 'fr3_rightfinger', (0, -1, 0))]

UR5E = [
    ('base_link-base_link_inertia', 'base_link', 'base_link_inertia', (0, 0, 0), (0, 0, pi), None),
    ('shoulder_pan_joint', 'base_link_inertia', 'shoulder_link', (0, 0, 0.1625), (0, 0, 0), (-2 * pi, 2 * pi, pi, 150)),
    ('shoulder_lift_joint', 'shoulder_link', 'upper_arm_link', (0, 0, 0), (H, 0, 0), (-2 * pi, 2 * pi, pi, 150)),
    ('elbow_joint', 'upper_arm_link', 'forearm_link', (-0.425, 0, 0), (0, 0, 0), (-pi, pi, pi, 150)),
    ('wrist_1_joint', 'forearm_link', 'wrist_1_link', (-0.3922, 0, 0.1333), (0, 0, 0), (-2 * pi, 2 * pi, pi, 28)),
    ('wrist_2_joint', 'wrist_1_link', 'wrist_2_link', (0, -0.0997, 0), (H, 0, 0), (-2 * pi, 2 * pi, pi, 28)),
    ('wrist_3_joint', 'wrist_2_link', 'wrist_3_link', (0, 0.0996, 0), (H, pi, pi), (-2 * pi, 2 * pi, pi, 28)),
    ('wrist_3-flange', 'wrist_3_link', 'flange', (0, 0, 0), (0, -H, -H), None),
    ('flange-tool0', 'flange', 'tool0', (0, 0, 0), (H, 0, H), None),
    ('tool0-tcp', 'tool0', 'tcp', (0, 0, 0.1493), (0, 0, 0), None),
]
UR5E_FINGERS = [('robotiq_85_left_knuckle_joint', 'tool0', 'robotiq_85_left_knuckle_link', (0, 0, 1))]


def fmt(values) -> str:
    return ' '.join(f'{v:.9g}' for v in values)


def urdf(name: str, chain, fingers, finger_limits) -> str:
    links = [chain[0][1]] + [c[2] for c in chain] + [f[2] for f in fingers]
    out = ['<?xml version="1.0"?>',
           f'<!-- {name}: kinematic chain for forward kinematics and IK (written by '
           'tools/urdf/make_kinematic_urdfs.py; no meshes, no dynamics) -->',
           f'<robot name="{name}">']
    out += [f'  <link name="{link}"/>' for link in links]
    for joint, parent, child, xyz, rpy, limits in chain:
        kind = 'fixed' if limits is None else 'revolute'
        out.append(f'  <joint name="{joint}" type="{kind}">')
        out.append(f'    <parent link="{parent}"/>\n    <child link="{child}"/>')
        out.append(f'    <origin xyz="{fmt(xyz)}" rpy="{fmt(rpy)}"/>')
        if limits is not None:
            lo, hi, vel, eff = limits
            out.append('    <axis xyz="0 0 1"/>')
            out.append(f'    <limit lower="{lo:.9g}" upper="{hi:.9g}" velocity="{vel:.9g}" effort="{eff:.9g}"/>')
        out.append('  </joint>')
    for joint, parent, child, axis in fingers:
        lo, hi, kind = finger_limits
        out.append(f'  <joint name="{joint}" type="{kind}">')
        out.append(f'    <parent link="{parent}"/>\n    <child link="{child}"/>')
        out.append(f'    <origin xyz="0 0 {0.0584 if kind == "prismatic" else 0.05}" rpy="0 0 0"/>')
        out.append(f'    <axis xyz="{fmt(axis)}"/>')
        out.append(f'    <limit lower="{lo}" upper="{hi}" velocity="0.2" effort="20"/>')
        out.append('  </joint>')
    out.append('</robot>')
    return '\n'.join(out) + '\n'


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / 'fr3.urdf').write_text(urdf('fr3', FR3, FR3_FINGERS, (0.0, 0.04, 'prismatic')))
    (OUT / 'ur5e.urdf').write_text(urdf('ur5e', UR5E, UR5E_FINGERS, (0.0, 0.8, 'revolute')))
    print(f'wrote {OUT / "fr3.urdf"} and {OUT / "ur5e.urdf"}')


if __name__ == '__main__':
    main()
