"""Numbers at the edge. Every number the CLI takes, from a flag or an environment variable,
is checked against its bounds before any model call or store write: a bad one is one line
on stderr and exit 2, never a traceback. The Python API's `Settings` and
`run_agentic_loop` raise a ValueError that names the setting."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import ScriptedChatModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentic_loop import LoopOptions, run_agentic_loop
from agentic_loop.faces.cli import app

WEEK = 7 * 24 * 3600
# (command, flag, kind, least, most, environment variable)
OPTIONS: list[tuple[str, str, type, int, int, str | None]] = [
    ("run", "--max-steps", int, 1, 1000, "AGENTIC_LOOP_MAX_STEPS"),
    ("run", "--timeout", float, 0, WEEK, None),
    ("run", "--max-tool-calls", int, 1, 1000, None),
    ("run", "--max-replans", int, 0, 1000, None),
    ("run", "--max-reply-tokens", int, 1, 10**6, None),
    ("run", "--max-parallel", int, 1, 64, "AGENTIC_LOOP_MAX_PARALLEL"),
    ("run", "--max-tokens", int, 1, 10**9, "AGENTIC_LOOP_MAX_TOKENS"),
    ("run", "--step-timeout", float, 0, WEEK, "AGENTIC_LOOP_STEP_TIMEOUT"),
    ("run", "--max-seconds", float, 0, WEEK, "AGENTIC_LOOP_MAX_SECONDS"),
    ("resume", "--timeout", float, 0, WEEK, None),
    ("resume", "--from-step", int, 1, 1000, None),
]
ENVIRONMENT = [option for option in OPTIONS if option[5]]
NOWHERE = {
    "OLLAMA_HOST": "127.0.0.1:9",  # nothing listens: only a check made before any call answers
    "AGENTIC_LOOP_MODEL": "ollama:test-model",
    **{option[5]: None for option in ENVIRONMENT},
}


def accepts(kind: type, least: int, most: int, text: str) -> bool:
    """Whether `text` is within the documented bounds."""
    try:
        value = kind(text)
    except ValueError:
        return False
    return least <= value <= most if kind is int else 0 < value <= most


def bounds(kind: type, least: int, most: int) -> str:
    if kind is int:
        return f"a whole number from {least} to {most}"
    return f"a number of seconds above 0 and up to {most}"


def invoke(db: Path, command: str, *args: str, env: dict[str, str] | None = None) -> Any:
    first = "Plan a trip" if command == "run" else "t"
    return CliRunner().invoke(
        app, [command, first, *args, "--db", str(db)], env=NOWHERE | (env or {})
    )


def assert_refused_in_one_line(done: Any, db: Path, source: str, explained: str) -> None:
    assert done.exit_code == 2, done.output
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {source} must be {explained}, got ")
    assert done.stdout == ""
    assert not db.exists()  # nothing stored, so no model was asked either


@pytest.mark.parametrize(
    ("command", "flag", "value"),
    [
        ("run", "--max-steps", "99999999999999999999"),
        ("run", "--max-steps", "0"),
        ("run", "--max-steps", "1001"),
        ("run", "--max-steps", "ten"),
        ("run", "--timeout", "nan"),
        ("run", "--timeout", "inf"),
        ("run", "--timeout", "-1"),
        ("run", "--timeout", "0"),
        ("run", "--timeout", "604801"),
        ("run", "--max-tool-calls", "0"),
        ("run", "--max-tool-calls", "1e3"),
        ("run", "--max-replans", "-1"),
        ("run", "--max-replans", "99999999999999999999"),
        ("run", "--max-reply-tokens", "0"),
        ("run", "--max-reply-tokens", "lots"),
        ("resume", "--timeout", "nan"),
        ("resume", "--from-step", "two"),
        ("resume", "--from-step", "99999999999999999999"),
    ],
)
def test_a_bad_number_is_one_line_and_exit_2(tmp_path: Path, command, flag, value) -> None:
    db = tmp_path / "runs.sqlite"
    kind, least, most = next(o[2:5] for o in OPTIONS if o[:2] == (command, flag))
    done = invoke(db, command, f"{flag}={value}")
    assert_refused_in_one_line(done, db, flag, bounds(kind, least, most))
    assert done.stderr.endswith(f", got {value!r}\n")


@pytest.mark.parametrize("command", ["run", "resume"])
@pytest.mark.parametrize("value", ["99999999999999999999", "0", "-1", "1001", "nan", "lots"])
def test_a_bad_max_steps_in_the_environment_is_one_line(tmp_path: Path, command, value) -> None:
    db = tmp_path / "runs.sqlite"
    done = invoke(db, command, env={"AGENTIC_LOOP_MAX_STEPS": value})
    assert_refused_in_one_line(done, db, "AGENTIC_LOOP_MAX_STEPS", "a whole number from 1 to 1000")


def test_the_bounds_themselves_are_taken(tmp_path: Path) -> None:
    """Values at the bounds get past the checks, as far as the model no one serves."""
    for args in (
        ["--max-steps", "1000", "--timeout", "604800", "--max-replans", "0"],
        ["--max-tool-calls", "1000", "--max-reply-tokens", "1000000", "--timeout", "0.5"],
    ):
        done = invoke(tmp_path / "runs.sqlite", "run", *args)
        assert done.exit_code == 2
        assert "Ollama is not reachable" in done.stderr, done.stderr


NUMBERISH = st.one_of(
    st.text(),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"\A\s*[+-]?[0-9_]{0,25}(\.[0-9]*)?([eE][+-]?[0-9]{1,4})?\s*\Z"),
    st.sampled_from(["nan", "-inf", "Infinity", "1e400", "0x10", "1_000", "٣", "²", "9" * 5000]),
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # keep no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(option=st.sampled_from(OPTIONS), text=NUMBERISH)
def test_any_text_for_a_number_flag(option: tuple[Any, ...], text: str) -> None:
    command, flag, kind, least, most, _ = option
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "runs.sqlite"
        done = invoke(db, command, f"{flag}={text}")
        assert done.exit_code in (0, 1, 2), done.output
        assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
        assert "Traceback" not in done.output
        if not accepts(kind, least, most, text):
            assert_refused_in_one_line(done, db, flag, bounds(kind, least, most))


@FUZZ
@given(option=st.sampled_from(ENVIRONMENT), text=NUMBERISH.filter(lambda t: "\x00" not in t))
def test_any_text_in_a_number_variable(option: tuple[Any, ...], text: str) -> None:
    _, flag, kind, least, most, env = option
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "runs.sqlite"
        done = invoke(db, "run", env={env: text})
        assert done.exit_code in (0, 1, 2), done.output
        assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
        assert "Traceback" not in done.output
        if text.strip() and not accepts(kind, least, most, text.strip()):
            assert_refused_in_one_line(done, db, env, bounds(kind, least, most))


BAD_SETTINGS = [
    ("max_steps", 10**20),
    ("max_steps", 0),
    ("max_steps", 1001),
    ("max_steps", True),
    ("max_steps", 2.5),
    ("recent_results", -1),
    ("result_chars", 0),
    ("max_tool_calls", 0),
    ("max_tool_calls", 1001),
    ("max_replans", -1),
    ("max_replans", 10**20),
    ("max_reply_chars", 0),
    ("max_parallel", 0),
    ("max_parallel", 65),
    ("step_timeout", math.nan),
    ("step_timeout", math.inf),
    ("step_timeout", -1),
    ("step_timeout", 0),
    ("step_timeout", WEEK + 1),
    ("step_timeout", True),
    ("step_timeout", "5"),
    ("max_seconds", math.nan),
    ("max_seconds", -math.inf),
    ("max_tokens", 0),
    ("max_tokens", 10**10),
    ("max_tokens", 1.5),
]


@pytest.mark.parametrize(("name", "value"), BAD_SETTINGS)
def test_options_refuse_a_number_out_of_bounds(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be .*, got {value!r}$"):
        LoopOptions(**{name: value})


def test_options_take_the_bounds_themselves() -> None:
    LoopOptions(max_steps=1000, max_parallel=64, max_replans=0, max_tokens=10**9)
    LoopOptions(step_timeout=WEEK, max_seconds=0.001, recent_results=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_steps": 10**20}, "max_steps must be a whole number from 1 to 1000"),
        ({"max_steps": -1}, "max_steps must be a whole number from 1 to 1000"),
        ({"max_steps": True}, "max_steps must be a whole number from 1 to 1000"),
        ({"step_timeout": math.nan}, "step_timeout must be a number of seconds"),
        ({"max_seconds": math.inf}, "max_seconds must be a number of seconds"),
        ({"max_parallel": 10**20}, "max_parallel must be a whole number from 1 to 64"),
    ],
)
async def test_run_agentic_loop_refuses_before_any_model_call(
    arguments: dict[str, Any], message: str
) -> None:
    model = ScriptedChatModel(script=[])
    with pytest.raises(ValueError, match=message):
        await run_agentic_loop("Plan a trip", model=model, **arguments)
    assert model.prompts == []


async def test_run_agentic_loop_refuses_a_bad_max_steps_variable(monkeypatch) -> None:
    monkeypatch.setenv("AGENTIC_LOOP_MAX_STEPS", "99999999999999999999")
    model = ScriptedChatModel(script=[])
    with pytest.raises(ValueError, match="AGENTIC_LOOP_MAX_STEPS must be a whole number"):
        await run_agentic_loop("Plan a trip", model=model)
    assert model.prompts == []
