"""Verdict logic over measured cells: regimes, deployment actions, paired statistics and screen outcomes."""
