"""MotionSqueeze's displacement maps beside classical optical flow.

OpenCV's Farneback flow is computed between the same frames the MS module
paired (frame t and t+1 of the clip the model saw), averaged over each cell
of the MS feature grid and expressed in feature cells, the unit of
:meth:`MotionRecorder.motion`. Both are drawn with :func:`flow_to_color`
(same colour wheel, same full saturation), and their agreement is measured:

- the mean cosine between the two directions, over the cells where the flow
  moves at least ``min_magnitude`` cells (direction is undefined where
  nothing moves); a zero MS displacement counts as cosine 0 there;
- the end-point error, the mean length of the difference vector, in feature
  cells, over all cells and over those strong cells.

Only the T - 1 real pairs count; the last frame's maps (MS repeats the last
pair) are drawn but not counted twice.
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from .motion_maps import (BACKGROUND, PAD, MotionGridLayout, _put_text,
                          flow_to_color, legends, resize_maps)

FLOW_ROW_NAMES = ('frames', 'MotionSqueeze displacement',
                  'Farneback optical flow, averaged over each feature cell')
#: ``cv2.calcOpticalFlowFarneback`` settings: a 5-level pyramid so that
#: frames sampled far apart (TSN sampling) still match.
FARNEBACK = dict(pyr_scale=0.5, levels=5, winsize=15, iterations=3,
                 poly_n=5, poly_sigma=1.2, flags=0)
#: Flow (in feature cells) below which a cell's direction is not compared.
MIN_MAGNITUDE = 0.5


def _check_frames(frames: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError('frames must be uint8 RGB of shape (T, H, W, 3), '
                         f'got {frames.dtype} {frames.shape}')
    if len(frames) < 2:
        raise ValueError(f'optical flow needs at least 2 frames, got '
                         f'{len(frames)}')


def farneback_flow(frames: np.ndarray, **params) -> np.ndarray:
    """Dense optical flow between consecutive frames.

    Args:
        frames (np.ndarray): uint8 RGB (T, H, W, 3).
        **params: overrides of :data:`FARNEBACK`.

    Returns:
        np.ndarray: float32 (T - 1, 2, H, W) in pixels; pair t = (t, t + 1);
        channel 0 = dx (positive when content moves right), channel 1 = dy
        (positive down), as MotionSqueeze's displacement.
    """
    _check_frames(frames)
    params = dict(FARNEBACK, **params)
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]
    return np.stack([
        cv2.calcOpticalFlowFarneback(previous, following, None,
                                     **params).transpose(2, 0, 1)
        for previous, following in zip(gray[:-1], gray[1:])
    ]).astype(np.float32)


def pool_to_grid(flow: np.ndarray, grid_size: Tuple[int, int]) -> np.ndarray:
    """Average pixel flow over the cells of a feature grid, in cells.

    Args:
        flow (np.ndarray): (P, 2, H, W) in pixels.
        grid_size (tuple): (h, w) of the feature grid; one cell spans
            H / h x W / w pixels (8 x 8 after ResNet's layer2).

    Returns:
        np.ndarray: float32 (P, 2, h, w); dx divided by W / w, dy by H / h.
    """
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f'flow must be (P, 2, H, W), got {flow.shape}')
    height, width = flow.shape[2:]
    grid_h, grid_w = grid_size
    cell = np.array([width / grid_w, height / grid_h],
                    np.float32)[None, :, None, None]
    pooled = np.stack([
        np.stack([
            cv2.resize(channel, (grid_w, grid_h),
                       interpolation=cv2.INTER_AREA) for channel in pair
        ]) for pair in flow.astype(np.float32)
    ])
    return pooled / cell


@dataclass
class FlowAgreement:
    """How MS displacement and optical flow agree (see the module doc).

    Attributes:
        mean_cosine: mean cosine of the directions over the strong cells;
            NaN when no cell moves enough.
        end_point_error: mean |MS - flow| over all cells, feature cells.
        strong_end_point_error: the same over the strong cells (NaN if none).
        strong_cells: cells where |flow| >= min_magnitude.
        total_cells: cells compared (pairs x h x w).
        min_magnitude: threshold of a strong cell, in feature cells.
    """
    mean_cosine: float
    end_point_error: float
    strong_end_point_error: float
    strong_cells: int
    total_cells: int
    min_magnitude: float

    def __str__(self) -> str:
        if self.strong_cells == 0:
            direction = (f'no cell where the flow moves >= '
                         f'{self.min_magnitude:g} cell, so no direction to '
                         'compare')
        else:
            direction = (f'mean cosine {self.mean_cosine:.2f} over the '
                         f'{self.strong_cells} of {self.total_cells} cells '
                         f'where the flow moves >= {self.min_magnitude:g} '
                         'cell')
        strong = ('' if self.strong_cells == 0 else
                  f' ({self.strong_end_point_error:.2f} in those)')
        return (f'{direction}; end-point error {self.end_point_error:.2f} '
                f'cells{strong}')


def flow_agreement(displacement: np.ndarray, flow: np.ndarray,
                   min_magnitude: float = MIN_MAGNITUDE) -> FlowAgreement:
    """Agreement of MS displacement and pooled flow, cell by cell.

    Args:
        displacement (np.ndarray): (P, 2, h, w) MS displacement, cells.
        flow (np.ndarray): (P, 2, h, w) pooled optical flow, cells.
        min_magnitude (float): a cell counts for the direction when its flow
            is at least this long.

    Returns:
        FlowAgreement
    """
    if displacement.shape != flow.shape or flow.ndim != 4 or (
            flow.shape[1] != 2):
        raise ValueError('displacement and flow must both be (P, 2, h, w), '
                         f'got {displacement.shape} and {flow.shape}')
    ours = displacement.astype(np.float64)
    theirs = flow.astype(np.float64)
    error = np.linalg.norm(ours - theirs, axis=1)
    our_length = np.linalg.norm(ours, axis=1)
    their_length = np.linalg.norm(theirs, axis=1)
    strong = their_length >= min_magnitude
    with np.errstate(invalid='ignore', divide='ignore'):
        cosine = np.where(our_length > 0, (ours * theirs).sum(axis=1) /
                          (our_length * their_length), 0.0)
    count = int(strong.sum())
    return FlowAgreement(
        mean_cosine=float(cosine[strong].mean()) if count else math.nan,
        end_point_error=float(error.mean()),
        strong_end_point_error=float(error[strong].mean())
        if count else math.nan,
        strong_cells=count,
        total_cells=int(strong.size),
        min_magnitude=float(min_magnitude))


@dataclass
class FlowComparison:
    """Farneback flow of a clip on the MS grid, and its agreement with MS.

    Attributes:
        flow: float32 (T, 2, h, w) in feature cells, frame t holding the pair
            (t, t + 1) and the last frame repeating the last pair, as MS's
            maps.
        agreement: over the T - 1 pairs.
    """
    flow: np.ndarray
    agreement: FlowAgreement


def compare_with_flow(frames: np.ndarray,
                      displacement: np.ndarray,
                      min_magnitude: float = MIN_MAGNITUDE,
                      **farneback) -> FlowComparison:
    """Farneback flow of ``frames`` against MS's ``displacement``.

    Args:
        frames (np.ndarray): uint8 RGB (T, H, W, 3), the frames MS paired.
        displacement (np.ndarray): (T, 2, h, w) in feature cells, as
            :meth:`MotionRecorder.motion` gives it for one clip.
        min_magnitude (float): see :func:`flow_agreement`.
        **farneback: overrides of :data:`FARNEBACK`.

    Returns:
        FlowComparison
    """
    _check_frames(frames)
    if displacement.ndim != 4 or displacement.shape[:2] != (len(frames), 2):
        raise ValueError(f'displacement must be (T={len(frames)}, 2, h, w),'
                         f' got {displacement.shape}')
    pooled = pool_to_grid(farneback_flow(frames, **farneback),
                          displacement.shape[2:])
    agreement = flow_agreement(displacement[:-1], pooled, min_magnitude)
    return FlowComparison(
        flow=np.concatenate([pooled, pooled[-1:]]), agreement=agreement)


def flow_comparison_grid(frames: np.ndarray,
                         displacement: np.ndarray,
                         flow: np.ndarray,
                         full_saturation: float,
                         title: Optional[str] = None) -> np.ndarray:
    """One image per clip: frames, MS displacement, Farneback flow.

    Laid out as :func:`~msnet_plugin.visualization.motion_grid` (rows
    ``FLOW_ROW_NAMES``); both maps are drawn with :func:`flow_to_color` at
    the same ``full_saturation`` and share the colour-wheel legend.

    Args:
        frames (np.ndarray): uint8 RGB (T, H, W, 3) (possibly enlarged).
        displacement (np.ndarray): (T, 2, h, w) MS displacement, cells.
        flow (np.ndarray): (T, 2, h, w) pooled flow, cells
            (:attr:`FlowComparison.flow`).
        full_saturation (float): length in cells drawn fully saturated.
        title (str, optional): a line of text on top.

    Returns:
        np.ndarray: uint8 RGB image of shape ``MotionGridLayout(T, H, W,
        title is not None).shape + (3,)``.
    """
    _check_frames(frames)
    num_frames, height, width = frames.shape[:3]
    for name, maps in (('displacement', displacement), ('flow', flow)):
        if maps.ndim != 4 or maps.shape[:2] != (num_frames, 2):
            raise ValueError(f'{name} must be (T={num_frames}, 2, h, w), '
                             f'got {maps.shape}')
    rows = [list(frames)] + [[
        flow_to_color(resize_maps(pair, height, width), full_saturation)
        for pair in maps
    ] for maps in (displacement, flow)]
    blank, wheel, _ = legends(height, width)
    layout = MotionGridLayout(num_frames, height, width, title is not None)
    grid = np.full(layout.shape + (3, ), BACKGROUND, np.uint8)
    if title is not None:
        _put_text(grid, title, (PAD, 11))
    for row, (name, panels, legend) in enumerate(
            zip(FLOW_ROW_NAMES, rows, (blank, wheel, wheel))):
        _put_text(grid, name, layout.label_origin(row))
        for column, panel in enumerate(panels):
            grid[layout.panel_box(row, column)] = panel
        grid[layout.panel_box(row, num_frames)] = legend
    return grid
