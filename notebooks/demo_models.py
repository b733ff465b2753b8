"""Models for the notebooks: scripted by default, so they run anywhere in a second.

Set `AGENTIC_LOOP_MODEL` (`ollama:llama3.2`, `local`, `auto`) before starting Jupyter to
run the loop on a real model instead.
"""

from __future__ import annotations

import os
import re
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from agentic_loop import load_model
from agentic_loop.models import resolve_spec


def loop_model(plan: list[str], *, fail_once_at: int | None = None) -> BaseChatModel:
    """The model named by `AGENTIC_LOOP_MODEL`, else a `ScriptedLoopModel` with `plan`."""
    spec = os.environ.get("AGENTIC_LOOP_MODEL")
    if spec:
        return load_model(spec)
    return ScriptedLoopModel(plan=plan, fail_once_at=fail_once_at)


class ScriptedLoopModel(BaseChatModel):
    """Plans `plan` for any task and reports each step done; the first try of step
    `fail_once_at` raises, so the loop adapts it."""

    plan: list[str]
    fail_once_at: int | None = None
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-loop"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.calls += 1
        prompt = messages[-1].text
        if prompt.startswith("Break this task"):
            reply = "\n".join(f"{n}. {step}" for n, step in enumerate(self.plan, 1))
        elif step := re.search(r"^Step (\d+)/\d+: (.+)$", prompt, re.MULTILINE):
            if int(step[1]) == self.fail_once_at:
                self.fail_once_at = None
                raise ConnectionError("the scripted model dropped the connection")
            reply = f"Done: {step[2].lower()}."
        else:  # asked to adapt a failed step
            original = re.search(r"^Original step was: (.+)$", prompt, re.MULTILINE)
            reply = f"Done another way: {original[1].lower() if original else 'the step'}."
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


def tool_model(
    plan: list[str], tool_calls: dict[int, list[tuple[str, dict[str, Any]]]]
) -> BaseChatModel:
    """A model that calls tools in steps: the one `AGENTIC_LOOP_MODEL` names if it is on
    Ollama, else a `ScriptedToolModel` (the embedded `local` model cannot call tools)."""
    spec = os.environ.get("AGENTIC_LOOP_MODEL", "")
    if spec and resolve_spec(spec).startswith("ollama:"):
        return load_model(spec)
    return ScriptedToolModel(plan=plan, tool_calls=tool_calls)


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
        step = re.search(r"^Step (\d+)/\d+: ", prompt, re.MULTILINE)
        script = self.tool_calls.get(int(step[1]), []) if step else []
        made = sum(len(m.tool_calls) for m in messages if isinstance(m, AIMessage))
        last = messages[-1]
        if made < len(script):
            self.calls += 1
            reply = _tool_call(*script[made], len(messages))
        elif isinstance(last, ToolMessage):
            self.calls += 1
            said = _first_sentence(last.text)
            if last.status != "success":
                said = f"Left undone: {said[:1].lower()}{said[1:]}"
            reply = AIMessage(said)
        else:  # planning, a step without tools, or adapting a failed step
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


def _tool_call(name: str, args: dict[str, Any], number: int) -> AIMessage:
    call = {"name": name, "args": args, "id": f"call-{number}", "type": "tool_call"}
    return AIMessage("", tool_calls=[call])


def _all_text(messages: list[BaseMessage]) -> str:
    return "\n".join(m.text for m in messages)


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
