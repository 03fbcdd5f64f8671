"""What a rerun into an existing output does (the job's resume policy): which rows count as done, whether earlier
rows were made with other transcript settings (refuse, redo or keep: `resume.on_settings_change`), and the tidying
after the commits (older copies of replaced rows, orphans of edited manifests).

The done-index is built by a Ray task and stays in the object store: neither the driver nor a read task holds the
done ids as Python objects (connectors.resume).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from connectors.output_store import OutputStore
from jobs.config import ConfigError
from jobs.plan import Plan
from pipeline.ledger import LedgerTotals

log = logging.getLogger("nemotron_batch")


@dataclass
class ResumeState:
    """What the output holds, as this run starts."""

    index_refs: list = field(default_factory=list)  # the done-index in the object store ([] for an empty output)
    stale: dict = field(default_factory=dict)  # recordings file -> ids of older copies a killed job left behind
    present: set = field(default_factory=set)  # runs whose rows are in the output


def _index_task(store: OutputStore, retry_failed: bool, redo_runs: frozenset):
    """Ray task: the resume index (stays in the object store), the stale copies and the runs present (to the driver,
    both small)."""
    index = store.resume_index(retry_failed=retry_failed, redo_runs=redo_runs)
    return index, index.stale, set(index.runs)


def _remote_index(store: OutputStore, retry_failed: bool, redo_runs: frozenset = frozenset()):
    import ray

    return ray.remote(num_cpus=0, num_returns=3)(_index_task).remote(store, retry_failed, redo_runs)


def changed_settings(p: Plan, records: dict[str, dict], present: set[str]) -> dict[str, dict]:
    """run_id -> {setting: (then, now)} for the runs whose rows are in the output and whose transcript settings
    differ from this run's."""
    now = p.transcript_settings()
    changed = {}
    for run_id in sorted(present):
        then = (records.get(run_id) or {}).get("transcript_settings")
        if then is None:
            continue  # a run without a record (or from before records had them): nothing to compare
        # A setting a record does not have (a run from before it was recorded) is not compared.
        diff = {k: (then.get(k), v) for k, v in now.items() if k in then and then[k] != v}
        if diff:
            changed[run_id] = diff
    return changed


def settings_message(changed: dict[str, dict]) -> str:
    run_id, diff = next(iter(changed.items()))
    parts = ", ".join(f"{k}={then!r} (now {now!r})" for k, (then, now) in diff.items())
    return (f"output_path holds rows of {len(changed)} earlier run(s) made with other settings that change the "
            f"transcript: run {run_id} used {parts}. Use another output_path, or resume.on_settings_change=redo "
            f"(transcribe those rows again, replacing them) or =keep (keep them; transcribe only new rows)")


def resume_state(p: Plan) -> ResumeState:
    """The done-index and what the policy says of earlier rows; ConfigError when it says refuse."""
    import ray

    store, resume = p.store, p.spec.resume
    state = ResumeState()
    if store.committed_files()[1]:
        index_ref, stale_ref, runs_ref = _remote_index(store, resume.retry_failed)
        state.stale, state.present = ray.get([stale_ref, runs_ref])
        state.index_refs = [index_ref]
    changed = changed_settings(p, store.run_records(), state.present)
    if changed and resume.on_settings_change == "refuse":
        raise ConfigError(settings_message(changed))
    if changed and resume.on_settings_change == "redo":
        log.warning("resume.on_settings_change=redo: rows of %d earlier run(s) made with other settings are "
                    "transcribed again", len(changed))
        state.index_refs = [_remote_index(store, resume.retry_failed, frozenset(changed))[0]]
    elif changed:
        log.warning("resume.on_settings_change=keep: rows of %d earlier run(s) made with other settings are kept",
                    len(changed))
    return state


def remove_stale(store: OutputStore, stale: dict) -> int:
    """An earlier job died between committing a newer copy of a row and removing the older one: remove it now."""
    return store.remove_rows({f: set(ids) for f, ids in stale.items()}) if stale else 0


def tidy(store: OutputStore, totals: LedgerTotals) -> int:
    """After the commits: remove the older copies of replaced rows, and the orphans. Returns the rows removed."""
    if not totals.replaced and not totals.orphans:
        return 0
    import ray

    _, stale_ref, _ = _remote_index(store, True)
    drop = {f: set(ids) for f, ids in ray.get(stale_ref).items()}
    if totals.orphans:
        located = ray.get(ray.remote(num_cpus=0)(OutputStore.locate).remote(store, list(totals.orphans)))
        for f, ids in located.items():
            drop.setdefault(f, set()).update(ids)
    removed = store.remove_rows(drop) if drop else 0
    if removed:
        log.info("removed %d older or orphaned row(s) from earlier files", removed)
    return removed
