"""The processing core on JSON, NDJSON and logs, and on input it must refuse."""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
import re

import pytest

from handlers.logic.processing import UnprocessableFile, logs, textfile

LOG_RECORDS = (
    '{"timestamp": "2024-01-15T10:00:00Z", "level": "INFO", "endpoint": "/api/users", "response_time_ms": 45, "status_code": 200, "user_id": "user_1"}\n'
    '{"timestamp": "2024-01-15T10:00:01Z", "level": "ERROR", "endpoint": "/api/orders", "response_time_ms": 2500, "status_code": 500, "user_id": "user_2"}\n'
    '{"timestamp": "2024-01-15T10:00:02Z", "level": "WARN", "endpoint": "/api/users", "response_time_ms": 300, "status_code": 200, "user_id": "user_1"}\n'
)


def test_json_array_of_records(process):
    result = process(
        "a.json", '[{"id": 1, "name": "a", "tags": ["x"]}, {"id": 2, "name": "b", "extra": true}]'
    )
    assert result.data["format"] == "json"
    assert result.data["schema"] == {"id": "int", "name": "string", "tags": "string", "extra": "bool"}
    assert result.rows("id, tags, extra") == [(1, '["x"]', None), (2, None, True)]
    assert result.data["lineage"]["unit"] == "record"


def test_json_object_wrapping_one_array_of_records(process):
    result = process("w.json", '{"meta": {"page": 1}, "records": [{"id": 1}, {"id": 2}, {"id": 3}]}')
    assert result.data["row_count"] == 3
    assert result.data["schema"] == {"id": "int"}
    assert result.data["warnings"] == [
        "only the records under 'records' were read: the object's other member ('meta') is not kept"
    ]


@pytest.mark.parametrize(
    "meta",
    [
        '{"page": 1}',
        '{"a":' * 5_000 + "1" + "}" * 5_000,
    ],  # read as a stream; read whole (too deep for Python)
    ids=["streamed", "whole"],
)
def test_members_beside_wrapped_records_are_named_as_left_out(process, meta):
    # An API page: its "next" cursor and "meta" were dropped without a word
    result = process("page.json", f'{{"meta": {meta}, "items": [{{"id": 1}}, {{"id": 2}}], "next": "c2"}}')
    assert result.rows("id") == [(1,), (2,)]
    assert result.data["warnings"] == [
        "only the records under 'items' were read: the object's other members ('meta', 'next') are not kept"
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"data": [], "meta": {"total": 0}}',  # an empty page: no array of records
        '{"data": [null, {"id": 1}], "meta": {"total": 1}}',  # its array starts with no object
        '{"data": [{"id": 1}], "meta": [{"total": 1}]}',  # two arrays of objects
    ],
)
def test_an_object_without_exactly_one_array_of_records_is_one_record(process, text):
    # as the README says: the members are the columns of one record
    result = process("page.json", text)
    assert result.data["row_count"] == 1
    assert list(result.data["schema"]) == ["data", "meta"]


def test_single_json_object_is_one_record(process):
    result = process("o.json", '{"id": 7, "nested": {"a": 1}}')
    assert result.rows("id, nested") == [(7, '{"a":1}')]


def test_non_objects_in_a_json_array_are_malformed_records(process):
    result = process("m.json", '[{"id": 1}, 42, "x", {"id": 2}]')
    malformed = result.data["quality_issues"]["malformed_rows"]
    assert malformed["count"] == 2
    assert malformed["rows"][0] == {"record": 2, "error": "a JSON number, not an object", "text": "42"}
    assert result.data["lineage"] == {"unit": "record", "first": 1, "skipped": [2, 3]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"just text"', "the JSON document is a string, not records"),
        ("42", "the JSON document is a number, not records"),
        ("[1, 2, 3]", "holds no JSON objects (the first is a JSON number, not an object)"),
        ('{"a": 1, "b": {"c": 2}', "invalid JSON"),
    ],
)
def test_json_that_is_not_records_is_refused(process, content, message):
    with pytest.raises(UnprocessableFile, match=re.escape(message)):
        process("bad.json", content)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # an upload cut after a comma: DuckDB's reader returned the first record as the file
        (
            '[{"a": 1},\n',
            "the JSON array is not closed: the file should end with ']' but ends with '[{\"a\": 1},'",
        ),
        ('[{"a": 1}, {"a": 2}', "the JSON array is not closed"),
        (
            '[{"a": 1}]\ntrailing text\n',
            "]\\ntrailing text' (a truncated upload, or text after the document)",
        ),
        ('{"a": 1,', "the JSON object is not closed: the file should end with '}'"),
    ],
)
def test_a_json_document_that_is_not_closed_is_refused(process, content, message):
    with pytest.raises(UnprocessableFile, match=re.escape(message)):
        process("cut.json", content)


def test_a_json_document_may_end_in_any_amount_of_whitespace(process):
    assert process("w.json", '[{"a": 1}, {"a": 2}]' + "\n" * 5000).data["row_count"] == 2


def test_ndjson_with_blank_and_malformed_lines(process):
    text = '{"a": 1}\n\n{"a": 2, oops}\n[1]\n{"a": 3, "b": "x"}\n'
    result = process("e.ndjson", text)
    assert result.rows("a, b") == [(1, None), (3, "x")]
    malformed = result.data["quality_issues"]["malformed_rows"]
    assert malformed["count"] == 2
    assert [r["line"] for r in malformed["rows"]] == [3, 4]
    assert [r["error"] for r in malformed["rows"]] == ["not valid JSON", "a JSON array, not an object"]
    assert result.data["lineage"]["skipped"] == [2, 3, 4]


def test_json_documents_one_after_another_are_one_record_each(process):
    # jq's output, or NDJSON whose first line is too long to sniff: every document but one
    # record of an array inside the first was lost, silently
    text = '{\n  "id": 1,\n  "items": [{"x": 1}]\n}\n{\n  "id": 2\n}\n[3]\n{"id": 4}\n'
    result = process("seq.json", text)
    assert result.rows("id, items") == [(1, '[{"x":1}]'), (2, None), (4, None)]
    malformed = result.data["quality_issues"]["malformed_rows"]
    assert malformed["rows"] == [{"record": 3, "error": "a JSON array, not an object", "text": "[3]"}]


def test_an_empty_key_is_a_column_like_an_empty_csv_header(process):
    # DuckDB's JSON path cannot name "": the file crashed the processor (retried as transient)
    for name, text in [
        ("e.json", '[{"": 1, "a": 2}, {"": 3, "a": 4}]'),
        ("e.ndjson", '{"": 1, "a": 2}\n{"": 3, "a": 4}\n'),
    ]:
        result = process(name, text)
        assert result.data["schema"] == {"column_1": "int", "a": "int"}
        assert result.rows("column_1, a") == [(1, 2), (3, 4)]
    assert process("w.json", '{"": [{"x": 1}, {"x": 2}]}').rows("x") == [(1,), (2,)]
    # and a key of the file named column_1 keeps its name
    result = process("c.ndjson", '{"": 1, "column_1": 2, "a": 3, "A": 4, "a_2": 5}\n')
    assert list(result.data["schema"]) == ["column_1_2", "column_1", "a", "A_3", "a_2"]
    assert result.rows("column_1, a_2") == [(2, 5)]


def test_ndjson_files_joined_with_their_byte_order_marks_are_read_whole(process):
    # cat a.ndjson b.ndjson, each written with a BOM: b's first line was "not valid JSON"
    result = process("joined.ndjson", '\ufeff{"a": 1}\n{"a": 2}\n\ufeff{"a": 3}\n{"a": 4}\n')
    assert result.rows("a") == [(1,), (2,), (3,), (4,)]
    assert "malformed_rows" not in result.data["quality_issues"]


def test_ndjson_with_mixed_line_ends_is_read(process):
    # DuckDB's line reader refused the whole file ("CSV Parser state machine ...")
    result = process("m.ndjson", '{"a": 1}\r\n{"a": 2}\n{"a": 3}\r\n')
    assert result.rows("a") == [(1,), (2,), (3,)]
    assert "CRLF and LF line ends are mixed; all read as LF" in result.data["warnings"]


def _pretty(*edits: tuple[str, str]) -> str:
    """Three records, pretty-printed four lines each (record 2 is on lines 6-9), edited."""
    text = json.dumps([{"id": i, "name": f"n{i}"} for i in (1, 2, 3)], indent=2) + "\n"
    for old, new in edits:
        text = text.replace(old, new)
    return text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[{"a": 1}, {"a": 2}, {"a": 3 "b": 1}, {"a": 4}]',
            "invalid JSON at line 1, column 30 (record 3): unexpected character: "
            '\'[{"a": 1}, {"a": 2}, {"a": 3 "b": 1}, {"a": 4}]\'',
        ),
        ('{"a" 1}', "invalid JSON at line 1, column 6 (record 1): unexpected character: '{\"a\" 1}'"),
        (
            _pretty(('"n2"', "n2")),
            "invalid JSON at line 8, column 13 (record 2): invalid literal: '    \"name\": n2'",
        ),
        (
            _pretty(('"id": 2,', '"id": 2,\n    // the second')),
            "invalid JSON at line 8, column 5 (record 2): a comment (JSON has none): '    // the second'",
        ),
        (  # a comma missing between records: named by the record before it
            _pretty(('},\n  {\n    "id": 2', '}\n  {\n    "id": 2')),
            "invalid JSON at line 6, column 3 (after record 1): unexpected character: '  {'",
        ),
        (  # a stray bracket that closes the array early: record 1's line, not record 3's
            _pretty(('"n1"', '"n1"]')),
            'invalid JSON at line 4, column 17 (record 1): unexpected character: \'    "name": "n1"]\'',
        ),
        (
            '[{"a": 1},\n {"a": 2},, {"a": 3}]',
            'invalid JSON at line 2, column 11 (record 3): no value between two commas: \' {"a": 2},, {"a": 3}]\'',
        ),
        (  # a comma after the last record of an array that does not end the file
            '{"items": [{"a": 1}, {"a": 2},], "next": "c2"}',
            "invalid JSON at line 1, column 31 (record 3): a comma before the array's closing ']' "
            '(JSON allows none): \'{"items": [{"a": 1}, {"a": 2},], "next": "c2"}\'',
        ),
        (  # records under a key, read from a copy of their array: lines of the file
            '{"meta": {"page": 1},\n "items": [\n  {"a": 1},\n  {"a": 2 /* x */}\n]}',
            "invalid JSON at line 4, column 11 (record 2): a comment (JSON has none): '  {\"a\": 2 /* x */}'",
        ),
        (  # objects one after another (jq's output)
            '{\n  "a": 1\n}\n{\n  "a": tru\n}\n',
            "invalid JSON at line 5, column 8 (record 2): invalid literal: '  \"a\": tru'",
        ),
        (  # one line of any length: the text around the error, counted in characters
            json.dumps([{"id": i, "é": "é" * 30} for i in range(20)], ensure_ascii=False).replace(
                '"id": 12', '"id": 12x'
            ),
            "invalid JSON at line 1, column 613 (record 13): unexpected character: "
            + repr("..." + "é" * 27 + '"}, {"id": 12x, "é": "' + "é" * 30 + '"...'),
        ),
    ],
)
def test_invalid_json_names_its_line_column_and_record(process, content, message):
    # DuckDB named a record ("record/value 4" for the third) and a byte inside it, and
    # said "at byte 1 in record 1" of a comment before the first record: a pretty-printed
    # file's user had to count records to find the line
    with pytest.raises(UnprocessableFile, match="^" + re.escape(message)):
        process("bad.json", content)


LONG_ADDRESS = "firstname.middlename.lastname@mail.example.com"


@pytest.mark.parametrize(
    ("content", "shown"),
    [
        (  # the error's quote of the file, an address whole inside it
            '[{"email": "alice@example.com", "n": 1}, {"email": "bob@example.com" "n": 2}]',
            '"[REDACTED:EMAIL]" "n": 2}]',
        ),
        (  # an address the quote's edge cuts: redacted whole, not shown in half
            json.dumps([{"note": "x" * 20, "contact": LONG_ADDRESS, "n": 1}]).replace('"n": 1', '"n" 1'),
            '[REDACTED:EMAIL]", "n" 1}]',
        ),
        (  # a member a rule's column hint claims, whole, as in the Parquet
            '[{"ssn": "123456789", "n": 1}, {"n" 2}]',
            '"[REDACTED:NATIONAL_ID]", "n": 1}',
        ),
        (  # the end of a truncated upload
            json.dumps([{"email": "carol@example.com"}, {"phone": "+1 415 555 0100"}])[:-2],
            "ends with ': \"[REDACTED:PHONE]\"'",
        ),
        (  # the end of a file with a comma before its closing bracket
            '[{"email": "dave@example.com"},]',
            "ends with '[REDACTED:EMAIL]\"},]'",
        ),
    ],
)
def test_the_text_an_error_quotes_from_a_file_is_redacted(process, content, shown):
    # Given a JSON file that cannot be parsed, with PII near where it fails
    # When it is processed
    with pytest.raises(UnprocessableFile) as failure:
        process("people.json", content)
    # Then the error (a log line, the metadata item's error, what the DLQ tools show) quotes
    # the file as the Parquet would hold it: every value redacted, none of it in half
    message = str(failure.value)
    assert shown in message, message
    for secret in ("alice", "bob@", "123456789", "415", "carol", "dave", "lastname", "@mail"):
        assert secret not in message, message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"a": 1}, {"a": 2},]', "a comma after the last record, before the array's closing ']'"),
        ('[\n  {"a": 1},\n  {"a": ","},\n]\n', 'the file ends with \' 1},\\n  {"a": ","},\\n]\''),
        ('{"data": [{"a": 1}], "n": 1,}', "a comma after the last member, before the object's closing '}'"),
    ],
)
def test_a_comma_before_the_closing_bracket_is_named(process, content, message):
    # DuckDB said "Malformed JSON, at byte 1 in record 3: input length is 0." of a record
    # that does not exist
    with pytest.raises(UnprocessableFile, match=re.escape(message)):
        process("comma.json", content)


def test_a_comma_inside_the_last_string_is_no_trailing_comma(process):
    assert process("s.json", '[{"a": "x,"}, {"a": ","}]').rows("a") == [("x,",), (",",)]


def test_records_without_fields_are_refused_as_such(process):
    with pytest.raises(
        UnprocessableFile, match="no fields: every record in the document is an empty JSON object"
    ):
        process("empty.json", "{}")


def test_an_empty_string_in_json_is_a_missing_value_as_an_empty_csv_cell_is(process):
    # a writer with no price writes "": the column stays a number, the value is missing
    records = [
        {"id": 1, "price": 9.99, "shipped": "2025-01-02", "note": ""},
        {"id": 2, "price": "", "shipped": "", "note": "fragile"},
        {"id": 3, "price": 5, "shipped": "2025-01-03", "note": " "},
    ]
    result = process("orders.json", json.dumps(records))
    assert result.data["schema"] == {"id": "int", "price": "float", "shipped": "date", "note": "string"}
    assert result.data["quality_issues"]["missing_values"] == {
        "price": {"count": 1, "percentage": 33.33},
        "shipped": {"count": 1, "percentage": 33.33},
        "note": {"count": 1, "percentage": 33.33},
    }
    assert result.rows("price, note") == [(9.99, None), (None, "fragile"), (5.0, " ")]


@pytest.mark.parametrize("name", ["k.json", "k.ndjson"])
def test_a_repeated_key_keeps_its_first_value_and_python_nan_is_a_float(process, name):
    # as the README says: DuckDB's JSON reader keeps the first of two values of one key,
    # and reads the NaN and Infinity that Python's json module writes
    records = ['{"a": 1, "b": 2.5, "a": 3}', '{"a": 4, "b": NaN}', '{"a": 5, "b": Infinity}']
    text = "[" + ", ".join(records) + "]" if name.endswith(".json") else "\n".join(records) + "\n"
    result = process(name, text)
    assert result.data["schema"] == {"a": "int", "b": "float"}
    assert result.rows("a, b::VARCHAR") == [(1, "2.5"), (4, "nan"), (5, "inf")]
    assert result.data["statistics"]["b"]["non_finite_count"] == 2
    assert "malformed_rows" not in result.data["quality_issues"]
    # and the summary says a value was left out (3, which other parsers would have read)
    assert result.data["warnings"] == [
        f"1 {'record' if name.endswith('.json') else 'line'} names a key more than once "
        f"({'record' if name.endswith('.json') else 'line'} 1: 'a'): the first value of such a key is kept "
        "and the others are not (Python's and JavaScript's parsers keep the last)"
    ]


def test_numbers_written_as_strings_lose_their_spelling_in_a_float_column(process):
    # as the README says: "1" and 1 are alike, so strings that all read as numbers make a
    # float column; only a string column keeps the spelling
    result = process("v.ndjson", '{"v": "1.10", "w": "1.10"}\n{"v": "2.0", "w": "beta"}\n')
    assert result.data["schema"] == {"v": "float", "w": "string"}
    assert result.rows("v, w") == [(1.1, "1.10"), (2.0, "beta")]


@pytest.mark.parametrize("name", ["c.json", "c.ndjson"])
def test_a_comma_before_a_records_own_closing_bracket_is_read(process, name):
    # as the README says: DuckDB's parser takes it (only the document's last comma fails)
    records = ['{"a": 1, "t": [1, 2,],}', '{"a": 2}']
    text = "[" + ", ".join(records) + "]" if name == "c.json" else "\n".join(records) + "\n"
    result = process(name, text)
    assert result.rows("a, t") == [(1, "[1,2]"), (2, None)]
    assert "malformed_rows" not in result.data["quality_issues"]


def test_records_repeating_keys_are_counted_and_the_first_named(process):
    # a key repeated twice in one line is one line counted; a nested object's repeated key
    # is kept in its JSON text, nothing lost
    lines = [
        '{"a": 1, "n": {"x": 1, "x": 2}}',
        '{"a": 2, "b": 1, "b": 2, "a": 3, "a": 4}',
        '{"a": 5, "a": 6}',
    ]
    result = process("k.ndjson", "\n".join(lines) + "\n")
    assert result.rows("a, b") == [(1, None), (2, 1), (5, None)]
    assert result.data["warnings"] == [
        "2 lines name a key more than once (line 2: 'a', 'b'): the first value of such a key is kept "
        "and the others are not (Python's and JavaScript's parsers keep the last)"
    ]


def test_json_extension_holding_ndjson_is_read_as_ndjson(process):
    assert process("e.json", '{"a": 1}\n{"a": 2}\n').data["format"] == "ndjson"


@pytest.mark.parametrize("name", ["e.json", "e.txt"])
@pytest.mark.parametrize("broken", [1, 2])
def test_ndjson_named_json_or_txt_with_a_broken_first_line_keeps_its_other_lines(process, name, broken):
    # the first two lines had to be objects: with one cut, the file was read as one JSON
    # document and refused whole ("invalid JSON"), where a broken third line was one
    # malformed line
    lines = ['{"a": 1, "b": "x"}', '{"a": 2, "b": "y"}', '{"a": 3, "b": "z"}', '{"a": 4, "b": "w"}']
    lines[broken - 1] = lines[broken - 1][:-6]
    result = process(name, "\n".join(lines) + "\n")
    assert result.data["format"] == "ndjson"
    assert result.rows("a") == [(a,) for a in (1, 2, 3, 4) if a != broken]
    malformed = result.data["quality_issues"]["malformed_rows"]
    assert malformed["rows"] == [{"line": broken, "error": "not valid JSON", "text": lines[broken - 1]}]


@pytest.mark.parametrize(
    "text",
    [
        '{"data": [\n{"a": 1},\n{"a": 2}\n]}\n',  # records one per line inside a document
        '{"data": [\n{"a": 1}\n,{"a": 2}\n]}\n',
        '{\n  "data": [{"a": 1}, {"a": 2}]\n}\n',
    ],
)
def test_a_json_document_with_records_on_lines_of_their_own_is_not_ndjson(process, text):
    result = process("d.json", text)
    assert result.data["format"] == "json"
    assert result.rows("a") == [(1,), (2,)]


def test_json_nested_deeper_than_python_parses_is_read_not_a_crash(process):
    # Python's parser, used to sniff NDJSON and to check an object around its records,
    # raised RecursionError: a traceback from inspect, a transient error in the processor
    deep = '{"a":' * 5_000 + "1" + "}" * 5_000
    for name in ("deep.json", "deep.txt"):
        result = process(name, f'{deep}\n{{"a": 2}}\n')
        assert result.data["format"] == "ndjson"
        assert result.rows("length(a)") == [(len(deep) - 6,), (1,)]
    result = process("wrapped.json", f'{{"meta": {deep}, "data": [{{"x": 1}}, {{"x": 2}}]}}')
    assert result.rows("x") == [(1,), (2,)]


@pytest.mark.parametrize(
    "name",
    [
        "app.log.1",
        "app.log.2.gz",
        "app.log.2026-12-06",
        "app.log.2026-12-06_14-00",
        "app.log.2026.12.06",
        "app.log.2026.12.06.gz",
        "app.log-20261206.gz",
        "app.log-2026-12-06",
    ],
)
def test_rotated_logs_are_read_as_logs(process, name):
    # as logrotate, its dateext and Python's rotating handlers name them
    result = process(name, "2024-01-15T10:00:00Z ERROR disk full\n", gz=name.endswith(".gz"))
    assert result.data["format"] == "log"
    assert result.data["log_stats"]["error_count"] == 1


@pytest.mark.parametrize(
    ("name", "suffix"), [("data.1", "'.1'"), ("app.log.bak", "'.bak'"), ("data.csv.1", "'.1'")]
)
def test_a_number_alone_or_another_suffix_after_log_is_not_a_rotation(process, name, suffix):
    with pytest.raises(UnprocessableFile, match=f"unsupported file type {suffix}"):
        process(name, "2024-01-15T10:00:00Z ERROR disk full\n")


@pytest.mark.parametrize(
    ("name", "long_line"),
    [
        ("big.ndjson", '{"a": "' + "x" * 3_000_000 + '"}'),
        ("big.log", "2024-01-15T10:00:00Z INFO " + "x" * 3_000_000),
    ],
)
def test_a_line_of_megabytes_is_a_record_like_any_other(process, name, long_line):
    # (DuckDB's line reader stops at 2 MiB by default: the whole file failed as "CSV Error")
    other = '{"a": "y"}' if name.endswith(".ndjson") else "2024-01-15T10:00:01Z ERROR y"
    result = process(name, f"{other}\n{long_line}\n{other}\n")
    assert result.data["row_count"] == 3
    column = "a" if name.endswith(".ndjson") else "message"
    assert result.data["statistics"][column]["max_length"] == 3_000_000


def test_a_line_longer_than_a_record_may_be_is_named(process):
    text = '{"a": "y"}\n{"a": "' + "x" * (17 << 20) + '"}\n'
    with pytest.raises(
        UnprocessableFile,
        match=r"^line 2 is longer than 16 MiB \(as JSON text\), the longest record headrace reads$",
    ):
        process("huge.ndjson", text)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        # the last line: DuckDB's reader dropped it without an error, and the file completed without it
        ("last.ndjson", '{"a": "y"}\n{"a": "LONG"}\n', r"^line 2 is longer than 16 MiB \(as JSON text\)"),
        # elsewhere, lost too (rows 1 and 3 completed); an NDJSON line there failed with
        # DuckDB's internal error, a traceback the processor retried as if transient
        (
            "middle.csv",
            "id,t\n1,a\n2,LONG\n3,c\n",
            r"^line 3 is longer than 16 MiB, the longest line headrace reads",
        ),
    ],
)
def test_a_line_longer_than_duckdbs_buffer_is_refused_not_lost(process, name, text, message):
    # DuckDB's line readers hold a line in a 32 MiB buffer
    with pytest.raises(UnprocessableFile, match=message):
        process(name, text.replace("LONG", "x" * (33 << 20)))


def test_a_log_line_too_long_is_refused_before_it_is_read_whole(process, monkeypatch):
    # read whole, a line of 200 MB without a line end took 940 MB and 40 s, and DuckDB then
    # dropped its record: the file completed without it
    monkeypatch.setattr(logs, "MAX_LINE_CHARS", 1000, raising=False)
    text = "2024-01-15T10:00:00Z INFO a\r\n2024-01-15T10:00:01Z INFO " + "x" * 2000
    with pytest.raises(
        UnprocessableFile,
        match=r"^line 2 is longer than 1,000 characters, the longest log line headrace reads$",
    ):
        process("app.log", text)
    # as long as the limit, a line end (CRLF) aside: read
    assert process("ok.log", "x" * 1000 + "\r\n" + "y" * 1000).data["row_count"] == 2


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"", None),
        (b"abcd\nabcd\nabcd", None),  # as long as the limit: read
        (b"abcde", 1),
        (b"ab\nabcde\nab\n", 2),
        (b"ab\nab\nabcd\nabcdefghijklmnop", 4),  # no line end, over several reads
        (b"abc\nabcd\r\nab\n", 2),  # a CR is part of the line
        (b"abcd\n" * 10 + b"\nabcdef\n", 12),
    ],
)
def test_first_line_longer_than(tmp_path, content, found):
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    assert textfile.first_line_longer_than(path, 4) == found


def test_log_records_get_log_stats(process):
    result = process("events.ndjson", LOG_RECORDS)
    stats = result.data["log_stats"]
    assert {k: v for k, v in stats.items() if k not in ("processing_time_ms", "file_size_bytes")} == {
        "line_count": 3,
        "error_count": 1,
        "warn_count": 1,
        "info_count": 1,
        "avg_response_time_ms": 948.333,
        "max_response_time_ms": 2500.0,
        "unique_users": 2,
        "unique_endpoints": 2,
    }
    assert stats["file_size_bytes"] == len(LOG_RECORDS)
    assert stats["processing_time_ms"] >= 0


def test_plain_text_logs(process):
    text = (
        "2024-01-15T10:00:00Z INFO GET /api/users status=200 response_time_ms=45 user_id=u1\n"
        '127.0.0.1 - u2 [15/Jan/2024:10:00:01 +0000] "POST /api/orders HTTP/1.1" 500 12 "-" "curl" 2500\n'
        "\n"
        "[2024-01-15 10:00:02,100] [WARNING] disk almost full\n"
        "a line in no known shape\n"
    )
    result = process("app.log", text)
    assert result.data["format"] == "log"
    assert result.data["row_count"] == 3
    assert result.data["schema"]["status_code"] == "int"
    assert result.data["schema"]["timestamp"] == "timestamp"
    assert result.data["log_stats"]["error_count"] == 0  # the 500 line has no level
    assert result.data["log_stats"]["warn_count"] == 1
    assert result.data["log_stats"]["unique_endpoints"] == 2
    # the file starts with a timestamp: a line without one continues the record above
    assert result.rows("message")[-1] == ("disk almost full\na line in no known shape",)
    assert result.data["lineage"] == {"unit": "line", "first": 1, "skipped": [3, 5]}


def test_numeric_and_levelname_levels_are_counted(process):
    # Given pino's numeric levels (30 info, 40 warn, 50 error, 60 fatal) in a .log
    pino = "".join(json.dumps({"level": n, "msg": "m"}) + "\n" for n in (30, 40, 50, 60, 30))
    stats = process("pino.log", pino).data["log_stats"]
    assert (stats["info_count"], stats["warn_count"], stats["error_count"]) == (2, 1, 2)
    # and Python logging's levelname in NDJSON
    records = [{"levelname": level, "message": "m", "user_id": "u"} for level in ("INFO", "ERROR", "WARNING")]
    stats = process("py.jsonl", "".join(json.dumps(r) + "\n" for r in records)).data["log_stats"]
    assert (stats["info_count"], stats["warn_count"], stats["error_count"]) == (1, 1, 1)


def test_log_stats_name_every_field_of_the_contract_even_when_unknown(process):
    stats = process("plain.log", "2024-01-15T10:00:00Z INFO started\n").data["log_stats"]
    assert set(stats) == {
        "line_count",
        "error_count",
        "warn_count",
        "info_count",
        "avg_response_time_ms",
        "max_response_time_ms",
        "unique_users",
        "unique_endpoints",
        "processing_time_ms",
        "file_size_bytes",
    }
    assert stats["avg_response_time_ms"] is None and stats["unique_users"] is None
    # a log with no level at all counts no record of any level (0, as the README says)
    access = process("access.log", ACCESS_LOG).data
    stats = access["log_stats"]
    assert "level" not in access["schema"]
    assert (stats["error_count"], stats["warn_count"], stats["info_count"]) == (0, 0, 0)


def test_fields_with_the_same_contract_name_are_all_kept():
    # Given a JSON log record with two spellings of the same field (nothing may be dropped)
    line = (
        '{"time": "t1", "timestamp": "t2", "msg": "short", "message": "long", "user": "alice", "lvl": "info"}'
    )
    # Then a key takes its contract name only when the record does not have that name too
    assert logs.parse_line(line) == {
        "time": "t1",
        "timestamp": "t2",
        "msg": "short",
        "message": "long",
        "user_id": "alice",
        "level": "info",
    }


def test_an_offset_after_a_space_is_part_of_the_time(process):
    # Given gunicorn's "[2024-01-15 10:00:00 +0200]": 10:00 there is 08:00 UTC
    record = logs.parse_line("[2024-01-15 10:00:00 +0200] [1234] [INFO] Booting worker")
    assert record["timestamp"] == "2024-01-15 10:00:00+02:00"
    assert record["message"].startswith("[1234]")
    result = process("gunicorn.log", "[2024-01-15 10:00:00 +0200] [1234] [INFO] Booting worker\n")
    assert result.data["schema"]["timestamp"] == "timestamp"
    assert str(result.rows("timestamp")[0][0]).startswith("2024-01-15 08:00:00")


PYTHON_LOG = (
    "2024-01-15 10:00:00,123 - app.db - INFO - connected, pool=5\n"
    "2024-01-15 10:00:01,456 - app.api - ERROR - request failed, retrying\n"
    "2024-01-15 10:00:02,789 - app.api - WARNING - slow, 2.5 s\n"
)
ACCESS_LOG = (
    '10.0.0.1 - - [15/Jan/2024:10:00:00 +0000] "GET /a HTTP/1.1" 200 12 "-" '
    '"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"\n'
) * 3


# logfmt as logrus, go-kit and Prometheus write it (was read as a CSV split at the commas)
LOGFMT_LOG = (
    'time="2024-01-15T10:00:00Z" level=info msg="cache miss, reloading" user=alice\n'
    'ts=2024-01-15T10:00:01Z level=error caller=main.go:12 msg="upstream failed, retrying"\n'
    'level=warn ts=2024-01-15T10:00:02Z msg="slow, 2.5 s" duration=2.5s\n'
)


@pytest.mark.parametrize(
    ("name", "text", "rows"),
    [("app.txt", PYTHON_LOG, 3), ("access.txt", ACCESS_LOG, 3), ("app.txt", LOGFMT_LOG, 3)],
)
def test_text_files_of_log_lines_with_commas_are_logs_not_csv(process, name, text, rows):
    result = process(name, text)
    assert result.data["format"] == "log" and result.data["row_count"] == rows
    assert "log_stats" in result.data and result.data["quality_issues"].get("malformed_rows") is None


@pytest.mark.parametrize(
    ("line", "level", "message"),
    [
        # the level a few tokens after the time: the logger or thread name stays in the message
        (
            "2024-01-15 10:00:01,456 - app.api - ERROR - request failed",
            "ERROR",
            "app.api - ERROR - request failed",
        ),
        ("2024-01-15 10:00:00.123 [main] WARN c.e.Foo - slow", "WARN", "[main] WARN c.e.Foo - slow"),
        ("2024-01-15 10:00:00.123 | ERROR    | app:run:12 - boom", "ERROR", "| ERROR    | app:run:12 - boom"),
        (
            "2024-01-15 10:00:00.123 UTC [42] FATAL:  role does not exist",
            "FATAL",
            "[42] FATAL:  role does not exist",
        ),
        # Celery's level/process, zerolog's console names, zap's development panic
        (
            "[2024-01-15 10:00:00,123: ERROR/MainProcess] Task failed",
            "ERROR",
            "ERROR/MainProcess] Task failed",
        ),
        ("2024-01-15T10:00:00Z WRN disk almost full", "WARN", "disk almost full"),
        ("2024-01-15T10:00:00Z DPANIC invariant broken", "DPANIC", "invariant broken"),
        ("2024-01-15T10:00:00.123Z\tc0ffee\tERROR\tInvoke Error", "ERROR", "c0ffee\tERROR\tInvoke Error"),
        ("2024/01/15 10:00:00 [error] 123#0: *1 connect() failed", "ERROR", "123#0: *1 connect() failed"),
        ("2024-01-15T10:00:00Z Error: connection refused", "ERROR", "connection refused"),
        ("2024-01-15T10:00:00Z PANIC runtime error", "PANIC", "runtime error"),
        # a word of the message is no level: lower case and not bracketed, or after a comma
        ("2024-01-15T10:00:00Z error rate computed: 0%", None, "error rate computed: 0%"),
        ("2024-01-15T10:00:00Z Critical path has 3 nodes", None, "Critical path has 3 nodes"),
        ("2024-01-15T10:00:00Z no error: all good", None, "no error: all good"),
        ("ERROR-PRONE code path hit", None, "ERROR-PRONE code path hit"),
        # a line without a time or a level is kept exactly as written
        ("-5 degrees below zero", None, "-5 degrees below zero"),
        ("[1, 2, 3] were the values", None, "[1, 2, 3] were the values"),
    ],
)
def test_the_level_is_found_where_common_formats_put_it(line, level, message):
    record = logs.parse_line(line)
    assert (record.get("level"), record["message"]) == (level, message)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # a line of logfmt pairs: msg is the message, the level spelled as everywhere else
        (
            'ts=2024-01-15T10:00:00Z level=warning msg="db down" duration=12ms',
            {"level": "WARN", "message": "db down", "response_time_ms": "12", "duration": "12ms"},
        ),
        # durations with units, and nginx's $request_time (seconds) after an access log line
        ("2024-01-15T10:00:00Z INFO done duration=0.5s", {"response_time_ms": "500", "duration": "0.5s"}),
        ("2024-01-15T10:00:00Z INFO done latency=120", {"latency": "120"}),  # no unit: not a time
        ("2024-01-15T10:00:00Z INFO done duration_ms=n/a", {"response_time_ms": "n/a"}),  # kept as written
        (
            '10.0.0.1 - - [15/Jan/2024:10:00:00 +0000] "GET /a HTTP/1.1" 200 12 "-" "curl" rt=0.012',
            {"status_code": "200", "response_time_ms": "12", "rt": "0.012"},
        ),
        # a request line that is no HTTP request (a TLS scanner's bytes) keeps the line's fields
        (
            '10.0.0.1 - - [15/Jan/2024:10:00:00 +0000] "\\x16\\x03\\x01" 400 157 "-" "-"',
            {"client_ip": "10.0.0.1", "request": "\\x16\\x03\\x01", "status_code": "400", "bytes": "157"},
        ),
        # a JSON line: Elastic's log.level; Docker's wrapper of the program's own line
        ('{"@timestamp": "2024-01-15T10:00:00Z", "log.level": "error"}', {"level": "error"}),
        (
            '{"log": "2024-01-15 10:00:00,1 - app - ERROR - boom\\n", "stream": "stderr"}',
            {"level": "ERROR", "stream": "stderr"},
        ),
        # syslog's NILVALUE time is no timestamp, and the BOM marking UTF-8 is no text
        ("<165>1 - host app - - - \ufeffhello", {"timestamp": None, "message": "hello"}),
    ],
)
def test_fields_of_logfmt_access_and_syslog_lines(line, expected):
    record = logs.parse_line(line)
    assert {k: record.get(k) for k in expected} == expected


@pytest.mark.parametrize(
    ("line", "response_time_ms"),
    [
        # every digit of a duration is kept: 6 significant digits made 1234567 "1.23457e+06"
        ("2024-01-15T10:00:00Z INFO done duration_ms=1234567", "1234567"),
        ("2024-01-15T10:00:00Z INFO done duration_ms=2843.153", "2843.153"),
        ("2024-01-15T10:00:00Z INFO done response_time_ms=0.1234567", "0.1234567"),
        ("2024-01-15T10:00:00Z INFO done took=1.001s", "1001"),
        ("2024-01-15T10:00:00Z INFO done took=1500us", "1.5"),
        ("2024-01-15T10:00:00Z INFO done took=12.50ms", "12.5"),
        ('10.0.0.1 - - [15/Jan/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-" 1234.567', "1234567"),
        ('10.0.0.1 - - [15/Jan/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-" rt=0.0125', "12.5"),
        # Apache's %D, in microseconds, logged as the README says
        (
            '10.0.0.1 - - [15/Jan/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-" duration=12345us',
            "12.345",
        ),
    ],
)
def test_durations_keep_every_digit_in_milliseconds(line, response_time_ms):
    assert logs.parse_line(line)["response_time_ms"] == response_time_ms


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "[Mon Jan 15 10:00:00.123456 2024] [core:error] [pid 123:tid 4] [client 10.0.0.1:5678] AH00126: bad URI",
            {
                "timestamp": "2024-01-15T10:00:00.123456",
                "level": "ERROR",
                "module": "core",
                "message": "AH00126: bad URI",
            },
        ),
        ("[Mon Jan 15 10:00:00 2024] [crit] down", {"timestamp": "2024-01-15T10:00:00", "level": "CRITICAL"}),
        (
            "E0115 10:00:00.123456   12345 controller.go:123] failed to sync",
            {"timestamp": "2024-01-15T10:00:00.123456", "level": "ERROR", "source": "controller.go:123"},
        ),
        (
            "W1231 23:00:00.5 1 x.go:1] late",
            {"timestamp": "2023-12-31T23:00:00.5", "level": "WARN"},
        ),  # last year's
        (
            "E, [2024-01-15T10:00:00.123456 #1234] ERROR -- app: boom",
            {"timestamp": "2024-01-15T10:00:00.123456", "level": "ERROR", "app": "app", "message": "boom"},
        ),
    ],
)
def test_apache_error_klog_and_ruby_logger_lines(line, expected):
    record = logs.parse_line(line, dt.datetime(2024, 1, 20, tzinfo=dt.UTC))
    assert {k: record.get(k) for k in expected} == expected


def test_elastic_common_schema_lines_get_log_stats(process):
    line = '{{"@timestamp": "2024-01-15T10:00:00Z", "log.level": "{}", "user.id": "u{}", "url.path": "/a"}}\n'
    stats = process("ecs.ndjson", line.format("error", 1) + line.format("info", 2)).data["log_stats"]
    assert (stats["error_count"], stats["info_count"], stats["unique_users"]) == (1, 1, 2)


def test_ndjson_records_get_log_stats_under_every_alias_a_log_line_has(process):
    # the same records got log_stats in a .log and none in a .jsonl: the two alias lists differed
    text = '{"loglevel": "ERROR", "response_ms": 12, "statuscode": 500}\n{"loglevel": "INFO", "response_ms": 30}\n'
    for name in ("app.log", "app.jsonl"):
        stats = process(name, text).data["log_stats"]
        assert (stats["error_count"], stats["info_count"], stats["max_response_time_ms"]) == (1, 1, 30.0)


def test_colour_codes_do_not_hide_where_a_record_starts(process):
    # each coloured line starts a record; before, they were continuation lines of the first
    text = (
        "2024-01-15 10:00:00 INFO start\n"
        "\x1b[31m2024-01-15 10:00:01 ERROR boom\x1b[0m\n"
        "\tat com.example.Foo.bar(Foo.java:1)\n"
        "\x1b[33m2024-01-15 10:00:02 WARNING slow\x1b[0m\n"
    )
    stats = process("c.log", text).data["log_stats"]
    assert (stats["line_count"], stats["error_count"], stats["warn_count"]) == (3, 1, 1)


def test_a_query_string_names_no_fields(process):
    result = process("q.log", "2024-01-15T10:00:00Z INFO GET /api/items?user=alice&page=2 user=bob\n")
    assert result.rows("user_id, endpoint") == [("bob", "/api/items?user=alice&page=2")]


def test_unique_endpoints_counts_paths_not_query_strings(process):
    text = "".join(f"2024-01-15T10:00:0{i}Z INFO GET /api/items?page={i}\n" for i in range(3))
    result = process("p.log", text + "2024-01-15T10:00:09Z INFO GET /api/users\n")
    assert result.data["log_stats"]["unique_endpoints"] == 2
    assert result.rows("endpoint")[0] == ("/api/items?page=0",)  # the field keeps its query
    # a full URL is counted with its scheme and host, as the README says: two hosts, two endpoints
    urls = ("https://a.example/items?page=1", "https://a.example/items", "https://b.example/items")
    text = "".join(json.dumps({"level": "info", "url": url}) + "\n" for url in urls)
    assert process("u.log", text).data["log_stats"]["unique_endpoints"] == 2


def test_a_csv_of_timestamps_and_levels_in_a_text_file_stays_csv(process):
    text = "timestamp,level,message\n2024-01-15 10:00:00,ERROR,boom\n2024-01-15 10:00:01,INFO,ok\n"
    result = process("c.txt", text)
    assert result.data["format"] == "csv" and result.rows("level") == [("ERROR",), ("INFO",)]


def test_a_headerless_csv_of_timestamps_in_a_text_file_stays_csv(process):
    text = "2024-01-15 10:00:00,12.5,ok\n2024-01-15 10:00:01,13.0,ok\n2024-01-15 10:00:02,9.5,low\n"
    assert process("readings.txt", text).data["format"] == "csv"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (  # nginx's default "main" format: "$http_x_forwarded_for" at the end
            '172.17.0.1 - - [15/Jan/2024:10:00:00 +0000] "GET /api HTTP/1.1" 200 612 "-" "curl/8.0" "10.1.2.3"',
            {"endpoint": "/api", "status_code": "200", "forwarded_for": "10.1.2.3"},
        ),
        (  # no request line at all (a 400 for garbage on the socket)
            '10.0.0.1 - - [15/Jan/2024:10:00:01 +0000] "-" 400 0 "-" "-"',
            {"status_code": "400", "bytes": "0"},
        ),
        (  # nginx's $request_time: seconds, with a decimal point
            '10.0.0.1 - - [15/Jan/2024:10:00:03 +0000] "GET /a HTTP/1.1" 200 5 "-" "curl" 0.123',
            {"response_time_ms": "123"},
        ),
        (  # escaped quotes in the user agent, then key=value pairs
            '10.0.0.1 - bob [15/Jan/2024:10:00:02 +0000] "POST /x HTTP/1.1" 201 5 "-" "A \\"q\\" v1" rt=0.012',
            {"user_id": "bob", "user_agent": 'A "q" v1', "rt": "0.012"},
        ),
    ],
)
def test_access_log_variants_are_read_as_access_logs(line, expected):
    record = logs.parse_line(line)
    assert record["timestamp"].startswith("2024-01-15T10:00:0")
    assert {k: record.get(k) for k in expected} == expected


def test_terminal_colours_are_dropped_before_the_level_is_read():
    record = logs.parse_line("\x1b[31mERROR\x1b[0m could not connect")
    assert record["level"] == "ERROR" and record["message"] == "could not connect"


TRACE = (
    "2025-01-01 10:00:00 INFO started\n"
    "2025-01-01 10:00:01 ERROR failed to connect db=main\n"
    "Traceback (most recent call last):\n"
    '  File "x.py", line 1, in <module>\n'
    "\n"
    "ValueError: boom\n"
    "[2025-01-01T10:00:02Z] WARN slow\n"
)


def test_a_stack_trace_is_part_of_the_log_record_it_follows(process):
    result = process("app.log", TRACE)
    assert result.rows("level, message") == [
        ("INFO", "started"),
        (
            "ERROR",
            'failed to connect db=main\nTraceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: boom',
        ),
        ("WARN", "slow"),
    ]
    # the continuation lines (and the blank one) map no row: the third row is line 7
    assert result.data["lineage"] == {"unit": "line", "first": 1, "skipped": [3, 4, 5, 6]}
    assert (result.data["log_stats"]["line_count"], result.data["log_stats"]["error_count"]) == (3, 1)


def test_lines_of_other_formats_and_times_start_records_in_a_timestamped_log(process):
    # klog, Ruby's Logger and Apache's error log between a zap logger's lines (a Kubernetes
    # operator's output), and lines that start with a time in other spellings, were taken
    # for continuation lines: their levels lost, the error count too low
    text = (
        "2025-01-01T12:00:00.000Z\tINFO\tsetup\tstarting manager\n"
        "E0101 12:00:01.000000       1 reflector.go:138] failed to watch *v1.Pod\n"
        "W0101 12:00:02.000000       1 warnings.go:70] v1 ComponentStatus is deprecated\n"
        "E, [2025-01-01T12:00:04.000000 #1234] ERROR -- app: ruby error\n"
        "[Wed Jan 01 12:00:05.000000 2025] [core:error] [pid 12] apache error\n"
        "1735732806 ERROR epoch seconds\n"
        "12:00:07.123 ERROR a time alone\n"
        "01/01/2025 12:00:08 ERROR month first\n"
        "Jan 01 2025 12:00:09 ERROR month name\n"
        "  at a continuation line\n"
        "2025-01-01 42 rows (a date alone continues the record)\n"
        # logfmt, as a Go library beside them writes it
        'level=error ts=2025-01-01T12:00:10Z msg="logfmt error"\n'
        'time="2025-01-01T12:00:11Z" level=warning msg="logfmt warning"\n'
    )
    result = process("k8s.log", text + "2025-01-01T12:00:12Z DPANIC invariant broken\n")
    stats = result.data["log_stats"]
    assert (stats["line_count"], stats["error_count"], stats["warn_count"]) == (12, 9, 2)
    assert result.data["lineage"]["skipped"] == [10, 11]


def test_a_banner_or_the_end_of_a_trace_before_timestamped_lines_still_joins_traces(process):
    trace = (
        "2025-01-01 12:00:01,000 - app - ERROR - failed\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: bad value\n"
        "2025-01-01 12:00:02,000 - app - INFO - ok\n"
    )
    for head in ("=== myservice v1.2.3 starting ===\n", '  File "y.py", line 9, in run\nKeyError: k\n'):
        result = process("app.log", head + trace)
        assert result.data["log_stats"]["line_count"] == 3, head  # the head is one record
        assert result.rows("level")[-2:] == [("ERROR",), ("INFO",)]
    # a text with a timestamp at the start of a line here and there joins nothing
    text = "".join(f"note {i}\n" for i in range(8)) + "2025-01-01 12:00:00 INFO x\nnote 9\n"
    assert process("notes.log", text).data["log_stats"]["line_count"] == 10


def test_syslog_lines_without_a_priority_take_the_level_from_their_message(process):
    text = (
        "Jan  1 00:00:03 host1 app[1]: ERROR db down\n"
        "Jan  1 00:00:07 host1 app[1]: 2025-01-01 00:00:07,000 - mod - WARNING - python via syslog\n"
        "Jan  1 00:00:08 host1 app[1]: all good, no ERROR-PRONE code\n"
        "<14>Jan  1 00:00:09 host1 app[1]: ERROR the priority wins\n"
    )
    assert process("syslog", text).rows("level") == [("ERROR",), ("WARN",), (None,), ("INFO",)]


def test_a_zone_name_after_a_text_logs_time_is_its_zone(process):
    text = (
        "2025-01-01 12:00:00 PST INFO pst\n"
        "2025-01-01 12:00:00 CET INFO cet\n"
        "2025-01-01 12:00:00 Europe/Berlin INFO berlin\n"
        "2025-01-01 12:00:00 INFO naive\n"
        # London's summer time, +01:00 (ICU: Bangladesh, +06:00)
        "2025-07-01 12:00:00 BST INFO bst\n"
        "2025-07-01 12:00:00 CEST INFO cest\n"
        "2025-01-01 12:00:00 UT INFO ut\n"  # RFC 5322's, which ICU does not know
        # India's, Ireland's or Israel's: not guessed (nor read as UTC), kept as written
        "2025-01-01 12:00:00 IST INFO ist\n"
        # an abbreviation the column would take as ICU does is a word of the message here
        "2025-01-01 12:00:00 JST INFO jst\n"
    ) + "".join(f"2025-01-02 12:00:{i:02d} INFO more\n" for i in range(10))
    result = process("z.log", text)
    assert result.rows("timestamp, message")[:8] == [
        (dt.datetime(2025, 1, 1, 20, 0), "pst"),
        (dt.datetime(2025, 1, 1, 11, 0), "cet"),
        (dt.datetime(2025, 1, 1, 11, 0), "berlin"),
        (dt.datetime(2025, 1, 1, 12, 0), "naive"),
        (dt.datetime(2025, 7, 1, 11, 0), "bst"),
        (dt.datetime(2025, 7, 1, 10, 0), "cest"),
        (dt.datetime(2025, 1, 1, 12, 0), "ut"),
        (None, "ist"),
    ]
    assert result.rows("timestamp, level, message")[8] == (
        dt.datetime(2025, 1, 1, 12, 0),
        "INFO",
        "JST INFO jst",
    )
    mismatch = result.data["quality_issues"]["type_mismatches"]["timestamp"]
    assert mismatch["examples"] == [{"line": 8, "value": "2025-01-01 12:00:00 IST"}]


def test_one_wide_record_keeps_the_table_at_its_width(process):
    # the first record's 300 pairs all became columns (the cap counted the fields seen
    # before it); 3,000 failed the file
    pairs = " ".join(f"k{i}=v{i}" for i in range(3000))
    result = process("wide.log", f"2025-01-01T00:00:00Z INFO {pairs}\n2025-01-01T00:00:01Z INFO k1=x\n")
    assert result.data["column_count"] == logs.MAX_FIELDS + 1  # and _extra
    (extra,) = result.rows("_extra")[0]
    assert json.loads(extra)["k2999"] == "v2999"


def test_kubernetes_node_logs_are_read_through_the_runtimes_prefix(process):
    # the CRI prefix (time, stream, F/P) hid the program's line: no level from its JSON,
    # and a line over 16 KiB, split in parts (P), was several records
    text = (
        "2025-01-01T12:00:00.123456Z stdout F 2025-01-01 12:00:00,100 - app - ERROR - oops\n"
        "2025-01-01T12:00:01.1Z stderr P partial line start \n"
        "2025-01-01T12:00:01.2Z stderr F and its end\n"
        '2025-01-01T12:00:02Z stdout F {"level":"warn","msg":"json inside"}\n'
    )
    result = process("pod.log", text)
    assert result.rows("timestamp, stream, level, message, app_timestamp") == [
        (
            dt.datetime(2025, 1, 1, 12, 0, 0, 123456),
            "stdout",
            "ERROR",
            "app - ERROR - oops",
            dt.datetime(2025, 1, 1, 12, 0, 0, 100000),
        ),
        (dt.datetime(2025, 1, 1, 12, 0, 1, 100000), "stderr", None, "partial line start and its end", None),
        (dt.datetime(2025, 1, 1, 12, 0, 2), "stdout", "warn", "json inside", None),
    ]
    assert result.data["lineage"]["skipped"] == [3]
    stats = result.data["log_stats"]
    assert (stats["line_count"], stats["error_count"], stats["warn_count"]) == (3, 1, 1)


def test_cri_parts_join_per_stream_and_records_stay_in_file_order(process):
    text = (
        "2025-01-01T12:00:00Z stdout P part1 \n"
        "2025-01-01T12:00:01Z stderr F panic: something else\n"
        '2025-01-01T12:00:02Z stdout F {"level":"error","msg":"end"}\n'
        "2025-01-01T12:00:03Z stdout F ERROR last\n"
    )
    result = process("pod.log", text)
    # the stdout line's parts are one record, the stderr line between them another, in
    # the order they started; the part after the first maps no row
    assert result.rows("stream, level, message") == [
        ("stdout", None, 'part1 {"level":"error","msg":"end"}'),
        ("stderr", "PANIC", "something else"),  # Go's "panic: ..."
        ("stdout", "ERROR", "last"),
    ]
    assert result.data["lineage"]["skipped"] == [3]


def test_words_like_zones_and_short_level_names_in_a_message_are_text(process):
    text = (
        "2024-01-15 10:00:00 Cache/Redis connected\n"
        "2024-01-15 10:00:01 INFO payment via PNC: ok\n"
        "2024-01-15 10:00:02 shipped FTL freight, value is INF\n"
    )
    result = process("w.log", text)
    assert result.rows("level, message") == [
        (None, "Cache/Redis connected"),
        ("INFO", "payment via PNC: ok"),
        (None, "shipped FTL freight, value is INF"),
    ]
    assert result.data["schema"]["timestamp"] == "timestamp"


@pytest.mark.parametrize(
    "text",
    [
        # Python logging's default format: a comma before the milliseconds, then text
        "".join(f"2025-01-01 12:00:0{i},855 is when event {i} was logged.\n" for i in range(5)),
        # a log that starts with the end of a traceback
        '  File "a.py", line 3, in f\n    g()\nValueError: x\n'
        + "".join(f"2025-01-01 12:00:0{i},000 - app - INFO - step {i}\n" for i in range(3)),
    ],
)
def test_python_logs_named_txt_are_logs(process, text):
    assert process("app.txt", text).data["format"] == "log"


@pytest.mark.parametrize(
    "text",
    [
        # gunicorn; Flask's default format; Apache's error log: each line opens a bracket
        "[2024-01-15 10:00:00 +0000] [1] [INFO] Starting gunicorn 21.2.0\n"
        "[2024-01-15 10:00:01 +0000] [1] [ERROR] Worker failed\n",
        "[2024-01-15 10:00:00,123] INFO in app: started\n[2024-01-15 10:00:01,456] ERROR in app: boom\n",
        "[Mon Jan 15 10:00:00.123456 2024] [core:error] [pid 12] AH00126: bad URI\n"
        "[Mon Jan 15 10:00:01.123456 2024] [mpm_event:notice] [pid 1] resuming\n",
    ],
)
def test_logs_whose_lines_start_with_a_bracket_are_logs_not_a_json_array(process, text):
    # (such a file named .txt or without suffix failed: "the JSON array is not closed")
    for name in ("server.txt", "server"):
        result = process(name, text)
        assert (result.data["format"], result.data["row_count"]) == ("log", 2)
        assert result.data["log_stats"]["error_count"] == 1


@pytest.mark.parametrize("text", ['[{"a": 1}, {"a": 2}]', '[\n  {"a": 1},\n  {"a": 2}\n]\n'])
def test_a_json_array_named_txt_is_still_json(process, text):
    assert process("data.txt", text).data["format"] == "json"


def test_csv_rows_that_start_like_a_python_log_line_stay_csv(process):
    text = "created_at,address,city\n" + "".join(
        f"2024-01-15 10:00:0{i},10{i} Main St,Springfield\n" for i in range(5)
    )
    result = process("addresses.txt", text)
    assert (result.data["format"], list(result.data["schema"])) == ("csv", ["created_at", "address", "city"])


def test_a_json_line_in_a_timestamped_log_is_a_record_of_its_own(process):
    text = '2025-01-01 10:00:00 INFO a\n{"level": "error", "msg": "b"}\n'
    assert process("j.log", text).rows("level, message") == [("INFO", "a"), ("error", "b")]


def test_level_lines_and_json_bodies_in_a_timestamped_log(process):
    text = (
        "2025-01-01 10:00:00 INFO start\n"
        "ERROR: db down\n"
        "2025-01-01 10:00:01 ERROR request failed, response:\n"
        "{\n"
        '  "error": "bad"\n'
        "}\n"
        "a line in no known shape\n"
    )
    result = process("app.log", text)
    assert result.rows("level, message") == [
        ("INFO", "start"),
        ("ERROR", "db down"),
        ("ERROR", 'request failed, response:\n{\n  "error": "bad"\n}\na line in no known shape'),
    ]
    assert result.data["log_stats"]["error_count"] == 2


def test_indented_lines_never_start_a_log_record(process):
    text = (
        "2025-01-01 10:00:00 ERROR settings failed\n"
        "Traceback (most recent call last):\n"
        '    DEBUG = env.bool("DJANGO_DEBUG")\n'
        "2025-01-01 10:00:01 ERROR request failed:\n"
        "[\n"
        '  {"id": 1, "error": "bad"},\n'
        '  {"id": 2, "error": "worse"}\n'
        "]\n"
    )
    result = process("app.log", text)
    assert [message.count("\n") for (message,) in result.rows("message")] == [2, 4]
    assert result.data["log_stats"]["error_count"] == 2


def test_lines_after_a_json_record_without_a_text_message(process):
    text = (
        '2025-01-01 10:00:00 INFO a\n{"message": null, "level": "error"}\n  at x\n{"msg": {"k": 1}}\n  at y\n'
    )
    assert process("j.log", text).rows("message") == [("a",), ("  at x",), ('{"k": 1}\n  at y',)]


def test_without_a_leading_timestamp_every_line_is_a_record(process):
    result = process("py.log", "ERROR:root:boom\nTraceback (most recent call last):\nValueError: boom\n")
    assert result.data["row_count"] == 3


def test_a_record_takes_at_most_max_entry_lines(process, monkeypatch):
    monkeypatch.setattr(logs, "MAX_ENTRY_LINES", 2)
    result = process("cap.log", "2025-01-01 10:00:00 INFO a\n  x\n  y\n")
    assert result.rows("message") == [("a\n  x",), ("  y",)]
    assert result.data["lineage"]["skipped"] == [2]


def test_syslog_lines_get_time_host_app_and_level(process):
    text = (
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8\n"
        "Dec  6 06:10:01 web-1 CRON[1234]: (root) CMD (run-parts /etc/cron.hourly)\n"
        '<165>1 2003-10-11T22:14:15.003Z host.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] '
        "An application event\n"
        "<11>1 2003-10-11T22:14:16Z host.example.com app 8710 - - disk failed user_id=u7\n"
    )
    result = process("syslog.log", text)
    schema = result.data["schema"]
    assert {k: schema[k] for k in ("timestamp", "level", "facility", "host", "app", "pid")} == {
        "timestamp": "timestamp",
        "level": "string",
        "facility": "int",
        "host": "string",
        "app": "string",
        "pid": "int",
    }
    assert result.rows("level, app, pid, iut, user_id, message")[1:] == [
        (None, "CRON", 1234, None, None, "(root) CMD (run-parts /etc/cron.hourly)"),
        ("NOTICE", "evntslog", None, 3, None, "An application event"),
        ("ERROR", "app", 8710, None, "u7", "disk failed user_id=u7"),
    ]
    assert result.rows("timestamp")[2:] == [
        (dt.datetime(2003, 10, 11, 22, 14, 15, 3000),),
        (dt.datetime(2003, 10, 11, 22, 14, 16),),
    ]
    # priority 34 is severity 2 (critical), priority 11 severity 3 (error)
    assert result.data["log_stats"]["error_count"] == 2


@pytest.mark.parametrize(
    ("written", "now", "expected"),
    [
        ("Oct 11 22:14:15", dt.datetime(2026, 11, 23, tzinfo=dt.UTC), "2026-10-11T22:14:15"),
        # December's lines read on New Year's day are last year's
        ("Dec 31 23:59:59", dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC), "2025-12-31T23:59:59"),
        ("Jan  1 00:04:00", dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC), "2026-01-01T00:04:00"),
        ("Feb 29 10:00:00", dt.datetime(2026, 3, 1, tzinfo=dt.UTC), "Feb 29 10:00:00"),
        # February 29 read the year after a leap year is the leap year's
        ("Feb 29 10:00:00", dt.datetime(2025, 1, 15, tzinfo=dt.UTC), "2024-02-29T10:00:00"),
        ("Feb 29 10:00:00", dt.datetime(2025, 3, 1, tzinfo=dt.UTC), "2024-02-29T10:00:00"),
        # early in a leap year it is more than a day ahead, and last year had none: as written
        ("Feb 29 10:00:00", dt.datetime(2028, 1, 15, tzinfo=dt.UTC), "Feb 29 10:00:00"),
        ("Feb 29 10:00:00", dt.datetime(2028, 2, 28, 12, tzinfo=dt.UTC), "2028-02-29T10:00:00"),
    ],
)
def test_bsd_syslog_times_get_the_year_they_most_likely_have(written, now, expected):
    record = logs.parse_line(f"{written} host app: text", now)
    assert record["timestamp"] == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (dt.datetime(2024, 3, 1, tzinfo=dt.UTC), "2024-02-29T10:00:00.5"),
        (dt.datetime(2025, 1, 15, tzinfo=dt.UTC), "2024-02-29T10:00:00.5"),  # the leap year's
        # more than a day ahead, and the year before had none: no year, a type mismatch
        (dt.datetime(2028, 1, 15, tzinfo=dt.UTC), "02-29T10:00:00.5"),
    ],
)
def test_a_klog_february_29_gets_a_leap_year_or_stays_a_mismatch(now, expected):
    assert logs.parse_line("E0229 10:00:00.5 1 x.go:1] leap", now)["timestamp"] == expected


def test_csv_without_log_fields_has_no_log_stats(process):
    assert "log_stats" not in process("s.csv", "a,b\n1,2\n").data


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "the file is empty (0 bytes)"),
        ("blank.csv", b"  \n\n", "the file contains only whitespace"),
        ("img.csv", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "this is a PNG image"),
        ("data.parquet", b"PAR1....", "this is a Parquet file"),
        ("data.csv.bz2", bz2.compress(b"a,b\n1,2\n"), "this is a bzip2 archive"),
        ("data.db", b"SQLite format 3\x00" + b"\x00" * 84, "this is an SQLite database"),
        ("junk.csv", bytes(range(256)) * 4, "binary content"),
        ("sheet.xlsx", b"a,b\n1,2\n", "unsupported file type '.xlsx'"),
        ("bad.csv.gz", b"\x1f\x8b\x08\x00garbage", "the gzip stream is corrupt"),
        ("zero.csv.gz", gzip.compress(b""), "decompresses to nothing"),
        # damaged deflate data (zlib.error): a traceback, retried as if transient
        ("deflate.csv.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 200, "invalid block type"),
        # binary inside the gzip: refused on its first chunk, not after decompressing it all
        ("nul.csv.gz", gzip.compress(b"\x00" * 3_000_000), "binary content: NUL byte at offset 0"),
        # binary after NULs: named by the file's own offsets
        ("nuls.csv", b"\x00" * 100 + bytes(range(256)) * 4, "binary content: NUL byte at offset 0"),
        (
            "nuls.csv.gz",
            gzip.compress(b"\x00" * 100 + bytes(range(1, 256)) * 40),
            "binary content: NUL byte at offset 0",
        ),
        ("zip.csv.gz", gzip.compress(b"PK\x03\x04" + b"\x00" * 100), "this is a ZIP"),
        # was "binary content: NUL byte at offset 3"
        (
            "twice.csv.gz",
            gzip.compress(gzip.compress(b"a,b\n1,2\n")),
            "this is a gzip stream inside the gzip file (compressed twice)",
        ),
        # the rows would vanish into one header cell, and the file "complete" with none
        ("quote.csv", b'id,"name\n1,a\n2,b\n', "a quoted value in the header (line 1) is never closed"),
    ],
)
def test_unprocessable_input(process, name, content, message):
    with pytest.raises(UnprocessableFile, match=re.escape(message)):
        process(name, content)


@pytest.mark.parametrize(
    ("name", "content", "rows"),
    [
        ("data.csv.gz", "a,b\n1,2\n3,4\n", 2),
        ("data.ndjson.gz", '{"a": 1}\n{"a": 2}\n', 2),
        ("data.json.gz", '[{"a": 1}, {"a": 2}]', 2),
        ("wrapped.json.gz", '{"meta": 1, "records": [{"a": 1}, {"a": 2}]}', 2),
        ("one.json.gz", '{"a": 1}', 1),
    ],
)
def test_a_gz_name_on_plain_text_is_read_as_the_text_it_is(process, name, content, rows):
    # DuckDB took the name for gzip ("IO Error: Input is not a GZIP stream"): a traceback
    # the processor retried as if transient, until the DLQ
    result = process(name, content)
    assert (result.data["row_count"], result.data["encoding"]) == (rows, "utf-8")


@pytest.mark.parametrize("name", ["app.log", "app.log.1.gz"])
def test_a_log_truncated_in_place_is_read_after_its_leading_nuls(process, name):
    # logrotate's copytruncate, while the program writes on at its old offset, leaves the
    # file starting with as many NULs as it held: it was refused as binary
    text = b"\x00" * 3_000_000 + b"2025-01-01T00:00:00Z INFO after rotation\n2025-01-01T00:00:01Z ERROR x\n"
    result = process(name, gzip.compress(text) if name.endswith(".gz") else text)
    assert result.rows("level, message") == [("INFO", "after rotation"), ("ERROR", "x")]
    assert result.data["warnings"][0].startswith("the file starts with 3,000,000 NUL bytes")


@pytest.mark.parametrize(
    "content",
    [
        '[{"*": 1, "a/b": 2, "t~x": 3, "$y": 4}, {"*": 5, "a/b": 6, "t~x": 7, "$y": 8}]',
        '{"*": [{"a": 0}], "b": [{"c": 0}]}',  # two arrays: one record, read whole
    ],
)
def test_any_key_is_a_column_name_wildcards_and_slashes_too(process, content):
    # "*" was a wildcard in DuckDB's JSON path, even quoted: a traceback, not a file
    result = process("keys.json", content)
    assert set(result.data["schema"]) in ({"*", "a/b", "t~x", "$y"}, {"*", "b"})
    if "$y" in result.data["schema"]:
        assert result.rows('"*", "a/b", "t~x", "$y"') == [(1, 2, 3, 4), (5, 6, 7, 8)]


def test_a_mismatch_in_a_column_named_like_a_wildcard_is_reported(process):
    text = "a,*\n" + "".join(f"{i},{i + 1}\n" for i in range(12)) + "12,x\n"
    result = process("star.csv", text)
    assert result.data["quality_issues"]["type_mismatches"]["*"]["examples"] == [{"line": 14, "value": "x"}]


def test_unicode_file_names_and_values(process):
    result = process("données été 2025.csv", "ville,n\nZürich,1\n東京,2\n")
    assert result.data["file_name"] == "données été 2025.csv"
    assert result.rows("ville") == [("Zürich",), ("東京",)]


def test_json_nested_deeper_than_python_parses_is_kept_as_text(process):
    deep = '{"a":' * 5_000 + "1" + "}" * 5_000
    result = process("deep.log", f"2025-01-01 10:00:00 INFO a\n{deep}\n")
    assert result.rows("length(message)") == [(1 + len(deep) + 1,)]


def test_text_that_starts_like_a_magic_number_is_still_read(process):
    # Arrow's magic is "ARROW1" and two NUL bytes: a CSV header may start with ARROW1
    assert process("a.csv", "ARROW1,b\n1,2\n").data["schema"] == {"ARROW1": "int", "b": "int"}
