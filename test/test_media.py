"""Episode videos: mp4 for people, animated GIF for a README."""
import numpy as np
import pytest

from ros2_imitation.data.media import write_video


def episodes():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (12, 20, 3), dtype=np.uint8) for _ in range(3)]
    return [('seed 0 success', frames[:2], True), ('seed 1 failure', frames[2:], False)]


def test_a_gif_holds_every_frame_with_its_title_bar(tmp_path):
    from PIL import Image
    path = write_video(episodes(), tmp_path / 'clip.gif', fps=5.0, scale=4)   # GIFs: half the scale
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.size == (40, 24 + 24)
        assert gif.info['duration'] == 200 and gif.info['loop'] == 0


def test_an_mp4_is_written_and_no_frames_is_an_error(tmp_path):
    import cv2
    path = write_video(episodes(), tmp_path / 'clip.mp4', scale=4)
    video = cv2.VideoCapture(str(path))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 80
    with pytest.raises(ValueError, match='no frames'):
        write_video([('empty', [], True)], tmp_path / 'none.gif')
