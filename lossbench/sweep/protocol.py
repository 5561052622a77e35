"""Tune, then confirm (``protocol=tune``): each arm at its own best setting, judged on fresh seeds.

Comparing losses or optimizers at one shared learning rate compares step sizes as much as losses
(L2 and BCE average over k outputs, so at CE's rate their steps are ~1/k of CE's). The protocol:

1. **Arms** are the combinations of the swept keys (``loss=l2,bce,ce dataset=a,b``), with ``seed``
   and the tuned keys set aside.
2. **Tune** each arm over a grid of its tuned keys (``sweep.protocol.tuned``, default
   ``[optimizer.lr]``): the values swept on the command line, else a log grid of
   ``decades`` decades centred on the arm's own preset value, ``points_per_decade`` points a decade.
   Every setting runs on the tuning seeds (disjoint from the confirmation seeds) and is scored by
   the mean over those seeds of ``sweep.objective``, a validation metric. A setting where any
   tuning seed diverged or failed never beats one where none did. When the winner sits on the
   grid's edge, the grid grows one step beyond it and the new settings are tuned too, at most
   ``max_extensions`` times per arm.
3. **Confirm**: each arm's chosen setting on the confirmation seeds (``stage=confirm``); the report
   answers the question from these runs only. Tuning runs (``stage=tune``) stay for the
   sensitivity figure.

Files: ``tuned.csv`` (one row per arm: the arm's keys, the chosen value of each tuned key, the
objective, its value, the number of settings tried, whether the grid was extended) and
``sweep.json`` (the plan). Every run is an ordinary run of the sweep folder, found again by its
config hash, so re-running the command resumes either stage and repeats the same choices.
"""

from __future__ import annotations

import math

import numpy as np
from omegaconf import OmegaConf

from lossbench.sweep.objective import higher_is_better, objective_name, objective_value
from lossbench.sweep.plan import PlanError

DEFAULT_CONFIRM_SEEDS = list(range(10))


def fmt(value) -> str:
    """A grid value as an override: 6 significant digits, so 0.1 * 10**-2 is ``0.001``."""
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".e") else text + ".0"
    return str(value)


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return None


def _key(line: str) -> str:
    return line.partition("=")[0].lstrip("+~")


def log_grid(preset: float, decades: float, per_decade: int) -> list[float]:
    """``preset * 10**(j / per_decade)`` for ``j`` in ``-h..h``, ``h = decades * per_decade / 2``."""
    half = int(round(decades * per_decade / 2))
    return [float(f"{preset * 10 ** (j / per_decade):.6g}") for j in range(-half, half + 1)]


def step_beyond(values: list[float], upper: bool, ratio: float | None) -> float:
    """One grid step past the largest (``upper``) or smallest value: ×/÷ ``ratio``, else the edge's spacing."""
    ordered = sorted(values)
    if ratio is None and len(ordered) >= 2 and ordered[0] > 0:
        ratio = ordered[-1] / ordered[-2] if upper else ordered[1] / ordered[0]
    if ratio is not None and ratio > 1:
        return float(f"{(ordered[-1] * ratio if upper else ordered[0] / ratio):.6g}")
    gap = (ordered[-1] - ordered[-2]) if upper else (ordered[1] - ordered[0])
    return float(f"{(ordered[-1] + gap if upper else ordered[0] - gap):.6g}")


class Arm:
    """One arm: its override lines, its grid per tuned key, the settings tried and the choice."""

    def __init__(self, lines: tuple[str, ...]):
        self.lines = lines
        self.grid: dict[str, list] = {}
        self.ratio: dict[str, float | None] = {}
        self.settings: list[tuple[str, ...]] = []  # each: tuned override lines, in tuned-key order
        self.jobs: dict[tuple[str, ...], list] = {}
        self.extensions = 0
        self.choice: tuple[str, ...] | None = None
        self.choice_value = math.nan
        self.choice_safe = False
        self.still_on_edge = False
        self.valid = True

    def label(self) -> str:
        return ",".join(self.lines) or "(defaults)"


def _settings(arm: Arm, tuned: list[str]) -> list[tuple[str, ...]]:
    import itertools

    return [tuple(f"{key}={fmt(v)}" for key, v in zip(tuned, values))
            for values in itertools.product(*(arm.grid[key] for key in tuned))]


def _score(engine, jobs, setting_name: str) -> tuple[bool, float, bool]:
    """(safe, mean objective over the tuning seeds, any run exists) of one setting."""
    summaries = [engine.summary_of(job) for job in jobs]
    summaries = [s for s in summaries if s is not None]
    if not summaries:
        return False, math.nan, False
    safe = len(summaries) == len(jobs) and all(s.get("status") == "completed" for s in summaries)
    values = [objective_value(s, setting_name) for s in summaries]
    mean = float(np.mean(values)) if all(not math.isnan(v) for v in values) else math.nan
    return safe, mean, True


def choose(engine, arm: Arm, setting_name: str, task: str | None) -> None:
    """Pick the arm's best setting: safe ones first, then by the objective's direction; grid order breaks ties."""
    metric = objective_name(setting_name, task)
    sign = 1.0 if higher_is_better(metric) else -1.0
    best, best_key = None, None
    for setting in arm.settings:
        safe, mean, exists = _score(engine, arm.jobs.get(setting, []), setting_name)
        if not exists:
            continue
        key = (safe, -math.inf if math.isnan(mean) else sign * mean)
        if best_key is None or key > best_key:
            best, best_key = (setting, safe, mean), key
    if best is None:
        arm.choice = None
        return
    arm.choice, arm.choice_safe, arm.choice_value = best


def _edge_extension(arm: Arm, tuned: list[str]) -> bool:
    """Grow the grid one step past the winner's edge (per key); True when a setting was added."""
    if arm.choice is None:
        return False
    grown = False
    for key, line in zip(tuned, arm.choice):
        value = _number(line.partition("=")[2])
        values = [v for v in arm.grid[key] if isinstance(v, (int, float))]
        if value is None or len(values) < 2 or len(values) != len(arm.grid[key]):
            continue
        if value >= max(values):
            arm.grid[key].append(step_beyond(values, True, arm.ratio.get(key)))
            grown = True
        elif value <= min(values):
            new = step_beyond(values, False, arm.ratio.get(key))
            if new > 0 or min(values) <= 0:
                arm.grid[key].insert(0, new)
                grown = True
    return grown


def _on_edge(arm: Arm, tuned: list[str]) -> bool:
    if arm.choice is None:
        return False
    for key, line in zip(tuned, arm.choice):
        value = _number(line.partition("=")[2])
        values = [v for v in arm.grid[key] if isinstance(v, (int, float))]
        if value is not None and len(values) >= 2 and value in (min(values), max(values)):
            return True
    return False


def _tpe_rounds(engine, arms: list[Arm], tuned: list[str], user_grid: dict, tune_seeds: list[int], extra: tuple,
                setting_name: str, protocol: dict) -> bool:
    """Tune each arm with Optuna's TPE sampler (ask/tell), one setting per arm per round.

    The space of a tuned key is its swept values (categorical) or a log-uniform range of
    ``decades`` around the arm's preset. A setting where a tuning seed diverged or failed is told
    as a failed trial; :func:`choose` then applies the grid's rule to every setting tried. Each
    arm's sampler is seeded (``sampler_seed``), so a resumed sweep asks the same settings and
    reuses their finished runs. Returns False when tuning runs were lost (Ctrl-C, a dead job).
    """
    try:
        import optuna
    except ImportError:
        raise PlanError("sweep.protocol.search=tpe needs Optuna: pip install \"lossbench[optuna]\"") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n_trials = protocol.get("n_trials", 20)
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or not 1 <= n_trials <= 10_000:
        raise PlanError(f"sweep.protocol.n_trials={n_trials!r} is not allowed; allowed: an integer in [1, 10000]")
    half = float(protocol.get("decades", 4)) / 2
    distributions = optuna.distributions
    if hasattr(distributions, "FloatDistribution"):  # Optuna 3
        def log_range(low, high):
            return distributions.FloatDistribution(low, high, log=True)
    else:  # Optuna 2, which hydra-optuna-sweeper pins
        log_range = distributions.LogUniformDistribution
    studies = {}
    for arm in arms:
        # the grid's centre is the preset (log_grid with one point): the range spans `decades` around it
        space = {key: (distributions.CategoricalDistribution(user_grid[key]) if key in user_grid else
                       log_range(arm.grid[key][len(arm.grid[key]) // 2] / 10 ** half,
                                 arm.grid[key][len(arm.grid[key]) // 2] * 10 ** half))
                 for key in tuned}
        arm.grid = {key: [] for key in tuned}
        sampler = optuna.samplers.TPESampler(seed=int(protocol.get("sampler_seed", 0)))
        studies[arm.label()] = (optuna.create_study(direction="maximize", sampler=sampler), space)
    for round_no in range(n_trials):
        asked, specs = [], []
        for arm in arms:
            study, space = studies[arm.label()]
            trial = study.ask(space)
            setting = tuple(f"{key}={fmt(trial.params[key])}" for key in tuned)
            asked.append((arm, study, trial, setting))
            if setting not in arm.jobs:
                arm.settings.append(setting)
                arm.jobs[setting] = []
                for key in tuned:
                    arm.grid[key].append(_number(fmt(trial.params[key])) or trial.params[key])
                specs.extend((arm.lines + setting + (f"seed={seed}",) + extra, "tune") for seed in tune_seeds)
        jobs = engine.round(specs, title=f"tune, TPE trial {round_no + 1} of {n_trials}", skip_invalid=True)
        index = {job.overrides[:-1]: job for job in jobs}
        for arm, _, _, setting in asked:
            for seed in tune_seeds:
                job = index.get(arm.lines + setting + (f"seed={seed}",) + extra)
                if job is not None and job not in arm.jobs[setting]:
                    arm.jobs[setting].append(job)
        if engine.stopped():
            return False
        task = next((job.task for job in jobs if job.task), None)
        for arm, study, trial, setting in asked:
            safe, mean, _ = _score(engine, arm.jobs[setting], setting_name)
            sign = 1.0 if higher_is_better(objective_name(setting_name, task)) else -1.0
            if safe and not math.isnan(mean):
                study.tell(trial, sign * mean)
            else:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
    for arm in arms:
        choose(engine, arm, setting_name, next((j.task for js in arm.jobs.values() for j in js if j.task), None))
    return True


def _flatten(node, prefix="") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def fixed_settings(configs: list[dict], exclude=()) -> dict:
    """``{dotted key: value}`` of every setting all ``configs`` (resolved) share, seed and display keys aside."""
    from lossbench.build import NON_RESULT_KEYS

    if not configs:
        return {}
    flat = [_flatten({k: v for k, v in c.items() if k not in NON_RESULT_KEYS and k != "seed"}) for c in configs]
    missing = object()
    return {k: v for k, v in flat[0].items()
            if k not in set(exclude) and all(f.get(k, missing) == v for f in flat[1:])}


def write_grid_plan(engine, job_lines: list[tuple[str, ...]]) -> None:
    """``sweep.json`` for a plain grid: the swept keys are the arms, every seed confirms."""
    from lossbench.records import write_json

    arms, seeds, values = {}, [], {}
    for lines in job_lines:
        for line in lines:
            key, _, value = line.partition("=")
            values.setdefault(_key(line), set()).add(value)
            if _key(line) == "seed" and _number(value) is not None and _number(value) not in seeds:
                seeds.append(_number(value))
        arms.setdefault(tuple(line for line in lines if _key(line) != "seed"), None)
    configs = []
    for lines in arms:
        try:
            configs.append(OmegaConf.to_container(engine.composer.compose(lines)[0], resolve=True))
        except Exception:  # an arm that cannot work is reported by the sweep itself
            continue
    plan = {"protocol": "grid", "objective": engine.config.sweep.get("objective", "auto"),
            "arm_keys": [k for k, v in values.items() if len(v) > 1 and k != "seed"], "tuned_keys": [],
            "tuning_seeds": [], "confirm_seeds": seeds or [engine.config.get("seed")],
            "fixed_settings": fixed_settings(configs)}
    write_json(engine.sweep_dir / "sweep.json", plan)


def run_tune(engine, job_lines: list[tuple[str, ...]]) -> None:
    """Run both stages of the protocol through ``engine.round`` and write tuned.csv and sweep.json."""
    from lossbench.build import ConfigError
    from lossbench.records import atomic_write_text, write_json
    from lossbench.sweep.validate import check

    cfg = engine.config
    protocol = OmegaConf.to_container(cfg.sweep.protocol, resolve=True)
    setting_name = cfg.sweep.get("objective", "auto")
    tuned = [str(k) for k in protocol.get("tuned") or []]
    if setting_name != "auto" and not str(setting_name).startswith("val_"):
        raise PlanError(f"sweep.objective={setting_name}: protocol=tune chooses on the validation split only; "
                        "use a val_ metric (val_accuracy, val_loss, val_r2) or auto")
    if not tuned:
        raise PlanError("sweep.protocol.tuned is empty: list the keys to tune, e.g. [optimizer.lr]")
    tune_evaluate = protocol.get("tune_evaluate", "log")
    if tune_evaluate not in ("log", "every"):
        raise PlanError(f"sweep.protocol.tune_evaluate={tune_evaluate!r} is not allowed; allowed: log (tuning runs "
                        "evaluated at epochs 0, 1, 2, 4, ... and the last) | every")
    tune_seeds = [int(s) for s in protocol.get("tune_seeds") or []]
    swept_seeds = []
    for lines in job_lines:
        for line in lines:
            if _key(line) == "seed" and line.partition("=")[2] not in swept_seeds:
                swept_seeds.append(line.partition("=")[2])
    confirm_seeds = protocol.get("confirm_seeds")
    confirm_seeds = [int(s) for s in (confirm_seeds if confirm_seeds is not None
                                      else (swept_seeds or DEFAULT_CONFIRM_SEEDS))]
    if not tune_seeds or not confirm_seeds or set(tune_seeds) & set(confirm_seeds):
        raise PlanError(f"sweep.protocol.tune_seeds={tune_seeds} and the confirmation seeds {confirm_seeds} must "
                        "both be non-empty and disjoint")

    # the protocol's own settings concern this process only: keep them out of the runs and their folders
    job_lines = [tuple(line for line in lines if not (_key(line) == "protocol" or _key(line).startswith("sweep.protocol")))
                 for lines in job_lines]
    # arms: the job lines without seed and tuned keys; the swept values of a tuned key are its grid
    set_aside = {"seed", *tuned}
    arms: dict[tuple[str, ...], Arm] = {}
    user_grid: dict[str, list[str]] = {}
    for lines in job_lines:
        arm_lines = tuple(line for line in lines if _key(line) not in set_aside)
        arms.setdefault(arm_lines, Arm(arm_lines))
        for line in lines:
            if _key(line) in tuned:
                values = user_grid.setdefault(_key(line), [])
                if line.partition("=")[2] not in values:
                    values.append(line.partition("=")[2])
    arm_list = list(arms.values())
    varying = {}
    for arm in arm_list:
        for line in arm.lines:
            varying.setdefault(_key(line), set()).add(line.partition("=")[2])
    arm_keys = [key for key, values in varying.items() if len(values) > 1]

    # each arm's own grid, from its preset values; an arm that cannot work at its preset is skipped
    bad = []
    configs = []
    for arm in arm_list:
        lines = arm.lines + (f"seed={tune_seeds[0]}",)
        try:
            arm_cfg, choices = engine.composer.compose(lines)
            check(arm_cfg, choices)
        except (PlanError, ConfigError) as err:
            arm.valid = False
            bad.append((arm, str(err)))
            continue
        configs.append(OmegaConf.to_container(arm_cfg, resolve=True))
        for key in tuned:
            if key in user_grid:
                arm.grid[key] = [(_number(v) if _number(v) is not None else v) for v in user_grid[key]]
                arm.ratio[key] = None
                continue
            preset = OmegaConf.select(arm_cfg, key)
            if not isinstance(preset, (int, float)) or isinstance(preset, bool) or not preset > 0:
                raise PlanError(f"sweep.protocol.tuned: {key} of arm {arm.label()} is {preset!r}, not a positive "
                                f"number to centre a log grid on; give its values ({key}=a,b,c)")
            arm.grid[key] = log_grid(float(preset), float(protocol.get("decades", 4)),
                                     int(protocol.get("points_per_decade", 1)))
            arm.ratio[key] = 10 ** (1 / int(protocol.get("points_per_decade", 1)))
    if bad and cfg.sweep.get("skip_invalid") is not True:
        lines = "\n".join(f"  {arm.label()}: {message}" for arm, message in bad[:20])
        raise PlanError(f"{len(bad)} of {len(arm_list)} arms cannot run; nothing was started.\n{lines}\n"
                        "Fix the values, or add sweep.skip_invalid=true to skip impossible combinations.")

    valid_arms = [arm for arm in arm_list if arm.valid]
    fixed = fixed_settings(configs, exclude=tuned)
    plan = {"protocol": "tune", "objective": setting_name, "arm_keys": arm_keys, "tuned_keys": tuned,
            "tuning_seeds": tune_seeds, "confirm_seeds": confirm_seeds, "fixed_settings": fixed,
            "max_extensions": int(protocol.get("max_extensions", 2)), "arms": []}
    write_json(engine.sweep_dir / "sweep.json", plan)

    # stage 1: tune (rounds: the grid, then up to max_extensions extensions of edge winners; or TPE trials).
    # A tuning run's objective is its last epoch: with tune_evaluate=log it is evaluated at epochs 0, 1, 2,
    # 4, ... and the last only (trainer.evaluate=log), unless the sweep sets trainer.evaluate itself.
    extra = ()
    if tune_evaluate == "log" and not any(_key(line) == "trainer.evaluate" for arm in valid_arms for line in arm.lines):
        extra = ("trainer.evaluate=log",)
    search = str(protocol.get("search", "grid"))
    if search not in ("grid", "tpe"):
        raise PlanError(f"sweep.protocol.search={search!r} is not allowed; allowed: grid | tpe")
    if search == "tpe":
        if not _tpe_rounds(engine, valid_arms, tuned, user_grid, tune_seeds, extra, setting_name, protocol):
            return  # lost or interrupted tuning runs: resume re-runs only those and asks the same settings
    pending, round_no = ([] if search == "tpe" else list(valid_arms)), 0
    while pending:
        specs = []
        for arm in pending:
            for setting in _settings(arm, tuned):
                if setting in arm.jobs:
                    continue
                arm.settings.append(setting)
                arm.jobs[setting] = []
                specs.extend((arm.lines + setting + (f"seed={seed}",) + extra, "tune") for seed in tune_seeds)
        title = "tune" if round_no == 0 else f"tune, grid extended past its edge ({round_no})"
        jobs = engine.round(specs, title=title, skip_invalid=True)
        index = {job.overrides[:-1]: job for job in jobs}  # without the sweep.stage line
        for arm in pending:
            for setting in arm.settings:
                for seed in tune_seeds:
                    job = index.get(arm.lines + setting + (f"seed={seed}",) + extra)
                    if job is not None:
                        arm.jobs[setting].append(job)
        if engine.stopped():
            return  # lost or interrupted tuning runs: nothing can be chosen; resume re-runs only those
        task = next((job.task for job in jobs if job.task), None)
        next_pending = []
        for arm in pending:
            choose(engine, arm, setting_name, task)
            if arm.extensions < plan["max_extensions"] and _edge_extension(arm, tuned):
                arm.extensions += 1
                next_pending.append(arm)
        pending, round_no = next_pending, round_no + 1

    rows = []
    for arm in valid_arms:
        arm.still_on_edge = search == "grid" and _on_edge(arm, tuned)
        row = {key: _number(v) if _number(v) is not None else v
               for key, v in (line.partition("=")[::2] for line in arm.lines) if key in arm_keys}
        chosen = dict(line.partition("=")[::2] for line in arm.choice) if arm.choice else {}
        for key in tuned:
            row[key] = _number(chosen[key]) if key in chosen and _number(chosen[key]) is not None else chosen.get(key)
        row.update(objective=objective_name(setting_name, next((j.task for js in arm.jobs.values() for j in js
                                                                 if j.task), None)),
                   objective_value=arm.choice_value, n_settings=len(arm.settings), edge_extended=arm.extensions > 0)
        rows.append(row)
        plan["arms"].append({"arm": list(arm.lines), "chosen": list(arm.choice or []),
                             "all_tuning_seeds_ok": arm.choice_safe, "still_on_edge": arm.still_on_edge,
                             "extensions": arm.extensions})
    import pandas as pd

    if rows:
        plan["objective"] = rows[0]["objective"]  # resolved: val_accuracy, val_loss, ...
    plan["objective_setting"] = setting_name
    columns = [*arm_keys, *tuned, "objective", "objective_value", "n_settings", "edge_extended"]
    atomic_write_text(engine.sweep_dir / "tuned.csv", pd.DataFrame(rows, columns=columns).to_csv(index=False))
    write_json(engine.sweep_dir / "sweep.json", plan)
    for arm in valid_arms:
        if arm.still_on_edge:
            print(f"lossbench: note: {arm.label()}: the chosen {', '.join(arm.choice)} is still on the grid's edge "
                  f"after {arm.extensions} extensions", flush=True)
        if arm.choice is not None and not arm.choice_safe:
            print(f"lossbench: note: {arm.label()}: no setting trained on every tuning seed; the best of them is "
                  "confirmed", flush=True)

    # stage 2: confirm each arm's choice on fresh seeds (arms that cannot work: listed as skipped)
    specs = [(arm.lines + arm.choice + (f"seed={seed}",), "confirm")
             for arm in valid_arms if arm.choice is not None for seed in confirm_seeds]
    specs += [(arm.lines + (f"seed={seed}",), "confirm") for arm, _ in bad for seed in confirm_seeds]
    engine.round(specs, title="confirm", skip_invalid=True)
