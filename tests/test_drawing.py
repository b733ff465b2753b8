"""Pictures of the graph and of runs, drawn locally by Graphviz, in text, and from the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ScriptedChatModel, plan_text, wait_for
from langgraph.checkpoint.memory import InMemorySaver
from typer.testing import CliRunner

from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.state import ToolCallRecord
from agentic_loop.faces.cli import app
from agentic_loop.faces.drawing import (
    COLOURS,
    DrawingError,
    duration_bar,
    format_duration,
    graph_picture,
    render,
    run_mermaid,
    run_picture,
    run_text,
)
from agentic_loop.runs.runner import run_agentic_loop
from agentic_loop.runs.store import StoredRun, load_run, open_store

runner = CliRunner()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def store_runs(db: Path) -> None:
    """Thread `mixed`: steps completed, adapted, failed, completed.
    Thread `stopped`: step 1 completed, then stopped while step 2 ran."""
    mixed = ScriptedChatModel(
        script=[
            plan_text("Find trains", "Book a hotel", "Buy tickets", "Pack"),
            "found trains",
            RuntimeError("hotel site down"),
            "booked by phone instead",  # adapt's answer
            RuntimeError("card declined"),
            RuntimeError("still declined"),  # adapt fails too
            "packed",
        ]
    )
    stopped = ScriptedChatModel(script=[plan_text("A", "B", "C"), "did A"], hold_at=3)
    async with open_store(db) as saver:
        await run_agentic_loop("Weekend trip", model=mixed, checkpointer=saver, thread_id="mixed")
        run = asyncio.create_task(
            run_agentic_loop("Stopped task", model=stopped, checkpointer=saver, thread_id="stopped")
        )
        await wait_for(lambda: stopped.held, what="step B's model call")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run


async def load(db: Path, thread_id: str) -> StoredRun:
    async with open_store(db) as saver:
        stored = await load_run(saver, thread_id)
    assert stored is not None
    return stored


@pytest.fixture
def runs_db(tmp_path: Path) -> Path:
    db = tmp_path / "runs.sqlite"
    asyncio.run(store_runs(db))
    return db


def step_nodes(source: str) -> dict[int, tuple[str, str]]:
    """Each step node of a run picture's DOT: its label and fill colour."""
    found = re.findall(r'^\tstep(\d+) \[label=<(.*)> .*fillcolor="(#\w+)"', source, re.M)
    return {int(number): (label, fill) for number, label, fill in found}


def test_graph_picture_has_every_node_and_edge() -> None:
    compiled = create_agentic_loop(ScriptedChatModel(script=[]))
    drawable = compiled.get_graph()
    lines = graph_picture(compiled).source.splitlines()
    for node_id in drawable.nodes:
        assert any(line.startswith(f"\t{node_id} [") for line in lines), node_id
    for edge in drawable.edges:
        style = " [style=dashed]" if edge.conditional else ""
        assert f"\t{edge.source} -> {edge.target}{style}" in lines
    assert "\tschedule -> execute [style=dashed]" in lines
    assert "\t__start__ -> plan" in lines
    start = next(line for line in lines if line.startswith("\t__start__ ["))
    assert "label=start" in start and "shape=oval" in start


def test_render_draws_png_and_svg_locally() -> None:
    picture = graph_picture(create_agentic_loop(ScriptedChatModel(script=[])))
    assert render(picture, "png").startswith(PNG_MAGIC)
    svg = render(picture, "svg").decode()
    assert "<svg" in svg and ">execute</text>" in svg


def test_render_without_graphviz_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    picture = graph_picture(create_agentic_loop(ScriptedChatModel(script=[])))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DrawingError, match="`dot` program was not found") as raised:
        render(picture, "png")
    assert "apt-get install graphviz" in str(raised.value)
    assert "--format mermaid or ascii" in str(raised.value)


def test_render_reports_what_a_failing_dot_printed(tmp_path: Path, monkeypatch) -> None:
    fake_dot = tmp_path / "dot"
    fake_dot.write_text("#!/bin/sh\necho 'Error: out of memory' >&2\nexit 1\n")
    fake_dot.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    picture = graph_picture(create_agentic_loop(ScriptedChatModel(script=[])))
    with pytest.raises(DrawingError, match="could not draw the picture: Error: out of memory"):
        render(picture, "svg")


def test_run_picture_shows_each_step_with_its_status_and_duration(runs_db: Path) -> None:
    stored = asyncio.run(load(runs_db, "mixed"))
    assert [step.status for step in stored.steps] == ["completed", "adapted", "failed", "completed"]
    picture = run_picture(stored)
    nodes = step_nodes(picture.source)
    assert sorted(nodes) == [1, 2, 3, 4]
    for step in stored.steps:
        label, fill = nodes[step.step_num]
        assert f"<B>{step.step_num}.</B> {step.description}<BR/>" in label
        assert f"{step.status} · {format_duration(step.duration_ms)}" in label
        assert fill == COLOURS[step.status][0]
    assert "\tstep1 -> step2" in picture.source.splitlines()
    assert "<B>Weekend trip</B>" in picture.source
    assert "partial · 4/4 steps · " in picture.source
    assert render(picture, "png").startswith(PNG_MAGIC)


def test_run_picture_of_an_unfinished_run_shows_pending_steps(runs_db: Path) -> None:
    stored = asyncio.run(load(runs_db, "stopped"))
    nodes = step_nodes(run_picture(stored).source)
    assert ["completed · " in nodes[1][0], nodes[2][0], nodes[3][0]] == [
        True,
        '<B>2.</B> B<BR/><FONT POINT-SIZE="10">pending</FONT>',
        '<B>3.</B> C<BR/><FONT POINT-SIZE="10">pending</FONT>',
    ]
    assert [nodes[n][1] for n in (1, 2, 3)] == [
        COLOURS["completed"][0],
        COLOURS["pending"][0],
        COLOURS["pending"][0],
    ]
    assert "interrupted · 1/3 steps" in run_text(stored)


def with_durations(stored: StoredRun, *durations_ms: int) -> StoredRun:
    steps = [
        step.model_copy(update={"duration_ms": ms})
        for step, ms in zip(stored.steps, durations_ms, strict=True)
    ]
    return dataclasses.replace(stored, steps=steps)


def test_run_text_has_a_line_per_step_with_a_duration_bar(runs_db: Path) -> None:
    stored = with_durations(asyncio.run(load(runs_db, "mixed")), 1200, 2400, 600, 0)
    lines = run_text(stored).splitlines()
    assert lines[0] == "Weekend trip"
    assert lines[1].startswith("partial · 4/4 steps · ")
    assert [line.split()[:4] for line in lines[2:]] == [
        ["1", "✓", "completed", "1.2"],
        ["2", "↻", "adapted", "2.4"],
        ["3", "✗", "failed", "600"],
        ["4", "✓", "completed", "0"],
    ]
    assert "  " + "█" * 10 + " " * 12 + "Find trains" in lines[2]
    assert "  " + "█" * 20 + "  Book a hotel" in lines[3]
    assert "  " + "█" * 5 + " " * 17 + "Buy tickets" in lines[4]


def test_run_mermaid_has_a_node_and_class_per_step(runs_db: Path) -> None:
    stored = with_durations(asyncio.run(load(runs_db, "stopped")), 1200)
    lines = run_mermaid(stored).splitlines()
    assert lines[:4] == [
        "---",
        'title: "Stopped task — interrupted · 1/3 steps · 1.2 s"',
        "---",
    ] + ["flowchart LR"]
    assert '    step1["1. A<br/>completed · 1.2 s"]:::completed' in lines
    assert '    step3["3. C<br/>pending"]:::pending' in lines
    assert "    step2 --> step3" in lines
    assert "    classDef failed fill:#ffcdd2,stroke:#c62828,color:#5c1010" in lines


def test_labels_are_escaped(runs_db: Path) -> None:
    stored = asyncio.run(load(runs_db, "stopped"))
    tricky = 'Say <b>"hi" & #1\\n'
    stored = dataclasses.replace(stored, task=tricky, plan=[tricky, "B", "C"])
    picture = run_picture(stored)
    assert '<B>1.</B> Say &lt;b&gt;"hi" &amp; #1\\n<BR/>' in step_nodes(picture.source)[1][0]
    assert "Say &lt;b&gt;&quot;hi&quot; &amp; #1\\n</text>" in render(picture, "svg").decode()
    assert '    step1["1. Say #60;b#62;#34;hi#34; #38; #35;1\\n<br/>completed · ' in run_mermaid(
        stored
    )


def test_a_runs_tool_calls_are_in_its_pictures(runs_db: Path) -> None:
    stored = asyncio.run(load(runs_db, "mixed"))
    calls = [
        ToolCallRecord(tool=f"t{i}", args={}, result="r", status="success", duration_ms=i)
        for i in range(8)
    ]
    first = stored.steps[0].model_copy(update={"tool_calls": calls})
    stored = dataclasses.replace(stored, steps=[first, *stored.steps[1:]])

    label = step_nodes(run_picture(stored).source)[1][0]
    assert "completed · " in label and " · 8 tool calls" in label
    assert label.count(" · success · ") == 6 and "and 2 more" in label
    assert re.search(r"step1\[.* · 8 tool calls\"\]", run_mermaid(stored))
    assert run_text(stored).splitlines()[2].endswith("Find trains (8 tool calls)")


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0 ms"), (999, "999 ms"), (1000, "1.0 s"), (59_940, "59.9 s"), (125_000, "2 min 5 s")],
)
def test_format_duration(ms: int, text: str) -> None:
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("ms", "slowest", "bar"),
    [(0, 0, ""), (10, 10, "█" * 20), (5, 10, "█" * 10), (1, 16, "█▎"), (0, 10, "")],
)
def test_duration_bar(ms: int, slowest: int, bar: str) -> None:
    assert duration_bar(ms, slowest) == bar


async def test_notebook_use_with_an_in_memory_saver() -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A", "did B"])
    graph = create_agentic_loop(model, checkpointer=InMemorySaver())
    await graph.ainvoke({"task": "T"}, {"configurable": {"thread_id": "t"}}, durability="sync")
    # The compiled graph's checkpointer reads the run's types under strict msgpack too.
    stored = await load_run(graph.checkpointer, "t")
    assert stored is not None and stored.status == "completed"
    bundle = run_picture(stored)._repr_mimebundle_()  # what Jupyter calls to show it
    assert "image/svg+xml" in bundle and "completed · " in bundle["image/svg+xml"]


# --- the CLI -------------------------------------------------------------------------------


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_cli_writes_a_png_of_the_graph(tmp_path: Path) -> None:
    out = tmp_path / "graph.png"
    done = invoke("graph", "--format", "png", "-o", str(out))
    assert done.exit_code == 0, done.output
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert done.output.strip() == f"Wrote the graph as png to {out}"


def test_cli_refuses_png_on_stdout() -> None:
    done = invoke("graph", "--format", "png")
    assert done.exit_code == 2
    assert done.output.strip().splitlines() == [
        "error: png is binary and will not go to the terminal; pass a file with -o graph.png"
    ]


def test_cli_prints_dot_and_svg_of_the_graph() -> None:
    dot = invoke("graph", "--format", "dot")
    assert dot.exit_code == 0
    assert dot.output.startswith('digraph "graph" {') and "schedule -> execute" in dot.output
    svg = invoke("graph", "--format", "svg")
    assert svg.exit_code == 0 and "<svg" in svg.output


def test_cli_draws_a_stored_run(runs_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.svg"
    done = invoke(
        "graph", "--thread", "mixed", "--db", str(runs_db), "--format", "svg", "-o", str(out)
    )
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"Wrote the run mixed as svg to {out}"
    svg = out.read_text()
    assert "Weekend trip" in svg and "adapted · " in svg and "failed · " in svg


def test_cli_prints_a_stored_run_as_text(runs_db: Path) -> None:
    done = invoke("graph", "--thread", "stopped", "--db", str(runs_db), "--format", "ascii")
    assert done.exit_code == 0, done.output
    steps = [line.split()[:3] for line in done.output.splitlines()[2:]]
    assert steps == [["1", "✓", "completed"], ["2", "·", "pending"], ["3", "·", "pending"]]
    mermaid = invoke("graph", "--thread", "stopped", "--db", str(runs_db))
    assert mermaid.exit_code == 0 and "flowchart LR" in mermaid.output


def test_cli_unknown_thread(runs_db: Path) -> None:
    done = invoke("graph", "--thread", "nope", "--db", str(runs_db))
    assert done.exit_code == 2
    assert "no run with thread id 'nope'" in done.output
    assert "Traceback" not in done.output


def test_cli_without_graphviz(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    done = invoke("graph", "--format", "svg")
    assert done.exit_code == 2
    assert len(done.output.strip().splitlines()) == 1
    assert "install Graphviz (apt-get install graphviz" in done.output


def test_help_does_not_import_graphviz() -> None:
    code = (
        "import sys, runpy\n"
        "sys.argv = ['agentic-loop', 'graph', '--help']\n"
        "try: runpy.run_module('agentic_loop', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print('graphviz' in sys.modules, 'langgraph' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--thread" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "False False"
