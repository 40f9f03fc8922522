"""Closed-loop evaluation of a policy on seeded sim episodes, many episodes sharing one batched
policy call (rollout.BatchPolicyAgent, one runtime.PolicyRunner per episode): the policy's cost is
per call, not per episode, so a batch of B episodes costs little more than one.
"""
from __future__ import annotations

import time

import numpy as np

from ros2_imitation.control.ee_chunk import EE_COLUMNS
from ros2_imitation.robot import RobotProfile
from ros2_imitation.runtime.chunking import ChunkTiming
from ros2_imitation.runtime.runner import policy_joint_names, policy_state_names
from ros2_imitation.sim.rollout import BatchPolicyAgent, Rollout, wilson_interval
from ros2_imitation.sim.tasks import episode_timeout, make_task


def evaluate(policy, seeds, task: str = 'push_cube', timeout: float | None = None, batch: int = 10,
             continuity: str = 'inpaint', latency: float = 0.0, mode: str = 'position',
             control_rate: float = 500.0, execute: int | None = None, record_frames: bool = False,
             task_features: bool | None = None, progress=None) -> dict:
    """Success rate with a 95% Wilson interval over `seeds`. `execute`: actions run per chunk
    (default the checkpoint's n_action_steps); timeout: sim seconds, default the task's. task_features: the state carries the task's
    privileged state after the arm joints (rollout.task_features); default: when the state is
    longer than the arm (and, for pick_place, the gripper opening). progress(result) is called after
    each episode. Each episode is seeded by its own seed, as PolicyAgent seeds it, whatever the batch."""
    cfg = policy.config
    timeout = episode_timeout(task, timeout)
    size = (cfg.image_shape[1], cfg.image_shape[0]) if cfg.image_keys else (96, 96)
    timing = ChunkTiming(size=cfg.horizon, execute=execute or cfg.n_action_steps)
    seeds = list(seeds)
    # the state's own part: the arm joints, and the gripper opening for a task with a gripper action
    robot = RobotProfile.load('panda')
    gripper = int(make_task(task).gripper_action)
    # an end-effector policy acts on tip poses; it sees them by the rule policy_node maps by
    ee_state = policy_state_names(robot, cfg)[0] == EE_COLUMNS[0]
    arm = (len(EE_COLUMNS) if ee_state else len(robot.arm_joints)) + gripper
    if task_features is None:
        task_features = bool(cfg.state_dim and cfg.state_dim > arm)
    n_slots = max(1, min(batch, len(seeds)))
    rollouts = [Rollout(task=task, mode=mode, control_rate=control_rate, camera_size=size,
                        render=bool(cfg.image_keys), timing=timing,
                        # the hand camera whenever the policy has an input for it, whatever the task's default
                        wrist_camera=True if 'wrist_image' in cfg.image_keys else None,
                        task_features=task_features, action_space=cfg.action_space, ee_state=ee_state,
                        strict=False)
                for _ in range(n_slots)]
    start, results = time.monotonic(), []

    def finished(result):
        results.append(result)
        if progress is not None:
            progress(result)

    agent = BatchPolicyAgent(policy, n_slots, timing.dt, continuity, latency, execute=timing.execute,
                             joint_names=policy_joint_names(robot, cfg.action_dim, cfg.action_space))
    _run_batched(agent, rollouts, seeds, timeout, record_frames, finished)
    results.sort(key=lambda r: seeds.index(r.seed))
    wins = sum(r.success for r in results)
    low, high = wilson_interval(wins, len(results))
    return {'task': task, 'episodes': len(results), 'success_rate': wins / max(1, len(results)),
            'ci95': [low, high], 'seeds': [r.seed for r in results],
            'successes': [r.seed for r in results if r.success],
            'mean_duration_s': float(np.mean([r.duration for r in results])),
            'rms_jerk': float(np.mean([r.rms_jerk for r in results])),
            # chunks the controller refused (e.g. a tip pose the IK cannot reach), as it would on the robot
            'chunks_rejected': int(sum(len(r.rejected) for r in results)),
            'rejection_reasons': sorted({reason.split(':')[-1].strip()[:80] for r in results for _, reason in r.rejected}),
            'noise_sigma': cfg.noise_sigma, 'noise_mode': cfg.noise_mode,
            'scheduler': cfg.inference_scheduler, 'inference_steps': cfg.num_inference_steps,
            'execute': timing.execute, 'continuity': continuity, 'latency_s': latency, 'batch': n_slots,
            'wall_s': time.monotonic() - start, **_coverage_figures(results), 'results': results}


def _coverage_figures(results) -> dict:
    """push_t: each episode's best coverage, their mean, and Diffusion Policy's Push-T score."""
    best = [r.best_coverage for r in results]
    if not best or any(b is None for b in best):
        return {}
    from ros2_imitation.sim.push_t import push_t_score
    return {'best_coverage': [round(b, 4) for b in best], 'mean_max_coverage': float(np.mean(best)),
            'push_t_score': push_t_score(best)}


def _run_batched(agent, rollouts, seeds, timeout, record_frames, finished):
    queue = list(seeds)
    episodes, requests = {}, {}

    def start(slot):
        while queue:
            seed = queue.pop(0)
            agent.reset(slot, seed)
            episodes[slot] = rollouts[slot].episode(seed, timeout, record_frames=record_frames)
            try:
                requests[slot] = next(episodes[slot])
                return
            except StopIteration as done:
                finished(done.value)
        episodes.pop(slot, None)

    for slot in range(len(rollouts)):
        start(slot)
    while requests:
        answers = agent.act(requests)
        requests = {}
        for slot, answer in answers.items():
            try:
                requests[slot] = episodes[slot].send(answer)
            except StopIteration as done:
                finished(done.value)
                start(slot)
