"""A predicted chunk as an end-effector path, ROS-free: what RViz markers and the live view draw.

The executed part (what the controller will run) is coloured by time, from now (yellow) to the end
of the chunk (purple); the part overtaken by inference latency, and so dropped, is grey.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# viridis at 5 stops, reversed: near future bright, far future dark
_STOPS = np.array([[0.993, 0.906, 0.144], [0.369, 0.788, 0.384], [0.128, 0.567, 0.551],
                   [0.231, 0.322, 0.546], [0.267, 0.005, 0.329]])
DROPPED_RGBA = (0.6, 0.6, 0.6, 0.6)


def time_colors(times: np.ndarray) -> np.ndarray:
    """(N, 4) RGBA for N times, early to late along the colour scale."""
    times = np.asarray(times, dtype=float)
    span = times[-1] - times[0] if len(times) > 1 else 1.0
    u = (times - times[0]) / (span or 1.0) * (len(_STOPS) - 1)
    rgb = np.stack([np.interp(u, np.arange(len(_STOPS)), _STOPS[:, c]) for c in range(3)], 1)
    return np.concatenate([rgb, np.ones((len(times), 1))], 1)


@dataclass
class ChunkPath:
    executed: np.ndarray          # (N, 3) tip positions the controller will run, base frame
    times: np.ndarray             # (N,) their absolute times
    colors: np.ndarray            # (N, 4) RGBA by time
    dropped: np.ndarray           # (M, 3) tip positions overtaken by latency (not run)


def chunk_path(kinematics, trajectory, overtaken=None) -> ChunkPath:
    """The end-effector path of a scheduled chunk (control.trajectory.Trajectory) and of its
    overtaken actions ((times, positions) or None) through `kinematics` (control.ArmKinematics)."""
    times = trajectory.stamp + trajectory.times
    executed = kinematics.tip_path(trajectory.positions)
    dropped = np.zeros((0, 3))
    if overtaken is not None and len(overtaken[1]):
        dropped = kinematics.tip_path(overtaken[1])
    return ChunkPath(executed, times, time_colors(times), dropped)
