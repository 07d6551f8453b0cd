"""pbe: Paint by Example, reimplemented from scratch."""

__version__ = "0.1.0"
__all__ = ["PaintByExamplePipeline"]


def __getattr__(name: str):
    # Imported on first use, so `import pbe` (and the CLIs that need less) stays fast.
    if name == "PaintByExamplePipeline":
        from pbe.pipeline import PaintByExamplePipeline

        return PaintByExamplePipeline
    raise AttributeError(f"module 'pbe' has no attribute {name!r}")
