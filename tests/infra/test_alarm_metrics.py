"""Every metric an alarm or the dashboard watches is one that is published, under the
namespace, name and dimensions it is published with: the handlers' own (read from their
source, as Powertools Metrics will emit them) or an AWS service's (by that service's
documented names and dimensions). An alarm on anything else never fires, silently.
Custom metrics carry the stack's name (dimension ``stack``): the handlers set it from the
environment variable the program gives every function, and this stack's alarms and widgets
select by it, so another stack of the account and region is never seen (nor summed)."""

from __future__ import annotations

import ast
import importlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components.functions import METRICS_NAMESPACE, STACK_DIMENSION, STACK_VARIABLE

from .conftest import ROOT, Deployment

# What AWS publishes, per namespace: metric names (those the program may watch) and the
# dimension sets they are published with. From the services' CloudWatch metric pages:
# "Available CloudWatch metrics for Amazon SQS", "Types of metrics for Lambda functions" and
# "Monitoring Lambda function URLs", "Monitor CloudWatch metrics for HTTP APIs" (REST APIs
# spell theirs 5XXError and use ApiName: not these), "Amazon CloudWatch metrics for RDS".
AWS_METRICS: dict[str, tuple[frozenset[str], tuple[frozenset[str], ...]]] = {
    "AWS/SQS": (
        frozenset(
            {
                "ApproximateNumberOfMessagesVisible",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
                "ApproximateAgeOfOldestMessage",
                "NumberOfMessagesSent",
                "NumberOfMessagesReceived",
                "NumberOfMessagesDeleted",
                "NumberOfEmptyReceives",
                "SentMessageSize",
            }
        ),
        (frozenset({"QueueName"}),),
    ),
    "AWS/Lambda": (
        frozenset(
            {
                "Invocations",
                "Errors",
                "Throttles",
                "Duration",
                "ConcurrentExecutions",
                "AsyncEventsDropped",
                "UrlRequestCount",
                "Url4xxCount",
                "Url5xxCount",
                "UrlRequestLatency",
            }
        ),
        (frozenset({"FunctionName"}),),
    ),
    "AWS/ApiGateway": (
        frozenset({"4xx", "5xx", "Count", "Latency", "IntegrationLatency", "DataProcessed"}),
        (frozenset({"ApiId"}), frozenset({"ApiId", "Stage"})),
    ),
    "AWS/RDS": (
        frozenset({"CPUUtilization", "FreeStorageSpace", "DatabaseConnections", "FreeableMemory"}),
        (frozenset({"DBInstanceIdentifier"}),),
    ),
    # "Monitoring Amazon EventBridge": a rule of the default bus by RuleName alone (a custom
    # bus's rules by EventBusName and RuleName).
    "AWS/Events": (
        frozenset({"Invocations", "FailedInvocations", "TriggeredRules", "MatchedEvents", "ThrottledRules"}),
        (frozenset({"RuleName"}), frozenset({"EventBusName", "RuleName"})),
    ),
}
URL_METRICS = {"UrlRequestCount", "Url4xxCount", "Url5xxCount", "UrlRequestLatency"}


# ------------------------------------------------------------------ what the handlers emit
@dataclass
class Emitter:
    """A handler module's Powertools ``Metrics``: its namespace and service arguments and
    every metric name it may add (a superset: the strings its ``add_metric`` names come from)."""

    path: Path
    namespace: str | None
    service: str | None
    metrics: set[str] = field(default_factory=set)
    # set_default_dimensions(name=<settings>.<field>) at module level: dimension name -> the
    # environment variable its value is read from (the alias of that settings field)
    default_dimensions: dict[str, str] = field(default_factory=dict)
    # Lines that add dimensions any other way (add_dimension, single_metric, ...)
    dimension_calls: list[int] = field(default_factory=list)


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _keyword(call: ast.Call, name: str, position: int | None = None) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _assignments(tree: ast.Module) -> dict[str, list[ast.expr]]:
    """Every value assigned to each variable name in the module (tuple targets get the
    whole value: its strings are a superset of the element's)."""
    found: dict[str, list[ast.expr]] = {}
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if value is None:
            continue
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    found.setdefault(name.id, []).append(value)
    return found


def _strings(expr: ast.expr, assignments: dict[str, list[ast.expr]], seen: set[str]) -> set[str]:
    """The string constants ``expr`` can evaluate to: its own, and those of the values
    assigned to the variables it reads (``metric = {...}[status]``, ``metric, _ = limit``)."""
    strings = {n.value for n in ast.walk(expr) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    for name in {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)} - seen:
        seen.add(name)
        for value in assignments.get(name, []):
            strings |= _strings(value, assignments, seen)
    return strings


def _literal(expr: ast.expr | None, path: Path, what: str) -> str | None:
    if expr is None:
        return None
    assert isinstance(expr, ast.Constant) and isinstance(expr.value, str), (
        f"{path}: Metrics({what}=...) is not a string literal; this test cannot check it"
    )
    return expr.value


def _settings_variables(tree: ast.Module, path: Path) -> dict[str, dict[str, str]]:
    """``settings = SomeSettings.from_env()`` at module level: variable -> {field: the
    environment variable it reads (its alias)}, from the imported settings model."""
    imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    }
    found: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        func = node.value.func
        if isinstance(func, ast.Attribute) and func.attr == "from_env" and isinstance(func.value, ast.Name):
            module, name = imported.get(func.value.id, (None, None))
            assert module is not None, f"{path}:{node.lineno}: {func.value.id} is not imported by name"
            model = getattr(importlib.import_module(module), name)
            variables = {f: info.alias or f for f, info in model.model_fields.items()}
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = variables
    return found


def _default_dimensions(call: ast.Call, settings: dict[str, dict[str, str]], path: Path) -> dict[str, str]:
    """``set_default_dimensions(stack=settings.stack)`` -> {"stack": "HEADRACE_STACK"}."""
    found = {}
    for keyword in call.keywords:
        value = keyword.value
        assert (
            keyword.arg is not None
            and isinstance(value, ast.Attribute)
            and isinstance(value.value, ast.Name)
            and value.value.id in settings
            and value.attr in settings[value.value.id]
        ), (
            f"{path}:{call.lineno}: a default dimension not read from a settings field; this test cannot check it"
        )
        found[keyword.arg] = settings[value.value.id][value.attr]
    return found


def emitter(path: Path) -> Emitter | None:
    tree = ast.parse(path.read_text(), filename=str(path))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    constructed = [c for c in calls if _callee(c) == "Metrics"]
    if not constructed:
        return None
    assert len(constructed) == 1, f"{path}: more than one Metrics()"
    (metrics,) = constructed
    found = Emitter(
        path,
        namespace=_literal(_keyword(metrics, "namespace"), path, "namespace"),
        service=_literal(_keyword(metrics, "service"), path, "service"),
    )
    assignments = _assignments(tree)
    # Default dimensions count only when set once, at import (every invocation keeps them)
    module_calls = {
        id(node.value)
        for node in tree.body
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
    }
    settings = _settings_variables(tree, path)
    for call in calls:
        if _callee(call) == "add_metric":
            name = _keyword(call, "name", 0)
            assert name is not None, f"{path}:{call.lineno}: add_metric without a name"
            found.metrics |= _strings(name, assignments, set())
        elif _callee(call) == "set_default_dimensions" and id(call) in module_calls and not call.args:
            assert not found.default_dimensions, f"{path}:{call.lineno}: set_default_dimensions twice"
            found.default_dimensions = _default_dimensions(call, settings, path)
        elif _callee(call) in (
            "add_dimension",
            "add_dimensions",
            "set_default_dimensions",
            "single_metric",
            "log_metrics",
        ) and (call.args or call.keywords):
            # (a bare @metrics.log_metrics is a Name, not a Call; with default_dimensions=
            # or any argument it is read here)
            found.dimension_calls.append(call.lineno)
    assert found.metrics, f"{path}: Metrics() but no add_metric"
    return found


def handler_path(handler: str) -> Path:
    """``handlers.processor.lambda_handler`` -> handlers/processor.py"""
    return ROOT / (handler.rsplit(".", 1)[0].replace(".", "/") + ".py")


@dataclass
class Function:
    name: str
    handler: str
    environment: dict[str, str]


def _functions(stack: Deployment) -> list[Function]:
    return [
        Function(f.outputs["name"], f.inputs["handler"], (f.input("environment") or {}).get("variables", {}))
        for f in stack.of_type("aws:lambda/function:Function")
    ]


def emitters(stack: Deployment) -> dict[str, Emitter]:
    """service -> what that function's handler emits, for every function that emits."""
    found: dict[str, Emitter] = {}
    for function in _functions(stack):
        emits = emitter(handler_path(function.handler))
        if emits is not None:
            found[function.environment["POWERTOOLS_SERVICE_NAME"]] = emits
    return found


# ------------------------------------------------------------------ what is watched
@dataclass(frozen=True)
class Watched:
    where: str  # the alarm or widget, for messages
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]


def _watched_by_alarms(stack: Deployment) -> Iterator[Watched]:
    for alarm in stack.of_type("aws:cloudwatch/metricAlarm:MetricAlarm"):
        inputs = alarm.inputs
        where = f"alarm {inputs['name']}"
        if inputs.get("metricQueries"):
            assert not inputs.get("metricName"), where
            for query in inputs["metricQueries"]:
                if query.get("metric"):
                    m = query["metric"]
                    yield Watched(
                        where, m["namespace"], m["metricName"], tuple(sorted(m.get("dimensions", {}).items()))
                    )
        else:
            yield Watched(
                where,
                inputs["namespace"],
                inputs["metricName"],
                tuple(sorted(inputs.get("dimensions", {}).items())),
            )


def _watched_by_dashboard(stack: Deployment) -> Iterator[Watched]:
    for dashboard in stack.of_type("aws:cloudwatch/dashboard:Dashboard"):
        for widget in json.loads(dashboard.input("dashboardBody"))["widgets"]:
            title = widget["properties"]["title"]
            for row in widget["properties"]["metrics"]:
                values = [v for v in row if not isinstance(v, dict)]  # a trailing {options}
                namespace, metric, *pairs = values
                assert len(pairs) % 2 == 0, f"widget {title!r}: {row}"
                dimensions = tuple(sorted(zip(pairs[::2], pairs[1::2], strict=True)))
                yield Watched(f"widget {title!r}", namespace, metric, dimensions)


def watched(stack: Deployment) -> list[Watched]:
    return [*_watched_by_alarms(stack), *_watched_by_dashboard(stack)]


# ------------------------------------------------------------------ tests
def test_every_handler_emits_under_the_namespace_and_service_its_function_is_given(
    stack: Deployment,
) -> None:
    # Given each function and the Powertools Metrics its handler constructs (arguments win
    # over POWERTOOLS_METRICS_NAMESPACE / POWERTOOLS_SERVICE_NAME)
    found = 0
    for function in _functions(stack):
        emits = emitter(handler_path(function.handler))
        if emits is None:
            continue
        found += 1
        env = function.environment
        # Then it publishes where the program says (and where the alarms look)
        assert emits.namespace in (None, env["POWERTOOLS_METRICS_NAMESPACE"]), emits.path
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == METRICS_NAMESPACE, function.name
        assert emits.service in (None, env["POWERTOOLS_SERVICE_NAME"]), emits.path
        # and with the stack's name, from the variable the program sets to it
        assert emits.default_dimensions == {STACK_DIMENSION: STACK_VARIABLE}, (
            f"{emits.path}: default dimensions {emits.default_dimensions}: every metric needs the "
            f"stack's ({STACK_DIMENSION}=<{STACK_VARIABLE}>), or another stack's alarms see it"
        )
        assert env.get(STACK_VARIABLE) == stack.stack, function.name
    # (the processor, the loader, the report and the ingest worker emit metrics)
    assert found == 4


def test_every_custom_metric_watched_is_one_a_handler_emits(stack: Deployment) -> None:
    services = emitters(stack)
    custom = [w for w in watched(stack) if w.namespace == METRICS_NAMESPACE]
    assert any(w.where.startswith("alarm") for w in custom)
    for emits in services.values():
        assert not emits.dimension_calls, (
            f"{emits.path}:{emits.dimension_calls}: dimensions besides service and the default "
            "ones: teach this test"
        )
    for w in custom:
        # Powertools publishes each metric with one dimension set: "service" and the handler's
        # default dimensions (the stack's name). A metric watched with other dimensions is
        # another metric (EMF: a metric published with {service, stack} is found only by both)
        dimensions = dict(w.dimensions)
        service = dimensions.get("service")
        assert service in services, f"{w.where}: no function emits with service={service!r}"
        assert set(dimensions) == {"service", *services[service].default_dimensions}, (
            f"{w.where}: {w.metric} {dimensions}"
        )
        # and this stack's: not every stack of the account and region
        assert dimensions[STACK_DIMENSION] == stack.stack, f"{w.where}: {w.metric} {dimensions}"
        assert service in services, f"{w.where}: no function emits with service={service!r}"
        assert w.metric in services[service].metrics, (
            f"{w.where}: {services[service].path.name} never emits {w.metric!r} "
            f"(it emits {sorted(m for m in services[service].metrics if m[:1].isupper())})"
        )


def test_every_aws_metric_watched_is_published_with_those_dimensions(stack: Deployment) -> None:
    # Given the names AWS would publish each dimension with: queues by name (not URL or
    # ARN), functions by name, the HTTP API by id, the database by identifier
    queues = {q.outputs["name"] for q in stack.of_type("aws:sqs/queue:Queue")}
    functions = {f.name for f in _functions(stack)}
    url_functions = {u.inputs["functionName"] for u in stack.of_type("aws:lambda/functionUrl:FunctionUrl")}
    http_apis = {
        a.id for a in stack.of_type("aws:apigatewayv2/api:Api") if a.inputs["protocolType"] == "HTTP"
    }
    databases = {d.outputs["identifier"] for d in stack.of_type("aws:rds/instance:Instance")}
    # rules by name: of the default bus alone, or of any bus with its EventBusName
    all_rules = stack.of_type("aws:cloudwatch/eventRule:EventRule")
    rules = {r.outputs["name"] for r in all_rules if r.inputs.get("eventBusName") in (None, "default")}
    names = {
        "QueueName": queues,
        "FunctionName": functions,
        "ApiId": http_apis,
        "DBInstanceIdentifier": databases,
        "RuleName": rules,
    }
    for w in watched(stack):
        if w.namespace == METRICS_NAMESPACE:
            continue
        assert w.namespace in AWS_METRICS, (
            f"{w.where}: {w.namespace} is not checked here; add what it publishes"
        )
        metrics, dimension_sets = AWS_METRICS[w.namespace]
        assert w.metric in metrics, f"{w.where}: {w.namespace} publishes no {w.metric!r}"
        dimensions = dict(w.dimensions)
        assert frozenset(dimensions) in dimension_sets, (
            f"{w.where}: {w.metric} is not published by {dimensions}"
        )
        for key, value in dimensions.items():
            allowed = names.get(key)
            if key == "RuleName" and "EventBusName" in dimensions:
                allowed = {r.outputs["name"] for r in all_rules}
            if allowed is not None:
                assert value in allowed, f"{w.where}: {key}={value!r} names no resource of this stack"
        if w.metric in URL_METRICS:
            assert dimensions["FunctionName"] in url_functions, f"{w.where}: that function has no URL"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            'm = Metrics(namespace="ns", service="svc")\n'
            'def f(ok):\n    m.add_metric(name="Done" if ok else "Failed", unit="Count", value=1)\n',
            {"Done", "Failed"},
        ),
        (
            'm = Metrics(service="svc")\nNAMES = {"a": "Alpha", "b": "Beta"}\n'
            "def f(k):\n    name = NAMES[k]\n    m.add_metric(name=name, unit='Count', value=1)\n",
            {"a", "Alpha", "b", "Beta"},
        ),
    ],
)
def test_the_metric_names_of_a_handler_are_read_through_its_variables(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    path = tmp_path / "handler.py"
    path.write_text(source)
    emits = emitter(path)
    assert emits is not None and emits.service == "svc"
    assert emits.metrics == expected


SETTINGS_IMPORT = "from handlers.models.loader import LoaderSettings\nsettings = LoaderSettings.from_env()\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # the stack's name from the settings field that reads HEADRACE_STACK
        (SETTINGS_IMPORT + "m.set_default_dimensions(stack=settings.stack)\n", {"stack": "HEADRACE_STACK"}),
        # none: the metrics carry the service alone, and the stack's alarms would miss them
        (SETTINGS_IMPORT, {}),
        # set in a function (e.g. per invocation, where it can be forgotten): not a default
        (SETTINGS_IMPORT + "def f():\n    m.set_default_dimensions(stack=settings.stack)\n", {}),
    ],
)
def test_the_default_dimensions_of_a_handler_are_read_with_their_variables(
    tmp_path: Path, source: str, expected: dict[str, str]
) -> None:
    path = tmp_path / "handler.py"
    path.write_text(
        'm = Metrics(namespace="ns", service="svc")\n'
        + source
        + "m.add_metric(name='Done', unit='Count', value=1)\n"
    )
    emits = emitter(path)
    assert emits is not None and emits.default_dimensions == expected
    # (one set inside a function is reported as another dimension call, which the test refuses)
    assert bool(emits.dimension_calls) is ("def f" in source)


def test_a_default_dimension_not_read_from_settings_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "handler.py"
    path.write_text(
        'm = Metrics(service="svc")\nm.set_default_dimensions(stack="dev")\n'
        "m.add_metric(name='Done', unit='Count', value=1)\n"
    )
    with pytest.raises(AssertionError, match="not read from a settings field"):
        emitter(path)


@pytest.mark.parametrize(
    "settings",
    [
        "handlers.models.settings.ProcessorSettings",
        "handlers.models.loader.LoaderSettings",
        "handlers.models.report.ReportSettings",
        "handlers.models.ingest_worker.IngestWorkerSettings",
    ],
)
def test_a_handler_that_emits_refuses_to_start_without_the_stack_name(settings: str) -> None:
    # Given a function's settings model, and an environment without HEADRACE_STACK (or empty)
    module, name = settings.rsplit(".", 1)
    model = getattr(importlib.import_module(module), name)
    for environment in ({}, {STACK_VARIABLE: ""}):
        # Then it refuses to start, naming the variable: metrics without the stack's name
        # would reach no alarm of the stack, silently
        with pytest.raises(ValueError, match=STACK_VARIABLE):
            model.from_env(environment)


def _documented_metrics(document: str, start: str, end: str) -> dict[str, set[str]]:
    """service -> the metric names a document's list of them gives (``- service: `Name`, ...``)."""
    section = _section(document, start, end)
    items = re.findall(r"^- ([a-z-]+)(?: \([^)]*\))?: (.*?)(?=^- |\Z)", section, re.M | re.S)
    return {service: set(re.findall(r"`([A-Z][a-z]\w*)`", names)) for service, names in items}


def test_the_metrics_the_docs_list_are_the_ones_each_handler_emits(dev: Deployment) -> None:
    # Given the metrics each function's handler emits (read from its source)
    emitted = {service: {m for m in e.metrics if m[:1].isupper()} for service, e in emitters(dev).items()}
    # When docs/contracts.md lists them per function ("Metrics"), the signals table of
    # docs/warehouse-and-reports.md per service, and the README all together
    contracts = _documented_metrics("docs/contracts.md", "## Metrics", "\n## ")
    table = _section("docs/warehouse-and-reports.md", "## Signals", "\n## ")
    signals: dict[str, set[str]] = {}
    for service, names in re.findall(r"^\| ([a-z-]+) \| (`.*?) \|", table, re.M):
        signals.setdefault(service, set()).update(re.findall(r"`([A-Z][a-z]\w*)`", names))
    readme = _section("README.md", "Handlers emit EMF metrics", "\n\n")
    # Then each list is the metrics emitted: an alarm or query written from the docs finds
    # each, and none is missing from them
    for documented in (contracts, signals):
        assert sorted(documented) == sorted(emitted)
        wrong = {s: (sorted(documented[s] - emitted[s]), sorted(emitted[s] - documented[s])) for s in emitted}
        assert {s: w for s, w in wrong.items() if w != ([], [])} == {}
    assert set(re.findall(r"`([A-Z][a-z]\w*)`", readme)) == set().union(*emitted.values())


def _section(document: str, start: str, end: str) -> str:
    text = (ROOT / document).read_text()
    begin = text.index(start)
    finish = text.find(end, begin + len(start))
    return text[begin : finish if finish != -1 else len(text)]
