"""lossbench: compare loss functions and optimizers fairly and reproducibly."""

__version__ = "0.1.0"
