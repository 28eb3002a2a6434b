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

from components.config import NAMESPACE, ConfigError, check_stack_name, config_warnings, load_config
from components.lambda_archive import BuildError, resolve_archive
from components.pipeline import HANDLERS, Pipeline, PipelineArgs
from components.provider import create_provider, provider_options

REPO_ROOT = Path(__file__).resolve().parent


def main() -> None:
    project, stack = pulumi.get_project(), pulumi.get_stack()
    reader = pulumi.Config(NAMESPACE)
    try:
        check_stack_name(project, stack)
        config = load_config(reader, present_keys=pulumi.runtime.get_config_env().keys())
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    for warning in config_warnings(config):
        pulumi.log.warn(warning)

    # Read as a secret: it stays encrypted in the state and reaches only the DB secret.
    db_password = reader.get_secret("db_password")
    if config.warehouse.mode == "external" and not db_password:
        raise pulumi.RunError(
            f"{NAMESPACE}:db_password: required (and not empty) when warehouse.mode is external "
            f"(pulumi config set --secret {NAMESPACE}:db_password)"
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

    provider = create_provider(f"{project}-{stack}-aws", config, project, stack)
    pipeline = Pipeline(
        f"{project}-{stack}",
        PipelineArgs(config=config, project=project, stack=stack, archive=archive, db_password=db_password),
        opts=provider_options(provider),
    )
    for name, value in pipeline.outputs.items():
        pulumi.export(name, value)


main()
