"""Per-epoch checkpoints of a training run: its full state, so a killed run continues where it was.

A checkpoint is two files in the run folder, both written atomically (:mod:`lossbench.records`):

- ``checkpoint.npz``: arrays only, read back with ``numpy.load(..., allow_pickle=False)``:
  ``param/<name>`` (the model's parameters), ``optimizer/<key>`` (``optimizer.state_dict()``)
  and ``token``;
- ``checkpoint.json``: everything else: the format, the config hash, ``epochs``, the evaluation
  epochs, the last finished ``epoch``, ``step``, ``train_time_s``, the shuffling generator's
  ``bit_generator.state`` and the records so far; its ``token`` must equal the npz's, so a kill
  between the two writes leaves a pair that is recognised as stale, never a mixed state.

Nothing in a checkpoint is imported, instantiated or unpickled. A checkpoint that is absent,
damaged, from another config (hash), another trainer setting, or does not fit the model or the
optimizer is ignored (one log line) and the run starts from epoch 0; it is overwritten by the
next save. The caller removes it once the run's results are written (:func:`remove_checkpoint`).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossbench.records import write_json, write_params

log = logging.getLogger(__name__)

CHECKPOINT_NPZ = "checkpoint.npz"
CHECKPOINT_JSON = "checkpoint.json"
FORMAT = 1
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}  # as records.write_json spells them


@dataclass
class TrainingState:
    """Where a checkpointed run stood at the end of ``epoch``: step count, training time, records so far."""

    epoch: int
    step: int
    train_time_s: float
    records: list[dict]


def supports_checkpoints(optimizer) -> bool:
    """True when the optimizer exposes its state (``state_dict`` / ``load_state_dict``), as every built-in one."""
    return callable(getattr(optimizer, "state_dict", None)) and callable(getattr(optimizer, "load_state_dict", None))


def remove_checkpoint(run_dir: Path) -> None:
    """Delete the checkpoint files of ``run_dir`` (once the run's own files are written)."""
    for name in (CHECKPOINT_JSON, CHECKPOINT_NPZ):  # the json first: without it the npz is never used
        (Path(run_dir) / name).unlink(missing_ok=True)


def save_checkpoint(run_dir: Path, *, config_hash: str | None, epochs: int, eval_epochs, model, optimizer,
                    rng: np.random.Generator, state: TrainingState) -> None:
    """Write the checkpoint of ``state`` (npz first, then the json that names its token)."""
    run_dir = Path(run_dir)
    token = uuid.uuid4().hex
    arrays = {f"param/{name}": value for name, value in model.params.items()}
    arrays.update({f"optimizer/{key}": value for key, value in optimizer.state_dict().items()})
    arrays["token"] = np.array(token)
    write_params(run_dir / CHECKPOINT_NPZ, arrays)
    write_json(run_dir / CHECKPOINT_JSON, {
        "format": FORMAT, "token": token, "config_hash": config_hash, "epochs": epochs,
        "eval_epochs": None if eval_epochs is None else sorted(eval_epochs),
        "epoch": state.epoch, "step": state.step, "train_time_s": state.train_time_s,
        "rng": rng.bit_generator.state, "records": state.records,
    })


def load_checkpoint(run_dir: Path, *, config_hash: str | None, epochs: int, eval_epochs, model, optimizer,
                    rng: np.random.Generator) -> TrainingState | None:
    """Restore model parameters, optimizer state and ``rng`` from ``run_dir``'s checkpoint, in place.

    Returns the :class:`TrainingState` to continue from, or None (nothing changed) when there is
    no usable checkpoint. Everything is checked before anything is restored.
    """
    run_dir = Path(run_dir)
    json_path, npz_path = run_dir / CHECKPOINT_JSON, run_dir / CHECKPOINT_NPZ
    if not json_path.exists():
        return None
    try:
        restored = _read(json_path, npz_path, config_hash, epochs, eval_epochs, model, optimizer, rng)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
        log.warning("checkpoint in %s not used, training from epoch 0: %s", run_dir, str(err)[:200])
        return None
    params, optimizer_state, rng_state, state = restored
    for name, value in params.items():
        np.copyto(model.params[name], value)
    optimizer.load_state_dict(optimizer_state)
    rng.bit_generator.state = rng_state
    # the folder is named: in a stacked pack, every run's line goes to the job log of the last prepared run
    log.info("resuming from the checkpoint at epoch %d of %d in %s", state.epoch, epochs, run_dir)
    return state


def _read(json_path, npz_path, config_hash, epochs, eval_epochs, model, optimizer, rng):
    """Parse and check both files; ValueError saying what does not fit."""
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not a lossbench checkpoint of format 1")
    expected = {"config_hash": config_hash, "epochs": epochs,
                "eval_epochs": None if eval_epochs is None else sorted(eval_epochs)}
    for key, value in expected.items():
        if meta.get(key) != value:
            raise ValueError(f"{key} is {meta.get(key)!r}, this run has {value!r}")
    epoch, step = meta["epoch"], meta["step"]
    if not (isinstance(epoch, int) and 1 <= epoch < epochs and isinstance(step, int) and step >= 0):
        raise ValueError(f"epoch={epoch!r}, step={step!r} do not fit {epochs} epochs")
    records = [_restore_record(record) for record in meta["records"]]
    if not records or records[-1]["epoch"] > epoch or records[0]["epoch"] != 0:
        raise ValueError("its records do not fit its epoch")
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if str(arrays.pop("token", "")) != meta["token"]:
        raise ValueError("checkpoint.npz and checkpoint.json are from different saves")
    params = {key[len("param/"):]: value for key, value in arrays.items() if key.startswith("param/")}
    if list(params) != list(model.params) or any(
            value.shape != model.params[name].shape or value.dtype != model.params[name].dtype
            for name, value in params.items()):
        raise ValueError("its parameters do not fit the model")
    optimizer_state = {key[len("optimizer/"):]: value for key, value in arrays.items() if key.startswith("optimizer/")}
    copy.deepcopy(optimizer).load_state_dict(optimizer_state)  # raises ValueError if it does not fit
    probe = type(rng.bit_generator)()
    probe.state = meta["rng"]  # raises ValueError/TypeError for another generator or a damaged state
    state = TrainingState(epoch=epoch, step=step, train_time_s=float(meta["train_time_s"]), records=records)
    return params, optimizer_state, meta["rng"], state


def _restore_record(record) -> dict:
    """A record from JSON: numbers as they were, "nan"/"inf"/"-inf" back to floats."""
    if not isinstance(record, dict):
        raise ValueError("a record is not an object")
    restored = {}
    for key, value in record.items():
        if isinstance(value, str):
            if value not in _NON_FINITE:
                raise ValueError(f"record value {key}={value[:20]!r} is not a number")
            value = _NON_FINITE[value]
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"record value {key} is not a number")
        restored[key] = value
    return restored
