"""The engine is a library: importing it must not import dagster."""

import subprocess
import sys


def test_the_engine_imports_without_dagster() -> None:
    code = "import sys, ml4t_pipeline.engine; print('dagster' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
