"""The warehouse: PostgreSQL on RDS in a private network, or a database the user runs.

Either way the loader finds it through one Secrets Manager secret whose value is
``{"host", "port", "dbname", "username", "password"}`` (docs/contracts.md). The password
exists only in that secret (and, encrypted, in the Pulumi state); no output carries it.

On RDS the loader does not log in as the master user: the master user's credentials are in
a second secret, which only the warehouse setup function reads (pipeline.py), and the
connection secret names a role of the loader's own that the setup function makes.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from .functions import VpcPlacement
from .policies import Allow, resource_policy

POSTGRES_PORT = 5432
HTTPS_PORT = 443


def _nth(index: int) -> Callable[[Sequence[str]], str]:
    def pick(names: Sequence[str]) -> str:
        if index >= len(names):
            raise ValueError(f"the region has {len(names)} availability zones; az_count asks for {index + 1}")
        return names[index]

    return pick


@dataclass(frozen=True)
class NetworkArgs:
    region: str
    cidr: str
    az_count: int = 2
    nat_gateway: bool = False
    # What may pass through the endpoints: the loader's grants on S3, DynamoDB and Secrets
    # Manager (each endpoint takes its service's). Anything else is refused at the endpoint,
    # whichever credentials sign it: another bucket, table or secret, another account's.
    endpoint_statements: Sequence[Allow] = ()


def endpoint_policy(service: str, statements: Sequence[Allow]) -> pulumi.Output[str]:
    """The policy of ``service``'s VPC endpoint: ``statements``' actions of that service
    on their resources, to any principal (the identity and resource policies still decide
    who), and nothing else (AWS's default endpoint policy allows everything)."""
    allowed = []
    for statement in statements:
        actions = [a for a in statement.actions if a.split(":", 1)[0] == service]
        if actions:
            allowed.append(
                dataclasses.replace(statement, actions=tuple(actions)).render() | {"Principal": "*"}
            )
    if not allowed:
        raise ValueError(f"no statement names a {service} action: its endpoint would refuse every request")
    return resource_policy(allowed)


class Network(pulumi.ComponentResource):
    """A VPC with private subnets only (by default): the loader reaches S3 and DynamoDB
    through gateway endpoints (free) and Secrets Manager through an interface endpoint, so
    it needs no NAT gateway. Security groups allow exactly loader -> database and
    loader -> endpoints."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:warehouse:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # private DNS of the interface endpoint
            tags={"Name": f"{name}-vpc"},
            opts=child,
        )
        # Every VPC comes with a default security group that lets its members reach one another
        # on every port, and anywhere out. Nothing here uses it (each resource has its own
        # group below); adopted with no rules, it lets nothing through should something be
        # put in it by default (Security Hub EC2.2).
        self.default_sg = aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            tags={"Name": f"{name}-default (no rules)"},
            opts=child,
        )
        # Availability Zones only: where the account has opted in to Local Zones, AWS lists
        # them too (and their names sort first), and the subnets' zones must serve RDS,
        # Lambda and the interface endpoint.
        zones = aws.get_availability_zones_output(
            state="available",
            filters=[
                aws.GetAvailabilityZonesFilterArgs(name="opt-in-status", values=["opt-in-not-required"])
            ],
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        blocks = list(
            ipaddress.IPv4Network(args.cidr).subnets(
                new_prefix=ipaddress.IPv4Network(args.cidr).prefixlen + 4
            )
        )
        self.private_route_table = aws.ec2.RouteTable(
            f"{name}-private-routes", vpc_id=self.vpc.id, tags={"Name": f"{name}-private"}, opts=child
        )
        self.private_subnets: list[aws.ec2.Subnet] = []
        for index in range(args.az_count):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=self.vpc.id,
                cidr_block=str(blocks[index]),
                availability_zone=zones.names.apply(_nth(index)),
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-private-{index}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}-routes",
                subnet_id=subnet.id,
                route_table_id=self.private_route_table.id,
                opts=child,
            )
            self.private_subnets.append(subnet)

        def security_group(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(
                f"{name}-{role}",
                vpc_id=self.vpc.id,
                description=description,
                tags={"Name": f"{name}-{role}"},
                opts=child,
            )

        # No inline rules: the provider removes AWS's default allow-all egress, so each
        # group allows exactly the rules below.
        self.loader_sg = security_group("loader", "headrace loader function")
        self.database_sg = security_group("database", "headrace PostgreSQL: loader only")
        self.endpoints_sg = security_group("endpoints", "headrace interface endpoints: loader only")

        aws.vpc.SecurityGroupIngressRule(
            f"{name}-database-from-loader",
            security_group_id=self.database_sg.id,
            referenced_security_group_id=self.loader_sg.id,
            ip_protocol="tcp",
            from_port=POSTGRES_PORT,
            to_port=POSTGRES_PORT,
            description="PostgreSQL from the loader",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-loader-to-database",
            security_group_id=self.loader_sg.id,
            referenced_security_group_id=self.database_sg.id,
            ip_protocol="tcp",
            from_port=POSTGRES_PORT,
            to_port=POSTGRES_PORT,
            description="PostgreSQL",
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-from-loader",
            security_group_id=self.endpoints_sg.id,
            referenced_security_group_id=self.loader_sg.id,
            ip_protocol="tcp",
            from_port=HTTPS_PORT,
            to_port=HTTPS_PORT,
            description="HTTPS from the loader",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-loader-to-endpoints",
            security_group_id=self.loader_sg.id,
            referenced_security_group_id=self.endpoints_sg.id,
            ip_protocol="tcp",
            from_port=HTTPS_PORT,
            to_port=HTTPS_PORT,
            description="HTTPS to interface endpoints",
            opts=child,
        )

        self.gateway_endpoints: dict[str, aws.ec2.VpcEndpoint] = {}
        for service in ("s3", "dynamodb"):
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-{service}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=[self.private_route_table.id],
                policy=endpoint_policy(service, args.endpoint_statements),
                tags={"Name": f"{name}-{service}"},
                opts=child,
            )
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-loader-to-{service}",
                security_group_id=self.loader_sg.id,
                prefix_list_id=endpoint.prefix_list_id,
                ip_protocol="tcp",
                from_port=HTTPS_PORT,
                to_port=HTTPS_PORT,
                description=f"HTTPS to {service} (gateway endpoint)",
                opts=child,
            )
            self.gateway_endpoints[service] = endpoint

        self.interface_endpoints: dict[str, aws.ec2.VpcEndpoint] = {}
        for service in ("secretsmanager",):
            self.interface_endpoints[service] = aws.ec2.VpcEndpoint(
                f"{name}-{service}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{args.region}.{service}",
                vpc_endpoint_type="Interface",
                policy=endpoint_policy(service, args.endpoint_statements),
                private_dns_enabled=True,
                subnet_ids=[s.id for s in self.private_subnets],
                security_group_ids=[self.endpoints_sg.id],
                tags={"Name": f"{name}-{service}"},
                opts=child,
            )

        self.nat_gateway: aws.ec2.NatGateway | None = None
        if args.nat_gateway:
            self._nat(name, args, blocks[args.az_count], zones)

        self.register_outputs(
            {"vpc_id": self.vpc.id, "private_subnet_ids": [s.id for s in self.private_subnets]}
        )

    def _nat(
        self,
        name: str,
        args: NetworkArgs,
        block: ipaddress.IPv4Network,
        zones: pulumi.Output[aws.GetAvailabilityZonesResult],
    ) -> None:
        """Opt-in internet egress for the loader: one public subnet with a NAT gateway."""
        child = pulumi.ResourceOptions(parent=self)
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, opts=child)
        public = aws.ec2.Subnet(
            f"{name}-public",
            vpc_id=self.vpc.id,
            cidr_block=str(block),
            availability_zone=zones.names.apply(_nth(0)),
            tags={"Name": f"{name}-public"},
            opts=child,
        )
        public_routes = aws.ec2.RouteTable(f"{name}-public-routes", vpc_id=self.vpc.id, opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-routes", subnet_id=public.id, route_table_id=public_routes.id, opts=child
        )
        address = aws.ec2.Eip(f"{name}-nat-ip", domain="vpc", opts=child)
        self.nat_gateway = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=address.id,
            subnet_id=public.id,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )
        aws.ec2.Route(
            f"{name}-private-default",
            route_table_id=self.private_route_table.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=self.nat_gateway.id,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-loader-to-internet",
            security_group_id=self.loader_sg.id,
            cidr_ipv4="0.0.0.0/0",
            ip_protocol="tcp",
            from_port=HTTPS_PORT,
            to_port=HTTPS_PORT,
            description="HTTPS to the internet through the NAT gateway",
            opts=child,
        )


@dataclass(frozen=True)
class RdsArgs:
    instance_class: str
    allocated_gb: int
    max_allocated_gb: int | None
    engine_version: str
    backup_retention_days: int
    deletion_protection: bool
    multi_az: bool
    final_snapshot: bool  # take a snapshot when the instance is deleted
    # Pulumi's protect (prod): a plan that would delete or replace the instance fails at
    # preview; deletion protection alone stops only the delete, after a replacement's new,
    # empty instance was created and the connection secret pointed at it.
    protect: bool = False


@dataclass(frozen=True)
class ExternalDatabaseArgs:
    host: str
    port: int
    dbname: str
    username: str
    password: pulumi.Input[str]  # a Pulumi secret


@dataclass(frozen=True)
class WarehouseArgs:
    network: NetworkArgs | None = None
    rds: RdsArgs | None = None
    external: ExternalDatabaseArgs | None = None
    secret_recovery_window_days: int = 7
    # libpq's, written into the secret for the loader: how it checks the server's certificate,
    # and the PEM text of the authorities it checks it against
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    dbname: str = "headrace"
    username: str = "headrace"  # RDS: the master user; external: the loader's
    loader_username: str = "headrace_loader"  # RDS: the loader's own role


class Warehouse(pulumi.ComponentResource):
    """RDS PostgreSQL (encrypted, private, backed up, TLS enforced) in its own network, or
    an external database; the connection secret in both cases."""

    def __init__(self, name: str, args: WarehouseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("headrace:warehouse:Warehouse", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if (args.rds is None) == (args.external is None):
            raise ValueError("a warehouse is either rds or external")

        self.network: Network | None = None
        self.instance: aws.rds.Instance | None = None
        self.loader_placement: VpcPlacement | None = None
        # RDS: the master user's credentials, for the setup function alone
        self.admin_secret: aws.secretsmanager.Secret | None = None
        self.admin_secret_version: aws.secretsmanager.SecretVersion | None = None
        self.read_admin_secret: Allow | None = None

        self.secret = aws.secretsmanager.Secret(
            f"{name}-db-secret",
            description="headrace warehouse connection: host, port, dbname, username, password",
            recovery_window_in_days=args.secret_recovery_window_days,
            opts=child,
        )
        # The loader's grant on the secret (the setup function's too, on RDS; the endpoint passes both).
        self.read_secret = Allow("ReadDatabaseSecret", ("secretsmanager:GetSecretValue",), (self.secret.arn,))
        secret_value: pulumi.Output[str]
        if args.rds is not None:
            if args.network is None:
                raise ValueError("an RDS warehouse needs network settings")
            secret_value = self._rds(name, args, args.rds, args.network)
        else:
            assert args.external is not None
            ext = args.external
            secret_value = pulumi.Output.json_dumps(
                {
                    "host": ext.host,
                    "port": ext.port,
                    "dbname": ext.dbname,
                    "username": ext.username,
                    "password": pulumi.Output.secret(ext.password),
                    **self._tls(args),
                }
            )
        self.secret_version = self._secret_value(f"{name}-db-secret-value", self.secret, secret_value)
        self.secret_arn: pulumi.Output[str] = self.secret.arn
        self.instance_identifier: pulumi.Output[str] | None = (
            self.instance.identifier if self.instance is not None else None
        )
        self.register_outputs({"secret_arn": self.secret_arn})

    def _secret_value(
        self, name: str, secret: aws.secretsmanager.Secret, value: pulumi.Output[str]
    ) -> aws.secretsmanager.SecretVersion:
        return aws.secretsmanager.SecretVersion(
            name,
            secret_id=secret.id,
            # Secret because the password is; stored encrypted in the state either way.
            secret_string=value,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["secret_string"]),
        )

    def _rds(
        self, name: str, args: WarehouseArgs, rds: RdsArgs, network_args: NetworkArgs
    ) -> pulumi.Output[str]:
        child = pulumi.ResourceOptions(parent=self)
        self.admin_secret = aws.secretsmanager.Secret(
            f"{name}-db-admin-secret",
            description="headrace warehouse administrator (the RDS master user): read by the setup function only",
            recovery_window_in_days=args.secret_recovery_window_days,
            opts=child,
        )
        self.read_admin_secret = Allow(
            "ReadDatabaseAdministratorSecret", ("secretsmanager:GetSecretValue",), (self.admin_secret.arn,)
        )
        network_args = dataclasses.replace(
            network_args,
            endpoint_statements=[*network_args.endpoint_statements, self.read_secret, self.read_admin_secret],
        )
        self.network = Network(f"{name}-net", network_args, opts=child)
        network = self.network
        self.loader_placement = VpcPlacement(
            subnet_ids=[s.id for s in network.private_subnets], security_group_ids=[network.loader_sg.id]
        )
        subnets = aws.rds.SubnetGroup(
            f"{name}-db-subnets", subnet_ids=[s.id for s in network.private_subnets], opts=child
        )
        parameters = aws.rds.ParameterGroup(
            f"{name}-db-params",
            family=f"postgres{rds.engine_version}",  # a major version (config.py)
            description="headrace: TLS-only connections",
            parameters=[aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1")],
            opts=child,
        )
        # Letters and digits only: safe in any connection string, 40 of them ~ 238 bits.
        self.password = random.RandomPassword(f"{name}-db-password", length=40, special=False, opts=child)
        self.loader_password = random.RandomPassword(
            f"{name}-db-loader-password", length=40, special=False, opts=child
        )
        # A snapshot name is taken for good: a fixed one would make the destroy of a second
        # instance of this stack fail (DBSnapshotAlreadyExists). Random per instance: the
        # keepers are the inputs whose change replaces the instance.
        final_snapshot: pulumi.Output[str] | None = None
        if rds.final_snapshot:
            snapshot_id = random.RandomId(
                f"{name}-db-snapshot-id",
                byte_length=4,
                keepers={
                    "engine": "postgres",
                    "db_name": args.dbname,
                    "username": args.username,
                    "subnets": subnets.name,
                },
                opts=child,
            )
            final_snapshot = pulumi.Output.concat(f"{name}-final-", snapshot_id.hex)
        self.instance = aws.rds.Instance(
            f"{name}-db",
            engine="postgres",
            engine_version=rds.engine_version,
            instance_class=rds.instance_class,
            allocated_storage=rds.allocated_gb,
            max_allocated_storage=rds.max_allocated_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=args.dbname,
            username=args.username,
            password=self.password.result,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[network.database_sg.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=rds.multi_az,
            backup_retention_period=rds.backup_retention_days,
            deletion_protection=rds.deletion_protection,
            skip_final_snapshot=not rds.final_snapshot,
            final_snapshot_identifier=final_snapshot,
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            # A new warehouse.rds.engine_version is a major upgrade: RDS refuses it unless
            # allowed, and applies it (with the new family's parameter group) in the next
            # maintenance window unless told to apply it now, while the old parameter group,
            # still attached, cannot be deleted. Applied now, as every change of `pulumi up`.
            allow_major_version_upgrade=True,
            apply_immediately=True,
            opts=pulumi.ResourceOptions(parent=self, protect=rds.protect),
        )

        def connection(username: str, password: pulumi.Output[str]) -> pulumi.Output[str]:
            assert self.instance is not None
            return pulumi.Output.json_dumps(
                {
                    "host": self.instance.address,
                    "port": self.instance.port,
                    "dbname": args.dbname,
                    "username": username,
                    "password": password,
                    **self._tls(args),
                }
            )

        self.admin_secret_version = self._secret_value(
            f"{name}-db-admin-secret-value",
            self.admin_secret,
            connection(args.username, self.password.result),
        )
        return connection(args.loader_username, self.loader_password.result)

    @staticmethod
    def _tls(args: WarehouseArgs) -> dict[str, str]:
        tls = {"sslmode": args.sslmode}
        if args.sslrootcert is not None:
            tls["sslrootcert"] = args.sslrootcert
        return tls
