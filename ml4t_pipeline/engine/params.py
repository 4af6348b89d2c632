"""Declarative checks of configuration values: one definition per kind of check.

A check states a value's type, range and meaning; `check(where, value)` returns the value
normalised (a number as float, a whole number as int, pairs as a tuple of tuples) or raises a
`ConfigError` naming `where`, the key path of the value (`risk[1].pct`,
`execution.commission.minimum`, `strategy.params.weight`). Numbers must be finite; booleans
are never numbers. The config loader, the risk rules, the cost models and the built-in
strategies all check their values with these, so the Python API and a YAML file get the
same errors.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from numbers import Integral, Real
from typing import Any, ClassVar, NoReturn, Protocol

from ml4t_pipeline.errors import ConfigError, shown


class Check(Protocol):
    def expected(self) -> str:
        """What a good value is, for messages: 'a fraction in (0, 1): 0.05 for 5 %'."""
        ...

    def check(self, where: str, value: Any) -> Any:
        """`value` normalised, or a `ConfigError` naming `where`."""
        ...


def fail(where: str, expected: str, value: Any) -> NoReturn:
    """Raise the one shape of a bad-value message: '<path> must be <expected>, got <value>'."""
    msg = f"{where} must be {expected}, got {shown(value)}"
    raise ConfigError(msg)


@dataclass(frozen=True, slots=True, kw_only=True)
class Number:
    """A finite number (int or float, read as float) in a range; `whole` asks for an int."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the range excludes `low`
    high_open: bool = False  # the range excludes `high`
    whole: bool = False
    noun: str = ""  # what the value is, e.g. "a fraction"; default "a number" / "a whole number"
    meaning: str = ""  # how to read it, e.g. "0.05 for 5 %"
    optional: bool = False  # None is allowed (the value is not set)

    def expected(self) -> str:
        noun = self.noun or ("a whole number" if self.whole else "a number")
        low, high = self.low, self.high
        if low is not None and high is not None:
            interval = f" in {'(' if self.low_open else '['}{low:g}, {high:g}{')' if self.high_open else ']'}"
        elif low is not None:
            interval = f" {'>' if self.low_open else '>='} {low:g}"
        elif high is not None:
            interval = f" {'<' if self.high_open else '<='} {high:g}"
        else:
            interval = ""
        return f"{noun}{interval}{f': {self.meaning}' if self.meaning else ''}"

    def check(self, where: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, Integral if self.whole else Real):
            fail(where, self.expected(), value)
        number: float = int(value) if self.whole and isinstance(value, Integral) else float(value)
        if not math.isfinite(number):
            fail(where, f"finite, {self.expected()}", value)
        low, high = self.low, self.high
        if (low is not None and (number <= low if self.low_open else number < low)) or (
            high is not None and (number >= high if self.high_open else number > high)
        ):
            fail(where, self.expected(), number)
        return number


@dataclass(frozen=True, slots=True, kw_only=True)
class Text:
    """A non-empty string, e.g. a column name."""

    noun: str = "a non-empty string"

    def expected(self) -> str:
        return self.noun

    def check(self, where: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            fail(where, self.noun, value)
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Flag:
    def expected(self) -> str:
        return "true or false"

    def check(self, where: str, value: Any) -> bool:
        if not isinstance(value, bool):
            fail(where, self.expected(), value)
        return value


@dataclass(frozen=True, slots=True)
class Choice:
    """One of a `StrEnum`'s values (given as the enum or its string)."""

    enum: type[StrEnum]

    def expected(self) -> str:
        return f"one of {', '.join(c.value for c in self.enum)}"

    def check(self, where: str, value: Any) -> StrEnum:
        if isinstance(value, self.enum):
            return value
        if isinstance(value, str):
            try:
                return self.enum(value)
            except ValueError:
                pass
        fail(where, self.expected(), value)


@dataclass(frozen=True, slots=True)
class Pairs:
    """A list of [first, second] pairs, e.g. a trailing stop's [[mfe_threshold, pct], ...]."""

    first: tuple[str, Check]
    second: tuple[str, Check]

    def expected(self) -> str:
        return f"a list of [{self.first[0]}, {self.second[0]}] pairs"

    def check(self, where: str, value: Any) -> tuple[tuple[Any, Any], ...]:
        (a, first), (b, second) = self.first, self.second
        expected = self.expected()
        if not isinstance(value, list | tuple):
            fail(where, expected, value)
        pairs = []
        for i, pair in enumerate(value):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                fail(f"{where}[{i}]", f"a pair [{a}, {b}] (in {expected})", pair)
            pairs.append(
                (
                    first.check(f"{where}[{i}][0] ({a})", pair[0]),
                    second.check(f"{where}[{i}][1] ({b})", pair[1]),
                )
            )
        return tuple(pairs)


#: a fraction of a price or of equity, both ends excluded: a stop 5 % away is 0.05
FRACTION = Number(
    low=0, high=1, low_open=True, high_open=True, noun="a fraction", meaning="0.05 for 5 %"
)
#: a rate that may be zero, e.g. a commission: 0.001 is 0.1 %
RATE = Number(low=0, high=1, high_open=True, noun="a fraction", meaning="0.001 for 0.1 %")
POSITIVE = Number(low=0, low_open=True)
NON_NEGATIVE = Number(low=0)
ANY_NUMBER = Number()
COUNT = Number(low=1, whole=True)  # a whole number >= 1
NON_NEGATIVE_COUNT = Number(low=0, whole=True)
WHOLE = Number(whole=True)
NAME = Text(noun="a non-empty name")
FLAG = Flag()


def unknown_keys(
    where: str, given: Mapping[str, Any], allowed: Mapping[str, Any] | set[str] | frozenset[str]
) -> None:
    """A `ConfigError` naming the path of every key of `given` not in `allowed`."""
    extra = sorted(str(k) for k in given if k not in allowed)
    if extra:
        paths = ", ".join(f"{where}.{k}" if where else k for k in extra)
        msg = f"unknown key(s) {paths} (allowed{f' in {where}' if where else ''}: {', '.join(sorted(allowed))})"
        raise ConfigError(msg)


def check_params(
    where: str, spec: Mapping[str, Check], values: Mapping[str, Any]
) -> dict[str, Any]:
    """`values` with every key known to `spec` and every value checked (normalised)."""
    unknown_keys(where, values, spec)
    return {
        key: spec[key].check(f"{where}.{key}" if where else key, value)
        for key, value in values.items()
    }


def check_init(
    where: str, cls: Any, spec: Mapping[str, Check], values: Mapping[str, Any]
) -> dict[str, Any]:
    """`check_params` for the keyword arguments of dataclass `cls`: its fields without a
    default must be given."""
    unknown_keys(where, values, spec)
    for f in dataclasses.fields(cls):
        given = f.name in values
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if f.init and not given and not has_default:
            msg = f"{where}.{f.name} is required: {spec[f.name].expected()}"
            raise ConfigError(msg)
    return check_params(where, spec, values)


def field_defaults(cls: Any) -> dict[str, Any]:
    """The defaults of dataclass `cls`'s keyword arguments (those that have one)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.init and f.default is not dataclasses.MISSING
    }


def check_fields(obj: Any, where: str, spec: Mapping[str, Check]) -> None:
    """Check (and normalise in place) the fields of a dataclass named in `spec`."""
    for key, param in spec.items():
        object.__setattr__(obj, key, param.check(f"{where}.{key}", getattr(obj, key)))


class Checked:
    """A dataclass whose parameters are checked against `PARAMS` on construction.

    `checked(where, params)` checks keyword arguments before construction (a config's values,
    `where` their key path); construction checks again with the class name as the path, so
    an object built in Python gets the same errors (`StopLoss.pct`).
    """

    __slots__ = ()
    PARAMS: ClassVar[Mapping[str, Check]] = {}

    @classmethod
    def spec(cls) -> Mapping[str, Check]:
        return cls.PARAMS

    @classmethod
    def checked(cls, where: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """`params` checked and normalised; `where` is their key path (`risk[1]`)."""
        values = check_init(where, cls, cls.spec(), params)
        cls.check_together(where, field_defaults(cls) | values)
        return values

    @classmethod
    def check_together(cls, where: str, values: Mapping[str, Any]) -> None:
        """Checks across parameters; `values` holds every parameter (defaults included)."""

    def __post_init__(self) -> None:
        values = {key: getattr(self, key) for key in self.spec()}
        for key, value in self.checked(type(self).__name__, values).items():
            object.__setattr__(self, key, value)
