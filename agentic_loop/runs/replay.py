"""Replaying a recorded run: the current graph, run again with a model and tools that answer
from the run's recording (`runs.recordings`), in order, calling no model and no tool.

`RecordedChatModel` answers each model call with the reply recorded for the same call:
calls are matched by node, step and how many calls that node made for that step before
(steps run side by side, so the global order may differ), and the request it gets must be
the one recorded (its messages' kinds and text, the tools bound, the `format`). The first
request that differs raises `ReplayDiverged` with the node, the step and a unified diff.
`RecordedTool`s answer each call by the tool call id the recorded reply gave it, with the
recorded result (or error). Plan reviews and tool approvals are answered as recorded.

`replay` runs it all on a fresh in-memory checkpointer, with the run's own options and the
choices the graph made from its model (`recordings.model_traits`), then compares the steps,
the answer and the progress events with the recording's.
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    BaseCallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from agentic_loop.core.events import ProgressRelay
from agentic_loop.core.graph import create_agentic_loop
from agentic_loop.core.older_runs import question_kind
from agentic_loop.core.options import LoopOptions, ToolOptions, default_max_steps
from agentic_loop.core.state import AgenticResult
from agentic_loop.runs.recordings import Recording, load_message
from agentic_loop.runs.store import checkpointer
from agentic_loop.runs.streaming import stream_run

DIFF_CONTEXT = 3
"""Lines of context around each change in a diff."""
_VARYING = ("task_id", "duration_ms")
"""Fields of an event that differ from run to run of the same recording."""


class ReplayDiverged(BaseException):
    """The replayed run asked for something the recording does not hold: a request that
    differs from the recorded one, or one more than it recorded.

    A `BaseException`, as `asyncio.CancelledError` is, so that the loop's own handling of a
    failed model call (`adapt`) or tool call (an error for the model) does not swallow it."""

    def __init__(self, node: str, step: int | None, what: str, diff: str = "") -> None:
        self.node, self.step, self.what, self.diff = node, step, what, diff
        where = f"node {node}" + ("" if step is None else f", step {step}")
        super().__init__(f"{where}: {what}" + (f"\n{diff}" if diff else ""))


def unified(recorded: Sequence[str], replayed: Sequence[str]) -> str:
    return "\n".join(
        line.rstrip("\n")
        for line in difflib.unified_diff(
            list(recorded), list(replayed), "recorded", "replayed", n=DIFF_CONTEXT, lineterm=""
        )
    )


def request_lines(
    messages: Sequence[BaseMessage], tools: Sequence[Any], format: Any = None
) -> list[str]:
    """A model request as compared: each message's kind and text (and tool calls), the
    names of the tools bound, the `format` asked for."""
    lines: list[str] = []
    for message in messages:
        head = f"[{message.type}]"
        if isinstance(message, ToolMessage):
            head += f" {message.name} ({message.status})"
        lines.append(head)
        lines.extend(message.text.splitlines() or [""])
        for call in message.tool_calls if isinstance(message, AIMessage) else []:
            lines.append(f"  calls {call['name']} {json.dumps(call['args'], sort_keys=True)}")
    names = [_tool_name(tool) for tool in tools]
    lines.append(f"[tools] {', '.join(names) or '-'}")
    if format:
        lines.append(f"[format] {json.dumps(format, sort_keys=True)}")
    return lines


def _tool_name(tool: Any) -> str:
    if isinstance(tool, dict):
        return str(tool.get("function", tool).get("name", ""))
    return str(getattr(tool, "name", tool))


# --- the model --------------------------------------------------------------------------------


class RecordedChatModel(BaseChatModel):
    """A chat model that answers from a recording (see the module's docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    recording: Recording
    context_window: int | None = None
    """The recorded model's context window, for prompts fitted as they were."""
    max_tokens: int | None = None
    """The room the recorded model kept for a reply."""
    _calls: dict[tuple[str, int | None], list[dict[str, Any]]] = PrivateAttr(default_factory=dict)
    _used: dict[tuple[str, int | None], int] = PrivateAttr(default_factory=dict)
    answered: int = 0
    """How many calls it has answered."""
    first_divergence: ReplayDiverged | None = None
    """The first request that differed from the recording, if one did."""

    def model_post_init(self, context: Any) -> None:
        calls: dict[tuple[str, int | None], list[dict[str, Any]]] = defaultdict(list)
        for entry in self.recording.of_kind("model"):
            calls[(entry["node"], entry.get("step"))].append(entry)
        self._calls = dict(calls)

    @property
    def _llm_type(self) -> str:
        return "recorded"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        metadata = run_manager.metadata if run_manager is not None else {}
        reply = self._answer(messages, metadata, kwargs)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        metadata = run_manager.metadata if run_manager is not None else {}
        reply = self._answer(messages, metadata, kwargs)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        """The call's stream, told the call's metadata (its node and step), which LangChain
        gives `_agenerate` but not `_astream`: the run's metadata as its callbacks carry it
        (the node's), with the call's own (`step_num`) over it."""
        config = ensure_config(config)
        callbacks = config.get("callbacks")
        metadata = dict(callbacks.metadata) if isinstance(callbacks, BaseCallbackManager) else {}
        metadata.update(config.get("metadata") or {})
        return super().astream(input, config, **kwargs, _call_metadata=metadata)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """The recorded reply as one chunk. The loop streams its calls, and a stream lets a
        `ReplayDiverged` through as it is (a `BaseException` is not an error `agenerate`
        can gather)."""
        metadata = kwargs.pop("_call_metadata", None) or {}
        reply = self._answer(messages, metadata, kwargs)
        yield ChatGenerationChunk(message=_as_chunk(reply))

    def _answer(
        self, messages: list[BaseMessage], metadata: dict[str, Any], kwargs: dict[str, Any]
    ) -> AIMessage:
        node, step = str(metadata.get("langgraph_node", "")), metadata.get("step_num")
        key = (node, step)
        at = self._used.get(key, 0)
        recorded = self._calls.get(key, [])
        asked = request_lines(messages, kwargs.get("tools") or [], kwargs.get("format"))
        if at >= len(recorded):
            raise self._diverged(
                node, step, f"model call {at + 1} was not recorded", unified([], asked)
            )
        entry = recorded[at]
        self._used[key] = at + 1
        request = entry["request"]
        expected = request_lines(
            [load_message(m) for m in request["messages"]],
            request.get("tools") or [],
            request.get("format"),
        )
        if asked != expected:
            raise self._diverged(
                node, step, f"model call {at + 1} differs from the recorded one",
                unified(expected, asked),
            )  # fmt: skip
        self.answered += 1
        if entry.get("reply") is None:
            raise _recorded_error(entry.get("error") or {})
        reply = load_message(entry["reply"])
        assert isinstance(reply, AIMessage), "a model's recorded reply is an AI message"
        return reply

    def _diverged(self, *args: Any) -> ReplayDiverged:
        """The divergence, kept as the first if it is (in case something caught it)."""
        diverged = ReplayDiverged(*args)
        if self.first_divergence is None:
            self.first_divergence = diverged
        return diverged

    def left(self) -> int:
        """How many recorded calls were not asked for."""
        return sum(len(calls) - self._used.get(key, 0) for key, calls in self._calls.items())


def _as_chunk(message: AIMessage) -> AIMessageChunk:
    return AIMessageChunk(
        content=message.content,
        id=message.id,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        additional_kwargs=message.additional_kwargs,
        tool_call_chunks=[
            {
                "name": call["name"],
                "args": json.dumps(call["args"]),
                "id": call["id"],
                "index": index,
                "type": "tool_call_chunk",
            }
            for index, call in enumerate(message.tool_calls)
        ],
    )


def _recorded_error(error: dict[str, Any]) -> Exception:
    """An exception of the recorded type's name and message, for the loop to describe as
    it described the recorded one (`models.describe_error` names the type)."""
    kind = type(str(error.get("type") or "Exception"), (Exception,), {})
    return cast(Exception, kind(str(error.get("message", ""))))


# --- the tools --------------------------------------------------------------------------------


class RecordedTool(BaseTool):
    """A tool of the recorded run's name, description and schema, whose calls give what the
    recorded calls of the same id gave."""

    results: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """The recorded calls of this tool, by tool call id."""
    answered: list[int] = Field(default_factory=lambda: [0])
    """How many calls the recorded tools answered, shared by them all."""

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("a recorded tool answers tool calls only")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if not isinstance(input, dict) or input.get("type") != "tool_call":
            raise TypeError("a recorded tool answers tool calls (with their id) only")
        call_id, args = str(input.get("id")), input.get("args", {})
        entry = self.results.get(call_id)
        if entry is None:
            raise ReplayDiverged(
                "call_tool", None, f"tool call {call_id} of {self.name} was not recorded"
            )
        if entry.get("args") != args:
            raise ReplayDiverged(
                "call_tool", None, f"the arguments of tool call {call_id} ({self.name}) differ",
                unified(_json_lines(entry.get("args")), _json_lines(args)),
            )  # fmt: skip
        self.answered[0] += 1
        if entry.get("output") is None:
            raise _recorded_error(entry.get("error") or {})
        output = entry["output"]
        if "type" in output:
            recorded = load_message(output)
            content, status = recorded.content, getattr(recorded, "status", "success")
            artifact = getattr(recorded, "artifact", None)
        else:
            content, status, artifact = output.get("content", ""), "success", None
        return ToolMessage(
            content, tool_call_id=call_id, name=self.name, status=status, artifact=artifact
        )


def _json_lines(value: Any) -> list[str]:
    return json.dumps(value, indent=1, sort_keys=True).splitlines()


def recorded_tools(recording: Recording) -> list[BaseTool]:
    """The tools the recorded run's steps were offered, answering from the recording."""
    schemas: dict[str, dict[str, Any]] = {}
    for entry in recording.of_kind("model"):
        for tool in entry["request"].get("tools") or []:
            function = tool.get("function", tool)
            schemas.setdefault(function["name"], function)
    results: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for entry in recording.of_kind("tool"):
        results[str(entry.get("name"))][str(entry.get("call_id"))] = entry
    counter = [0]
    return [
        RecordedTool(
            name=name,
            description=schema.get("description", ""),
            args_schema=schema.get("parameters") or {"type": "object", "properties": {}},
            results=results.get(name, {}),
            answered=counter,
        )
        for name, schema in schemas.items()
    ]


def recorded_model(recording: Recording) -> RecordedChatModel:
    traits = recording.start.get("traits") or {}
    return RecordedChatModel(
        recording=recording,
        context_window=traits.get("context_window"),
        max_tokens=traits.get("reply_tokens"),
    )


def recorded_options(recording: Recording, tools: Sequence[BaseTool] = ()) -> LoopOptions:
    """The run's options, with what its graph chose from its model (the plan's format,
    the prompt set, the step limit) made explicit, and no tools to load by name (the
    recorded tools stand in for them)."""
    traits = recording.start.get("traits") or {}
    options = recording.loop_options
    names = {tool.name for tool in tools}
    approve = options.approve_tools
    if not names:
        approve = False
    elif not isinstance(approve, bool):
        approve = tuple(name for name in approve if name in names) or False
    return options.replace(
        tools=ToolOptions(),
        approve_tools=approve,
        review_plan=False,
        max_steps=traits.get("max_steps") or options.max_steps or default_max_steps(),
        plan_format=traits.get("plan_format") or options.plan_format,
        prompts=traits.get("prompts") or options.prompts,
    )


def recorded_input(recording: Recording) -> dict[str, Any]:
    """The run's input, as it started."""
    given = recording.start.get("input")
    return dict(given) if isinstance(given, dict) else {"task": recording.task}


class RecordedAnswers:
    """Answers plan reviews and tool approvals as the recorded run was answered: each
    question by the first answer not yet given to one like it."""

    def __init__(self, recording: Recording) -> None:
        self.left = [entry for entry in recording.entries if entry["kind"] == "answer"]

    def __call__(self, request: dict[str, Any]) -> Any:
        kind = question_kind(request)
        alike = [e for e in self.left if question_kind(e["request"]) == kind]
        same = [e for e in alike if _question(e["request"]) == _question(request)]
        if not (same or alike):
            step = request.get("step") if kind == "tool_approval" else None
            node = "approve_tools" if kind == "tool_approval" else "review"
            raise ReplayDiverged(node, step, f"the recording holds no answer to this {kind}")
        entry = (same or alike)[0]
        self.left.remove(entry)
        return entry["answer"]


def _question(request: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k not in ("task_id", "problem")}


# --- replaying and comparing ------------------------------------------------------------------


@dataclass
class ReplayReport:
    """How a replay went."""

    model_calls: int
    tool_calls: int
    diverged: ReplayDiverged | None = None
    differences: list[str] = field(default_factory=list)
    """What differs in the result or the events, each a heading and a diff."""
    finished: bool = True
    """Whether the recorded run had finished (else it replays to where it stopped)."""

    @property
    def same(self) -> bool:
        return self.diverged is None and not self.differences

    def describe(self) -> str:
        done = f"replayed {self.model_calls} model calls and {self.tool_calls} tool calls"
        if self.diverged is not None:
            return f"{done}, then the run differs from the recording at {self.diverged}"
        if self.differences:
            return f"{done}: the run differs from the recording\n" + "\n".join(self.differences)
        if not self.finished:
            return f"{done}: same steps and events, up to where the recorded run stopped"
        return f"{done}: same steps, answer and events"


class _Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def broadcast(self, event: str, data: dict[str, Any]) -> None:
        self.seen.append((event, data))


async def replay(recording: Recording) -> ReplayReport:
    """Run the recorded run again through the current graph, answered from the recording,
    and compare what it does with what the recording holds. `BadRecording` for a run that
    was run again from a step (see `Recording.check_one_branch`)."""
    recording.check_one_branch()
    tools = recorded_tools(recording)
    model = recorded_model(recording)
    graph = create_agentic_loop(
        model,
        checkpointer=checkpointer(),
        tools=tools,
        options=recorded_options(recording, tools),
    )
    events = _Events()
    answers = RecordedAnswers(recording)
    config: RunnableConfig = {"configurable": {"thread_id": f"replay-{recording.thread_id}"}}
    report = ReplayReport(0, 0, finished=recording.result is not None)
    result: AgenticResult | None = None
    try:
        result = await stream_run(
            graph,
            recorded_input(recording),
            config,
            ProgressRelay(None, events),
            "sync",
            review=answers,
            approve=answers,
        )
    except ReplayDiverged as exc:
        report.diverged = exc
    finally:
        report.diverged = report.diverged or model.first_divergence
        report.model_calls = model.answered
        report.tool_calls = tools[0].answered[0] if tools else 0  # type: ignore[attr-defined]
    if report.diverged is not None:
        return report
    if recording.result is not None and result is not None:
        report.differences += _result_differences(recording.result, result)
    report.differences += _event_differences(recording, events.seen)
    return report


def _result_lines(result: dict[str, Any]) -> list[str]:
    lines = [f"status: {result.get('status')}"]
    for step in result.get("steps", []):
        lines.append(f"step {step['step_num']} [{step['status']}] {step['description']}")
        lines.extend(f"  {line}" for line in str(step.get("result", "")).splitlines())
    lines.append("answer:")
    lines.extend(f"  {line}" for line in str(result.get("answer", "")).splitlines())
    return lines


def _result_differences(recorded: dict[str, Any], replayed: AgenticResult) -> list[str]:
    before, after = _result_lines(recorded), _result_lines(replayed.model_dump(mode="json"))
    return [] if before == after else [f"the result differs:\n{unified(before, after)}"]


def _event_lines(events: Sequence[tuple[str, dict[str, Any]]]) -> dict[Any, list[str]]:
    """Each step's events in order (steps side by side interleave differently from run to
    run), and the run's own (step None), without the fields that vary."""
    by_step: dict[Any, list[str]] = defaultdict(list)
    for name, data in events:
        kept = {k: v for k, v in data.items() if k not in _VARYING}
        by_step[data.get("step")].append(f"{name} {json.dumps(kept, sort_keys=True)}")
    return dict(by_step)


def _event_differences(
    recording: Recording, replayed: Sequence[tuple[str, dict[str, Any]]]
) -> list[str]:
    recorded = _event_lines([(e["name"], e["data"]) for e in recording.of_kind("event")])
    seen = _event_lines(replayed)
    differences = []
    for step in sorted(set(recorded) | set(seen), key=lambda s: (s is not None, s or 0)):
        before, after = recorded.get(step, []), seen.get(step, [])
        if before != after:
            whose = "the run's events" if step is None else f"step {step}'s events"
            differences.append(f"{whose} differ:\n{unified(before, after)}")
    return differences
