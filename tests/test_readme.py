"""The README's Python examples run as written: each ```python block is run as a script,
with the real ChatOllama client talking to the Ollama-protocol test server, and without
`LANGGRAPH_STRICT_MSGPACK`, as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ollama_server import OllamaTestServer, Reply, plan_or_step, step_of, tool_messages, tool_names

pytestmark = pytest.mark.integration

README = Path(__file__).parents[1] / "README.md"
UNREGISTERED = "Deserializing unregistered type"


def python_blocks(markdown: str) -> list[tuple[str, str]]:
    """Each ```python block of `markdown`, with the heading above it."""
    blocks = []
    for block in re.finditer(r"^```python\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL):
        headings = re.findall(r"^##+ (.+)$", markdown[: block.start()], flags=re.MULTILINE)
        blocks.append((headings[-1], block[1]))
    return blocks


EXAMPLES = python_blocks(README.read_text(encoding="utf-8"))

# What each example prints, given the replies below.
PRINTS = {
    "From Python": "completed Plan a weekend trip to the coast: Completed 2/2 steps.",
    "As a graph": "completed Book the hotel by the sea.",
    "Parallel steps, typed plans and budgets": "completed [(1, 'completed'), (2, 'completed')]",
    "Tools in steps": "1 weather {'city': 'Brighton'} success Sunny and 21 °C in Brighton.",
    "Tools cut off by a kill": "charged for A-17 / charged for A-17 / {'call-1': 'A-17'}",
    "Inside a bigger graph": "completed Book the hotel by the sea.",
    "Tools for an outer chat agent": "completed: Organise an offsite: Completed 2/2 steps.",
    "Progress events": "[('plan', None), ('execute', 1), ('execute', 2), ('answer', None)]",
}

plan_then_steps = plan_or_step(["Choose a place", "Book the hotel"])


def reply(request: dict[str, Any]) -> Reply:
    """A model for every example: the loop's plan and steps, the weather tool in step 1 when
    it is offered, and an outer agent that starts a run in the background and reads it."""
    offered, results = tool_names(request), tool_messages(request)
    if "plan_and_execute" in offered:  # the outer chat agent
        if not results:
            return Reply("", tool_calls=[("plan_and_execute", {"task": "Organise an offsite"})])
        if len(results) == 1:
            run_id = re.search(r"bg-[0-9a-f]+", results[0]["content"])
            assert run_id is not None, results[0]["content"]
            return Reply("", tool_calls=[("run_result", {"run_id": run_id[0]})])
        return Reply(f"The offsite is planned: {results[-1]['content']}")
    if "weather" in offered and step_of(request) == 1:
        return Reply("", tool_calls=[("weather", {"city": "Brighton"})])
    if "answer to the task for the person who asked" in request["messages"][-1]["content"]:
        return Reply("Book the hotel by the sea.")
    return plan_then_steps(request)


def test_the_readme_has_the_examples_it_is_tested_for() -> None:
    assert [heading for heading, _ in EXAMPLES] == list(PRINTS)


@pytest.mark.parametrize(("heading", "code"), EXAMPLES, ids=[h for h, _ in EXAMPLES])
def test_readme_example_runs_as_a_script(heading: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "LANGGRAPH_STRICT_MSGPACK"}
    with OllamaTestServer(reply, models=("llama3.2",)) as server:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env={**env, "OLLAMA_HOST": server.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert UNREGISTERED not in done.stderr, done.stderr
    assert PRINTS[heading] in done.stdout, done.stdout
