"""Real work from every model, from the command line against the Ollama-protocol test
server: each case a new user met, where the loop (not the model) was at fault."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ANSWER_ASK, REPLAN_ASK, _instruction, run_cli
from langchain_core.messages import HumanMessage
from ollama_server import OllamaTestServer, Reply, last_prompt, step_of

from agentic_loop.core.prompts import CAPABLE, SMALL

pytestmark = pytest.mark.integration

DRAFT = " ".join(
    f"Sentence {n} of the draft declines the meeting on Thursday politely." for n in range(1, 41)
)
"""A 2,700-character draft: longer than the 200 characters small models are shown."""


def asks(request: dict[str, Any], instructions: frozenset[str]) -> bool:
    prompt = HumanMessage(last_prompt(request))
    return _instruction([prompt]) in instructions


def typed(*steps: tuple[str, list[int]]) -> str:
    return json.dumps(
        {
            "steps": [
                {"id": n, "description": text, "depends_on": deps}
                for n, (text, deps) in enumerate(steps, 1)
            ]
        }
    )


def server_for(
    plan: str,
    step: Callable[[int, str], Reply] = lambda n, prompt: Reply(f"Result of step {n}."),
    revision: str = "KEEP",
) -> Callable[[dict[str, Any]], Reply]:
    """Plans `plan` (typed, as ChatOllama asks), answers step N with `step(N, prompt)`, a
    revision request with `revision`, the answer request with "The answer.", anything
    else (an adaptation) with another way."""

    def reply(request: dict[str, Any]) -> Reply:
        if request.get("format"):
            return Reply(plan)
        if asks(request, ANSWER_ASK):
            return Reply("The answer.")
        if asks(request, REPLAN_ASK):
            return Reply(revision)
        if (n := step_of(request)) is not None:
            return step(n, last_prompt(request))
        return Reply("Did it another way.")

    return reply


def run_json(server: OllamaTestServer, tmp_path: Path, *flags: str) -> tuple[dict[str, Any], str]:
    done = run_cli(
        "run", "Decline Thursday's meeting by email", "--db", str(tmp_path / "runs.sqlite"),
        "--json", *flags, host=server.url,
    )  # fmt: skip
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout), done.stderr


EMAIL_PLAN = typed(("Write the email declining the meeting", []), ("Shorten the email", [1]))


def step_requests(server: OllamaTestServer, n: int) -> list[str]:
    return [last_prompt(r) for r in server.chat_requests() if step_of(r) == n]


def test_a_capable_model_does_the_step_and_sees_a_long_result_whole(tmp_path: Path) -> None:
    def step(n: int, prompt: str) -> Reply:
        return Reply(DRAFT if n == 1 else "Sorry, I can't make Thursday.")

    with OllamaTestServer(server_for(EMAIL_PLAN, step)) as server:
        result, _ = run_json(server, tmp_path)
        [first], [second] = step_requests(server, 1), step_requests(server, 2)
        [answer] = [last_prompt(r) for r in server.chat_requests() if asks(r, ANSWER_ASK)]
    assert result["status"] == "completed"
    assert first.endswith(CAPABLE.step_ask) and "Explain" not in first
    assert DRAFT in second  # whole: 2,700 characters fit llama's window many times over
    assert DRAFT in answer and answer.endswith(CAPABLE.answer_ask)
    assert "in the form the task calls for" in answer


def test_small_prompts_are_chosen_from_the_command_line(tmp_path: Path) -> None:
    def step(n: int, prompt: str) -> Reply:
        return Reply(DRAFT if n == 1 else "Sorry, I can't make Thursday.")

    with OllamaTestServer(server_for(EMAIL_PLAN, step)) as server:
        result, _ = run_json(server, tmp_path, "--prompts", "small")
        [first], [second] = step_requests(server, 1), step_requests(server, 2)
    assert result["status"] == "completed"
    assert first.endswith(SMALL.step_ask)
    assert DRAFT not in second and DRAFT[:199] in second  # the small model's 200 characters


def test_a_plan_cut_by_max_steps_is_reported_as_cut_not_partial(tmp_path: Path) -> None:
    plan = typed(*((f"Party task number {n}", []) for n in range(1, 11)))
    with OllamaTestServer(server_for(plan)) as server:
        done = run_cli(
            "run", "Plan a birthday party for a 10-year-old", "--max-steps", "5",
            "--db", str(tmp_path / "runs.sqlite"), host=server.url,
        )  # fmt: skip
        [planning] = [r for r in server.chat_requests() if r.get("format")]
    assert done.returncode == 0, done.stderr
    assert "Completed 5/5 steps. Planned 10 steps, kept 5 (max_steps=5)." in done.stdout
    assert "partial" not in done.stdout
    assert "at most 5" in last_prompt(planning)
    assert planning["format"]["properties"]["steps"]["maxItems"] == 5


def test_a_revision_keeps_no_status_words_and_repeats_no_finished_step(tmp_path: Path) -> None:
    plan = typed(("Turn off unused lights", []), ("Unplug idle chargers", []))
    revision = (
        "1. Turn off unused lights (completed)\n"
        "2. Use a power-saving bulb (completed)\n"
        "3. Wash clothes in cold water"
    )

    def step(n: int, prompt: str) -> Reply:
        return Reply(status=500, error="overloaded") if n == 2 else Reply(f"Did step {n}.")

    with OllamaTestServer(server_for(plan, step, revision)) as server:
        result, stderr = run_json(server, tmp_path, "--max-steps", "3", "--max-parallel", "1")
    described = [s["description"] for s in result["steps"]]
    assert (
        described
        == ["Turn off unused lights", "Unplug idle chargers"]
        + [
            "Use a power-saving bulb",
            "Wash clothes in cold water",
        ][: len(described) - 2]
    )
    last_plan = result["plan_versions"][-1]["steps"]
    assert not any(re.search(r"\((completed|adapted)\)", step) for step in last_plan)
    assert last_plan.count("Turn off unused lights") == 1
    counts = re.match(r".*Completed (\d+)/(\d+) steps", result["summary"])
    assert counts is not None and int(counts[2]) == len(last_plan)
    assert "Replanning gave no KEEP" not in stderr


def test_dependency_repairs_and_unreadable_revisions_stay_out_of_the_terminal(
    tmp_path: Path,
) -> None:
    plan = typed(*((f"Meal plan part {n}", [n, n + 5]) for n in range(1, 6)))

    def step(n: int, prompt: str) -> Reply:
        return Reply(status=500, error="overloaded") if n == 1 else Reply(f"Did step {n}.")

    with OllamaTestServer(server_for(plan, step, revision="I am not sure.")) as server:
        done = run_cli(
            "run", "Plan meals for a week", "--db", str(tmp_path / "runs.sqlite"), host=server.url
        )
    assert done.returncode == 0, done.stderr
    assert "depended on" not in done.stderr and "depended on" not in done.stdout
    assert "Replanning" not in done.stderr


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("Here's a possible solution:", "only announces a result"),
        ("Compare the prices of the two hotels.", "only repeats step 2"),
    ],
)
def test_a_near_empty_result_is_not_counted_as_completed(
    tmp_path: Path, reply: str, why: str
) -> None:
    plan = typed(
        ("Find two hotels near the beach", []), ("Compare the prices of the two hotels", [1])
    )

    def step(n: int, prompt: str) -> Reply:
        return Reply(reply if n == 1 else "Hotel B is cheaper.")

    with OllamaTestServer(server_for(plan, step)) as server:
        result, _ = run_json(server, tmp_path, "--replan", "never")
    first = result["steps"][0]
    assert first["status"] == "adapted"
    assert why in first["failure"]
    assert first["result"] == "Did it another way."
