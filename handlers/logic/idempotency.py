"""The processor's idempotency key: which work counts as "the same" (one object version).

The processor decorates ``handlers.processor.process`` with Powertools'
``idempotent_function`` and these settings; ``headrace replay --force`` derives the same
record id to forget a completed version. Both read this module, so they cannot drift
(``tests/integration/test_replay.py`` checks the id against a record the real handler wrote).

Record id, as Powertools builds it: ``<function name>.<module>.<qualname>#<md5 of the JSON of
the JMESPath result>``, where the function name is ``AWS_LAMBDA_FUNCTION_NAME`` (the deployed
processor's name).
"""

from __future__ import annotations

import hashlib
import json

from handlers.models.events import ObjectRef

# What identifies the work: bucket + key + version id (+ ETag for unversioned buckets).
# Not the SQS message id, so duplicates from S3, EventBridge retries and replays are caught.
PROCESSOR_KEY_JMESPATH = "[bucket, key, version_id, etag]"
# The decorated function (module.qualname), part of every record id.
PROCESSOR_FUNCTION = "handlers.processor.process"


def processor_idempotency_key(function_name: str, ref: ObjectRef) -> str:
    """The id of the idempotency record the deployed processor ``function_name`` keeps for ``ref``."""
    selected = [ref.bucket, ref.key, ref.version_id, ref.etag]  # PROCESSOR_KEY_JMESPATH
    digest = hashlib.md5(json.dumps(selected, sort_keys=True).encode(), usedforsecurity=False).hexdigest()
    return f"{function_name}.{PROCESSOR_FUNCTION}#{digest}"
