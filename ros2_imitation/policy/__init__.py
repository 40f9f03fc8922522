"""ROS-free DDPM action-chunk policy with test-time noise injection.

    from ros2_imitation.policy import load_policy, train
    policy = load_policy('out/policy/policy', num_inference_steps=10)
    chunk = policy.predict({'image': images_uint8_To_H_W_3, 'state': state_To_S}, seed=0)  # (Tp, A)
    # chunk[i] applies at t_obs + (i - policy.first_action_index) * dt
"""
from .checkpoint import CheckpointError, load_policy, save_encoder, save_policy
from .config import PolicyConfig
from .dataset import ReplayBuffer, WindowDataset, write_episodes, write_replay_buffer
from .model import DiffusionPolicy
from .normalize import MinMaxNormalizer
from .train import TrainResult, train

__all__ = ['CheckpointError', 'DiffusionPolicy', 'MinMaxNormalizer', 'PolicyConfig', 'ReplayBuffer',
           'TrainResult', 'WindowDataset', 'load_policy', 'save_encoder', 'save_policy', 'train',
           'write_episodes', 'write_replay_buffer']
