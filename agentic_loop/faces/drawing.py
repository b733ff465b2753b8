"""Pictures of the graph and of a run, drawn on this machine: no web service is called.

`graph_picture` and `run_picture` return a `graphviz.Digraph`; in a notebook it shows
inline as SVG by itself, so a cell can end with `graph_picture(graph)` or with
`run_picture(await load_run(graph.checkpointer, thread_id))`.
`render` turns a picture into PNG or SVG bytes through Graphviz's `dot` program.
`run_mermaid` and `run_text` draw a run without Graphviz, for Markdown and the terminal.
"""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any, Literal, cast

import graphviz

from agentic_loop.core.events import one_line, visible

if TYPE_CHECKING:
    from langchain_core.runnables import Runnable

    from agentic_loop.core.state import AgenticStep
    from agentic_loop.runs.records import StepStatus as Status
    from agentic_loop.runs.records import StoredRun

FONT = "Helvetica"
LABEL_CHARS = 50
BAR_WIDTH = 20
MAX_TOOL_LINES = 6
"""Tool calls listed under a step in a run picture; the rest are counted."""

# (fill, border, text) per step status: light fills, dark text.
COLOURS: dict[Status, tuple[str, str, str]] = {
    "completed": ("#c8e6c9", "#2e7d32", "#1b3d1f"),
    "adapted": ("#ffe0a3", "#e69500", "#4d3300"),
    "failed": ("#ffcdd2", "#c62828", "#5c1010"),
    "skipped": ("#f5f5f5", "#bdbdbd", "#757575"),
    "running": ("#bbdefb", "#1565c0", "#0d2a4d"),
    "pending": ("#eeeeee", "#9e9e9e", "#555555"),
    "not run": ("#f5f5f5", "#bdbdbd", "#757575"),
}
MARKS: dict[Status, str] = {
    "completed": "✓",
    "adapted": "↻",
    "failed": "✗",
    "skipped": "–",
    "running": "▶",
    "pending": "·",
    "not run": "·",
}


# `__start__` and `__end__`: small dark ovals, set apart from the nodes.
_ENDS = {"__start__": "start", "__end__": "end"}
_END_STYLE = {
    "shape": "oval",
    "style": "filled",
    "fillcolor": "#444444",
    "color": "#444444",
    "fontcolor": "white",
    "fontsize": "10",
    "height": "0.3",
}


class DrawingError(Exception):
    """A picture cannot be rendered; the message says what to do."""


def graph_ascii(graph: Runnable[Any, Any]) -> str:
    """The graph as terminal text, its self-loops (a step node starting the next step
    itself) listed below the drawing: LangChain's ASCII layout cannot draw them."""
    drawing = graph.get_graph()
    loops = [edge for edge in drawing.edges if edge.source == edge.target]
    drawing.edges = [edge for edge in drawing.edges if edge.source != edge.target]
    text = drawing.draw_ascii()
    if loops:
        text += "\nand back to itself: " + ", ".join(edge.source for edge in loops)
    return text


class Picture(graphviz.Digraph):  # type: ignore[misc]  # graphviz has no types
    """A Graphviz picture that a notebook shows as SVG, or, where Graphviz's `dot` is not
    installed, as its `fallback` text (with how to install it) instead of an error."""

    fallback: str = ""

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            return {"image/svg+xml": render(self, "svg").decode()}
        except DrawingError as exc:
            return {"text/plain": f"{self.fallback}\n({exc})"}


def graph_picture(graph: Runnable[Any, Any]) -> Picture:
    """Every node and edge of a compiled graph, top to bottom; conditional edges dashed.

    Unlike the ASCII drawing it shows edges from a node to itself (`execute` loops).
    Displays inline in a notebook (as its Mermaid text where Graphviz is missing).
    """
    drawable = graph.get_graph()
    picture = Picture(
        "graph",
        graph_attr={"rankdir": "TB", "fontname": FONT},
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fillcolor": "#ece8ff",
            "color": "#7e6bc4",
            "fontname": FONT,
        },
        edge_attr={"color": "#555555", "fontname": FONT, "fontsize": "10"},
    )
    for node in drawable.nodes.values():
        if node.id in _ENDS:
            picture.node(node.id, _ENDS[node.id], **_END_STYLE)
        else:
            picture.node(node.id, _html(_dot_text(node.name)))
    for edge in drawable.edges:
        picture.edge(
            edge.source,
            edge.target,
            label=_html(_dot_text(str(edge.data))) if edge.data else None,
            style="dashed" if edge.conditional else None,
        )
    picture.fallback = drawable.draw_mermaid(with_styles=False)
    return picture


def run_picture(run: StoredRun) -> Picture:
    """A run's planned steps as a graph, each under the steps it waits for, coloured by
    its status and labelled with its duration and tool calls, under a title with the
    task, status and total time.

    `run` comes from `agentic_loop.runs.store.load_run`. Displays inline in a notebook
    (as `run_text` where Graphviz is missing).
    """
    picture = Picture(
        "run",
        graph_attr={
            "rankdir": "TB",
            "fontname": FONT,
            "labelloc": "t",
            "label": _html(_title(run)),
            "ranksep": "0.25",
            "pad": "0.2",
        },
        node_attr={
            "shape": "box",
            "style": "rounded,filled",
            "fontname": FONT,
            "fontsize": "12",
            "width": "4.6",
        },
        edge_attr={"color": "#777777", "arrowsize": "0.7"},
    )
    if not run.plan:
        picture.node("none", _html(_dot_text(_no_steps(run))), shape="plaintext")
    for number, description, step, status in _planned_steps(run):
        fill, border, text = COLOURS[status]
        label = (
            f"<B>{number}.</B> {_dot_text(_clip(description))}<BR/>"
            f'<FONT POINT-SIZE="10">{_dot_text(_step_note(step, status))}</FONT>'
        )
        for line in _tool_lines(step):
            label += f'<BR/><FONT POINT-SIZE="9">{_dot_text(line)}</FONT>'

        picture.node(f"step{number}", _html(label), fillcolor=fill, color=border, fontcolor=text)
        for before in _waits_for(run, number):
            picture.edge(f"step{before}", f"step{number}")
    picture.fallback = run_text(run)
    return picture


def run_mermaid(run: StoredRun) -> str:
    """A run as a Mermaid `flowchart LR`, one node per planned step, coloured by status."""
    lines = ["---", f"title: {_yaml_text(_title_text(run))}", "---", "flowchart LR"]
    if not run.plan:
        lines.append(f'    none["{_mermaid_text(_no_steps(run))}"]')
    for number, description, step, status in _planned_steps(run):
        note = _step_note(step, status)
        label = _mermaid_text(f"{number}. {_clip(description)}") + "<br/>" + note
        lines.append(f'    step{number}["{label}"]:::{_class(status)}')
        lines += [f"    step{before} --> step{number}" for before in _waits_for(run, number)]
    for status, (fill, border, text) in COLOURS.items():
        lines.append(f"    classDef {_class(status)} fill:{fill},stroke:{border},color:{text}")
    return "\n".join(lines) + "\n"


def run_text(run: StoredRun) -> str:
    """A run for the terminal: a line per planned step with its status mark, duration,
    a bar as long as its share of the slowest step, and its description."""
    slowest = max((step.duration_ms for step in run.steps), default=0)
    lines = [_clip(run.task, 80), _title_text(run, with_task=False)]
    if not run.plan:
        lines.append(_no_steps(run))
    for number, description, step, status in _planned_steps(run):
        duration = format_duration(step.duration_ms) if step else ""
        bar = duration_bar(step.duration_ms, slowest) if step else ""
        tools = f" ({len(step.tool_calls)} tool calls)" if step and step.tool_calls else ""
        lines.append(
            f"{number:>2} {MARKS[status]} {status:<9} {duration:>9}  "
            f"{bar:<{BAR_WIDTH}}  {_clip(description)}{tools}"
        )
    return "\n".join(lines)


def render(picture: graphviz.Digraph, fmt: Literal["png", "svg"]) -> bytes:
    """The picture as PNG or SVG bytes, drawn by the local Graphviz `dot` program."""
    if fmt == "png":  # sharp on high-density screens; SVG scales by itself
        picture = picture.copy()
        picture.graph_attr["dpi"] = "144"
    try:
        return cast(bytes, picture.pipe(format=fmt))
    except graphviz.ExecutableNotFound:
        raise DrawingError(
            "Graphviz's `dot` program was not found; install Graphviz "
            "(apt-get install graphviz, brew install graphviz) or use --format mermaid or ascii"
        ) from None
    except graphviz.CalledProcessError as exc:
        detail = " ".join((exc.stderr or b"").decode(errors="replace").split())
        raise DrawingError(f"Graphviz could not draw the picture: {detail}") from None


def _planned_steps(run: StoredRun) -> list[tuple[int, str, AgenticStep | None, Status]]:
    """Each planned step's number, description, outcome (None until it ends) and status."""
    done = {step.step_num: step for step in run.steps}
    return [
        (number, text, done.get(number), run.step_status(number))
        for number, text in enumerate(run.plan, 1)
    ]


def _waits_for(run: StoredRun, number: int) -> list[int]:
    if len(run.waits_for) == len(run.plan):
        return run.waits_for[number - 1]
    return [number - 1] if number > 1 else []


def _class(status: Status) -> str:
    return status.replace(" ", "_")  # a Mermaid class name has no spaces


def _step_note(step: AgenticStep | None, status: Status) -> str:
    """`"completed · 1.2 s"` (then `· 3 tool calls` if it made any), or the status of a
    step that has not ended (`"running"`, `"pending"`)."""
    if step is None:
        return status
    note = f"{step.status} · {format_duration(step.duration_ms)}"
    if step.tool_calls:
        count = len(step.tool_calls)
        note += f" · {count} tool call{'s' if count > 1 else ''}"
    return note


def _tool_lines(step: AgenticStep | None, limit: int = MAX_TOOL_LINES) -> list[str]:
    """A line per tool call of the step (`"note · success · 3 ms"`), at most `limit`."""
    calls = step.tool_calls if step else []
    lines = [
        f"{call.tool} · {call.status} · {format_duration(call.duration_ms)}"
        for call in calls[:limit]
    ]
    if len(calls) > limit:
        lines.append(f"and {len(calls) - limit} more")
    return lines


def format_duration(ms: int) -> str:
    """`"850 ms"`, `"1.2 s"`, `"2 min 5 s"`."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    return f"{minutes} min {seconds} s"


def duration_bar(ms: int, slowest: int, width: int = BAR_WIDTH) -> str:
    """Block characters, `width` of them for the slowest step, in eighths of a block."""
    if slowest <= 0:
        return ""
    eighths = round(ms / slowest * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[part]


def _clip(text: str, limit: int = LABEL_CHARS) -> str:
    """A preview of a task's or a step's text, its control characters written out (`\\x1b`)
    as the terminal shows them."""
    return visible(one_line(text, limit))


def _total_ms(run: StoredRun) -> int:
    """The result's total (planning included) once finished, else the steps' time so far."""
    if run.result is not None:
        return run.result.total_duration_ms
    return sum(step.duration_ms for step in run.steps)


def _title_text(run: StoredRun, *, with_task: bool = True) -> str:
    """`"<task> — completed · 3/3 steps · 4.1 s"` (without the task for the terminal)."""
    ran = sum(step.status != "skipped" for step in run.steps)
    facts = f"{run.status} · {ran}/{len(run.plan)} steps · {format_duration(_total_ms(run))}"
    return f"{_clip(run.task, 80)} — {facts}" if with_task else facts


def _title(run: StoredRun) -> str:
    return (
        f"<B>{_dot_text(_clip(run.task, 80))}</B><BR/>"
        f'<FONT POINT-SIZE="11">{_dot_text(_title_text(run, with_task=False))}</FONT>'
    )


def _no_steps(run: StoredRun) -> str:
    """What stands in for the steps of a run without a plan (the plan's error, once known)."""
    return _clip(run.result.summary, 80) if run.result else "no steps planned yet"


def _html(markup: str) -> str:
    """An HTML-like DOT label: text in it is literal once escaped by `_dot_text`."""
    return f"<{markup}>"


def _dot_text(text: str) -> str:
    """Text for an HTML-like DOT label: Graphviz parses it as XML, which has no control
    characters, so they are written out; then `<>&` become entities."""
    return escape(visible(text, lines=False), quote=False)


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label: entity codes for `#"<>&`."""
    return text.translate({ord(char): f"#{ord(char)};" for char in '#"<>&'})


def _yaml_text(text: str) -> str:
    """A double-quoted YAML scalar (JSON's string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)
