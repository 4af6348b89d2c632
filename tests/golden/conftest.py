"""Fixtures of the golden tests: the regeneration flag and the generated datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden.cases import Inputs, load_catalog


@pytest.fixture(scope="session")
def regen_golden(request: pytest.FixtureRequest) -> bool:
    """True with `--regen-golden`: rewrite the stored outputs instead of comparing."""
    return bool(request.config.getoption("--regen-golden"))


@pytest.fixture(scope="session")
def golden_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Generate each dataset of cases.yaml once per session, on first use."""
    datasets = load_catalog().datasets
    written: dict[str, dict[str, Path]] = {}

    def inputs(name: str) -> dict[str, Path]:
        if name not in written:
            written[name] = datasets[name].write(tmp_path_factory.mktemp(f"golden-{name}"))
        return written[name]

    return inputs
