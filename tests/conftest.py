import os
import sys
from pathlib import Path

import pytest

# Every compile in the tests checks that each graph pass leaves a well-formed Relax module.
os.environ.setdefault("EDGECC_CHECK_WELL_FORMED", "1")

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))

# Subsystems keep their fixtures in tests/fixtures_<area>.py; each is loaded as a plugin.
pytest_plugins = sorted(p.stem for p in TESTS_DIR.glob("fixtures_*.py"))


def pytest_runtest_setup(item):
    """`@pytest.mark.toolchain("nvcc", ...)`: skip, saying what is missing, when a tool is not on PATH."""
    from edgecc.targets import find_tool

    for mark in item.iter_markers("toolchain"):
        missing = [tool for tool in mark.args if find_tool(tool) is None]
        if missing:
            pytest.skip(
                f"needs {', '.join(missing)} on PATH (scripts/setup.sh installs the cross gcc and QEMU; "
                "nvcc comes with the CUDA toolkit)"
            )
