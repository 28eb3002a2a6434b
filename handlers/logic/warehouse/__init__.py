"""The warehouse stage: dataset tables, schema drift, and rows as COPY input (pure logic)."""
