"""Question ids: the two sides' references, people first, joined by ``+``.

``person-0007+person-0012``, ``person-0007+face-88``, or ``person-0007+part-88`` (a
sub-group of person 7, named by its most central face, against the rest of person 7):
the same question keeps its id whatever else changes, so an answer can be given later,
or by a script. Light on purpose: ``facecluster review answer`` imports no clustering
code.
"""

from __future__ import annotations

import re

from daemon.people.labels import LabelsError, parse_ref, ref_key

SHOWN = 6
"""Faces shown per side of a question at most."""
_PART = re.compile(r"part-(\d+)")


def part_key(face_id: int) -> str:
    """The reference of the sub-group whose most central face is ``face_id``."""
    return f"part-{face_id}"


def parse_part(ref: str) -> int | None:
    """The central face of a ``part-N`` reference, else None."""
    m = _PART.fullmatch(ref.strip())
    return int(m.group(1)) if m else None


def question_id(ref_a: str, ref_b: str) -> str:
    """The stable id of the question about two references (order does not matter)."""
    return "+".join(sorted((ref_a, ref_b), key=ref_order))


def parse_question_id(qid: str) -> tuple[str, str]:
    """The two references of a question id; raises :class:`LabelsError` if malformed."""
    parts = sorted(qid.strip().split("+"), key=lambda r: parse_part(r) is not None)
    if len(parts) == 2 and (part := parse_part(parts[1])) is not None:
        ref = parse_ref(parts[0].strip())
        if ref is None or ref[0] != "person":
            raise LabelsError(f"{qid!r}: a part is asked about its own person-NNNN")
        return ref_key(*ref), part_key(part)
    refs = [parse_ref(p) for p in parts]
    if len(parts) != 2 or any(r is None for r in refs):
        raise LabelsError(f"{qid!r} is not a question id like person-0007+person-0012")
    a, b = (ref_key(*r) for r in refs)  # type: ignore[misc]
    if a == b or all(r[0] == "face" for r in refs):  # type: ignore[index]
        raise LabelsError(f"{qid!r}: a question is about a person and another person or face")
    return (a, b) if ref_order(a) <= ref_order(b) else (b, a)


def ref_order(ref: str) -> tuple[int, int]:
    if (part := parse_part(ref)) is not None:
        return (1, part)
    kind, number = parse_ref(ref) or ("face", 0)
    return (0 if kind == "person" else 2, number)
