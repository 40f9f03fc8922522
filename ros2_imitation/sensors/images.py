"""Camera frames the same way in training data and at run time: any supported encoding -> RGB."""
import numpy as np

IMAGE_ENCODINGS = {'rgb8': (3, None), 'bgr8': (3, 'COLOR_BGR2RGB'),
                   'rgba8': (4, 'COLOR_RGBA2RGB'), 'bgra8': (4, 'COLOR_BGRA2RGB')}


def image_to_rgb(data, encoding: str, height: int, width: int, step: int,
                 size: tuple[int, int] | None, max_pixels: int | None = None) -> np.ndarray:
    """A sensor_msgs/Image payload (any buffer: bytes, array.array) -> (H, W, 3) uint8 RGB, resized
    to size=(width, height) with cv2.INTER_AREA. The policy node must prepare its camera frames with
    this same function. A frame over `max_pixels` (or its payload over 4 bytes a pixel) is refused
    before it is copied or decoded."""
    import cv2
    if max_pixels is not None and (int(width) * int(height) > max_pixels or len(data) > 4 * max_pixels):
        raise ValueError(f'{width}x{height} with {len(data)} bytes is larger than max_image_pixels={max_pixels}')
    enc = str(encoding).lower()
    if enc not in IMAGE_ENCODINGS:
        raise ValueError(f'unsupported image encoding {encoding!r} (supported: {", ".join(IMAGE_ENCODINGS)})')
    channels, code = IMAGE_ENCODINGS[enc]
    row = int(width) * channels
    step = int(step) or row
    try:
        buf = np.frombuffer(data, np.uint8)
    except (TypeError, ValueError):   # not a byte buffer: a list of ints
        buf = np.asarray(data, dtype=np.uint8).reshape(-1)
    if height <= 0 or width <= 0:
        raise ValueError(f'image {width}x{height} has no pixels')
    if step < row:
        raise ValueError(f'image {width}x{height} {enc}: step {step} is shorter than a row ({row} bytes)')
    if buf.size < step * height:
        raise ValueError(f'image {width}x{height} {enc} step {step} has {buf.size} bytes, '
                         f'expected {step * height}')
    img = buf[:step * height].reshape(height, step)[:, :row].reshape(height, width, channels)
    if code is not None:
        img = cv2.cvtColor(img, getattr(cv2, code))
    if size is not None and (width, height) != tuple(size):
        img = cv2.resize(img, tuple(int(v) for v in size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img)
