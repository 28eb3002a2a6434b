"""The newcomer's documentation matches the files it describes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_of_the_compose_file_is_documented_in_the_localstack_guide():
    # Given the variables docker-compose.yml takes from the environment (${NAME:-default})
    variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    assert "HEADRACE_DOCKER_SUBNET" in variables
    # When the LocalStack guide is read
    guide = (ROOT / "docs" / "localstack.md").read_text()
    # Then it names each of them: changing one without another (a subnet without its IP
    # range) gives a network Docker refuses
    assert sorted(v for v in variables if not re.search(rf"\b{v}\b", guide)) == []


def test_the_readme_names_the_levels_log_stats_count_and_a_records_line_limits():
    from handlers.logic.processing import engine, logs

    readme = " ".join((ROOT / "README.md").read_text().split())
    counted = re.search(r"`error_count`: (.*?); `warn_count`: (.*?); `info_count`: (.*?);", readme)
    assert counted is not None
    errors, warns, infos = (set(re.findall(r"`(\w+)`", group)) for group in counted.groups())
    assert (errors, warns, infos) == (set(engine._ERROR_LEVELS), set(engine._WARN_LEVELS), {"INFO"})
    limit = f"at most {logs.MAX_ENTRY_LINES:,} lines and {logs.MAX_ENTRY_CHARS // 1024} KiB"
    assert limit in readme
