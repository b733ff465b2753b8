"""The answer and replanning from the command line, over HTTP against the Ollama-protocol
test server."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import ANSWER_ASK, REPLAN_ASK, run_cli
from ollama_server import OllamaTestServer, Reply, last_prompt, plan_or_step

pytestmark = pytest.mark.integration

TESTS = Path(__file__).parent
PLAN = ["Look up trains", "Compare prices", "Book the cheapest"]
ANSWER = "Take the 9:04 direct train; it is the cheapest at 35 euros."


def asks(request: dict[str, Any], instructions: frozenset[str]) -> bool:
    """Whether the request's prompt ends with one of these instructions (numbers aside)."""
    return re.sub(r"\d+", "#", last_prompt(request).strip().splitlines()[-1]) in instructions


def trains(revision: str = "KEEP") -> Any:
    normal = plan_or_step(PLAN)

    def reply(request: dict[str, Any]) -> Reply:
        if asks(request, ANSWER_ASK):
            return Reply(ANSWER)
        if asks(request, REPLAN_ASK):
            return Reply(revision)
        return normal(request)

    return reply


def test_a_run_prints_its_answer_and_show_and_json_carry_it(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    with OllamaTestServer(trains()) as server:
        done = run_cli("run", "Find a train to Lyon", "--db", db, "--thread", "t", host=server.url)
        shown = run_cli("show", "t", "--db", db, host=server.url)
        as_json = run_cli("show", "t", "--db", db, "--json", host=server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(f"Answer\n{ANSWER}")
    assert "Find a train to Lyon: Completed 3/3 steps." in done.stdout
    assert shown.stdout.rstrip().endswith(f"Answer\n{ANSWER}")
    assert json.loads(as_json.stdout)["answer"] == ANSWER


def test_replan_after_each_step_is_kept_with_the_run(tmp_path: Path) -> None:
    db = str(tmp_path / "runs.sqlite")
    revision = "1. Book the 9:04 train"
    with OllamaTestServer(trains(revision)) as server:
        done = run_cli(
            "run", "Find a train to Lyon", "--db", db, "--thread", "t", "--replan",
            "after_each_step", "--max-replans", "1", "--json", host=server.url,
        )  # fmt: skip
        shown = run_cli("show", "t", "--db", db, host=server.url)
        replans = [r for r in server.chat_requests() if asks(r, REPLAN_ASK)]
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [s["description"] for s in result["steps"]] == ["Look up trains", "Book the 9:04 train"]
    assert [v["change"] for v in result["plan_versions"]] == ["planned", "replaced"]
    assert len(replans) == 1  # --max-replans 1
    assert "Plan revised after step 1" in done.stderr
    assert "Plan versions" in shown.stdout
    assert "2. replaced (after step 1): Look up trains; Book the 9:04 train" in shown.stdout


def test_bad_replan_options_are_one_line(tmp_path: Path) -> None:
    for args, message in [
        (["--replan", "sometimes"], "Invalid value for '--replan'"),
        (["--max-replans", "-1"], "--max-replans must be a whole number from 0 to 1000, got '-1'"),
        (["--max-reply-tokens", "0"], "--max-reply-tokens must be a whole number from 1 to"),
    ]:
        done = run_cli("run", "T", *args, "--db", str(tmp_path / "r.sqlite"), host="127.0.0.1:9")
        assert done.returncode == 2, args
        assert message in done.stderr and "Traceback" not in done.stderr


def test_a_run_stored_before_answers_existed_shows_an_empty_answer(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    shutil.copy(TESTS / "data" / "store_v0.sqlite", db)
    shown = run_cli("show", "old-finished", "--db", str(db), "--json", host="127.0.0.1:9")
    text = run_cli("show", "old-finished", "--db", str(db), host="127.0.0.1:9")
    result = json.loads(shown.stdout)
    assert result["answer"] == "" and result["status"] == "completed"
    assert [v["change"] for v in result["plan_versions"]] == []
    assert "Answer" not in text.stdout and "Drove." in text.stdout
