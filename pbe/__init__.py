"""pbe: Paint by Example, reimplemented from scratch."""

__version__ = "0.1.0"
