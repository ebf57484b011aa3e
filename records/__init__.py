"""Records and config types at the bottom of the house: errors, digests, the models.yaml schema, thresholds, probe
records and the measured cell. Nothing here imports anything else of quantscreen (pyproject's import-linter contract)."""
