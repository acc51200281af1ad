"""Birth dates: a photo taken before a person was born does not show them.

``person-0007 = { name = "Mia", born = "2019-03" }`` keeps every face of a photo whose
EXIF date is before March 2019 out of Mia's album (and out of anyone the answers made
one with her). Photos without a date are unaffected.

The store keeps no photo date, and reading one is a look at the file's header, not an
indexing: so the dates are read only when labels.toml has a ``born`` at all, once per
photo content, and kept in ``state/photo-dates.json`` by content hash (moves, copies and
``rebuild`` do not read them again; an old store is never re-indexed for them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import structlog

from daemon.fsutil import atomic_write
from daemon.people.labels import Labels, born_on

log = structlog.get_logger(__name__)

DATES_FILE = "photo-dates.json"
_EXIF_IFD = 0x8769
_ORIGINAL, _DIGITIZED, _DATETIME = 36867, 36868, 306
_DATE = re.compile(r"\s*([0-9]{4})[:\-]([0-9]{2})[:\-]([0-9]{2})")


def parse_exif_date(value: object) -> str | None:
    """``YYYY-MM-DD`` from an EXIF date (``2019:03:14 10:00:00``), or None if it is not one
    (cameras write ``0000:00:00 00:00:00`` or blanks when the clock was never set)."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    m = _DATE.match(value) if isinstance(value, str) else None
    if m is None:
        return None
    year, month, day = (int(g) for g in m.groups())
    if not (1800 <= year <= 2999 and 1 <= month <= 12 and 1 <= day <= 31):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}"


def exif_date(path: Path) -> str | None:
    """When the photo was taken, by its EXIF (original, digitized, else file date); HEIC
    and HEIF through pillow-heif's header reader (Pillow alone does not open them)."""
    from PIL import Image

    try:
        try:
            with Image.open(path) as image:
                exif = image.getexif()
        except Image.UnidentifiedImageError:
            exif = _heif_exif(path)
        inner = exif.get_ifd(_EXIF_IFD)
        for value in (inner.get(_ORIGINAL), inner.get(_DIGITIZED), exif.get(_DATETIME)):
            if (date := parse_exif_date(value)) is not None:
                return date
    except Exception as e:  # noqa: BLE001 - RAW, a broken file: no date, not an error
        log.debug("photo_date_unreadable", path=str(path), error=str(e))
    return None


def _heif_exif(path: Path):  # noqa: ANN202 - a PIL.Image.Exif
    import pillow_heif
    from PIL import Image

    exif = Image.Exif()
    data = pillow_heif.open_heif(path).info.get("exif")  # the header, not the pixels
    if data:
        exif.load(data)
    return exif


def read_dates(state_dir: Path) -> dict[str, str]:
    """Content hash -> ``YYYY-MM-DD`` or ``""`` (no date), as kept."""
    try:
        data = json.loads((Path(state_dir) / DATES_FILE).read_text("utf-8"))
        return {str(k): str(v) for k, v in data.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as e:
        log.warning("photo_dates_unreadable", path=str(Path(state_dir) / DATES_FILE),
                    error=str(e))
        return {}


def photo_dates(state_dir: Path, photos: Iterable[tuple[str, Path]],
                kept: dict[str, str] | None = None) -> dict[str, str]:
    """Content hash -> date for ``photos`` (hash, path), reading only those not kept yet.

    ``kept``: the dates file as the caller already holds it (updated in place), so a
    batch of new photos does not parse the whole library's dates again."""
    kept = read_dates(state_dir) if kept is None else kept
    fresh = {h: exif_date(p) or "" for h, p in photos if h not in kept}
    if fresh:
        kept.update(fresh)
        try:
            atomic_write(Path(state_dir) / DATES_FILE,
                         json.dumps(kept, sort_keys=True).encode("utf-8"))
        except OSError as e:
            log.warning("photo_dates_not_written", error=str(e))
    return kept


def born_after(labels: Labels, alias: Mapping[int, int]) -> dict[int, str]:
    """Person id -> the earliest day they can appear, for every person with a ``born``
    and every person the answers made one with them."""
    born = {p: d for p, lab in labels.people.items() if (d := born_on(lab)) is not None}
    out = dict(born)
    for p, lead in alias.items():
        for q in (p, lead):
            if q in born:
                out[p] = out[lead] = max(born[q], out.get(p, ""), out.get(lead, ""))
    return out


def before_birth(faces: Iterable[tuple[int, str | None]], dates: Mapping[str, str],
                 born: Mapping[int, str]) -> set[tuple[int, int]]:
    """(face id, person id) for faces (face id, photo hash) in a photo dated before the
    person's birth; faces of undated photos are left alone."""
    out: set[tuple[int, int]] = set()
    for face, digest in faces:
        taken = dates.get(digest or "", "")
        if taken:
            out.update((face, p) for p, day in born.items() if taken < day)
    return out
