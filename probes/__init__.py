"""Measurements: one probe per module, each a pure function from responses to a frozen record. The reply probes
(a module-level `PROBE`, probes.base) are found by probes.registry, not listed."""
