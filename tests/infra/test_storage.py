"""Buckets: encryption, public access, TLS-only policy, lifecycle from config, notifications."""

from __future__ import annotations

from typing import Any

import pulumi

from components.storage import SecureBucket, SecureBucketArgs

from .conftest import Deployment, deploy
from .mocks import PipelineMocks

ROLES = ("raw", "processed", "reports")


def _by_bucket(stack: Deployment, kind: str) -> dict[str, Any]:
    """Resources of ``kind`` by the role of the bucket they configure."""
    names = {r.outputs["bucket"]: r.name.rsplit("-", 1)[-1] for r in stack.of_type("aws:s3/bucket:Bucket")}
    return {names[r.input("bucket")]: r for r in stack.of_type(kind)}


def test_every_bucket_is_versioned_encrypted_and_private(stack: Deployment) -> None:
    # Given a stack's three data buckets
    versioning = _by_bucket(stack, "aws:s3/bucketVersioning:BucketVersioning")
    encryption = _by_bucket(
        stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    blocks = _by_bucket(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    # Then each has versioning on, default encryption, and all four public-access blocks
    for role in ROLES:
        assert versioning[role].input("versioningConfiguration")["status"] == "Enabled"
        (rule,) = encryption[role].input("rules")
        assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] in ("AES256", "aws:kms")
        block = blocks[role].inputs
        assert all(
            block[flag] is True
            for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )


def test_every_bucket_policy_denies_requests_without_tls(stack: Deployment) -> None:
    # Given a stack's bucket policies
    buckets = {r.outputs["bucket"]: r.outputs["arn"] for r in stack.of_type("aws:s3/bucket:Bucket")}
    policies = stack.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert len(policies) == len(buckets) == 3
    for policy in policies:
        arn = buckets[policy.input("bucket")]
        statements = policy.json_input("policy")["Statement"]
        # Then a Deny on every action covers the bucket and its objects when SecureTransport is false
        tls = [s for s in statements if s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}]
        assert (
            tls and tls[0]["Effect"] == "Deny" and tls[0]["Principal"] == "*" and tls[0]["Action"] == "s3:*"
        )
        assert sorted(tls[0]["Resource"]) == sorted([arn, f"{arn}/*"])
        # and the policy grants nothing
        assert all(s["Effect"] == "Deny" for s in statements)


def test_lifecycle_rules_follow_retention_config(dev: Deployment) -> None:
    # Given dev's retention (raw 90 days, processed/reports kept, noncurrent 30 days)
    rules = {
        role: {rule["id"]: rule for rule in r.input("rules")}
        for role, r in _by_bucket(
            dev, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
        ).items()
    }
    # Then raw objects expire after 90 days, the others never
    assert rules["raw"]["expire-current-objects"]["expiration"]["days"] == 90
    assert "expire-current-objects" not in rules["processed"]
    assert "expire-current-objects" not in rules["reports"]
    # and old versions everywhere after 30 days, incomplete uploads after 7
    for role in ROLES:
        assert (
            rules[role]["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30
        )
        assert (
            rules[role]["abort-incomplete-multipart-uploads"]["abortIncompleteMultipartUpload"][
                "daysAfterInitiation"
            ]
            == 7
        )


def test_retention_changes_reach_the_buckets(tiny_archive: Any) -> None:
    # Given dev with other retention settings
    stack = deploy(
        "dev",
        tiny_archive,
        {"headrace:retention": {"raw_days": 3, "processed_days": 400, "noncurrent_days": 2}},
    )
    rules = {
        role: {rule["id"]: rule for rule in r.input("rules")}
        for role, r in _by_bucket(
            stack, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
        ).items()
    }
    # Then the lifecycle rules carry them
    assert rules["raw"]["expire-current-objects"]["expiration"]["days"] == 3
    assert rules["processed"]["expire-current-objects"]["expiration"]["days"] == 400
    assert (
        rules["reports"]["expire-noncurrent-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 2
    )


def test_only_the_raw_bucket_notifies_eventbridge(stack: Deployment) -> None:
    # Given a stack
    notifications = _by_bucket(stack, "aws:s3/bucketNotification:BucketNotification")
    # Then the raw bucket sends its events to EventBridge, the others send none
    assert set(notifications) == {"raw"}
    assert notifications["raw"].inputs["eventbridge"] is True


def test_buckets_keep_their_objects_on_destroy_only_in_prod(dev: Deployment, tiny_archive: Any) -> None:
    # Given dev and the same stack as prod
    prod = deploy("dev", tiny_archive, {"headrace:environment": "prod"})
    # Then dev buckets may be destroyed with their objects, prod buckets may not
    assert all(b.inputs["forceDestroy"] is True for b in dev.of_type("aws:s3/bucket:Bucket"))
    assert all(b.inputs["forceDestroy"] is False for b in prod.of_type("aws:s3/bucket:Bucket"))


@pulumi.runtime.test
def test_secure_bucket_component_outputs(component_mocks: PipelineMocks) -> Any:
    # Given a bucket component built on its own, with EventBridge notifications
    bucket = SecureBucket("scratch", SecureBucketArgs(expire_days=None, noncurrent_days=5, eventbridge=True))

    # Then its outputs are the bucket's name and ARN, and its policy is TLS-only
    def check(values: list[Any]) -> None:
        name, arn, policy = values
        assert name.startswith("scratch-") and arn == f"arn:aws:s3:::{name}"
        import json

        (statement, outdated) = json.loads(policy)["Statement"]
        assert (
            statement["Effect"] == "Deny" and statement["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        )
        assert outdated["Condition"]["NumericLessThan"]["s3:TlsVersion"] == "1.2"
        assert bucket.notification is not None

    return pulumi.Output.all(bucket.name, bucket.arn, bucket.policy.policy).apply(check)
