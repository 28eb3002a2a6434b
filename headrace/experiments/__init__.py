"""The experiment suite (issue 7): measure any stack from its outputs file, chart the results.

``run`` drives the experiments (``latency``, ``filesize``, ``throughput``, ``failure``,
``sweep``) through the stack's AWS APIs; ``report`` renders charts and ``summary.md``;
``stats`` and ``cost`` are the pure arithmetic. See docs/experiments.md.
"""
