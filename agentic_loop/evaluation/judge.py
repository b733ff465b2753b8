"""A judge model's score of an answer against its task's rubric: 1 to 5, with a reason.

A small rubric prompt, not `openevals`' `create_llm_as_judge`: that one works through
`with_structured_output`, which the embedded model lacks (it cannot call tools), and it
brings the OpenAI client along. Here the reply is held to a JSON schema where the model
takes one (Ollama's `format`, the embedded model's grammar: `models.default_plan_format`
tells), and read leniently where it does not: JSON, else "score: 4", "4/5" or a lone digit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field

from agentic_loop.core.parsing import clean_reply
from agentic_loop.models import default_plan_format, describe_error

LOWEST, HIGHEST = 1, 5
ANSWER_CHARS = 2000
"""Longest answer shown to the judge; the rest is cut (the embedded model's context holds
2048 tokens, prompt and reply together)."""
REASON_CHARS = 200

SCORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": REASON_CHARS},
        "score": {"type": "integer", "enum": list(range(LOWEST, HIGHEST + 1))},
    },
    "required": ["reason", "score"],
    "additionalProperties": False,
}

_SYSTEM = "You grade answers to everyday tasks fairly and briefly."
_ASK = f"""Task: {{task}}

Rubric (what a good answer does): {{rubric}}

Answer:
{{answer}}

Grade the answer against the rubric: {HIGHEST} if it does all the rubric asks, {LOWEST} if it \
does none of it or does not answer the task. Reply with JSON only: \
{{{{"reason": "<one sentence>", "score": <{LOWEST} to {HIGHEST}>}}}}"""

_SCORE_WORD = re.compile(r"\b(?:score|grade|rating)\b\W{0,5}(\d)\b", re.IGNORECASE)
_OUT_OF = re.compile(rf"\b(\d)\s*(?:/|out of)\s*{HIGHEST}\b", re.IGNORECASE)
_LONE_DIGIT = re.compile(r"^\W*(\d)\W*$")
_LOOSE = " \n,:;-–"
"""What a reason loses at its ends once the score is taken out of it."""
_WORD = re.compile(r"[^\W\d_]")


class Score(BaseModel, frozen=True):
    """A judge's grade of one answer."""

    score: int | None = Field(description=f"{LOWEST} to {HIGHEST}; None: no grade was read.")
    reason: str = Field(description="The judge's reason, or why there is no grade.")


def judge_messages(task: str, rubric: str, answer: str) -> list[BaseMessage]:
    shown = answer if len(answer) <= ANSWER_CHARS else answer[:ANSWER_CHARS] + " [...]"
    return [
        SystemMessage(_SYSTEM),
        HumanMessage(_ASK.format(task=task, rubric=rubric, answer=shown)),
    ]


def read_score(text: str) -> Score:
    """The grade in a judge's reply, read leniently: a JSON object with `score` (and
    `reason`), else "score: 4", "4/5" or "4 out of 5", else a reply that is one digit."""
    text = clean_reply(text)
    for found in re.finditer(r"\{", text):
        try:  # not strict: a line break inside a string is read as one
            data, _ = json.JSONDecoder(strict=False).raw_decode(text, found.start())
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "score" in data:
            reason = data.get("reason") or data.get("reasoning") or ""
            return _score(str(data["score"]), str(reason))
    for pattern in (_SCORE_WORD, _OUT_OF, _LONE_DIGIT):
        match = pattern.search(text)
        if match is not None:
            around = (text[: match.start()], text[match.end() :])
            rest = [part.lstrip(_LOOSE + ".").rstrip(_LOOSE) for part in around]
            return _score(match[1], " ".join(part for part in rest if _WORD.search(part)))
    return Score(score=None, reason=f"no score in the judge's reply: {_line(text)!r}")


def _score(raw: str, reason: str) -> Score:
    try:
        score = int(float(raw.strip()))
    except ValueError:
        return Score(score=None, reason=f"the judge's score is not a number: {raw!r}")
    if not LOWEST <= score <= HIGHEST:
        return Score(score=None, reason=f"the judge's score {score} is not {LOWEST} to {HIGHEST}")
    return Score(score=score, reason=_line(reason))


def _line(text: str) -> str:
    return " ".join(text.split())[:REASON_CHARS]


async def judge_answer(judge: BaseChatModel, task: str, rubric: str, answer: str) -> Score:
    """`judge`'s grade of `answer` to `task` against `rubric`. An empty answer is graded
    the lowest without asking; a judge call that fails gives no grade, saying why."""
    if not answer.strip():
        return Score(score=LOWEST, reason="no answer")
    model: Runnable[LanguageModelInput, BaseMessage] = judge
    if default_plan_format(judge) != "text":  # it takes a JSON schema as `format`
        model = judge.bind(format=SCORE_SCHEMA)
    try:
        reply = await model.ainvoke(judge_messages(task, rubric, answer))
    except Exception as exc:  # a failed grade is one task's, not the evaluation's
        return Score(score=None, reason=f"the judge failed: {describe_error(exc, judge)}")
    return read_score(reply.text)
