"""quantscreen's pytest plugins: options, the checkpoint fixtures and the reporter."""

pytest_plugins = ["fixtures.options", "fixtures.checkpoints", "fixtures.reporter"]
