"""`agentic-loop eval` and `agentic_loop.evaluation`: a task set run by each model, counted
and judged, with the scripted model, over HTTP against the Ollama test server, and with
the embedded model."""

from __future__ import annotations

import io
import itertools
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel, plan_text, run_cli
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from ollama_server import OllamaTestServer, Reply, last_prompt
from rich.console import Console
from test_local_model import pytestmark as embedded_model_marks

from agentic_loop.core.options import LoopOptions
from agentic_loop.evaluation import (
    EvalTask,
    Evaluation,
    SetupError,
    TaskFileError,
    evaluate,
    read_score,
    read_tasks,
    reply_flaw,
    shipped_tasks_path,
)
from agentic_loop.faces.scoreboard import print_evaluation

TASKS = [
    EvalTask(id="email", task="Write an email to Sam about lunch on Friday", rubric="Names Friday"),
    EvalTask(id="list", task="Make a packing list for a beach weekend", rubric="Lists sunscreen"),
]


# --- the task file ---------------------------------------------------------------------


def test_the_shipped_set_holds_twenty_everyday_tasks_or_more() -> None:
    tasks = read_tasks()
    assert len(tasks) >= 20
    assert len({task.id for task in tasks}) == len(tasks)
    assert all(task.rubric.strip() and task.task.strip() for task in tasks)
    assert read_tasks(shipped_tasks_path()) == tasks


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": "a", "task": "x"', "not JSON: Expecting ',' delimiter at column 24"),
        ('["a", "b"]', 'not a JSON object but list: write {"id": ..., ...}'),
        ('{"id": "a", "task": "x"}', "'rubric' is missing"),
        ('{"id": "", "task": "x", "rubric": "y"}', "'id' must be non-empty text, got ''"),
        ('{"id": "a", "task": 3, "rubric": "y"}', "'task' must be non-empty text, got 3"),
        (
            '{"id": "a", "task": "x", "rubric": "y", "steps": 2}',
            "unknown key 'steps': a task has id, task, rubric, max_steps",
        ),
        (
            '{"id": "a", "task": "x", "rubric": "y", "max_steps": 0}',
            "'max_steps' must be a whole number from 1 to 1000, got 0",
        ),
        (
            '{"id": "a", "task": "x", "rubric": "y", "max_steps": true}',
            "'max_steps' must be a whole number from 1 to 1000, got True",
        ),
        ('{"id": "first", "task": "x", "rubric": "y"}', "id 'first' is used already, on line 1"),
    ],
)
def test_a_bad_line_is_one_line_naming_file_and_line(
    line: str, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": "first", "task": "Do it", "rubric": "Done"}\n\n' + line + "\n")
    with pytest.raises(TaskFileError) as caught:
        read_tasks(path)
    assert str(caught.value) == f"{path}:3: {problem}"


def test_an_empty_or_missing_file_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(TaskFileError, match=r"empty\.jsonl holds no tasks"):
        read_tasks(empty)
    with pytest.raises(TaskFileError, match=r"cannot read .*nowhere\.jsonl: No such file"):
        read_tasks(tmp_path / "nowhere.jsonl")


# --- reading replies and grades ----------------------------------------------------------

PROMPT = [HumanMessage("Task: Write an email to Sam about lunch on Friday\n\nDo this step now.")]


@pytest.mark.parametrize(
    ("reply", "flaw"),
    [
        ("Hi Sam, lunch on Friday at noon?", None),
        ("Task: Write an email to Sam about lunch on Friday\nHi Sam, lunch?", "echoes the prompt"),
        ("Task: Write an email to Sam about lunch on Friday", "echoes the prompt"),
        ("Lunch!\nLunch!\nLunch!", "the reply repeats one line 3 times"),
        ("", "the reply was empty"),
    ],
)
def test_a_reply_is_flawed_as_the_loop_reads_it(reply: str, flaw: str | None) -> None:
    assert reply_flaw(AIMessage(reply), list(PROMPT)) == flaw


def test_a_reply_that_only_calls_a_tool_is_no_flaw() -> None:
    call = AIMessage("", tool_calls=[{"name": "t", "args": {}, "id": "1", "type": "tool_call"}])
    assert reply_flaw(call, list(PROMPT)) is None


@pytest.mark.parametrize(
    ("text", "score", "reason"),
    [
        ('{"reason": "Names Friday.", "score": 4}', 4, "Names Friday."),
        ('Sure: {"score": 2, "reasoning": "Vague."} Hope it helps', 2, "Vague."),
        ('{ "reason": "Fine {mostly}:\n\nDear Sam", "score" : 5} ', 5, "Fine {mostly}: Dear Sam"),
        (
            '{"reason": "Cut short',
            None,
            "no score in the judge's reply: '{\"reason\": \"Cut short'",
        ),
        ("Score: 3 - half of the rubric", 3, "half of the rubric"),
        ("It does most of it, 4/5.", 4, "It does most of it"),
        ("5", 5, ""),
        ('{"reason": "x", "score": 9}', None, "the judge's score 9 is not 1 to 5"),
        ("I like it a lot.", None, "no score in the judge's reply: 'I like it a lot.'"),
    ],
)
def test_a_grade_is_read_leniently(text: str, score: int | None, reason: str) -> None:
    read = read_score(text)
    assert (read.score, read.reason) == (score, reason)


# --- with the scripted model -----------------------------------------------------------


def first_long_line(messages: list[BaseMessage]) -> str:
    """A line of the prompt long enough that a reply copying it echoes the prompt."""
    return next(line for line in messages[-1].text.splitlines() if len(line) > 20)


def scripted_runs() -> ScriptedChatModel:
    """Two runs of two steps each, one step at a time; in the second run, the first step
    copies a line of its prompt, and the second says one thing three times (it is adapted)."""
    return ScriptedChatModel(
        script=[
            plan_text("Pick a time", "Write the email"),
            "Noon suits.",
            "Hi Sam, lunch on Friday at noon? Alex",
            plan_text("List clothes", "List the rest"),
            lambda messages: f"{first_long_line(messages)}\nShorts, shirts, swimwear.",
            "Sunscreen.\nSunscreen.\nSunscreen.",
            "Sunscreen, a towel and a hat.",  # the second step, adapted
        ],
        answer="The answer, in full.",
        tokens=5,
    )


async def test_each_run_is_counted_and_judged() -> None:
    model = scripted_runs()
    judge = ScriptedChatModel(script=lambda messages: "Score: 4. It does what the rubric asks.")
    told: list[tuple[str, int, int]] = []
    evaluation = await evaluate(
        TASKS,
        [model],
        judge=judge,
        options=LoopOptions(max_parallel=1),
        on_run=lambda run, number, total: told.append((run.task_id, number, total)),
    )
    assert told == [("email", 1, 2), ("list", 2, 2)]
    email, packing = evaluation.runs
    assert (email.model, email.status, email.steps) == ("ScriptedChatModel", "completed", 2)
    assert email.calls == 4  # the plan, two steps, the answer
    assert (email.tokens_in, email.tokens_out) == (20, 20)  # 5 and 5 a call
    assert (email.flawed, email.flaws) == (0, [])
    # The plan, two steps, the second adapted, any revision asked after it, the answer.
    assert (packing.status, packing.steps) == ("completed", 2)
    assert packing.calls == 5 + len(model.asked_revision)
    assert packing.tokens_in == packing.tokens_out == 5 * packing.calls
    assert packing.flaws == ["echoes the prompt", "the reply repeats one line 3 times"]
    assert (email.answer, email.answer_chars) == ("The answer, in full.", 20)
    assert (email.score, email.judge_reason) == (4, "It does what the rubric asks.")
    assert len(judge.prompts) == 2  # one grade a run; the judge's calls are not the runs'
    assert "Names Friday" in judge.prompts[0] and "The answer, in full." in judge.prompts[0]
    (summary,) = evaluation.summaries
    assert summary.model_dump() == {
        "model": "ScriptedChatModel",
        "runs": 2,
        "completed": 2,
        "steps": 4,
        "calls": 4 + packing.calls,
        "flawed": 2,
        "tokens_in": 20 + packing.tokens_in,
        "tokens_out": 20 + packing.tokens_out,
        "seconds": pytest.approx(email.seconds + packing.seconds),
        "answer_chars": 20.0,
        "score": 4.0,
        "graded": 2,
    }
    assert evaluation.judge == "ScriptedChatModel" and evaluation.tasks == ["email", "list"]


async def test_a_task_caps_its_own_steps_and_the_options_cap_every_task() -> None:
    plan = plan_text("A", "B", "C")
    model = ScriptedChatModel(script=[plan, "Did A.", plan, "Did A again.", "Did B."])
    short = TASKS[0].model_copy(update={"max_steps": 1})
    evaluation = await evaluate([short, TASKS[1]], [model], options=LoopOptions(max_steps=2))
    assert [run.steps for run in evaluation.runs] == [1, 2]


async def test_an_empty_answer_is_graded_lowest_without_asking_the_judge() -> None:
    judge = ScriptedChatModel(script=[])
    model = ScriptedChatModel(script=[plan_text("A"), "Did A."], answer="")
    (run,) = (await evaluate(TASKS[:1], [model], judge=judge)).runs
    assert (run.answer_chars, run.score, run.judge_reason) == (0, 1, "no answer")
    assert judge.prompts == []


async def test_a_judge_that_fails_grades_nothing_and_says_why() -> None:
    judge = ScriptedChatModel(script=[RuntimeError("judge down")])
    model = ScriptedChatModel(script=[plan_text("A"), "Did A."])
    evaluation = await evaluate(TASKS[:1], [model], judge=judge)
    (run,) = evaluation.runs
    assert (run.score, run.judge_reason) == (None, "the judge failed: RuntimeError: judge down")
    assert (evaluation.summaries[0].score, evaluation.summaries[0].graded) == (None, 0)


async def test_a_model_that_cannot_be_used_stops_the_evaluation_before_any_run() -> None:
    model = ScriptedChatModel(script=[])
    with pytest.raises(SetupError, match="unknown model 'gpt:4'"):
        await evaluate(TASKS, [model, "gpt:4"])
    assert model.prompts == []


def test_the_table_shows_task_and_model_text_as_text() -> None:
    run = {
        "model": "[red]m:x:[/]",
        "task_id": "\x1b[31mt",
        "status": "completed",
        "steps": 2,
        "calls": 4,
        "flawed": 1,
        "tokens_in": 40,
        "tokens_out": 30,
        "seconds": 1.25,
        "answer_chars": 12,
        "score": 3,
    }
    evaluation = Evaluation.model_validate(
        {
            "tasks": ["\x1b[31mt"],
            "judge": ":smile:",
            "runs": [run],
            "summaries": [
                {**run, "runs": 1, "completed": 1, "score": 3.0, "graded": 1, "answer_chars": 12}
            ],
        }
    )
    out = io.StringIO()
    print_evaluation(Console(file=out, width=200, emoji=True), evaluation, per_task=True)
    shown = out.getvalue()
    assert "[red]m:x:[/]" in shown and "\\x1b[31mt" in shown and ":smile:" in shown
    assert "\x1b" not in shown
    assert "1/1" in shown and "40/30" in shown and "1/4" in shown and "3.00 (1)" in shown


# --- the CLI, against the Ollama test server -------------------------------------------


def two_models() -> Any:
    """Model `a` answers well; model `b` starts every text reply with a line of its prompt.
    Plans are typed (Ollama's `format`) or text; the judge gives `a` 5 and `b` 2."""
    counter = itertools.count(1)
    lock = threading.Lock()

    def reply(request: dict[str, Any]) -> Reply:
        schema = request.get("format")
        wanted = schema.get("properties", {}) if isinstance(schema, dict) else {}
        with lock:
            number = next(counter)
        if "score" in wanted:
            score = 2 if "from b" in last_prompt(request) else 5
            return Reply(json.dumps({"reason": f"Graded {score}.", "score": score}))
        if "steps" in wanted:
            steps = [
                {"id": 1, "description": "Draft it", "depends_on": []},
                {"id": 2, "description": "Finish it", "depends_on": [1]},
            ]
            return Reply(json.dumps({"steps": steps}))
        own = f"1. Part {number} from {request['model']}\n2. More of part {number}"
        if request["model"] == "b":
            copied = next(line for line in last_prompt(request).splitlines() if len(line) > 20)
            return Reply(f"{copied}\n{own}")
        return Reply(own)

    return reply


def test_cli_compares_two_ollama_models_with_a_judge(tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    with OllamaTestServer(two_models(), models=("a", "b")) as server:
        done = run_cli(
            "eval", "--model", "ollama:a", "--model", "ollama:b", "--judge", "ollama:a",
            "--limit", "2", "--max-steps", "2", "--per-task", "--json", str(out),
            host=server.url, env={"COLUMNS": "160"},
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    evaluation = Evaluation.model_validate_json(out.read_text())
    assert evaluation.tasks == [task.id for task in read_tasks()[:2]]
    a, b = evaluation.summaries
    assert (a.model, a.runs, a.completed, a.steps, a.calls) == ("ollama:a", 2, 2, 4, 8)
    assert (a.tokens_in, a.tokens_out) == (8, 8)  # the test server counts 1 and 1 a call
    assert (a.flawed, a.score, a.graded) == (0, 5.0, 2)
    assert (b.model, b.completed, b.steps, b.calls) == ("ollama:b", 2, 4, 8)
    assert b.flawed == 6 and b.score == 2.0  # both steps and the answer of each run echo
    assert {flaw for run in evaluation.runs for flaw in run.flaws} == {"echoes the prompt"}
    assert "ollama:a  2/2" in done.stdout and "ollama:b  2/2" in done.stdout
    assert "6/8" in done.stdout and "5.00 (2)" in done.stdout and "2.00 (2)" in done.stdout
    assert done.stderr.count("\n") == 4 and "[4/4] ollama:b" in done.stderr


def test_cli_a_bad_task_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    tasks = tmp_path / "mine.jsonl"
    tasks.write_text('{"id": "a", "task": "Do it", "rubric": "Done"}\n{"id": "b", "task": "x"}\n')
    done = run_cli("eval", str(tasks), "--model", "ollama:a", host="http://127.0.0.1:9")
    assert done.returncode == 2
    assert done.stderr == f"error: {tasks}:2: 'rubric' is missing\n"
    assert done.stdout == ""


def test_cli_a_model_not_pulled_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with OllamaTestServer(two_models(), models=("a",)) as server:
        done = run_cli("eval", "--model", "ollama:a", "--judge", "ollama:zz", host=server.url)
        assert server.chat_requests() == []
    assert done.returncode == 2
    assert done.stderr == (
        f"error: model 'zz' is not available on the Ollama server at {server.url}: "
        "pull it with `ollama pull zz`\n"
    )


# --- the embedded model ----------------------------------------------------------------


@pytest.mark.parametrize("limit", [pytest.param("2", marks=embedded_model_marks)])
def test_cli_evaluates_the_embedded_model_on_a_few_tasks(limit: str, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    done = run_cli(
        "eval", "--model", "local", "--judge", "local", "--limit", limit, "--max-steps", "3",
        "--json", str(out), host="http://127.0.0.1:9", timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    evaluation = Evaluation.model_validate_json(out.read_text())
    (summary,) = evaluation.summaries
    assert (summary.model, summary.runs, evaluation.judge) == ("local", 2, "local")
    for run in evaluation.runs:
        assert 1 <= run.steps <= 3
        assert run.calls >= run.steps + 2  # the plan, each step, the answer
        assert run.tokens_in > run.calls * 20 and run.tokens_out > 0
        assert run.seconds > 0 and run.flawed == len(run.flaws) <= run.calls
        assert run.score in {1, 2, 3, 4, 5}, run.judge_reason  # held to the grammar
    assert summary.graded == 2
    assert "local" in done.stdout and "/2" in done.stdout
