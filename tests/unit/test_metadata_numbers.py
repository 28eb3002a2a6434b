"""Numbers on the metadata item: what DynamoDB cannot hold, or gives back in a form boto3
cannot read, is kept as text instead of failing the file."""

from __future__ import annotations

from decimal import Decimal

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from handlers.dal.metadata import to_dynamo


@pytest.mark.parametrize("number", [0, 7, -2.5, 29.99, 1e-130, 9.99e37, 1735689600123])
def test_numbers_dynamodb_holds_stay_numbers(number):
    assert to_dynamo({"x": number})["x"] == Decimal(str(number))


@pytest.mark.parametrize("number", [1e-140, -1e-140, 1e-300, 5e126, 1.5e200, 1e38, 1.5e50])
def test_numbers_beyond_it_are_kept_as_text(number):
    stored = to_dynamo({"x": number})["x"]
    assert isinstance(stored, str) and float(stored) == number
    # and the item reads back (DynamoDB returns 1e38 and above with every digit written out,
    # which boto3's reader refuses)
    wire = TypeSerializer().serialize(stored)
    assert TypeDeserializer().deserialize(wire) == stored
