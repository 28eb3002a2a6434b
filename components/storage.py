"""S3 buckets: private, versioned, encrypted, TLS-only, with lifecycle rules."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .policies import deny_insecure_transport, resource_policy

# Incomplete multipart uploads are invisible but billed; nothing legitimately takes a week.
ABORT_MULTIPART_AFTER_DAYS = 7


@dataclass(frozen=True)
class SecureBucketArgs:
    # Days after which current objects expire; None keeps them until deleted.
    expire_days: int | None
    # Days after which overwritten or deleted versions are removed.
    noncurrent_days: int
    # Publish every object event to EventBridge's default bus.
    eventbridge: bool = False
    # Let `pulumi destroy` delete a bucket that still holds objects (never in prod).
    force_destroy: bool = False
    # (key prefix, days): objects under the prefix expire sooner than the bucket's others.
    prefix_expirations: tuple[tuple[str, int], ...] = ()
    # Pulumi's protect on the bucket (prod): a plan that would delete or replace it fails
    # at preview instead of moving the pipeline onto an empty bucket.
    protect: bool = False


class SecureBucket(pulumi.ComponentResource):
    """One bucket: versioning, SSE-S3 default encryption, every public
    access path blocked, a bucket policy that denies non-TLS requests (and TLS < 1.2), and
    lifecycle rules."""

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:storage:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.bucket = aws.s3.Bucket(
            name,
            force_destroy=args.force_destroy,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

        self.versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    ),
                )
            ],
            opts=child,
        )
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        objects = self.bucket.arn.apply(lambda arn: f"{arn}/*")
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=resource_policy(
                [
                    deny_insecure_transport("s3:*", [self.bucket.arn, objects]),
                    {
                        "Sid": "DenyOutdatedTls",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [self.bucket.arn, objects],
                        "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
                    },
                ]
            ),
            # S3 rejects a policy put while the public access block is being changed.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.public_access_block]),
        )

        rules = [
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-versions",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=args.noncurrent_days
                ),
            ),
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="abort-incomplete-multipart-uploads",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=ABORT_MULTIPART_AFTER_DAYS
                ),
            ),
        ]
        if args.expire_days is not None:
            rules.append(
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-current-objects",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=args.expire_days),
                )
            )
        else:
            # Versions are still expired by the rule above; this removes the delete markers
            # left behind once a deleted object has no versions.
            rules.append(
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="remove-expired-delete-markers",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        expired_object_delete_marker=True
                    ),
                )
            )
        for prefix, days in args.prefix_expirations:
            rules.append(
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id=f"expire-{prefix.strip('/').replace('/', '-')}",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
                )
            )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=rules,
            # Lifecycle rules on noncurrent versions need versioning in place first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.versioning]),
        )

        self.notification: aws.s3.BucketNotification | None = None
        if args.eventbridge:
            self.notification = aws.s3.BucketNotification(
                f"{name}-eventbridge", bucket=self.bucket.id, eventbridge=True, opts=child
            )

        self.name: pulumi.Output[str] = self.bucket.bucket
        self.arn: pulumi.Output[str] = self.bucket.arn
        self.register_outputs({"name": self.name, "arn": self.arn})


@dataclass(frozen=True)
class DataBucketsArgs:
    raw_days: int | None
    processed_days: int | None
    reports_days: int | None
    noncurrent_days: int
    force_destroy: bool
    # Prefixes of the reports bucket that expire sooner (Athena query results).
    reports_prefix_expirations: tuple[tuple[str, int], ...] = ()
    protect: bool = False  # Pulumi's protect on the three buckets (prod)


class DataBuckets(pulumi.ComponentResource):
    """The pipeline's three buckets. Only the raw bucket notifies EventBridge."""

    def __init__(self, name: str, args: DataBucketsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:storage:DataBuckets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def bucket(
            role: str,
            expire_days: int | None,
            eventbridge: bool = False,
            prefix_expirations: tuple[tuple[str, int], ...] = (),
        ) -> SecureBucket:
            return SecureBucket(
                f"{name}-{role}",
                SecureBucketArgs(
                    expire_days=expire_days,
                    noncurrent_days=args.noncurrent_days,
                    eventbridge=eventbridge,
                    force_destroy=args.force_destroy,
                    prefix_expirations=prefix_expirations,
                    protect=args.protect,
                ),
                opts=child,
            )

        self.raw = bucket("raw", args.raw_days, eventbridge=True)
        self.processed = bucket("processed", args.processed_days)
        self.reports = bucket(
            "reports", args.reports_days, prefix_expirations=args.reports_prefix_expirations
        )
        self.register_outputs(
            {"raw": self.raw.name, "processed": self.processed.name, "reports": self.reports.name}
        )
