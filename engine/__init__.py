"""Loading, deriving and generating from checkpoints. Torch is imported lazily so pytest startup stays fast."""

__version__ = "0.1.0"
