"""The boxes of a HEIC container that locate its primary image's HEVC data (ISO 23008-12).

A HEIC is an ISO base media file: ``ftyp``, then a ``meta`` box describing items
(``pitm`` names the primary one, ``iinf`` gives each item's type, ``iloc`` where its
bytes are, ``iprp`` its properties: ``hvcC`` decoder configuration, ``ispe`` size,
``irot``/``imir`` turns, ``colr`` colour; ``iref`` links a ``grid`` to its tiles), then
the coded data. :func:`primary_layout` reads just that, decoding no pixels, so that
:mod:`.heif` can hand the HEVC data to a faster decoder than libheif's.

Anything this parser does not model (other codecs, 10-bit or non-4:2:0 HEVC, cropping
``clap``, overlays, data referenced across items, an unknown essential property) raises
:class:`Unsupported`: the caller then decodes through libheif, which handles them all.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

# Properties whose meaning the fast path reproduces (or may ignore: pixi, auxC of other
# items); an *essential* property outside this set makes the layout unsupported.
_KNOWN_PROPERTIES = frozenset({b"hvcC", b"ispe", b"irot", b"imir", b"colr", b"pixi"})
# Grids of phones hold tens of tiles; this bounds what a hostile file can ask for.
_MAX_TILES = 1024


class Unsupported(ValueError):
    """The container is valid HEIF (perhaps) but outside what the fast path decodes."""


@dataclass(frozen=True)
class Tile:
    """One HEVC-coded image: its decoder configuration and its length-prefixed NAL units."""

    hvcc: bytes
    data: bytes
    width: int
    height: int


@dataclass(frozen=True)
class Layout:
    """The primary image: tiles in row-major order on a ``rows`` x ``cols`` grid (1 x 1
    for a plain image), cropped to ``width`` x ``height``, then turned by ``transforms``
    in order: ``("rot", quarter turns anticlockwise)`` or ``("mirror", axis)``. The
    standard's wording of the axis has been read both ways; libheif (and so every file
    its encoder writes) takes 0 as top and bottom swapping, 1 as left and right, and
    this follows libheif, the reader facecluster used before.
    ``matrix``/``full_range`` come from an ``nclx`` colour box, None without one."""

    tiles: tuple[Tile, ...]
    rows: int
    cols: int
    width: int
    height: int
    transforms: tuple[tuple[str, int], ...] = ()
    matrix: int | None = None
    full_range: bool | None = None


@dataclass
class _Meta:
    primary: int = 0
    types: dict[int, bytes] = field(default_factory=dict)
    locations: dict[int, tuple[int, list[tuple[int, int]]]] = field(default_factory=dict)
    properties: list[tuple[bytes, bytes]] = field(default_factory=list)
    associations: dict[int, list[tuple[int, bool]]] = field(default_factory=dict)
    refs: dict[tuple[bytes, int], list[int]] = field(default_factory=dict)
    idat: bytes = b""


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, box end) of each box between ``start`` and ``end``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                raise Unsupported("truncated box header")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise Unsupported(f"box {kind!r} runs past its parent")
        yield kind, pos + header, pos + size
        pos += size


class _Reader:
    """Big-endian fields read in sequence from one box body."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def uint(self, n: int) -> int:
        if self.pos + n > self.end:
            raise Unsupported("box shorter than its fields")
        value = int.from_bytes(self.data[self.pos : self.pos + n], "big")
        self.pos += n
        return value

    def full_header(self) -> tuple[int, int]:
        """(version, flags) of a full box."""
        return self.uint(1), self.uint(3)


def _parse_iloc(meta: _Meta, r: _Reader) -> None:
    version, _ = r.full_header()
    if version > 2:
        raise Unsupported(f"iloc version {version}")
    sizes = r.uint(1)
    offset_size, length_size = sizes >> 4, sizes & 15
    sizes = r.uint(1)
    base_size, index_size = sizes >> 4, (sizes & 15) if version else 0
    count = r.uint(2 if version < 2 else 4)
    for _ in range(count):
        item = r.uint(2 if version < 2 else 4)
        method = r.uint(2) & 15 if version else 0
        r.uint(2)  # data_reference_index: 0 = this file
        base = r.uint(base_size)
        extents = []
        for _ in range(r.uint(2)):
            r.uint(index_size)
            extents.append((base + r.uint(offset_size), r.uint(length_size)))
        meta.locations[item] = (method, extents)


def _parse_iinf(meta: _Meta, data: bytes, r: _Reader) -> None:
    version, _ = r.full_header()
    r.uint(2 if version == 0 else 4)  # entry count: the child boxes say it again
    for kind, start, end in _boxes(data, r.pos, r.end):
        if kind != b"infe":
            continue
        e = _Reader(data, start, end)
        v, _ = e.full_header()
        if v < 2:
            raise Unsupported(f"infe version {v}")
        item = e.uint(2 if v == 2 else 4)
        e.uint(2)  # protection index
        meta.types[item] = e.data[e.pos : e.pos + 4]


def _parse_iprp(meta: _Meta, data: bytes, start: int, end: int) -> None:
    for kind, s, e in _boxes(data, start, end):
        if kind == b"ipco":
            meta.properties = [(k, data[ps:pe]) for k, ps, pe in _boxes(data, s, e)]
        elif kind == b"ipma":
            r = _Reader(data, s, e)
            version, flags = r.full_header()
            for _ in range(r.uint(4)):
                item = r.uint(2 if version < 1 else 4)
                links = meta.associations.setdefault(item, [])
                for _ in range(r.uint(1)):
                    value = r.uint(2 if flags & 1 else 1)
                    top = 0x8000 if flags & 1 else 0x80
                    links.append((value & (top - 1), bool(value & top)))


def _parse_iref(meta: _Meta, data: bytes, r: _Reader) -> None:
    version, _ = r.full_header()
    width = 2 if version == 0 else 4
    for kind, start, end in _boxes(data, r.pos, r.end):
        ref = _Reader(data, start, end)
        source = ref.uint(width)
        meta.refs[(kind, source)] = [ref.uint(width) for _ in range(ref.uint(2))]


def _parse_meta(data: bytes) -> _Meta:
    top = next((b for b in _boxes(data, 0, len(data)) if b[0] == b"meta"), None)
    if top is None:
        raise Unsupported("no meta box")
    meta = _Meta()
    for kind, start, end in _boxes(data, top[1] + 4, top[2]):  # meta is a full box
        r = _Reader(data, start, end)
        if kind == b"pitm":
            version, _ = r.full_header()
            meta.primary = r.uint(2 if version == 0 else 4)
        elif kind == b"iloc":
            _parse_iloc(meta, r)
        elif kind == b"iinf":
            _parse_iinf(meta, data, r)
        elif kind == b"iprp":
            _parse_iprp(meta, data, start, end)
        elif kind == b"iref":
            _parse_iref(meta, data, r)
        elif kind == b"idat":
            meta.idat = data[start:end]
    return meta


def _item_bytes(meta: _Meta, data: bytes, item: int) -> bytes:
    if item not in meta.locations:
        raise Unsupported(f"item {item} has no location")
    method, extents = meta.locations[item]
    if method not in (0, 1):
        raise Unsupported(f"item {item} construction method {method}")
    source = data if method == 0 else meta.idat
    parts = []
    for offset, length in extents:
        length = length or len(source) - offset  # 0: to the end of the file
        if offset < 0 or length < 0 or offset + length > len(source):
            raise Unsupported(f"item {item} lies past the end of the file (truncated?)")
        parts.append(source[offset : offset + length])
    return b"".join(parts)


def _properties(meta: _Meta, item: int) -> list[tuple[bytes, bytes]]:
    """The item's properties in association order; unknown essential ones refused."""
    found = []
    for index, essential in meta.associations.get(item, []):
        if not 1 <= index <= len(meta.properties):
            if index == 0:
                continue  # 0 means "no property"
            raise Unsupported(f"item {item} names property {index} of {len(meta.properties)}")
        kind, body = meta.properties[index - 1]
        if essential and kind not in _KNOWN_PROPERTIES:
            raise Unsupported(f"essential property {kind.decode('latin-1')!r}")
        found.append((kind, body))
    return found


def _extent(props: list[tuple[bytes, bytes]], item: int) -> tuple[int, int]:
    body = next((b for k, b in props if k == b"ispe"), None)
    if body is None or len(body) < 12:
        raise Unsupported(f"item {item} has no size (ispe)")
    width, height = struct.unpack_from(">II", body, 4)
    return width, height


def _tile(meta: _Meta, data: bytes, item: int) -> Tile:
    if meta.types.get(item) != b"hvc1":
        raise Unsupported(f"item type {meta.types.get(item)!r}")
    props = _properties(meta, item)
    hvcc = next((b for k, b in props if k == b"hvcC"), None)
    if hvcc is None or len(hvcc) < 23:
        raise Unsupported(f"item {item} has no HEVC configuration")
    chroma, luma_bits, chroma_bits = hvcc[16] & 3, hvcc[17] & 7, hvcc[18] & 7
    if chroma != 1 or luma_bits or chroma_bits:
        raise Unsupported(f"HEVC chroma format {chroma}, {8 + luma_bits}-bit")
    width, height = _extent(props, item)
    coded_w, coded_h = sps_size(hvcc)
    # The coded size may exceed the stated one by the conformance padding (< 64 px, a
    # CTB); more would let the decoder allocate a frame the size check never saw.
    if not (width <= coded_w < width + 64 and height <= coded_h < height + 64):
        raise Unsupported(f"coded {coded_w}x{coded_h} for a stated {width}x{height}")
    return Tile(hvcc, _item_bytes(meta, data, item), width, height)


class _Bits:
    """MSB-first bit reader over an HEVC RBSP (emulation prevention bytes removed)."""

    def __init__(self, rbsp: bytes) -> None:
        self.value, self.left = int.from_bytes(rbsp, "big"), len(rbsp) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise Unsupported("SPS shorter than its fields")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise Unsupported("SPS: bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)


def sps_size(hvcc: bytes) -> tuple[int, int]:
    """(width, height) in luma samples that the hvcC's sequence parameter set codes."""
    pos, sps = 23, None
    for _ in range(hvcc[22] if len(hvcc) > 22 else 0):
        if pos + 3 > len(hvcc):
            break
        kind, count = hvcc[pos] & 0x3F, int.from_bytes(hvcc[pos + 1 : pos + 3], "big")
        pos += 3
        for _ in range(count):
            length = int.from_bytes(hvcc[pos : pos + 2], "big")
            if kind == 33 and sps is None:
                sps = hvcc[pos + 2 : pos + 2 + length]
            pos += 2 + length
    if not sps:
        raise Unsupported("no sequence parameter set")
    bits = _Bits(sps[2:].replace(b"\0\0\3", b"\0\0"))  # after the 2-byte NAL header
    bits.u(4)
    sub_layers = bits.u(3)
    bits.u(1)
    bits.u(96)  # general profile, tier and level
    flags = [(bits.u(1), bits.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.u(2 * (8 - sub_layers))
    for profile, level in flags:
        bits.u(88 * profile + 8 * level)
    bits.ue()  # seq_parameter_set_id
    if bits.ue() == 3:  # chroma_format_idc 4:4:4: separate_colour_plane_flag
        bits.u(1)
    return bits.ue(), bits.ue()


def _grid(meta: _Meta, data: bytes, item: int) -> tuple[tuple[Tile, ...], int, int, int, int]:
    grid = _item_bytes(meta, data, item)
    r = _Reader(grid, 0, len(grid))
    r.uint(1)  # version
    wide = r.uint(1) & 1
    rows, cols = r.uint(1) + 1, r.uint(1) + 1
    width, height = r.uint(4 if wide else 2), r.uint(4 if wide else 2)
    ids = meta.refs.get((b"dimg", item), [])
    if len(ids) != rows * cols or len(ids) > _MAX_TILES:
        raise Unsupported(f"grid {rows}x{cols} with {len(ids)} tiles")
    tiles = tuple(_tile(meta, data, i) for i in ids)
    tw, th = tiles[0].width, tiles[0].height
    if any((t.width, t.height) != (tw, th) for t in tiles):
        raise Unsupported("grid tiles of different sizes")
    if not (_covers(tw, cols, width) and _covers(th, rows, height)):
        raise Unsupported(f"{rows}x{cols} tiles of {tw}x{th} do not fit a {width}x{height} grid")
    return tiles, rows, cols, width, height


def _covers(tile: int, count: int, size: int) -> bool:
    """Tiles cover the image and overshoot it by less than one tile, and no tile is much
    larger than the image: the pixel limit is checked on the grid's stated size, so a
    small grid must not carry huge tiles (the canvas is as large as the tiles)."""
    return size <= tile * count < size + tile and tile < size + 64


def _transforms(props: list[tuple[bytes, bytes]]) -> tuple[tuple[str, int], ...]:
    turns: list[tuple[str, int]] = []
    for kind, body in props:
        if kind == b"irot" and body:
            turns.append(("rot", body[0] & 3))
        elif kind == b"imir" and body:
            turns.append(("mirror", body[0] & 1))
    return tuple(turns)


def _colour(props: list[tuple[bytes, bytes]]) -> tuple[int | None, bool | None]:
    for kind, body in props:
        if kind == b"colr" and body[:4] == b"nclx" and len(body) >= 11:
            return struct.unpack_from(">H", body, 8)[0], bool(body[10] & 0x80)
    return None, None


def primary_layout(data: bytes) -> Layout:
    """Where the primary image's HEVC data is and how to assemble and turn it.

    Raises :class:`Unsupported` for anything outside the fast path (see the module).
    """
    try:
        meta = _parse_meta(data)
    except (struct.error, IndexError) as e:
        raise Unsupported(f"malformed meta box: {e}") from e
    item = meta.primary
    kind = meta.types.get(item)
    props = _properties(meta, item)
    if kind == b"hvc1":
        tile = _tile(meta, data, item)
        tiles, rows, cols, width, height = (tile,), 1, 1, tile.width, tile.height
    elif kind == b"grid":
        tiles, rows, cols, width, height = _grid(meta, data, item)
    else:
        raise Unsupported(f"primary item type {kind!r}")
    matrix, full_range = _colour(props)
    if matrix is None and kind == b"grid":  # the colour box may sit on the tiles
        matrix, full_range = _colour(_properties(meta, meta.refs[(b"dimg", item)][0]))
    return Layout(tiles, rows, cols, width, height, _transforms(props), matrix, full_range)
