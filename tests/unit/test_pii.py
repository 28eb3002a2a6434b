"""PII rules: the same redaction in Python (ingest worker) and in SQL (file processing)."""

from __future__ import annotations

import json
import re._constants as _constants
import re._parser as _parser
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from handlers.logic.processing import pii
from handlers.logic.processing.pii import (
    DEFAULT_RULES,
    PiiOptions,
    PiiRule,
    PiiRuleSet,
    _sql_redact_each_member,
    _unanchored,
    as_written_by_duckdb,
    luhn_valid,
)
from handlers.logic.processing.sqltext import literal

RULES = PiiRuleSet(DEFAULT_RULES)

CASES = [
    ("mail me at jane.doe+x@mail.example.co.uk today", "mail me at [REDACTED:EMAIL] today"),
    ("card 4111 1111 1111 1111 ok", "card [REDACTED:CARD] ok"),
    ("card 4111-1111-1111-1111", "card [REDACTED:CARD]"),
    ("amex 3782 822463 10005, visa 4012888888881881", "amex [REDACTED:CARD], visa [REDACTED:CARD]"),
    # a card number ends in a Luhn check digit: other long numbers stay (epoch ms, order ids)
    ("at 1733500000001 order 4111111111111112", "at 1733500000001 order 4111111111111112"),
    # the major networks' numbers start with 2-6: an epoch in ms passing the Luhn check stays
    ("ts=1733500000000", "ts=1733500000000"),
    # a CVV or an expiry after the number does not hide it
    ("4111111111111111 123", "[REDACTED:CARD] 123"),
    ("card 4111 1111 1111 1111 12 27", "card [REDACTED:CARD] 12 27"),
    # an address in quotes keeps its quotes; the multiplication sign is no letter, Vietnamese ones are
    ("{'email': 'alice@example.com'}", "{'email': '[REDACTED:EMAIL]'}"),
    ("2\u00d7bob@x.com nguy\u1ec5n@example.vn", "2\u00d7[REDACTED:EMAIL] [REDACTED:EMAIL]"),
    (
        "4111111111111112 4111111111111111 x4111111111111111",
        "4111111111111112 [REDACTED:CARD] x4111111111111111",
    ),
    ("ssn 123-45-6789", "ssn [REDACTED:NATIONAL_ID]"),
    ("ssn 123 45 6789", "ssn [REDACTED:NATIONAL_ID]"),  # was kept in clear
    # Diners Club is printed 4-6-4 (14 digits): was kept in clear
    ("diners 3056 930902 5904, 3056-930902-5904", "diners [REDACTED:CARD], [REDACTED:CARD]"),
    ("nino AB 12 34 56 C", "nino [REDACTED:NATIONAL_ID]"),
    # as typed into a form, in lower case: was kept in clear
    ("nino ab123456c, ce 12 34 56 d", "nino [REDACTED:NATIONAL_ID], [REDACTED:NATIONAL_ID]"),
    # no NINO: its last letter is A-D, and it stands apart from other letters and digits
    ("ab123456e xab123456c ab1234567c", "ab123456e xab123456c ab1234567c"),
    ("User 555-0199 accessed system", "User [REDACTED:PHONE] accessed system"),
    ("call (555) 123-4567", "call [REDACTED:PHONE]"),
    ("call +44 20 7946 0958 now", "call [REDACTED:PHONE] now"),
    ("call 555.123.4567", "call [REDACTED:PHONE]"),
    # an extension is redacted with the number: "x89" right after it hid the whole number
    ("call 555-123-4567x89 or (555) 123-4567 ext. 12", "call [REDACTED:PHONE] or [REDACTED:PHONE]"),
    # +CC in any grouping, or in one run
    (
        "+1 (415) 555-2671, +49 (0)30 1234567, +14155552671, +33 1 23 45 67 89",
        "[REDACTED:PHONE], [REDACTED:PHONE], [REDACTED:PHONE], [REDACTED:PHONE]",
    ),
    # were kept in clear: India's 5-5 mobile grouping after +91, France's "(0)" trunk
    # before a 1-digit area code, Brazil's national (DD) 9XXXX-XXXX
    (
        "+91 98765 43210, +91 98765-43210, +33 (0)1 23 45 67 89",
        "[REDACTED:PHONE], [REDACTED:PHONE], [REDACTED:PHONE]",
    ),
    ("cel (11) 91234-5678, fixo (21) 3456-7890", "cel [REDACTED:PHONE], fixo [REDACTED:PHONE]"),
    # no Brazilian area code ends in 0, and its number is written with a dash
    ("week (10) 2024-0101, (11) 91234 5678", "week (10) 2024-0101, (11) 91234 5678"),
    # national numbers with a trunk 0 (France, UK, Germany) were kept in clear
    ("tel 01 23 45 67 89 / 06.12.34.56.78", "tel [REDACTED:PHONE] / [REDACTED:PHONE]"),
    (
        "tel 020 7946 0958, 030 12345678, 0171 1234567",
        "tel [REDACTED:PHONE], [REDACTED:PHONE], [REDACTED:PHONE]",
    ),
    # a signed number is no international phone number: +CC needs 7 digits in a run, or groups
    ("score +100000, +123456 bytes, +12 345 678", "score +100000, +123456 bytes, +12 345 678"),
    # nor is a digit run inside a longer one
    ("ref 12345551234567890 and 0012345678", "ref 12345551234567890 and 0012345678"),
    # next to letters outside ASCII: RE2's \b and \d are ASCII, and Python's must be too
    ("卡号4111111111111111", "卡号[REDACTED:CARD]"),
    ("电话555-123-4567", "电话[REDACTED:PHONE]"),
    ("é123-45-6789", "é[REDACTED:NATIONAL_ID]"),
    # digits outside ASCII are not digits to RE2
    ("\uff14" * 16, "\uff14" * 16),
    # not PII: dates, times, IPs, versions, plain ids and amounts stay as they are
    ("on 2025-01-01 at 10:00:00", "on 2025-01-01 at 10:00:00"),
    ("from 192.168.1.10", "from 192.168.1.10"),
    ("order 12345 total 1,299.99", "order 12345 total 1,299.99"),
    ("version 1.2.3", "version 1.2.3"),
    # letters beyond ASCII, an apostrophe, and an international top-level domain
    ("idn jane@bücher.de, jöhn@example.com", "idn [REDACTED:EMAIL], [REDACTED:EMAIL]"),
    (
        "o'brien@example.com or x@пример.рф or a@b.xn--p1ai.",
        "[REDACTED:EMAIL] or [REDACTED:EMAIL] or [REDACTED:EMAIL].",
    ),
    ("mail—jane@x.com", "mail—[REDACTED:EMAIL]"),  # a dash is no letter
    ("用户jane@x.com登录", "用户[REDACTED:EMAIL]登录"),  # nor are the words of text without spaces
    # an address in a URL's query string
    ("GET /reset?email=alice%40example.com HTTP/1.1", "GET /reset?email=[REDACTED:EMAIL] HTTP/1.1"),
    # a long token around an address: the address part is redacted (local part ≤ 64)
    ("x" * 100 + "@example.com", "x" * 36 + "[REDACTED:EMAIL]"),
    ("a" * 8000 + "@" + "a" * 8000 + " 555-0199", "a" * 8000 + "@" + "a" * 8000 + " [REDACTED:PHONE]"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_python_redaction(text, expected):
    assert RULES.redact(text)[0] == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_sql_redaction_matches_python(text, expected):
    sql = RULES.sql_redact(literal(text))
    assert duckdb.sql(f"SELECT {sql}").fetchall() == [(expected,)]


_DIGIT_RUNS = st.text(alphabet="0123456789", min_size=3, max_size=19)
_PIECES = st.one_of(_DIGIT_RUNS, st.sampled_from([" ", "-", "+", "(", ")", "@", ".", "a", "x@y.io"]))


@settings(max_examples=150, deadline=None)
@given(st.lists(_PIECES, max_size=8).map("".join))
def test_sql_and_python_redact_any_text_alike(text):
    # digit runs, separators and near-addresses: where the rules and the Luhn check meet
    assert duckdb.sql(f"SELECT {RULES.sql_redact(literal(text))}").fetchall() == [(RULES.redact(text)[0],)]


def test_counts_per_rule():
    _, counts = RULES.redact("a@b.io and c@d.io, tel 555-0199")
    assert counts == {"email": 2, "phone": 1}


def test_numbers_failing_the_luhn_check_are_not_counted_as_cards():
    assert RULES.redact("4111111111111112 then 4111111111111111 and 4111111111111111")[1] == {"card": 2}


@pytest.mark.parametrize(
    ("column", "rule"),
    [
        ("email", "email"),
        ("E_Mail", "email"),
        ("customer_phone", "phone"),
        ("ssn", "national_id"),
        ("card_number", "card"),
        ("notes", None),
        ("emailed_at", None),
        # camelCase: the words of the name as if written with "_"
        ("homePhone", "phone"),
        ("customerSSN", "national_id"),
        ("userEmail", "email"),
        ("CardNumber", "card"),
        ("telephoned", None),
        # names of the PII itself, qualified or not
        ("home_phone", "phone"),
        ("phoneNumber", "phone"),
        ("customer_ssn", "national_id"),
        ("email_address", "email"),
        ("cc_number", "card"),
        ("contact_email", "email"),
        ("email_2", "email"),
        ("national_id", "national_id"),
        ("customer_tax_id", "national_id"),
        ("ssn_last4", "national_id"),  # the last digits of an SSN are still sensitive
        ("card_code", "card"),  # a CVV
        ("phone_id", "phone"),  # often the number itself, and bare digits are found only here
        ("email_id", "email"),
        # names that describe the PII (a qualifier last): they were redacted whole
        ("card_type", None),
        ("card_brand", None),
        ("card_expiry", None),
        ("card_count", None),
        ("email_count", None),
        ("email_domain", None),
        ("email_status", None),
        ("email_opt_in", None),
        ("email_sent_at", None),
        ("emailUpdatedAt", None),
        ("EMAIL_STATUS", None),
        ("phone_country", None),
        ("phoneNumberType", None),
        ("mobile_os", None),
        ("tel_prefix", None),
        ("phone_verified_at", None),
        ("national_id_type", None),
    ],
)
def test_column_hints(column, rule):
    found = RULES.rule_for_column(column)
    assert (found.name if found else None) == rule


def test_camel_case_names_are_redacted_whole_in_every_path(process, monkeypatch):
    # a CSV column "homePhone" of bare digits was typed int and kept in clear, and so were
    # "customerSSN" members in JSON text: only snake_case names were claimed
    result = process("c.csv", "id,homePhone,customerSSN\n1,5551234567,123456789\n")
    assert result.rows("homePhone, customerSSN") == [("[REDACTED:PHONE]", "[REDACTED:NATIONAL_ID]")]
    line = '{"contactPhone": 5551234567, "customerSSN": "123456789", "isbn": "9783161484100"}'
    assert RULES.redact_text(line)[0] == (
        '{"contactPhone": "[REDACTED:PHONE]", "customerSSN": "[REDACTED:NATIONAL_ID]", "isbn": "9783161484100"}'
    )
    # nested values (SQL): one literal pattern per rule, and each member checked alone
    for limit in (pii.MAX_LITERAL_MEMBER_NAMES, 0):
        monkeypatch.setattr(pii, "MAX_LITERAL_MEMBER_NAMES", limit)
        nested = process(f"n{limit}.ndjson", '{"id": 1, "u": ' + line + "}\n")
        assert json.loads(nested.rows("u")[0][0]) == {
            "contactPhone": "[REDACTED:PHONE]",
            "customerSSN": "[REDACTED:NATIONAL_ID]",
            "isbn": "9783161484100",
        }


def test_columns_that_describe_pii_keep_their_values_and_real_pii_in_them_is_still_found(process):
    # Given columns named after PII that describe it (a kind, a count, a state, a time) next
    # to columns that hold it; one status holds an address, one carrier a phone number
    text = (
        "card_type,card_count,email_count,email_domain,email_status,email_sent_at,phone_type,phone_carrier,"
        "phone_verified_at,home_phone,contact_email,ssn_last4\n"
        "visa,2,5,gmail.com,active,2024-01-02 10:00:00,mobile,Verizon,2024-01-03,5551234567,a@b.io,6789\n"
        "mastercard,1,7,yahoo.com,bounced by jane@example.com,2024-01-04 11:30:00,home,call 555-0199,"
        "2024-01-05,5559876543,c@d.io,1234\n"
    )
    result = process("customers.csv", text)
    schema = result.data["schema"]
    # Then the describing columns keep their types and values (they were all the string
    # "[REDACTED:<RULE>]", a count and a timestamp included)
    assert {n: schema[n] for n in ("card_count", "email_count", "email_sent_at", "phone_verified_at")} == {
        "card_count": "int",
        "email_count": "int",
        "email_sent_at": "timestamp",
        "phone_verified_at": "date",
    }
    assert result.rows(
        "card_type, card_count, email_count, email_domain, email_status, phone_type, phone_carrier"
    ) == [
        ("visa", 2, 5, "gmail.com", "active", "mobile", "Verizon"),
        ("mastercard", 1, 7, "yahoo.com", "bounced by [REDACTED:EMAIL]", "home", "call [REDACTED:PHONE]"),
    ]
    # and the columns holding PII are redacted whole, as before
    assert (
        result.rows("home_phone, contact_email, ssn_last4")
        == [("[REDACTED:PHONE]", "[REDACTED:EMAIL]", "[REDACTED:NATIONAL_ID]")] * 2
    )
    assert result.data["pii_redactions"] == {
        "email_status": {"email": 1},
        "phone_carrier": {"phone": 1},
        "home_phone": {"phone": 2},
        "contact_email": {"email": 2},
        "ssn_last4": {"national_id": 2},
    }


def test_a_hinted_column_of_a_type_that_cannot_hold_its_pii_keeps_its_values(process):
    # Given names the hints claim (no qualifier last) of dates, and e-mail ones of numbers
    text = "mobile_signup,email_opens,phone\n2024-01-02,3,5551234567\n2024-02-03,0,5559876543\n"
    result = process("t.csv", text)
    # Then a date holds no phone number, a number no address: kept, with a warning saying so
    assert result.data["schema"] == {"mobile_signup": "date", "email_opens": "int", "phone": "string"}
    assert [(str(d), n) for d, n in result.rows("mobile_signup, email_opens")] == [
        ("2024-01-02", 3),
        ("2024-02-03", 0),
    ]
    assert any(
        "'email_opens' is named like email PII but holds int values" in w for w in result.data["warnings"]
    )
    assert any(
        "'mobile_signup' is named like phone PII but holds date values" in w for w in result.data["warnings"]
    )
    # while a phone column of bare digits, typed int, is still redacted whole
    assert result.rows("phone") == [("[REDACTED:PHONE]",)] * 2


def test_json_members_that_describe_pii_keep_their_values_in_every_path(process, monkeypatch):
    # an ingested log line (Python), and the same object nested in an NDJSON file (SQL)
    line = (
        '{"card_type": "visa", "email_count": 3, "email_status": "sent to a@b.io", '
        '"phoneType": "mobile", "phone": 5551234567, "national_id": "AB123456C", "tax_id_status": "pending"}'
    )
    expected = {
        "card_type": "visa",
        "email_count": 3,
        "email_status": "sent to [REDACTED:EMAIL]",
        "phoneType": "mobile",
        "phone": "[REDACTED:PHONE]",
        "national_id": "[REDACTED:NATIONAL_ID]",
        "tax_id_status": "pending",
    }
    redacted, counts = RULES.redact_text(line)
    assert json.loads(redacted) == expected
    assert counts == {"email": 1, "phone": 1, "national_id": 1}
    # nested values: one literal pattern per rule, and each member checked alone
    for limit in (pii.MAX_LITERAL_MEMBER_NAMES, 0):
        monkeypatch.setattr(pii, "MAX_LITERAL_MEMBER_NAMES", limit)
        nested = process(f"n{limit}.ndjson", '{"id": 1, "u": ' + line + "}\n")
        assert json.loads(nested.rows("u")[0][0]) == expected


def test_user_rules_claim_qualified_names_unless_they_opt_out():
    iban = {"name": "iban", "pattern": r"\bDE\d{20}\b", "column_hint": "(^|_)iban($|_)"}
    before = PiiRuleSet([PiiRule(**iban)])
    assert before.rule_for_column("iban_type") is not None  # as before: every name it matches
    assert before.rule_for_column("iban_added", "date") is not None
    opted = PiiRuleSet([PiiRule(**iban, skip_qualified=True, skip_types=["date"])])
    assert opted.rule_for_column("iban_type") is None
    assert opted.rule_for_column("iban_added", "date") is None
    assert opted.rule_for_column("payer_iban") is not None
    text = '{"iban_type": "sepa", "payer_iban": "x"}'
    assert opted.redact_text(text)[0] == '{"iban_type": "sepa", "payer_iban": "[REDACTED:IBAN]"}'
    sql = _sql_redact_each_member(literal(text), opted._hints)
    assert duckdb.sql(f"SELECT {sql}").fetchall() == [
        ('{"iban_type": "sepa", "payer_iban": "[REDACTED:IBAN]"}',)
    ]
    with pytest.raises(ValidationError, match="skip_types"):
        PiiRule(**iban, skip_types=["text"])
    # a qualifier that is part of the hint itself does not undo it
    birth = PiiRuleSet(
        [PiiRule(name="dob", pattern="x^", column_hint="(^|_)birth_date$", skip_qualified=True)]
    )
    assert birth.rule_for_column("birth_date") is not None


def test_extra_rules_and_disabled_rules():
    options = PiiOptions(
        extra_rules=(PiiRule(name="iban", pattern=r"\bDE\d{20}\b"),), disabled_rules=frozenset({"phone"})
    )
    text, counts = options.rules.redact("pay DE89370400440532013000, call 555-0199")
    assert text == "pay [REDACTED:IBAN], call 555-0199"
    assert counts == {"iban": 1}


def test_a_rule_with_a_misspelt_key_is_refused():
    # column_hint dropped silently would redact the column by pattern only
    with pytest.raises(ValidationError, match="columnhint"):
        PiiRule.model_validate({"name": "employee_id", "pattern": "EMP-[0-9]{6}", "columnhint": "^employee"})


def test_disabled_redaction_is_a_no_op():
    assert PiiOptions(enabled=False).rules.redact("a@b.io") == ("a@b.io", {})


@pytest.mark.parametrize(
    ("before", "after", "keep", "expected"),
    [
        # nothing to redact: clipped to `keep` each side
        ("abcdef", "ghijkl", 3, ("def", "ghi", True, True)),
        # an address the clip would cut in half: redacted whole first, its token kept whole
        ("see x.y.z@example.com", " then", 4, ("[REDACTED:EMAIL]", " the", True, True)),
        ("x ", "bob@example.com and more", 5, ("x ", "[REDACTED:EMAIL]", False, True)),
        # an address across the point: redacted whole, the point at the start of its token
        ("mail bob@exa", "mple.com now", 20, ("mail ", "[REDACTED:EMAIL] now", False, False)),
        # a member a hint claims, across the point
        ('{"ssn": "123', '456789"}', 40, ('{"ssn": "', '[REDACTED:NATIONAL_ID]"}', False, False)),
    ],
)
def test_the_text_around_a_point_is_redacted_before_it_is_clipped(before, after, keep, expected):
    assert RULES.redact_around(before, after, keep) == expected


def _unbounded_character_runs(tree: Any) -> list[str]:
    """Repeats of one character (class) without an upper bound, anywhere in a parsed pattern."""
    found = []
    for op, arg in tree:
        if op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT):
            low, high, body = arg
            if high == _constants.MAXREPEAT and len(body) == 1 and body[0][0] in SINGLE_CHARACTER:
                found.append(f"{body[0]} repeated {low} or more times")
            found += _unbounded_character_runs(body)
        elif op == _constants.SUBPATTERN:
            found += _unbounded_character_runs(arg[-1])
        elif op == _constants.BRANCH:
            for branch in arg[1]:
                found += _unbounded_character_runs(branch)
    return found


SINGLE_CHARACTER = (_constants.IN, _constants.LITERAL, _constants.NOT_LITERAL, _constants.ANY)


@pytest.mark.parametrize("pattern", [r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", r"(?:\.[a-z]{1,63})*", r"\d+(?:-\d+)?"])
def test_patterns_without_nested_unbounded_repeats_are_accepted(pattern):
    PiiRule(name="ok", pattern=pattern)


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_default_rules_bound_every_character_run(rule):
    # Given a built-in rule, as the ingest worker runs it (Python's backtracking engine)
    # Then no run of one character class is unbounded: such a run (like "[a-z]+@") makes
    # the time for a long token quadratic in its length, enough to time out a batch
    assert _unbounded_character_runs(_parser.parse(rule.pattern)) == []


@pytest.mark.parametrize("pattern", [r"(?<=x)y", r"(a)\1", "(", r"(a+)+$", r"(\w+\s?)*x", r"((ab)*c){2,5}"])
def test_patterns_the_sql_engine_cannot_run_are_refused(pattern):
    with pytest.raises(ValidationError):
        PiiRule(name="bad", pattern=pattern)


def test_file_processing_redacts_strings_and_hinted_columns(process):
    # Given free text with PII and a phone column of bare digits
    text = (
        "id,note,phone\n1,contact jane@example.com,5551234567\n2,nothing here,\n3,call 555-0199,5559876543\n"
    )
    result = process("c.csv", text)
    # Then PII is gone from the Parquet, the hinted column stays a string, counts are reported
    assert result.rows("note, phone") == [
        ("contact [REDACTED:EMAIL]", "[REDACTED:PHONE]"),
        ("nothing here", None),
        ("call [REDACTED:PHONE]", "[REDACTED:PHONE]"),
    ]
    assert result.data["schema"]["phone"] == "string"
    assert result.data["pii_redactions"] == {"note": {"email": 1, "phone": 1}, "phone": {"phone": 2}}


def test_rescued_values_and_malformed_text_are_redacted_too(process):
    text = "n,x\n" + "".join(f"{i},{i}\n" for i in range(20)) + "a@b.io,1\n1,2,call 555-0199\n"
    data = process("r.csv", text).data
    assert data["quality_issues"]["type_mismatches"]["n"]["examples"][0]["value"] == "[REDACTED:EMAIL]"
    assert data["quality_issues"]["malformed_rows"]["rows"][0]["text"] == "1,2,call [REDACTED:PHONE]"


def test_a_column_of_bare_card_numbers_is_redacted_whole_although_it_parses_as_int(process):
    # "payment" names no PII, and 16 digits fit a 64-bit int: the type kept them in clear
    cards = ["4111111111111111", "5500005555555559", "4012888888881881", "1733500000001"]
    result = process("p.csv", "id,payment\n" + "".join(f"{i},{c}\n" for i, c in enumerate(cards)))
    assert result.data["schema"]["payment"] == "string"
    assert result.rows("payment") == [("[REDACTED:CARD]",)] * 4
    assert result.data["pii_redactions"] == {"payment": {"card": 4}}
    assert any("'payment' looks like card PII" in w for w in result.data["warnings"])


def test_long_numbers_that_are_mostly_no_cards_stay_numbers(process):
    # epoch milliseconds: about one in ten passes the Luhn check by chance
    stamps = [str(1733500000000 + i) for i in range(20)]
    result = process("t.json", json.dumps([{"ts": int(s)} for s in stamps]))
    assert result.data["schema"]["ts"] == "int"
    assert [v for (v,) in result.rows("ts")] == [int(s) for s in stamps]
    assert result.data["pii_redactions"] == {}


def test_a_number_column_with_card_numbers_among_other_numbers_is_redacted_whole(process):
    # a log's acct= field: two cards and shorter account numbers, typed int, kept cards in clear
    values = ["4111111111111111", "12345", "5500005555555559", "67890", "11111"]
    result = process("acct.csv", "acct\n" + "\n".join(values) + "\n")
    assert result.data["schema"]["acct"] == "string"
    assert result.rows("acct") == [("[REDACTED:CARD]",)] * 5


def test_long_ids_of_which_some_pass_the_luhn_check_by_chance_stay_numbers(process):
    # one in ten random 16-digit ids passes the check: they are ids, not cards
    ids = [str(4_000_000_000_000_000 + 7_919 * i) for i in range(200)]
    assert sum(luhn_valid(i) for i in ids) > 5
    result = process("ids.csv", "order_id\n" + "\n".join(ids) + "\n")
    assert result.data["schema"]["order_id"] == "int"
    assert [v for (v,) in result.rows("order_id")] == [int(i) for i in ids]


def test_signed_amounts_are_no_phone_numbers(process):
    # whole values such as "+8412.21" match the phone rule: the column stays a number
    result = process("amounts.csv", "delta\n" + "".join(f"+{8400 + i}.21\n" for i in range(50)))
    assert result.data["schema"]["delta"] == "float" and result.data["pii_redactions"] == {}


def test_json_members_named_like_pii_are_redacted_whole_in_text():
    # an ingested JSON log line, a malformed record: "ssn": "123456789" matches no pattern
    text = '{"user": "bob", "ssn": "123456789", "contact": {"phone": 5551234567, "note": "call me"}, "n": 3}'
    redacted, counts = RULES.redact_text(text)
    assert redacted == (
        '{"user": "bob", "ssn": "[REDACTED:NATIONAL_ID]", '
        '"contact": {"phone": "[REDACTED:PHONE]", "note": "call me"}, "n": 3}'
    )
    assert counts == {"national_id": 1, "phone": 1}
    assert RULES.redact_text("no json: ssn 123-45-6789") == (
        "no json: ssn [REDACTED:NATIONAL_ID]",
        {"national_id": 1},
    )


def test_a_malformed_record_shows_no_pii_of_a_hinted_member(process):
    text = '{"id": 1, "ssn": "111223333"}\n{"id": 2, "ssn": "123456789", "phone": "5551234567"\n{"id": 3}\n'
    rows = process("m.ndjson", text).data["quality_issues"]["malformed_rows"]["rows"]
    assert "123456789" not in rows[0]["text"] and "5551234567" not in rows[0]["text"]


def test_members_named_like_pii_are_redacted_in_nested_values(process):
    # an API's event payload: the nested object is kept as JSON text, its "ssn" as a column's
    records = [
        {"id": 1, "user": {"name": "Ann", "SSN": "123456789", "phoneNumber": 5551234567}},
        {
            "id": 2,
            "user": {"name": "Bob", "s\\u0073n": "987654321"},
            "items": [{"card_no": "4111111111111111"}],
        },
        {"id": 3, "user": {"name": "Cy", "x+y (1)_ssn": "111223333", "nickname": "ssn"}},
    ]
    text = "\n".join(json.dumps(r) for r in records).replace("\\\\u0073", "\\u0073")
    result = process("events.ndjson", text)
    users = [json.loads(u) for (u,) in result.rows("user")]
    assert users == [
        {"name": "Ann", "SSN": "[REDACTED:NATIONAL_ID]", "phoneNumber": "[REDACTED:PHONE]"},
        {"name": "Bob", "ssn": "[REDACTED:NATIONAL_ID]"},
        {"name": "Cy", "x+y (1)_ssn": "[REDACTED:NATIONAL_ID]", "nickname": "ssn"},
    ]
    assert json.loads(result.rows("items")[1][0]) == [{"card_no": "[REDACTED:CARD]"}]
    assert result.data["pii_redactions"] == {"user": {"national_id": 3, "phone": 1}, "items": {"card": 1}}


def test_a_nested_value_rescued_from_a_typed_column_is_redacted_too(process):
    lines = [json.dumps({"ref": i}) for i in range(40)] + [json.dumps({"ref": {"ssn": "123456789"}})]
    result = process("refs.ndjson", "\n".join(lines))
    assert result.data["schema"]["ref"] == "int"
    assert result.rows("_rescued_data")[-1] == ('{"ref":"{\\"ssn\\": \\"[REDACTED:NATIONAL_ID]\\"}"}',)


_NAMES = st.sampled_from(
    [
        "ssn",
        "Phone",
        "user_email",
        "cc_num",
        "tel",
        "hotel",
        "name",
        "note",
        "a.b",
        'q"t',
        "card_type",
        "phoneType",
        "email_sent_at",
        "national_id",
        "tax_id_status",
    ]
)
_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
_OBJECTS = st.recursive(
    st.dictionaries(_NAMES, _VALUES, max_size=4),
    lambda inner: st.dictionaries(_NAMES, st.one_of(_VALUES, inner, st.lists(inner, max_size=2)), max_size=4),
    max_leaves=12,
)


def _nested_text(con: duckdb.DuckDBPyConnection, value: Any) -> str:
    """The JSON text DuckDB writes for ``value`` nested in a record."""
    return first(con, f"SELECT json_extract_string({literal(json.dumps({'v': value}))}, '$.v')")


@settings(max_examples=120, deadline=None)
@given(_OBJECTS)
def test_sql_redacts_nested_members_as_python_does(value):
    # names found by the same query as in file processing; SQL's literal patterns give what
    # redact_text gives in Python
    con = duckdb.connect()
    text = _nested_text(con, value)
    query = RULES.sql_hinted_member_names(f"(SELECT {literal(text)} AS text)")
    names = [as_written_by_duckdb(n) for (n,) in con.execute(query).fetchall()]
    assert (
        first(con, f"SELECT {RULES.sql_redact(RULES.sql_redact_members(literal(text), names))}")
        == RULES.redact_text(text)[0]
    )


# Fewer examples: each plans the member-by-member expression anew (0.3 s; a file plans it once).
@settings(max_examples=30, deadline=None)
@given(_OBJECTS)
def test_sql_member_by_member_fallback_redacts_as_python_does(value):
    con = duckdb.connect()
    text = _nested_text(con, value)
    each = RULES.sql_redact(_sql_redact_each_member(literal(text), RULES._hints))
    assert first(con, f"SELECT {each}") == RULES.redact_text(text)[0]


def first(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    return con.execute(query).fetchall()[0][0]


def test_more_member_names_than_one_pattern_holds_are_checked_one_by_one(process, monkeypatch):
    monkeypatch.setattr(pii, "MAX_LITERAL_MEMBER_NAMES", 2)
    lines = [json.dumps({"id": i, "u": {f"phone_{i}": f"555{i:07d}", "n": i}}) for i in range(5)]
    result = process("many.ndjson", "\n".join(lines))
    assert [json.loads(u) for (u,) in result.rows("u")] == [
        {f"phone_{i}": "[REDACTED:PHONE]", "n": i} for i in range(5)
    ]


@pytest.mark.parametrize(
    ("pattern", "unanchored"),
    [
        (r"(^|_)ssn($|_)", r"(|_)ssn(|_)"),
        (r"\Atel\Z", "tel"),
        (r"[^$]x\$", r"[^$]x\$"),  # a negated class and an escaped dollar are no anchors
        (r"[]^]a^", r"[]^]a"),  # nor a caret inside a class, its first member a bracket
    ],
)
def test_a_hint_without_anchors_for_the_quick_gate(pattern, unanchored):
    assert _unanchored(pattern) == unanchored


def test_the_built_in_rules_pass_the_checks_user_rules_get():
    # they are built without validation (no DuckDB import in the ingest worker)
    for rule in DEFAULT_RULES:
        assert PiiRule.model_validate(rule.model_dump()) == rule


@pytest.mark.parametrize("hint", [r"secret\Z", "(?x) secret", "(?>secret)", r"caf\u00e9"])
def test_a_rule_python_takes_but_re2_refuses_is_refused_up_front(hint):
    # file processing runs hints and patterns in DuckDB: such a rule failed every JSON file
    with pytest.raises(ValidationError, match="is not valid in RE2"):
        PiiRule(name="secret", pattern="x", column_hint=hint)


def test_a_custom_hint_that_can_match_a_quote_still_finds_the_member(process, tmp_path):
    # "^secret.*" inside a name ran across members ('secret":"hunter2","b'), hid the real
    # name, and left its value in clear
    rules = (PiiRule(name="sec", pattern="x", column_hint="^secret.*"),)
    lines = ['{"a": {"secret": "hunter2", "b": 1}}', '{"a": {"pw": "1", "secretive": 2}}']
    result = process("n.ndjson", "\n".join(lines), pii=PiiOptions(extra_rules=rules))
    assert [json.loads(a) for (a,) in result.rows("a")] == [
        {"secret": "[REDACTED:SEC]", "b": 1},
        {"pw": "1", "secretive": "[REDACTED:SEC]"},
    ]


def test_a_long_number_under_a_hinted_name_is_redacted_whole():
    text = '{"ssn": ' + "1234567890" * 8 + ', "n": 1}'
    assert RULES.redact_text(text)[0] == '{"ssn": "[REDACTED:NATIONAL_ID]", "n": 1}'
    names = ["ssn"]
    sql = RULES.sql_redact(RULES.sql_redact_members(literal(text), names))
    assert duckdb.sql(f"SELECT {sql}").fetchall() == [('{"ssn": "[REDACTED:NATIONAL_ID]", "n": 1}',)]


def test_a_flag_named_after_pii_stays_a_bool_and_a_late_address_in_it_is_redacted(process):
    # Given flags named like hinted columns (a whole word of the hint) next to a real one
    rows = "".join(
        f"{i},{'true' if i % 2 else 'false'},{'yes' if i % 3 else 'no'},555123{i:04d}\n" for i in range(30)
    )
    text = "id,email_verified,is_mobile,phone\n" + rows + "30,jane@example.com,no,5551239999\n"
    result = process("flags.csv", text)
    # Then the flags keep their type and values, the phone column is still redacted whole
    assert result.data["schema"]["email_verified"] == "bool"
    assert result.data["schema"]["is_mobile"] == "bool"
    assert result.data["schema"]["phone"] == "string"
    assert result.rows("email_verified, is_mobile, phone")[:2] == [
        (False, False, "[REDACTED:PHONE]"),
        (True, True, "[REDACTED:PHONE]"),
    ]
    # and a value past the type sample that is no bool is rescued with its PII redacted
    mismatch = result.data["quality_issues"]["type_mismatches"]["email_verified"]
    assert mismatch["examples"][0]["value"] == "[REDACTED:EMAIL]"
    assert any(
        "'is_mobile' is named like phone PII but holds only booleans" in w for w in result.data["warnings"]
    )
