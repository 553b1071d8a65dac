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


def pytest_addoption(parser):
    parser.addoption(
        "--host-cpu",
        metavar="LLVM_CPU",
        help="pin the `host` target to this LLVM CPU (as EDGECC_HOST_CPU does), e.g. haswell: the tests compile, "
        "choose kernels and run as on that class; a class this machine cannot run skips the session, saying why",
    )


def pytest_configure(config):
    """--host-cpu / EDGECC_HOST_CPU: pinned before any test module loads the host target. A CPU this one
    cannot run ends the session as skipped, with the reason; a name LLVM does not know is an error."""
    cpu = config.getoption("--host-cpu")
    if cpu:
        os.environ["EDGECC_HOST_CPU"] = cpu
    if not os.environ.get("EDGECC_HOST_CPU"):
        return
    from edgecc.errors import TargetError
    from edgecc.targets.cpu_flags import PinnedCpuNotRunnable, host_cpu

    try:
        host_cpu()
    except PinnedCpuNotRunnable as exc:
        pytest.exit(f"skipped: {exc}", returncode=pytest.ExitCode.OK)
    except TargetError as exc:
        pytest.exit(f"error: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture
def pin_host_cpu(monkeypatch):
    """pin_host_cpu(cpu): the `host` target pinned to LLVM's `cpu` for this test (EDGECC_HOST_CPU);
    skipped, with the refusal, where this CPU cannot run that class."""
    from edgecc.targets.cpu_flags import PIN_VARIABLE, PinnedCpuNotRunnable, host_cpu

    def pin(cpu: str) -> None:
        monkeypatch.setenv(PIN_VARIABLE, cpu)
        try:
            host_cpu()
        except PinnedCpuNotRunnable as exc:
            pytest.skip(str(exc))

    return pin


def pytest_report_header(config):
    pinned = os.environ.get("EDGECC_HOST_CPU")
    return f"host target pinned to {pinned} (EDGECC_HOST_CPU)" if pinned else None


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
