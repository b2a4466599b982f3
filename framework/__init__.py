"""xen970: a discrete-event simulator of Xen on the IBM PowerPC 970."""

__version__ = "0.1.0"

__all__ = ["__version__"]
