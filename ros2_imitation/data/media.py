"""Results people would rather see than read: episode videos and plots."""
from pathlib import Path

import cv2
import numpy as np


def _titled(label: str, frame: np.ndarray, ok: bool, scale: int) -> np.ndarray:
    h, w = frame.shape[:2]
    big = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    bar = np.full((24, w * scale, 3), (40, 120, 40) if ok else (40, 40, 40), np.uint8)
    cv2.putText(bar, label, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([bar, big])


def write_video(episodes, path, fps: float = 10.0, scale: int = 4) -> Path:
    """episodes: [(label, [frames (H, W, 3) RGB uint8], success)] -> one video, a title bar per frame:
    an mp4, or an animated GIF (for a README: at half the scale, to stay small) when path ends in .gif."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [(label, f, ok) for label, fs, ok in episodes for f in fs]
    if not frames:
        raise ValueError('no frames to write: was the camera publishing?')
    if path.suffix.lower() == '.gif':
        from PIL import Image
        scale = max(1, scale // 2)
        images = [Image.fromarray(_titled(label, f, ok, scale)) for label, f, ok in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                       optimize=True)
        return path
    h, w = frames[0][1].shape[:2]
    size = (w * scale, h * scale + 24)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f'OpenCV cannot write {path}')
    try:
        for label, frame, ok in frames:
            writer.write(cv2.cvtColor(_titled(label, frame, ok, scale), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def plot_episodes(results, path, title: str = '') -> Path:
    """Object-to-goal distance over each episode's time, success marked (the coverage of the target
    for push_t, whose block has a pose to match rather than a point to reach)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = 'coverage' if results and results[0].history and 'coverage' in results[0].history[0] else 'distance'
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        t = [s['time'] for s in r.history]
        d = [s[key] for s in r.history]
        ax.plot(t, d, label=f"seed {r.seed}: {'success' if r.success else 'failure'}",
                linestyle='-' if r.success else '--')
    if key == 'coverage':
        ax.axhline(0.95, color='gray', linewidth=0.8, label='success coverage')
        ax.set_ylabel('coverage of the target T')
    else:
        radius = results[0].history[-1].get('success_radius') if results and results[0].history else None
        if radius:
            ax.axhline(radius, color='gray', linewidth=0.8, label='success radius')
        ax.set_ylabel('distance to goal (m)')
    ax.set_xlabel('episode time (s)')
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
