"""Models for the notebooks: scripted by default, so they run anywhere in a second.

Set `AGENTIC_LOOP_MODEL` (`ollama:llama3.2`, `local`, `auto`) before starting Jupyter to
run the loop on a real model instead.

The scripted models tell the loop's prompts apart by patterns made at import time from
the prompt functions themselves (`agentic_loop.core.prompts.CAPABLE`, the set every model
but the embedded one gets), never by their wording, so re-worded prompts are still
recognised.
"""

from __future__ import annotations

import os
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from agentic_loop import load_model, prompts
from agentic_loop.models import resolve_spec


def _instruction(text: str) -> str:
    """The last line of a prompt, what it asks for, with its numbers left out."""
    lines = text.strip().splitlines()
    return re.sub(r"\d+", "#", lines[-1]) if lines else ""


def _line_pattern(messages: list[BaseMessage], key: str, **samples: str | int) -> re.Pattern[str]:
    """A pattern for the line of a prompt built like `messages` that holds the sample
    value of `key`: each sample value on that line becomes a group of its name, and any
    other number there matches any number."""
    names = {str(value): name for name, value in samples.items()}
    (line,) = [line for line in messages[-1].text.splitlines() if str(samples[key]) in line]

    def part(piece: str) -> str:
        number = r"\d+"
        if piece in names:
            return f"(?P<{names[piece]}>{number if piece.isdigit() else '.+?'})"
        return number if piece.isdigit() else re.escape(piece)

    pieces = re.split("(" + "|".join(map(re.escape, names)) + r"|\d+)", line)
    return re.compile("^" + "".join(map(part, pieces)) + "$", re.MULTILINE)


ANSWER_ASK = _instruction(prompts.CAPABLE.answer_messages("T", ["1. A: a"])[-1].text)
REPLAN_ASK = _instruction(prompts.CAPABLE.replan_messages("T", ["A", "B"], ["1. A: a"], 3)[-1].text)
PLAN_LINE = _line_pattern(
    prompts.CAPABLE.plan_messages("<task>", 7301), "max_steps", max_steps=7301
)
STEP_LINE = _line_pattern(
    prompts.CAPABLE.step_messages("<task>", 7301, 9402, "<step>", []),
    "description",
    description="<step>",
    step=7301,
    task="<task>",
)
ADAPT_LINE = _line_pattern(
    prompts.CAPABLE.adapt_messages("<task>", 7301, "<step>", "<error>"),
    "description",
    description="<step>",
    error="<error>",
    task="<task>",
)
ANSWER_FOUND = re.compile(
    re.escape(prompts.CAPABLE.answer_messages("<task>", ["<found>"])[-1].text.strip())
    .replace("<task>", "(?P<task>.*?)")
    .replace("<found>", "(?P<found>.*?)"),
    re.DOTALL,
)


def loop_model(
    plan: list[str], *, fail_once_at: int | None = None, answer: str | None = None
) -> BaseChatModel:
    """The model named by `AGENTIC_LOOP_MODEL`, else a `ScriptedLoopModel` with `plan`."""
    spec = os.environ.get("AGENTIC_LOOP_MODEL")
    if spec:
        return load_model(spec)
    return ScriptedLoopModel(plan=plan, fail_once_at=fail_once_at, answer=answer)


class ScriptedLoopModel(BaseChatModel):
    """Plans `plan` for any task and reports each step done; the first try of step
    `fail_once_at` raises, so the loop adapts it.

    Asked for the run's answer, it gives `answer`, or else the results it was shown,
    strung together. Asked to replan, it answers KEEP, unless a result it is shown holds a
    text in `revisions`: then the steps left become the steps given for that text (once:
    not when they are in the prompt already)."""

    plan: list[str]
    fail_once_at: int | None = None
    answer: str | None = None
    revisions: dict[str, list[str]] = {}
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-loop"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.calls += 1
        prompt = messages[-1].text
        asks = _instruction(prompt)
        if asks == ANSWER_ASK:
            reply = self.answer or _answer_from(prompt)
        elif asks == REPLAN_ASK:
            reply = self._revision(prompt)
        elif step := STEP_LINE.search(prompt):
            if int(step["step"]) == self.fail_once_at:
                self.fail_once_at = None
                raise ConnectionError("the scripted model dropped the connection")
            reply = f"Done: {_lower_first(step['description'])}."
        elif adapt := ADAPT_LINE.search(prompt):
            reply = f"Done another way: {_lower_first(adapt['description'])}."
        elif PLAN_LINE.search(prompt):
            reply = "\n".join(f"{n}. {step}" for n, step in enumerate(self.plan, 1))
        else:
            raise ValueError(f"the scripted model has no reply to: {prompt[:80]!r}")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])

    def _revision(self, prompt: str) -> str:
        for found, steps in self.revisions.items():
            if found in prompt and not any(step in prompt for step in steps):
                return "\n".join(f"{n}. {step}" for n, step in enumerate(steps, 1))
        return "KEEP"


def tool_model(
    plan: list[str],
    tool_calls: dict[int, list[tuple[str, dict[str, Any]]]],
    *,
    revisions: dict[str, list[str]] | None = None,
    answer: str | None = None,
) -> BaseChatModel:
    """A model that calls tools in steps: the one `AGENTIC_LOOP_MODEL` names if it is on
    Ollama, else a `ScriptedToolModel` (the embedded `local` model cannot call tools)."""
    spec = os.environ.get("AGENTIC_LOOP_MODEL", "")
    if spec and resolve_spec(spec).startswith("ollama:"):
        return load_model(spec)
    return ScriptedToolModel(
        plan=plan, tool_calls=tool_calls, revisions=revisions or {}, answer=answer
    )


class ScriptedToolModel(ScriptedLoopModel):
    """A `ScriptedLoopModel` whose step `n` makes the calls `tool_calls[n]` one a turn,
    then reports the last result. It reads where it is from the step's conversation, so a
    step resumed after a stop carries on with the next call."""

    tool_calls: dict[int, list[tuple[str, dict[str, Any]]]]

    @property
    def _llm_type(self) -> str:
        return "scripted-tools"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        prompt = next(m.text for m in messages if isinstance(m, HumanMessage))
        step = STEP_LINE.search(prompt)
        script = self.tool_calls.get(int(step["step"]), []) if step else []
        made = sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage))
        last = messages[-1]
        if made < len(script):
            self.calls += 1
            reply = _tool_call(*script[made], len(messages))
        elif isinstance(last, ToolMessage):
            self.calls += 1
            said = _first_sentence(last.text)
            if last.status != "success":
                said = f"Left undone: {_lower_first(said)}"
            reply = AIMessage(said)
        else:  # planning, a step without tools, adapting, replanning or the answer
            return super()._generate(messages, *args, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=reply)])


def agent_model(task: str) -> BaseChatModel:
    """A tool-calling model for the outer agent: Ollama's if `AGENTIC_LOOP_MODEL` names
    one, else a `ScriptedAgentModel` that delegates `task`."""
    spec = os.environ.get("AGENTIC_LOOP_MODEL", "")
    if spec.startswith("ollama:"):
        return load_model(spec)
    return ScriptedAgentModel(task=task)


class ScriptedAgentModel(BaseChatModel):
    """An outer chat agent's model that hands `task` to `plan_and_execute`, asks for the
    run's result until it is done, then answers with the summary."""

    task: str

    @property
    def _llm_type(self) -> str:
        return "scripted-agent"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if not isinstance(last, ToolMessage):
            reply = _tool_call("plan_and_execute", {"task": self.task}, len(messages))
        elif last.name == "plan_and_execute" or "still running" in last.text:
            run_id = re.search(r"\bbg-[0-9a-f]{8}\b", _all_text(messages))
            args = {"run_id": run_id[0] if run_id else ""}
            reply = _tool_call("run_result", args, len(messages))
        else:
            reply = AIMessage(f"Here is how it went. {last.text}")
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _answer_from(prompt: str) -> str:
    """The results an answer prompt shows (lines `n. step: result`), strung together."""
    found = ANSWER_FOUND.fullmatch(prompt.strip())
    lines = found["found"].splitlines() if found else []
    results = [line.split(": ", 1)[-1].strip() for line in lines if line.strip()]
    return " ".join(results) or "Nothing came of the steps."


def _tool_call(name: str, args: dict[str, Any], number: int) -> AIMessage:
    call = {"name": name, "args": args, "id": f"call-{number}", "type": "tool_call"}
    return AIMessage("", tool_calls=[call])


def _all_text(messages: list[BaseMessage]) -> str:
    return "\n".join(m.text for m in messages)


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
