"""Sentence material by topic (the drift benchmark's traffic and the demo's topic shift): each topic a
template grammar (subject, verb, object, tail), so that fresh samples of one topic are new sentences
from the same distribution.

`BASE_TOPICS` make up the champion's normal traffic; `NEW_TOPICS` are what a topic shift brings in.
`long_text` joins two or three base sentences into one input (a length shift with unchanged topics).
"""

from __future__ import annotations

import random

from canaryflow.app.local.sentences import sentence as support_sentence

_T = dict[str, list[str]]

TOPICS: dict[str, _T] = {
    "travel": {
        "s": [
            "The hotel in Lisbon",
            "Our flight to Oslo",
            "A backpacker",
            "The night train to Vienna",
            "My travel agent",
            "The tour guide",
            "The airport shuttle",
            "A family of four",
        ],
        "v": [
            "was delayed by",
            "recommended",
            "booked",
            "cancelled",
            "complained about",
            "is looking for",
            "paid extra for",
            "reviewed",
        ],
        "o": [
            "a room with a sea view",
            "the window seat",
            "a guided walk through the old town",
            "the luggage allowance",
            "a rental car",
            "the boarding pass",
            "a ferry to the islands",
            "the museum pass",
        ],
        "t": [
            "",
            " for the summer holidays",
            " despite the storm warning",
            " two weeks in advance",
            " and loved every minute of it",
        ],
    },
    "cooking": {
        "s": [
            "The chef",
            "My grandmother",
            "This recipe",
            "The bakery on the corner",
            "A home cook",
            "The food blogger",
            "Our kitchen team",
            "The pastry student",
        ],
        "v": ["slowly simmers", "recommends", "burned", "seasons", "folds", "bakes", "grills", "whisks"],
        "o": [
            "the tomato sauce",
            "a loaf of sourdough bread",
            "the risotto with mushrooms",
            "fresh pasta dough",
            "the chocolate cake",
            "a spicy lentil soup",
            "the roast chicken",
            "the egg whites",
        ],
        "t": [
            "",
            " for about twenty minutes",
            " with a pinch of sea salt",
            " until golden brown",
            " before serving it warm",
        ],
    },
    "sports": {
        "s": [
            "The striker",
            "Our local team",
            "The tennis champion",
            "The marathon runner",
            "The coach",
            "The goalkeeper",
            "A young cyclist",
            "The referee",
        ],
        "v": [
            "scored against",
            "trained for",
            "lost to",
            "celebrated",
            "prepared for",
            "criticised",
            "qualified for",
            "dominated",
        ],
        "o": [
            "the league leaders",
            "the final match",
            "the world championship",
            "the away game",
            "the semi-final",
            "the last lap",
            "the penalty shootout",
            "the season opener",
        ],
        "t": [
            "",
            " in front of a sold-out stadium",
            " after a long injury break",
            " in the rain",
            " with two minutes left on the clock",
        ],
    },
    "finance": {
        "s": [
            "The central bank",
            "Bond yields",
            "The hedge fund",
            "Quarterly earnings",
            "The stock market",
            "Inflation",
            "The pension fund",
            "A venture capitalist",
        ],
        "v": [
            "rose sharply after",
            "fell on news of",
            "reacted to",
            "priced in",
            "outperformed",
            "hedged against",
            "invested in",
            "warned about",
        ],
        "o": [
            "the interest rate decision",
            "the currency devaluation",
            "rising energy prices",
            "the merger announcement",
            "a recession",
            "the credit downgrade",
            "the dividend cut",
            "government debt",
        ],
        "t": [
            "",
            " in early trading",
            " according to analysts",
            " for the third quarter in a row",
            " while investors fled to safer assets",
        ],
    },
    "medicine": {
        "s": [
            "The patient",
            "The surgeon",
            "A clinical trial",
            "The nurse",
            "The vaccine",
            "The cardiologist",
            "A new antibiotic",
            "The radiologist",
        ],
        "v": [
            "was diagnosed with",
            "treated",
            "showed improvement in",
            "reduced the risk of",
            "screened for",
            "prescribed medication for",
            "monitored",
            "operated on",
        ],
        "o": [
            "chronic kidney disease",
            "a fractured hip",
            "high blood pressure",
            "the infection",
            "type 2 diabetes",
            "the tumour",
            "an irregular heartbeat",
            "severe asthma",
        ],
        "t": [
            "",
            " after the biopsy",
            " with fewer side effects",
            " in the intensive care unit",
            " according to the latest guidelines",
        ],
    },
    "programming": {
        "s": [
            "The compiler",
            "Our backend service",
            "The garbage collector",
            "A junior developer",
            "The unit test",
            "The database migration",
            "The Python interpreter",
            "The build pipeline",
        ],
        "v": [
            "threw an exception in",
            "refactored",
            "optimised",
            "failed to parse",
            "deadlocked on",
            "deprecated",
            "profiled",
            "rolled back",
        ],
        "o": [
            "the recursive function",
            "the REST endpoint",
            "the hash map implementation",
            "the async event loop",
            "the SQL query planner",
            "the memory allocator",
            "the type checker",
            "the merge request",
        ],
        "t": [
            "",
            " after the dependency upgrade",
            " under heavy concurrent load",
            " because of a null pointer",
            " in the staging environment",
        ],
    },
}
BASE_TOPICS = ("support", "travel", "cooking", "sports")
NEW_TOPICS = ("finance", "medicine", "programming")


def topic_sentence(topic: str, rng: random.Random) -> str:
    if topic == "support":
        return support_sentence(rng)
    g = TOPICS[topic]
    return f"{rng.choice(g['s'])} {rng.choice(g['v'])} {rng.choice(g['o'])}{rng.choice(g['t'])}."


def long_text(rng: random.Random) -> str:
    return " ".join(topic_sentence(rng.choice(BASE_TOPICS), rng) for _ in range(rng.choice((2, 3))))


def pools(per_topic: int, seed: int) -> dict[str, list[str]]:
    """Distinct sentences per topic (and `long`), each split later into reference and fresh halves."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    for topic in (*BASE_TOPICS, *NEW_TOPICS, "long"):
        seen: set[str] = set()
        for _ in range(per_topic * 20):
            seen.add(long_text(rng) if topic == "long" else topic_sentence(topic, rng))
            if len(seen) >= per_topic:
                break
        out[topic] = sorted(seen)
    return out


def new_topic_sentence(rng: random.Random) -> str:
    """A sentence on one of the topics the champion's normal traffic never carries."""
    return topic_sentence(rng.choice(NEW_TOPICS), rng)
