import pytest

from agentic_loop.parsing import clean_reply, parse_plan, restarts_numbering

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
