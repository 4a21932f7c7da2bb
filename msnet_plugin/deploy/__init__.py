"""Deployment of MSNet recognizers: ONNX, TorchScript and torch.compile.

``tools/export.py`` is the command line; this package holds what it uses, so
that tests and other scripts can call the same code:

- :class:`FramesToScores`: a Recognizer2D as one module, (N, T, 3, H, W)
  frames -> (N, num_classes) scores, which is what gets exported;
- :func:`build_frames_to_scores`: that module from a config and a checkpoint;
- :func:`export_onnx`, :func:`nonstandard_onnx_ops`, :func:`onnxruntime_scores`;
- :func:`compare_inference_speed`: eager vs torch.compile vs onnxruntime.

onnx, onnxruntime and onnxscript (the ``deploy`` extra) are imported only by
the functions that need them.
"""
from .frames_to_scores import (FramesToScores, build_frames_to_scores,
                               model_num_segments)
from .onnx_export import export_onnx, nonstandard_onnx_ops, onnxruntime_scores
from .speed import compare_inference_speed

__all__ = [
    'FramesToScores', 'build_frames_to_scores', 'model_num_segments',
    'export_onnx', 'nonstandard_onnx_ops', 'onnxruntime_scores',
    'compare_inference_speed'
]
