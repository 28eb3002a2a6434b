"""Dataset names (the first folder under the raw prefix, as a Glue/Athena and PostgreSQL name),
processed keys, and which raw keys the processor takes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from handlers.logic.layout import dataset_for, has_raw_suffix, hidden_part, processed_keys


@pytest.mark.parametrize(
    ("key", "dataset"),
    [
        ("incoming/sales/2025-01.csv", "sales"),
        ("incoming/Sales Report/x.csv", "sales_report"),
        ("incoming/sales.csv.gz", "sales"),
        ("incoming/app.log.1", "app"),  # a rotated log belongs with the log
        ("incoming/app.log.2026-12-06.gz", "app"),
        ("incoming/app.log-20261206", "app"),
        ("incoming/app.log.2026.12.06", "app"),
        ("incoming/v1.2.3", "v1_2"),  # numbers after anything but .log/.txt stay
        ("incoming/release-1.2.3", "release_1_2"),  # a version is no rotation
        ("incoming/2025/x.csv", "d_2025"),
        ("incoming/Über Sales/x.csv", "uber_sales"),  # accents dropped, not the letter
        ("incoming/café/x.csv", "cafe"),
    ],
)
def test_folder_names_become_dataset_names(key, dataset):
    assert dataset_for(key, "incoming/") == dataset


def test_folders_without_an_ascii_form_stay_apart():
    # they used to become "data" (or lose their non-ASCII part) and merge into one dataset
    names = {
        dataset_for(f"incoming/{folder}/x.csv", "incoming/") for folder in ("東京", "大阪", "🚀", "___", "-")
    }
    assert len(names) == 5
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", name) for name in names)
    assert re.fullmatch(r"sales_[0-9a-f]{8}", dataset_for("incoming/東京sales/x.csv", "incoming/"))
    assert dataset_for("incoming/東京/x.csv", "incoming/") == dataset_for("incoming/東京/y.csv", "incoming/")


def test_one_folder_is_one_dataset_however_its_name_is_encoded_or_cased():
    nfc, nfd = "incoming/\u00c5lesund_\u00f8/x.csv", "incoming/A\u030alesund_\u00f8/x.csv"
    assert dataset_for(nfc, "incoming/") == dataset_for(nfd, "incoming/")
    assert dataset_for("incoming/東京A/x.csv", "incoming/") == dataset_for(
        "incoming/東京a/x.csv", "incoming/"
    )


def test_a_very_long_folder_name_keeps_processed_keys_within_s3s_limit():
    key = f"incoming/{'f' * 1005}/a.csv"  # a valid 1,019-byte raw key
    keys = processed_keys(key, "v1", "incoming/", datetime(2025, 1, 1, tzinfo=UTC))
    assert len(keys.dataset) == 100 and len(keys.parquet.encode()) <= 1024
    assert keys.dataset != dataset_for(f"incoming/{'f' * 1006}/a.csv", "incoming/")


@pytest.mark.parametrize(
    "key",
    [
        "incoming/EXPORT.CSV",
        "incoming/sales/Report.Csv",
        "incoming/data.CSV.GZ",
        "incoming/APP.LOG.1",
        "incoming/x.JSON",
    ],
)
def test_a_raw_suffix_matches_in_any_case(key):
    # an upper-case extension (Windows and mainframe exports) is read as the lower-case one:
    # skipped, the file would be acknowledged with nothing recorded, as if never uploaded
    assert has_raw_suffix(key, (".csv", ".csv.gz", ".log.*", ".json"))


@pytest.mark.parametrize(
    ("key", "hidden"),
    [
        ("incoming/sales/._2026-01.csv", "._2026-01.csv"),  # macOS resource fork: binary
        ("incoming/__MACOSX/sales/2026-01.csv", "__MACOSX"),
        ("incoming/.staging/x.csv", ".staging"),
        ("incoming/sales/.x.csv.swp", ".x.csv.swp"),
        ("incoming/sales/2026-01.csv", None),
        ("incoming/./sales/x.csv", None),  # "." and ".." are folder names (docs/contracts.md)
        ("incoming/../x.csv", None),
        ("incoming/sales/x..csv", None),
        ("incoming/_sales/x.csv", None),
    ],
)
def test_hidden_files_are_the_ones_spark_and_athena_skip(key, hidden):
    assert hidden_part(key) == hidden


def test_a_raw_prefix_in_a_dot_folder_hides_nothing_below_it():
    # A stack whose raw_prefix is "landing/.raw/" (accepted by the config) had every key
    # skipped as hidden: all its files counted as FilesIgnored, none processed
    assert hidden_part("landing/.raw/sales/2026-01.csv", "landing/.raw/") is None
    assert hidden_part("landing/.raw/sales/._2026-01.csv", "landing/.raw/") == "._2026-01.csv"
    assert hidden_part(".raw/__MACOSX/x.csv", ".raw/") == "__MACOSX"


def test_a_raw_suffix_still_needs_the_whole_suffix():
    suffixes = (".csv", ".log.*")
    assert not has_raw_suffix("incoming/readme.md", suffixes)
    assert not has_raw_suffix("incoming/data.csvx", suffixes)
    assert not has_raw_suffix("incoming/x.LOG.d/readme.md", suffixes)  # '*' stays within one name
    assert not has_raw_suffix("incoming/2026/", suffixes)  # a folder marker


def test_different_raw_keys_never_share_processed_keys():
    # keys a URL decoder, a case folder or a Unicode normaliser would confuse are different
    # objects in S3: each keeps its own outputs (and metadata item, keyed by the raw key)
    keys = [
        "incoming/k/a b.csv",
        "incoming/k/a+b.csv",
        "incoming/k/a%20b.csv",
        "incoming/k/a_b.csv",
        "incoming/k/x.csv",
        "incoming/k/X.csv",
        "incoming/k/caf\u00e9.csv",
        "incoming/k/cafe\u0301.csv",
        "incoming/k//x.csv",
        "incoming/k/./x.csv",
    ]
    at = datetime(2025, 1, 1, tzinfo=UTC)
    outputs = [processed_keys(key, "v1", "incoming/", at) for key in keys]
    assert len({o.parquet for o in outputs}) == len({o.summary for o in outputs}) == len(keys)
