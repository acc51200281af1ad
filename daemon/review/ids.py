"""Question ids: the two sides' references, people first, joined by ``+``.

``person-0007+person-0012`` or ``person-0007+face-88``: the same question keeps its id
whatever else changes, so an answer can be given later, or by a script. Light on
purpose: ``facecluster review answer`` imports no clustering code.
"""

from __future__ import annotations

from daemon.people.labels import LabelsError, parse_ref, ref_key


def question_id(ref_a: str, ref_b: str) -> str:
    """The stable id of the question about two references (order does not matter)."""
    return "+".join(sorted((ref_a, ref_b), key=ref_order))


def parse_question_id(qid: str) -> tuple[str, str]:
    """The two references of a question id; raises :class:`LabelsError` if malformed."""
    parts = qid.strip().split("+")
    refs = [parse_ref(p) for p in parts]
    if len(parts) != 2 or any(r is None for r in refs):
        raise LabelsError(f"{qid!r} is not a question id like person-0007+person-0012")
    a, b = (ref_key(*r) for r in refs)  # type: ignore[misc]
    if a == b or all(r[0] == "face" for r in refs):  # type: ignore[index]
        raise LabelsError(f"{qid!r}: a question is about a person and another person or face")
    return (a, b) if ref_order(a) <= ref_order(b) else (b, a)


def ref_order(ref: str) -> tuple[int, int]:
    kind, number = parse_ref(ref) or ("face", 0)
    return (0 if kind == "person" else 1, number)
