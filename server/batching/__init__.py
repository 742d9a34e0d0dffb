"""Getting requests to instances: the dynamic batcher (scheduler), its bounded priority queue,
the instances that run batches on worker threads, and the protocol's statistics.

May import: runtime, observability, protocol, settings. Runs on the event loop; never blocks
it (the work happens on worker threads).
"""
