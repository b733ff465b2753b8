"""The messages sent to the model at each stage of a run.

They serve big models and the embedded 135M one alike, so they are short and end with one
direct instruction. Small models copy what they see: earlier results are shown one per
line, flattened, under a heading, never in the shape a reply should take, and nothing is
shown that would be worth copying back ("(none yet)")."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

SYSTEM = (
    "You are a capable assistant carrying out a task one step at a time. "
    "Answer plainly and concisely."
)


def clip(text: str, limit: int | None) -> str:
    """`text` cut to `limit` characters (None: uncut), marking the cut."""
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def plan_messages(
    task: str, max_steps: int, *, typed: bool = False, notes: bool = True
) -> list[BaseMessage]:
    """Ask for the plan: a numbered list (whose steps may carry dependency notes, unless
    `notes` is False: a 135M model only gets confused by them), or with `typed` the JSON
    of `dependencies.TypedPlan` (the model is held to its schema)."""
    if typed:
        ask = (
            f"Break this task into numbered steps (at most {max_steps}), each one short "
            "action. For each step give its id (1, 2, 3, ...), its description, and "
            "depends_on: the ids of the earlier steps whose results it needs."
        )
    else:
        ask = (
            f"Break this task into numbered steps (at most {max_steps}). "
            "Return ONLY the numbered list, one step per line, nothing else."
        )
        if notes:
            ask += (
                " A step that needs the results of particular earlier steps ends with "
                "(after N) naming them."
            )
    return [SystemMessage(SYSTEM), HumanMessage(f"{ask}\n\nTask: {task}")]


def step_messages(
    task: str,
    step_num: int,
    total: int,
    description: str,
    recent: Sequence[str],
    tools: Sequence[str] = (),
) -> list[BaseMessage]:
    earlier = "".join(f"{_one_line(line)}\n" for line in recent)
    ask = "Explain in two or three sentences how you would do this step, with its result."
    if tools:
        ask = (
            f"Carry out this step. You may call these tools: {', '.join(tools)}. "
            "When the step is done, reply without a tool call, reporting what you found or did."
        )
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"Task: {task}\n"
            f"Step {step_num}/{total}: {description}\n"
            + (f"Earlier results:\n{earlier}" if earlier else "")
            + f"\n{ask}"
        ),
    ]


def adapt_messages(task: str, step_num: int, description: str, error: str) -> list[BaseMessage]:
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"Task: {task}\n"
            f"Step {step_num} failed with error: {_one_line(error)}\n"
            f"Original step was: {description}\n\n"
            "Explain in two or three sentences how you would do this step now, with its result."
        ),
    ]


def replan_messages(
    task: str, done: Sequence[str], left: Sequence[str], max_remaining: int, budget: str = ""
) -> list[BaseMessage]:
    """Ask whether the steps left still fit, given what the finished steps found.

    `done` holds one line per finished step (its result, cut short), `left` the steps not
    run yet, and `budget` what is left of the run's budgets, if it has any."""
    finished = "\n".join(_one_line(line) for line in done) if done else "(none yet)"
    waiting = "\n".join(f"{i}. {step}" for i, step in enumerate(left, len(done) + 1))
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"Task: {task}\n"
            f"Finished steps and their results:\n{finished}\n"
            f"Steps left:\n{waiting or '(none)'}\n"
            + (f"Budget left: {budget}\n" if budget else "")
            + "\nReply KEEP if the steps left still fit these results (the usual case), DONE if "
            "the task is already complete, or else a numbered list of the steps that should "
            f"follow instead (at most {max_remaining})."
        ),
    ]


def answer_messages(task: str, results: Sequence[str]) -> list[BaseMessage]:
    """Ask for the answer to the task from what the steps found."""
    found = "\n".join(_one_line(line) for line in results) if results else "(no step succeeded)"
    return [
        SystemMessage(SYSTEM),
        HumanMessage(
            f"Task: {task}\n"
            f"What the steps found:\n{found}\n\n"
            "Write the answer to the task for the person who asked, "
            "as a short paragraph in your own words."
        ),
    ]
