"""The run service on its own: what each front end relies on, and its typed refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import ScriptedChatModel, plan_text, wait_for

from agentic_loop import LoopOptions
from agentic_loop.runs.service import (
    BadAnswer,
    BadSetup,
    Hooks,
    NotWaiting,
    RunActive,
    RunRequest,
    RunService,
    ThreadTaken,
    UnknownThread,
)


def opened(db: Path, model: ScriptedChatModel):
    return RunService.open(db, model_factory=lambda spec, options: model)


async def test_a_run_waits_for_its_review_and_answer_carries_it_on(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A", "did B"])
    async with opened(tmp_path / "runs.sqlite", model) as service:
        paused = await service.start(
            RunRequest(task="T", options=LoopOptions(review_plan=True), thread_id="t")
        )
        assert paused.result is None
        [question] = paused.waiting
        assert question.kind == "plan_review" and question.request["steps"] == ["A", "B"]
        assert (await service.run("t")).status == "awaiting review"

        done = await service.answer("t", {question.id: "approve"})
    assert done.result is not None and done.result.status == "completed"
    assert [step.result for step in done.result.steps] == ["did A", "did B"]


async def test_an_answer_that_does_not_fit_changes_nothing(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B")])
    async with opened(tmp_path / "runs.sqlite", model) as service:
        paused = await service.start(
            RunRequest(task="T", options=LoopOptions(review_plan=True), thread_id="t")
        )
        [question] = paused.waiting
        before = await service.history("t")
        with pytest.raises(BadAnswer, match="an edited plan needs 1 to"):
            await service.answer("t", {question.id: {"action": "edit", "steps": []}})
        with pytest.raises(NotWaiting, match="does not wait for an answer to 'nope'"):
            await service.answer("t", {"nope": "approve"})
        with pytest.raises(BadAnswer, match="no answer given"):
            await service.answer("t", {})
        assert await service.history("t") == before
        assert await service.questions("t") == [question]


async def test_refusals_are_typed_and_say_what_to_do(tmp_path: Path) -> None:
    model = ScriptedChatModel(script=[plan_text("A"), "did A"])
    async with opened(tmp_path / "runs.sqlite", model) as service:
        with pytest.raises(UnknownThread, match="no run with thread id 'x'"):
            await service.resume("x")
        with pytest.raises(BadSetup, match="the task is empty"):
            await service.start(RunRequest(task="  "))
        await service.start(RunRequest(task="T", thread_id="t"))
        with pytest.raises(ThreadTaken, match="resume it with `agentic-loop resume t`"):
            await service.start(RunRequest(task="T", thread_id="t"))
        with pytest.raises(NotWaiting, match="waits for no answer"):
            await service.answer("t", {"id": "approve"})
        with pytest.raises(BadSetup, match="the step must be between 1 and 1, got 2"):
            await service.resume("t", from_step=2)
        again = await service.resume("t")
    assert again.already_finished and again.result is not None


async def test_a_background_run_is_refused_a_second_runner_and_cancelled(
    tmp_path: Path,
) -> None:
    model = ScriptedChatModel(script=[plan_text("A", "B"), "did A"], hold_at=3)
    events: list[str] = []

    class Recorder:
        async def broadcast(self, event: str, data: dict) -> None:
            events.append(event)

    db = tmp_path / "runs.sqlite"
    async with opened(db, model) as service:
        request = RunRequest(task="T", thread_id="t")
        job = await service.launch(lambda: service.start(request, Hooks(progress=Recorder())), "t")
        await wait_for(lambda: model.held, what="step B's model call")
        assert service.is_running("t")
        with pytest.raises(RunActive):
            await service.resume("t")
        with pytest.raises(RunActive):
            await service.launch(lambda: service.resume("t"), "t")
        assert service.cancel("t")
        with pytest.raises(asyncio.CancelledError):
            await job
        assert not service.is_running("t") and not service.cancel("t")
        stored = await service.run("t")
    assert stored.status == "interrupted" and [s.result for s in stored.steps] == ["did A"]
    assert "agentic.step_complete" in events


async def test_one_loop_is_built_for_each_distinct_choice(tmp_path: Path) -> None:
    built: list[LoopOptions] = []

    def factory(spec: str, options: LoopOptions) -> ScriptedChatModel:
        built.append(options)
        return ScriptedChatModel(
            script=lambda messages: "1. A" if "Break" in messages[-1].text else "did A"
        )

    async with RunService.open(tmp_path / "runs.sqlite", model_factory=factory) as service:
        for n, options in enumerate(
            [
                LoopOptions(model="m"),
                LoopOptions(model="m", max_steps=3, review_plan=False),  # the run's input
                LoopOptions(model="m", max_parallel=1),  # another loop
                LoopOptions(model="other"),  # another model
                LoopOptions(model="m", max_parallel=1),
            ]
        ):
            outcome = await service.start(RunRequest(task="T", options=options, thread_id=f"t{n}"))
            assert outcome.result is not None and outcome.result.status == "completed"
        stored = await service.run("t1")
    assert [(o.model, o.max_parallel) for o in built] == [("m", 4), ("m", 1), ("other", 4)]
    assert stored.options.max_steps == 3  # recorded as the run chose, whichever loop ran it
