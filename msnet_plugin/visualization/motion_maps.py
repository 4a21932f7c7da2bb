"""Draw MotionSqueeze's displacement and confidence maps (numpy, cv2, Pillow).

Displacement is coloured the way optical flow is: the hue gives the
direction, the saturation the magnitude, on a white background (no motion is
white). The direction is measured on screen: content moving right is red
(hue 0), down is yellow-green (hue 90 degrees, as image y grows downwards),
left is cyan (180), up is violet (270). :func:`colour_wheel` draws the legend
with the same function, so a pixel of the wheel at offset (dx, dy) from its
centre has exactly the colour of a displacement (dx, dy).

Confidence (the peak correlation, in [0, 1]) is drawn with a fixed colour map
(black 0 to yellow 1), so maps of different clips compare.
"""
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

ROW_NAMES = ('frames', 'displacement (hue: direction, saturation: speed)',
             'confidence (0 black .. 1 yellow)')
PAD = 2
LABEL_HEIGHT = 14
BACKGROUND = 255
CONFIDENCE_COLORMAP = cv2.COLORMAP_INFERNO


def _check_maps(maps: np.ndarray, channels: int, name: str) -> None:
    if maps.ndim != 3 or maps.shape[0] != channels:
        raise ValueError(f'{name} must have shape ({channels}, H, W), got '
                         f'{maps.shape}')


def flow_to_color(displacement: np.ndarray,
                  full_saturation: float) -> np.ndarray:
    """Colour a displacement map: hue = direction, saturation = magnitude.

    Args:
        displacement (np.ndarray): (2, H, W) float, channel 0 = dx (positive
            right), channel 1 = dy (positive down), in any unit.
        full_saturation (float): magnitude (same unit) drawn fully
            saturated; larger magnitudes are clipped to it.

    Returns:
        np.ndarray: uint8 RGB image (H, W, 3); zero displacement is white.
    """
    _check_maps(displacement, 2, 'displacement')
    if not full_saturation > 0:
        raise ValueError(
            f'full_saturation must be positive, got {full_saturation}')
    dx, dy = displacement.astype(np.float32)
    # Screen angle: 0 = right, 90 = down (image y grows downwards).
    angle = np.degrees(np.arctan2(dy, dx)) % 360
    saturation = np.clip(np.hypot(dx, dy) / full_saturation, 0, 1)
    hsv = np.stack([
        np.rint(angle / 2) % 180,  # OpenCV's 8-bit hue: degrees / 2
        np.rint(saturation * 255),
        np.full_like(angle, 255)
    ], axis=-1)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def colour_wheel(size: int) -> np.ndarray:
    """Legend of :func:`flow_to_color`: a disc of radius ``size / 2``.

    The pixel at offset (dx, dy) from the centre has the colour of the
    displacement (dx, dy) with ``full_saturation`` at the rim; outside the
    disc is white.

    Returns:
        np.ndarray: uint8 RGB image (size, size, 3).
    """
    radius = size / 2
    offsets = np.arange(size, dtype=np.float32) + 0.5 - radius
    dy, dx = np.meshgrid(offsets, offsets, indexing='ij')
    wheel = flow_to_color(np.stack([dx, dy]), radius)
    wheel[np.hypot(dx, dy) > radius] = BACKGROUND
    return wheel


def confidence_to_color(confidence: np.ndarray) -> np.ndarray:
    """Colour a (1, H, W) confidence map in [0, 1]: uint8 RGB (H, W, 3)."""
    _check_maps(confidence, 1, 'confidence')
    levels = np.rint(np.clip(confidence[0], 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(
        cv2.applyColorMap(levels, CONFIDENCE_COLORMAP), cv2.COLOR_BGR2RGB)


def confidence_bar(height: int, width: int) -> np.ndarray:
    """Legend of :func:`confidence_to_color`: 1 at the top, 0 at the bottom.

    Returns:
        np.ndarray: uint8 RGB image (height, width, 3).
    """
    levels = np.linspace(1, 0, height, dtype=np.float32)
    bar = confidence_to_color(
        np.broadcast_to(levels[:, None], (height, width))[None])
    bar = np.ascontiguousarray(bar)
    for text, y in (('1', 10), ('0', height - 3)):
        cv2.putText(bar, text, (2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (128, 128, 128), 1, cv2.LINE_AA)
    return bar


def resize_maps(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinearly upsample (K, h, w) maps to (K, height, width) float32."""
    return np.stack([
        cv2.resize(channel.astype(np.float32), (width, height),
                   interpolation=cv2.INTER_LINEAR) for channel in maps
    ])


class MotionGridLayout:
    """Where the panels of :func:`motion_grid` lie.

    Three rows (``ROW_NAMES``), each under a text strip of ``LABEL_HEIGHT``
    pixels; ``num_frames`` panels of ``height x width`` then a legend
    column; ``PAD`` pixels between panels; an optional title strip on top.
    """

    def __init__(self, num_frames: int, height: int, width: int,
                 title: bool = False):
        self.num_frames = num_frames
        self.height = height
        self.width = width
        self.top = LABEL_HEIGHT if title else 0

    @property
    def shape(self) -> Tuple[int, int]:
        """(height, width) of the whole grid image."""
        columns = self.num_frames + 1
        rows = len(ROW_NAMES)
        return (self.top + rows * (LABEL_HEIGHT + self.height + PAD),
                PAD + columns * (self.width + PAD))

    def panel_box(self, row: int, column: int) -> Tuple[slice, slice]:
        """Index of panel (row, column); column ``num_frames`` = legend."""
        y0 = (self.top + row * (LABEL_HEIGHT + self.height + PAD) +
              LABEL_HEIGHT)
        x0 = PAD + column * (self.width + PAD)
        return slice(y0, y0 + self.height), slice(x0, x0 + self.width)

    def label_origin(self, row: int) -> Tuple[int, int]:
        """(x, y) of the baseline of row ``row``'s text."""
        return PAD, self.top + row * (LABEL_HEIGHT + self.height + PAD) + 11


def _put_text(image: np.ndarray, text: str, origin: Tuple[int, int]) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                (0, 0, 0), 1, cv2.LINE_AA)


def _check_clip(frames: np.ndarray, displacement: np.ndarray,
                confidence: np.ndarray) -> None:
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError('frames must be uint8 of shape (T, H, W, 3), got '
                         f'{frames.dtype} {frames.shape}')
    num_frames = len(frames)
    if displacement.shape[:2] != (num_frames, 2):
        raise ValueError(f'displacement must be (T={num_frames}, 2, h, w), '
                         f'got {displacement.shape}')
    if confidence.shape[:2] != (num_frames, 1):
        raise ValueError(f'confidence must be (T={num_frames}, 1, h, w), '
                         f'got {confidence.shape}')


def colour_panels(frames: np.ndarray, displacement: np.ndarray,
                  confidence: np.ndarray,
                  full_saturation: float) -> List[List[np.ndarray]]:
    """The coloured panels of one clip, maps upsampled to frame size.

    Args:
        frames (np.ndarray): uint8 RGB (T, H, W, 3).
        displacement (np.ndarray): (T, 2, h, w), as ``estimate_motion``
            returns it (fractions of the largest displacement).
        confidence (np.ndarray): (T, 1, h, w).
        full_saturation (float): displacement drawn fully saturated, in the
            unit of ``displacement``.

    Returns:
        list: three lists of T uint8 RGB (H, W, 3) panels (``ROW_NAMES``).
    """
    _check_clip(frames, displacement, confidence)
    height, width = frames.shape[1:3]
    return [
        list(frames),
        [
            flow_to_color(resize_maps(d, height, width), full_saturation)
            for d in displacement
        ],
        [confidence_to_color(resize_maps(c, height, width))
         for c in confidence],
    ]


def legends(height: int, width: int) -> List[np.ndarray]:
    """Legend panels (H, W, 3) of the three rows (``ROW_NAMES``)."""
    wheel = np.full((height, width, 3), BACKGROUND, np.uint8)
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    wheel[y0:y0 + side, x0:x0 + side] = colour_wheel(side)
    blank = np.full((height, width, 3), BACKGROUND, np.uint8)
    return [blank, wheel, confidence_bar(height, max(width // 4, 12))]


def motion_grid(frames: np.ndarray,
                displacement: np.ndarray,
                confidence: np.ndarray,
                full_saturation: float,
                title: Optional[str] = None) -> np.ndarray:
    """One image per clip, as the paper's Figures 5 and 6.

    Rows: RGB frames, displacement maps (:func:`flow_to_color`, colour-wheel
    legend at the end of the row), confidence maps (colour bar), laid out by
    :class:`MotionGridLayout`.

    Args: as :func:`colour_panels`, plus ``title`` (str, optional), a line
        of text on top.

    Returns:
        np.ndarray: uint8 RGB image of shape ``MotionGridLayout(T, H, W,
        title is not None).shape + (3,)``.
    """
    panels = colour_panels(frames, displacement, confidence, full_saturation)
    num_frames, height, width = frames.shape[:3]
    layout = MotionGridLayout(num_frames, height, width, title is not None)
    grid = np.full(layout.shape + (3, ), BACKGROUND, np.uint8)
    if title is not None:
        _put_text(grid, title, (PAD, 11))
    for row, (name, row_panels, legend) in enumerate(
            zip(ROW_NAMES, panels, legends(height, width))):
        _put_text(grid, name, layout.label_origin(row))
        for column, panel in enumerate(row_panels):
            grid[layout.panel_box(row, column)] = panel
        ys, xs = layout.panel_box(row, num_frames)
        grid[ys, xs.start:xs.start + legend.shape[1]] = legend
    return grid


def motion_gif_frames(frames: np.ndarray, displacement: np.ndarray,
                      confidence: np.ndarray,
                      full_saturation: float) -> List[np.ndarray]:
    """Frames of the animation: [RGB | displacement | confidence | wheel].

    Returns:
        list: T uint8 RGB images (H, 4 * W + 5 * PAD, 3).
    """
    panels = colour_panels(frames, displacement, confidence, full_saturation)
    height, width = frames.shape[1:3]
    wheel = legends(height, width)[1]
    gap = np.full((height, PAD, 3), BACKGROUND, np.uint8)
    return [
        np.concatenate([gap, rgb, gap, disp, gap, conf, gap, wheel, gap],
                       axis=1) for rgb, disp, conf in zip(*panels)
    ]


def save_gif(path: str, images: Sequence[np.ndarray], fps: float) -> None:
    """Write uint8 RGB (H, W, 3) images as a looping GIF with Pillow."""
    if not images:
        raise ValueError('save_gif needs at least one image')
    pil_images = [Image.fromarray(image) for image in images]
    pil_images[0].save(path, save_all=True, append_images=pil_images[1:],
                       duration=int(round(1000 / fps)), loop=0)


def save_png(path: str, image: np.ndarray) -> None:
    """Write a uint8 RGB (H, W, 3) image as PNG."""
    Image.fromarray(image).save(path, optimize=True)
