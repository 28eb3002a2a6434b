"""Options of the processing core (the same for the Lambda and ``headrace inspect``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .pii import PiiOptions

# pandas' default missing-value tokens (Excel's #N/A among them: what users expect a
# reader to treat as missing), plus "Null" and the \N of MySQL and PostgreSQL text exports.
DEFAULT_NULL_TOKENS: tuple[str, ...] = (
    *("", "NA", "N/A", "n/a", "null", "NULL", "Null", "None", "nan", "NaN", "-NaN", "-nan"),
    *("#N/A", "#N/A N/A", "#NA", "<NA>", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN", "\\N"),
)


class ProcessingOptions(BaseModel):
    model_config = ConfigDict(frozen=True)

    null_tokens: tuple[str, ...] = Field(
        DEFAULT_NULL_TOKENS, description="cell values read as missing (after trimming nothing)"
    )
    type_threshold: float = Field(
        0.9,
        gt=0.5,
        le=1.0,
        description="share of non-null values that must fit a type for a column to get it; "
        "the rest are reported as type mismatches and kept in _rescued_data",
    )
    sample_rows: int = Field(20_000, ge=100, description="rows read to choose each column's type")
    fallback_encoding: str = Field(
        "cp1252", description="encoding used when a file is not valid UTF-8 and has no BOM"
    )
    max_examples: int = Field(5, ge=1, le=100, description="examples kept per quality issue")
    max_malformed_ratio: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a file with a larger share of malformed rows fails instead of completing",
    )
    exact_distinct_max_rows: int = Field(
        100_000, description="above this many rows, distinct counts are HyperLogLog estimates"
    )
    memory_limit: str | None = Field(
        None, description="DuckDB memory limit, e.g. '512MB'; beyond it DuckDB spills to temp_dir"
    )
    threads: int | None = Field(None, ge=1, description="DuckDB threads (default: all cores)")
    temp_dir: Path | None = Field(None, description="scratch space (default: the system temp dir)")
    compression: str = Field("zstd", pattern="^(zstd|snappy|gzip|uncompressed)$")
    pii: PiiOptions = PiiOptions()
