"""Reading model replies: the plan's steps out of free text, and replies cleaned for storage."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentic_loop.core.events import one_line

# After bold markers are removed: "1. x", "1) x", "1: x", "Step 1: x", "Step 1 - x", "### 1. x".
_NUMBERED = re.compile(
    r"^(?P<indent>\s*)(?:[#>]+\s*)?(?:step\s+)?(?P<num>\d{1,3})\s*(?:[.):]|\s[-–])\s*(?P<text>.*)$",
    re.IGNORECASE,
)
_BULLET = re.compile(r"^(?P<indent>\s*)[-*•+]\s+(?P<text>.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_WORD = re.compile(r"[^\W\d_]")
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)


@dataclass
class _Entry:
    """A list item as read from one line."""

    indent: int
    number: int | None
    text: str


@dataclass
class _Item:
    text: str
    details: list[str] = field(default_factory=list)

    def is_heading(self) -> bool:
        return not self.text.strip() or self.text.rstrip().endswith(":")

    def render(self) -> str:
        head = self.text.strip().rstrip(":").strip()
        details = [d.strip() for d in self.details if d.strip()]
        if not details:
            return head
        if not head:
            return "; ".join(details)
        return f"{head}: {'; '.join(details)}"


def clean_reply(text: str) -> str:
    """Drop reasoning blocks (`<think>...</think>`) and surrounding whitespace."""
    return _THINK.sub("", text).strip()


JSON_DEPTH = 100
"""The deepest nesting of arrays and objects that `read_json` accepts."""
_INT_LIMIT = 2**63
"""Integers in JSON must lie from -2**63 to 2**63 - 1: a run's checkpoint stores no larger."""


def read_json(text: str) -> Any:
    """`text` read as JSON from a model or a person, neither of whom is trusted. ValueError
    says why, in one line, for text that is not JSON, nests arrays and objects deeper than
    `JSON_DEPTH`, or holds NaN, Infinity or a number too large to store (an integer beyond
    64 bits, or a float that overflows)."""
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_finite
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    except RecursionError:  # the decoder recurses once a level: far past JSON_DEPTH
        raise ValueError(f"nested deeper than {JSON_DEPTH} levels") from None
    if _nested_deeper(value, JSON_DEPTH):
        raise ValueError(f"nested deeper than {JSON_DEPTH} levels")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_int(digits: str) -> int:
    # Digits counted before converting: Python converts thousands slowly, refuses past 4300.
    number = int(digits) if len(digits) <= 20 else None
    if number is None or not -_INT_LIMIT <= number < _INT_LIMIT:
        raise ValueError(f"the integer {_shortened(digits)} does not fit in 64 bits")
    return number


def _finite(digits: str) -> float:
    number = float(digits)
    if not math.isfinite(number):
        raise ValueError(f"the number {_shortened(digits)} is too large")
    return number


def _shortened(digits: str) -> str:
    return digits if len(digits) <= 24 else f"{digits[:12]}… ({len(digits)} characters)"


def _nested_deeper(value: Any, limit: int) -> bool:
    """Whether `value` has arrays or objects nested more than `limit` deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


_ECHO_MIN_CHARS = 16
"""Reply lines and sentences at least this long that appear word for word in the prompt
are echoes."""
_LEAD = re.compile(
    r"^\s*(?:[-*•+>#]+\s*|(?:step\s+)?\d{1,3}(?:/\d{1,3})?(?:\s*\([\w ]+\))?\s*[.):]\s*)+",
    re.IGNORECASE,
)
"""What a line may start with that says nothing: bullets, "1.", "Step 2/3:", "Step 1 (adapted):"."""
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_REPEATED_NUMBERING = re.compile(r"^\s*(?:\d{1,3}[.)]\s+){2,}")
_REPEATED_PHRASE = re.compile(r"(\S.{3,79}?)(?:\W*\1){5,}", re.DOTALL | re.IGNORECASE)
_LOOP_MIN_LINES = 4
"""A reply of at least this many lines, half of them or more the same as others, loops."""


def _said(text: str) -> str:
    """`text` as compared for echoes: without its leading numbering, case or extra spaces."""
    return " ".join(_LEAD.sub("", text).split()).lower()


def strip_echo(text: str, prompt: str) -> str:
    """`text` without the lines, or sentences within a line, that repeat the prompt word
    for word (numbering aside): small models copy their instructions and the results they
    were shown into their reply. A reply with no echo comes back unchanged."""
    said: set[str] = set()
    for line in prompt.splitlines():
        said.add(_said(line))
        said.update(_said(sentence) for sentence in _SENTENCE_END.split(line))
    said = {phrase for phrase in said if len(phrase) >= _ECHO_MIN_CHARS}
    kept = []
    for line in text.splitlines():
        if _said(line) in said:
            continue
        sentences = _SENTENCE_END.split(line.strip())
        if len(sentences) > 1 and any(_said(s) in said for s in sentences):
            indent = line[: len(line) - len(line.lstrip())]
            line = indent + " ".join(s for s in sentences if _said(s) not in said)
        kept.append(line)
    return "\n".join(kept).strip()


def degenerate_reason(text: str) -> str | None:
    """Why a reply is no result at all (empty, or one line, phrase or numbering repeated
    over and over), or None if it reads as a reply."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if not lines:
        return "the reply was empty"
    if len(lines) == 1 and lines[0].endswith(":") and len(lines[0]) <= _ANNOUNCEMENT_CHARS:
        return f"the reply only announces a result ({lines[0]!r})"
    if any(_REPEATED_NUMBERING.match(line) for line in lines):
        return "the reply repeats its numbering (1. 1. 1.)"
    # Lines compared without their numbering: "1. x", "2. x" and "Step 3: x" are one line.
    contents = [_said(line) for line in lines]
    contents = [content for content in contents if content] or lines
    line, count = Counter(contents).most_common(1)[0]
    if count >= 3 and count * 2 >= len(contents):
        return f"the reply repeats one line {count} times"
    if len(contents) >= _LOOP_MIN_LINES and len(set(contents)) * 2 <= len(contents):
        return f"the reply goes round the same {len(set(contents))} lines"
    for match in _REPEATED_PHRASE.finditer(text):
        if _WORD.search(match[1]):  # a rule of dashes or dots is not a phrase
            return f"the reply repeats {match[1].strip()[:40]!r} over and over"
    return None


_ANNOUNCEMENT_CHARS = 100
"""Longest one-line reply ending in a colon ("Here's a possible solution:") that is taken
for an announcement of a result that never came."""


_REPEAT_MIN_WORDS = 3
"""Fewest words a reply needs to be taken for a copy of a step's description."""


def repeats_step(text: str, descriptions: Sequence[str]) -> str | None:
    """Why a reply is no result if it only repeats one of the plan's steps (this one, or
    the next one, as small models do), or None."""
    said = _words(text)
    if len(said.split()) < _REPEAT_MIN_WORDS:  # "Paris" may well be a step's whole result
        return None
    for number, description in enumerate(descriptions, 1):
        if f" {said} " in f" {_words(description)} ":
            return f"the reply only repeats step {number} ({one_line(description, 60)!r})"
    return None


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", _LEAD.sub("", text).lower()).split())


def parse_plan(text: str) -> list[str]:
    """The steps of a plan in a model's reply, without its preamble or closing chatter.

    Reads the first top-level numbered list, or a bulleted list when there is none.
    Nested items, and lines between two items, fold into the item above them. The
    list ends where its numbering restarts (a second list follows) or at unindented
    prose after its last item, unless that prose is the item's own text (the item is
    a heading, or earlier items had such text too). A reply with no list gives no steps.
    """
    lines = [
        line.replace("**", "").rstrip()
        for line in clean_reply(text).splitlines()
        if not _FENCE.match(line)
    ]
    items = _read_list(lines, _numbered) or _read_list(lines, _bulleted)
    # A step needs words: small models sometimes emit bare numbering ("1. 1. 2. 3.").
    return [step for step in (item.render() for item in items) if _WORD.search(step)]


def restarts_numbering(text: str) -> bool:
    """True once the top-level numbered list in `text` starts again: the second list that
    `parse_plan` drops. Nested numbered items do not count."""
    top: int | None = None
    last = 0
    for line in text.replace("**", "").splitlines():
        entry = _numbered(line)
        if entry is None or entry.number is None or (top is not None and entry.indent > top):
            continue
        if top is not None and entry.number <= last:
            return True
        top, last = entry.indent if top is None else top, entry.number
    return False


def _numbered(line: str) -> _Entry | None:
    match = _NUMBERED.match(line)
    return match and _Entry(_width(match["indent"]), int(match["num"]), match["text"])


def _bulleted(line: str) -> _Entry | None:
    match = _BULLET.match(line)
    return match and _Entry(_width(match["indent"]), None, match["text"])


def _width(whitespace: str) -> int:
    return len(whitespace.expandtabs(4))


def _read_list(lines: list[str], entry_of: Callable[[str], _Entry | None]) -> list[_Item]:
    items: list[_Item] = []
    top = 0
    last_number = 0
    after_blank = False
    prose_details = False  # whether items carry their details on unindented lines

    def continues_list(entry: _Entry | None) -> bool:
        return (
            entry is not None
            and entry.indent <= top
            and (entry.number is None or entry.number > last_number)
        )

    for index, line in enumerate(lines):
        entry = entry_of(line)
        if not items:
            if entry:
                top, last_number = entry.indent, entry.number or 0
                items.append(_Item(entry.text))
            continue
        if entry and entry.indent <= top:
            if not continues_list(entry):
                break  # numbering restarts: a second list, not part of the plan
            items.append(_Item(entry.text))
            last_number = entry.number or 0
            after_blank = False
            continue
        if not line.strip():
            after_blank = True
            continue
        nested = _numbered(line) or _bulleted(line)
        indented = _width(line[: len(line) - len(line.lstrip())]) > top
        if indented or (nested and nested.number is None):
            items[-1].details.append(nested.text if nested else line)
        elif any(continues_list(entry_of(later)) for later in lines[index + 1 :]):
            items[-1].details.append(line)  # prose between two items belongs to the first
            prose_details = True
        elif not after_blank and (prose_details or items[-1].is_heading()):
            items[-1].details.append(line)  # the last item's own text, in the list's style
        else:
            break  # closing chatter after the last item
    return items
