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

__version__ = "0.2.0"

__all__ = ["__version__", "sweep", "run", "load", "Study", "Run", "LossbenchError"]

_API = {"sweep", "load", "Study", "Run", "LossbenchError"}


class _CallableModule(_types.ModuleType):
    """A submodule whose name is also an API function (``lossbench.run``, ``lossbench.sweep``).

    Importing a submodule binds its name on the package (``lossbench.run`` is then the module
    :mod:`lossbench.run`, the Hydra entry point), which would hide the API function of that name.
    So the bound module is given this class: it stays the module (``lossbench.run.main``) and a call
    goes to the API (``lossbench.run([...])`` is :func:`lossbench.api.run`).
    """

    def __call__(self, *args, **kwargs):
        from lossbench import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


_CALLABLE_SUBMODULES = {"run", "sweep"}


class _Package(_types.ModuleType):
    """The package module: lazy API attributes; submodules named like an API function stay callable."""

    def __setattr__(self, name, value):
        if (name in _CALLABLE_SUBMODULES and isinstance(value, _types.ModuleType)
                and type(value) is _types.ModuleType):
            value.__class__ = _CallableModule  # the import system binding the submodule lossbench.<name>
        super().__setattr__(name, value)

    def __getattr__(self, name):
        if name in _API or name in _CALLABLE_SUBMODULES:  # the submodule of that name is not loaded yet
            from lossbench import api

            return getattr(api, name)
        raise AttributeError(f"module 'lossbench' has no attribute {name!r}")

    def __dir__(self):
        return sorted({*super().__dir__(), *__all__})


_sys.modules[__name__].__class__ = _Package
