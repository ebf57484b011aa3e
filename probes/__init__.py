"""Measurements: one probe per module, each a pure function from responses to a frozen record."""
