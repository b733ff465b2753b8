"""Prompts by model: which set each model gets, and results fitted to its window."""

from __future__ import annotations

import pytest
from conftest import ScriptedChatModel, plan_text
from hypothesis import given
from hypothesis import strategies as st
from langchain_ollama import ChatOllama

from agentic_loop import LoopOptions, create_agentic_loop
from agentic_loop.core.nodes.replan import read_revision
from agentic_loop.core.parsing import degenerate_reason, repeats_step
from agentic_loop.core.prompts import CAPABLE, SMALL
from agentic_loop.core.settings import Settings, fair_shares
from agentic_loop.models import OLLAMA_CONTEXT_WINDOW, context_window
from agentic_loop.models.local import LocalChatModel

LONG = " ".join(f"fact{n}" for n in range(600))  # 4,289 characters, no line repeated


def test_every_model_but_the_embedded_one_gets_the_capable_prompts() -> None:
    assert Settings(model=ScriptedChatModel(script=[])).prompts is CAPABLE
    assert Settings(model=ChatOllama(model="llama3.2")).prompts is CAPABLE
    assert Settings(model=LocalChatModel()).prompts is SMALL


def test_the_prompt_set_is_chosen_both_ways() -> None:
    local = Settings(model=LocalChatModel(), options=LoopOptions(prompts="capable"))
    assert local.prompts is CAPABLE
    scripted = Settings(model=ScriptedChatModel(script=[]), options=LoopOptions(prompts="small"))
    assert scripted.prompts is SMALL
    with pytest.raises(ValueError, match="prompts must be 'capable' or 'small', got 'big'"):
        LoopOptions(prompts="big")  # type: ignore[arg-type]
    assert LoopOptions.build({"prompts": "small"}).prompts == "small"
    assert LoopOptions.from_metadata(LoopOptions(prompts="small").to_metadata()).prompts == "small"


def test_the_knobs_default_to_the_prompt_set() -> None:
    capable = Settings(model=ScriptedChatModel(script=[]))
    small = Settings(model=LocalChatModel())
    assert (capable.result_chars, small.result_chars) == (None, 200)
    assert small.recent_results == 2 and capable.recent_results >= 1000
    chosen = Settings(model=LocalChatModel(), options=LoopOptions(result_chars=50))
    assert chosen.result_chars == 50


def test_windows_are_read_from_the_model() -> None:
    assert context_window(ChatOllama(model="x")) == OLLAMA_CONTEXT_WINDOW
    assert context_window(ChatOllama(model="x", num_ctx=32768)) == 32768
    assert context_window(LocalChatModel()) == 2048
    assert context_window(ScriptedChatModel(script=[])) is None


async def test_the_scripted_model_receives_the_capable_prompts_and_small_on_request() -> None:
    for chosen, expected in ((None, CAPABLE), ("small", SMALL)):
        model = ScriptedChatModel(script=[plan_text("Draft the email"), "Dear Ann, ..."])
        graph = create_agentic_loop(model, prompts=chosen)
        out = await graph.ainvoke({"task": "Decline the meeting"})
        assert out["result"].status == "completed"
        assert model.prompts[1].endswith(expected.step_ask)
        assert model.asked_answer[0].endswith(expected.answer_ask)


async def dependent_step_prompt(window: int | None) -> str:
    model = ScriptedChatModel(
        script=[plan_text("Draft", "Shorten (after 1)"), LONG, "short"], context_window=window
    )
    out = await create_agentic_loop(model).ainvoke({"task": "Write"})
    assert out["result"].status == "completed"
    return model.prompts[2]


async def test_a_long_result_reaches_the_dependent_step_whole_when_the_window_allows() -> None:
    assert LONG in await dependent_step_prompt(None)
    assert LONG in await dependent_step_prompt(4096)  # 1,100 tokens at 4 characters a token


async def test_a_long_result_is_fitted_when_the_window_does_not_allow() -> None:
    prompt = await dependent_step_prompt(800)  # 800 tokens, 200 of them kept for the reply
    assert LONG not in prompt
    cut = prompt.split("Step 1 (Draft):\n", 1)[1].split("…", 1)[0]
    assert LONG.startswith(cut) and len(cut) > 1000  # as much as fits, not 200 characters
    assert len(prompt) // 4 <= 600  # the scripted model's count: 4 characters a token


def test_fitting_keeps_short_results_whole_and_shares_the_rest() -> None:
    settings = Settings(model=ScriptedChatModel(script=[], context_window=1000))

    def build(limit: int | None, results: object) -> list:
        return CAPABLE.step_messages("T", 3, 3, "Use both", list(results))  # type: ignore[call-overload]

    _, fitted = settings.fitting(build, ["short result", LONG, LONG])
    assert fitted[0] == "short result"
    assert fitted[1].endswith("…") and fitted[2].endswith("…")
    assert abs(len(fitted[1]) - len(fitted[2])) <= 1
    assert settings.count_tokens(build(None, fitted)) <= 1000 - settings.reply_tokens


@given(st.lists(st.integers(0, 5000), max_size=8), st.integers(0, 20000))
def test_fair_shares_fit_the_room_and_keep_what_fits_whole(lengths: list[int], room: int) -> None:
    shares = fair_shares(lengths, room)
    assert all(0 <= share <= length for share, length in zip(shares, lengths, strict=True))
    assert sum(shares) <= max(room, 0)
    if sum(lengths) <= room:
        assert shares == lengths


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("Here's a possible solution:", "only announces a result"),
        ("Sure, here is the result:", "only announces a result"),
        ("", "empty"),
        ("Paris.", None),
        ("The email: Dear Ann, I cannot come.", None),
    ],
)
def test_an_announcement_is_no_result(reply: str, why: str | None) -> None:
    reason = degenerate_reason(reply)
    assert (reason is None) if why is None else (why in (reason or ""))


@pytest.mark.parametrize(
    ("reply", "repeated"),
    [
        ("Compare the prices of the two hotels.", 2),
        ("3. Book the cheaper hotel", 3),
        ("Find two hotels", 1),
        ("Hotel B is cheaper at 80 euros.", None),
        ("Compare", None),  # too short to tell
    ],
)
def test_a_copy_of_a_step_is_no_result(reply: str, repeated: int | None) -> None:
    steps = [
        "Find two hotels near the beach",
        "Compare the prices of the two hotels",
        "Book the cheaper hotel",
    ]
    reason = repeats_step(reply, steps)
    assert (reason is None) if repeated is None else f"step {repeated}" in (reason or "")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "1. Use a power-saving bulb (completed)\n2. Wash cold",
            ["Use a power-saving bulb", "Wash cold"],
        ),
        ("1. Buy bread (done)\n2. Cook [adapted]", ["Buy bread", "Cook"]),
        ("1. Plan meals\n2. Shop\n3. Cook", ["Cook"]),  # the finished steps are not listed again
        ("1. Plan meals (completed)\n2. Shop", "keep"),  # nothing new: the plan stands
        ("KEEP", "keep"),
        ("DONE", "done"),
        ("I am not sure.", None),
    ],
)
def test_a_revision_holds_neither_status_words_nor_finished_steps(
    reply: str, expected: object
) -> None:
    assert read_revision(reply, ["Plan meals", "Shop!"]) == expected


def test_a_langgraph_server_run_chooses_its_prompts_in_its_context() -> None:
    from agentic_loop.faces.server import server_options

    assert server_options({}, {"prompts": "small"}).prompts == "small"
    with pytest.raises(ValueError, match="prompts must be"):
        server_options({}, {"prompts": "tiny"})
