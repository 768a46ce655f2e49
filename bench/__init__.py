"""`make bench`: the engine measured beside bare Kafka clients on the same machine, same run.

``bench.run`` is the driver; ``bench.workload`` the deterministic workload; ``bench.child``
the steps run in a fresh process of their own (rebuild, bare consumers, views), so each
one's peak memory and cold start are its own. See docs/BENCHMARKS.md.
"""
