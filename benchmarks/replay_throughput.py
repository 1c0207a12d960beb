"""End-to-end replay speed on the bundled ml-100k sample, one row per sampler.

Run: python benchmarks/replay_throughput.py [--samplers icpns,uniform] [--limit N]

Prints events/s of the whole engine loop (ranking, communities, popularity,
sampling, learning) with K negatives, and the quality figures of each run.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.readers import load_replay
from icpns_stream.replay import replay_events

SAMPLE = Path(__file__).resolve().parents[1] / "icpns_stream" / "data" / "ml-100k.inter"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", default="icpns,uniform,popularity")
    parser.add_argument("--negatives", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    events = load_replay(SAMPLE).events[: args.limit]
    print(f"loaded {len(events):,} events in {time.perf_counter() - start:.2f} s")
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}"
    )
    print(f"{'sampler':<12}{'events/s':>10}{'seconds':>9}{'hr@10':>8}{'ndcg@10':>9}")
    for name in args.samplers.split(","):
        engine = Engine(EngineConfig(sampler=name, negatives=args.negatives))
        report = replay_events(engine, events)
        print(
            f"{name:<12}{report['events_per_second']:>10,.0f}"
            f"{report['seconds']:>9.1f}{report['hr@10']:>8.4f}{report['ndcg@10']:>9.4f}"
        )


if __name__ == "__main__":
    main()
