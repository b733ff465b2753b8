"""Which steps wait for which: the typed plan a model writes under a JSON schema, the
dependency notes of a text plan ("(after 1, 3)"), the checks that make any plan runnable,
and which steps are ready to start."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agentic_loop.core.parsing import clean_reply, read_json

DESCRIPTION_CHARS = 300
"""Longest step description a typed plan may hold."""


class PlannedStep(BaseModel):
    """One step of a typed plan, as the model writes it."""

    id: int = Field(description="The step's number.")
    description: str = Field(description="What to do, in one sentence.")
    depends_on: list[int] = Field(
        default_factory=list, description="Ids of the steps whose results this step needs."
    )


class TypedPlan(BaseModel):
    """The reply planning asks for when the model can be held to a JSON schema."""

    steps: list[PlannedStep]


def plan_schema(max_steps: int) -> dict[str, Any]:
    """The JSON schema of a typed plan of 1 to `max_steps` steps, closed to other keys,
    for Ollama's `format` or llama.cpp's grammar. Ids are 1 to `max_steps` (an `enum`:
    llama.cpp's grammar ignores `minimum` and `maximum`)."""
    ids = {"type": "integer", "enum": list(range(1, max_steps + 1))}
    step = {
        "type": "object",
        "properties": {
            "id": ids,
            "description": {"type": "string", "maxLength": DESCRIPTION_CHARS},
            "depends_on": {"type": "array", "items": ids, "maxItems": max(max_steps - 1, 0)},
        },
        "required": ["id", "description", "depends_on"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": step, "minItems": 1, "maxItems": max_steps}
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def read_typed_plan(text: str) -> list[PlannedStep] | None:
    """The steps of a typed plan, or None if `text` is not one (not JSON, or another
    shape). Steps without words are dropped."""
    try:
        plan = TypedPlan.model_validate(read_json(clean_reply(text)))
    except (ValueError, ValidationError):
        return None
    steps = [
        step.model_copy(update={"description": " ".join(step.description.split())})
        for step in plan.steps
    ]
    return [step for step in steps if re.search(r"[^\W\d_]", step.description)]


_AFTER = re.compile(
    r"\s*[(\[]\s*(?:after|needs|depends\s+on|waits\s+for)\s+(?:steps?\s+)?"
    r"(?P<ids>\d{1,3}(?:\s*(?:,|and|&)\s*\d{1,3})*)\s*[)\]]\s*\.?\s*$",
    re.IGNORECASE,
)


def split_dependency_note(text: str) -> tuple[str, list[int]]:
    """A text plan's step without its closing dependency note, and the step numbers the
    note names: `"Choose (after 1, 3)"` gives `("Choose", [1, 3])`."""
    match = _AFTER.search(text)
    if match is None:
        return text, []
    ids = [int(n) for n in re.findall(r"\d+", match["ids"])]
    return text[: match.start()].rstrip(), ids


def sequential(count: int) -> list[list[int]]:
    """Dependencies of a plan that runs in order: each step waits on the one before."""
    return [[n - 1] if n > 1 else [] for n in range(1, count + 1)]


def checked_dependencies(
    ids: Sequence[int], stated: Sequence[Sequence[int]], cut: Sequence[int] = ()
) -> tuple[list[list[int]], list[str]]:
    """The dependencies of each step by its position in the plan (from 1), and a note for
    each one dropped: on an unknown id, on a step cut by max_steps (its id in `cut`), or
    on itself. Dependencies that go round in a cycle are broken by dropping every one on a
    later step of the plan, so each step waits only on earlier ones. When none is left,
    the plan runs in order (see `Plan.dependencies`)."""
    position: dict[int, int] = {}
    for index, step_id in enumerate(ids, 1):
        position.setdefault(step_id, index)
    notes: list[str] = []
    deps: list[list[int]] = []
    for index, wanted in enumerate(stated, 1):
        kept: list[int] = []
        for step_id in wanted:
            target = position.get(step_id)
            if target == index:
                notes.append(f"step {index} depended on itself; dropped")
            elif target is None:
                why = "was cut by max_steps" if step_id in cut else "is not in the plan"
                notes.append(f"step {index} depended on step {step_id}, which {why}; dropped")
            elif target not in kept:
                kept.append(target)
        deps.append(sorted(kept))
    if _has_cycle(deps):
        for index, wanted in enumerate(deps, 1):
            if later := [str(d) for d in wanted if d > index]:
                which = f"step {later[0]}" if len(later) == 1 else f"steps {', '.join(later)}"
                notes.append(f"step {index} waited on later {which} in a cycle; dropped")
            deps[index - 1] = [d for d in wanted if d < index]
    return deps, notes


def _has_cycle(deps: list[list[int]]) -> bool:
    placed: set[int] = set()
    while len(placed) < len(deps):
        ready = {n for n in range(1, len(deps) + 1) if set(deps[n - 1]) <= placed} - placed
        if not ready:
            return True
        placed |= ready
    return False


def ready_steps(deps: Sequence[Sequence[int]], finished: set[int], running: set[int]) -> list[int]:
    """Steps, in plan order, that have not started and whose dependencies all finished."""
    return [
        n
        for n in range(1, len(deps) + 1)
        if n not in finished and n not in running and set(deps[n - 1]) <= finished
    ]
