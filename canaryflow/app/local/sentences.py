"""Realistic sentences for load: varied lengths (about 8 to 40 tokens), reproducible by seed.

A canary comparison is only as good as its traffic: requests of one fixed length would hide
length-dependent regressions and make batching look better than it is.
"""

from __future__ import annotations

import random

_SUBJECTS = [
    "The customer",
    "Our support team",
    "A new user",
    "The billing service",
    "The search index",
    "My order from last Tuesday",
    "The mobile app",
    "This quarterly report",
    "The delivery driver",
    "An engineer on call",
    "The recommendation model",
    "The warehouse in Rotterdam",
]
_VERBS = [
    "was unable to find",
    "asked about",
    "reported a problem with",
    "would like a refund for",
    "could not log into",
    "is waiting for",
    "received the wrong",
    "wants to compare",
    "has questions about",
    "praised the quality of",
]
_OBJECTS = [
    "the invoice",
    "the premium subscription",
    "a pair of running shoes",
    "the password reset email",
    "the shipping estimate",
    "the product documentation",
    "the latest firmware update",
    "a damaged package",
    "the loyalty points balance",
    "the account settings page",
]
_TAILS = [
    "",
    " yesterday evening",
    " after the latest update",
    " even though the payment went through",
    " and would appreciate a quick answer",
    " because the tracking number does not work",
    ", which has happened twice this month already",
    " while travelling abroad without wifi",
    " and asked whether the warranty covers accidental damage to the screen and battery",
]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)}."


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(count)]
