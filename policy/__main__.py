"""headrace-security: the CrossGuard policy pack of the headrace program.

    pulumi preview -s dev --policy-pack policy
    pulumi up -s dev --policy-pack policy

Every policy is mandatory: a violation fails the preview or the update. The rules are in
headrace_rules.py (and README.md here lists them).
"""

from headrace_pack import PACK_NAME, policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
