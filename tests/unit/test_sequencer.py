"""S3's sequencer orders the writes of one key (AWS: "Event message structure")."""

from __future__ import annotations

from handlers.models.events import sequencer_order


def test_the_shorter_sequencer_is_padded_with_zeros_on_the_left_then_compared():
    # the S3 User Guide: left-pad the shorter with zeros, then compare (as hex numbers)
    assert sequencer_order("0062A1F4B03C5E1A", "0062A1F4B03C5E1A01") == -1
    assert sequencer_order("62A1F4B03C5E1B", "0062A1F4B03C5E1A") == 1  # 1B after 1A, padded
    assert (
        sequencer_order("0062A1F4B03C5E1A99", "0062A1F4B03C5E1B") == 1
    )  # longer: 00 in front of the shorter
    assert sequencer_order("0062a1f4b03c5e1a00", "0062A1F4B03C5E1B00") == -1  # case does not matter


def test_sequencers_that_cannot_tell_the_order_say_so():
    # missing (a replayed event of an item without one), equal (not two distinct S3 writes), not hex
    assert sequencer_order(None, "0062A1F4B03C5E1A") is None
    assert sequencer_order("0062A1F4B03C5E1A", "") is None
    assert sequencer_order("0062A1F4B03C5E1A", "000062A1F4B03C5E1A") is None
    assert sequencer_order("zz", "0062A1F4B03C5E1A") is None
