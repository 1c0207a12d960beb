"""End-to-end tests of the command line: replay and evaluate on small real data."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from icpns_stream.cli import main, parse_duration
from icpns_stream.readers import load_replay

SAMPLE = Path(__file__).resolve().parents[1] / "icpns_stream" / "data" / "ml-100k.inter"


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 2,000 ml-100k clicks in time order as JSONL, plus two bad rows."""
    events = load_replay(SAMPLE).events[:2_000]
    path = tmp_path_factory.mktemp("logs") / "clicks.jsonl"
    lines = [json.dumps(event.to_dict()) for event in events]
    lines.insert(10, '{"user_id": 1, "item_id": 2, "timest')
    lines.insert(500, '{"user_id": null, "item_id": 2, "timestamp": 880000000}')
    path.write_text("\n".join(lines) + "\n")
    return path


def _decayed_most_popular_hr(path: Path, half_life: float) -> float:
    """HR@10 of the most-popular ranker recomputed from scratch at every click."""
    events = load_replay(path).events
    hits = 0.0
    for position, event in enumerate(events):
        earlier = events[:position]
        seen = {e.item_id for e in earlier}
        if event.item_id not in seen:
            continue
        mine = {e.item_id for e in earlier if e.user_id == event.user_id}
        if event.item_id in mine:
            continue
        score = dict.fromkeys(seen, 0.0)
        for e in earlier:
            score[e.item_id] += 2.0 ** (-(event.timestamp - e.timestamp) / half_life)
        target = score[event.item_id]
        others = [s for item, s in score.items() if item not in mine]
        greater = sum(s > target * (1 + 1e-9) for s in others)
        tied = sum(abs(s - target) <= target * 1e-9 for s in others) - 1
        # Expected HR@10 over the tie orders: share of tie positions within 10.
        hits += max(0, min(10 - greater, tied + 1)) / (tied + 1)
    return hits / len(events)


def test_replay_end_to_end(
    small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "r.json"
    negatives_path = tmp_path / "n.jsonl"
    dead_path = tmp_path / "bad.jsonl"
    code = main(
        [
            "replay",
            str(small_log),
            "--report-json",
            str(report_path),
            "--negatives-out",
            str(negatives_path),
            "--dead-letter",
            str(dead_path),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert (report["events"], report["skipped"]) == (2_000, 2)
    assert report["format"] == "jsonl"
    assert report["most_popular_hr@10"] == pytest.approx(
        _decayed_most_popular_hr(small_log, 30 * 86_400.0), abs=1e-9
    )

    dead = [json.loads(line) for line in dead_path.read_text().splitlines()]
    assert [d["line_number"] for d in dead] == [11, 501]
    assert all(d["reason"] for d in dead)

    # Negatives are written in event order: walk both together, so each negative
    # is checked against its user's clicks up to and including its own event.
    events = load_replay(small_log).events
    negatives = [json.loads(line) for line in negatives_path.read_text().splitlines()]
    history: dict[str, set[str]] = {}
    catalog: set[str] = set()
    expected = position = 0
    for event in events:
        history.setdefault(event.user_id, set()).add(event.item_id)
        catalog.add(event.item_id)
        # K negatives, or what is left outside the user's clicks while items are few.
        count = min(4, len(catalog) - len(history[event.user_id]))
        expected += count
        for negative in negatives[position : position + count]:
            assert set(negative) == {
                "user_id",
                "item_id",
                "positive_item_id",
                "timestamp",
                "community",
                "popularity",
                "probability",
                "fallback",
            }
            assert negative["user_id"] == event.user_id
            assert negative["positive_item_id"] == event.item_id
            assert negative["timestamp"] == event.timestamp
            assert negative["item_id"] not in history[event.user_id]
            assert 0.0 < negative["probability"] <= 1.0
            assert math.isfinite(negative["popularity"])
        position += count
    assert len(negatives) == expected
    assert report["negatives_per_event"] == expected / 2_000

    # The summary is a result, on stdout, with negatives per event to 3
    # decimals; the skipped rows are a note on stderr.
    out, err = capsys.readouterr()
    assert "replay summary (icpns)" in out and "replay summary" not in err
    assert "2 malformed rows skipped" in err
    [row] = [line for line in out.splitlines() if "negatives / event" in line]
    assert row.split("│")[2].strip() == f"{expected / 2_000:.3f}"


def test_same_seed_same_report(small_log: Path, tmp_path: Path) -> None:
    reports = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.json"
        args = ["replay", str(small_log), "--limit", "800", "--seed", "3"]
        assert main([*args, "--no-progress", "--report-json", str(path)]) == 0
        report = json.loads(path.read_text())
        for timing in ("seconds", "events_per_second"):
            report.pop(timing)
        reports.append(report)
    assert reports[0] == reports[1]
    assert reports[0]["events"] == 800


def test_evaluate_writes_table_json_and_plot(
    small_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path, plot_path = tmp_path / "e.json", tmp_path / "e.png"
    code = main(
        [
            "evaluate",
            str(small_log),
            "--samplers",
            "icpns,uniform,popularity,hard",
            "--limit",
            "600",
            "--report-json",
            str(report_path),
            "--plot",
            str(plot_path),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert list(report["samplers"]) == ["icpns", "uniform", "popularity", "hard"]
    for row in report["samplers"].values():
        assert row["events"] == 600
        assert 0.0 <= row["false_negative_rate"] <= 1.0
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The table is the result: on stdout, one row per sampler.
    out, err = capsys.readouterr()
    assert "samplers side by side" in out and "samplers side by side" not in err
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("│")]
    assert [row for row in rows if row in report["samplers"]] == [
        "icpns",
        "uniform",
        "popularity",
        "hard",
    ]


def test_generate_prints_its_summary_as_json_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_path = tmp_path / "a-directory-name-long-enough-to-pass-80-columns" / "g.jsonl"
    out_path.parent.mkdir()
    args = ["--users", "30", "--items", "20", "--communities", "2", "--events", "40"]
    assert main(["generate", *args, "--out", str(out_path), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["events"] == 40
    assert summary["events_path"] == str(out_path)
    assert len(out_path.read_text().splitlines()) == 40
    assert err == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "/no/such/file.jsonl"], "icpns-stream: error:"),
        (["replay", "README.md"], "icpns-stream: error:"),
        (
            ["replay", "icpns_stream/data/ml-100k.inter", "--format", "jsonl"],
            "icpns-stream: error: no row of",
        ),
        (
            [
                "replay",
                "README.md",
                "--format",
                "jsonl",
                "--negatives-out",
                "README.md",
            ],
            "icpns-stream: error: --negatives-out README.md is the input file",
        ),
        (
            ["replay", "README.md", "--report-json", "no/such/dir/r.json"],
            "icpns-stream: error: --report-json no/such/dir/r.json: directory",
        ),
        (
            ["evaluate", "README.md", "--plot", "plot.txt"],
            "icpns-stream: error: --plot writes PNG",
        ),
    ],
)
def test_bad_input_is_one_error_line(args: list[str], message: str) -> None:
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "icpns_stream.cli", *args, "--no-progress"],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_dead_letter_file_is_rewritten_each_run(
    small_log: Path, tmp_path: Path
) -> None:
    dead_path = tmp_path / "bad.jsonl"
    for _ in range(2):
        args = ["replay", str(small_log), "--limit", "50", "--no-progress"]
        assert main([*args, "--dead-letter", str(dead_path)]) == 0
    assert len(dead_path.read_text().splitlines()) == 2


def test_parse_duration_rejects_nonsense() -> None:
    assert parse_duration("2w") == 14 * 86_400.0
    with pytest.raises(Exception, match="positive duration"):
        parse_duration("-3d")
