"""Watching the server: Prometheus metrics and histograms, traces, logs, the request record
of the call being handled, the observer every call passes, GPU gauges.

Used by every room. May import: protocol, settings; the metrics exporter reads the models
through a small interface, not the manager itself.
"""
