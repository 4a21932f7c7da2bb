"""Export through the plain-PyTorch correlation, whatever the default is.

``local_correlation`` on ``main`` is a plain loop over the (2d+1)^2
displacements: slices, products and sums, which every exporter and
``torch.compile`` take. A faster default (a custom ``autograd.Function``, a
compiled kernel) may not export: the TorchScript ONNX exporter needs a
``symbolic`` for a Function, and no exporter can see into a compiled kernel.
:func:`plain_correlation` makes MotionSqueeze call the plain loop for the
duration of an export; ``tools/export.py --plain-correlation`` uses it.
"""
import contextlib

from ..models import correlation, motion_squeeze

#: The plain-loop correlation: (B, C, H, W) twice -> (B, (2d+1)^2, H, W).
#: If ``correlation.local_correlation`` becomes a dispatcher to a faster
#: path, point this at the plain loop it keeps as reference.
PLAIN_LOCAL_CORRELATION = correlation.local_correlation


@contextlib.contextmanager
def plain_correlation():
    """Within the ``with`` block, MotionSqueeze computes its correlation with
    :data:`PLAIN_LOCAL_CORRELATION` (same numbers, exportable ops)."""
    default = motion_squeeze.local_correlation
    motion_squeeze.local_correlation = PLAIN_LOCAL_CORRELATION
    try:
        yield
    finally:
        motion_squeeze.local_correlation = default
