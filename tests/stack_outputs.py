"""Outputs of a stack for tests that need one (every output StackOutputs requires)."""

STACK_OUTPUTS: dict[str, str] = {
    "raw_bucket": "raw",
    "processed_bucket": "processed",
    "reports_bucket": "reports",
    "processing_queue_url": "q",
    "processing_dlq_url": "q",
    "load_queue_url": "q",
    "load_dlq_url": "q",
    "metadata_table": "t",
    "db_secret_arn": "arn",
    "alerts_topic_arn": "arn",
    "ingest_api_url": "https://x",
    "region": "eu-west-1",
}
