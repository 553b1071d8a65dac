"""Board-side TVM RPC server with edgecc's energy probes registered, so energy is read where the model runs.

On the board:  python -m edgecc.measure.energy.board_server --host 0.0.0.0 --port 9090 [--tracker HOST:PORT --key KEY]
(any tvm.exec.rpc_server arguments; EDGECC_ENERGY_ROOT points the meters at another sysfs root).

TVM serves each session in a fresh worker interpreter, so registering in this process is not enough:
a sitecustomize on PYTHONPATH registers the probes in every interpreter the server starts.
"""

from __future__ import annotations

import atexit
import os
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

PROBES_ENV = "EDGECC_ENERGY_PROBES"

SITECUSTOMIZE = f"""\
import os
if os.environ.get("{PROBES_ENV}"):
    try:
        from edgecc.measure.energy.remote import register_board_probes
        register_board_probes(os.environ.get("EDGECC_ENERGY_ROOT", "/"))
    except Exception as exc:  # the server must still serve models without energy
        print("edgecc energy probes not registered:", exc)
"""


def main() -> None:
    boot = Path(tempfile.mkdtemp(prefix="edgecc-energy-"))
    (boot / "sitecustomize.py").write_text(SITECUSTOMIZE)
    atexit.register(shutil.rmtree, boot, True)
    package_root = str(Path(__file__).resolve().parents[3])  # so workers import this edgecc
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(boot), package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    os.environ[PROBES_ENV] = "1"
    sys.path[:0] = [str(boot)]
    from edgecc.measure.energy.remote import register_board_probes

    meter = register_board_probes(os.environ.get("EDGECC_ENERGY_ROOT", "/"))
    print(f"edgecc energy probes registered (meter: {meter or 'none'})", flush=True)
    sys.argv = ["tvm.exec.rpc_server", *sys.argv[1:]]
    runpy.run_module("tvm.exec.rpc_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
