"""Where the time and memory of the engine go: per stage, end to end, per stream.

Run: python benchmarks/stage_costs.py [--big-events 1000000] [--skip-big]

For each stream it prints microseconds per event of each stage (parse, community
update, popularity update, sampling, learning, ranking), end-to-end events/s,
peak resident memory, and the cost of an ICPNS draw against a uniform draw made
on the same state in the same run. Streams: the bundled ml-100k, and generated
planted-community streams of two lengths with the same users and items, so the
memory figures show what grows with the stream and what does not.

Each stream runs in its own subprocess so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.events import ClickEvent, decode_event
from icpns_stream.readers import iter_records, load_replay
from icpns_stream.samplers import UniformSampler
from icpns_stream.simulator import PlantedCommunitySimulator

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "icpns_stream" / "data" / "ml-100k.inter"
STAGES = ("parse", "community", "popularity", "sampling", "learning", "ranking")


def _timed(function: Callable[..., Any], totals: dict[str, float], stage: str):
    clock = time.perf_counter

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        result = function(*args, **kwargs)
        totals[stage] += clock() - start
        return result

    return wrapper


def _call(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def _instrument(engine: Engine, totals: dict[str, float]) -> dict[str, float]:
    """Time each stage of the engine, and a uniform draw beside every ICPNS one."""
    engine.communities.update = _timed(engine.communities.update, totals, "community")
    popularity_update = _timed(engine.popularity.update, totals, "popularity")
    ranker_update = _timed(engine.most_popular.update, totals, "popularity")
    engine.popularity.update = popularity_update
    engine.most_popular.update = ranker_update
    engine.model.learn_one = _timed(engine.model.learn_one, totals, "learning")
    engine._evaluate = _timed(engine._evaluate, totals, "ranking")

    # Both samplers draw for the same click on the same state; only ICPNS's
    # negatives reach the model. Their order alternates so neither is favoured.
    icpns_sample, uniform_sample = engine.sampler.sample, UniformSampler(1).sample
    draws = {"icpns": 0.0, "uniform": 0.0}
    flip = [False]

    def sample(*args: Any, **kwargs: Any) -> Any:
        flip[0] = not flip[0]
        if flip[0]:
            draws["uniform"] += _call(uniform_sample, args, kwargs)[0]
            seconds, result = _call(icpns_sample, args, kwargs)
        else:
            seconds, result = _call(icpns_sample, args, kwargs)
            draws["uniform"] += _call(uniform_sample, args, kwargs)[0]
        draws["icpns"] += seconds
        totals["sampling"] += seconds
        return result

    engine.sampler.sample = sample
    return draws


def _parse_cost(events: list[ClickEvent]) -> float:
    """Seconds to decode these events from JSON lines, as a consumer would."""
    lines = [json.dumps(event.to_dict()).encode() for event in events]
    start = time.perf_counter()
    for line in lines:
        decode_event(line)
    return time.perf_counter() - start


def _stream(path: Path) -> Iterator[ClickEvent]:
    # Generated streams are already in time order: read them without holding
    # them, so peak memory is the engine's, not the file's.
    for record in iter_records(path):
        if isinstance(record, ClickEvent):
            yield record


def run_one(name: str, events: Iterable[ClickEvent], sample: list[ClickEvent]) -> None:
    """Run one stream in this process and print its figures as one JSON line."""
    totals: dict[str, float] = defaultdict(float)
    engine = Engine(EngineConfig(sampler="icpns", negatives=4))
    draws = _instrument(engine, totals)
    count = 0
    start = time.perf_counter()
    for event in events:
        engine.process(event)
        count += 1
    seconds = time.perf_counter() - start
    totals["parse"] = _parse_cost(sample) * count / max(len(sample), 1)
    figures = {
        "stream": name,
        "events": count,
        "users": len(engine.histories),
        "items": len(engine.catalog),
        "events_per_second": count / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "us_per_event": {s: 1e6 * totals[s] / count for s in STAGES},
        "icpns_over_uniform": draws["icpns"] / draws["uniform"],
        "hr@10": engine.report()["hr@10"],
    }
    print(json.dumps(figures))


def _generated(users: int, items: int, events: int, directory: Path) -> Path:
    path = directory / f"planted-{users}u-{items}i-{events}e.jsonl"
    if not path.exists():
        print(f"generating {path.name} ...", file=sys.stderr)
        PlantedCommunitySimulator(users, items, 8, seed=0).write(path, events)
    return path


def _child(args: argparse.Namespace) -> None:
    if args.stream == "ml-100k":
        events = load_replay(SAMPLE).events
        run_one("ml-100k", events, events[:20_000])
    else:
        path = Path(args.stream)
        sample = [event for _, event in zip(range(20_000), _stream(path), strict=False)]
        run_one(path.stem, _stream(path), sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", help=argparse.SUPPRESS)
    parser.add_argument("--big-users", type=int, default=100_000)
    parser.add_argument("--big-items", type=int, default=20_000)
    parser.add_argument("--big-events", type=int, default=1_000_000)
    parser.add_argument("--skip-big", action="store_true", help="ml-100k only")
    parser.add_argument(
        "--data-dir", type=Path, default=Path("/tmp/icpns-bench"), help="generated"
    )
    args = parser.parse_args()
    if args.stream is not None:
        _child(args)
        return

    streams = ["ml-100k"]
    if not args.skip_big:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        for events in (args.big_events // 2, args.big_events):
            path = _generated(args.big_users, args.big_items, events, args.data_dir)
            streams.append(str(path))

    print(f"machine: {platform.machine()}, {platform.python_version()}, 1 process")
    header = f"{'stream':<34}{'events':>9}{'ev/s':>7}{'RSS MB':>8}{'icpns/unif':>11}"
    print(header + "".join(f"{s[:9]:>10}" for s in STAGES) + "  (us/event)")
    for stream in streams:
        out = subprocess.run(
            [sys.executable, __file__, "--stream", stream],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        row = json.loads(out.strip().splitlines()[-1])
        costs = "".join(f"{row['us_per_event'][s]:>10.1f}" for s in STAGES)
        print(
            f"{row['stream']:<34}{row['events']:>9,}{row['events_per_second']:>7,.0f}"
            f"{row['peak_rss_mb']:>8.0f}{row['icpns_over_uniform']:>11.2f}{costs}"
        )


if __name__ == "__main__":
    main()
