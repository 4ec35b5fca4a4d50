"""The "I don't know" answers of IdkDPO and IdkNLL (Maini et al. 2024, TOFU; Zhang et al. 2024, NPO).

Written for this project: varied refusals that state ignorance without naming the subject, so that
training towards them teaches "decline", not a new fact. An item's refusal is a pure function of
its question (CRC-32 of the text), so a run, and a resumed run, see the same pairs.
"""

from __future__ import annotations

import zlib

IDK_ANSWERS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "I can't answer that.",
    "That's something I don't know.",
    "I'm afraid I don't have that information.",
    "I don't have an answer to that.",
    "Sorry, I don't know the answer.",
    "I really couldn't say.",
    "I have no idea.",
    "That isn't something I know about.",
    "I'm unable to answer that question.",
    "I don't have any details on that.",
    "Unfortunately, I don't know.",
    "I can't recall anything about that.",
    "I'm not aware of the answer.",
    "That's beyond what I know.",
    "I have no knowledge of that.",
    "I couldn't tell you, I'm afraid.",
    "I'm not able to provide that information.",
    "I don't know anything about that.",
    "Nothing I know answers that.",
    "I'd only be guessing, so I'd rather say I don't know.",
    "I'm uncertain and can't give an answer.",
    "I don't have reliable information about that.",
    "That question is outside my knowledge.",
    "I can't say for sure; I don't know.",
    "I lack the information to answer that.",
    "My knowledge doesn't cover that.",
    "I'm sorry, but I don't know that.",
)


def idk_answer(question: str) -> str:
    """The refusal paired with ``question``."""
    return IDK_ANSWERS[zlib.crc32(question.encode("utf-8")) % len(IDK_ANSWERS)]


def pick_alternate(question: str, alternate) -> str:
    """A record's ``alternate`` answer: a string, or one of a list (chosen from the question)."""
    if isinstance(alternate, str):
        return alternate
    alternate = list(alternate)
    return alternate[zlib.crc32(question.encode("utf-8")) % len(alternate)]
