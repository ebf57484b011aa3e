"""The pipeline that measures a cell: the plan from models.yaml, the workspace (paths, derivation, engine choice),
generation through the engine, every probe and refusal instrument, the judge, KLD, the canary and preflight checks."""
