"""Synthetic motion videos whose label depends only on motion.

Every clip is one random, smooth, periodic colour texture translated with
wrap-around by a constant step per frame. The label is the direction of that
step. Each frame is a translated copy of the same stationary random texture,
so no single frame carries information about the label: a model must compare
frames (estimate motion) to beat chance.

Label ``i`` means direction ``MOTION_CLASSES[i]``: frame ``t + 1`` equals
frame ``t`` moved by ``(dx, dy) = speed * MOTION_UNIT_STEPS[MOTION_CLASSES[i]]``
pixels (+x to the right, +y downwards), that is::

    frames[t + 1] == np.roll(frames[t], shift=(dy, dx), axis=(0, 1))

With ``num_classes=4`` the labels are right, left, down, up; with
``num_classes=8`` the four diagonals follow (a diagonal moves ``speed``
pixels along each axis per frame).

The clips are written either as mp4 videos (MMAction2 ``VideoDataset``
format, decoded by decord) or as JPEG folders in the Something-Something V1
rawframes layout (MMAction2 ``RawframeDataset`` format). Command line:
``tools/generate_synthetic_motion.py``.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import os.path as osp
import tempfile
from functools import lru_cache
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from mmaction.datasets import VideoDataset
from mmaction.registry import DATASETS

from ..errors import ConfigError
from ..fileio import replaced_atomically, write_bytes_atomically
from .bad_sample_guard import BadSampleGuardMixin

# Label i is the direction MOTION_CLASSES[i]; the first four are used when
# num_classes=4, all eight when num_classes=8.
MOTION_CLASSES = ('right', 'left', 'down', 'up', 'down_right', 'down_left',
                  'up_right', 'up_left')
# Per-frame displacement of each direction for speed 1, as (dx, dy) in
# pixels: +x to the right, +y downwards.
MOTION_UNIT_STEPS: Dict[str, Tuple[int, int]] = {
    'right': (1, 0),
    'left': (-1, 0),
    'down': (0, 1),
    'up': (0, -1),
    'down_right': (1, 1),
    'down_left': (-1, 1),
    'up_right': (1, -1),
    'up_left': (-1, -1),
}
SUPPORTED_NUM_CLASSES = (4, 8)

# Standard deviation of the texture's grey levels (per channel, around 128).
TEXTURE_CONTRAST = 60.0
# Bump when the generated content changes, so existing datasets regenerate.
GENERATOR_VERSION = 1

VIDEO_FOURCC = 'mp4v'
VIDEO_FPS = 8
VIDEO_DIR = 'videos'
VIDEO_ANN_FILE = 'annotations.txt'
RAWFRAME_DIR = 'rawframes'
RAWFRAME_ANN_FILE = 'rawframe_annotations.txt'
# RawframeDataset's default start_index: the first frame is file number 1.
RAWFRAME_START_INDEX = 1
LOCK_FILE = '.synthetic_motion.lock'
# Smallest frame: the last stage of the ResNet backbones has stride 32, so
# smaller frames give it less than one cell of image.
MIN_SIZE = 32


def motion_classes(num_classes: int = 4) -> Tuple[str, ...]:
    """Direction names of labels ``0 .. num_classes - 1`` (4 or 8 classes)."""
    if num_classes not in SUPPORTED_NUM_CLASSES:
        raise ValueError(f'num_classes must be one of {SUPPORTED_NUM_CLASSES}'
                         f', got {num_classes}')
    return MOTION_CLASSES[:num_classes]


def motion_step(direction: str, speed: int) -> Tuple[int, int]:
    """Per-frame displacement ``(dx, dy)`` in pixels of ``direction``."""
    unit_dx, unit_dy = MOTION_UNIT_STEPS[direction]
    return unit_dx * speed, unit_dy * speed


def motion_flip_label_map(num_classes: int = 4) -> Dict[int, int]:
    """Label map of a horizontal flip, for MMAction2's ``Flip`` transform.

    Mirroring the frames left-right turns a motion ``(dx, dy)`` into
    ``(-dx, dy)``: right <-> left, down_right <-> down_left, up_right <->
    up_left (like Something-Something's left/right class pairs); down and up
    map to themselves and are left out, as ``flip_label_map`` expects.

    Returns:
        dict: ``{label: flipped label}`` for the labels a flip changes.
    """
    classes = motion_classes(num_classes)
    label_of_step = {MOTION_UNIT_STEPS[name]: label
                     for label, name in enumerate(classes)}
    flip_map = {}
    for label, name in enumerate(classes):
        dx, dy = MOTION_UNIT_STEPS[name]
        if dx != 0:
            flip_map[label] = label_of_step[(-dx, dy)]
    return flip_map


def _check_speed(speed: int, size: int) -> None:
    """Reject speeds that give no motion or make opposite directions equal.

    With wrap-around, a step of ``speed`` and of ``speed - size`` are the same
    translation, so ``0 < speed < size / 2`` is required.
    """
    if not 0 < speed < size / 2:
        raise ConfigError(
            f'speed={speed} is outside 1..{(size - 1) // 2} pixels per frame '
            f'for size={size}: a texture that wraps around every {size} px '
            f'moved by s px looks moved by s - {size} px, so the speed must '
            'be positive and below size / 2 for right and left to differ')


@lru_cache(maxsize=None)
def decoded_frame_shape(size: int) -> Optional[tuple]:
    """The shape decord gives the frames of a ``size`` x ``size`` video that
    :func:`write_video` writes (found by writing and reading one), or None
    if it cannot read it. decord 0.6.0 returns padded rows, e.g. (16, 16, 6)
    or (48, 48, 4), for some sizes (2..24 and 48, 72 of the even sizes up
    to 1024)."""
    import decord
    frames = np.zeros((2, size, size, 3), np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, 'probe.mp4')
        write_video(path, frames)
        try:
            return tuple(decord.VideoReader(path, num_threads=1)[0].shape)
        except Exception:  # decord raises its own DECORDError
            return None


def check_generation_parameters(data_format: str, num_videos: int,
                                num_frames: int, size: int, speed: int,
                                num_classes: int) -> None:
    """Raise :class:`~msnet_plugin.errors.ConfigError` naming every
    parameter of a generated dataset that the decoder or the model cannot
    handle, with its limits: ``num_classes`` 4 or 8, at least one clip and
    one frame, ``size`` at least ``MIN_SIZE`` (even for videos, and one
    that decord decodes: :func:`decoded_frame_shape`), ``0 < speed <
    size / 2`` (:func:`_check_speed`)."""
    problems = []
    if num_classes not in SUPPORTED_NUM_CLASSES:
        problems.append(f'num_classes={num_classes} is not one of '
                        f'{SUPPORTED_NUM_CLASSES} (the motion directions)')
    if num_videos < 1 or num_frames < 1:
        problems.append(f'num_videos={num_videos} and num_frames='
                        f'{num_frames} must both be at least 1')
    if size < MIN_SIZE:
        problems.append(
            f'size={size} is below {MIN_SIZE} px: the backbone\'s last stage '
            f'has stride {MIN_SIZE}, so smaller frames give it less than one '
            'cell of image')
    elif data_format == 'video' and size % 2:
        problems.append(f'size={size} is odd: the mp4 encoder crops odd '
                        'sizes; use an even size')
    elif data_format == 'video' and decoded_frame_shape(size) != (size, size,
                                                                  3):
        near = [near for near in (size + 2, size - 2, size + 4, size - 4)
                if near >= MIN_SIZE and decoded_frame_shape(near) == (
                    near, near, 3)]
        problems.append(
            f'size={size}: decord cannot decode mp4 videos of {size}x{size} '
            f'px (it returns frames of shape {decoded_frame_shape(size)}); '
            f'use another even size, e.g. {near[0] if near else 64}')
    if not problems:
        try:
            _check_speed(speed, size)
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError('; '.join(problems))


def random_texture(rng: np.random.Generator, size: int,
                   texture_sigma: float) -> np.ndarray:
    """Draw a smooth, periodic random colour texture.

    White Gaussian noise low-pass filtered with a Gaussian of standard
    deviation ``texture_sigma`` pixels (circularly, through the FFT, so the
    texture tiles seamlessly and translations with wrap-around show no seam),
    then scaled per channel to mean 128 and standard deviation
    ``TEXTURE_CONTRAST``.

    Returns:
        np.ndarray: uint8 array of shape (size, size, 3).
    """
    noise = rng.standard_normal((size, size, 3))
    freqs = np.fft.fftfreq(size)
    squared_freqs = freqs[:, None]**2 + freqs[None, :]**2
    gaussian_gain = np.exp(-2 * (np.pi * texture_sigma)**2 * squared_freqs)
    smooth = np.fft.ifft2(
        np.fft.fft2(noise, axes=(0, 1)) * gaussian_gain[..., None],
        axes=(0, 1)).real
    standardized = (smooth - smooth.mean(axis=(0, 1))) / smooth.std(
        axis=(0, 1))
    return np.clip(np.rint(128 + TEXTURE_CONTRAST * standardized), 0,
                   255).astype(np.uint8)


def generate_motion_clip(rng: np.random.Generator,
                         direction: str,
                         num_frames: int = 8,
                         size: int = 64,
                         speed: int = 8,
                         texture_sigma: float = 3.0) -> np.ndarray:
    """Generate one clip of a random texture moving in ``direction``.

    The texture is drawn from ``rng`` before ``direction`` is used, so the
    first frame is the same for every direction given the same ``rng`` state.

    Args:
        rng (np.random.Generator): Source of the texture.
        direction (str): One of ``MOTION_CLASSES``.
        num_frames (int): Number of frames T.
        size (int): Frame height and width in pixels.
        speed (int): Displacement per frame in pixels along each moving axis;
            ``0 < speed < size / 2`` so that opposite directions differ.
        texture_sigma (float): Smoothness of the texture in pixels.

    Returns:
        np.ndarray: uint8 RGB array of shape (num_frames, size, size, 3) with
        ``frames[t + 1] == np.roll(frames[t], (dy, dx), axis=(0, 1))`` where
        ``(dx, dy) = motion_step(direction, speed)``.
    """
    _check_speed(speed, size)
    texture = random_texture(rng, size, texture_sigma)
    dx, dy = motion_step(direction, speed)
    return np.stack([
        np.roll(texture, shift=(t * dy, t * dx), axis=(0, 1))
        for t in range(num_frames)
    ])


def generate_dataset_clip(seed: int, index: int, num_frames: int, size: int,
                          speed: int,
                          num_classes: int) -> Tuple[np.ndarray, int]:
    """Clip number ``index`` of the dataset generated from ``seed``.

    Labels cycle through the classes (balanced); each clip has its own random
    stream, so a clip does not depend on how many clips are generated.

    Returns:
        tuple: uint8 RGB frames of shape (num_frames, size, size, 3) and the
        int label.
    """
    label = index % num_classes
    clip_rng = np.random.default_rng([seed, index])
    frames = generate_motion_clip(clip_rng, motion_classes(num_classes)[label],
                                  num_frames, size, speed)
    return frames, label


def write_video(path: str, frames: np.ndarray, fps: int = VIDEO_FPS) -> None:
    """Write RGB frames as a video (``VIDEO_FOURCC``, container from suffix).

    Writes to a temporary file in the same folder, then renames it to
    ``path``, so ``path`` is either absent or complete. Creates parent
    folders.

    Args:
        path (str): Output file, e.g. ``.../0001.mp4``.
        frames (np.ndarray): uint8 RGB array of shape (T, H, W, 3); H and W
            must be even (the mpeg4 encoder silently crops odd sizes).
        fps (int): Frame rate stored in the file.
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError('frames must be uint8 of shape (T, H, W, 3), got '
                         f'{frames.dtype} {frames.shape}')
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f'frame size must be even, got {height}x{width}')
    with replaced_atomically(path, durable=False) as tmp_path:
        writer = cv2.VideoWriter(tmp_path,
                                 cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps,
                                 (width, height))
        if not writer.isOpened():
            raise OSError(f'cv2.VideoWriter cannot write {VIDEO_FOURCC} to '
                          f'{tmp_path}')
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()


def write_rawframes(frame_dir: str,
                    frames: np.ndarray,
                    filename_tmpl: str = '{:05}.jpg') -> None:
    """Write RGB frames as images ``frame_dir/filename_tmpl.format(i)``.

    Frames are numbered from ``RAWFRAME_START_INDEX`` (1).

    Args:
        frame_dir (str): Folder of the clip, created if missing.
        frames (np.ndarray): uint8 RGB array of shape (T, H, W, 3).
        filename_tmpl (str): File name template of one frame.
    """
    os.makedirs(frame_dir, exist_ok=True)
    for frame_number, frame in enumerate(frames, RAWFRAME_START_INDEX):
        frame_path = osp.join(frame_dir, filename_tmpl.format(frame_number))
        if not cv2.imwrite(frame_path, cv2.cvtColor(frame,
                                                    cv2.COLOR_RGB2BGR)):
            raise OSError(f'cv2.imwrite failed for {frame_path}')


@contextlib.contextmanager
def generation_lock(root: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl.flock`` on ``root/LOCK_FILE`` (blocking).

    Serialises dataset generation in ``root`` between processes (and between
    threads that each enter this context).
    """
    os.makedirs(root, exist_ok=True)
    with open(osp.join(root, LOCK_FILE), 'w') as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _params_path(ann_path: str) -> str:
    """JSON sidecar holding the generation parameters of ``ann_path``."""
    return osp.splitext(ann_path)[0] + '.json'


def _is_up_to_date(ann_path: str, params: dict) -> bool:
    """Whether ``ann_path`` exists and was generated with ``params``."""
    if not osp.exists(ann_path):
        return False
    try:
        with open(_params_path(ann_path)) as params_file:
            return json.load(params_file) == params
    except (OSError, ValueError):
        return False


def _generate_dataset(root: str, ann_name: str, params: dict,
                      write_clip: Callable[[int, np.ndarray, int], str]) -> str:
    """Generate all clips of ``params`` into ``root`` unless up to date.

    ``write_clip(index, frames, label)`` stores one clip and returns its
    annotation line. The annotation file is removed first and written last
    (atomically), so it exists only for a complete dataset.

    Returns:
        str: Path of the annotation file ``root/ann_name``.
    """
    ann_path = osp.join(root, ann_name)
    with generation_lock(root):
        if _is_up_to_date(ann_path, params):
            return ann_path
        if osp.exists(ann_path):
            os.remove(ann_path)
        ann_lines: List[str] = []
        for index in range(params['num_videos']):
            frames, label = generate_dataset_clip(params['seed'], index,
                                                  params['num_frames'],
                                                  params['size'],
                                                  params['speed'],
                                                  params['num_classes'])
            ann_lines.append(write_clip(index, frames, label))
        write_bytes_atomically(
            _params_path(ann_path),
            json.dumps(params, sort_keys=True).encode(), durable=False)
        write_bytes_atomically(ann_path, ('\n'.join(ann_lines) + '\n').encode(),
                               durable=False)
    return ann_path


def _dataset_params(data_format: str, num_videos: int, seed: int,
                    num_frames: int, size: int, speed: int,
                    num_classes: int, **extra) -> dict:
    """Validated, JSON-serialisable parameters of one generated dataset."""
    check_generation_parameters(data_format, num_videos, num_frames, size,
                                speed, num_classes)
    return dict(
        format=data_format,
        generator_version=GENERATOR_VERSION,
        num_videos=int(num_videos),
        seed=int(seed),
        num_frames=int(num_frames),
        size=int(size),
        speed=int(speed),
        num_classes=int(num_classes),
        **extra)


def generate_video_dataset(root: str,
                           num_videos: int,
                           seed: int,
                           num_frames: int = 8,
                           size: int = 64,
                           speed: int = 8,
                           num_classes: int = 4) -> str:
    """Write ``root/videos/NNNNN.mp4`` and ``root/annotations.txt``.

    The annotation file is in ``VideoDataset`` format, one
    ``videos/NNNNN.mp4 <label>`` line per clip, paths relative to ``root``
    (use ``data_prefix=dict(video=root)``). Does nothing if the dataset in
    ``root`` is complete and was generated with the same parameters
    (recorded in ``root/annotations.json``); otherwise (re)generates it,
    overwriting existing clips. Safe to call from several processes at once.

    Args:
        root (str): Dataset folder.
        num_videos (int): Number of clips; labels are balanced.
        seed (int): Non-negative seed; the frames are a function of the seed
            and the other arguments only.
        num_frames (int): Frames per clip.
        size (int): Frame height and width in pixels: even, at least
            ``MIN_SIZE`` and decodable (:func:`check_generation_parameters`).
        speed (int): Displacement per frame in pixels, ``< size / 2``.
        num_classes (int): 4 or 8 directions, see ``MOTION_CLASSES``.

    Returns:
        str: Path of the annotation file.
    """
    params = _dataset_params('video', num_videos, seed, num_frames, size,
                             speed, num_classes)

    def write_clip(index: int, frames: np.ndarray, label: int) -> str:
        relative_path = osp.join(VIDEO_DIR, f'{index:05d}.mp4')
        write_video(osp.join(root, relative_path), frames)
        return f'{relative_path} {label}'

    return _generate_dataset(root, VIDEO_ANN_FILE, params, write_clip)


def generate_rawframe_dataset(root: str,
                              num_videos: int,
                              seed: int,
                              num_frames: int = 8,
                              size: int = 64,
                              speed: int = 8,
                              num_classes: int = 4,
                              filename_tmpl: str = '{:05}.jpg') -> str:
    """Write the same clips as ``generate_video_dataset`` as JPEG folders.

    Something-Something V1 rawframes layout: ``root/rawframes/<video_id>/``
    holds ``filename_tmpl.format(i)`` for ``i = 1 .. num_frames`` (use
    RawframeDataset's default ``start_index=1``). The annotation file
    ``root/rawframe_annotations.txt`` is in ``RawframeDataset`` format, one
    ``<video_id> <total_frames> <label>`` line per clip, ids relative to
    ``root/rawframes`` (use ``data_prefix=dict(img=root + '/rawframes')`` and
    the same ``filename_tmpl``). Skips, regenerates and locks like
    ``generate_video_dataset``; parameters are recorded in
    ``root/rawframe_annotations.json``.

    Args:
        root (str): Dataset folder.
        num_videos (int): Number of clips; labels are balanced.
        seed (int): Non-negative seed.
        num_frames (int): Frames per clip.
        size (int): Frame height and width in pixels, at least ``MIN_SIZE``.
        speed (int): Displacement per frame in pixels, ``< size / 2``.
        num_classes (int): 4 or 8 directions, see ``MOTION_CLASSES``.
        filename_tmpl (str): File name template of one frame.

    Returns:
        str: Path of the annotation file.
    """
    params = _dataset_params(
        'rawframes',
        num_videos,
        seed,
        num_frames,
        size,
        speed,
        num_classes,
        filename_tmpl=filename_tmpl)

    def write_clip(index: int, frames: np.ndarray, label: int) -> str:
        video_id = f'{index:05d}'
        write_rawframes(
            osp.join(root, RAWFRAME_DIR, video_id), frames, filename_tmpl)
        return f'{video_id} {len(frames)} {label}'

    return _generate_dataset(root, RAWFRAME_ANN_FILE, params, write_clip)


@DATASETS.register_module()
class SyntheticMotionDataset(BadSampleGuardMixin, VideoDataset):
    """``VideoDataset`` over synthetic motion videos generated on the fly.

    On construction, generates (or reuses) the
    videos in ``data_root`` with :func:`generate_video_dataset`, under a file
    lock so that several processes may construct it at once, then loads
    ``data_root/annotations.txt`` exactly as ``VideoDataset`` does; use a
    decord pipeline (``DecordInit``, ``SampleFrames``, ``DecordDecode``...).
    Train and validation sets need different ``data_root`` and ``seed``.

    Args:
        data_root (str): Folder where the videos are generated.
        pipeline (list): Data transforms, as for ``VideoDataset``.
        num_videos (int): Number of clips.
        seed (int): Seed of the clips.
        num_frames (int): Frames per clip.
        size (int): Frame height and width in pixels.
        speed (int): Displacement per frame in pixels. Sizes and speeds
            that the decoder or the model cannot handle raise
            :class:`~msnet_plugin.errors.ConfigError` naming the limits
            (:func:`check_generation_parameters`).
        num_classes (int): 4 or 8 directions; label i is
            ``MOTION_CLASSES[i]``, also stored as ``metainfo['classes']``.
        **kwargs: Other ``VideoDataset`` arguments (``test_mode``...), except
            ``ann_file`` and ``data_prefix``, which are fixed, and
            ``skip_bad_samples`` (see :class:`BadSampleGuardMixin`: a bad
            video raises an error naming it and its annotation line, or is
            skipped and counted).
    """
    #: It writes the files its config names rather than reading them, so
    #: :func:`msnet_plugin.checks.check_config_paths` does not look for them.
    generates_data = True

    def __init__(self,
                 data_root: str,
                 pipeline: Sequence,
                 num_videos: int = 200,
                 seed: int = 0,
                 num_frames: int = 8,
                 size: int = 64,
                 speed: int = 8,
                 num_classes: int = 4,
                 **kwargs) -> None:
        try:
            generate_video_dataset(data_root, num_videos, seed, num_frames,
                                   size, speed, num_classes)
        except ConfigError as error:
            raise ConfigError(f'{type(self).__name__}(data_root='
                              f'{data_root!r}): {error}') from None
        kwargs.setdefault('metainfo',
                          dict(classes=motion_classes(num_classes)))
        super().__init__(
            ann_file=VIDEO_ANN_FILE,
            pipeline=pipeline,
            data_root=data_root,
            data_prefix=dict(video=''),
            num_classes=num_classes,
            **kwargs)
