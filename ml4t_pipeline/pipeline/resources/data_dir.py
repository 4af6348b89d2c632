"""Where the raw input files live: prices.parquet, signals.parquet, context.parquet, and the
optional corporate_actions.parquet."""

import os
from pathlib import Path

import dagster as dg

DATA_DIR_ENV = "ML4T_DATA_DIR"
DEFAULT_DATA_DIR = "data/sample"
ROLES = ("prices", "signals", "context")
CORPORATE_ACTIONS = "corporate_actions"
OPTIONAL_ROLES = (CORPORATE_ACTIONS,)


class DataDirResource(dg.ConfigurableResource["DataDirResource"]):
    """A directory holding `<role>.parquet` for role in prices, signals, context, and
    optionally corporate_actions (a data directory without it applies no actions).

    `path` unset means $ML4T_DATA_DIR, else ``data/sample`` (relative to the working directory);
    the environment is read when the resource is used in a run, not when the code is imported.
    """

    path: str | None = None

    def root(self) -> Path:
        return Path(self.path or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).absolute()

    def file(self, role: str) -> Path:
        if role not in ROLES and role not in OPTIONAL_ROLES:
            msg = (
                f"unknown input role {role!r}; expected one of {', '.join(ROLES + OPTIONAL_ROLES)}"
            )
            raise ValueError(msg)
        return self.root() / f"{role}.parquet"
