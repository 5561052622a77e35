"""The configuration a sweep's answer relies on, as tables: fixed settings, tuned values, provenance.

Settings are the runs' resolved configs (``summary.json`` "config"), flattened to dotted keys
(``optimizer.lr``, ``model.hidden_sizes``); a config group (a node with ``_target_``) shows as its
choice (``optimizer = adam``) followed by its keys. Keys that change no number
(``lossbench.build.changes_results``: progress, blas_threads, ...) and ``hydra``, ``question`` and
``report`` are left out. Nothing here instantiates anything: ``_target_`` strings are text.

``package_defaults()`` is lossbench's own default configuration (``conf/config.yaml`` with its
default group options), read from the installed package with ``yaml.safe_load``, for the
``results.csv`` columns of every setting that differs from it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from lossbench.build import changes_results
from lossbench.report.common import _hashable, format_value

HIDDEN_PREFIXES = ("hydra", "question", "report")


def flatten(config: dict, choices: dict | None = None, prefix: str = "") -> dict[str, object]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer": <choice>, "optimizer.lr": 0.1}``.

    Lists become JSON text (``[64, 64]``); ``_target_`` entries become the group's choice name
    (from ``choices``, else the class name); keys that change no number are dropped.
    """
    out: dict[str, object] = {}
    choices = choices or {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if name.split(".")[0] in HIDDEN_PREFIXES or not changes_results(name):
            continue
        if isinstance(value, dict):
            if "_target_" in value:
                out[name] = choices.get(name) or str(value["_target_"]).rsplit(".", 1)[-1]
            out.update(flatten({k: v for k, v in value.items() if k != "_target_"}, choices, f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value, default=str)
        else:
            out[name] = value
    return out


def fixed_settings(configs: list[dict], choices: list[dict], compared: list[str]) -> pd.DataFrame:
    """``setting``, ``value`` for every flattened key with one value across ``configs``.

    Keys that vary across the runs (the compared keys and their sub-keys, seeds) are left out; the
    report lists those separately. Returns an empty frame without configs.
    """
    flat = [flatten(config, choice) for config, choice in zip(configs, choices)]
    if not flat:
        return pd.DataFrame(columns=["setting", "value"])
    keys = list(dict.fromkeys(key for settings in flat for key in settings))
    rows = []
    for key in keys:
        if key == "seed" or any(key == c or key.startswith(c + ".") for c in compared):
            continue
        values = {_hashable(settings.get(key)) for settings in flat}
        if len(values) == 1:
            rows.append({"setting": key, "value": format_value(flat[0].get(key))})
    return pd.DataFrame(rows, columns=["setting", "value"])


def varying_settings(configs: list[dict], choices: list[dict]) -> list[str]:
    """Flattened keys whose value differs between runs (seed excluded)."""
    flat = [flatten(config, choice) for config, choice in zip(configs, choices)]
    keys = list(dict.fromkeys(key for settings in flat for key in settings))
    return [key for key in keys if key != "seed"
            and len({_hashable(settings.get(key)) for settings in flat}) > 1]


def provenance_rows(provenance: list[dict], versions: list[str | None]) -> pd.DataFrame:
    """One row per provenance item (lossbench and library versions, BLAS, Python, platform, commit),
    with every distinct value seen across the runs (normally one)."""
    items: dict[str, list[str]] = {}

    def add(name: str, value) -> None:
        if value in (None, "", [], {}):
            return
        text = format_value(value) if not isinstance(value, (dict, list)) else json.dumps(value, default=str)
        if text not in items.setdefault(name, []):
            items[name].append(text)

    for record, version in zip(provenance, versions):
        record = record if isinstance(record, dict) else {}
        add("lossbench", version or (record.get("versions") or {}).get("lossbench"))
        for package, value in (record.get("versions") or {}).items() if isinstance(record.get("versions"), dict) else ():
            if package != "lossbench":
                add(package, value)
        blas = record.get("blas")
        for entry in blas if isinstance(blas, list) else []:
            if isinstance(entry, dict):
                add("BLAS", " ".join(str(entry.get(k)) for k in ("internal_api", "version", "architecture")
                                     if entry.get(k)) + (f", {entry.get('num_threads')} thread(s)"
                                                         if entry.get("num_threads") else ""))
        for key, name in (("python", "Python"), ("platform", "platform"), ("git_commit", "git commit"),
                          ("host", "host")):
            add(name, record.get(key))
    return pd.DataFrame([{"item": name, "value": "; ".join(values)} for name, values in items.items()],
                        columns=["item", "value"])


# ---------------------------------------------------------------------------------------------
# Package defaults


@lru_cache(maxsize=1)
def package_defaults() -> dict[str, object]:
    """lossbench's default configuration, flattened (``flatten``), from the installed package.

    ``conf/config.yaml`` plus, for each ``- group: option`` of its defaults list, the node of
    ``conf/<group>/<option>.yaml``. Interpolations stay as text. An unreadable conf gives {}.
    """
    import lossbench.conf

    conf = Path(lossbench.conf.__file__).parent
    try:
        primary = yaml.safe_load((conf / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    config, choices = {}, {}
    for entry in primary.pop("defaults", []) or []:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        (group, option), = entry.items()
        if not isinstance(option, str) or group.startswith("optional ") or group.startswith("hydra"):
            continue
        try:
            node = yaml.safe_load((conf / group / f"{option}.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(node, dict):
            config[group], choices[group] = node, option
    config.update({k: v for k, v in primary.items() if k != "hydra"})
    return flatten(config, choices)


def non_default_settings(configs: list[dict], choices: list[dict]) -> list[str]:
    """Flattened keys (in first-seen order) where some run's value differs from the package default
    (or that the defaults do not have), excluding the seed."""
    defaults = package_defaults()
    keys: list[str] = []
    for config, choice in zip(configs, choices):
        for key, value in flatten(config, choice).items():
            if key in keys or key == "seed":
                continue
            if key not in defaults or _hashable(defaults[key]) != _hashable(value):
                keys.append(key)
    return keys
