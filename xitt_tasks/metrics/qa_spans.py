"""Generated QA answers back to raw-context strings, undoing the punctuation padding.

The QA format (mT5 convention, `pad_punctuation`) puts spaces around every character that is
not a letter, mark, digit, underscore or whitespace, then collapses whitespace: the model
reads and writes `U . S .` and `state - of - the - art`. The leaderboard and the official
scorers compare RAW strings, so a generated answer is mapped back to the context it came from:

1. the padded context is built with a map from each of its characters to the raw character
   it came from (inserted spaces map nowhere);
2. the answer, re-padded (padding is idempotent, so an already padded answer is unchanged), is
   searched in the padded context: first an occurrence that starts and ends on padded-token
   boundaries, else any occurrence (Chinese, Japanese and Thai write words without spaces, so
   an answer is often part of one padded token); the first such occurrence wins;
3. if there is none, the same two searches are repeated case-insensitively (a character is
   lowered only when lowering keeps it one character, so offsets stay aligned);
4. a match becomes the raw substring from the raw position of its first character to that of
   its last: the original spacing, case and characters of the context (`how` = 'exact' or
   'case_insensitive');
5. with no match (`how` = 'depadded') the generated text itself is returned with the padding
   removed by `depad`: a space between two padded tokens is dropped when the context holds
   that token pair and most often writes it without a space; for pairs the context never
   holds, by the character rule of `depad`. An empty answer stays empty (`how` = 'empty').

Pure Python (unicodedata only), so metrics and the leaderboard writer can use it anywhere.
"""

from __future__ import annotations

import dataclasses
import unicodedata

# ------------------------------------------------------------------------------ padding


def is_kept(ch: str) -> bool:
    """True for characters the padding leaves alone: letters, marks, digits, '_', whitespace."""
    return ch == "_" or ch.isspace() or unicodedata.category(ch)[0] in "LNM"


def pad_punctuation(text: str) -> str:
    """mT5/T5 QA convention: spaces around punctuation; letters, marks, digits kept intact."""
    out = []
    for ch in text:
        out.append(ch if is_kept(ch) else f" {ch} ")
    return " ".join("".join(out).split())


def padded_tokens(text: str) -> list[tuple[str, int, int]]:
    """The tokens of `pad_punctuation(text)` as (token, raw start, raw end).

    A token is a maximal run of kept non-space characters, or one padded character; each is
    a contiguous substring `text[start:end]`, and `' '.join` of the tokens is the padded text.
    """
    tokens: list[tuple[str, int, int]] = []
    start = None
    for i, ch in enumerate(text):
        if ch.isspace():
            if start is not None:
                tokens.append((text[start:i], start, i))
                start = None
        elif is_kept(ch):
            if start is None:
                start = i
        else:
            if start is not None:
                tokens.append((text[start:i], start, i))
                start = None
            tokens.append((ch, i, i + 1))
    if start is not None:
        tokens.append((text[start:], start, len(text)))
    return tokens


@dataclasses.dataclass(frozen=True)
class PaddedText:
    """A padded text with, for each of its characters, the raw index it came from (-1 for an
    inserted space) and whether a padded token starts / ends there."""

    raw: str
    padded: str
    raw_index: tuple[int, ...]
    token_starts: frozenset[int]
    token_ends: frozenset[int]   # exclusive ends
    tokens: tuple[tuple[str, int, int], ...]


def pad_with_offsets(text: str) -> PaddedText:
    tokens = padded_tokens(text)
    parts: list[str] = []
    index: list[int] = []
    starts, ends = set(), set()
    for k, (token, start, _) in enumerate(tokens):
        if k:
            parts.append(" ")
            index.append(-1)
        starts.add(len(index))
        parts.append(token)
        index.extend(range(start, start + len(token)))
        ends.add(len(index))
    return PaddedText(text, "".join(parts), tuple(index), frozenset(starts), frozenset(ends),
                      tuple(tokens))


# ------------------------------------------------------------------------------ de-padding

# Characters written against the previous token ("Paris , France" -> "Paris, France").
_CLOSE_CATEGORIES = frozenset({"Pe", "Pf"})
_CLOSE_CHARS = frozenset(",.;:!?%)]}»”’،؛؟।。、，．：；！？）」』】")
# Characters written against the next token ("( 1990" -> "(1990").
_OPEN_CATEGORIES = frozenset({"Ps", "Pi"})
_OPEN_CHARS = frozenset("([{«“‘¿¡$£€¥#@（「『【")
# Characters written against both neighbours ("state - of - the - art" -> "state-of-the-art").
_JOIN_CATEGORIES = frozenset({"Pd", "Pc", "Cf"})
_JOIN_CHARS = frozenset("-/'’\\&+·@")


def _rule_joins(left: str, right: str) -> bool:
    """Character rule for a gap between padded tokens `left` and `right` the context lacks."""
    if len(right) == 1 and not is_kept(right):
        cat = unicodedata.category(right)
        if right in _JOIN_CHARS or cat in _JOIN_CATEGORIES:
            return True
        if right in _CLOSE_CHARS or cat in _CLOSE_CATEGORIES:
            return True
    if len(left) == 1 and not is_kept(left):
        cat = unicodedata.category(left)
        if left in _JOIN_CHARS or cat in _JOIN_CATEGORIES:
            return True
        if left in _OPEN_CHARS or cat in _OPEN_CATEGORIES:
            return True
    return False


def context_spacing(context: str) -> dict[tuple[str, str], bool]:
    """For each adjacent padded-token pair of `context`: True when the context writes it
    without a space more often than with one (ties: without)."""
    counts: dict[tuple[str, str], list[int]] = {}
    tokens = padded_tokens(context)
    for (a, _, a_end), (b, b_start, _) in zip(tokens, tokens[1:]):
        joined, spaced = counts.setdefault((a, b), [0, 0])
        counts[(a, b)] = [joined + (a_end == b_start), spaced + (a_end != b_start)]
    return {pair: joined >= spaced for pair, (joined, spaced) in counts.items()}


def depad(text: str, context: str | None = None) -> str:
    """Undo the punctuation padding of `text` as well as can be done without a span.

    Between two padded tokens the space is dropped when `context` (if given) holds that pair
    and most often writes it joined, kept when it holds it and most often spaces it; for
    pairs it lacks: dropped before closing/trailing punctuation (`, . ; : ! ? % ) ] }` ...),
    after opening punctuation (`( [ { ¿ $` ...), and on both sides of connectors (dashes,
    hyphens, `/ ' & +`, format characters such as ZWJ/ZWNJ); kept otherwise.
    """
    tokens = [t for t, _, _ in padded_tokens(text)]
    if not tokens:
        return ""
    spacing = context_spacing(context) if context else {}
    out = [tokens[0]]
    for left, right in zip(tokens, tokens[1:]):
        joined = spacing.get((left, right))
        if joined is None:
            joined = _rule_joins(left, right)
        out.append(right if joined else " " + right)
    return "".join(out)


# ------------------------------------------------------------------------------ answer spans


@dataclasses.dataclass(frozen=True)
class AnswerSpan:
    """A generated answer as a raw string; `start`/`end` index the raw context when matched.

    `how`: 'exact' (padded answer found in the padded context), 'case_insensitive', 'depadded'
    (no match: `depad` of the generated text) or 'empty' (nothing generated).
    """

    text: str
    start: int | None
    end: int | None
    how: str


def _fold(text: str) -> str:
    """Lowercase character by character, keeping length (offsets stay aligned)."""
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def _find(haystack: str, needle: str, starts: frozenset[int], ends: frozenset[int]
          ) -> int:
    """First occurrence on token boundaries, else first occurrence anywhere, else -1."""
    first = -1
    pos = haystack.find(needle)
    while pos >= 0:
        if first < 0:
            first = pos
        if pos in starts and pos + len(needle) in ends:
            return pos
        pos = haystack.find(needle, pos + 1)
    return first


def answer_span(answer: str, context: str | PaddedText) -> AnswerSpan:
    """Map a generated (padded) answer to a raw span of `context` (see the module docstring).

    `context` may be given pre-padded (`pad_with_offsets`) to reuse it across answers.
    """
    padded_context = context if isinstance(context, PaddedText) else pad_with_offsets(context)
    needle = pad_punctuation(answer)
    if not needle:
        return AnswerSpan("", None, None, "empty")
    hay = padded_context.padded
    for how, h, n in (("exact", hay, needle),
                      ("case_insensitive", _fold(hay), _fold(needle))):
        pos = _find(h, n, padded_context.token_starts, padded_context.token_ends)
        if pos >= 0:
            start = padded_context.raw_index[pos]
            end = padded_context.raw_index[pos + len(n) - 1] + 1
            return AnswerSpan(padded_context.raw[start:end], start, end, how)
    return AnswerSpan(depad(answer, padded_context.raw), None, None, "depadded")


def raw_answer(answer: str, context: str) -> str:
    """The raw string of `answer_span(answer, context)`."""
    return answer_span(answer, context).text
