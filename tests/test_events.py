"""The progress events as plain functions: each constructor's item, `parse` and `step_outcome`."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from agentic_loop.core import events

LONG = " ".join(f"word{i}" for i in range(100))

# constructor, its arguments, the event's name, the payload's keys as the README lists them
CASES: list[tuple[Any, tuple[Any, ...], str, set[str]]] = [
    (
        events.plan_ready,
        ("t", "Task", ["A", "B"], [[], [1]], []),
        events.PLAN_READY,
        {"task_id", "task", "steps", "depends_on", "notes", "total"},
    ),
    (
        events.plan_failed,
        ("t", "Task", "no steps"),
        events.PLAN_FAILED,
        {"task_id", "task", "error"},
    ),
    (
        events.plan_reviewed,
        ("t", "edited", ["A"], None),
        events.PLAN_REVIEWED,
        {"task_id", "review", "steps", "total", "error"},
    ),
    (
        events.plan_revised,
        ("t", 2, 1, "replaced", ["A", "C"]),
        events.PLAN_REVISED,
        {"task_id", "version", "after_step", "change", "steps", "total"},
    ),
    (
        events.step_started,
        ("t", 1, 2, "A"),
        events.STEP_STARTED,
        {"task_id", "step", "total", "description"},
    ),
    (
        events.step_complete,
        ("t", 1, 2, "A", LONG, 40),
        events.STEP_COMPLETE,
        {"task_id", "step", "total", "description", "result", "duration_ms"},
    ),
    (
        events.step_adapted,
        ("t", 1, 2, "A", "timed out", LONG),
        events.STEP_ADAPTED,
        {"task_id", "step", "total", "description", "error", "adaptation"},
    ),
    (
        events.step_failed,
        ("t", 1, 2, "A", "timed out twice"),
        events.STEP_FAILED,
        {"task_id", "step", "total", "description", "error"},
    ),
    (
        events.step_skipped,
        ("t", 2, 2, "B", "step 1 failed"),
        events.STEP_SKIPPED,
        {"task_id", "step", "total", "description", "reason"},
    ),
    (
        events.tool_called,
        ("t", 1, "add", {"a": 2, "b": 3}),
        events.TOOL_CALLED,
        {"task_id", "step", "tool", "args"},
    ),
    (
        events.tool_result,
        ("t", 1, "add", "5", "success", 3),
        events.TOOL_RESULT,
        {"task_id", "step", "tool", "result", "status", "duration_ms"},
    ),
    (
        events.tool_cut_off,
        ("t", 1, "send", {"to": "a"}, "asked"),
        events.TOOL_CUT_OFF,
        {"task_id", "step", "tool", "args", "action"},
    ),
    (
        events.answer_ready,
        ("t", LONG, False),
        events.ANSWER_READY,
        {"task_id", "answer", "cut_short"},
    ),
    (
        events.task_complete,
        ("t", "completed", 2, LONG, LONG, 900, 10, 20),
        events.TASK_COMPLETE,
        {
            "task_id",
            "status",
            "steps_completed",
            "summary",
            "answer",
            "duration_ms",
            "tokens_in",
            "tokens_out",
        },
    ),
]

ITEM_TYPES = typing.get_args(events.ProgressEvent)


def test_every_event_has_one_case_and_one_typed_item() -> None:
    assert {name for _, _, name, _ in CASES} == events.NAMES
    assert len(CASES) == len(ITEM_TYPES) == 14


@pytest.mark.parametrize(("make", "args", "name", "keys"), CASES, ids=[c[2] for c in CASES])
def test_a_constructor_writes_the_documented_item(make, args, name, keys) -> None:
    item = make(*args)
    assert set(item) == {"event", "data"} and item["event"] == name
    assert set(item["data"]) == keys
    # Its TypedDict says the same: the name as a Literal, the payload's keys.
    (hints,) = [
        hints
        for hints in map(typing.get_type_hints, ITEM_TYPES)
        if typing.get_args(hints["event"]) == (name,)
    ]
    assert set(hints["data"].__required_keys__) == keys


@pytest.mark.parametrize(("make", "args", "name", "keys"), CASES, ids=[c[2] for c in CASES])
def test_parse_round_trips(make, args, name, keys) -> None:
    item = make(*args)
    assert events.parse(item["event"], item["data"]) == item


@pytest.mark.parametrize(("make", "args", "name", "keys"), CASES, ids=[c[2] for c in CASES])
def test_previews_are_one_line_of_at_most_preview_chars(make, args, name, keys) -> None:
    for key in {"result", "adaptation", "answer", "summary", "args"} & keys:
        text = make(*args)["data"][key]
        assert len(text) <= events.PREVIEW_CHARS and "\n" not in text
    if LONG in args:
        assert any(value == events.one_line(LONG) for value in make(*args)["data"].values())


def test_parse_leaves_other_events_alone() -> None:
    assert events.parse("my_graph.something", {"step": 1}) is None


@pytest.mark.parametrize(
    ("item", "outcome"),
    [
        (events.step_complete("t", 1, 2, "A", "did A", 5), (1, "A", "completed", "did A")),
        (events.step_adapted("t", 1, 2, "A", "boom", "did A"), (1, "A", "adapted", "did A")),
        (events.step_failed("t", 2, 2, "B", "boom twice"), (2, "B", "failed", "boom twice")),
        (events.step_skipped("t", 2, 2, "B", "no time"), (2, "B", "skipped", "no time")),
        (events.step_started("t", 1, 2, "A"), None),
        (events.tool_result("t", 1, "add", "5", "success", 3), None),
    ],
)
def test_step_outcome(item: events.ProgressEvent, outcome: tuple[Any, ...] | None) -> None:
    assert events.step_outcome(item) == outcome


async def test_the_relay_labels_each_step_end_for_on_progress() -> None:
    seen: list[tuple[str, int, int]] = []
    relay = events.ProgressRelay(lambda *args: seen.append(args))
    for item in [
        events.step_started("t", 1, 4, "A"),
        events.step_complete("t", 1, 4, "A", "did A", 5),
        events.step_adapted("t", 2, 4, "B", "boom", "did B"),
        events.step_failed("t", 3, 4, "C", "boom twice"),
        events.step_skipped("t", 4, 4, "D", "no time"),
    ]:
        await relay.deliver(item)
    assert seen == [("A", 1, 4), ("[Adapted] B", 2, 4), ("[Failed] C", 3, 4), ("[Skipped] D", 4, 4)]
