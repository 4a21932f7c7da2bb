"""Loading a recognizer and its test pipeline for the demo tools."""
import os.path as osp
from typing import List, Optional, Sequence

import decord
import mmengine
import numpy as np
import torch.nn as nn
from mmaction.apis import init_recognizer
from mmengine.dataset import Compose
from mmengine.fileio import list_from_file

from ..checkpoints import load_matching_checkpoint
from ..datasets.bad_sample_guard import cannot_load_message
from ..errors import BadSampleError
from ..launch import check_device


def video_pipeline(cfg: mmengine.Config) -> Compose:
    """The config's test pipeline, made to read one video file.

    The config's ``test_pipeline``, else its test dataset's pipeline. Input:
    ``dict(filename=VIDEO, label=-1, start_index=0, modality='RGB')``, as
    ``mmaction.apis.inference_recognizer`` builds it. A rawframe pipeline
    (Something-Something's ``RawFrameDecode``) is switched to decord:
    ``DecordInit`` first, ``DecordDecode`` in place of ``RawFrameDecode``.
    """
    steps = cfg.get('test_pipeline')
    if steps is None:
        try:
            steps = cfg.test_dataloader.dataset.pipeline
        except AttributeError:
            raise ValueError('the config has neither test_pipeline nor '
                             'test_dataloader.dataset.pipeline') from None
    steps = [dict(step) for step in steps]
    types = [step['type'] for step in steps]
    if 'RawFrameDecode' in types:
        steps[types.index('RawFrameDecode')] = dict(type='DecordDecode')
        steps.insert(0, dict(type='DecordInit'))
    return Compose(steps)


def load_video(cfg: mmengine.Config, video: str) -> dict:
    """``video`` through the config's test pipeline (:func:`video_pipeline`):
    ``dict(inputs=(clips * T, 3, H, W) tensor, data_samples=...)``. A file
    that cannot be decoded raises :class:`BadSampleError` naming it."""
    try:
        return video_pipeline(cfg)(
            dict(filename=video, label=-1, start_index=0, modality='RGB'))
    except Exception as error:  # decord's and the transforms' errors
        raise BadSampleError(cannot_load_message(video, error)) from error


def read_frames(video: str) -> np.ndarray:
    """Every frame of ``video``, (T, H, W, 3) uint8 RGB; an undecodable file
    raises :class:`BadSampleError` naming it."""
    try:
        reader = decord.VideoReader(video)
        return reader.get_batch(range(len(reader))).asnumpy()
    except Exception as error:  # decord raises its own DECORDError
        raise BadSampleError(cannot_load_message(video, error)) from error


def load_recognizer(config: str, checkpoint: Optional[str],
                    device: str) -> nn.Module:
    """``mmaction.apis.init_recognizer``, with checks that name the problem.

    A checkpoint whose tensors do not all fit the config's model is refused
    (:class:`~msnet_plugin.errors.CheckpointMismatchError`, listing the
    differences), where ``init_recognizer`` would only warn and run with
    part of the model at its random initialisation.

    Args:
        config (str): config file.
        checkpoint (str, optional): checkpoint file; None for the weights
            the model is built with (random).
        device (str): e.g. 'cpu', 'cuda:0'.
    """
    for kind, path in (('config', config), ('checkpoint', checkpoint)):
        if path is not None and not osp.isfile(path):
            raise FileNotFoundError(f'{kind} not found: {path}')
    check_device(device)
    model = init_recognizer(config, None, device=device)
    if checkpoint is not None:
        load_matching_checkpoint(model, checkpoint)
    return model


def class_names(label_map: Optional[str], cfg: mmengine.Config,
                num_classes: int) -> List[str]:
    """Names of the classes, in label order.

    From ``label_map`` (one name per line) if given, else the test dataset's
    ``metainfo['classes']`` in the config, else ``'0'``, ``'1'``...
    """
    if label_map is not None:
        names = list_from_file(label_map)
        source = label_map
    else:
        dataset = cfg.get('test_dataloader', {}).get('dataset', {})
        names = dataset.get('metainfo', {}).get('classes')
        if names is None:
            return [str(index) for index in range(num_classes)]
        source = 'test_dataloader.dataset.metainfo.classes'
    names = [str(name) for name in names]
    if len(names) < num_classes:
        raise ValueError(f'{source} names {len(names)} classes, but the '
                         f'model predicts {num_classes}')
    return names


def top_k(scores: Sequence[float], k: int = 5) -> List[int]:
    """Indices of the k highest scores, best first."""
    return sorted(range(len(scores)), key=lambda i: -float(scores[i]))[:k]
