"""The CrossGuard wiring: each rule of ``headrace_rules`` as a Pulumi policy.

Kept apart from ``__main__.py`` (whose ``PolicyPack`` serves the engine and never returns)
so the policies can be built and exercised in a test.
"""

from __future__ import annotations

import headrace_rules as rules
from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "headrace-security"


def resource_policy(rule: rules.ResourceRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if rule.applies_to(args.resource_type, args.name):
            for message in rule.check(args.resource_type, args.props):
                report_violation(message, None)

    return ResourceValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def stack_policy(rule: rules.StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [rules.Resource(r.resource_type, r.name, r.urn, r.props) for r in args.resources]
        for message, urn in rule.check(resources):
            report_violation(message, urn)

    return StackValidationPolicy(
        name=rule.name,
        description=rule.description,
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
    )


def policies() -> list[ResourceValidationPolicy | StackValidationPolicy]:
    return [resource_policy(r) for r in rules.RESOURCE_RULES] + [stack_policy(r) for r in rules.STACK_RULES]
