"""The month chain's lineage: what a stored month was built from, and whether the next month
may continue from it. No Dagster import: the rules are plain functions over stored months.

A month's `partition.json` records the config fingerprint it was built under, the sha256 of
the state it saved (`state_sha256`) and of the state it started from
(`previous_state_sha256`). Continuing from month p verifies every stored month from the first
configured month to p (`verify_chain`): each exists, holds the state its digest names, was
built under the current fingerprint, and started from the state its predecessor holds now.
The earliest month that breaks a rule is the one to re-run; every month after it is stale
(staleness follows the whole chain, not one level).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ml4t_pipeline.engine import RunConfig
from ml4t_pipeline.errors import StateError
from ml4t_pipeline.pipeline.partitions import MonthKey, PartitionSpec

FINGERPRINT_VERSION = 1


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_config_document(config: RunConfig) -> dict[str, Any]:
    """The parts of the run config a month's result depends on (not the data paths)."""
    document = dataclasses.asdict(config)
    document.pop("data", None)
    return document


def config_code_version(config: RunConfig, spec: PartitionSpec) -> str:
    """The `code_version` of the chained assets: the run config, the first month and every
    universe's definition (a change to any marks every stored month stale in Dagster)."""
    return sha256_text(
        _canonical(
            {
                "v": FINGERPRINT_VERSION,
                "run_config": run_config_document(config),
                "start_month": spec.start_month,
                "universes": {n: u.definition() for n, u in sorted(spec.universes.items())},
            }
        )
    )[:16]


def universes_code_version(spec: PartitionSpec) -> str:
    """The `code_version` of `feature_table`: the first month and the universes' definitions."""
    return sha256_text(
        _canonical(
            {
                "v": FINGERPRINT_VERSION,
                "start_month": spec.start_month,
                "universes": {n: u.definition() for n, u in sorted(spec.universes.items())},
            }
        )
    )[:16]


def chain_fingerprint(
    config: RunConfig, spec: PartitionSpec, universe: str, *, corporate_actions: bool
) -> str:
    """The fingerprint of one universe's chain: run config (execution, strategy, risk,
    validation, benchmark, metrics), first month, the universe's definition, corporate actions present or not."""
    return sha256_text(
        _canonical(
            {
                "v": FINGERPRINT_VERSION,
                "run_config": run_config_document(config),
                "start_month": spec.start_month,
                "universe": spec.universe(universe).definition(),
                "corporate_actions": corporate_actions,
            }
        )
    )


class Break(enum.StrEnum):
    """Why a stored month cannot be continued from."""

    MISSING = "missing"  # not stored
    TAMPERED = "tampered"  # state.json does not match its recorded sha256
    OTHER_CONFIG = "other_config"  # built under another config fingerprint
    STALE = "stale"  # its predecessor changed after it ran
    CHECK_FAILED = "check_failed"  # a blocking check failed on its latest materialization
    UNRECORDED = "unrecorded"  # stored before lineage was recorded (no fingerprint)


_ADVICE = {
    Break.MISSING: "it is not stored",
    Break.TAMPERED: "its state.json does not match the sha256 recorded when it was written",
    Break.OTHER_CONFIG: "it was built under another run config (fingerprint {found}, now {want})",
    Break.STALE: "the month before it was re-materialized after it ran",
    Break.CHECK_FAILED: "blocking check(s) failed on it: {found}",
    Break.UNRECORDED: "it records no config fingerprint (stored by an older version)",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMonth:
    """The lineage texts of one stored month, read from ONE version of its TableSet."""

    key: MonthKey
    state_json: str
    partition: Mapping[str, Any]

    @property
    def state_digest(self) -> str:
        return sha256_text(self.state_json)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainBreak:
    key: MonthKey
    reason: Break
    detail: str

    def message(self, continuing: MonthKey) -> str:
        return (
            f"backtest partition {continuing} cannot continue: month {self.key} {self.detail}; "
            f"re-materialize backtest from {self.key} in order (a backfill of {self.key.month:%Y-%m}"
            f" .. {continuing.month:%Y-%m} for universe {self.key.universe!r} does it in one run)"
        )


def _break(month: StoredMonth | None, key: MonthKey, want: str) -> ChainBreak | None:
    if month is None:
        return ChainBreak(key=key, reason=Break.MISSING, detail=_ADVICE[Break.MISSING])
    recorded = month.partition.get("state_sha256")
    found = month.partition.get("config_fingerprint")
    if recorded is None or found is None:
        return ChainBreak(key=key, reason=Break.UNRECORDED, detail=_ADVICE[Break.UNRECORDED])
    if recorded != month.state_digest:
        return ChainBreak(key=key, reason=Break.TAMPERED, detail=_ADVICE[Break.TAMPERED])
    if found != want:
        detail = _ADVICE[Break.OTHER_CONFIG].format(found=str(found)[:12], want=want[:12])
        return ChainBreak(key=key, reason=Break.OTHER_CONFIG, detail=detail)
    return None


def verify_chain(
    last: MonthKey,
    *,
    start_month: dt.date,
    fingerprint: str,
    read: Callable[[MonthKey], StoredMonth | None],
    failed_checks: Callable[[MonthKey], Sequence[str]] = lambda _key: (),
) -> StoredMonth:
    """The stored month `last`, once every month from `start_month` to it is sound; else a
    `StateError` naming the earliest month to re-run (see the module docstring)."""
    months: list[MonthKey] = []
    key = last
    while key.month >= start_month:
        months.append(key)
        key = key.previous()
    stored: dict[MonthKey, StoredMonth | None] = {}
    breaks: list[ChainBreak] = []
    for key in reversed(months):  # earliest first
        month = stored[key] = read(key)
        problem = _break(month, key, fingerprint)
        if problem is None and month is not None and key.month > start_month:
            before = stored[key.previous()]
            if before is not None and month.partition.get("previous_state_sha256") != (
                before.state_digest
            ):
                problem = ChainBreak(key=key, reason=Break.STALE, detail=_ADVICE[Break.STALE])
        if problem is None:
            failed = failed_checks(key)
            if failed:
                detail = _ADVICE[Break.CHECK_FAILED].format(found=", ".join(failed))
                problem = ChainBreak(key=key, reason=Break.CHECK_FAILED, detail=detail)
        if problem is not None:
            breaks.append(problem)
            break
    if breaks:
        raise StateError(breaks[0].message(last.next()))
    month = stored[last]
    if month is None:  # unreachable: a missing month is a break above
        raise StateError(ChainBreak(key=last, reason=Break.MISSING, detail="").message(last))
    return month


def stale_months(
    universe: str,
    stored: Sequence[dt.date],
    *,
    start_month: dt.date,
    fingerprint: str,
    read: Callable[[MonthKey], StoredMonth | None],
) -> list[MonthKey]:
    """The stored months of `universe` that cannot be trusted: from the first month that
    breaks a rule (or follows a gap) on, every later stored month."""
    by_key = {MonthKey(m, universe): read(MonthKey(m, universe)) for m in stored}
    key = MonthKey(start_month, universe)
    last = MonthKey(max(stored), universe) if stored else None
    before: StoredMonth | None = None
    while last is not None and key.month <= last.month:
        month = by_key.get(key)
        problem = _break(month, key, fingerprint)
        if (
            problem is None
            and month is not None
            and before is not None
            and month.partition.get("previous_state_sha256") != before.state_digest
        ):
            problem = ChainBreak(key=key, reason=Break.STALE, detail=_ADVICE[Break.STALE])
        if problem is not None:
            return [k for k in sorted(by_key, key=lambda k: k.month) if k.month >= key.month]
        before = month
        key = key.next()
    return []
