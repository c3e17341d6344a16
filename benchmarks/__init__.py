"""The aopay_async benchmark suite: ``python -m benchmarks`` (``--quick`` for a short run).

It measures the client against the alternatives in the same run and reports ratios: HTTP
throughput and client CPU per request against a fast local server (nginx when installed,
else the sandbox), decoding cost, rate-limit accuracy and bulk memory. It writes
``benchmarks/RESULTS.md`` and ``benchmarks/results.png``. Nothing here is part of the
library; timing claims live here and never in a test that could fail on a slow machine.
"""
