import pytest

from agentic_loop.core.parsing import (
    clean_reply,
    degenerate_reason,
    parse_plan,
    restarts_numbering,
    strip_echo,
)

CASES = {
    "plain numbered": (
        "1. Pick a beach\n2. Book a room\n3. Pack",
        ["Pick a beach", "Book a room", "Pack"],
    ),
    "preamble and closing chatter": (
        "Sure! Here is the plan:\n\n1. Pick a beach\n2. Book a room\n\n"
        "Let me know if you need more help!",
        ["Pick a beach", "Book a room"],
    ),
    "parenthesis numbers": ("1) Pick\n2) Book\n3) Pack", ["Pick", "Book", "Pack"]),
    "Step N: labels": (
        "Step 1: Pick a beach\nStep 2: Book a room",
        ["Pick a beach", "Book a room"],
    ),
    "bold numbers": ("**1.** Pick a beach\n**2.** Book a room", ["Pick a beach", "Book a room"]),
    "bold step labels": ("**Step 1:** Pick\n**Step 2:** Book", ["Pick", "Book"]),
    "bold titles with text": (
        "1. **Research**: compare beaches\n2. **Book**: a room near the sea",
        ["Research: compare beaches", "Book: a room near the sea"],
    ),
    "markdown headings with body lines": (
        "### Step 1: Research\nCompare beaches.\n### Step 2: Book\nFind a room.\n\nGood luck!",
        ["Research: Compare beaches.", "Book: Find a room."],
    ),
    "nested bullets fold into parent": (
        "1. Pack\n   - sunscreen\n   - towel\n2. Drive",
        ["Pack: sunscreen; towel", "Drive"],
    ),
    "nested numbers fold into parent": (
        "1. Plan route\n   1. check traffic\n   2. pick stops\n2. Drive",
        ["Plan route: check traffic; pick stops", "Drive"],
    ),
    "unindented bullets under a numbered item": (
        "1. Pack:\n- sunscreen\n- towel\n2. Drive",
        ["Pack: sunscreen; towel", "Drive"],
    ),
    "second list restarting numbering is dropped": (
        "1. Pick\n2. Book\n3. Pack\n\nAlternatively, you could:\n1. Stay home\n2. Read",
        ["Pick", "Book", "Pack"],
    ),
    "restart without a gap is dropped": ("1. A\n2. B\n1. A again\n2. B again", ["A", "B"]),
    "bullets when there is no numbered list": (
        "Here you go:\n- Pick a beach\n- Book a room\n  - near the sea\n\nHave fun!",
        ["Pick a beach", "Book a room: near the sea"],
    ),
    "star bullets": ("* Pick\n* Book", ["Pick", "Book"]),
    "reasoning block is ignored": (
        "<think>1. not this</think>\n1. Pick\n2. Book",
        ["Pick", "Book"],
    ),
    "fenced list": ("```\n1. Pick\n2. Book\n```", ["Pick", "Book"]),
    "blank": ("", []),
    "whitespace only": ("  \n\n ", []),
    "no list at all": ("I cannot help with that.", []),
    "chatter attached after last item is dropped": ("1. A\n2. B\n3. C\nBye", ["A", "B", "C"]),
    "prose between items folds into the earlier": (
        "1. A\n\nNote: careful\n\n2. B",
        ["A: Note: careful", "B"],
    ),
    "numbers starting above one": ("3. C\n4. D", ["C", "D"]),
    "dash after step number": ("Step 1 - Pick\nStep 2 - Book", ["Pick", "Book"]),
    # Real SmolLM2-135M replies that surprised the parser:
    "bare numbering is no plan": (
        "1. 1. 1. 2. 3. 4. 5. 6. 7. 8. 9. 10.\n\n"
        "Return only the numbered list, one step per line, nothing else.",
        [],
    ),
    "echoed instruction and a restarted list after the plan": (
        "1. Choose a suitable plant for your vegetable garden.\n2. Plant the chosen plant.\n"
        "3. Water the plant.\n\nOutput:\n1",
        [
            "Choose a suitable plant for your vegetable garden.",
            "Plant the chosen plant.",
            "Water the plant.",
        ],
    ),
    "prose preamble then spaced Step N lines": (
        "The cover letter is a classic example.\n\nStep 1: Begin with a strong opening."
        "\n\nStep 2: Use a professional tone.\n\nStep 3: Add a personal touch.",
        ["Begin with a strong opening.", "Use a professional tone.", "Add a personal touch."],
    ),
    "plan in one paragraph": (
        "To assist, I will first organize the party. I will start by selecting a venue. "
        "Next, I will decide on the type of party to have.",
        [],
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=CASES.keys())
def test_parse_plan(text: str, expected: list[str]) -> None:
    assert parse_plan(text) == expected


def test_clean_reply_drops_reasoning_and_whitespace() -> None:
    assert clean_reply("  <think>hmm\nok</think>\nDone.  ") == "Done."
    assert clean_reply("<think>never closed") == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1. A\n2. B", False),
        ("1. A\n2. B\n\nOutput:\n1.", True),
        ("1. A\n2. B\n1)", True),
        ("Step 1: A\nStep 2: B\nStep 1:", True),
        ("1. A", False),
        ("It costs 1.5 euros", False),
        ("1. A\n   1. a1\n   2. a2\n2. B", False),
    ],
)
def test_restarts_numbering(text: str, expected: bool) -> None:
    """Where the embedded model stops generating: at a second list, not a nested one."""
    assert restarts_numbering(text) is expected


# Replies marked "SmolLM2" are real replies of the embedded model to the loop's prompts.
_DESTINATIONS = """\
1. Choose a destination: I'm planning a weekend trip to the coast.
2. Select a destination: I'm planning a weekend trip to the coast.
3. Choose a destination: I'm planning a weekend trip to the coast.
4. Select a destination: I'm choosing a destination to the coast.
5. Select a destination: I'm selecting a destination to the coast.
6. Choose a destination: I'm choosing a destination to the coast.
7. Select a destination: I'm selecting a destination to the coast.
8. Select a destination: I'm selecting a destination to the coast.
9. Choose a destination: I'm choosing a destination to the coast.
10. Select a destination: I'm selecting a destination to the coast.
11. Select a destination: I'm selecting a destination to the coast.
12. Select a destination: I'm selecting a destination to the coast.
13. Choose a destination: I'm choosing a destination to the coast.
14. Select a destination: I'm choosing a destination to the coast.
15. Select a destination: I'm selecting a destination to the coast.
16. Select a destination: I'm selecting a destination to the coast.
17. Select a destination: I'm selecting a destination to the coast.
18. Select a destination: I'm selecting a destination to the coast.
19. Select a destination: I'm selecting a destination to the coast.
20."""
"""SmolLM2's first step of "Plan a weekend trip to the coast" before the stop rules."""
DEGENERATE = {
    "empty": ("", "the reply was empty"),
    "blank lines": ("\n \n", "the reply was empty"),
    "SmolLM2: numbering copied from the results it was shown": (
        "1. 1. Choose a destination: I'm planning a weekend trip to the coast.\n"
        "2. 2. Select a destination: I'm planning a weekend trip to the coast.",
        "the reply repeats its numbering (1. 1. 1.)",
    ),
    "SmolLM2: bare numbering": (
        "1. 1. 1. 2. 3. 4. 5. 6. 7. 8. 9. 10. 11. 12. 13. 14. 15. 16.",
        "the reply repeats its numbering (1. 1. 1.)",
    ),
    "SmolLM2: a list going round a few items": (
        _DESTINATIONS,
        "the reply repeats one line 11 times",
    ),
    "SmolLM2: one line under a new number each time": (
        "1. Choose a suitable plant for your garden: Tomato plants, cucumbers, basil\n"
        "2. Choose a suitable plant for your garden: Tomato plants, cucumbers, basil\n"
        "3. Choose a suitable plant for your garden: Tomato plants, cucumbers, basil",
        "the reply repeats one line 3 times",
    ),
    "SmolLM2: one line under step labels": (
        "I'm ready to assist. Please go ahead and submit your cover letter.\n\n"
        "Step 1: I'm ready to assist. Please go ahead and submit your cover letter.\n\n"
        "Step 2: I'm ready to assist. Please go ahead and submit your cover letter.",
        "the reply repeats one line 3 times",
    ),
    "SmolLM2: a signature block on a loop": (
        "Sincerely,\n" + "[Your Position]\n[Your Company]\n[Your Job Title]\n" * 4,
        "the reply goes round the same 4 lines",
    ),
    "a phrase over and over": (" ".join(["and again"] * 8), "the reply repeats 'and again'"),
    "a phrase over and over, capitalised at times": (
        "Tomatoes, basil, tomatoes, basil, Tomatoes, basil, tomatoes, basil, tomatoes, basil, "
        "tomatoes, basil",
        "the reply repeats 'Tomatoes, basil'",
    ),
}
READABLE = {
    "SmolLM2: a step": "To plan a weekend trip to the coast, I would choose a destination that "
    "offers breathtaking views of the ocean and local culture.",
    "SmolLM2: a list": "1. Choose a suitable plant: pick vegetables that suit your climate.\n"
    "2. Plant the chosen plant: place it in a sunny spot.\n"
    "3. Water the plant: keep the soil moist but well drained.",
    "SmolLM2: numbers inside a sentence": "The steps to clean the kitchen are: 1. Remove "
    "trash from the kitchen; 2. Wipe counters with a broom; and 3. Mop floor using a broom.",
    "SmolLM2: a letter": "Dear [Company Name],\n\nI am excited to apply for the role.\n\n"
    "Sincerely,\n[Your Name]",
    "a rule of dashes": "Plan\n----------------------------------------\nDone",
    "a price": "It costs 1.5 euros.",
    "a line said twice": "Pack the car.\nDrive to the coast.\nPack the car.",
}


@pytest.mark.parametrize(("text", "reason"), DEGENERATE.values(), ids=DEGENERATE.keys())
def test_degenerate_reason(text: str, reason: str) -> None:
    assert (degenerate_reason(text) or "").startswith(reason)


@pytest.mark.parametrize("text", READABLE.values(), ids=READABLE.keys())
def test_readable_replies_are_not_degenerate(text: str) -> None:
    assert degenerate_reason(text) is None


_STEP_PROMPT = (
    "You are a capable assistant carrying out a task one step at a time. Answer plainly and "
    "concisely.\nTask: Organise a birthday party\nStep 2/3: Choose a suitable venue\n"
    "Earlier results:\nStep 1: I would pick a Saturday afternoon.\n\n"
    "Carry out this step and report what you did."
)
ECHOES = {
    "SmolLM2: the instruction, then a prompt line of its own making": (
        "Carry out this step and report what you did.\n\n"
        "Step 2/3: Plan a party for your friend's birthday",
        "Step 2/3: Plan a party for your friend's birthday",
    ),
    "SmolLM2: the instruction under a step label": (
        "Step 1: Carry out this step and report what you did.",
        "",
    ),
    "an earlier result copied back": (
        "Step 1: I would pick a Saturday afternoon.\nI would book the village hall.",
        "I would book the village hall.",
    ),
    "the step restated, numbered": (
        "1. Choose a suitable venue\nI would book the village hall.",
        "I would book the village hall.",
    ),
    "an echoed sentence inside a line": (
        "I booked the hall. Carry out this step and report what you did. It was free.",
        "I booked the hall. It was free.",
    ),
    "in other case and spacing": (
        "CARRY OUT THIS STEP  and report what you did.\nBooked.",
        "Booked.",
    ),
    "short lines are never echoes": ("Task: Organise\nDone.", "Task: Organise\nDone."),
    "no echo: unchanged, blank lines and indents kept": (
        "I would book the village hall.\n\n  - it holds 60 people\n  - it has a kitchen",
        "I would book the village hall.\n\n  - it holds 60 people\n  - it has a kitchen",
    ),
    "a sentence that only contains the prompt's words": (
        "I would choose a suitable venue near the station.",
        "I would choose a suitable venue near the station.",
    ),
}


@pytest.mark.parametrize(("text", "expected"), ECHOES.values(), ids=ECHOES.keys())
def test_strip_echo(text: str, expected: str) -> None:
    assert strip_echo(text, _STEP_PROMPT) == expected
