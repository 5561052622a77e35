"""Where configuration becomes objects: validate every user-typed value, then build the run.

``build(cfg)`` instantiates the data set, model, loss, optimizer and schedule from their config
groups (``hydra.utils.instantiate``), loads the data, sizes the model from it and tries the loss on
one real sample, so every bad value or impossible combination is reported before training starts,
as a :class:`ConfigError` whose message names the key, the value and what is allowed.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import inspect
import json
import logging
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger("lossbench")

#: Top-level keys that change how a run is shown or scheduled, not its results. ``blas_threads``
#: is one on purpose: a different thread count can change values at round-off level (up to ~1e-15,
#: from BLAS summation order), so identical numbers are promised for the same config, seed and
#: blas_threads; a sweep reuses a finished run whatever its thread count.
NON_RESULT_KEYS = ("progress", "blas_threads", "sweep", "report", "question", "logger")
#: Override roots that make no run, study or group different: the keys above, Hydra's own settings
#: (launcher, folders), and ``experiment``, whose effect shows in the keys it sets.
_NON_RESULT_OVERRIDE_ROOTS = (*NON_RESULT_KEYS, "hydra", "experiment")


def changes_results(key: str) -> bool:
    """False for an override key that changes no number (``progress``, ``sweep.skip_invalid``, ``hydra/launcher``)."""
    return re.split(r"[./]", key.lstrip("+~"), maxsplit=1)[0] not in _NON_RESULT_OVERRIDE_ROOTS
PROGRESS_MODES = ("auto", "bar", "log", "none")
EVALUATE_MODES = ("every", "log")
MAX_EPOCHS = 1_000_000


#: a ConfigError message longer than this keeps its head (the key) and tail (what is allowed)
MAX_MESSAGE = 300


class ConfigError(ValueError):
    """A value the user typed (or a combination of them) that cannot work; the message says why.

    The message stays one short line for any input size: a longer one (a value of 10^6
    characters, say) keeps its first 200 and last 80 characters around "… (N characters) …".
    """

    def __init__(self, message: str):
        message = " ".join(str(message).split("\n"))
        if len(message) > MAX_MESSAGE:
            message = f"{message[:200]} … ({len(message) - 280:,} characters) … {message[-80:]}"
        super().__init__(message)


def resolved(cfg: DictConfig) -> dict:
    """``cfg`` as a plain dict with every ``${...}`` resolved; ConfigError for a missing or bad value."""
    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: add "
                              + " ".join(f"{key}=..." for key in missing) + " to the command")
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        raise ConfigError(f"{key + ': ' if key else ''}{str(err).splitlines()[0]}") from None


def _file_fingerprints(dataset: dict) -> dict[str, str]:
    """sha256 of every file a data-set key points to (a CSV's ``path``), so an edited file is new data."""
    fingerprints = {}
    for key, value in dataset.items():
        try:
            if isinstance(value, str) and value and Path(value).is_file():
                fingerprints[key] = hashlib.sha256(Path(value).read_bytes()).hexdigest()
        except OSError:  # a name too long for a path, an unreadable file: the data set's own check says so
            continue
    return fingerprints


def config_hash(cfg: DictConfig) -> str:
    """sha256 (16 hex digits) of the resolved config without the keys that do not affect results.

    Files the data set reads are hashed by content, not by name: re-running a sweep after editing
    its CSV file trains again instead of reusing the old runs.
    """
    container = resolved(cfg)
    for key in NON_RESULT_KEYS:
        container.pop(key, None)
    if isinstance(container.get("dataset"), dict):
        container["dataset_files"] = _file_fingerprints(container["dataset"])
    canonical = json.dumps(container, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_top_level(cfg: DictConfig) -> None:
    """Validate the keys that belong to the runner itself (seed, trainer, progress, ...)."""
    checks = [
        ("seed", cfg.seed, _is_int(cfg.seed) and cfg.seed >= 0, "an integer >= 0"),
        ("trainer.epochs", cfg.trainer.epochs, _is_int(cfg.trainer.epochs) and 1 <= cfg.trainer.epochs <= MAX_EPOCHS,
         f"an integer in [1, {MAX_EPOCHS}]"),
        ("trainer.grad_clip", cfg.trainer.grad_clip,
         _is_number(cfg.trainer.grad_clip) and cfg.trainer.grad_clip >= 0, "a number >= 0 (0 disables clipping)"),
        ("trainer.divergence_factor", cfg.trainer.divergence_factor,
         _is_number(cfg.trainer.divergence_factor)
         and (cfg.trainer.divergence_factor == 0 or cfg.trainer.divergence_factor > 1),
         "0 (disabled) or a number > 1"),
        ("trainer.evaluate", cfg.trainer.get("evaluate", "every"), cfg.trainer.get("evaluate", "every") in EVALUATE_MODES,
         "every | log (epochs 0, 1, 2, 4, ... and the last)"),
        ("progress", cfg.progress, cfg.progress in PROGRESS_MODES, " | ".join(PROGRESS_MODES)),
        ("blas_threads", cfg.blas_threads, _is_int(cfg.blas_threads) and cfg.blas_threads >= 0,
         "an integer >= 0 (0: leave the BLAS default)"),
        ("sweep.skip_invalid", cfg.sweep.skip_invalid, isinstance(cfg.sweep.skip_invalid, bool), "true | false"),
        ("report.target_fraction", cfg.report.target_fraction,
         _is_number(cfg.report.target_fraction) and 0 < cfg.report.target_fraction <= 1, "0 < value <= 1"),
        ("report.early_stopping", cfg.report.get("early_stopping", False),
         isinstance(cfg.report.get("early_stopping", False), bool), "true | false"),
        ("report.figures", cfg.report.get("figures", True), isinstance(cfg.report.get("figures", True), bool),
         "true | false"),
        ("report.also_compare", cfg.report.get("also_compare", []),
         OmegaConf.is_list(cfg.report.get("also_compare", [])) and all(
             isinstance(m, str) and re.fullmatch(r"(train|val|test)_\w+", m) for m in cfg.report.get("also_compare", [])),
         "a list of metric names such as [test_ece, test_log_loss]"),
    ]
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}={value!r} is not allowed; allowed: {allowed}")
    from lossbench.trackers import check_config as check_logger_config  # light: backends import lazily

    check_logger_config(cfg.get("logger"))


#: What each component group must provide: (noun with its article, example _target_, methods with their arguments
#: besides self, instance attributes checked once built, what it is in words).
INTERFACES = {
    "dataset": ("a data set", "lossbench.data.Bundled", {"load": ("rng",)}, (),
                "a class with load(rng) returning the splits"),
    "model": ("a model", "lossbench.models.MLP",
              {"output_size": ("task", "n_targets"), "build": ("n_inputs", "n_outputs", "rng"),
               "forward": ("X",), "backward": ("cache", "dlogits")}, (),
              "a class with output_size, build, forward and backward"),
    "loss": ("a loss", "lossbench.losses.CrossEntropy", {"__call__": ("outputs", "targets")}, (),
             "a class whose instances are called as loss(outputs, targets)"),
    "optimizer": ("an optimizer", "lossbench.optim.Adam", {"step": ("params", "grads")}, ("lr", "batch_size"),
                  "a class with step(params, grads) and attributes lr and batch_size"),
    "schedule": ("a schedule", "lossbench.schedules.Cosine", {"__call__": ("epoch", "base_lr", "epochs")}, (),
                 "a class whose instances are called as schedule(epoch, base_lr, epochs)"),
}


def _import_target(path: str):
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    if not all(part.isidentifier() for part in parts):
        raise ImportError("it is not a dotted Python path (module.Class)")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name is not None and (module_name + ".").startswith(err.name + "."):
                continue  # this prefix is not a module: try a shorter one
            raise ImportError(f"importing {module_name[:60]} failed: {str(err)[:120]}") from None
        break
    else:
        raise ImportError(f"there is no module {parts[0][:60]!r} (is its folder on PYTHONPATH?)")
    for attribute in parts[cut:]:
        if not hasattr(obj, attribute):
            raise ImportError(f"{'.'.join(parts[:cut])[:60]} has no attribute {attribute[:60]!r}")
        obj = getattr(obj, attribute)
        cut += 1
    return obj


def _what_it_is(obj) -> str:
    """'a function', 'a module', 'a builtin function', ... for messages."""
    if inspect.ismodule(obj):
        return "a module"
    if inspect.isbuiltin(obj):
        return "a builtin function"
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return "a function"
    return f"a {type(obj).__name__} object"


def _accepts(cls, method: str, arguments: tuple[str, ...]) -> bool:
    """True when ``cls`` itself defines ``method`` (not ``object``/``type``) callable with these positional arguments."""
    if not any(method in vars(klass) for klass in cls.__mro__ if klass not in (object, type)):
        return False
    function = getattr(cls, method)
    try:
        inspect.signature(function).bind(None, *arguments)  # None stands for self
    except TypeError:
        return False
    except ValueError:  # no signature (a C extension): callable is all we can check
        return callable(function)
    return True


def _nested_hydra_keys(node, prefix: str) -> list[str]:
    """Keys below ``node`` that Hydra's instantiate would act on (a nested ``_target_``, ``_partial_``, ...)."""
    found = []
    items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else enumerate(node)
    for key, value in items:
        path = f"{prefix}.{key}"
        if isinstance(key, str) and key.startswith("_") and key.endswith("_") and not (key == "_target_" and
                                                                                       "." not in prefix):
            found.append(path)
        if isinstance(value, (DictConfig, ListConfig)):
            found.extend(_nested_hydra_keys(value, path))
    return found


def check_target(group: str, node) -> type:
    """The class ``node._target_`` names, checked to provide the group's interface before anything is called.

    A ``_target_`` must be a dotted path (a string) to a class that defines the methods of
    :data:`INTERFACES` with their arguments; functions (``builtins.open``, ``pandas.read_pickle``,
    ``numpy.load``), modules and other objects are refused, and so are nested ``_target_`` or
    other Hydra keys (``_partial_``, ``_args_``, ...) inside the node, which Hydra would call first.
    Importing the path runs its module's import code, as for any class a config names.
    """
    noun, example, methods, _, interface = INTERFACES[group]
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{group} must be a config with a _target_ (e.g. _target_: {example}), got "
                          f"{type(node).__name__} {str(node)[:40]!r}")
    if "_target_" not in node:
        raise ConfigError(f"{group} has no _target_: {noun} config names its class, e.g. _target_: {example}")
    target = node._target_
    if not isinstance(target, str):
        raise ConfigError(f"{group}._target_ must be a dotted class path such as {example}, got "
                          f"{type(target).__name__} {str(target)[:40]!r}")
    nested = _nested_hydra_keys(node, group)
    if nested:
        raise ConfigError(f"{', '.join(nested[:3])} {'is' if len(nested) == 1 else 'are'} not allowed: {noun} "
                          "takes plain values; only its own _target_ names a class")
    shown = target if len(target) <= 80 else target[:60] + "…"
    try:
        obj = _import_target(target)
    except ImportError as err:
        raise ConfigError(f"{group}._target_={shown} cannot be imported: {str(err).splitlines()[0][:200]}") from None
    if not inspect.isclass(obj) or issubclass(obj, type):
        raise ConfigError(f"{group}._target_={shown} is not {noun} class: it is {_what_it_is(obj)}; "
                          f"{noun} is {interface}")
    missing = [f"{name}({', '.join(arguments)})" for name, arguments in methods.items()
               if not _accepts(obj, name, arguments)]
    if missing:
        raise ConfigError(f"{group}._target_={shown} is not {noun} class: it has no {', '.join(missing)}; "
                          f"{noun} is {interface}")
    return obj


def _check_instance(group: str, node, obj) -> None:
    """The built object has the interface's attributes (an optimizer's lr and batch_size)."""
    noun, _, _, attributes, interface = INTERFACES[group]
    absent = [name for name in attributes if not hasattr(obj, name)]
    if absent:
        raise ConfigError(f"{group}._target_={node._target_} is not {noun} class: its instances have no "
                          f"{', '.join(absent)}; {noun} is {interface}")


def _instantiate(group: str, node: DictConfig, choice: str | None):
    """The class :func:`check_target` found, called with the node's values; a bad value or a
    constructor's error becomes a ConfigError naming the key.

    This is what ``hydra.utils.instantiate(node, _recursive_=False)`` does for the nodes
    ``check_target`` admits (a class and plain values: no nested ``_target_``, ``_args_``,
    ``_partial_``), at a fifth of its cost: the values resolved, containers passed as copies of
    their nodes (Hydra's ``_convert_=none``).
    """
    where = f"{group}={choice}" if choice else group
    try:
        cls = check_target(group, node)
        kwargs = {key: copy.deepcopy(value) if isinstance(value, (DictConfig, ListConfig)) else value
                  for key, value in node.items() if key != "_target_"}
    except OmegaConfBaseException as err:  # e.g. a bad ${interpolation} in _target_ or a value
        raise ConfigError(f"{where}: {str(err).splitlines()[0]}") from None
    try:
        built = cls(**kwargs)
    except MemoryError as err:
        raise ConfigError(f"{where}: does not fit in memory ({err})") from None
    except (ValueError, TypeError) as err:
        message = str(err)
        first_word = re.match(r"\w+", message)
        if first_word and first_word.group(0) in node:  # "lr=-1 ..." -> "optimizer.lr=-1 ..."
            message = f"{group}.{message}"
        raise ConfigError(f"{where}: {message}") from None
    except Exception as err:  # any other error of the constructor: the run cannot be built
        raise ConfigError(f"{where}: cannot build it: {err}") from None
    _check_instance(group, node, built)
    return built


@dataclass
class Built:
    """Everything one run needs, built and checked: data, model (with parameters), loss, optimizer."""

    cfg: DictConfig
    data: object
    model: object
    loss: object
    optimizer: object
    schedule: object
    shuffle_rng: np.random.Generator
    n_outputs: int = 0  # k, the model's number of outputs

    @property
    def eval_epochs(self) -> list[int] | None:
        """The epochs ``trainer.evaluate`` asks to evaluate: None (``every``) or, for ``log``, the
        powers of two below ``trainer.epochs`` (:func:`lossbench.train.train` adds 0 and the last)."""
        if self.cfg.trainer.get("evaluate", "every") != "log":
            return None
        epochs = int(self.cfg.trainer.epochs)
        return [2**i for i in range(epochs.bit_length()) if 2**i < epochs]

    def train(self, on_epoch=None, checkpoint: Path | None = None, eval_epochs=None):
        """Run :func:`lossbench.train.train` with the trainer settings of the config.

        ``checkpoint``: the run folder to checkpoint into and resume from (matched by
        :func:`config_hash` of this config); ``eval_epochs``: evaluate only those epochs (plus 0
        and the last); None: as ``trainer.evaluate`` says (:attr:`eval_epochs`). See
        :func:`lossbench.train.train`.
        """
        from lossbench.train import train

        trainer = self.cfg.trainer
        if eval_epochs is None:
            eval_epochs = self.eval_epochs
        return train(self.model, self.loss, self.optimizer, self.schedule, self.data,
                     epochs=int(trainer.epochs), grad_clip=float(trainer.grad_clip),
                     divergence_factor=float(trainer.divergence_factor), rng=self.shuffle_rng,
                     on_epoch=on_epoch, checkpoint=checkpoint,
                     config_hash=config_hash(self.cfg) if checkpoint is not None else None,
                     eval_epochs=eval_epochs)

    def write_gradient_curves(self, path: Path) -> None:
        """Write ``gradients.csv``: the run's loss and dloss/dz along one logit, as data for the report.

        Columns k, target, z, loss, dloss_dz (see :func:`lossbench.metrics.gradient_curves`): for
        classification k = 1 and the run's k when >= 2, target 1/0 (the varied logit's class is /
        is not the label); for regression the run's k with target 0. The report reads this file
        and never instantiates a loss from a run folder.
        """
        from lossbench.metrics import gradient_curves
        from lossbench.records import atomic_write_text

        table = gradient_curves(self.loss, self.data.task, self.n_outputs)
        atomic_write_text(path, table.to_csv(index=False))

    def write_calibration(self, path: Path) -> bool:
        """Write ``calibration.csv``: the reliability table of the final model, through the loss's link.

        One row per bin of the ECE (:data:`lossbench.metrics.ECE_BINS` = 15 equal-width bins of
        the top-label confidence), on the test split (else val, else train), with columns split,
        bin, lower, upper, count, confidence, accuracy. Nothing is written (returns False) for
        regression, a non-finite model, or a loss without a probabilistic link (hinge,
        l2_logits, a user loss without ``probabilities``): calibration is not applicable there.
        """
        if self.data.task != "classification" or not all(np.isfinite(p).all() for p in self.model.params.values()):
            return False
        from lossbench.metrics import calibration_table, predicted_classes
        from lossbench.records import atomic_write_text
        from lossbench.train import link_probabilities

        for split in ("test", "val", "train"):
            X = getattr(self.data, f"X_{split}")
            if X is not None:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
                    outputs, _ = self.model.forward(X)  # huge finite weights overflow, as in training
                    probabilities = link_probabilities(self.loss, outputs)
                if probabilities is None:
                    return False
                table = calibration_table(probabilities, getattr(self.data, f"y_{split}"),
                                          predicted=predicted_classes(outputs))
                table.insert(0, "split", split)
                atomic_write_text(path, table.to_csv(index=False))
                return True
        return False


def _choices() -> dict:
    try:
        from hydra.core.hydra_config import HydraConfig

        return dict(HydraConfig.get().runtime.choices)
    except ValueError:  # not inside a Hydra app (tests, notebooks)
        return {}


_GROUP_OPTIONS: dict[tuple[tuple, str], list[str]] = {}  # by config search path and group


def _check_choices(choices: dict) -> None:
    """Every option picked in a config group exists: ``optional`` and ``+group=`` let a misspelled
    one (``experiment=l2_vs_c``) through silently, and the default run would train instead."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():  # a config composed by hand, outside Hydra
        return
    loader = GlobalHydra.instance().config_loader()
    sources = tuple((source.provider, source.path) for source in loader.get_sources())
    for group, choice in choices.items():
        if choice is None or group.startswith("hydra/") or "/" in group or not isinstance(choice, str):
            continue
        key = (sources, group)  # Hydra lists a group's options by building a config repository: ~25 ms
        if key not in _GROUP_OPTIONS:
            _GROUP_OPTIONS[key] = loader.get_group_options(group)
        options = _GROUP_OPTIONS[key]
        if options and choice not in options:
            shown = ", ".join(options[:12]) + (f", … and {len(options) - 12} more" if len(options) > 12 else "")
            raise ConfigError(f"{group}={choice} does not exist; available: {shown}")


def build(cfg: DictConfig, choices: dict | None = None, data_cache: dict | None = None) -> Built:
    """Validate ``cfg`` and build the run it describes; raise :class:`ConfigError` on bad input.

    ``choices`` maps config groups to the option picked (``{"loss": "ce", ...}``), for messages;
    by default it is read from the running Hydra app. ``data_cache`` (checking a sweep before it
    starts): loaded data sets by their resolved ``dataset`` config, reused whatever the seed, since
    checking needs the data's shape and task, not its split.

    Randomness: ``SeedSequence(seed)`` spawns three independent streams, for the data (split,
    label noise, outliers), the initial parameters and the per-epoch shuffling, so changing the
    batch size, say, does not change the split or the initialisation.
    """
    resolved(cfg)
    _check_top_level(cfg)
    choices = _choices() if choices is None else choices
    _check_choices(choices)
    source = _instantiate("dataset", cfg.dataset, choices.get("dataset"))
    model = _instantiate("model", cfg.model, choices.get("model"))
    loss = _instantiate("loss", cfg.loss, choices.get("loss"))
    optimizer = _instantiate("optimizer", cfg.optimizer, choices.get("optimizer"))
    schedule = _instantiate("schedule", cfg.schedule, choices.get("schedule"))

    data_seed, init_seed, shuffle_seed = np.random.SeedSequence(int(cfg.seed)).spawn(3)
    data_key = json.dumps(resolved(cfg.dataset), sort_keys=True, default=str) if data_cache is not None else None
    if data_key in (data_cache or {}):
        data = data_cache[data_key]
        if isinstance(data, ConfigError):  # a data set that failed to load fails every job alike
            raise data
        data = copy.copy(data)  # a shallow copy: the dtype conversion below sets attributes
    else:
        try:
            data = source.load(np.random.default_rng(data_seed))
        except (ValueError, OSError, MemoryError) as err:
            error = ConfigError(f"dataset={choices.get('dataset', '?')}: {err}")
            if data_cache is not None:
                data_cache[data_key] = error
            raise error from None
        if data_cache is not None:
            data_cache[data_key] = copy.copy(data)

    model_name = choices.get("model", type(model).__name__.lower())
    try:
        n_outputs = model.output_size(data.task, data.n_targets)
    except ValueError as err:
        raise ConfigError(f"model={model_name} does not fit dataset={choices.get('dataset', data.name)}: {err}") from None
    try:
        model.build(data.X_train.shape[1], n_outputs, np.random.default_rng(init_seed))
    except MemoryError as err:
        raise ConfigError(f"model={model_name}: the parameters do not fit in memory ({err})") from None

    dtype = next(iter(model.params.values())).dtype
    for split in ("train", "val", "test"):
        X = getattr(data, f"X_{split}")
        if X is not None and X.dtype != dtype:
            setattr(data, f"X_{split}", np.ascontiguousarray(X, dtype=dtype))
        y = getattr(data, f"y_{split}")
        if y is not None and data.task == "regression" and y.dtype != dtype:
            setattr(data, f"y_{split}", np.ascontiguousarray(y, dtype=dtype))

    try:  # all training targets: one standardised regression value can pass for a probability
        loss(np.zeros((len(data.y_train), n_outputs), dtype=dtype), data.y_train)
    except ValueError as err:
        raise ConfigError(
            f"loss={choices.get('loss', type(loss).__name__)} does not fit model={model_name} "
            f"({n_outputs} output{'s' if n_outputs != 1 else ''}) on dataset={choices.get('dataset', data.name)} "
            f"({data.task}): {err}") from None
    n_train = len(data.y_train)
    if optimizer.batch_size is not None and optimizer.batch_size > n_train:
        log.warning("optimizer.batch_size=%d exceeds the %d training samples: every step uses the whole "
                    "training split (full batch)", optimizer.batch_size, n_train)
    min_lr = getattr(schedule, "min_lr", None)
    if min_lr is not None and min_lr >= optimizer.lr:
        raise ConfigError(f"schedule={choices.get('schedule', '?')}: schedule.min_lr={min_lr} must be below "
                          f"optimizer.lr={optimizer.lr} (the schedule decays from lr to min_lr)")
    return Built(cfg=cfg, data=data, model=model, loss=loss, optimizer=optimizer, schedule=schedule,
                 shuffle_rng=np.random.default_rng(shuffle_seed), n_outputs=n_outputs)
