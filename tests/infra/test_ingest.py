"""The ingest API: HTTP API routes on AWS, a function URL on LocalStack."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Deployment


def test_http_api_routes_to_the_ingest_function(dev: Deployment) -> None:
    (api,) = dev.of_type("aws:apigatewayv2/api:Api")
    (integration,) = dev.of_type("aws:apigatewayv2/integration:Integration")
    routes = dev.of_type("aws:apigatewayv2/route:Route")
    (stage,) = dev.of_type("aws:apigatewayv2/stage:Stage")
    ingest = dev.named("headrace-dev-ingest", "aws:lambda/function:Function")
    # Then POST /ingest (and GET /logs) go to the ingest function by Lambda proxy, payload 2.0
    assert api.inputs["protocolType"] == "HTTP"
    assert integration.inputs["integrationType"] == "AWS_PROXY"
    assert integration.inputs["integrationUri"] == ingest.outputs["arn"]
    assert integration.inputs["payloadFormatVersion"] == "2.0"
    assert sorted(r.inputs["routeKey"] for r in routes) == ["$default", "GET /logs", "POST /ingest"]
    assert all(r.inputs["target"] == f"integrations/{integration.id}" for r in routes)
    # on an auto-deployed default stage, throttled, with JSON access logs
    assert stage.inputs["name"] == "$default" and stage.inputs["autoDeploy"] is True
    assert stage.input("defaultRouteSettings") == {"throttlingRateLimit": 50, "throttlingBurstLimit": 100}
    assert "requestId" in json.loads(stage.input("accessLogSettings")["format"])
    # and only this API may invoke the function
    (permission,) = [
        p
        for p in dev.of_type("aws:lambda/permission:Permission")
        if p.name.startswith("headrace-dev-ingest-api")
    ]
    assert permission.inputs["principal"] == "apigateway.amazonaws.com"
    assert permission.inputs["sourceArn"] == f"{api.outputs['executionArn']}/*/*"
    assert dev.outputs["ingest_api_url"] == api.outputs["apiEndpoint"]


def test_function_url_on_localstack(local: Deployment) -> None:
    (url,) = local.of_type("aws:lambda/functionUrl:FunctionUrl")
    permissions: dict[str, Any] = {
        p.inputs["action"]: p
        for p in local.of_type("aws:lambda/permission:Permission")
        if "ingest-api" in p.name
    }
    # Then the ingest function has a public URL (the function checks API keys itself)
    assert url.inputs["functionName"] == local.outputs["function_names"]["ingest"]
    assert url.inputs["authorizationType"] == "NONE"
    assert permissions["lambda:InvokeFunctionUrl"].inputs["functionUrlAuthType"] == "NONE"
    assert permissions["lambda:InvokeFunction"].inputs["invokedViaFunctionUrl"] is True
    assert local.outputs["ingest_api_url"] == url.outputs["functionUrl"].rstrip("/")
