"""The ``icpns-stream`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from icpns_stream.dead_letters import DeadLetterWriter
from icpns_stream.engine import Engine, EngineConfig
from icpns_stream.exceptions import IcpnsError, InputFormatError
from icpns_stream.ground_truth import GroundTruth
from icpns_stream.ndcg_plot import plot_ndcg_curves
from icpns_stream.readers import FORMATS, ReplayLog, load_replay
from icpns_stream.replay import replay_log
from icpns_stream.sampler_comparison import SamplerRun, compare_samplers
from icpns_stream.samplers import SAMPLERS
from icpns_stream.samplers.base import Negative
from icpns_stream.simulator import PlantedCommunitySimulator

__all__ = [
    "add_engine_options",
    "add_input_options",
    "engine_config_from_args",
    "main",
    "parse_duration",
]

logger = logging.getLogger(__name__)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3_600.0, "d": 86_400.0, "w": 604_800.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_DEFAULTS = EngineConfig()


def parse_duration(text: str) -> float:
    """Return seconds from a duration: ``"90"``, ``"45s"``, ``"12h"``, ``"7d"``...

    >>> parse_duration("7d"), parse_duration("1.5h"), parse_duration("20")
    (604800.0, 5400.0, 20.0)
    """
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as 7d, 12h, 30m or 45s, got {text!r}"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def add_engine_options(
    parser: argparse.ArgumentParser, *, with_sampler: bool = True
) -> None:
    """Add the sampler and model options every engine-running command shares.

    ``with_sampler=False`` leaves out ``--sampler``, for commands that choose
    samplers otherwise.
    """
    group = parser.add_argument_group("sampler and model")
    if with_sampler:
        group.add_argument(
            "--sampler",
            choices=SAMPLERS,
            default=_DEFAULTS.sampler,
            help="negative sampler (default: %(default)s)",
        )
    group.add_argument(
        "--negatives",
        type=int,
        default=_DEFAULTS.negatives,
        metavar="K",
        help="negatives per click (default: %(default)s)",
    )
    group.add_argument(
        "--alpha",
        type=float,
        default=_DEFAULTS.alpha,
        help="exponent on decayed popularity before sampling (default: %(default)s)",
    )
    group.add_argument(
        "--half-life",
        type=parse_duration,
        default=_DEFAULTS.half_life,
        metavar="DURATION",
        help="half-life of popularity counters in event time, e.g. 7d (default: 30d)",
    )
    group.add_argument(
        "--learning-rate",
        type=float,
        default=_DEFAULTS.learning_rate,
        help="SGD learning rate of the online model (default: %(default)s)",
    )
    group.add_argument(
        "--factors",
        type=int,
        default=_DEFAULTS.n_factors,
        help="latent factors of the online model (default: %(default)s)",
    )
    group.add_argument(
        "--mix",
        type=float,
        default=_DEFAULTS.mix,
        metavar="F",
        help="share of ICPNS negatives drawn uniformly (default: %(default)s)",
    )
    group.add_argument(
        "--hard-candidates",
        type=int,
        default=_DEFAULTS.hard_candidates,
        metavar="M",
        help="uniform candidates the hard sampler scores (default: %(default)s)",
    )
    group.add_argument(
        "--refresh-every",
        type=int,
        default=_DEFAULTS.refresh_every,
        metavar="N",
        help="clicks between community refreshes (default: %(default)s)",
    )
    group.add_argument(
        "--seed", type=int, default=_DEFAULTS.seed, help="random seed (default: 0)"
    )


def engine_config_from_args(args: argparse.Namespace, **overrides: Any) -> EngineConfig:
    """Build the engine configuration from parsed `add_engine_options` options."""
    values: dict[str, Any] = {
        "sampler": getattr(args, "sampler", _DEFAULTS.sampler),
        "negatives": args.negatives,
        "alpha": args.alpha,
        "half_life": args.half_life,
        "learning_rate": args.learning_rate,
        "n_factors": args.factors,
        "seed": args.seed,
        "mix": args.mix,
        "hard_candidates": args.hard_candidates,
        "refresh_every": args.refresh_every,
    }
    values.update(overrides)
    return EngineConfig(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (IcpnsError, ValueError, OSError) as exc:
        # One clear line for the user, never a traceback for a bad input.
        print(f"icpns-stream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("icpns-stream: interrupted", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icpns-stream",
        description="Streaming In-Community Popularity Negative Sampling.",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="logging level on stderr (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_replay_parser(commands)
    _add_evaluate_parser(commands)
    _add_generate_parser(commands)
    _add_kafka_parsers(commands)
    return parser


def _add_replay_parser(commands: Any) -> None:
    replay = commands.add_parser(
        "replay",
        help="replay a logged click stream, learning online and reporting quality",
        description=(
            "Replay a logged click stream in timestamp order: rank each click "
            "before learning from it, sample explained negatives, learn online."
        ),
    )
    replay.add_argument("path", type=Path, help="logged click file")
    add_input_options(replay)
    add_engine_options(replay)
    out = replay.add_argument_group("outputs")
    out.add_argument("--report-json", type=Path, metavar="FILE", help="JSON report")
    out.add_argument(
        "--negatives-out", type=Path, metavar="FILE", help="negatives as JSONL"
    )
    out.add_argument(
        "--dead-letter", type=Path, metavar="FILE", help="malformed rows as JSONL"
    )
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    replay.set_defaults(handler=_run_replay)


def _add_evaluate_parser(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="compare samplers side by side on one stream",
        description=(
            "Train one copy of the same online model per sampler on the same "
            "events and compare ranking quality, speed and false negatives."
        ),
    )
    evaluate.add_argument("path", type=Path, help="logged click file")
    evaluate.add_argument(
        "--samplers",
        type=_sampler_list,
        default=("icpns", "uniform", "popularity", "hard"),
        metavar="LIST",
        help="comma-separated samplers (default: icpns,uniform,popularity,hard)",
    )
    add_input_options(evaluate)
    add_engine_options(evaluate, with_sampler=False)
    evaluate.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help=(
            "truth file of a generated stream: adds true-negative precision and "
            "community NMI (default: PATH's .truth.jsonl, if present)"
        ),
    )
    out = evaluate.add_argument_group("outputs")
    out.add_argument("--report-json", type=Path, metavar="FILE", help="JSON report")
    out.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="windowed NDCG@10 plot"
    )
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    evaluate.set_defaults(handler=_run_evaluate)


def _add_generate_parser(commands: Any) -> None:
    generate = commands.add_parser(
        "generate",
        help="write a synthetic click stream with planted communities",
        description=(
            "Simulate users in planted communities who are shown items popular in "
            "their community and click some. Writes the clicks as JSONL and the "
            "truth (planted communities, items shown but skipped) beside them."
        ),
    )
    generate.add_argument("--users", type=int, default=5_000, help="default: 5000")
    generate.add_argument("--items", type=int, default=2_000, help="default: 2000")
    generate.add_argument("--communities", type=int, default=8, help="default: 8")
    generate.add_argument("--events", type=int, default=200_000, help="default: 200000")
    generate.add_argument("--seed", type=int, default=0, help="default: 0")
    generate.add_argument(
        "--out", type=Path, required=True, metavar="FILE.jsonl", help="clicks file"
    )
    generate.add_argument(
        "--truth",
        type=Path,
        metavar="FILE",
        help="truth file (default: FILE.truth.jsonl beside --out)",
    )
    generate.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )
    generate.set_defaults(handler=_run_generate)


def _sampler_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SAMPLERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown sampler {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(SAMPLERS)}"
        )
    return names


def add_input_options(
    parser: argparse.ArgumentParser,
    *,
    limit_help: str = "replay only the first N events",
) -> None:
    """Add the options that say how to read a logged click file."""
    group = parser.add_argument_group("input")
    group.add_argument(
        "--format",
        default="auto",
        choices=("auto", *FORMATS),
        help="file format; auto decides from the content (default: auto)",
    )
    group.add_argument(
        "--min-rating",
        type=float,
        metavar="R",
        help="keep only rows rated R or more as clicks",
    )
    group.add_argument("--limit", type=int, metavar="N", help=limit_help)


def _add_kafka_parsers(commands: Any) -> None:
    # Imported here so the engine and the replay never need the Kafka client.
    try:
        from consumers.commands import add_parsers
    except ImportError as exc:
        logger.debug("Kafka commands unavailable: %s", exc)
        return
    add_parsers(commands)


def _check_outputs(args: argparse.Namespace, *names: str) -> None:
    """Fail before a long run, not after it, on an output that cannot be written."""
    source = args.path.resolve()
    for name in names:
        path: Path | None = getattr(args, name, None)
        if path is None:
            continue
        option = "--" + name.replace("_", "-")
        if path.resolve() == source:
            raise InputFormatError(
                f"{option} {path} is the input file; choose another output path"
            )
        if not path.parent.is_dir():
            raise InputFormatError(
                f"{option} {path}: directory {path.parent} does not exist"
            )
    plot: Path | None = getattr(args, "plot", None)
    if plot is not None and plot.suffix.lower() != ".png":
        raise InputFormatError(f"--plot writes PNG; name the file .png, got {plot}")


def _load(args: argparse.Namespace) -> ReplayLog:
    """Load the input, refusing one of which no row could be read at all."""
    log = load_replay(args.path, fmt=args.format, min_rating=args.min_rating)
    if not log.events and log.dead_letters:
        first = log.dead_letters[0]
        raise InputFormatError(
            f"no row of {args.path} could be read as {log.format} "
            f"({len(log.dead_letters)} malformed; line {first.line_number}: "
            f"{first.reason}); check --format, or leave it at auto"
        )
    return log


def _run_replay(args: argparse.Namespace) -> int:
    config = engine_config_from_args(args)
    _check_outputs(args, "report_json", "negatives_out", "dead_letter")
    log = _load(args)
    # Progress and notes go to stderr, results to stdout, so a pipe gets results.
    console = Console(stderr=True)
    if log.dead_letters:
        console.print(
            f"[yellow]{len(log.dead_letters)} malformed rows skipped[/]"
            + ("" if args.dead_letter else " (use --dead-letter FILE to keep them)")
        )
    if args.dead_letter is not None:
        with DeadLetterWriter(args.dead_letter, append=False) as writer:
            for dead in log.dead_letters:
                writer.write(dead)

    engine = Engine(config)
    with (
        _optional_jsonl(args.negatives_out) as write_negatives,
        _progress_bar(console, disabled=args.no_progress) as on_progress,
    ):
        report = replay_log(
            engine,
            log,
            limit=args.limit,
            on_negatives=write_negatives,
            on_progress=on_progress,
        )
    report["source"] = str(args.path)
    if args.report_json is not None:
        args.report_json.write_text(json.dumps(report, indent=2) + "\n")
    Console().print(_summary_table(report))
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    config = engine_config_from_args(args)
    _check_outputs(args, "report_json", "plot")
    log = _load(args)
    events = log.events if args.limit is None else log.events[: args.limit]
    # Progress and notes go to stderr, the table to stdout.
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.no_progress,
    )
    tasks = {name: progress.add_task(name, total=len(events)) for name in args.samplers}

    def on_progress(name: str, done: int, total: int) -> None:
        progress.update(tasks[name], completed=done)

    truth_path = args.truth or GroundTruth.path_for(args.path)
    truth = None
    if args.truth is not None or truth_path.exists():
        truth = GroundTruth.load(truth_path)
        console.print(f"scoring negatives against the truth in {truth_path}")

    with progress:
        runs = compare_samplers(
            events, args.samplers, config, truth=truth, on_progress=on_progress
        )

    report = {
        "source": str(args.path),
        "events": len(events),
        "skipped": len(log.dead_letters),
        "filtered": log.filtered,
        "samplers": {run.sampler: run.report for run in runs},
    }
    if args.report_json is not None:
        args.report_json.write_text(json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        plot_ndcg_curves(
            runs,
            args.plot,
            window=config.window,
            title=f"{args.path.name}: {len(events):,} events, K={config.negatives}",
        )
    Console().print(_comparison_table(runs))
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    simulator = PlantedCommunitySimulator(
        args.users, args.items, args.communities, seed=args.seed
    )
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]generate"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.no_progress,
    )
    task = progress.add_task("generate", total=args.events)

    def on_progress(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    with progress:
        summary = simulator.write(
            args.out, args.events, truth_path=args.truth, on_progress=on_progress
        )
    # Plain JSON on stdout: rich would wrap long paths and break it.
    print(json.dumps(summary.to_dict(), indent=2))
    return 0


def _comparison_table(runs: Sequence[SamplerRun]) -> Table:
    table = Table(
        title="samplers side by side (prequential, whole stream)",
        caption=(
            "FNR: share of negatives the user clicks later"
            + (
                "; TNP: share really shown and skipped"
                if runs and "true_negative_precision" in runs[0].report
                else ""
            )
        ),
    )
    with_truth = bool(runs) and "true_negative_precision" in runs[0].report
    # Short headers keep the table readable in an 80-column log.
    columns = ["sampler", "HR@10", "NDCG@10", "MRR@10", "ev/s", "FNR"]
    if with_truth:
        columns += ["TNP", "NMI"]
    for column in columns:
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for run in runs:
        r = run.report
        row = [
            run.sampler,
            f"{r['hr@10']:.4f}",
            f"{r['ndcg@10']:.4f}",
            f"{r['mrr@10']:.4f}",
            f"{r['events_per_second']:,.0f}",
            f"{r['false_negative_rate']:.4f}",
        ]
        if with_truth:
            row += [f"{r['true_negative_precision']:.4f}", f"{r['community_nmi']:.3f}"]
        table.add_row(*row)
    if runs:
        r = runs[0].report
        blanks = ["-"] * (len(columns) - 4)
        table.add_row(
            "most-popular",
            f"{r['most_popular_hr@10']:.4f}",
            f"{r['most_popular_ndcg@10']:.4f}",
            f"{r['most_popular_mrr@10']:.4f}",
            *blanks,
        )
    return table


@contextmanager
def _optional_jsonl(
    path: Path | None,
) -> Iterator[Callable[[list[Negative]], None] | None]:
    """Yield a writer of negatives as JSON lines, or None without a path."""
    if path is None:
        yield None
        return
    dumps = json.dumps
    with path.open("w", encoding="utf-8") as file:

        def write(negatives: list[Negative]) -> None:
            file.write("".join(dumps(n.to_dict()) + "\n" for n in negatives))

        yield write


@contextmanager
def _progress_bar(
    console: Console, *, disabled: bool
) -> Iterator[Callable[[int, int, Engine], None]]:
    """Yield a progress callback showing events/s and windowed NDCG@10."""
    progress = Progress(
        TextColumn("[bold]replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f} ev/s"),
        TextColumn("ndcg@10 (window) {task.fields[ndcg]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disabled,
    )
    task = progress.add_task("replay", total=None, rate=0.0, ndcg=0.0)

    def update(done: int, total: int, engine: Engine) -> None:
        speed = progress.tasks[0].speed or 0.0
        ndcg = engine.evaluator.result().get("window_ndcg@10", 0.0)
        progress.update(task, completed=done, total=total, rate=speed, ndcg=ndcg)

    with progress:
        yield update


def _summary_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"replay summary ({report['sampler']})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("events", f"{report['events']:,}"),
        ("skipped (malformed)", f"{report['skipped']:,}"),
        ("filtered (rating)", f"{report['filtered']:,}"),
        ("duplicates", f"{report['duplicates']:,}"),
        ("users / items", f"{report['users']:,} / {report['items']:,}"),
        ("communities", f"{report['communities']}"),
        ("largest community", f"{report['largest_community_share']:.1%}"),
        ("HR@10", f"{report['hr@10']:.4f}"),
        ("NDCG@10", f"{report['ndcg@10']:.4f}"),
        ("MRR@10", f"{report['mrr@10']:.4f}"),
        ("most-popular HR@10", f"{report['most_popular_hr@10']:.4f}"),
        ("most-popular NDCG@10", f"{report['most_popular_ndcg@10']:.4f}"),
        ("unseen items (misses)", f"{report['unseen_items']:,}"),
        ("negatives / event", _short_of_whole(report["negatives_per_event"])),
        ("events / s", f"{report['events_per_second']:,.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _short_of_whole(value: float) -> str:
    """Format with 3 decimals, or more where 3 would round to a whole number.

    >>> _short_of_whole(3.99936), _short_of_whole(3.99996), _short_of_whole(4.0)
    ('3.999', '3.99996', '4.000')
    """
    # Negatives per event fall short of K by little; rounding must not hide it.
    digits = 3
    while digits < 9 and value != round(value) == float(f"{value:.{digits}f}"):
        digits += 1
    return f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
