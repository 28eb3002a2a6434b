"""The ingest API in front of the ingest function: an HTTP API (``POST /ingest``,
``GET /logs``), or a Lambda function URL where HTTP APIs are unavailable (LocalStack's
free tier). Both hand the function the same payload (format 2.0); callers authenticate
with their tenant's API key, which the function checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

# $default sends every other request to the function too, so a wrong method or path gets
# the API's own JSON answer (405 with Allow, 404) instead of API Gateway's {"message"}.
ROUTES = ("POST /ingest", "GET /logs", "$default")

ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationError": "$context.integrationErrorMessage",
        "latency": "$context.responseLatency",
    }
)


@dataclass(frozen=True)
class IngestApiArgs:
    function_name: pulumi.Input[str]
    function_arn: pulumi.Input[str]
    endpoint: Literal["http_api", "function_url"] = "http_api"
    throttle_rate_per_second: float = 50
    throttle_burst: int = 100
    log_retention_days: int = 30


class IngestApi(pulumi.ComponentResource):
    def __init__(self, name: str, args: IngestApiArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:ingest:IngestApi", name, None, opts)
        if args.endpoint == "http_api":
            self.url = self._http_api(name, args)
        else:
            self.url = self._function_url(name, args)
        self.register_outputs({"url": self.url})

    def _http_api(self, name: str, args: IngestApiArgs) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        self.api = aws.apigatewayv2.Api(
            name, protocol_type="HTTP", description="headrace ingest API", opts=child
        )
        integration = aws.apigatewayv2.Integration(
            f"{name}-lambda",
            api_id=self.api.id,
            integration_type="AWS_PROXY",
            integration_uri=args.function_arn,
            integration_method="POST",
            payload_format_version="2.0",
            opts=child,
        )
        for route in ROUTES:
            aws.apigatewayv2.Route(
                f"{name}-{'default-route' if route == '$default' else route.split()[1].strip('/')}",
                api_id=self.api.id,
                route_key=route,
                target=pulumi.Output.concat("integrations/", integration.id),
                opts=child,
            )
        access_logs = aws.cloudwatch.LogGroup(
            f"{name}-access-logs", retention_in_days=args.log_retention_days, opts=child
        )
        aws.apigatewayv2.Stage(
            f"{name}-default",
            api_id=self.api.id,
            name="$default",
            auto_deploy=True,
            default_route_settings=aws.apigatewayv2.StageDefaultRouteSettingsArgs(
                throttling_rate_limit=args.throttle_rate_per_second,
                throttling_burst_limit=args.throttle_burst,
            ),
            access_log_settings=aws.apigatewayv2.StageAccessLogSettingsArgs(
                destination_arn=access_logs.arn, format=ACCESS_LOG_FORMAT
            ),
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-invoke",
            action="lambda:InvokeFunction",
            function=args.function_name,
            principal="apigateway.amazonaws.com",
            # Only this API's routes, any stage.
            source_arn=pulumi.Output.concat(self.api.execution_arn, "/*/*"),
            opts=child,
        )
        return self.api.api_endpoint

    def _function_url(self, name: str, args: IngestApiArgs) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        # Public like the HTTP API; requests are authenticated by the function (x-api-key).
        self.function_url = aws.lambda_.FunctionUrl(
            f"{name}-url", function_name=args.function_name, authorization_type="NONE", opts=child
        )
        # A public function URL needs both grants (InvokeFunction only via the URL).
        aws.lambda_.Permission(
            f"{name}-url-invoke-url",
            action="lambda:InvokeFunctionUrl",
            function=args.function_name,
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-url-invoke",
            action="lambda:InvokeFunction",
            function=args.function_name,
            principal="*",
            invoked_via_function_url=True,
            opts=child,
        )
        return self.function_url.function_url.apply(lambda url: url.rstrip("/"))
