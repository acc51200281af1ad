"""Decoding a HEIC's HEVC tiles with FFmpeg (through PyAV) into one BGR image.

FFmpeg's HEVC decoder is measurably cheaper than libde265 on the same data (see
bench/THROUGHPUT.md), with one thread as the worker pool wants. The container is read
by :mod:`.heifbox`; here each tile is decoded, converted to BGR with the colour matrix
and range the container states, placed on the grid, cropped and turned by the
container's ``irot``/``imir`` in their stated order, as libheif does.
"""

from __future__ import annotations

import cv2
import numpy as np

from daemon.indexer.heifbox import Layout, Tile

# nclx matrix_coefficients (ITU-T H.273) -> swscale's colourspace names; 2 (unspecified)
# is read as BT.601, libheif's choice too.
_MATRICES = {1: "ITU709", 2: "ITU601", 4: "FCC", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M",
             9: "BT2020", 10: "BT2020"}
_ROTATIONS = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180,
              3: cv2.ROTATE_90_CLOCKWISE}


class DecodeError(RuntimeError):
    """FFmpeg could not decode a tile, or it decoded to a size the container did not say."""


def _frames(tiles: tuple[Tile, ...]) -> list:
    """Decoded frames of ``tiles`` in order; one codec context per run of equal hvcC."""
    import av

    frames: list = []
    run_start = 0
    for i in range(1, len(tiles) + 1):
        if i < len(tiles) and tiles[i].hvcc == tiles[run_start].hvcc:
            continue
        context = av.CodecContext.create("hevc", "r")
        context.extradata = tiles[run_start].hvcc
        context.thread_count = 1  # workers are processes, one per core
        try:
            for tile in tiles[run_start:i]:
                frames += context.decode(av.Packet(tile.data))
            frames += context.decode(None)
        except av.FFmpegError as e:
            raise DecodeError(str(e)) from e
        if len(frames) != i:
            raise DecodeError(f"{i} tiles gave {len(frames)} frames")
        run_start = i
    return frames


def _bgr(frame, layout: Layout) -> np.ndarray:
    colourspace = _MATRICES.get(layout.matrix) if layout.matrix is not None else None
    colour_range = None
    if layout.full_range is not None:
        colour_range = "JPEG" if layout.full_range else "MPEG"
    out = frame.reformat(format="bgr24", src_colorspace=colourspace,
                         src_color_range=colour_range, threads=1)
    return out.to_ndarray()


def decode(layout: Layout) -> np.ndarray:
    """The primary image of ``layout``, BGR uint8, turned as the container says.

    Raises :class:`DecodeError` when FFmpeg fails or a tile's size is not the stated one.
    """
    if len(layout.tiles) == 1 and (layout.rows, layout.cols) == (1, 1):
        image = _checked(_bgr(_frames(layout.tiles)[0], layout), layout.tiles[0])
        image = image[: layout.height, : layout.width]
    else:
        tile = layout.tiles[0]
        canvas = np.empty((tile.height * layout.rows, tile.width * layout.cols, 3), np.uint8)
        for i, frame in enumerate(_frames(layout.tiles)):
            y, x = divmod(i, layout.cols)
            canvas[y * tile.height : (y + 1) * tile.height,
                   x * tile.width : (x + 1) * tile.width] = _checked(_bgr(frame, layout), tile)
        image = canvas[: layout.height, : layout.width]
    for kind, value in layout.transforms:
        if kind == "rot" and value:
            image = cv2.rotate(image, _ROTATIONS[value])
        elif kind == "mirror":
            image = cv2.flip(image, 0 if value == 0 else 1)
    return np.ascontiguousarray(image)


def _checked(image: np.ndarray, tile: Tile) -> np.ndarray:
    if image.shape[:2] != (tile.height, tile.width):
        raise DecodeError(
            f"tile decoded to {image.shape[1]}x{image.shape[0]}, stated {tile.width}x{tile.height}"
        )
    return image
