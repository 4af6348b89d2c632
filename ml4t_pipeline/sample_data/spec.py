"""What to generate: `SampleSpec`, validated on construction."""

from __future__ import annotations

import dataclasses
import datetime
from dataclasses import dataclass

from ml4t_pipeline.errors import ConfigError
from ml4t_pipeline.sample_data.scenarios import SCENARIOS


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleSpec:
    """What to generate. Every field is validated on construction (`ConfigError`)."""

    assets: int = 50
    days: int = 252
    scenario: str = "mixed"
    seed: int = 2
    skill: float = 0.55  # target hit rate of the score's side over the next `horizon` bars
    horizon: int = 5
    start: datetime.date = datetime.date(2020, 1, 1)
    atr_window: int = 14

    def __post_init__(self) -> None:
        check_int("SampleSpec.assets", self.assets, minimum=1)
        check_int("SampleSpec.days", self.days, minimum=2)
        check_int("SampleSpec.seed", self.seed, minimum=0)
        check_int("SampleSpec.horizon", self.horizon, minimum=1)
        check_int("SampleSpec.atr_window", self.atr_window, minimum=1)
        if self.scenario not in SCENARIOS:
            msg = f"SampleSpec.scenario must be one of {SCENARIOS}, got {self.scenario!r}"
            raise ConfigError(msg)
        is_number = isinstance(self.skill, int | float) and not isinstance(self.skill, bool)
        if not is_number or not 0.0 <= self.skill <= 1.0:
            msg = f"SampleSpec.skill must be a number in [0, 1], got {self.skill!r}"
            raise ConfigError(msg)
        if not isinstance(self.start, datetime.date) or isinstance(self.start, datetime.datetime):
            msg = f"SampleSpec.start must be a datetime.date, got {self.start!r}"
            raise ConfigError(msg)

    def to_dict(self) -> dict[str, object]:
        """The fields, JSON-ready (``start`` as an ISO date)."""
        fields = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        fields["start"] = self.start.isoformat()
        return fields


def check_int(label: str, value: object, *, minimum: int) -> None:
    """`ConfigError` unless ``value`` is an int (not a bool) >= ``minimum``; names ``label``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        msg = f"{label} must be an integer >= {minimum}, got {value!r}"
        raise ConfigError(msg)
