"""Neural-network building blocks. `functional` (imported as F) holds the stateless ops."""

from . import functional

__all__ = ["functional"]
