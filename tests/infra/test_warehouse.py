"""The warehouse: private encrypted RDS, its network, and the one connection secret."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.pipeline import WAREHOUSE_SETUP_MODULES, warehouse_setup_code_hash
from tests.tls import authority

from .conftest import DB_PASSWORD, Deployment, deploy
from .mocks import is_secret

ROOT = Path(__file__).resolve().parents[2]


def _instance(stack: Deployment) -> Any:
    (instance,) = stack.of_type("aws:rds/instance:Instance")
    return instance


def test_rds_is_private_encrypted_and_backed_up(dev: Deployment) -> None:
    # Given dev's database
    db = _instance(dev).inputs
    # Then it is PostgreSQL, not publicly accessible, encrypted, backed up for 7 days
    assert db["engine"] == "postgres" and db["engineVersion"] == "16"
    assert db["publiclyAccessible"] is False
    assert db["storageEncrypted"] is True
    assert db["backupRetentionPeriod"] == 7
    # and in dev it can be deleted without protection or final snapshot
    assert db["deletionProtection"] is False and db["skipFinalSnapshot"] is True
    # and it only accepts TLS connections
    (group,) = dev.of_type("aws:rds/parameterGroup:ParameterGroup")
    assert group.inputs["family"] == "postgres16"
    assert {(p["name"], p["value"]) for p in group.input("parameters")} == {("rds.force_ssl", "1")}
    assert db["parameterGroupName"] == group.outputs["name"]
    (subnets,) = dev.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert db["dbSubnetGroupName"] == subnets.outputs["name"]


def test_a_new_major_version_is_applied_by_the_update_that_sets_it(dev: Deployment) -> None:
    # Given dev's database, whose engine_version is a major version (its parameter group's family)
    db = _instance(dev).inputs
    # Then a later engine_version is an upgrade RDS accepts (ModifyDBInstance refuses a new
    # major version without AllowMajorVersionUpgrade) and applies during the update, not in
    # the next maintenance window: the replaced parameter group is detached by then, and can
    # be deleted
    assert db["allowMajorVersionUpgrade"] is True
    assert db["applyImmediately"] is True


def test_prod_protects_the_database(tiny_archive: Path) -> None:
    # Given the dev stack turned into prod
    stack = deploy("dev", tiny_archive, {"headrace:environment": "prod"})
    db = _instance(stack).inputs
    # Then deletion protection is on and deleting it leaves a final snapshot
    assert db["deletionProtection"] is True
    assert db["skipFinalSnapshot"] is False
    # named per instance (a name is taken for good, so a fixed one fails a second destroy)
    (snapshot_id,) = stack.of_type("random:index/randomId:RandomId")
    assert (
        db["finalSnapshotIdentifier"]
        == f"headrace-{stack.stack}-warehouse-final-{snapshot_id.outputs['hex']}"
    )
    # and the tables are protected too
    assert all(
        t.inputs["deletionProtectionEnabled"] is True for t in stack.of_type("aws:dynamodb/table:Table")
    )


def _passwords(stack: Deployment) -> dict[str, str]:
    return {
        r.name.rsplit("-warehouse-", 1)[1]: r.outputs["result"]
        for r in stack.of_type("random:index/randomPassword:RandomPassword")
    }


def _secret_values(stack: Deployment) -> dict[str, Any]:
    """Secret name (without the stack's prefix) -> the value its version holds, which must be
    marked secret."""
    names = {
        r.id: r.name.rsplit("-warehouse-", 1)[1] for r in stack.of_type("aws:secretsmanager/secret:Secret")
    }
    values = {}
    for version in stack.of_type("aws:secretsmanager/secretVersion:SecretVersion"):
        assert is_secret(version.inputs["secretString"]), version.name
        values[names[version.inputs["secretId"]]] = json.loads(version.input("secretString"))
    return values


def test_rds_passwords_live_only_in_secrets_manager(dev: Deployment) -> None:
    # Given the generated passwords: the RDS master user's and the loader's role's
    passwords = _passwords(dev)
    assert set(passwords) == {"db-password", "db-loader-password"}
    db = _instance(dev)
    # Then the database gets the master password as a secret
    assert is_secret(db.inputs["password"]) and db.input("password") == passwords["db-password"]
    # and the secrets hold the connections in the contract's shape: the master user's in the
    # administrator secret, the loader's own role in the connection secret
    connection = {"host": db.outputs["address"], "port": 5432, "dbname": "headrace", "sslmode": "require"}
    assert _secret_values(dev) == {
        "db-admin-secret": {**connection, "username": "headrace", "password": passwords["db-password"]},
        "db-secret": {
            **connection,
            "username": "headrace_loader",
            "password": passwords["db-loader-password"],
        },
    }
    # (sslmode require: RDS enforces TLS; never a fall-back to plain text)
    assert dev.outputs["db_secret_arn"] == dev.named("headrace-dev-warehouse-db-secret").outputs["arn"]
    # and no other resource input carries either password (no environment variable, no output)
    for name, value in passwords.items():
        holders = [r for r in dev.resources if value in json.dumps(r.inputs, default=str)]
        assert {r.type for r in holders} == {
            "aws:secretsmanager/secretVersion:SecretVersion",
            *(["aws:rds/instance:Instance"] if name == "db-password" else []),
        }, name
        assert value not in json.dumps(dev.outputs)


def test_only_the_setup_function_reads_the_master_users_secret(dev: Deployment) -> None:
    # Given what each role of the stack may read in Secrets Manager
    admin = dev.outputs["db_admin_secret_arn"]
    assert admin == dev.named("headrace-dev-warehouse-db-admin-secret").outputs["arn"]
    readers: dict[str, set[str]] = {}
    for policy in dev.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in policy.json_input("policy")["Statement"]:
            if statement["Effect"] == "Allow" and "secretsmanager:GetSecretValue" in statement["Action"]:
                readers.setdefault(policy.name.removesuffix("-policy"), set()).update(statement["Resource"])
    # Then the setup function reads both secrets and the loader only its own
    assert readers == {
        "headrace-dev-warehouse-setup": {admin, dev.outputs["db_secret_arn"]},
        "headrace-dev-loader": {dev.outputs["db_secret_arn"]},
    }


def test_the_setup_function_makes_the_loaders_role_during_the_deployment(dev: Deployment) -> None:
    # Given the setup function and its run
    setup = dev.named("headrace-dev-warehouse-setup", "aws:lambda/function:Function")
    (run,) = dev.of_type("aws:lambda/invocation:Invocation")
    loader = dev.named("headrace-dev-loader", "aws:lambda/function:Function")
    # Then it runs the setup handler where the loader runs (the database's only way in)
    assert setup.inputs["handler"] == "handlers.warehouse_setup.lambda_handler"
    assert setup.inputs["vpcConfig"] == loader.inputs["vpcConfig"]
    assert (
        setup.inputs["environment"]["variables"].items()
        >= {
            "ADMIN_SECRET_ARN": dev.outputs["db_admin_secret_arn"],
            "DB_SECRET_ARN": dev.outputs["db_secret_arn"],
            "WAREHOUSE_SCHEMA": "headrace",
        }.items()
    )
    # and the deployment invokes it once the database exists, again whenever a secret's
    # value, the schema or the code changes
    assert run.inputs["functionName"] == setup.outputs["name"]
    versions = {
        r.name.rsplit("-warehouse-", 1)[1]: r.outputs["versionId"]
        for r in dev.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    }
    assert run.inputs["triggers"] == {
        "admin_secret": versions["db-admin-secret-value"],
        "loader_secret": versions["db-secret-value"],
        "schema": "headrace",
        "code": warehouse_setup_code_hash(),
    }


def test_the_setup_runs_again_for_a_change_of_its_own_code_only(tmp_path: Path) -> None:
    # Given the repository's setup modules, and a copy with another handler changed
    for module in {*WAREHOUSE_SETUP_MODULES, "handlers/report.py"}:
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_bytes((ROOT / module).read_bytes())
    before = warehouse_setup_code_hash(tmp_path)
    assert before == warehouse_setup_code_hash()
    (tmp_path / "handlers/report.py").write_text("# changed\n")
    # Then a change elsewhere does not trigger it (every code deployment would need the database)
    assert warehouse_setup_code_hash(tmp_path) == before
    # and a change of one of its modules does
    (tmp_path / "handlers/dal/warehouse_roles.py").write_text("# changed\n")
    assert warehouse_setup_code_hash(tmp_path) != before


def test_external_database_password_comes_from_secret_config(local: Deployment) -> None:
    # Given the local stack (warehouse.mode external, password set with --secret)
    (version,) = local.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    # Then the same secret holds the configured connection, marked secret
    assert is_secret(version.inputs["secretString"])
    assert json.loads(version.input("secretString")) == {
        "host": "host.docker.internal",
        "port": 5432,
        "dbname": "headrace",
        "username": "headrace",
        "sslmode": "prefer",  # LocalStack's PostgreSQL; on AWS at least require
        "password": DB_PASSWORD,
    }
    # and the password appears nowhere else
    holders = [r for r in local.resources if DB_PASSWORD in json.dumps(r.inputs, default=str)]
    assert [r.type for r in holders] == ["aws:secretsmanager/secretVersion:SecretVersion"]
    # and the secret is deleted at once when the local stack is destroyed
    assert local.of_type("aws:secretsmanager/secret:Secret")[0].inputs["recoveryWindowInDays"] == 0


@pytest.mark.parametrize("mode", ["rds", "external"])
def test_the_secret_carries_the_authorities_that_verify_the_database(tiny_archive: Path, mode: str) -> None:
    # Given the certificate authorities of the database in warehouse.sslrootcert
    pem = authority("database CA").pem
    external = {"external": {"host": "db.example.com"}} if mode == "external" else {}
    stack = deploy(
        "dev", tiny_archive, {"headrace:warehouse": {"mode": mode, "sslrootcert": pem, **external}}
    )
    # Then the connection secrets hold them (the loader's, and on RDS the administrator's
    # the setup function uses), and verify-full is the default
    secrets = _secret_values(stack)
    assert set(secrets) == ({"db-secret", "db-admin-secret"} if mode == "rds" else {"db-secret"})
    for secret in secrets.values():
        assert (secret["sslmode"], secret["sslrootcert"]) == ("verify-full", pem)


def test_external_mode_without_password_fails_naming_the_key(tiny_archive: Path) -> None:
    # Given the local stack without headrace:db_password
    try:
        deploy("local", tiny_archive, secrets={})
    except Exception as error:  # the engine reports a RunError
        message = str(error)
    else:
        raise AssertionError("the program deployed without a database password")
    # Then the program stops and says which key to set, and how
    assert "headrace:db_password" in message and "--secret" in message


def test_a_password_set_without_secret_is_refused(tiny_archive: Path) -> None:
    # Given the local stack whose password was set in plain text (pulumi config set
    # headrace:db_password ..., without --secret: it sits readable in Pulumi.local.yaml)
    try:
        deploy("local", tiny_archive, {"headrace:db_password": "plain-text-password"}, secrets={})
    except Exception as error:  # the engine reports a RunError
        message = str(error)
    else:
        raise AssertionError("the program deployed with a password stored in plain text")
    # Then the program stops, says which key and how to set it, and never shows the value
    assert "headrace:db_password" in message and "plain text" in message and "--secret" in message
    assert "plain-text-password" not in message


def test_network_is_private_with_endpoints_and_no_nat(dev: Deployment) -> None:
    # Given dev's network
    (vpc,) = dev.of_type("aws:ec2/vpc:Vpc")
    subnets = dev.of_type("aws:ec2/subnet:Subnet")
    endpoints = {r.inputs["serviceName"]: r for r in dev.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    # Then its subnets are private, in two zones, with no NAT or internet gateway
    assert vpc.inputs["enableDnsHostnames"] is True and vpc.inputs["enableDnsSupport"] is True
    # (Availability Zones: not a Local Zone the account opted in to, which AWS lists too)
    assert sorted(s.inputs["availabilityZone"] for s in subnets) == ["eu-west-1a", "eu-west-1b"]
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets)
    assert not {"aws:ec2/natGateway:NatGateway", "aws:ec2/internetGateway:InternetGateway"} & dev.types()
    # and the loader reaches S3 and DynamoDB (gateway) and Secrets Manager (interface)
    assert {k: v.inputs["vpcEndpointType"] for k, v in endpoints.items()} == {
        "com.amazonaws.eu-west-1.s3": "Gateway",
        "com.amazonaws.eu-west-1.dynamodb": "Gateway",
        "com.amazonaws.eu-west-1.secretsmanager": "Interface",
    }
    assert endpoints["com.amazonaws.eu-west-1.secretsmanager"].inputs["privateDnsEnabled"] is True
    # and the database sits in those subnets
    (subnet_group,) = dev.of_type("aws:rds/subnetGroup:SubnetGroup")
    assert subnet_group.inputs["subnetIds"] == [s.id for s in subnets]


def test_endpoints_pass_only_the_loaders_own_requests(dev: Deployment) -> None:
    # Given dev's endpoints and what the loader's role grants on their services
    endpoints = {
        r.inputs["serviceName"].rsplit(".", 1)[-1]: r.json_input("policy")
        for r in dev.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    processed = f"arn:aws:s3:::{dev.outputs['processed_bucket']}"
    metadata = f"arn:aws:dynamodb:eu-west-1:111122223333:table/{dev.outputs['metadata_table']}"

    def passes(policy: dict[str, Any]) -> dict[str, set[str]]:
        assert all(s["Effect"] == "Allow" and s["Principal"] == "*" for s in policy["Statement"])
        grants: dict[str, set[str]] = {}
        for statement in policy["Statement"]:
            for action in statement["Action"]:
                grants.setdefault(action, set()).update(statement["Resource"])
        return grants

    # Then each lets through only the loader's calls on the stack's own bucket, table and
    # secret (AWS's default would pass any request, to any account's resources)
    assert passes(endpoints["s3"]) == {
        "s3:GetObject": {f"{processed}/parquet/*", f"{processed}/summaries/*"},
        "s3:ListBucket": {processed},
    }
    assert passes(endpoints["dynamodb"]) == {
        "dynamodb:GetItem": {metadata},
        "dynamodb:UpdateItem": {metadata},
    }
    # (and the warehouse setup function's: the administrator secret)
    assert passes(endpoints["secretsmanager"]) == {
        "secretsmanager:GetSecretValue": {dev.outputs["db_secret_arn"], dev.outputs["db_admin_secret_arn"]}
    }
    # and every call the roles in the network grant on those services passes its endpoint
    in_network = [
        r
        for r in dev.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.name in ("headrace-dev-loader-policy", "headrace-dev-warehouse-setup-policy")
    ]
    assert len(in_network) == 2
    for policy in in_network:
        for statement in policy.json_input("policy")["Statement"]:
            for action in statement["Action"]:
                service = action.split(":", 1)[0]
                if statement["Effect"] == "Allow" and service in endpoints:
                    assert set(statement["Resource"]) <= passes(endpoints[service])[action], action


def test_security_groups_allow_only_loader_traffic(dev: Deployment) -> None:
    # Given the security group rules
    groups = {
        r.id: r.name.removeprefix("headrace-dev-warehouse-net-")
        for r in dev.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    ingress = dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    egress = dev.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    # Then the database and the endpoints accept only the loader, on their ports
    assert {
        (
            groups[r.inputs["securityGroupId"]],
            groups[r.inputs["referencedSecurityGroupId"]],
            r.inputs["fromPort"],
        )
        for r in ingress
    } == {
        ("database", "loader", 5432),
        ("endpoints", "loader", 443),
    }
    # and nothing is open to an address range
    assert all("cidrIpv4" not in r.inputs for r in [*ingress, *egress])
    # and the loader may only talk to the database, the endpoints and the gateway prefix lists
    assert all(groups[r.inputs["securityGroupId"]] == "loader" for r in egress)
    assert sorted(r.inputs["toPort"] for r in egress) == [443, 443, 443, 5432]
    (db,) = dev.of_type("aws:rds/instance:Instance")
    database_sg = next(i for i, n in groups.items() if n == "database")
    assert db.inputs["vpcSecurityGroupIds"] == [database_sg]


def test_the_vpcs_default_security_group_lets_nothing_through(dev: Deployment) -> None:
    # Given dev's network
    (vpc,) = dev.of_type("aws:ec2/vpc:Vpc")
    # Then the VPC's default security group (all traffic between its members and out, as AWS
    # makes it) is adopted with no rules at all, and no resource is placed in it
    (default,) = dev.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs["vpcId"] == vpc.id
    assert not default.inputs.get("ingress") and not default.inputs.get("egress")
    assert default.id and all(
        default.id not in json.dumps(r.inputs, default=str) for r in dev.resources if r is not default
    )


def test_nat_gateway_is_opt_in(tiny_archive: Path) -> None:
    # Given dev with network.nat_gateway true
    stack = deploy("dev", tiny_archive, {"headrace:warehouse": {"network": {"nat_gateway": True}}})
    # Then a NAT gateway in a public subnet gives the loader HTTPS egress
    assert {
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/eip:Eip",
    } <= stack.types()
    egress = stack.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert [r.inputs["cidrIpv4"] for r in egress if "cidrIpv4" in r.inputs] == ["0.0.0.0/0"]
