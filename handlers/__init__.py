"""Lambda handlers of headrace.

Layers (each imports only the ones below it):

- ``handlers.<name>``  thin Lambda entry points (Powertools wiring only)
- ``handlers.logic``   pure functions, no boto3 (the processing core lives in ``logic.processing``)
- ``handlers.dal``     the only code that talks to AWS
- ``handlers.models``  pydantic models: settings, events, records
"""
