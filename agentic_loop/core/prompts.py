"""The messages sent to the model at each stage of a run, in two sets.

`CAPABLE` is for chat models that follow instructions (llama3.2, qwen2.5, any hosted model):
a step does the step and replies with its result in full, earlier results are shown whole
(as far as the model's window allows, see `Settings.fit`), and the answer takes the form
the task asks for.

`SMALL` is tuned for the embedded 135M model, which copies what it sees: its prompts are
short and end with one direct instruction, earlier results are flattened one per line
under a heading, never in the shape a reply should take, and nothing is shown that would
be worth copying back ("(none yet)"). It asks a step to explain how it would be done,
which a 135M model can, rather than to do it.

Both carry a step's number as `Step N/TOTAL:`, and both ask for at most `max_steps` steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agentic_loop.core.options import PromptStyle


def clip(text: str, limit: int | None) -> str:
    """`text` cut to `limit` characters (None: uncut), marking the cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True, kw_only=True)
class PromptSet:
    """How one kind of model is asked for a plan, a step, another way, a revision and the
    answer; and how much of earlier results it is shown by default."""

    name: PromptStyle
    system: str
    step_ask: str
    """The instruction a step without tools ends with."""
    tools_ask: str
    """The instruction a step with tools ends with; `{tools}` names them."""
    adapt_ask: str
    answer_ask: str
    whole_results: bool
    """Whether earlier results are shown as written (else flattened, one line each)."""
    recent_results: int | None
    """Default of `LoopOptions.recent_results`; None: every step a step depends on, and
    theirs in turn."""
    result_chars: int | None
    """Default of `LoopOptions.result_chars`; None: whole, as far as the window allows."""
    answer_result_chars: int | None
    """How much of each result the answer's prompt carries; None: whole, as far as the
    window allows."""

    def _results(self, heading: str, results: Sequence[str], none: str = "") -> str:
        if not results:
            return f"{heading}\n{none}\n" if none else ""
        if self.whole_results:
            return f"{heading}\n" + "\n\n".join(text.strip() for text in results) + "\n"
        return f"{heading}\n" + "".join(f"{_one_line(text)}\n" for text in results)

    def plan_messages(
        self, task: str, max_steps: int, *, typed: bool = False, notes: bool = True
    ) -> list[BaseMessage]:
        """Ask for the plan: a numbered list (whose steps may carry dependency notes,
        unless `notes` is False: a 135M model only gets confused by them), or with `typed`
        the JSON of `dependencies.TypedPlan` (the model is held to its schema)."""
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
        if self.whole_results:
            ask += (
                " Each step produces something the later steps or the answer use; "
                "the task's own deliverable comes from the last steps."
            )
        return [SystemMessage(self.system), HumanMessage(f"{ask}\n\nTask: {task}")]

    def step_messages(
        self,
        task: str,
        step_num: int,
        total: int,
        description: str,
        earlier: Sequence[str],
        tools: Sequence[str] = (),
    ) -> list[BaseMessage]:
        """Ask for step `step_num`'s result, given the `earlier` results it builds on."""
        ask = self.tools_ask.format(tools=", ".join(tools)) if tools else self.step_ask
        step = f"Step {step_num}/{total}: {description}\n"
        shown = self._results("Earlier results:", earlier)
        # Long results go before the step, so that the step is read right before the ask.
        body = (shown and shown + "\n") + step if self.whole_results else step + shown
        return [SystemMessage(self.system), HumanMessage(f"Task: {task}\n{body}\n{ask}")]

    def adapt_messages(
        self, task: str, step_num: int, description: str, error: str
    ) -> list[BaseMessage]:
        return [
            SystemMessage(self.system),
            HumanMessage(
                f"Task: {task}\n"
                f"Step {step_num} failed with error: {_one_line(error)}\n"
                f"Original step was: {description}\n\n{self.adapt_ask}"
            ),
        ]

    def replan_messages(
        self,
        task: str,
        done: Sequence[str],
        left: Sequence[str],
        max_remaining: int,
        budget: str = "",
    ) -> list[BaseMessage]:
        """Ask whether the steps left still fit, given what the finished steps found.

        `done` holds one entry per finished step (its result), `left` the steps not run
        yet, and `budget` what is left of the run's budgets, if it has any."""
        waiting = "\n".join(f"{i}. {step}" for i, step in enumerate(left, len(done) + 1))
        return [
            SystemMessage(self.system),
            HumanMessage(
                f"Task: {task}\n"
                + self._results("Finished steps and their results:", done, "(none yet)")
                + f"Steps left:\n{waiting or '(none)'}\n"
                + (f"Budget left: {budget}\n" if budget else "")
                + "\nReply KEEP if the steps left still fit these results (the usual case), "
                "DONE if the task is already complete, or else a numbered list of only the "
                f"new steps that should follow instead (at most {max_remaining})."
            ),
        ]

    def answer_messages(self, task: str, results: Sequence[str]) -> list[BaseMessage]:
        """Ask for the answer to the task from what the steps found."""
        return [
            SystemMessage(self.system),
            HumanMessage(
                f"Task: {task}\n"
                + self._results("What the steps found:", results, "(no step succeeded)")
                + f"\n{self.answer_ask}"
            ),
        ]


CAPABLE = PromptSet(
    name="capable",
    system=(
        "You are a capable assistant carrying out a task one step at a time. Each of your "
        "replies is used as it stands: do the work asked and give its result in full."
    ),
    step_ask=(
        "Do this step now. Reply with its result itself, complete and ready to use (the "
        "text, list, table, code or figures it calls for), not a description of how you "
        "would do it."
    ),
    tools_ask=(
        "Do this step now. You may call these tools: {tools}. When the step is done, "
        "reply without a tool call, giving its result in full."
    ),
    adapt_ask=(
        "Do this step another way now. Reply with its result itself, complete and ready "
        "to use, not a description of how you would do it."
    ),
    answer_ask=(
        "Write the final answer to the task for the person who asked, in the form the "
        "task calls for (an email, a list, a table, a plan, code, ...), complete and ready "
        "to use, built from the results above."
    ),
    whole_results=True,
    recent_results=None,
    result_chars=None,
    answer_result_chars=None,
)

SMALL = PromptSet(
    name="small",
    system=(
        "You are a capable assistant carrying out a task one step at a time. "
        "Answer plainly and concisely."
    ),
    step_ask="Explain in two or three sentences how you would do this step, with its result.",
    tools_ask=(
        "Carry out this step. You may call these tools: {tools}. "
        "When the step is done, reply without a tool call, reporting what you found or did."
    ),
    adapt_ask=(
        "Explain in two or three sentences how you would do this step now, with its result."
    ),
    answer_ask=(
        "Write the answer to the task for the person who asked, "
        "as a short paragraph in your own words."
    ),
    whole_results=False,
    recent_results=2,
    result_chars=200,
    answer_result_chars=1000,
)

PROMPT_SETS: dict[PromptStyle, PromptSet] = {"capable": CAPABLE, "small": SMALL}
