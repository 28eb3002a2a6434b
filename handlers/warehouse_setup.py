"""Warehouse setup Lambda (RDS mode): the loader's own database role.

The stack invokes it while it deploys (``aws.lambda_.Invocation``), again whenever a
connection secret, the schema or the code changes; the pipeline never does. It connects as
the RDS master user (``ADMIN_SECRET_ARN``, a secret only this function reads) and makes the
user of the loader's connection secret (``DB_SECRET_ARN``) a login role that owns the
warehouse schema and nothing more (handlers.dal.warehouse_roles). Its answer lists what it
changed; an error fails the deployment with the reason.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.dal.secrets import db_credentials
from handlers.dal.warehouse import Connections
from handlers.dal.warehouse_roles import RoleSetupRefused, ensure_loader_role
from handlers.models.loader import WarehouseSetupSettings

settings = WarehouseSetupSettings.from_env()
logger = Logger(service="warehouse-setup")


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    admin = db_credentials(settings.admin_secret_arn, refresh=True)
    loader = db_credentials(settings.db_secret_arn, refresh=True)
    if (admin.host, admin.port, admin.dbname) != (loader.host, loader.port, loader.dbname):
        raise RoleSetupRefused(
            f"the administrator's secret names {admin.dbname} on {admin.host}:{admin.port}, the loader's "
            f"{loader.dbname} on {loader.host}:{loader.port}: they must name the same database"
        )
    connections = Connections(
        lambda refresh: db_credentials(settings.admin_secret_arn, refresh=refresh),
        application_name="headrace-warehouse-setup",
    )
    try:
        changes = ensure_loader_role(
            connections.get(), loader.username, loader.password, settings.warehouse_schema
        )
    finally:
        connections.close()
    logger.info("the loader's role is ready", extra={"role": loader.username, "changes": changes})
    return {"role": loader.username, "schema": settings.warehouse_schema, "changes": changes}
