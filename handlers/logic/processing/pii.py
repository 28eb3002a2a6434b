"""PII redaction rules shared by file processing (DuckDB SQL) and the ingest worker (Python).

A rule has a ``name``, a ``pattern``, an optional ``checksum`` and an optional
``column_hint``:

- ``pattern`` is matched inside string values and every match is replaced by
  ``[REDACTED:<NAME>]``. Patterns must be valid for both Python's ``re`` and RE2 (DuckDB's
  engine): no look-around, no backreferences. ``validate_pattern`` checks both.
- ``checksum`` (``"luhn"``) keeps a match in clear unless its digits pass that check: card
  numbers carry a Luhn digit, so a 13-digit epoch in milliseconds or an order number does
  not become ``[REDACTED:CARD]`` (nine in ten of them fail it).
- ``column_hint`` is a regular expression on column names (case-insensitive). A column whose
  name matches is kept as a string and every non-null value in it is replaced whole, so a
  ``phone`` column of bare digits cannot slip through as an integer. A camelCase name is
  matched as written and with its words split by ``_`` too (``homePhone`` as ``home_Phone``),
  so the hints written for snake_case (``(^|_)phone``) claim it.
- ``skip_qualified`` (the built-in rules): a hinted name whose last word is a qualifier
  (``QUALIFIER_WORDS``: ``card_type``, ``email_status``, ``phone_verified_at``) describes
  the PII rather than holding it and is not claimed, as long as the hint still matches
  the name without that word (a hint ``birth_date`` still claims ``birth_date``).
  ``skip_types`` (the built-in rules): inferred column types that cannot hold the PII
  (``date``/``timestamp``; ``int``/``float`` for e-mail): such a column is not claimed
  either. (A column of booleans never is.) The values of a column not claimed still pass
  the patterns: an address inside ``email_status`` is redacted. User rules claim every
  name their hint matches unless they set these fields.

Rules apply in order; the first rule to claim a span wins (cards before phone numbers, so a
16-digit card is not half-redacted as a phone number).

Extend the set with ``PiiOptions(extra_rules=[...])`` (on Lambda: ``PII_EXTRA_RULES`` as a
JSON list; on the CLI: ``--pii-rules FILE``) or switch rules off with ``disabled_rules``
(``PII_DISABLED_RULES``, comma-separated).
"""

from __future__ import annotations

import json
import re
import re._constants as _constants
import re._parser as _parser
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .sqltext import literal as sql_literal
from .summary import ColumnType

REDACTED_PREFIX = "[REDACTED:"


class PiiRule(BaseModel):
    # A misspelt key (``columnhint``) is an error, not a rule that silently redacts less. The
    # stack config validates its rules with this model, so any rule set it deployed parses.
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="rule id, e.g. 'email'")
    pattern: str = Field(description="regular expression valid in Python re and RE2")
    checksum: Literal["luhn"] | None = Field(
        default=None, description="a match is PII only if its digits pass"
    )
    column_hint: str | None = Field(default=None, description="regex on column names")
    skip_qualified: bool = Field(
        default=False,
        description="the hint does not claim a name ending in a qualifier word (QUALIFIER_WORDS)",
    )
    skip_types: frozenset[ColumnType] = Field(
        default=frozenset(), description="inferred column types the hint does not claim"
    )

    @field_validator("pattern", "column_hint")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            validate_pattern(value)
        return value

    @property
    def token(self) -> str:
        return f"{REDACTED_PREFIX}{self.name.upper()}]"


def luhn_valid(text: str) -> bool:
    """Whether the digits of ``text`` pass the Luhn check (the last digit of a card number)."""
    total = 0
    for position, char in enumerate(reversed([c for c in text if "0" <= c <= "9"])):
        digit = int(char) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def _subn_checked(rx: re.Pattern[str], token: str, text: str) -> tuple[str, int]:
    """``rx.subn(token, text)`` for the matches that pass the Luhn check only."""
    parts, n, end = [], 0, 0
    for match in rx.finditer(text):
        if luhn_valid(match.group()):
            parts += [text[end : match.start()], token]
            n, end = n + 1, match.end()
    return "".join(parts) + text[end:], n


def _sql_luhn_valid(expr: str) -> str:
    """``luhn_valid`` in DuckDB SQL (list lambdas count positions from 1: the 2nd, 4th, ...
    digit from the right is doubled)."""
    doubled = "CASE WHEN d::INT * 2 > 9 THEN d::INT * 2 - 9 ELSE d::INT * 2 END"
    return (
        f"list_sum(list_transform(list_reverse(regexp_extract_all({expr}, '[0-9]')), "
        f"lambda d, i: CASE WHEN i % 2 = 0 THEN {doubled} ELSE d::INT END)) % 10 = 0"
    )


def _sql_replace_checked(expr: str, pattern: str, token: str) -> str:
    """``_subn_checked`` in DuckDB SQL: the text between matches (``regexp_split_to_array``)
    zipped with the matches before it, each match kept or replaced by its Luhn check."""
    pairs = (
        f"list_zip(list_prepend('', regexp_extract_all(s, {pattern})), regexp_split_to_array(s, {pattern}))"
    )
    checked = (
        f"array_to_string(list_transform({pairs}, "
        f"lambda z: CASE WHEN z[1] <> '' AND {_sql_luhn_valid('z[1]')} THEN {token} ELSE z[1] END || z[2]), '')"
    )
    return f"list_transform([{expr}], lambda s: {checked})[1]"  # ``expr`` written (and computed) once


def as_written_by_duckdb(name: str) -> str | None:
    """A member name as found in JSON text (``s\\u0073n``) as DuckDB writes it in a nested
    value's text (``ssn``: escapes decoded but for quotes, backslashes and control
    characters); None if it is no valid JSON string."""
    try:
        return json.dumps(json.loads(f'"{name}"'), ensure_ascii=False)[1:-1]
    except ValueError:
        return None


def _unanchored(pattern: str) -> str:
    """``pattern`` without its anchors (``^``, ``$``, ``\\A``, ``\\Z``; not inside a
    character class): it matches wherever ``pattern`` does, and more, as a quick gate."""
    out: list[str] = []
    i, class_from = 0, -1  # where the open character class's members start, or -1
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if class_from >= 0 or pattern[i + 1 : i + 2] not in ("A", "Z", "z"):
                out.append(pattern[i : i + 2])
            i += 2
            continue
        if class_from >= 0:
            if char == "]" and i > class_from:
                class_from = -1
        elif char == "[":
            class_from = i + 2 if pattern[i + 1 : i + 2] == "^" else i + 1
        elif char in "^$":
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)


# a camelCase word boundary: homePhone -> home_Phone, customerSSN -> customer_SSN
_CAMEL_BOUNDARY = r"([a-z0-9])([A-Z])"
_CAMEL_SPLIT = re.compile(_CAMEL_BOUNDARY)


def snake_words(name: str) -> str:
    """``name`` with its camelCase words split by ``_`` (``homePhone`` -> ``home_Phone``)."""
    return _CAMEL_SPLIT.sub(r"\1_\2", name)


# The last words of a column name that say it describes the PII rather than holds it (its
# kind, a count, a state, a time): "card_type", "email_count", "phone_verified_at",
# "mobile_os". Deliberately not here: "last4" (the last digits of an SSN are
# still sensitive), "code" ("card_code" is the CVV), "hash" and "token" (pseudonyms of the
# value), "number"/"no"/"num" (the PII itself).
QUALIFIER_WORDS: tuple[str, ...] = (
    # what kind
    "type", "kind", "brand", "network", "issuer", "scheme", "category", "format", "provider",
    "carrier", "domain", "country", "country_code", "area_code", "prefix", "bin", "region",
    "locale", "os", "platform", "device", "app", "model", "version",
    # how many
    "count", "cnt", "total", "length",
    # a state or a flag
    "status", "state", "valid", "verified", "validated", "confirmed", "bounced", "enabled",
    "disabled", "active", "opt_in", "opt_out", "optin", "optout", "consent", "consented",
    "subscribed", "unsubscribed", "allowed", "blocked", "preference", "preferences",
    # when
    "at", "on", "date", "time", "ts", "timestamp", "expiry", "expires", "expiration", "exp",
    "sent", "created", "updated", "changed", "received",
)  # fmt: skip
# ("id" is not one either: a "phone_id" or "email_id" often holds the number or address
# itself, and bare digits are found only under a hinted name.)
# the qualifier ending a name (its camelCase words split by "_"), case aside
_QUALIFIER = "(?i)_(?:" + "|".join(QUALIFIER_WORDS) + ")$"
_QUALIFIED = re.compile(_QUALIFIER)


def _sql_snake_words(expr: str) -> str:
    """``snake_words`` in DuckDB SQL."""
    return f"regexp_replace({expr}, {sql_literal(_CAMEL_BOUNDARY)}, '\\1_\\2', 'g')"


def _sql_hint_matches(expr: str, hint: str) -> str:
    """``PiiRuleSet.rule_for_column``'s test of one hint in DuckDB SQL: on ``expr`` as
    written, or with its camelCase words split (``snake_words``)."""
    split = _sql_snake_words(expr)
    return f"(regexp_matches({expr}, {sql_literal(hint)}, 'i') OR regexp_matches({split}, {sql_literal(hint)}, 'i'))"


def _sql_hint_claims(expr: str, rule: PiiRule, hint: str) -> str:
    """``PiiRuleSet.rule_for_column``'s test of one rule on a name in DuckDB SQL (no
    type): its hint matches, and unless ``skip_qualified``, the name is not qualified."""
    matches = _sql_hint_matches(expr, hint)
    if not rule.skip_qualified:
        return matches
    split = _sql_snake_words(expr)
    stem = f"regexp_replace({split}, {sql_literal(_QUALIFIER)}, '')"
    described = f"(regexp_matches({split}, {sql_literal(_QUALIFIER)}) AND regexp_matches({stem}, {sql_literal(hint)}, 'i'))"
    return f"({matches} AND NOT {described})"


def _member_token(rule: PiiRule) -> str:
    """What a redacted member becomes in SQL (``\\1``: its name), as in ``redact_text``."""
    return f'"\\1": "{rule.token}"'


def _sql_redact_each_member(expr: str, hints: Sequence[tuple[PiiRule, re.Pattern[str]]]) -> str:
    """``redact_text``'s member step in DuckDB SQL for any names: the text between members
    (``regexp_split_to_array``) zipped with each member and its name, each member whose name
    a hint matches replaced by that rule's token."""
    member = sql_literal(_JSON_MEMBER.pattern)
    claims = " ".join(
        f"WHEN {_sql_hint_claims('z[1]', rule, rx.pattern)} "
        f"THEN regexp_replace(z[2], {member}, {sql_literal(_member_token(rule))})"
        for rule, rx in hints
    )
    parts = (
        f"list_zip(list_prepend(NULL, regexp_extract_all(s, {member}, 1)), "
        f"list_prepend('', regexp_extract_all(s, {member})), regexp_split_to_array(s, {member}))"
    )
    rebuilt = (
        f"array_to_string(list_transform({parts}, "
        f"lambda z: CASE WHEN z[1] IS NULL THEN '' {claims} ELSE z[2] END || z[3]), '')"
    )
    return f"CASE WHEN contains({expr}, '\"') THEN list_transform([{expr}], lambda s: {rebuilt})[1] ELSE {expr} END"


_UNSUPPORTED_BY_RE2 = re.compile(r"\(\?[=!<]|\\[1-9]")
_REPEATS = (_constants.MAX_REPEAT, _constants.MIN_REPEAT)


def validate_pattern(pattern: str) -> None:
    """Raise ValueError if ``pattern`` is not usable by both engines, or could take
    exponential time in the ingest worker's backtracking engine."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
    if _UNSUPPORTED_BY_RE2.search(pattern):
        raise ValueError(
            f"pattern {pattern!r} uses look-around or backreferences, which DuckDB's RE2 engine does not support"
        )
    if _nested_repeat(_parser.parse(pattern), inside_repeat=False):
        raise ValueError(
            f"pattern {pattern!r} repeats a group that itself repeats without bound, like (a+)+ "
            "(bound the inner run: (a{1,64})+): Python's engine, which the ingest worker uses, "
            "can take exponential time on it"
        )
    refused = _re2_refusal(pattern)
    if refused:
        raise ValueError(
            f"pattern {pattern!r} is not valid in RE2, the engine of file processing (DuckDB): {refused}"
        )


def _re2_refusal(pattern: str) -> str | None:
    """Why DuckDB's RE2 refuses ``pattern`` (``\\Z``, ``(?x)``, ``\\u00e9``...), or None."""
    import duckdb  # here: the ingest worker needs DuckDB for a user's rules only

    with duckdb.connect() as con:
        try:
            con.execute("SELECT regexp_matches('', ?)", [pattern])
        except duckdb.Error as exc:
            return str(exc).splitlines()[0].removeprefix("Invalid Input Error: ")
    return None


def _nested_repeat(tree: Any, inside_repeat: bool) -> bool:
    """Whether an unbounded repeat sits inside another repeat: the classic form of
    catastrophic backtracking, (a+)+ or (x+y?)*. Not every slow pattern has it."""
    for op, arg in tree:
        if op in _REPEATS:
            _, high, body = arg
            if high == _constants.MAXREPEAT and inside_repeat:
                return True
            branches = [(body, inside_repeat or high > 1)]
        elif op == _constants.SUBPATTERN:
            branches = [(arg[-1], inside_repeat)]
        elif op == _constants.BRANCH:
            branches = [(branch, inside_repeat) for branch in arg[1]]
        else:
            continue
        if any(_nested_repeat(branch, inside) for branch, inside in branches):
            return True
    return False


# Letters beyond ASCII in addresses: Latin with accents and diacritics, Greek, Cyrillic
# (U+00C0-U+04FF but the multiplication and division signs), Vietnamese (U+1E00-U+1EFF), as
# literal characters. Not scripts written without spaces (CJK): an address written against
# such text would take the words around it with it.
_LETTERS = "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u04ff\u1e00-\u1eff"

_DATES: frozenset[ColumnType] = frozenset({"date", "timestamp"})

# Built without validation (validate_pattern would import DuckDB into every process that
# redacts, the ingest worker included); tests hold each of them valid.
DEFAULT_RULES: tuple[PiiRule, ...] = (
    PiiRule.model_construct(
        # Bounded as RFC 5321 and DNS bound them (local part 64, label 63): the ingest worker
        # runs the rules with Python's backtracking engine, where unbounded runs take time
        # quadratic in a long token ("aaaa...@aaaa..."); RE2 is linear either way. Of a local
        # part over 64 characters (invalid under RFC 5321) the first ones stay in clear.
        name="email",
        # "%40": an address in a URL's query string (?email=alice%40example.com); letters
        # beyond ASCII (jöhn@bücher.de, x@пример.рф) and the punycode of an international
        # top-level domain (xn--p1ai)
        pattern=(
            # (an apostrophe inside, as in o'brien, never first: 'alice@example.com' keeps its quote)
            rf"[A-Za-z0-9._%+{_LETTERS}-][A-Za-z0-9._%+'{_LETTERS}-]{{0,63}}(?:@|%40)[A-Za-z0-9{_LETTERS}-]{{1,63}}"
            rf"(?:\.[A-Za-z0-9{_LETTERS}-]{{1,63}})*\.(?:xn--[A-Za-z0-9-]{{1,59}}|[A-Za-z{_LETTERS}]{{2,63}})"
        ),
        column_hint=r"(^|_)e_?mail(_address)?($|_)",
        skip_qualified=True,
        skip_types=frozenset({"int", "float", "date", "timestamp"}),
    ),
    PiiRule.model_construct(
        # 13-19 digits in one run, or in the groups cards are printed in (4-4-4-4; Amex
        # 4-6-5; Diners Club 4-6-4), not any digits that follow: a CVV or an expiry after the number ("4111
        # 1111 1111 1111 123") must not make the whole fail the check. The first digit is
        # the major networks' (2-6: Mastercard, Amex, JCB, Visa, Discover...; not 1, so
        # epoch milliseconds, which start with 1 until 2033, are none), and the last a
        # Luhn check digit.
        name="card",
        pattern=r"\b(?:[2-6]\d{12,18}|[2-6]\d{3}[ -]\d{4}[ -]\d{4}[ -]\d{4}|3\d{3}[ -]\d{6}[ -]\d{4,5})\b",
        checksum="luhn",
        column_hint=r"(^|_)(card|cc|credit_card|pan)_?(number|no|num)?($|_)",
        skip_qualified=True,
        skip_types=_DATES,
    ),
    PiiRule.model_construct(
        # US social security number (123-45-6789, 123 45 6789) and UK national insurance
        # number (AB123456C, AB 12 34 56 C; in either case, as typed into a form: ab123456c).
        name="national_id",
        pattern=(
            r"\b\d{3}-\d{2}-\d{4}\b|\b\d{3} \d{2} \d{4}\b"
            r"|\b[A-CEGHJ-PR-TW-Za-ceghj-pr-tw-z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-Da-d]\b"
        ),
        column_hint=r"(^|_)(ssn|nino|national_id|social_security(_number)?|tax_id)($|_)",
        skip_qualified=True,
        skip_types=_DATES,
    ),
    PiiRule.model_construct(
        # International: +CC, then groups (+44 20 7946 0958, +1 (415) 555-2671, +49 (0)30
        # 1234567) with a separator after the country code and the first group, or 7-15
        # digits in one run (+14155552671), so a signed number (+8412.21, +123456 bytes)
        # is none. North American (555) 123-4567 / 555-123-4567 / 555.123.4567, local
        # 555-0199. National numbers with a trunk 0: French pairs (01 23 45 67 89,
        # 06.12.34.56.78), and area code + subscriber (020 7946 0958, 030 12345678, 0171
        # 1234567). Any of them with an extension (x89, ext. 89), redacted with it. A first
        # group of 5 digits after +CC (India: +91 98765 43210), a 1-digit one after a trunk
        # (0) (+33 (0)1 23 45 67 89); Brazilian (11) 91234-5678 (area codes 11-99, never
        # ending in 0, then 8 or 9 digits with a dash).
        name="phone",
        pattern=(
            r"(?:\+\d{1,3}(?:[ .-]?\(\d{1,4}\)[ .-]?\d{1,4}|[ .-]\d{1,5}[ .-]\d{2,4})(?:[ .-]?\d{2,4}){1,4}"
            r"|\+\d{1,3}[ .-]?\d{6,12}"
            r"|\(\d{3}\) ?\d{3}[ .-]\d{4}"
            r"|\([1-9]{2}\) ?[2-9]\d{3,4}-\d{4}"
            r"|\b\d{3}[ .-]\d{3}[ .-]\d{4}"
            r"|\b\d{3}-\d{4}"
            r"|\b0[1-9](?:[ .-]\d{2}){4}"
            r"|\b0[1-9]\d{1,3} \d{3,4} ?\d{3,4}"
            r")(?: ?(?:[xX]|[Ee]xt\.?) ?\d{1,6})?\b"
        ),
        column_hint=r"(^|_)(phone|mobile|cell|telephone|tel|fax)(_?(number|no|num))?($|_)",
        skip_qualified=True,
        skip_types=_DATES,
    ),
)


class PiiOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    extra_rules: tuple[PiiRule, ...] = ()
    disabled_rules: frozenset[str] = frozenset()

    @cached_property
    def rules(self) -> PiiRuleSet:
        if not self.enabled:
            return PiiRuleSet(())
        active = [r for r in DEFAULT_RULES if r.name not in self.disabled_rules]
        names = {r.name for r in active}
        for rule in self.extra_rules:
            if rule.name in names:
                raise ValueError(f"PII rule {rule.name!r} is defined twice")
            names.add(rule.name)
            active.append(rule)
        return PiiRuleSet(tuple(active))


# a JSON object's member whose value is a string or a number: "name": "value", "name": 12
# (valid in RE2 too: the SQL twins, sql_redact_members and _sql_redact_each_member, use it)
_NAME_CHARS = r'(?:[^"\\]|\\.)*'
_JSON_NAME = r'"((?:[^"\\]|\\.){1,256})"'
_JSON_WHITESPACE = r"[ \t\r\n]*"
# (a number's run unbounded: nothing follows it to backtrack into, and a bounded run left
# the tail of a long one in clear, after the token)
_JSON_VALUE = _JSON_WHITESPACE + ":" + _JSON_WHITESPACE + r'("(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*)'
_JSON_MEMBER = re.compile(_JSON_NAME + _JSON_VALUE)
# The most hinted member names whose values file processing redacts with one literal
# pattern per rule; beyond it (a file with ids for keys: phone_1, phone_2, ...), each
# member's name is checked alone.
MAX_LITERAL_MEMBER_NAMES = 1000
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


_TOKEN = re.compile(re.escape(REDACTED_PREFIX) + r"[^\]]*\]")


def _out_of_token(text: str, at: int, backwards: bool) -> int:
    """``at``, or, where it falls inside a redaction token of ``text``, the token's start
    (``backwards``) or end: a clip there keeps the token whole."""
    for token in _TOKEN.finditer(text):
        if token.start() < at < token.end():
            return token.start() if backwards else token.end()
    return at


class PiiRuleSet:
    """An ordered, compiled set of rules with a Python and a SQL implementation."""

    def __init__(self, rules: Iterable[PiiRule]):
        self.rules: tuple[PiiRule, ...] = tuple(rules)
        # ASCII classes (\d, \w, \b), as in RE2, so the ingest worker redacts exactly what
        # file processing does: Unicode \b finds no word boundary in "卡号4111..."
        self._compiled = [(r, re.compile(r.pattern, re.ASCII)) for r in self.rules]
        self._hints = [(r, re.compile(r.column_hint, re.I)) for r in self.rules if r.column_hint]
        self._any = (
            re.compile("|".join(f"(?:{r.pattern})" for r in self.rules), re.ASCII) if self.rules else None
        )

    def __bool__(self) -> bool:
        return bool(self.rules)

    # --- Python (ingest worker, log messages) ---------------------------------------------
    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """Return ``text`` with PII replaced, and the number of matches per rule."""
        counts: dict[str, int] = {}
        if self._any is None or not self._any.search(text):
            return text, counts
        for rule, rx in self._compiled:
            text, n = (
                rx.subn(rule.token, text) if rule.checksum is None else _subn_checked(rx, rule.token, text)
            )
            if n:
                counts[rule.name] = n
        return text, counts

    def redact_text(self, text: str) -> tuple[str, dict[str, int]]:
        """``redact``, and first, in JSON text (an ingested log line, a malformed record's
        line), the value of each member whose name a column hint matches, whole: as a
        column named ``ssn`` is redacted whole, so is ``"ssn": "123456789"``, which no
        pattern matches. (In SQL: ``sql_redact_members``, then ``sql_redact``.)"""
        counts: dict[str, int] = {}

        def member(m: re.Match[str]) -> str:
            rule = self.rule_for_column(m.group(1))
            if rule is None:
                return m.group(0)
            counts[rule.name] = counts.get(rule.name, 0) + 1
            return f'"{m.group(1)}": "{rule.token}"'

        if self._hints and '"' in text and ":" in text:
            text = _JSON_MEMBER.sub(member, text)
        text, found = self.redact(text)
        for name, n in found.items():
            counts[name] = counts.get(name, 0) + n
        return text, counts

    def redact_around(self, before: str, after: str, keep: int) -> tuple[str, str, bool, bool]:
        """The text around a point of a file (where an error is), redacted, then clipped to
        about ``keep`` characters before the point and ``keep`` from it on; and whether
        each side was clipped. Error messages quote it, and they reach logs, the metadata
        item and the DLQ tools, where a file's values are never shown unredacted.
        ``before`` and ``after`` are read wider than what is kept, so a value the clip cuts
        is redacted whole first (no half address), as is a value across the point. A clip
        never cuts into a redaction token: it keeps the token whole."""
        redacted_before = self.redact_text(before)[0]
        joint = self.redact_text(before + after)[0]
        # where the point is in the redacted text: after what ``before`` alone redacts to;
        # where a value runs across the point, where the two first differ, moved back to
        # the start of the token it falls in
        point = next(
            (i for i, (a, b) in enumerate(zip(joint, redacted_before, strict=False)) if a != b), None
        )
        point = min(len(joint), len(redacted_before)) if point is None else point
        point = _out_of_token(joint, point, backwards=True)
        head, tail = joint[:point], joint[point:]
        start = _out_of_token(head, max(0, len(head) - keep), backwards=True)
        end = _out_of_token(tail, min(len(tail), keep), backwards=False)
        return head[start:], tail[:end], start > 0, end < len(tail)

    def rule_for_column(self, column: str, column_type: ColumnType | None = None) -> PiiRule | None:
        """The first rule whose column hint claims ``column`` (whole-value redaction), if
        any: the hint matches the name as written, or with its camelCase words split
        (``homePhone`` as ``home_Phone``); and, for a rule that says so, the name does not
        end in a qualifier the hint matches the name without (``card_type``), and the
        column's inferred type (None: not known, a JSON member's) is not one the rule
        skips. A column of booleans holds no PII of any rule. Decided once per name, never
        per value; ``_sql_hint_claims`` is the SQL twin for a name (without a type)."""
        if column_type == "bool":
            return None
        split = snake_words(column)
        stem = _QUALIFIED.sub("", split)
        for rule, rx in self._hints:
            if not (rx.search(column) or rx.search(split)):
                continue
            if rule.skip_qualified and stem != split and rx.search(stem):
                continue  # it describes the PII: card_type, email_status
            if column_type in rule.skip_types:
                continue
            return rule
        return None

    # --- SQL (DuckDB, file processing) -------------------------------------------------------
    @staticmethod
    def sql_is_match(rule: PiiRule, expr: str) -> str:
        """A DuckDB condition: the whole of ``expr`` is one match of ``rule`` (a bare card
        number, say) that passes the rule's checksum."""
        whole = f"regexp_full_match({expr}, {sql_literal(rule.pattern)})"
        return f"({whole} AND {_sql_luhn_valid(expr)})" if rule.checksum else whole

    def sql_hinted_member_names(self, texts: str) -> str | None:
        """A DuckDB query for the distinct names of the JSON members in column ``text`` of
        the relation ``texts`` that a column hint matches, as written in the text, and those
        written with an escape (``s\\u0073n``), which ``as_written_by_duckdb`` decodes for
        ``rule_for_column``. None: no rule has a hint.

        One scan takes out only the names that might match: each hint without its anchors,
        inside a name. A hint that can match a quote (``secret.*``) may run such a match
        across members and hide a real name: a text where a candidate holds a quote has all
        its names taken out instead."""
        if not self._hints:
            return None
        some = "|".join(f"(?:{_unanchored(rx.pattern)})" for _, rx in self._hints)
        candidates = sql_literal(f'"({_NAME_CHARS}(?:(?i:{some})|\\\\){_NAME_CHARS})"{_JSON_WHITESPACE}:')
        every_name = sql_literal(_JSON_NAME + _JSON_WHITESPACE + ":")
        hinted = " OR ".join(_sql_hint_matches("n", rx.pattern) for _, rx in self._hints)
        names = (
            "CASE WHEN contains(array_to_string(c, ''), '\"') "
            f"THEN regexp_extract_all(text, {every_name}, 1) ELSE c END"
        )
        return (
            f"SELECT DISTINCT n FROM (SELECT unnest({names}) AS n FROM "
            f"(SELECT text, regexp_extract_all(text, {candidates}, 1) AS c FROM {texts})) "
            f"WHERE {hinted} OR contains(n, '\\')"
        )

    def sql_redact_members(self, expr: str, names: Sequence[str]) -> str:
        """The member step of ``redact_text`` in DuckDB SQL, for the JSON text of nested
        values (``{"name": "Ann", "ssn": "123456789"}``): the value of each member whose name
        a column hint matches becomes that rule's token. ``names`` are the member names the
        text may hold, as written in it (``sql_hinted_member_names``): one literal
        pattern per rule over those its hint claims, which RE2 runs as fast as any rule;
        with more names than ``MAX_LITERAL_MEMBER_NAMES``, each member of each value is
        checked alone, as ``redact_text`` does (exact, and several times slower)."""
        claimed: dict[str, list[str]] = {}
        for name in names:
            rule = self.rule_for_column(name)
            if rule is not None:
                claimed.setdefault(rule.name, []).append(name)
        if not claimed:
            return expr
        if len(names) > MAX_LITERAL_MEMBER_NAMES:
            return _sql_redact_each_member(expr, self._hints)
        redacted = expr
        for rule in self.rules:
            if rule.name in claimed:
                alternatives = "|".join(_RE2_SPECIAL.sub(r"\\\1", n) for n in claimed[rule.name])
                pattern = sql_literal(f'"({alternatives})"{_JSON_VALUE}')
                redacted = f"regexp_replace({redacted}, {pattern}, {sql_literal(_member_token(rule))}, 'g')"
        return f"CASE WHEN contains({expr}, '\"') THEN {redacted} ELSE {expr} END"

    def sql_redact(self, expr: str) -> str:
        """A DuckDB expression that redacts ``expr`` (VARCHAR). A cheap combined
        ``regexp_matches`` gate skips the replacements for the vast majority of values."""
        if self._any is None:
            return expr
        replaced = expr
        for rule in self.rules:
            pattern, token = sql_literal(rule.pattern), sql_literal(rule.token)
            if rule.checksum is None:
                replaced = f"regexp_replace({replaced}, {pattern}, {token}, 'g')"
            else:
                replaced = _sql_replace_checked(replaced, pattern, token)
        return (
            f"CASE WHEN regexp_matches({expr}, {sql_literal(self._any.pattern)}) "
            f"THEN {replaced} ELSE {expr} END"
        )
