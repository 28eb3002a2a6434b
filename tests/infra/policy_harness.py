"""Runs the policy pack's policies through ``pulumi_policy`` on a list of resources.

    policy/.venv/bin/python tests/infra/policy_harness.py policy/ resources.json

Executed in the pack's own environment by test_policy_pack.py (the program's environment
cannot hold pulumi-policy). Resource policies get each resource's inputs wrapped in
pulumi_policy's unknown-checking proxy, as during a preview; stack policies get every
resource's outputs. Prints {"policies", "levels", "violations": [{"policy", "name", "message"}]}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy


def main(policy_dir: str, resources_path: str) -> None:
    sys.path.insert(0, policy_dir)
    from headrace_pack import policies  # the pack's own wiring

    with open(resources_path) as source:
        resources: list[dict[str, Any]] = json.load(source)
    violations: list[dict[str, str]] = []
    built = policies()
    by_urn = {r["urn"]: r["name"] for r in resources}
    for policy in built:
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(
                    r["type"],
                    unknown_checking_proxy(r["inputs"]),
                    r["urn"],
                    r["name"],
                    None,
                    None,  # type: ignore[arg-type]
                )

                def report(
                    message: str,
                    urn: str | None = None,
                    name: str = r["name"],
                    policy_name: str = policy.name,
                ) -> None:
                    violations.append({"policy": policy_name, "name": name, "message": message})

                policy.validate(args, report)
        elif isinstance(policy, StackValidationPolicy):
            stack = [
                PolicyResource(r["type"], r["outputs"], r["urn"], r["name"], None, None, None, [], {})  # type: ignore[arg-type]
                for r in resources
            ]

            def report_stack(message: str, urn: str | None = None, policy_name: str = policy.name) -> None:
                violations.append(
                    {"policy": policy_name, "name": by_urn.get(urn or "", ""), "message": message}
                )

            policy.validate(StackValidationArgs(stack), report_stack)
    json.dump(
        {
            "policies": [p.name for p in built],
            "levels": sorted({p.enforcement_level.value for p in built if p.enforcement_level}),
            "violations": violations,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
