"""Data access: the only package that calls AWS. Clients honour AWS_ENDPOINT_URL, so the
same code runs against AWS, LocalStack and the embedded runtime."""
