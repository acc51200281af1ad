"""What this library's answers teach about its questions.

The chance that two close people are one human is measured on family photos
(:data:`daemon.review.questions.FRAGMENT_CHANCE`), where relatives make it small; a
library of unrelated people has more of them, a library of siblings fewer. The answers
already given are labelled data: the share of "yes" among the person-to-person answers
in labels.toml, weighed against the measured chance as if that were :data:`PRIOR_WEIGHT`
answers more (a Beta prior), scales every such question's chance.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.people.labels import Labels, parse_ref

PRIOR_WEIGHT = 20.0
"""The measured chance counts as this many answers."""
FRAGMENT_PRIOR = 0.08
"""The chance the measured table gives the two-people questions asked (bench/CLUSTERING.md:
the 250 first of Families In the Wild lie at centre distances 0.20-0.30)."""
SCALE_LIMITS = (0.25, 4.0)
"""A library's answers move the chances at most this much (a few odd answers must not
silence a kind of question)."""


@dataclass(frozen=True)
class Observed:
    """Answers to "are these two people one?" so far."""

    yes: int = 0
    no: int = 0

    def scale(self, prior: float = FRAGMENT_PRIOR, weight: float = PRIOR_WEIGHT) -> float:
        """The posterior "yes" rate over the prior one."""
        rate = (self.yes + weight * prior) / (self.yes + self.no + weight)
        low, high = SCALE_LIMITS
        return min(high, max(low, rate / prior))


def person_answers(labels: Labels) -> Observed:
    """The person-to-person ``same_as`` / ``not`` answers of labels.toml."""
    def people(refs: tuple[str, ...]) -> int:
        return sum((parse_ref(r) or ("", 0))[0] == "person" for r in refs)

    return Observed(yes=sum(people(lab.same_as) for lab in labels.people.values()),
                    no=sum(people(lab.different) for lab in labels.people.values()))
