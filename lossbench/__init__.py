"""lossbench: compare loss functions and optimizers fairly and reproducibly.

The Python API (:mod:`lossbench.api`), loaded on first use so ``import lossbench`` stays light::

    import lossbench
    study = lossbench.sweep(["loss=l2,ce", "seed=0,1,2"], sweep_dir="runs/demo")   # -> Study
    run = lossbench.run(["loss=ce", "trainer.epochs=5"])                          # -> Run
    again = lossbench.load("runs/demo")                                           # Study | Run

The numerical core is importable piece by piece: :mod:`lossbench.build` (a run from a composed
config), :mod:`lossbench.train`, :mod:`lossbench.losses` (the loss contract in the README).
"""

import sys as _sys
import types as _types

__version__ = "0.1.0"

__all__ = ["__version__", "sweep", "run", "load", "Study", "Run", "LossbenchError"]

_API = {"sweep", "load", "Study", "Run", "LossbenchError"}


class _RunModule(_types.ModuleType):
    """The module :mod:`lossbench.run` (the Hydra entry point), callable as :func:`lossbench.api.run`.

    ``lossbench.run`` names both the submodule and the API function: importing the submodule binds
    the name ``run`` on the package to it, so the module itself answers a call.
    """

    def __call__(self, overrides=(), run_dir=None, **options):
        from lossbench.api import run as api_run

        return api_run(overrides, run_dir, **options)


class _Package(_types.ModuleType):
    """The package module: lazy API attributes, and ``lossbench.run`` callable whichever it is bound to."""

    def __setattr__(self, name, value):
        if name == "run" and isinstance(value, _types.ModuleType) and not isinstance(value, _RunModule):
            value.__class__ = _RunModule  # the import system binding the submodule lossbench.run
        super().__setattr__(name, value)

    def __getattr__(self, name):
        if name in _API:
            from lossbench import api

            return getattr(api, name)
        if name == "run":
            from lossbench.api import run as api_run  # lossbench.run (the submodule) is not loaded yet

            return api_run
        raise AttributeError(f"module 'lossbench' has no attribute {name!r}")

    def __dir__(self):
        return sorted({*super().__dir__(), *__all__})


_sys.modules[__name__].__class__ = _Package
