"""The embedded local runtime: AWS emulator, deployment of the real Pulumi program onto
it, the Lambda executor, and an embedded PostgreSQL."""
