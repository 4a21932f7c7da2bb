"""Export through the plain-PyTorch correlation, whatever the default is.

``local_correlation``'s ``'auto'`` kernel already takes the plain loop
(``local_correlation_reference``: slices, products and sums, which every
exporter and ``torch.compile`` take) while tracing, exporting or compiling.
A module pinned to another kernel (``ms_cfg=dict(correlation_impl=...)``), or
a correlation replaced by one the exporter cannot see into, would not
export: :func:`plain_correlation` makes MotionSqueeze call the plain loop for
the duration of an export; ``tools/export.py --plain-correlation`` uses it.
"""
import contextlib

from ..models import correlation, motion_squeeze



def PLAIN_LOCAL_CORRELATION(f1, f2, max_displacement, impl=None):
    """The plain-loop correlation, (B, C, H, W) twice -> (B, (2d+1)^2, H, W),
    with ``local_correlation``'s signature; ``impl`` is ignored."""
    return correlation.local_correlation_reference(f1, f2, max_displacement)


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
