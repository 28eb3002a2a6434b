"""The daily report and the operational signals (pure logic over metadata items)."""
