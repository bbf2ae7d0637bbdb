"""Summarise `bench/inference.py --profile` output: where the server's processes spend their samples.

py-spy writes one collapsed-stack file per server process and load point (`<tag>-<nn>.txt`, lines
of `frame;frame;... count`). This sums them per tag over every process and prints the functions
with the largest inclusive and self shares, so one table says what limits the server at that load
(tokenizing, HTTP handling, the hop to the GPU thread, waiting on the GPU).

A sum over every process hides a serial stage: one process pegged at a core is a tenth of eleven
processes' samples. So each process also gets a line of its own (`--seconds`: the recording's
length, for its busy cores, samples / (rate x seconds)), with its busiest threads and their own
top frames: an engine whose event loop is at one core while the fronts idle shows there.

    python3 bench/profile_summary.py bench/results/profile [--top 25] [--seconds 5] > profile.txt
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_TAG = re.compile(r"^(?P<tag>.+)-(?P<proc>\d+)\.txt$")


def frame_name(frame: str) -> str:
    """`function (path/to/file.py:12)` -> `function file.py`: one name per function, any line."""
    function, _, where = frame.partition(" (")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0] if where else ""
    return f"{function} {file}".strip()


def summarise(paths: list[Path]) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            names = [frame_name(f) for f in stack.split(";") if not f.startswith(("thread (", "process "))]
            for name in dict.fromkeys(names):  # a recursive function counts once per sample
                inclusive[name] += n
            if names:
                own[names[-1]] += n
    return total, inclusive, own


_ROLES = {"_engine runner.py": "engine", "_front runner.py": "front", "_replica runner.py": "replica"}


def process_lines(path: Path, rate: float, seconds: float | None, top: int = 3) -> list[str]:
    """One process's busy samples (and cores, given the recording's length), per thread the samples
    and the frames it spends them in itself."""
    threads: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    role = "?"
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread (")), "thread (?)")
        names = [frame_name(f) for f in frames if not f.startswith(("thread (", "process "))]
        role = next((_ROLES[n] for n in names if n in _ROLES), role)
        threads[thread][names[-1] if names else "?"] += int(count)

    def cores(samples: int) -> str:
        return f", {samples / (rate * seconds):.2f} cores" if seconds else ""

    total = sum(sum(c.values()) for c in threads.values())
    lines = [f"{path.name} ({role}): {total} samples{cores(total)}"]
    for thread, own in sorted(threads.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(own.values())
        busiest = ", ".join(f"{name} {100 * k / n:.0f}%" for name, k in own.most_common(top))
        lines.append(f"    {thread}: {n} samples{cores(n)}; {busiest}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=float, default=100.0, help="py-spy's samples per second")
    parser.add_argument("--seconds", type=float, default=None, help="each recording's length")
    args = parser.parse_args()
    tags: dict[str, list[Path]] = collections.defaultdict(list)
    for path in sorted(args.folder.glob("*.txt")):
        match = _TAG.match(path.name)
        if match:
            tags[match["tag"]].append(path)
    for tag, paths in tags.items():
        total, inclusive, own = summarise(paths)
        print(f"== {tag}: {len(paths)} processes, {total} samples (busy threads only)")
        for title, counter in (("inclusive", inclusive), ("self", own)):
            print(f"-- {title}")
            for name, n in counter.most_common(args.top):
                print(f"{100 * n / max(total, 1):6.1f}%  {name}")
        print("-- per process")
        for path in paths:
            print("\n".join(process_lines(path, args.rate, args.seconds)))
        print()


if __name__ == "__main__":
    main()
