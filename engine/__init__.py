"""Loading, deriving and generating from checkpoints. Torch is imported lazily so pytest startup stays fast."""

__version__ = "0.1.0"  # the measurement code's version, part of every cache key (not the package version)
