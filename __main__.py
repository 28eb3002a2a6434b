"""headrace: the whole pipeline as one Pulumi program.

    pulumi up -s dev     # AWS (Pulumi.dev.yaml)
    pulumi up -s local   # LocalStack (Pulumi.local.yaml)

The ``headrace:`` configuration is read and validated once, here, and passed down; the
Lambda package is built from this repository (or taken from $HEADRACE_LAMBDA_ARCHIVE).
See docs/deploy.md.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from components.config import (
    AWS_NAMESPACE,
    NAMESPACE,
    ConfigError,
    aws_warnings,
    check_stack_name,
    config_warnings,
    licensed_localstack_warnings,
    load_aws_settings,
    load_config,
)
from components.lambda_archive import BuildError, resolve_archive
from components.pipeline import HANDLERS, Pipeline, PipelineArgs
from components.provider import create_provider, provider_options

REPO_ROOT = Path(__file__).resolve().parent


def main() -> None:
    project, stack = pulumi.get_project(), pulumi.get_stack()
    reader = pulumi.Config(NAMESPACE)
    present_keys = list(pulumi.runtime.get_config_env())
    try:
        check_stack_name(project, stack)
        config = load_config(reader, present_keys=present_keys)
        aws_settings = load_aws_settings(pulumi.Config(AWS_NAMESPACE), config)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    warnings = [*config_warnings(config), *aws_warnings(config, aws_settings, present_keys)]
    if pulumi.runtime.is_dry_run():
        # Before LocalStack's free image would fail the deployment midway (a preview, and
        # `pulumi up`'s own); not in the embedded runtime, whose emulator has these services.
        warnings += licensed_localstack_warnings(config)
    for warning in warnings:
        pulumi.log.warn(warning)

    # Read as a secret: it stays encrypted in the state and reaches only the DB secret.
    db_password = reader.get_secret("db_password")
    password_key = f"{NAMESPACE}:db_password"
    if db_password is not None and not pulumi.runtime.is_config_secret(password_key):
        # set without --secret: in plain text in Pulumi.<stack>.yaml, a file kept in git
        raise pulumi.RunError(
            f"{password_key}: stored in plain text in Pulumi.{pulumi.get_stack()}.yaml; set it "
            f"again with `pulumi config set --secret {password_key}`, and change the database "
            "password if that file was ever committed or shared"
        )
    if config.warehouse.mode == "external" and not db_password:
        raise pulumi.RunError(
            f"{password_key}: required (and not empty) when warehouse.mode is external "
            f"(pulumi config set --secret {password_key})"
        )

    try:
        archive = resolve_archive(
            REPO_ROOT,
            architecture=config.functions.architecture,
            python_version=config.functions.python_version,
            handlers=HANDLERS.values(),
        )
    except BuildError as error:
        raise pulumi.RunError(f"Lambda package: {error}") from None

    provider = create_provider(f"{project}-{stack}-aws", config, project, stack, aws_settings)
    pipeline = Pipeline(
        f"{project}-{stack}",
        PipelineArgs(config=config, project=project, stack=stack, archive=archive, db_password=db_password),
        opts=provider_options(provider),
    )
    for name, value in pipeline.outputs.items():
        pulumi.export(name, value)


main()
