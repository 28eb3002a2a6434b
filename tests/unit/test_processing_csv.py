"""The processing core on CSV: schema, statistics, quality issues, Parquet output."""

from __future__ import annotations

import datetime as dt
import json

import duckdb
import pyarrow.parquet as pq
import pytest

from handlers.logic.processing import UnprocessableFile
from handlers.logic.processing.formats import sniff_dialect

SEED = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n2025-01-03,Widget,,39.99\n"


def test_seed_example(process):
    # Given the seed file, When it is processed
    result = process("sales.csv", SEED)
    data = result.data
    # Then schema, statistics and missing values are exactly the documented ones
    assert data["file_name"] == "sales.csv"
    assert data["format"] == "csv"
    assert data["row_count"] == 3
    assert data["schema"] == {"date": "date", "product": "string", "quantity": "int", "price": "float"}
    q, p = data["statistics"]["quantity"], data["statistics"]["price"]
    assert (q["min"], q["max"], q["avg"]) == (5, 10, 7.5)
    assert (p["min"], p["max"], p["avg"]) == (29.99, 49.99, 39.99)
    assert data["quality_issues"]["missing_values"] == {"quantity": {"count": 1, "percentage": 33.33}}
    assert data["statistics"]["date"] | {} == {
        "null_count": 0,
        "distinct_count": 3,
        "min": "2025-01-01",
        "max": "2025-01-03",
        "avg": "2025-01-02",
    }
    assert data["statistics"]["product"]["distinct_count"] == 2


def test_seed_parquet_has_the_inferred_types_and_values(process):
    result = process("sales.csv", SEED)
    assert result.parquet_types() == {
        "date": "DATE",
        "product": "VARCHAR",
        "quantity": "BIGINT",
        "price": "DOUBLE",
        "_rescued_data": "VARCHAR",
    }
    assert result.rows() == [
        (dt.date(2025, 1, 1), "Widget", 10, 29.99, None),
        (dt.date(2025, 1, 2), "Gadget", 5, 49.99, None),
        (dt.date(2025, 1, 3), "Widget", None, 39.99, None),
    ]


@pytest.mark.parametrize(
    ("name", "text", "delimiter"),
    [
        ("a.csv", "a;b;c\n1;2;3\n4;5;6\n", ";"),
        ("a.tsv", "a\tb\tc\n1\t2\t3\n", "\t"),
        ("a.csv", "a|b|c\n1|2|3\n4|5|6\n", "|"),
        ("a.txt", "a,b,c\n1,2,3\n", ","),
    ],
)
def test_delimiters_are_detected(process, name, text, delimiter):
    result = process(name, text)
    assert result.data["dialect"]["delimiter"] == delimiter
    assert result.data["schema"] == {"a": "int", "b": "int", "c": "int"}


def test_a_header_alone_in_the_sample_is_split_by_the_delimiter_giving_more_columns(process):
    # Given a ';' file whose header names hold a comma and whose first record is a quoted
    # text longer than the head the dialect is sniffed from (64 KiB of many lines): the
    # sample holds the header alone, which ',' and ';' both split consistently
    body = "a long note\n" * 6_000
    text = f'name;price, EUR;note\n"{body}";3;x\nb;4;y\n'
    result = process("long.csv", text)
    # Then ';' splits it (3 columns, not 2), and no record is lost as malformed
    assert result.data["dialect"]["delimiter"] == ";"
    assert result.data["schema"] == {"name": "string", "price, EUR": "int", "note": "string"}
    assert result.rows('name, "price, EUR"') == [(body, 3), ("b", 4)]


@pytest.mark.parametrize("rows", ["", "\n" + ",".join(["1"] * 1500) + "\n"])
def test_a_header_longer_than_the_head_read_is_refused_not_cut(process, rows):
    # Given 1,500 columns of long names (1.2 MB of header; the head read is 1 MiB)
    header = ",".join(f"column {i} " + "n" * 800 for i in range(1500))
    # Then the file is refused for it: alone, the header completed with 1,292 columns, the
    # last name cut short; with rows, each was malformed for having more fields than that
    with pytest.raises(
        UnprocessableFile,
        match=r"^the header \(line 1\) is longer than 1 MiB, the longest header headrace reads$",
    ):
        process("wide.csv", header + rows)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_an_excel_sep_line_names_the_delimiter_and_is_skipped(process, bom):
    # Given Excel's "sep=;" first line (a comma in the data would otherwise win the sniff)
    text = bom + b"sep=;\r\nname;note\r\nWidget;a, b, c\r\nGadget;x;y\r\n\r\nGizmo;d, e\r\n"
    result = process("excel.csv", text)
    # Then the header is the second line, and line numbers still count the file's lines
    assert result.data["dialect"] == {"delimiter": ";", "quote": '"', "header": True, "skipped_lines": 1}
    assert result.rows("name, note") == [("Widget", "a, b, c"), ("Gizmo", "d, e")]
    assert result.data["quality_issues"]["malformed_rows"]["rows"][0]["line"] == 4
    assert result.data["lineage"] == {"unit": "line", "first": 3, "skipped": [4, 5]}


def test_a_quoted_header_name_may_span_lines(process):
    result = process("h.csv", 'id,"long\nname"\n1,2\n3,4\n')
    assert result.data["schema"] == {"id": "int", "long\nname": "int"}
    assert result.data["row_count"] == 2


def test_quotes_embedded_delimiters_and_newlines(process):
    text = 'id,comment,n\n1,"hello, world",1\n2,"two\nlines ""quoted""",2\n3,plain,3\n'
    result = process("q.csv", text)
    assert result.rows("comment") == [("hello, world",), ('two\nlines "quoted"',), ("plain",)]
    assert result.data["row_count"] == 3


@pytest.mark.parametrize(
    ("text", "second"),
    [
        # a header name holding CRLF in a file of LF lines (Python's csv module writes a
        # value's line ends as they are, whatever its lineterminator)
        (b'id,"unit\r\nprice",note\n1,2,"a\r\nb"\n3,4,c\n', "unit\r\nprice"),
        (b'id,"unit\nprice",note\r\n1,2,"a\r\nb"\r\n3,4,c\r\n', "unit\nprice"),
    ],
)
def test_a_header_name_holding_another_line_end_than_the_files_loses_no_row(process, text, second):
    # Given a quoted header name spanning lines, its line end not the file's: DuckDB's
    # reader returned no row at all, and the file failed as if its quotes were broken
    result = process("names.csv", text)
    # Then every record is read, and a value's line end is kept as written
    assert list(result.data["schema"]) == ["id", second, "note"]
    assert result.rows() == [(1, 2, "a\r\nb", None), (3, 4, "c", None)]


@pytest.mark.parametrize(
    ("text", "first", "warnings"),
    [
        # without a header: DuckDB refused the first record as malformed
        (b'3,"a\nb"\r\n,\r\n4,c\r\n', "a\nb", []),
        # and here failed as if line ends were mixed: every CRLF in values became LF
        (b'3,"a\r\nb"\n,\n4,c\n', "a\r\nb", []),
        # line ends truly mixed: read as LF, as before, the first record too
        (b'3,"a\nb"\r\n,\n4,c\n', "a\nb", ["CRLF and LF line ends are mixed; all read as LF"]),
    ],
)
def test_a_first_record_holding_another_line_end_than_the_files_is_read_as_written(
    process, text, first, warnings
):
    result = process("values.csv", text)
    assert result.data["dialect"]["header"] is False
    assert result.rows() == [(3, first, None), (None, None, None), (4, "c", None)]
    assert "malformed_rows" not in result.data["quality_issues"]
    assert result.data["warnings"] == warnings


def test_a_title_block_before_the_header_is_skipped_and_said(process):
    text = (
        "Sales report\nRun on,2025-01-31\n\n"
        "id,amount,region,rep\n1,2.5,north,ann\n2,3.5,south,bob\n\n3,4.5,east,cid\n"
    )
    result = process("report.csv", text)
    assert result.data["schema"] == {"id": "int", "amount": "float", "region": "string", "rep": "string"}
    assert result.rows("id") == [(1,), (2,), (3,)]
    assert result.data["dialect"]["skipped_lines"] == 3
    # line numbers still count the file's lines: the header is line 4, the blank line 7
    assert result.data["lineage"] == {"unit": "line", "first": 5, "skipped": [7]}
    assert result.data["warnings"] == [
        "a title block above the header was skipped (lines 1-3): 'Sales report', 'Run on,2025-01-31'"
    ]


def test_the_title_lines_a_warning_quotes_are_redacted(process):
    # Given a title block naming who the export is for, an address cut by the quote's length
    title = "Export for " + "x" * 60 + " firstname.lastname@example.com"
    text = f"{title}\nContact,+1 415 555 0100\n\nid,amount,region,rep\n1,2.5,north,ann\n2,3.5,south,bob\n"
    # When it is processed
    warnings = process("export.csv", text).data["warnings"]
    # Then the warning quotes the lines as the Parquet would hold them: redacted, no half
    # address (the summary and the metadata item keep warnings)
    assert warnings == [
        "a title block above the header was skipped (lines 1-3): "
        + repr("Export for " + "x" * 60 + " [REDACTED:EMAIL]")
        + ", 'Contact,[REDACTED:PHONE]'"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "a,b\n1,2,3\n4,5,6\n7,8,9\n",  # a short header over longer rows: ragged, not a title
        "note\n1,2,3\n4,5,6\n",  # what follows the short line is data, not a header
        "a,b\nx,y,z\nu,v,w\n",  # two of three fields is a table's line, not a title's
        # a short header over text rows with unquoted commas: no blank line, so no title
        "comment\nGreat product, would buy again\nToo slow, returned it\nOK, fine\n",
        "name,address\nann,1 Main St,Springfield,IL\nbob,2 Elm St,Dayton,OH\n",
        # and with a blank line: over rows of text alone, a header cannot be told from data
        "name\n\nDoe, John\nRoe, Jane\nPoe, Edgar\n",
    ],
)
def test_a_short_first_line_without_a_header_after_it_is_not_a_title(text):
    assert sniff_dialect(text).skip == 0


def test_a_title_spanning_lines_in_quotes_is_one_line_as_duckdb_counts(process):
    text = '"Sales\nreport"\n\nid,amount,region,rep\n1,2.5,north,ann\n2,3.5,south,bob\n'
    result = process("report.csv", text)
    assert result.rows("id") == [(1,), (2,)]
    assert result.data["dialect"]["skipped_lines"] == 2
    assert result.data["lineage"]["first"] == 4
    assert "(lines 1-2)" in result.data["warnings"][0]


def test_a_single_title_line_after_excels_sep_line(process):
    result = process("report.csv", "sep=;\nSales report\n\nid;amount;region\n1;2;x\n")
    assert result.rows("id, amount") == [(1, 2)]
    assert result.data["warnings"] == [
        "a title block above the header was skipped (lines 2-3): 'Sales report'"
    ]


_TABLE = "id,amount,region\n1,2.5,north\n2,3.5,south\n\n3,4.5,east\n"


@pytest.mark.parametrize(
    ("preamble", "said"),
    [
        # a comment line as many tools write one, with no blank line after it
        ("# report generated 2025\n", "(line 1): '# report generated 2025'"),
        # comment lines outnumbering the table in the sample, one with commas: they do not
        # decide the table's width
        ("# a\n# b, c, d, e\n", "(lines 1-2): '# a', '# b, c, d, e'"),
        # below another, a comment line of the table's width is one too
        ("# a\n# x,y,z\n", "(lines 1-2): '# a', '# x,y,z'"),
        # a report's title, and its metadata, right above the header
        ("Sales report 2025-01\n", "(line 1): 'Sales report 2025-01'"),
        ("Exported: 2025-01-03\n", "(line 1): 'Exported: 2025-01-03'"),
        # quoted, with fewer fields than the header (more than half of them)
        ('"Report","Q1"\n', "(line 1): 'Report,Q1'"),
        # before the header, after a blank line
        ("\n# comment\n", "(lines 1-2): '# comment'"),
    ],
)
def test_preamble_lines_right_above_the_header_are_skipped_and_said(process, preamble, said):
    result = process("report.csv", preamble + _TABLE)
    skipped = preamble.count("\n")
    assert result.data["schema"] == {"id": "int", "amount": "float", "region": "string"}
    assert result.rows("id, amount, region") == [(1, 2.5, "north"), (2, 3.5, "south"), (3, 4.5, "east")]
    assert result.data["dialect"]["skipped_lines"] == skipped
    # line numbers count the file's lines: the header follows the preamble, the blank line
    # is the table's fourth
    assert result.data["lineage"] == {"unit": "line", "first": skipped + 2, "skipped": [skipped + 4]}
    assert result.data["warnings"] == [f"a title block above the header was skipped {said}"]


def test_any_number_of_comment_lines_above_the_header_are_skipped(process):
    # (the 11th "#" line was taken for the header of a one-column table: the file was
    # refused, "11 of 14 records are malformed; first at line 2: expected 3 fields")
    comments = "".join(f"# comment line {i}\n" for i in range(1, 13))
    result = process("report.csv", comments + _TABLE)
    assert result.data["schema"] == {"id": "int", "amount": "float", "region": "string"}
    assert result.rows("id, amount, region") == [(1, 2.5, "north"), (2, 3.5, "south"), (3, 4.5, "east")]
    assert result.data["dialect"]["skipped_lines"] == 12
    assert result.data["lineage"] == {"unit": "line", "first": 14, "skipped": [16]}
    # the warning quotes the first ten and counts the rest
    assert result.data["warnings"] == [
        "a title block above the header was skipped (lines 1-12): "
        + ", ".join(f"'# comment line {i}'" for i in range(1, 11))
        + " and 2 more"
    ]


def test_comment_lines_above_a_table_without_a_header(process):
    result = process("data.csv", "# generated by tool\n# on 2025-01-03\n1,2.5,north\n2,3.5,south\n")
    assert result.data["dialect"] == {"delimiter": ",", "quote": '"', "header": False, "skipped_lines": 2}
    assert result.rows("column_1, column_3") == [(1, "north"), (2, "south")]
    assert result.data["lineage"] == {"unit": "line", "first": 3, "skipped": []}
    assert result.data["warnings"] == [
        "a title block above the first record was skipped (lines 1-2): "
        "'# generated by tool', '# on 2025-01-03'"
    ]


def test_a_comment_line_after_excels_sep_line_and_a_malformed_row_below(process):
    text = "sep=;\n# exported, by tool\nid;amount\n1;2\n3;4;5\n6;7\n"
    result = process("export.csv", text)
    assert result.data["dialect"] == {"delimiter": ";", "quote": '"', "header": True, "skipped_lines": 2}
    assert result.rows("id, amount") == [(1, 2), (6, 7)]
    assert result.data["quality_issues"]["malformed_rows"]["rows"][0]["line"] == 5
    assert (
        result.data["warnings"][0]
        == "a title block above the header was skipped (line 2): '# exported, by tool'"
    )


@pytest.mark.parametrize(
    ("text", "columns", "rows"),
    [
        # a first column of "#" values, under a header or with none
        ("code,desc\n#1,first\n#2,second\n", ["code", "desc"], 2),
        ("#1,first,5\n#2,second,6\n#3,third,7\n", ["column_1", "column_2", "column_3"], 3),
        # a header whose first name starts with "#", over values or text
        ("#id,name\n1,a\n2,b\n", ["#id", "name"], 2),
        ("#,item,qty\nA,widget,n/a\nB,gadget,5\nC,gizmo,7\n", ["#", "item", "qty"], 3),
        # one column: a "#" line cannot be told from a value
        ("#tag\n#a\n#b\n", ["#tag"], 2),
        ("# note\ntag\na\nb\n", ["# note"], 3),
        # a short header over ragged rows (unquoted commas) holding numbers
        (
            "name,address\nann,1 Main St,Springfield,IL\nbob,2 Elm St,Dayton,62704\n"
            "cid,3 Oak Ave,Apt 4,Austin,73301\ndan,4 Pine Rd,Reno,89501\n",
            ["name", "address", "column_3", "column_4"],
            3,
        ),
    ],
)
def test_hash_values_and_short_headers_over_data_are_not_preamble(process, text, columns, rows):
    result = process("data.csv", text)
    assert list(result.data["schema"]) == columns
    assert result.data["row_count"] == rows
    assert result.data["lineage"]["first"] == 2 - (columns[0] == "column_1")
    assert "skipped_lines" not in result.data["dialect"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # a title, a blank line, then a header whose first name is "#" (a rank column)
        ("Leaderboard\n\n#,name,score\n1,alice,90\n2,bob,85\n", "(lines 1-2): 'Leaderboard'"),
        # the same title right above it: the header's types set it apart from the rows
        ("Leaderboard 2025\n#,name,score\n1,alice,90\n2,bob,85\n", "(line 1): 'Leaderboard 2025'"),
    ],
)
def test_a_header_whose_first_name_starts_with_a_hash_is_found_below_a_title(process, text, said):
    # (it was taken for a comment line: the title became the header, every column text,
    # and the real header a data row)
    result = process("ranking.csv", text)
    assert result.data["schema"] == {"#": "int", "name": "string", "score": "int"}
    assert result.rows('"#", name, score') == [(1, "alice", 90), (2, "bob", 85)]
    assert result.data["warnings"] == [f"a title block above the header was skipped {said}"]


def test_leading_blank_lines_are_skipped_before_the_header(process):
    result = process("b.csv", "\n\nid,name\n1,a\n\n2,b\n")
    assert result.rows("id, name") == [(1, "a"), (2, "b")]
    assert result.data["lineage"] == {"unit": "line", "first": 4, "skipped": [5]}


def test_bom_and_crlf(process):
    result = process("b.csv", b"\xef\xbb\xbfid,name\r\n1,a\r\n2,b\r\n")
    assert result.data["schema"] == {"id": "int", "name": "string"}
    assert result.rows("id, name") == [(1, "a"), (2, "b")]
    assert result.data["encoding"] == "utf-8 (BOM)"


def test_lone_cr_line_ends_are_lines_and_keep_their_numbers(process):
    # Excel for Mac's "CSV (Macintosh)" ends lines with CR alone; a quoted CR stays in its value
    result = process("mac.csv", b'id,note\r1,"two\rlines"\r\r2,b\r3,x,extra\r')
    assert result.rows("id, note") == [(1, "two\nlines"), (2, "b")]
    assert result.data["lineage"] == {"unit": "line", "first": 2, "skipped": [3, 5]}
    assert result.data["quality_issues"]["malformed_rows"]["rows"][0]["line"] == 5
    assert "lone CR" in result.data["warnings"][0]


def test_lone_cr_line_ends_with_a_line_break_inside_a_cell(process):
    # Excel for Mac writes a line break inside a cell as LF; a later CRLF stays one line end
    result = process("mac.csv", b'id,note\r1,"a\nb"\r2,c\r3,d\r4,e\r\n5,f\r\n')
    assert result.rows("id, note") == [(1, "a\nb"), (2, "c"), (3, "d"), (4, "e"), (5, "f")]
    assert result.data["lineage"]["skipped"] == []


def test_the_encoding_warning_counts_lone_cr_lines(process):
    result = process("mac.csv", b"id,name\r1,a\r2,b\r3,Jos\xe9\r")
    assert result.rows("name")[-1] == ("José",)
    assert "line 4" in " ".join(result.data["warnings"])


def test_lone_cr_line_ends_after_transcoding(process):
    result = process("mac16.csv", "id;name\r1;José\r".encode("utf-16"))
    assert result.rows("id, name") == [(1, "José")]


def test_a_crlf_cut_by_the_sniffed_head_is_not_taken_for_cr_line_ends(process):
    from handlers.logic.processing.textfile import HEAD

    long_header = "a" * (HEAD - 1)  # the head's last byte is the CR of the first CRLF
    result = process("long.csv", f"{long_header}\r\n1\r\n2\r\n".encode())
    assert result.rows(f'"{long_header}"') == [(1,), (2,)]
    assert result.data["warnings"] == []


def test_non_utf8_uses_the_declared_fallback_and_says_where(process):
    result = process("l.csv", "name,city\nJosé,München\n".encode("cp1252"))
    assert result.rows("name, city") == [("José", "München")]
    assert result.data["encoding"] == "cp1252"
    assert "line 2" in result.data["warnings"][0]


def test_a_few_stray_bytes_in_utf8_text_are_decoded_alone(process):
    # one line pasted from a Latin-1 source made the whole file cp1252: José became JosÃ©
    # and 東京 æ\x9d±äº¬ in every other row
    text = "name,city\n" + "".join(f"José {i},東京\n" for i in range(10))
    result = process("mixed.csv", text.encode() + b"M\xfcller,K\xf6ln\n")
    assert result.data["encoding"] == "utf-8"
    assert result.rows("name, city")[0] == ("José 0", "東京")
    assert result.rows("name, city")[-1] == ("Müller", "Köln")
    assert result.data["warnings"] == [
        "2 byte(s) not valid UTF-8 (the first at offset 161, line 12) decoded as cp1252; "
        "the rest of the file is UTF-8"
    ]


def test_one_utf8_accent_and_one_stray_byte_keep_both(process):
    # a tie of evidence went to the fallback: José became JosÃ©
    result = process("tie.csv", "name\nJosé\n".encode() + b"M\xfcller\n")
    assert result.data["encoding"] == "utf-8"
    assert result.rows("name") == [("José",), ("Müller",)]


def test_fallback_encoding_is_configurable(process):
    result = process("l.csv", "name\nЖЩЫЮ\n".encode("koi8-r"), fallback_encoding="koi8-r")
    assert result.rows("name") == [("ЖЩЫЮ",)]


def test_utf16_with_bom(process):
    result = process("u.csv", "a,b\n1,x\n".encode("utf-16"))
    assert result.rows("a, b") == [(1, "x")]


def test_gzip_is_read_transparently(process):
    result = process("g.csv.gz", "a,b\n1,2\n3,4\n", gz=True)
    assert result.data["row_count"] == 2
    assert result.data["encoding"] == "utf-8 (gzip)"


def test_file_without_header_gets_generated_names(process):
    result = process("n.csv", "1,x,2025-01-01\n2,y,2025-01-02\n")
    assert result.data["schema"] == {"column_1": "int", "column_2": "string", "column_3": "date"}
    assert result.data["row_count"] == 2


def test_duplicate_and_blank_header_names_are_made_unique(process):
    result = process("h.csv", "id,ID,,name\n1,2,3,x\n")
    assert list(result.data["schema"]) == ["id", "ID_2", "column_3", "name"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", "+3"], "int"),
        (["1.5", "2", "-3e2"], "float"),
        (["true", "False", "yes", "n"], "bool"),
        (["2025-01-01", "2024-12-31"], "date"),
        (["01/31/2025", "12/01/2024"], "date"),
        (["31/01/2025", "01/12/2024"], "date"),
        (["2025-01-01T10:00:00Z", "2025-01-01 11:30:00", "2025-01-01T10:00:00.5+02:00"], "timestamp"),
        (["abc", "1"], "string"),
        (["007", "012"], "string"),  # leading zeros are identifiers: keep every digit
        # too long for a 64-bit int and for a double to hold exactly: keep every digit
        (["12345678901234567890", "98765432109876543210"], "string"),
        (["9223372036854775807", "-9223372036854775808"], "int"),  # 64 bits: every digit kept
        (["1_000", "0x1F", "\u0661\u0662\u0663", "1e3"], "string"),  # only ASCII digits are ints
        (["123456789012345", "-2.5"], "float"),  # 15 digits: exact in a double
        # not dates of the years 5 and 25 (day first, two-digit year), nor of the year 1
        (["05-01-25", "31-12-24"], "string"),
        (["25-01-05", "24-12-31"], "string"),
        (["1-2-3", "4-5-6"], "string"),
        (["25-01-05 10:00:00", "24-12-31T23:00:00Z"], "string"),
    ],
)
def test_type_inference(process, values, expected):
    result = process("t.csv", "v\n" + "\n".join(values) + "\n")
    assert result.data["schema"]["v"] == expected
    if expected == "string":  # every value as written
        assert result.rows("v") == [(v,) for v in values]


@pytest.mark.parametrize(("kind", "valid"), [("date", "2025-01-05"), ("timestamp", "2025-01-05 10:00:00")])
def test_a_date_without_a_four_digit_year_in_a_date_column_is_a_mismatch(process, kind, valid):
    # the casts made "05-01-25" the year 5 and PostgreSQL's "-infinity" the year 1
    odd = ["05-01-25", "25-01-05 10:00", "-infinity", "-2025-01-05"]
    result = process("d.csv", "v\n" + "\n".join([valid] * 40 + odd) + "\n")
    assert result.data["schema"] == {"v": kind}
    mismatches = result.data["quality_issues"]["type_mismatches"]["v"]
    assert [e["value"] for e in mismatches["examples"]] == odd
    assert result.data["statistics"]["v"]["min"].startswith("2025-01-05")


@pytest.mark.parametrize(
    ("kind", "good", "outside", "ends"),
    [
        (
            "date",
            "2025-01-01",
            ["0000-01-01", "2024-01-01 (BC)", "-2024-01-01", "10000-01-01", "-infinity"],
            ["0001-01-01", "9999-12-31"],
        ),
        ("date", "01/31/2025", ["01/31/0000"], ["01/01/0001", "12/31/9999"]),
        (
            "timestamp",
            "2025-01-01 10:00:00",
            [
                "0000-06-01 10:00:00",
                "99999-01-01 00:00:00",
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:00:00-05:00",
            ],
            ["0001-01-01 00:00:00", "9999-12-31T23:59:59.999999Z"],
        ),
    ],
)
def test_dates_beyond_the_years_0001_to_9999_are_mismatches_kept_as_written(
    process, kind, good, outside, ends
):
    # DuckDB read year 0 as 1 BC and "(BC)" dates: pyarrow could not read them back, the
    # summary's min said "0001-01-01 (BC)" and the warehouse loaded 1 BC; an offset can
    # push an instant past either end
    values = [good] * 60 + outside + ends
    result = process("y.csv", "d\n" + "\n".join(values) + "\n")
    assert result.data["schema"] == {"d": kind}
    issue = result.data["quality_issues"]["type_mismatches"]["d"]
    assert issue["count"] == len(outside)
    rescued = [json.loads(r)["d"] for (r,) in result.rows("_rescued_data") if r]
    assert rescued == outside
    stats = result.data["statistics"]["d"]
    assert stats["min"].startswith("0001-01-01") and stats["max"].startswith("9999-12-31")
    # every stored value reads back as a Python date (pyarrow raised OverflowError)
    assert len(pq.read_table(result.parquet).column("d").to_pylist()) == len(values)


def test_decimal_commas_are_read_in_a_file_not_delimited_by_commas(process):
    # as a spreadsheet writes CSV where the comma is the decimal separator
    text = "name;price;qty;ratio\nA;1,5;3;0.5\nB;1.234,56;4;1.25\nC;-2;5;2\nD;12,25;6,5;3\n"
    result = process("eu.csv", text)
    assert result.data["schema"] == {"name": "string", "price": "float", "qty": "float", "ratio": "float"}
    assert result.rows("price, qty, ratio") == [
        (1.5, 3.0, 0.5),
        (1234.56, 4.0, 1.25),
        (-2.0, 5.0, 2.0),
        (12.25, 6.5, 3.0),
    ]
    assert result.data["statistics"]["price"]["max"] == 1234.56
    assert result.data["dialect"]["decimal_separator"] == ","


def test_a_dot_without_a_comma_in_a_decimal_comma_column_is_kept_as_written(process):
    # 1.234 is 1234 where dots group thousands and 1.234 where they do not: not guessed
    values = [f"{i},5" for i in range(19)] + ["1.234"]
    result = process("eu.csv", "k;v\n" + "".join(f"{i};{v}\n" for i, v in enumerate(values)))
    assert result.data["schema"]["v"] == "float"
    assert result.data["quality_issues"]["type_mismatches"]["v"]["examples"] == [
        {"line": 21, "value": "1.234"}
    ]
    assert [r for (r,) in result.rows("_rescued_data") if r] == ['{"v":"1.234"}']


@pytest.mark.parametrize(
    "text",
    [
        'k,v\n1,"1,5"\n2,"2,5"\n',  # comma-delimited: "1,5" may be a list or 1,500
        "k;v\n1;1.5\n2;2,5\n3;3.5\n",  # mostly dots: no single reading fits 90 %
        "k\tv\n1\t1,234\n2\t5,678\n3\t999\n",  # 1,234: thousands grouped, or decimals?
        "k;v\n1;1,5\n2;1,234\n",  # a tie between decimals and thousands is not decimals
        # one decimal comma, or a comma in text, does not make figures like 1,001 decimals
        "k\tv\n" + "".join(f"{i}\t{i},{i:03d}\n" for i in range(1, 20)) + "20\t1,5\n",
        "k\tv\n" + "".join(f"{i}\t{i},{i:03d}\n" for i in range(1, 20)) + "20\tsee row 1,25\n",
    ],
)
def test_decimal_commas_are_not_read_where_the_file_does_not_say_so(process, text):
    result = process("t.tsv" if "\t" in text else "t.csv", text)
    assert result.data["dialect"]["delimiter"] == text[1]
    assert result.data["schema"]["v"] == "string"
    assert "decimal_separator" not in result.data["dialect"]


def test_a_semicolon_file_of_plain_numbers_keeps_the_plain_format(process):
    result = process("t.csv", "k;v;n\n1;1.5;1.000\n2;2.25;2.500\n")
    assert result.rows("v, n") == [(1.5, 1.0), (2.25, 2.5)]
    assert "decimal_separator" not in result.data["dialect"]


@pytest.mark.parametrize(
    ("late", "schema", "last"),
    [
        ([f"{i},5" for i in range(300)], "float", 299.5),
        # unless most commas are followed by three digits (thousands as much as decimals)
        ([f"1,{i:03d}" for i in range(300)], "string", "1,299"),
        (["0,5"] + [f"1,{i:03d}" for i in range(1, 300)], "string", "1,299"),
    ],
)
def test_decimal_commas_after_an_integer_sample_widen_the_column_to_float(process, late, schema, last):
    values = [str(i) for i in range(100)] + late
    result = process("w.csv", "k;x\n" + "".join(f"{i};{v}\n" for i, v in enumerate(values)), sample_rows=100)
    assert result.data["schema"]["x"] == schema
    assert result.rows("x")[-1] == (last,)


def test_each_column_is_typed_on_its_own_values_whatever_its_name(process):
    # inference counts all columns' values in one query (an UNPIVOT into name/value columns)
    header = 'name,v,"q""uote d",empty,ünï,date\n'
    rows = "1,2025-01-01,true,,3.5,x\n2,2025-01-02,false,,4.0,y\n3,2025-01-03,yes,,5,z\n"
    assert process("t.csv", header + rows).data["schema"] == {
        "name": "int",
        "v": "date",
        'q"uote d': "bool",
        "empty": "string",
        "ünï": "float",
        "date": "string",
    }


def test_timestamps_are_stored_in_utc(process):
    result = process("t.csv", "ts\n2025-01-01T10:00:00+02:00\n2025-01-01T10:00:00Z\n")
    assert result.rows("ts") == [(dt.datetime(2025, 1, 1, 8, 0),), (dt.datetime(2025, 1, 1, 10, 0),)]
    assert result.data["statistics"]["ts"]["min"] == "2025-01-01T08:00:00"


def test_timestamp_rules_the_readme_states(process):
    # naive is UTC beside offsets; nanoseconds truncated, not rounded (before 1970 too);
    # 24:00:00 is the next day; a leap second and February 29 of 2023 are mismatches
    values = ["2025-01-01T10:00:00", "2025-01-01T10:00:00+02:00", "2025-01-01T10:00:00.9999999"]
    values += ["1969-12-31T23:59:59.999999999Z", "2025-01-01T24:00:00"]
    values += [f"2025-01-02 10:00:{i:02d}" for i in range(20)] + [
        "2016-12-31T23:59:60Z",
        "2023-02-29 10:00:00",
    ]
    result = process("t.csv", "ts\n" + "\n".join(values) + "\n")
    assert [t for (t,) in result.rows("ts")][:5] == [
        dt.datetime(2025, 1, 1, 10, 0),
        dt.datetime(2025, 1, 1, 8, 0),
        dt.datetime(2025, 1, 1, 10, 0, 0, 999999),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
        dt.datetime(2025, 1, 2, 0, 0),
    ]
    examples = result.data["quality_issues"]["type_mismatches"]["ts"]["examples"]
    assert [e["value"] for e in examples] == ["2016-12-31T23:59:60Z", "2023-02-29 10:00:00"]
    # statistics are of the stored values: UTC, written without an offset; the null_count
    # counts the mismatches
    assert result.data["statistics"]["ts"]["min"] == "1969-12-31T23:59:59.999999"
    assert result.data["statistics"]["ts"]["null_count"] == 2


def test_a_zone_name_after_a_timestamp_is_applied_not_ignored(process):
    values = ["2025-01-01 10:00:00 PST", "2025-01-01 10:00:00 +00:00", "2025-01-01T10:00:00 Europe/Paris"]
    values += [f"2025-01-02 10:00:{i:02d}Z" for i in range(17)] + ["2025-01-01 10:00:00 XYZ"]
    result = process("tz.csv", "ts\n" + "\n".join(values) + "\n")
    assert result.rows("ts")[:3] == [
        (dt.datetime(2025, 1, 1, 18, 0),),
        (dt.datetime(2025, 1, 1, 10, 0),),
        (dt.datetime(2025, 1, 1, 9, 0),),
    ]
    # a zone DuckDB does not know is kept as written, not read as UTC
    assert result.data["quality_issues"]["type_mismatches"]["ts"]["examples"] == [
        {"line": 22, "value": "2025-01-01 10:00:00 XYZ"}
    ]


def test_us_zone_names_are_their_fixed_offsets_in_summer_too(process):
    # RFC 5322's EST ... PDT: "12:00 PST" in June is 20:00 UTC (ICU read it as Los Angeles
    # time, PDT in June: 19:00), PDT is known, and minutes without seconds carry their zone
    values = ["2025-06-01 12:00:00 PST", "2025-06-01 12:00:00 PDT", "2025-06-01 12:00 CST"]
    values += ["2025-06-01 12:00-05:00", "2025-01-01 12:00 EDT", "2025-06-01 12:00:00"]
    result = process("tz.csv", "ts\n" + "\n".join(values) + "\n")
    assert result.data["schema"] == {"ts": "timestamp"}
    assert [t for (t,) in result.rows("ts")] == [
        dt.datetime(2025, 6, 1, 20, 0),
        dt.datetime(2025, 6, 1, 19, 0),
        dt.datetime(2025, 6, 1, 18, 0),
        dt.datetime(2025, 6, 1, 17, 0),
        dt.datetime(2025, 1, 1, 16, 0),
        dt.datetime(2025, 6, 1, 12, 0),
    ]
    assert "duplicate_rows" not in result.data["quality_issues"]


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        # ICU read these as Java's legacy ids: Bangladesh (+06:00), Alaska, Auckland
        ("2025-07-01 12:00:00 BST", dt.datetime(2025, 7, 1, 11, 0)),
        ("2025-01-01 12:00:00 AST", dt.datetime(2025, 1, 1, 16, 0)),
        ("2025-01-01 12:00:00 NST", dt.datetime(2025, 1, 1, 15, 30)),
        # a fixed offset in summer too (ICU: Paris time, CEST), and the summer name read
        ("2025-07-01 12:00:00 CET", dt.datetime(2025, 7, 1, 11, 0)),
        ("2025-07-01 12:00:00 CEST", dt.datetime(2025, 7, 1, 10, 0)),
        ("2025-07-01 12:00 pst", dt.datetime(2025, 7, 1, 20, 0)),  # any case, as ICU reads it
        ("2025-01-01 12:00:00 Europe/Paris", dt.datetime(2025, 1, 1, 11, 0)),
        ("2025-01-01 12:00:00 GMT", dt.datetime(2025, 1, 1, 12, 0)),
        ("2025-01-01 12:00:00 UT", dt.datetime(2025, 1, 1, 12, 0)),  # RFC 5322's; ICU: unknown
        # India, Ireland or Israel; Ecuador (ICU: Paris): not guessed, kept as written
        ("2025-01-01 12:00:00 IST", None),
        ("2025-01-01 12:00:00 ECT", None),
        # Acre (-05:00), Australian Central (ICU: Darwin, +09:30) or Canberra's (+10:00)
        ("2025-01-01 12:00:00 ACT", None),
    ],
)
def test_a_zone_abbreviation_is_read_as_its_writers_mean_it_or_kept(process, value, utc):
    values = [f"2025-01-02 10:00:{i:02d}Z" for i in range(30)] + [value]
    result = process("tz.csv", "ts\n" + "\n".join(values) + "\n")
    assert result.data["schema"] == {"ts": "timestamp"}
    assert result.rows("ts")[-1] == (utc,)
    mismatches = result.data["quality_issues"]["type_mismatches"]
    assert mismatches == (
        {} if utc else {"ts": {**mismatches["ts"], "examples": [{"line": 32, "value": value}]}}
    )


def test_an_offset_beyond_23_59_is_a_mismatch_not_a_shifted_instant(process):
    # ICU applied "+99:99" as 100 hours 99 minutes and "+05:75" as 6:15
    impossible = ["2025-06-01T12:00:00+99:99", "2025-06-01T12:00:00+05:75", "2025-06-01 12:00:00 -2400"]
    impossible += ["2025-06-01 12:00+24"]
    values = [f"2025-06-02 10:00:{i:02d}Z" for i in range(40)] + impossible
    values += ["2025-06-01T12:00:00+23:59", "2025-06-01 12:00:00 -0930"]
    result = process("tz.csv", "ts\n" + "\n".join(values) + "\n")
    assert result.data["schema"] == {"ts": "timestamp"}
    mismatches = result.data["quality_issues"]["type_mismatches"]["ts"]
    assert [e["value"] for e in mismatches["examples"]] == impossible
    assert result.rows("ts")[-2:] == [(dt.datetime(2025, 5, 31, 12, 1),), (dt.datetime(2025, 6, 1, 21, 30),)]


def test_a_decimal_in_an_int_column_is_a_mismatch_not_a_rounded_value(process):
    rows = "\n".join(str(i) for i in range(19)) + "\n1.5\n"
    result = process("m.csv", "n\n" + rows)
    assert result.data["schema"]["n"] == "int"
    assert result.rows("n")[-1] == (None,)
    assert result.data["quality_issues"]["type_mismatches"]["n"]["count"] == 1


def test_a_long_integer_in_a_float_column_is_rescued_not_rounded(process):
    values = [f"{i}.5" for i in range(19)] + ["12345678901234567891"]
    result = process("f.csv", "x\n" + "\n".join(values) + "\n")
    assert result.data["schema"]["x"] == "float"
    assert result.data["quality_issues"]["type_mismatches"]["x"]["count"] == 1
    assert [r for (r,) in result.rows("_rescued_data") if r] == ['{"x":"12345678901234567891"}']


def test_long_integers_after_the_sample_make_the_column_text_not_float(process):
    values = [str(i) for i in range(100)] + [f"1234567890123456789{i % 10}{i}" for i in range(300)]
    result = process("w.csv", "x\n" + "\n".join(values) + "\n", sample_rows=100)
    assert result.data["schema"]["x"] == "string"
    assert result.rows("x")[-1] == ("12345678901234567899299",)


def test_type_mismatches_are_reported_located_and_rescued(process):
    # Given an int column with two values that are not integers among twenty
    lines = [str(i) for i in range(18)] + ["abc", "N/A", "12x"]
    text = "id,qty\n" + "\n".join(f"{i},{v}" for i, v in enumerate(lines)) + "\n"
    result = process("m.csv", text)
    issue = result.data["quality_issues"]["type_mismatches"]["qty"]
    # Then the column stays int, misfits are counted with their lines and kept verbatim
    assert result.data["schema"]["qty"] == "int"
    assert issue["expected"] == "int"
    assert issue["count"] == 2
    assert issue["examples"] == [{"line": 20, "value": "abc"}, {"line": 22, "value": "12x"}]
    assert ("abc",) not in result.rows("qty")
    rescued = [r for (r,) in result.rows("_rescued_data") if r]
    assert rescued == ['{"qty":"abc"}', '{"qty":"12x"}']
    # and "N/A" is a missing value, not a mismatch
    assert result.data["quality_issues"]["missing_values"]["qty"]["count"] == 1


def test_a_value_of_spaces_alone_is_missing_in_a_typed_column_and_kept_in_text(process):
    # Given a fixed-width style export: empty numbers and dates written as blanks (a third of them)
    rows = [f"{i},{i}.5,2025-01-{i + 1:02d},x{i}" for i in range(20)]
    rows += ["     ,   ,\t, \t ", "  , ,          ,   "] * 5
    # When it is processed
    result = process("fixed.csv", "n,f,d,s\n" + "\n".join(rows) + "\n")
    # Then each column keeps its type, its blanks NULL and counted missing, not mismatches
    assert result.data["schema"] == {"n": "int", "f": "float", "d": "date", "s": "string"}
    missing = result.data["quality_issues"]["missing_values"]
    assert {c: missing[c]["count"] for c in ("n", "f", "d")} == {"n": 10, "f": 10, "d": 10}
    assert not result.data["quality_issues"].get("type_mismatches")
    assert result.rows("count(n), count(f), count(d), count(_rescued_data)") == [(20, 20, 20, 0)]
    # and a string column keeps every character
    assert result.rows("s")[-2:] == [(" \t ",), ("   ",)]
    assert "s" not in missing
    # nor do blanks hide that month-first dates could be day-first
    us = process("us.csv", "d\n" + "".join(f"01/{d:02d}/2025\n   \n" for d in range(1, 13)))
    assert us.data["schema"] == {"d": "date"}
    assert any("no day over 12" in w for w in us.data["warnings"])


def test_misleading_sample_is_retyped_on_the_whole_file(process):
    # The first 100 rows (the sample) are integers; most later ones are decimals.
    values = [str(i) for i in range(100)] + [f"{i}.5" for i in range(300)]
    result = process("w.csv", "x\n" + "\n".join(values) + "\n", sample_rows=100)
    assert result.data["schema"]["x"] == "float"
    assert "re-typed" in result.data["warnings"][0]
    assert (
        "type_mismatches" not in result.data["quality_issues"]
        or not result.data["quality_issues"]["type_mismatches"]
    )
    assert result.rows("count(x)") == [(400,)]


@pytest.mark.parametrize(("ids", "schema", "rescued"), [(200, "string", 0), (1, "float", 1)])
def test_a_column_retyped_to_float_counts_its_long_integers_as_misfits(process, ids, schema, rescued):
    # integers in the sample, then 18-digit ids (ints) and fractions: as a float, the ids
    # would be rounded, so they are misfits there; with 200 of them the column was made
    # float all the same, half its values moved to _rescued_data and left out of its statistics
    values = (
        [str(i) for i in range(100)] + [str(10**17 + i) for i in range(ids)] + [f"{i}.5" for i in range(300)]
    )
    result = process("w.csv", "x\n" + "\n".join(values) + "\n", sample_rows=100)
    assert result.data["schema"]["x"] == schema
    assert result.rows("count(_rescued_data)") == [(rescued,)]
    if schema == "string":
        assert result.rows("x")[100] == ("100000000000000000",)


@pytest.mark.parametrize(
    ("sample", "kind", "late"), [("{}", "int", "007"), ("{}", "int", "-00"), ("{}.5", "float", "007.5")]
)
def test_leading_zeros_after_the_sample_are_kept_as_written(process, sample, kind, late):
    # The sample (100 rows) types "n" a number; a later value with a leading zero must not
    # silently lose its zeros (007 -> 7): as in the sample, it is not a number.
    lines = ["n"] + [sample.format(i + 1) for i in range(100)] + [late, "5"]
    result = process("z.csv", "\n".join(lines) + "\n", sample_rows=100)
    assert result.data["schema"]["n"] == kind
    mismatch = result.data["quality_issues"]["type_mismatches"]["n"]
    assert (mismatch["count"], mismatch["examples"]) == (1, [{"line": 102, "value": late}])
    assert result.rows("n, _rescued_data")[-2:] == [
        (None, json.dumps({"n": late}, separators=(",", ":"))),
        (5, None),
    ]


def test_many_leading_zeros_after_the_sample_make_the_column_text(process):
    lines = ["n"] + [str(i + 1) for i in range(100)] + [f"00{i}" for i in range(50)]
    result = process("z.csv", "\n".join(lines) + "\n", sample_rows=100)
    assert result.data["schema"]["n"] == "string"  # not float: "007" would be 7.0
    assert result.rows("n")[-1] == ("0049",)


@pytest.mark.parametrize("name", ["late.csv", "late.ndjson"])
def test_a_column_first_filled_after_the_sample_is_typed_on_the_whole_file(process, name):
    # The sample (100 rows) holds no value of "late"; the rows after it hold integers, and
    # one ragged CSV row, which the second read of the file must not count twice.
    if name.endswith(".csv"):
        lines = (
            ["id,late,never"] + [f"{i},," for i in range(100)] + [f"{i},{i * 10}," for i in range(100, 150)]
        )
        text = "\n".join([*lines[:120], "120,1200,,extra", *lines[121:]]) + "\n"
    else:
        records = [{"id": i} for i in range(100)] + [{"id": i, "late": i * 10} for i in range(100, 150)]
        text = "\n".join(json.dumps(r) for r in records) + "\n"
    result = process(name, text, sample_rows=100)
    assert result.data["schema"]["late"] == "int"
    assert result.data["statistics"]["late"]["min"] == 1000
    assert "late (string -> int)" in result.data["warnings"][0]
    assert result.rows("count(late)") == [(49,) if name.endswith(".csv") else (50,)]
    if name.endswith(".csv"):
        assert result.data["quality_issues"]["malformed_rows"]["count"] == 1
        # a column without any value stays string
        assert result.data["schema"]["never"] == "string"


def test_a_broken_quote_in_the_type_sample_leaves_the_other_rows_typed(process):
    rows = ["a,b", '1,"x"y'] + [f"{i},{i * 2}" for i in range(2, 100)]
    result = process("q.csv", "\n".join(rows) + "\n")
    assert result.data["schema"] == {"a": "int", "b": "int"}
    assert result.data["quality_issues"]["malformed_rows"]["count"] == 1


@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_ragged_rows_are_reported_with_lines_and_skipped(process, end):
    # with CRLF line ends, DuckDB's text of a rejected line began with the LF before it
    text = "a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n".replace("\n", end)
    result = process("r.csv", text)
    malformed = result.data["quality_issues"]["malformed_rows"]
    assert malformed["count"] == 2
    assert malformed["rows"] == [
        {"line": 3, "error": "expected 3 fields, found 2", "text": "4,5"},
        {"line": 4, "error": "expected 3 fields, found 4", "text": "6,7,8,9"},
    ]
    assert result.rows("a") == [(1,), (10,)]
    assert result.data["lineage"] == {"unit": "line", "first": 2, "skipped": [3, 4]}


def test_mostly_malformed_file_fails(process):
    # No width has a majority: 4 rows of 3 fields, 9 rows of 2, 4 or 5 fields.
    text = "a,b,c\n" + "1,2,3\n" * 3 + "1,2\n" * 3 + "1,2,3,4\n" * 3 + "1,2,3,4,5\n" * 3
    with pytest.raises(
        UnprocessableFile, match=r"9 of 12 records are malformed; first at line 5: expected 3 fields, found 2"
    ):
        process("r.csv", text)


def test_duplicate_rows(process):
    text = "a,b\n1,x\n2,y\n1,x\n3,z\n1,x\n"
    result = process("d.csv", text)
    assert result.data["quality_issues"]["duplicate_rows"] == {
        "count": 2,
        "first_duplicates": [{"line": 4}, {"line": 6}],
    }


def test_a_file_read_in_parallel_keeps_its_order_and_its_duplicates_exact(process):
    # Given a file of DuckDB's parallel CSV reading size (about 30 MB) whose second half
    # repeats its first, row for row, with an e-mail address (redacted) in every row
    half = duckdb.sql(
        "SELECT i AS id, 'user' || i || '@example.com' AS email, repeat('x', 40) AS note, "
        "i * 0.5 AS amount, i % 3 = 0 AS flag FROM range(200000) t(i)"
    ).fetchall()
    lines = "\n".join(f"{i},{e},{n},{a},{str(f).lower()}" for i, e, n, a, f in half)
    # When it is processed (int, string, float and bool conversions)
    result = process("twice.csv", f"id,email,note,amount,flag\n{lines}\n{lines}\n")
    # Then the Parquet holds the rows in the file's order (a float check written as
    # `ascii(v) IN (...)` made DuckDB reorder them), so every row of the second half is a
    # duplicate at its own line (pairing the Parquet's rows with a second read of the
    # source by position counted 37 duplicates here)
    assert result.data["schema"] == {
        "id": "int",
        "email": "string",
        "note": "string",
        "amount": "float",
        "flag": "bool",
    }
    ids = duckdb.sql(f"SELECT id FROM read_parquet('{result.parquet}')").fetchall()
    assert [i for (i,) in ids] == [*range(200000), *range(200000)]
    assert result.data["pii_redactions"]["email"] == {"email": 400000}
    duplicates = result.data["quality_issues"]["duplicate_rows"]
    assert duplicates["count"] == 200000
    assert duplicates["first_duplicates"][0] == {"line": 200002}


def test_lines_after_skipped_rows_are_still_right(process):
    text = "a,b\n1,x\nbad\n1,x\n"
    result = process("d.csv", text)
    assert result.data["quality_issues"]["duplicate_rows"]["first_duplicates"] == [{"line": 4}]


def test_statistics_per_type(process):
    text = "n,f,b,d,s\n1,1.5,true,2025-01-01,aa\n3,2.5,false,2025-01-03,bbbb\n,,true,,\n"
    stats = process("s.csv", text).data["statistics"]
    assert stats["n"] == {"null_count": 1, "distinct_count": 2, "min": 1, "max": 3, "avg": 2.0}
    assert stats["f"]["avg"] == 2.0
    assert stats["b"] == {"null_count": 0, "distinct_count": 2, "true_count": 2, "false_count": 1}
    assert stats["d"]["avg"] == "2025-01-02"
    assert stats["s"] == {"null_count": 1, "distinct_count": 2, "min_length": 2, "max_length": 4}


def test_a_timestamp_average_keeps_microseconds(process):
    # averaged as epoch milliseconds, the average of two equal values was below both
    text = "t\n2024-01-01T00:00:00.123456\n2024-01-01T00:00:00.123456\n1969-12-31T23:59:59.999998\n"
    stats = process("t.csv", text).data["statistics"]["t"]
    assert stats["max"] == "2024-01-01T00:00:00.123456"
    assert stats["avg"] == "2005-12-31T16:00:00.082303"
    stats = process("u.csv", "t\n" + "2024-01-01T00:00:00.123456\n" * 2).data["statistics"]["t"]
    assert stats["min"] == stats["avg"] == stats["max"] == "2024-01-01T00:00:00.123456"


def test_infinities_are_counted_not_averaged_and_the_summary_stays_strict_json(process):
    # JSON has no infinity: a summary with one was refused by DynamoDB, and the file never
    # left "processing"
    text = "x,response_time_ms,level\n1.5,inf,INFO\n2.5,3,INFO\n-Infinity,5,INFO\n"
    result = process("f.csv", text)
    assert result.data["statistics"]["x"] == {
        "null_count": 0,
        "distinct_count": 3,
        "min": 1.5,
        "max": 2.5,
        "avg": 2.0,
        "non_finite_count": 1,
    }
    assert result.data["log_stats"]["max_response_time_ms"] == 5.0
    assert result.data["log_stats"]["avg_response_time_ms"] == 4.0
    json.dumps(result.data, allow_nan=False)
    # the values themselves are kept
    assert result.rows("x") == [(1.5,), (2.5,), (float("-inf"),)]


def test_a_number_too_large_for_a_double_is_a_mismatch_not_infinity(process):
    # 1e309 overflows: Infinity is not what was written; the value is kept as text
    values = [f"{i}.5" for i in range(20)] + ["1e309", "-2E400", "1.5e3"]
    result = process("big.csv", "x\n" + "\n".join(values) + "\n")
    assert result.data["schema"] == {"x": "float"}
    mismatches = result.data["quality_issues"]["type_mismatches"]["x"]
    assert mismatches["count"] == 2
    assert [e["value"] for e in mismatches["examples"]] == ["1e309", "-2E400"]
    assert result.rows("x")[-3:] == [(None,), (None,), (1500.0,)]
    assert "non_finite_count" not in result.data["statistics"]["x"]


@pytest.mark.parametrize(
    ("odd", "kept"),
    [
        # DuckDB's cast read two signs as the second one: "+-5" (a tolerance, ±5) became -5
        (["+-5", "+-0.5", "  +-1e3 "], [(None,), (None,), (None,)]),
        # 1e-400 underflows: 0 is not what was written; a zero written so stays 0
        (["1e-400", "-2.5E-999", "0e-400"], [(None,), (None,), (0.0,)]),
    ],
)
def test_a_value_the_cast_would_change_is_a_mismatch_not_a_float(process, odd, kept):
    values = [f"{i}.5" for i in range(30)] + odd
    result = process("odd.csv", "x\n" + "\n".join(f'"{v}"' for v in values) + "\n")
    assert result.data["schema"] == {"x": "float"}
    mismatches = result.data["quality_issues"]["type_mismatches"]["x"]
    changed = [v for v, (k,) in zip(odd, kept, strict=True) if k is None]
    assert [e["value"] for e in mismatches["examples"]] == changed
    assert result.rows("x")[-len(odd) :] == kept
    # as a whole column too: text, every value as written
    assert process("odd2.csv", "x\n" + "\n".join(changed) + "\n").data["schema"] == {"x": "string"}


def test_a_decimal_with_more_digits_than_a_double_holds_is_kept_not_rounded(process):
    # Given money exported from a DECIMAL(20,2) column among doubles as pandas (shortest), C
    # (%.17g) and NumPy's savetxt (%.18e) write them, and other long spellings of doubles
    exact = ["0.30000000000000004", "0.10000000000000001", "1.000000000000000056e-01"]
    exact += [
        "  1.0000000000000002 ",
        "1.2345678901234568e-5",
        "-0.000000000000000000",
        "2.50000000000000000000",
    ]
    inexact = ["123456789012345678.12", "1234567.891234567891", "0.12345678901234567"]
    values = [f"{i}.25" for i in range(40)] + exact + inexact
    # When the file is processed
    result = process("money.csv", "amt\n" + "\n".join(f'"{v}"' for v in values) + "\n")
    # Then the digits a double would round away make the value a mismatch, kept as written
    assert result.data["schema"] == {"amt": "float"}
    mismatches = result.data["quality_issues"]["type_mismatches"]["amt"]
    assert [e["value"] for e in mismatches["examples"]] == inexact
    assert result.rows("amt")[-10:] == [(float(v),) for v in exact] + [(None,)] * 3
    # and a column of them is text, every digit kept
    column = process("m.csv", "amt\n0.1\n0.2\n" + "\n".join(inexact) + "\n")
    assert column.data["schema"] == {"amt": "string"}
    assert column.rows("amt") == [("0.1",), ("0.2",), *((v,) for v in inexact)]
    # as in a decimal-comma file, and a JSON string
    euro = process(
        "e.csv", "k;amt\n" + "".join(f"{k};{k},5\n" for k in range(12)) + "x;1234567,891234567891\n"
    )
    assert euro.data["quality_issues"]["type_mismatches"]["amt"]["count"] == 1
    js = process("m.ndjson", '{"amt": "0.1"}\n{"amt": "123456789012345678.12"}\n')
    assert js.rows("amt") == [("0.1",), ("123456789012345678.12",)]


def test_the_largest_finite_floats_give_finite_statistics(process):
    # their sum overflowed to an infinite average, and the largest double rounded up to
    # infinity at 15 digits: a valid file that DynamoDB refused until it reached the DLQ
    stats = process("big.csv", "x\n1.7e308\n1.7e308\n1\n").data["statistics"]["x"]
    assert stats["avg"] == 1.13333333333333e308
    top = process("top.csv", "x\n1.7976931348623157e308\n1\n").data
    assert top["statistics"]["x"]["max"] == 1.7976931348623157e308
    json.dumps(top, allow_nan=False)


def test_small_floats_keep_their_magnitude_in_the_statistics(process):
    stats = process("s.csv", "x\n1.7e-7\n9.9e-7\n").data["statistics"]["x"]
    assert (stats["min"], stats["max"], stats["avg"]) == (1.7e-07, 9.9e-07, 5.8e-07)
    # and large ones keep their digits (epoch milliseconds as floats)
    stats = process("t.csv", "t\n1735689600123.0\n1735689600124.5\n").data["statistics"]["t"]
    assert (stats["min"], stats["max"]) == (1735689600123.0, 1735689600124.5)


def test_float_min_and_max_are_values_of_the_column_every_digit_kept(process):
    # a double's shortest text has up to 17 digits: rounded to 15, the max of epoch
    # microseconds was 1733500000123460.0, a value no row holds, and two distinct values
    # had one min and max; only the average (computed) is rounded
    text = "t\n1733500000123456.5\n0.30000000000000004\n1.0000000000000002\n"
    stats = process("f.csv", text).data["statistics"]["t"]
    assert (stats["min"], stats["max"]) == (0.30000000000000004, 1733500000123456.5)
    assert stats["avg"] == 577833333374486.0  # 577833333374485.93, to 15 digits
    stats = process("g.csv", "t\n1.0000000000000002\n1.0000000000000004\n").data["statistics"]["t"]
    assert (stats["min"], stats["max"], stats["avg"]) == (1.0000000000000002, 1.0000000000000004, 1.0)


def test_distinct_counts_become_estimates_above_the_exact_limit(process):
    text = "n\n" + "\n".join(str(i) for i in range(200)) + "\n"
    stats = process("s.csv", text, exact_distinct_max_rows=100).data["statistics"]["n"]
    assert stats["distinct_count_approximate"] is True
    assert 180 <= stats["distinct_count"] <= 220


def test_header_only_file_completes_with_no_rows(process):
    result = process("h.csv", "a,b\n")
    assert result.data["row_count"] == 0
    assert result.data["schema"] == {"a": "string", "b": "string"}
    assert result.data["warnings"] == ["no data rows"]
    assert result.rows() == []


def test_single_column_file_may_contain_commas_in_a_text_file(process):
    result = process("one.csv", "name\nAnn\nBob\n")
    assert result.data["schema"] == {"name": "string"}
    assert result.data["row_count"] == 2


def test_null_tokens(process):
    result = process("n.csv", "a,b\nNA,1\nnull,2\n,3\nx,4\n")
    assert result.data["quality_issues"]["missing_values"]["a"]["count"] == 3


def test_excel_and_database_export_null_tokens_are_missing_values(process):
    # Excel's #N/A and the \N of MySQL/PostgreSQL exports, in a column that is int otherwise
    values = ["#N/A", "\\N", "#N/A", *(str(i) for i in range(17))]
    result = process("n.csv", "n\n" + "\n".join(values) + "\n")
    # as mismatches, 3 in 20 would be too many for int
    assert result.data["schema"] == {"n": "int"}
    assert result.data["quality_issues"]["missing_values"]["n"]["count"] == 3


def test_column_named_like_the_rescue_column_is_renamed(process):
    result = process("r.csv", "_rescued_data,b\nx,1\n")
    assert list(result.data["schema"]) == ["_rescued_data_source", "b"]


def test_blank_lines_are_skipped_and_later_lines_stay_right(process):
    # Given blank lines (which the reader skips) before a duplicate row
    result = process("b.csv", "a,b\n1,x\n\n2,y\n\n\n3,z\n1,x\n")
    # Then they are in the lineage, and the duplicate is located on its real line
    assert result.data["lineage"]["skipped"] == [3, 5, 6]
    assert result.data["quality_issues"]["duplicate_rows"]["first_duplicates"] == [{"line": 8}]


def test_an_empty_line_inside_a_quoted_value_is_data(process):
    result = process("q.csv", 'a,b\n1,"x\n\ny"\n2,z\n2,z\n')
    assert result.rows("b") == [("x\n\ny",), ("z",), ("z",)]
    assert result.data["lineage"]["skipped"] == []
    # a record spanning lines counts as one line (the reader's numbering)
    assert result.data["quality_issues"]["duplicate_rows"]["first_duplicates"] == [{"line": 4}]


def test_mixed_line_ends_are_read_as_lf(process):
    # files joined from different systems: DuckDB's reader stopped at the first change
    result = process("m.csv", "a,b\n1,x\n\r\n2,y\r\n3,z\n")
    assert result.rows("a, b") == [(1, "x"), (2, "y"), (3, "z")]
    assert result.data["lineage"]["skipped"] == [3]
    assert result.data["warnings"] == ["CRLF and LF line ends are mixed; all read as LF"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('id,note\r\n1,"line one\nline two"\r\n2,plain\r\n', "line one\nline two"),  # Excel on Windows
        ('id,note\n1,"pasted\r\nfrom windows"\n2,plain\n3,x\n', "pasted\r\nfrom windows"),
    ],
)
def test_a_line_break_inside_a_value_is_kept_as_written(process, text, value):
    result = process("cell.csv", text)
    assert result.rows("note")[0] == (value,)
    assert result.data["warnings"] == []


def test_the_encoding_warning_points_into_the_file_as_written(process):
    result = process("enc.csv", b"id,name\r\n1,a\r\n2,b\n3,Jos\xe9\r\n")
    assert result.rows("name")[-1] == ("José",)
    assert "first invalid byte at offset 23, line 4" in result.data["warnings"][0]


def test_a_stray_lone_cr_is_a_line_end(process):
    assert process("s.csv", "a,b\n1,x\r2,y\n3,z\n").rows("a") == [(1,), (2,), (3,)]


def test_a_file_the_strict_parser_cannot_read_is_refused_clearly(process, monkeypatch):
    from handlers.logic.processing import engine

    def refuse(con, query):
        raise duckdb.InvalidInputException(
            "Invalid Input Error: The CSV Parser state machine reached an invalid state."
        )

    monkeypatch.setattr(engine, "first_row", refuse)
    with pytest.raises(UnprocessableFile, match="cannot parse the file: Invalid Input Error: The CSV Parser"):
        process("m.csv", "a,b\n1,x\n")


def test_a_blank_line_in_a_single_column_file_is_a_missing_value_row(process):
    # DuckDB reads it as a row; lineage must not also list it as skipped
    result = process("one.csv", "name\nann\n\nbob\n1,2\n")
    assert result.rows("name") == [("ann",), (None,), ("bob",), ("1,2",)]
    assert result.data["lineage"]["skipped"] == []
    assert result.data["quality_issues"]["missing_values"]["name"]["count"] == 1


def test_a_header_that_stops_duckdbs_reader_is_refused_not_read_as_empty(process):
    with pytest.raises(UnprocessableFile, match=r"read no rows, though the first lines hold 2 records"):
        process("q.csv", '"Q1" sales,amount\nx,1\ny,2\n')


@pytest.mark.parametrize(
    ("text", "warned"),
    [
        (b"a,b\r\n1,x\r\n2,y\r\n", False),  # each CRLF split across two 4-byte reads
        (b"a,b\r1,x\r2,y\r", True),
    ],
)
def test_line_ends_split_across_reads(process, monkeypatch, text, warned):
    from handlers.logic.processing import textfile

    monkeypatch.setattr(textfile, "CHUNK", 4)
    result = process("c.csv", text)
    assert result.rows("a, b") == [(1, "x"), (2, "y")]
    assert bool(result.data["warnings"]) is warned


def test_a_long_quoted_text_in_the_first_record_is_read(process):
    # a description or an HTML body of 300 KB: Python's csv module, which the dialect sniffer
    # uses, refuses values over 128 KiB by default ("no CSV records found")
    body = "<p>" + "x" * 300_000 + "</p>"
    result = process("pages.csv", f'id,body,n\n1,"{body}",5\n2,short,6\n')
    assert result.data["schema"] == {"id": "int", "body": "string", "n": "int"}
    assert result.rows("id, length(body), n") == [(1, len(body), 5), (2, 5, 6)]


def _rows_with(line: int, text: str, rows: int = 200) -> str:
    lines = ["id,name,amount"] + [f"{i},n{i},{i}" for i in range(rows)]
    lines[line - 1] = text
    return "\n".join(lines) + "\n"


def test_a_quote_never_closed_early_fails_the_file_saying_which_lines_it_took(process):
    # every line after the quote became one value DuckDB refused: 190 rows lost, yet the
    # file completed with 10 rows and "1 malformed row"
    with pytest.raises(
        UnprocessableFile,
        match=r"190 of 200 records are malformed; first at line 12: a quoted value opened on this "
        r"line is never closed: it and the 189 lines after it could not be read",
    ):
        process("u.csv", _rows_with(12, '10,"unclosed,10'))


def test_a_quote_never_closed_near_the_end_counts_every_line_it_took(process):
    result = process("u.csv", _rows_with(196, '194,"unclosed,194'))
    assert result.data["row_count"] == 194
    malformed = result.data["quality_issues"]["malformed_rows"]
    assert malformed["count"] == 6
    assert malformed["rows"][0]["line"] == 196
    assert "it and the 5 lines after it could not be read" in malformed["rows"][0]["error"]


def _rows_with_quotes(opened: int, closed: int, closing: str) -> str:
    lines = _rows_with(opened, f'{opened - 2},"opened,{opened - 2}').split("\n")
    lines[closed - 1] = f"{closed - 2},n{closed - 2}{closing}"
    return "\n".join(lines)


def test_a_quote_closed_far_below_by_a_stray_one_counts_the_lines_between(process):
    # line 150's stray quote, followed by text, closed line 12's: DuckDB refused one record
    # of 139 lines, and the file completed with "1 malformed row"
    with pytest.raises(
        UnprocessableFile,
        match=r"139 of 200 records are malformed; first at line 12: a quoted value opened on this "
        r"line closes 138 lines below: it and those lines could not be read",
    ):
        process("s.csv", _rows_with_quotes(12, 150, '" stray,148'))
    # so when the fields after the stray quote do not add up, however many lines (DuckDB
    # shows a refused record's first 10,000 characters: they were all it counted)
    lines = ["id,name,amount"] + [f"{i},n{i},{i}" for i in range(5_000)]
    lines[11], lines[1_511] = '10,"opened,10', '1510,n1510",1510,extra'
    result = process("s.csv", "\n".join(lines) + "\n")
    assert result.data["row_count"] == 5_000 - 1_501
    assert result.data["quality_issues"]["malformed_rows"]["count"] == 1_501


def test_multi_line_values_with_a_defect_are_one_malformed_record_each(process):
    # a stray character after the closing quote of a 6-line value: one record, not 6 lines
    records = [
        f'{i},"note {i}\nline 2\nline 3\nline 4\nline 5\nline 6"{"x" if i % 5 == 0 else ""}'
        for i in range(200)
    ]
    result = process("notes.csv", "id,note\n" + "\n".join(records) + "\n")
    assert result.data["row_count"] == 160
    malformed = result.data["quality_issues"]["malformed_rows"]
    assert malformed["count"] == 40
    assert malformed["rows"][0]["error"] == "a quoted value is not closed properly"


def test_a_quote_closed_far_below_before_a_delimiter_is_named_in_a_warning(process):
    # closed cleanly by a stray quote, the lines between are read, silently, as one value
    result = process("s.csv", _rows_with_quotes(12, 150, '",148'))
    assert result.data["row_count"] == 62
    assert (
        "the quoted value in column 'name' of line 12 spans 139 lines: if a quote there is missing "
        "or stray, those lines are records read as one value"
    ) in result.data["warnings"]
    # values that span a few lines each, however many, are no such warning
    result = process("m.csv", "id,text\n" + "".join(f'{i},"a\nb\nc"\n' for i in range(300)))
    assert result.data["row_count"] == 300 and result.data["warnings"] == []


@pytest.mark.parametrize(
    "text",
    [
        # an odd number of quotes on one line: DuckDB reads on at the next line
        'id,note\n1,"the 5" pipe"\n' + "".join(f"{i},ok\n" for i in range(2, 12)),
        # quoted values over several lines before a quote left open on the last line
        "id,note\n" + "".join(f'{i},"first\nsecond"\n' for i in range(10)) + '10,"never closed\n',
    ],
)
def test_one_broken_quote_that_reads_on_or_ends_the_file_is_one_malformed_line(process, text):
    result = process("q.csv", text)
    assert (result.data["row_count"], result.data["quality_issues"]["malformed_rows"]["count"]) == (10, 1)


def test_hex_binary_underscored_and_exponent_spellings_are_no_integers(process):
    # TRY_CAST read 0x1F as 31, 0b101 as 5, 1_000 as 1000 and 2E5 as 200000: values changed
    # silently, with no mismatch and nothing rescued
    result = process("codes.csv", "id,code\n1,0x1F\n2,0b101\n3,1_000\n4,2E5\n5,12\n")
    assert result.data["schema"] == {"id": "int", "code": "string"}
    assert [c for (c,) in result.rows("code")] == ["0x1F", "0b101", "1_000", "2E5", "12"]
    # among integers, such a value is a mismatch kept as written
    ints = [str(i) for i in range(30)] + ["0xFF"]
    result = process("n.csv", "n\n" + "\n".join(ints) + "\n")
    assert result.data["schema"] == {"n": "int"}
    assert result.data["quality_issues"]["type_mismatches"]["n"]["examples"] == [
        {"line": 32, "value": "0xFF"}
    ]
    # an exponent makes a float, an underscore nothing
    result = process("f.csv", "x,y\n1.5,1_000.5\n2E5,2.5\n")
    assert result.data["schema"] == {"x": "float", "y": "string"}


def test_a_pivot_header_of_years_or_dates_is_a_header(process):
    # "region,2022,2023,2024" was read as a data row: its years summed with the figures
    result = process("pivot.csv", "region,2022,2023,2024\nnorth,10,20,30\nsouth,5,6,7\n")
    assert result.data["schema"] == {"region": "string", "2022": "int", "2023": "int", "2024": "int"}
    assert result.rows('"2022"') == [(10,), (5,)]
    result = process("months.csv", "sku,2024-01,2024-02\nA1,5,7\nB2,1,2\n")
    assert list(result.data["schema"]) == ["sku", "2024-01", "2024-02"]
    # data whose first column is text and the rest years stays data
    result = process("years.csv", "north,2022,2023\nsouth,2021,2020\n")
    assert list(result.data["schema"]) == ["column_1", "column_2", "column_3"]
    # one number from 1900 to 2099, or numbers out of order, in a first row are data
    for text in (
        "alice,2000\nbob,1500\ncarol,300\n",
        "widget,2019,blue\ngadget,350,red\n",
        "a,2019,2024,2020\nb,5,6,7\n",
    ):
        assert next(iter(process("data.csv", text).data["schema"])) == "column_1", text


def test_dates_that_read_either_way_are_read_month_first_and_said_so(process):
    result = process("amb.csv", "d,n\n01/03/2024,1\n02/03/2024,2\n12/03/2024,3\n")
    assert result.rows("d")[0] == (dt.date(2024, 1, 3),)
    assert result.data["warnings"] == [
        "column 'd': dates read month first (%m/%d/%Y, as in US files); every sampled value "
        "reads day first too (%d/%m/%Y): no day over 12 tells them apart"
    ]
    # one day over 12 settles it: no warning
    assert process("us.csv", "d,n\n01/13/2024,1\n02/03/2024,2\n").data["warnings"] == []


def test_renamed_columns_are_named_in_the_warnings(process):
    # the Parquet, the warehouse and queries know them by their new names only
    result = process("dup.csv", "id,val,Val,,val,_rescued_data\n1,2,3,4,5,6\n")
    assert list(result.data["schema"]) == ["id", "val", "Val_2", "column_4", "val_3", "_rescued_data_source"]
    assert result.data["warnings"] == [
        "columns renamed (a name repeated, case aside, blank or reserved): 'Val' (column 3) -> 'Val_2', "
        "'' (column 4) -> 'column_4', 'val' (column 5) -> 'val_3', '_rescued_data' (column 6) -> "
        "'_rescued_data_source'"
    ]
    assert process("ok.csv", "id,val\n1,2\n").data["warnings"] == []


def test_a_made_up_name_never_takes_one_the_file_has(process):
    # Val became val_2 and the file's own val_2 val_2_2: another file's val_2 then met this
    # file's Val in one column of the dataset; the same for a blank header and column_1
    result = process("own.csv", ",val,Val,val_2,column_1\n1,2,3,4,5\n")
    assert list(result.data["schema"]) == ["column_1_2", "val", "Val_3", "val_2", "column_1"]
    assert result.rows("val_2, column_1") == [(4, 5)]
    assert result.data["warnings"] == [
        "columns renamed (a name repeated, case aside, blank or reserved): '' (column 1) -> 'column_1_2', "
        "'Val' (column 3) -> 'Val_3'"
    ]


def test_column_names_are_in_composed_form_so_they_match_across_files(process):
    # Given a name written decomposed (an "e" and a combining accent, as macOS writes it)
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    result = process("mac.csv", f"{decomposed},n\n1,2\n")
    # Then the column is named as other files name it, without a warning (the same name)
    assert list(result.data["schema"]) == [composed, "n"]
    assert result.data["warnings"] == []
    # and in one file, the two spellings are one name repeated
    both = process("both.csv", f"{composed},{decomposed}\n1,2\n")
    assert list(both.data["schema"]) == [composed, f"{composed}_2"]
