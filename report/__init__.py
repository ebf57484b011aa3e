"""Human-readable outputs drawn from the run's tables: the regime scatter PNG and the one-file HTML summary."""
