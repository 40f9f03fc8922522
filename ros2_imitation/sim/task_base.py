"""The base of every sim task (sim/tasks.py, sim/push_t.py): what a task adds to the scene, its seeded
randomization, its state and success."""
import mujoco
import numpy as np


class Task:
    name = ''
    gripper_width = 0.0     # the width the gripper is commanded to at reset
    # Action layout. Without a gripper action a task's actions are the 7 arm joint positions
    # (rad, scene.ARM_JOINTS order); with one, an 8th value follows: the Franka Hand's
    # finger-to-finger opening in metres, 0 (closed) .. 0.08 (open), as PandaSim.set_gripper takes it.
    gripper_action = False
    wrist_camera = False    # render the hand camera by default (PandaSim, sim_node)
    grip = False            # finger pads with grasping contacts (scene.GRIP_PAD)
    timeout = 20.0          # s of sim time an episode may take (eval, sim-dataset, demo default)

    @property
    def action_dim(self) -> int:
        return 8 if self.gripper_action else 7

    def xml(self) -> str:
        """Bodies and geoms added to the worldbody."""
        raise NotImplementedError

    def bind(self, model: mujoco.MjModel) -> None:
        """Look up ids once the model is compiled."""

    def randomize(self, model, data, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def state(self, model, data, ee: np.ndarray) -> dict:
        raise NotImplementedError

    def success(self, model, data, ee: np.ndarray) -> bool:
        return bool(self.state(model, data, ee)['success'])


def rounded(v) -> list:
    """Numbers for a task state (JSON): floats to 6 decimals."""
    return [round(float(x), 6) for x in v]
