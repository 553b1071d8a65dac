"""Pass instruments the pipeline attaches: write the module after each graph pass, check it is well formed."""

from __future__ import annotations

from pathlib import Path

import tvm


@tvm.instrument.pass_instrument
class DumpModules:
    """Writes `folder/NN-<pass>.py` (or `<pass>.py` unnumbered) after each of the named passes;
    the TVM passes they run inside are skipped."""

    def __init__(self, folder: Path, names: list[str], numbered: bool = True):
        self.folder = Path(folder)
        self.names = set(names)
        self.numbered = numbered
        self.index = 1

    def run_after_pass(self, mod, info):
        if info.name not in self.names:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{self.index:02d}-{info.name}.py" if self.numbered else f"{info.name}.py"
        (self.folder / name).write_text(mod.script(show_meta=False))
        self.index += 1


@tvm.instrument.pass_instrument
class CheckWellFormed:
    """Fails the pass that leaves an ill-formed Relax module (set EDGECC_CHECK_WELL_FORMED=1; tests do)."""

    def __init__(self, names: list[str]):
        self.names = set(names)

    def run_after_pass(self, mod, info):
        from tvm import relax

        if info.name in self.names:
            try:
                relax.analysis.well_formed(mod)  # raises on the first violation
            except Exception as exc:  # noqa: BLE001 - tvm raises its own types; name the pass that did it
                raise RuntimeError(f"graph pass {info.name} left an ill-formed Relax module: {exc}") from exc
