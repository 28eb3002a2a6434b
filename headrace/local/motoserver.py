"""The embedded runtime's AWS emulator: moto's server, with twenty-seven documented adjustments.

Run as ``python -m headrace.local.motoserver --host 127.0.0.1 --port 4566``.

1. Clock. moto's SQS asks for "now" through datetime arithmetic (about 6 µs) for every
   message on every receive, which makes a receive on a queue of 800 messages take 25 ms
   instead of 2 ms. ``time.time()`` returns the same epoch seconds; only the cost changes.
2. Event source mappings. moto delivers SQS messages to Lambda functions itself, inline on
   every send, which needs Docker. On AWS the Lambda service's own pollers read the queue;
   here the runtime's executor does (``headrace.local.executor``). So the queue-side hook
   is detached: mappings are still created, stored and listed through the Lambda API.
3. Scheduled rules. moto treats a rule without an event pattern as matching every event,
   so a schedule rule on the default bus "receives" each S3 event and tries to invoke its
   Lambda target; the error aborts delivery to the rules after it. On AWS a schedule rule
   never receives events: it only fires on its schedule (the executor fires it).
4. Routing. To route each request moto lists its own package directory and checks every
   entry on disk (about 12 % of the server's time under load). The list does not change
   while the server runs, so it is computed once.
5. Authorization. moto's IAM checks, switched on by the runtime after the deploy step, are
   made to match AWS where the program relies on it (``headrace.local.iam``).
6. Queue attributes. Reading any one queue attribute (the retention period for every
   message received, content-based deduplication for every message sent) computed all of
   them, counting every message of the queue three times: each send and receive cost grew
   with the backlog (a quarter of the server's time while the ingest worker drained 3,000
   records). ``Queue.attributes`` now computes a value when it is read; the values are
   the same.
7. SQS message operations are atomic per queue. The server answers requests on several
   threads, and moto's delete rebuilds a queue's message list without a lock: two deletes
   at once overwrite each other's list, so deleted messages came back and were delivered
   again, and a message sent in between was dropped (1 to 8 of 3,000 ingest records under
   load). Sending, receiving, deleting, changing visibility and purging now hold the
   queue's lock (the re-entrant condition sending already takes; long polling releases it
   while it waits). A receive that moves a message to the DLQ takes the DLQ's lock inside
   the source queue's, so two queues that are each other's DLQ could deadlock; the
   program's DLQs have no redrive policy of their own. Attribute reads (message counts)
   stay unlocked: they are approximate on AWS too.
8. DynamoDB Query on a table's key reads that key's items. moto sorted every item of the
   table for each query and kept those with the key, so the processor's one query per file
   (the key's earlier versions) grew with the table: 18 % of the server's time during a
   400-file burst. Index queries still scan, as moto does.
9. DynamoDB update expressions are parsed once per distinct expression, and validated in
   linear time. moto parsed each one twice per UpdateItem, deep-copied the tree before
   validating it, rebuilt each validation step's table of node types at every node, and
   checked clause counts and overlapping paths at every level of the (nested) tree, which
   is quadratic in the number of actions: 14 ms for one 28-attribute SET, the processor's
   "completed" update, against 6 ms now. The parsed tree is shared read-only and each
   validation gets a fresh parse of its own; the node types are kept per step; and the
   two checks that depend only on the expression and its attribute names are skipped for
   an expression and names that already passed them (a failure is never remembered, so
   every invalid request is refused as moto refuses it).
10. EventBridge input paths are compiled once. moto compiled the eight JSONPath
   expressions of the default target input for every event and every rule (a PLY parser
   each time: 6 % of the server's time during a burst).
11. Deleting an SQS message looks at each message of the queue once. moto went over the
   queue twice, building every message's list of receipt handles each time (0.6 ms per
   delete with 3,000 messages queued, against 0.05 ms): a quarter of the server's time
   while the ingest worker drained a backlog.
12. A service's action names are listed once. To find a request's handler method moto
   listed the handler class's functions with ``inspect.getmembers`` on every request
   (5 % of the server's time under the ingest load); a class's functions do not change.
13. DynamoDB requests are atomic. moto applies an UpdateItem's actions to the stored item
   one by one, in place, while other threads answer reads: a GetItem could see the
   processor's "completed" update half applied (status completed, no parquet_key yet;
   an e2e test caught it). On AWS an item write is atomic. The server now handles one
   DynamoDB request at a time (the emulator is bound by one interpreter lock anyway).
14. A DynamoDB projection converts only the attributes it names. For each path of a
   ProjectionExpression moto converted the whole item to plain JSON (a deep copy): six
   paths over a metadata item with its statistics cost six whole-item conversions per
   item returned (5 % of the server's time during a burst, for the processor's query of a
   key's versions).

15. DynamoDB condition expressions are parsed once per expression, names and values.
   moto's condition parser lexes the text character by character on every request: 12 %
   of the server's time under the ingest load, whose worker writes every record with the
   same condition. The parsed tree is read-only once built (evaluating it changes
   nothing), so it is shared, together with the names and values the parse found (moto
   checks afterwards that every name and value given was used). A failed parse is never
   remembered.
16. S3's EventBridge events spell the object's ETag ``etag``, as AWS does; moto writes
   ``eTag``, which the Powertools event model ignores, so every local event had an empty
   ETag: part of the processor's idempotency key, which ``headrace replay`` derives from
   the object's real ETag, so a replayed completed version was processed again.
17. An empty upload is answered. boto3 and the AWS CLI send ``Expect: 100-continue`` with
   every PUT, an empty file's with ``Content-Length: 0``; waitress (the HTTP server) answered
   "100 Continue", then waited for a body that never comes, so uploading an empty file hung
   until the client timed out. A request without a body expects nothing to continue.
18. Listing a function's event source mappings. moto compared ``--function-name`` with the
   string each mapping was created with (the deploy step gives the function's ARN), so
   ``aws lambda list-event-source-mappings --function-name <name>`` (the runbook's command)
   answered nothing. On AWS a function name, a partial ARN (``<account>:function:<name>``)
   or a full ARN selects that function's mappings; a version or alias qualifier (in the ARN,
   or ``<name>:<qualifier>``) selects the mappings of that version or alias, and
   ``$LATEST`` is the unqualified function.
19. Invoking a function through the Lambda API (``aws lambda invoke``, boto3's ``invoke``)
   runs it in the runtime's executor, as the runtime runs it for its triggers: its sandbox,
   its execution role. moto would run the function in Docker, and without it answered 200
   with ``FunctionError: Handled`` and "error running docker" as the function's result: the
   function never ran. moto still checks the request (IAM, the function and qualifier
   exist: the qualifier of the query string's ``Qualifier``, as the SDKs send it, where
   moto looked for ``qualifier`` there or in the payload); then the event goes to the executor's ``InvokeBridge``, whose address and token
   the runtime writes to the file named by ``--invocations-file``. ``Event`` answers 202 and
   runs after, ``DryRun`` 204; a function that raised answers 200 with
   ``FunctionError: Unhandled`` and ``{"errorMessage", "errorType", "requestId",
   "stackTrace"}``, as Lambda does. A
   payload over Lambda's limit is refused (413) before anything runs: 6 MB, or 1 MB for
   ``Event``.
   Without an executor (before the runtime has deployed) Invoke is refused with 501.
20. S3's EventBridge events carry a sequencer that rises with every write, as AWS's do (the
   documented order of the writes of one key: the processor orders versions uploaded within
   one second by it); moto gave every event the same constant one.
21. One S3 write, one event. moto completes a multipart upload by storing the object as a
   PutObject would (sending its "Object Created"), then tags it (an "Object Tags Added"),
   then sends the "Object Created" of the completion: one upload of a file above the AWS
   CLI's and boto3's 8 MB multipart threshold reached the processing queue twice (a wasted
   invocation, and a "retry" line in the console while the idempotency record was in
   progress). A PutObject, and a CopyObject that replaces the tags, also sent an "Object Tags
   Added". On AWS each write sends exactly its own event: PutObject one "Object Created",
   CopyObject one, CompleteMultipartUpload one; a tag event only comes from
   PutObjectTagging and DeleteObjectTagging.
22. S3's EventBridge events name the API that wrote or deleted the object in ``reason``, as
   AWS does: ``PutObject``, ``POST Object``, ``CopyObject``, ``CompleteMultipartUpload``,
   ``DeleteObject``. moto wrote the event type's family (``ObjectCreated``,
   ``ObjectRemoved``) instead, so a rule or a handler telling a multipart upload from a put
   or a copy never matched locally.
23. A disabled EventBridge rule delivers nothing, as on AWS. moto sent every event to every
   rule whatever its state, so disabling the raw bucket's rule (to pause processing, or as
   the runbook's "an upload while the rule was disabled") paused nothing locally.
24. A copy of an object uploaded in parts has a checksum of its own bytes. moto gave the
   copy (one part: CopyObject) the source's composite checksum, a checksum of the parts'
   checksums, as if it were the whole object's, so every SDK that checks what it downloads
   (boto3 and the AWS CLI do by default) refused to read the copy: a file above the 8 MB
   multipart threshold, copied onto itself to change its metadata or copied in from
   another key, failed in the processor on every attempt and ended in the DLQ. On AWS a
   GET of the copy is checked against a checksum of its own bytes, with the source's
   algorithm.
25. A function configuration setting a variable Lambda reserves (``AWS_REGION``,
   ``_HANDLER``... ``executor.RESERVED_VARIABLES``) is refused, by CreateFunction and
   UpdateFunctionConfiguration, with AWS's InvalidParameterValueException naming the keys.
   moto stored it, so a program that fails to deploy on AWS deployed locally (and the
   sandbox's value silently won over the function's).

26. DynamoDB items read are not kept. moto appends every ``Item`` object it creates to a
   class-wide list, for its debugging dump (``/moto-api/data.json``), and never removes one:
   not only the stored items but the copies every Query, Scan and GetItem makes of each item
   it reads. The daily report and ``headrace status`` query the day's metadata items, so
   every such query left a copy of each item alive (some 15 KB an item, for as long as the
   emulator runs). Items are no longer listed there (done by adjustment 27 since, for
   every model).
27. Nothing else is kept in those lists either. Every model of every service has one (moto's
   ``BaseModel``), and some models are made per message or per write: the SQS message of
   each send and the copy of it each receive makes, which the queue lets go once the
   message is deleted, and each S3 object version, which stayed alive once overwritten in
   an unversioned bucket or deleted (its bytes, and the open temporary file of one over
   5 MB). 300 files and 100 ingest records left some 1,500 messages alive, for as long as
   the emulator ran. No model instance is listed any more: the services keep what they
   store, and moto's debugging dump (``/moto-api/data.json``) lists nothing.

Adjustments 1, 4, 6, 8-12, 14 and 15 change only what a request costs, never its answer;
the unit tests compare 6, 8-11, 14 and 15 with moto's own results (1 returns the same epoch
seconds; 4 and 12 cache listings that cannot change while the server runs).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from moto.core.utils import camelcase_to_underscores

from .executor import LAMBDA_MAX_ASYNC_REQUEST_BYTES, LAMBDA_MAX_REQUEST_BYTES, RESERVED_VARIABLES
from .iam import patch_authorization


class _DetachedMappings(dict):
    """A queue's event-source-mapping registry that never triggers moto's inline invoke."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _LazyQueueAttributes(Mapping[str, Any]):
    """moto's ``Queue.attributes`` (same keys, same values), each value computed when read."""

    def __init__(self, queue: Any):
        self._queue = queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        self._names = tuple(names)

    def __contains__(self, name: object) -> bool:  # without computing the value
        return name in self._names

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        if name == "RedrivePolicy" and self._queue.redrive_policy:
            return json.dumps(self._queue.redrive_policy)
        value = getattr(self._queue, camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


# SQSBackend methods (first argument: the queue name) that read or change a queue's messages.
QUEUE_MESSAGE_OPERATIONS = (
    "send_message",
    "send_message_batch",
    "receive_message",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
)


def _holding_queue_lock(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def locked(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        # a re-entrant Condition: sending acquires it again, long polling waits on it
        with self.get_queue(queue_name)._messages_lock:
            return operation(self, queue_name, *args, **kwargs)

    return locked


def _delete_message(self: Any, receipt_handle: str) -> None:
    """moto's ``Queue.delete_message`` in one pass (adjustment 11)."""
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in self.deleted_messages:
        return  # already deleted: deleting again is not an error
    deleted = None
    kept = []
    for message in self._messages:
        if deleted is None and (
            message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles
        ):
            deleted = message
        else:
            kept.append(message)
    if deleted is None:
        raise ReceiptHandleIsInvalid()
    self.pending_messages.discard(deleted)
    self.deleted_messages.update(deleted.all_receipt_handles)
    self._messages = kept


def patch_sqs() -> None:
    """Adjustments 1, 6, 7 and 11."""
    import moto.sqs.models as sqs_models
    from moto.core import utils

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else utils.unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else utils.unix_time_millis(dt)

    sqs_models.unix_time = unix_time  # type: ignore[assignment]
    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[assignment]
    sqs_models.Queue.attributes = property(_LazyQueueAttributes)  # type: ignore[assignment,method-assign]
    sqs_models.Queue.delete_message = _delete_message  # type: ignore[method-assign]
    for name in QUEUE_MESSAGE_OPERATIONS:
        setattr(sqs_models.SQSBackend, name, _holding_queue_lock(getattr(sqs_models.SQSBackend, name)))


_query_scope = threading.local()


def patch_dynamodb() -> None:
    """Adjustments 8, 9, 13, 14, 15 and 26."""
    import copy

    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.models.dynamo_type import Item, deserializer, find_nested_key, merge_dicts, serializer
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.ast_nodes import (  # type: ignore[attr-defined]
        DepthFirstTraverser,
        UpdateExpression,
    )
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]

    original_query = Table.query
    original_all_items = Table.all_items
    query_signature = inspect.signature(original_query)

    @functools.wraps(original_query)
    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = query_signature.bind(self, *args, **kwargs).arguments
        if bound.get("index_name") or bound.get("hash_key") is None:
            return original_query(self, *args, **kwargs)
        outer = getattr(_query_scope, "partition", None)
        _query_scope.partition = (self, bound["hash_key"])
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _query_scope.partition = outer

    @functools.wraps(original_all_items)
    def all_items(self: Any) -> Any:
        scope: tuple[Any, Any] | None = getattr(_query_scope, "partition", None)
        if scope is None or scope[0] is not self:
            return original_all_items(self)
        partition = self.items.get(scope[1])  # never self.items[...]: a defaultdict
        if partition is None:
            return []
        if not self.range_key_attr:
            return [partition]
        return list(partition.values())  # moto sorts the results by range key itself

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]

    parse = UpdateExpressionParser.make

    @functools.lru_cache(maxsize=1024)
    def parse_once(expression: str) -> Any:
        tree = parse(expression)
        tree.source_expression = expression
        return tree

    def fresh_copy(node: Any, memo: Any = None) -> Any:
        if isinstance(node, UpdateExpression) and hasattr(node, "source_expression"):
            return parse(node.source_expression)
        return copy.deepcopy(node, memo)

    UpdateExpressionParser.make = staticmethod(parse_once)  # type: ignore[method-assign,assignment]
    validators.deepcopy = fresh_copy  # type: ignore[assignment]

    node_types: dict[type, tuple[type, ...]] = {}

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        step = type(self)
        if step not in node_types:  # every step's map has constant keys
            node_types[step] = tuple(self._processing_map())
        return node_types[step]

    DepthFirstTraverser.nodes_to_be_processed = nodes_to_be_processed  # type: ignore[method-assign]

    shape_checks = (validators.ActionCountValidator, validators.OverlappingPathsValidator)
    passed: dict[tuple[str, tuple[tuple[str, str], ...]], None] = {}  # insertion-ordered, bounded
    passed_lock = threading.Lock()
    validator_init = validators.UpdateExpressionValidator.__init__
    validate = validators.UpdateExpressionValidator.validate

    def init(self: Any, expression: Any, expression_attribute_names: Any, *args: Any, **kwargs: Any) -> None:
        validator_init(self, expression, expression_attribute_names, *args, **kwargs)
        source = getattr(expression, "source_expression", None)
        self.shape = (
            None if source is None else (source, tuple(sorted((expression_attribute_names or {}).items())))
        )
        if self.shape in passed:
            self.processors = [p for p in self.processors if not isinstance(p, shape_checks)]

    def validate_once(self: Any) -> Any:
        node = validate(self)
        if self.shape is not None:
            with passed_lock:  # the server's threads validate at once
                passed[self.shape] = None
                if len(passed) > 4096:
                    del passed[next(iter(passed))]
        return node

    validators.UpdateExpressionValidator.__init__ = init  # type: ignore[method-assign]
    validators.UpdateExpressionValidator.validate = validate_once  # type: ignore[method-assign]

    def project(self: Any, projection_expressions: list[list[str]]) -> Any:
        result: dict[str, Any] = {}
        for path in projection_expressions:
            # moto's find_nested_key reads one top-level attribute: the path's first name,
            # or, for "name[i]", the name before the index. Converted as Item.to_regular_json
            # converts each attribute, afresh for each path (merge_dicts may change them).
            first = re.match(r"(.+)\[(\d+)\]$", path[0])
            names = {path[0], first.group(1)} if first else {path[0]}
            plain = {
                n: deserializer.deserialize(self.attrs[n].to_regular_json()) for n in names if n in self.attrs
            }
            merge_dicts(result, find_nested_key(path, plain))
        return Item(hash_key=self.hash_key, range_key=self.range_key, attrs=serializer.serialize(result)["M"])

    Item.project = project  # type: ignore[method-assign]

    parse_condition = ConditionExpressionParser.parse

    @functools.lru_cache(maxsize=4096)
    def parsed_condition(
        expression: str, names: str, values: str
    ) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
        parser = ConditionExpressionParser(expression, json.loads(names), json.loads(values))
        tree = parse_condition(parser)
        return tree, tuple(parser.expr_attr_names_found), tuple(parser.expr_attr_values_found)

    def parse_condition_once(self: Any) -> Any:
        if not self.condition_expression:  # every UpdateItem asks, with or without one
            return parse_condition(self)
        try:
            names = json.dumps(self.expression_attribute_names, sort_keys=True)
            values = json.dumps(self.expression_attribute_values, sort_keys=True)
        except TypeError:  # values JSON cannot hold: parse as moto does
            return parse_condition(self)
        if len(values) > 4096:  # values that will not recur (a whole item's): not kept
            return parse_condition(self)
        tree, names_found, values_found = parsed_condition(self.condition_expression, names, values)
        self.expr_attr_names_found.extend(names_found)
        self.expr_attr_values_found.extend(values_found)
        return tree

    ConditionExpressionParser.parse = parse_condition_once  # type: ignore[method-assign]

    from moto.dynamodb.responses import DynamoHandler

    one_request_at_a_time = threading.RLock()
    handle = DynamoHandler.call_action

    @functools.wraps(handle)
    def call_action(self: Any) -> Any:
        with one_request_at_a_time:  # the answer is serialized inside, from the items
            return handle(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


# moto's constant sequencer (adjustment 20), and the last one given instead
MOTO_SEQUENCER = "617f08299329d189"
_sequencer_lock = threading.Lock()
_last_sequencer = 0


def next_sequencer() -> str:
    """A sequencer greater than every one before it: 18 hex digits, as AWS writes them."""
    global _last_sequencer
    with _sequencer_lock:
        _last_sequencer = max(_last_sequencer + 1, time.time_ns())
        return f"{_last_sequencer:018X}"


# Adjustment 21: while a thread serves one of these writes, the one S3 event it may send.
_s3_write = threading.local()


def _sending_only(event: str, write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def one_event(*args: Any, **kwargs: Any) -> Any:
        outer = getattr(_s3_write, "event", None)
        _s3_write.event = event
        try:
            return write(*args, **kwargs)
        finally:
            _s3_write.event = outer

    return one_event


def patch_s3() -> None:
    """Adjustments 21 and 24."""
    from moto.s3 import notifications
    from moto.s3.models import S3Backend
    from moto.s3.notifications import S3NotificationEvent
    from moto.s3.responses import S3Response
    from moto.s3.utils import compute_checksum

    copy_object = S3Backend.copy_object

    @functools.wraps(copy_object)
    def copy_with_its_own_checksum(
        self: Any, src_key: Any, dest_bucket_name: str, dest_key_name: str, *args: Any, **kwargs: Any
    ) -> None:
        copy_object(self, src_key, dest_bucket_name, dest_key_name, *args, **kwargs)
        if src_key.checksum_value and src_key.checksum_type == "COMPOSITE":
            copied = self.get_object(dest_bucket_name, dest_key_name)
            if copied is not None and copied.checksum_type != "COMPOSITE":
                copied.checksum_value = compute_checksum(copied.value, src_key.checksum_algorithm).decode()

    S3Backend.copy_object = copy_with_its_own_checksum  # type: ignore[method-assign]

    send_event = notifications.send_event

    @functools.wraps(send_event)
    def send_the_write_s_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        only = getattr(_s3_write, "event", None)
        if only is None or event_name == only:
            send_event(account_id, event_name, bucket, key)

    notifications.send_event = send_the_write_s_event  # moto's models call it through the module
    S3Response.put_object = _sending_only(  # type: ignore[method-assign]
        S3NotificationEvent.OBJECT_CREATED_PUT_EVENT, S3Response.put_object
    )
    S3Response.copy_object = _sending_only(  # type: ignore[method-assign]
        S3NotificationEvent.OBJECT_CREATED_COPY_EVENT, S3Response.copy_object
    )
    S3Backend.complete_multipart_upload = _sending_only(  # type: ignore[method-assign]
        S3NotificationEvent.OBJECT_CREATED_COMPLETE_MULTIPART_UPLOAD_EVENT,
        S3Backend.complete_multipart_upload,
    )


# Adjustment 22: the reason S3 gives for each of moto's notification events
S3_EVENT_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "DeleteObject",
}
# while a thread sends an S3 event to EventBridge: its reason (None: moto's)
_s3_event = threading.local()


def patch_events() -> None:
    """Adjustments 3, 10, 16, 20, 22 and 23."""
    import jsonpath_ng.ext
    import moto.events.models as events_models
    from moto.s3 import notifications

    send_to_event_bridge = notifications._send_event_bridge_message

    @functools.wraps(send_to_event_bridge)
    def send_with_reason(account_id: str, bucket: Any, event_name: Any, key: Any) -> None:
        _s3_event.reason = S3_EVENT_REASONS.get(event_name)  # a str enum: equal to its value
        try:
            send_to_event_bridge(account_id, bucket, event_name, key)
        finally:
            _s3_event.reason = None

    notifications._send_event_bridge_message = send_with_reason  # send_event calls it by name
    original_send = events_models.Rule.send_to_targets

    def send_to_targets(self: Any, event: Any, transform_input: bool = True) -> None:
        if self.state == "DISABLED":  # adjustment 23
            return
        if self.scheduled_expression and not self.event_pattern.get_pattern():
            return
        s3_object = event.get("detail", {}).get("object") if event.get("source") == "aws.s3" else None
        if isinstance(s3_object, dict) and "eTag" in s3_object:
            s3_object["etag"] = s3_object.pop("eTag")
        if isinstance(s3_object, dict) and s3_object.get("sequencer") == MOTO_SEQUENCER:
            # one event object goes to every rule in turn: it is given its sequencer once
            s3_object["sequencer"] = next_sequencer()
        reason = getattr(_s3_event, "reason", None) if s3_object is not None else None
        if reason is not None:
            event["detail"]["reason"] = reason
        original_send(self, event, transform_input)

    events_models.Rule.send_to_targets = send_to_targets  # type: ignore[method-assign,assignment]
    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=256)(jsonpath_ng.ext.parse)


def function_identity(name_or_arn: str, region: str, account: str) -> tuple[str, str, str, str | None]:
    """``(region, account, name, qualifier)`` of a Lambda function identifier in any of the
    forms the Lambda API takes: ``name``, ``name:qualifier``, ``account:function:name[:q]``
    or ``arn:<partition>:lambda:region:account:function:name[:q]`` (``$LATEST``: none)."""
    parts = name_or_arn.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[5] == "function":
        region, account, rest = parts[3], parts[4], parts[6:]
    elif len(parts) >= 3 and parts[1] == "function":
        account, rest = parts[0], parts[2:]
    else:
        rest = parts
    name, qualifier = rest[0], (rest[1] if len(rest) > 1 else None)
    return region, account, name, None if qualifier == "$LATEST" else qualifier


# Adjustment 19: the file the runtime writes once its executor runs ("<url> <token>").
INVOCATIONS_FILE: Path | None = None


def executor_address() -> tuple[str, str] | None:
    """The executor's invoke bridge (URL, token), or None while no executor runs."""
    try:
        url, token = INVOCATIONS_FILE.read_text().split() if INVOCATIONS_FILE else ("", "")
    except (OSError, ValueError):
        return None
    return (url, token) if url else None


def _bridge_error(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(error)


def patch_lambda() -> None:
    """Adjustments 18, 19 and 25."""
    from moto.awslambda.exceptions import InvalidParameterValueException, LambdaClientError
    from moto.awslambda.models import LambdaBackend
    from moto.awslambda.responses import LambdaResponse

    def refuse_reserved(request: dict[str, Any]) -> None:
        variables = ((request or {}).get("Environment") or {}).get("Variables") or {}
        reserved = [name for name in variables if name in RESERVED_VARIABLES]
        if reserved:
            raise InvalidParameterValueException(
                "Lambda was unable to configure your environment variables because the environment "
                "variables you have provided contains reserved keys that are currently not supported "
                f"for modification. Reserved keys used in this request: {', '.join(reserved)}"
            )

    create_function = LambdaBackend.create_function

    @functools.wraps(create_function)
    def create_checked(self: Any, spec: dict[str, Any]) -> Any:
        refuse_reserved(spec)
        return create_function(self, spec)

    LambdaBackend.create_function = create_checked  # type: ignore[method-assign]
    update_configuration = LambdaBackend.update_function_configuration

    @functools.wraps(update_configuration)
    def update_checked(self: Any, function_name: str, qualifier: str, body: dict[str, Any]) -> Any:
        refuse_reserved(body)
        return update_configuration(self, function_name, qualifier, body)

    LambdaBackend.update_function_configuration = update_checked  # type: ignore[method-assign]

    class NotServed(LambdaClientError):
        code = 501  # not retried by the SDKs, unlike 500 and 503

        def __init__(self, message: str) -> None:
            super().__init__("NotImplemented", message)

    class InvalidRequestContent(LambdaClientError):
        def __init__(self, error: ValueError) -> None:
            super().__init__(
                "InvalidRequestContentException", f"Could not parse request body into json: {error}"
            )

    class TooLarge(LambdaClientError):
        code = 413

        def __init__(self, limit: int) -> None:
            super().__init__(
                "RequestEntityTooLargeException",
                f"Request must be smaller than {limit} bytes for the InvokeFunction operation",
            )

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> bytes:
        function = self.get_function(function_name, qualifier)  # moto's ResourceNotFound
        invocation_type = headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        if invocation_type == "DryRun":
            return b""
        address = executor_address()
        if address is None:
            raise NotServed(
                f"{function.function_name} cannot run yet: the embedded runtime's executor runs "
                "functions once `headrace local up` has deployed the stack"
            )
        url, token = address
        event = body if isinstance(body, bytes) else (body or "{}").encode()
        limit = LAMBDA_MAX_ASYNC_REQUEST_BYTES if invocation_type == "Event" else LAMBDA_MAX_REQUEST_BYTES
        if len(event) > limit:
            raise TooLarge(limit)
        try:
            json.loads(event or b"{}")
        except ValueError as exc:  # as Lambda refuses it, before anything runs
            raise InvalidRequestContent(exc) from exc
        request = urllib.request.Request(
            f"{url}/{quote(function.function_name, safe='')}",
            data=event,
            headers={"X-Bridge-Token": token, "X-Invocation-Type": invocation_type},
            method="POST",
        )
        try:  # the function's own timeout bounds the run; the margin covers a cold start
            with urllib.request.urlopen(request, timeout=int(function.timeout) + 60) as answer:
                result = json.loads(answer.read())
        except urllib.error.HTTPError as exc:  # the bridge's refusal says why (a function
            # created after the runtime started has no sandbox pool: restart the runtime)
            raise NotServed(
                f"the embedded runtime's executor did not run {function.function_name}: {_bridge_error(exc)}"
            ) from exc
        except (OSError, ValueError) as exc:
            raise NotServed(
                f"the embedded runtime's executor did not run {function.function_name}: {exc}"
            ) from exc
        response_headers["X-Amz-Executed-Version"] = "$LATEST"
        if invocation_type == "Event":
            return b""
        if result["ok"]:
            payload = result["response"]
        else:
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = {
                "errorMessage": result["error"],
                "errorType": result["error_type"],
                "requestId": result.get("request_id", ""),
                "stackTrace": result.get("stack_trace") or [],
            }
        return json.dumps(payload).encode()

    LambdaBackend.invoke = invoke  # type: ignore[method-assign]

    # moto reads Invoke's qualifier as "qualifier", from the query string or else from the
    # payload's JSON: the SDKs send it as "Qualifier" in the query string, so a version that
    # does not exist ran $LATEST, and an event with a "qualifier" field was refused
    respond = LambdaResponse.invoke

    @functools.wraps(respond)
    def invoke_response(self: Any) -> Any:
        self.querystring["qualifier"] = self.querystring.get("Qualifier") or [None]
        return respond(self)

    LambdaResponse.invoke = invoke_response  # type: ignore[method-assign]

    original = LambdaBackend.list_event_source_mappings

    @functools.wraps(original)
    def list_event_source_mappings(self: Any, event_source_arn: str, function_name: str) -> Any:
        mappings = original(self, event_source_arn, None)  # type: ignore[arg-type]
        if not function_name:
            return mappings
        wanted = function_identity(function_name, self.region_name, self.account_id)
        return [m for m in mappings if function_identity(m.function_name, m.region, m.account_id) == wanted]

    LambdaBackend.list_event_source_mappings = list_event_source_mappings  # type: ignore[method-assign]


def patch_models() -> None:
    """Adjustments 26 and 27: moto's models no longer list every instance made."""
    from moto.core.common_models import BaseModel

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:  # moto's, without the listing
        return super(BaseModel, cls).__new__(cls)  # type: ignore[misc]

    BaseModel.__new__ = staticmethod(__new__)  # type: ignore[assignment,method-assign]


def patch_moto() -> None:
    import moto.sqs.models as sqs_models

    patch_models()

    patch_sqs()
    patch_dynamodb()
    patch_s3()
    patch_events()
    patch_lambda()
    original_init = sqs_models.Queue.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.lambda_event_source_mappings = _DetachedMappings()

    sqs_models.Queue.__init__ = init  # type: ignore[method-assign]

    import moto.backends

    modules = tuple(moto.backends.list_of_moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]

    import moto.core.responses

    moto.core.responses.method_names_from_class = functools.cache(  # type: ignore[attr-defined]
        moto.core.responses.method_names_from_class  # type: ignore[attr-defined]
    )

    patch_authorization()


def patch_waitress() -> None:
    """Adjustment 17: ``Expect: 100-continue`` on a request without a body is ignored."""
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser

    class Parser(HTTPRequestParser):
        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            if self.body_rcv is None:  # no body: the request is complete as it is
                self.expect_continue = False

    HTTPChannel.parser_class = Parser


# What the emulator asks for when the hard limit is unlimited: macOS's per-process ceiling
# (OPEN_MAX), which setrlimit refuses to go beyond there.
OPEN_FILES_WHEN_UNLIMITED = 10_240


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit, and return the
    limit in force. moto keeps each object version over 5 MB in a temporary file it holds
    open, so a session that uploads many large files would reach a shell's usual soft limit
    (1,024; 256 on macOS) and fail every later request; the hard limit is the user's to
    give (``ulimit -Hn``)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WHEN_UNLIMITED if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft  # refused (a sandbox's policy): the limit stays, as before
        return wanted
    return soft


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument(
        "--invocations-file", type=Path, help="where the runtime names its executor (adjustment 19)"
    )
    parser.add_argument(
        "--end-with-parent",
        action="store_true",
        help="end when the process that started this one is gone (the embedded runtime's emulator)",
    )
    args = parser.parse_args()
    if args.end_with_parent:
        from .emulator import end_with_parent

        threading.Thread(
            target=end_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True
        ).start()
    global INVOCATIONS_FILE
    INVOCATIONS_FILE = args.invocations_file
    raise_open_file_limit()
    patch_moto()
    patch_waitress()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from waitress import serve

    # moto's WSGI application (the same one `moto_server` runs) under waitress: a thread
    # pool and keep-alive connections instead of werkzeug's development server, which
    # starts a thread and closes the connection for every request (+44 % requests/s).
    logging.getLogger("waitress").setLevel(logging.ERROR)
    moto_app = DomainDispatcherApplication(create_backend_app)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        # moto reads the undecoded path (S3 keys, request signatures) from werkzeug's RAW_URI;
        # waitress names it REQUEST_URI.
        environ.setdefault("RAW_URI", environ.get("REQUEST_URI", ""))
        return moto_app(environ, start_response)

    serve(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        connection_limit=1000,
        channel_timeout=120,
        _quiet=True,
    )


if __name__ == "__main__":
    main()
