"""The bundle's README.md: exact steps for the board, the thread setting, sizes and minimum requirements."""

from __future__ import annotations

from edgecc.bundle.elf_needs import FAMILIES

GLIBC_RELEASES = (
    "Debian 12 / Raspberry Pi OS bookworm: glibc 2.36, GLIBCXX_3.4.30; Ubuntu 22.04 (JetPack 6): "
    "glibc 2.35, GLIBCXX_3.4.30; Ubuntu 24.04: glibc 2.39, GLIBCXX_3.4.33"
)


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _shape(entry: dict) -> str:
    dynamic = entry.get("dynamic_axes") or {}  # {"1": "sequence"}: any size 1..shape[1]
    dims = [f"1..{d} ({dynamic[str(a)]})" if str(a) in dynamic else str(d) for a, d in enumerate(entry["shape"])]
    text = f"`{entry['name']}` {entry['dtype']} [{', '.join(dims)}]"
    if entry.get("valid_range"):
        lo, hi = entry["valid_range"]
        text += f", values {lo} <= v < {hi}"
    return text


def _run_command(inputs: list[dict], prefix: str = "bundle/bin/edgecc-run") -> str:
    args = " ".join(f"--input {e['name']}={e['name']}.npy" for e in inputs)
    return f"{prefix} {args} --output-dir out/"


def _make_inputs(inputs: list[dict]) -> str:
    lines = ["import numpy as np"]
    for e in inputs:
        shape = tuple(e["shape"])
        if e.get("valid_range"):
            lo, hi = e["valid_range"]
            value = f"np.random.randint({lo}, {hi}, {shape}).astype('{e['dtype']}')"
        elif "mask" in e["name"].lower():
            value = f"np.ones({shape}, '{e['dtype']}')"
        else:
            value = f"np.zeros({shape}, '{e['dtype']}')"
        lines.append(f"np.save('{e['name']}.npy', {value})")
    return "\n".join(lines)


def _requirements(result, cuda) -> list[str]:
    req = result.requirements
    lines = [f"- {req['os']} on {req['arch']}."]
    minimum = req.get("minimum_versions", {})
    if minimum:
        lines.append(
            "- "
            + ", ".join(f"{FAMILIES[family]} with `{name}`" for family, name in minimum.items())
            + " or newer: the newest versions any shipped binary asks for (read from their ELF version "
            f"needs). For reference: {GLIBC_RELEASES}."
        )
    if req.get("system_libraries"):
        lines.append(
            "- System libraries the board provides: "
            + ", ".join(f"`{n}`" for n in req["system_libraries"])
            + ". Nothing else: no Python, no TVM installation."
        )
    if cuda is not None:
        lines += _cuda_requirements(cuda, req.get("cuda", {}).get("runtime_build"))
    return lines


def _cuda_text(version: int) -> str:
    return f"{version // 1000}.{(version % 1000) // 10}"


def _cuda_requirements(cuda, runtime_build: dict | None) -> list[str]:
    major, minor = cuda.nvcc_release
    minimum = _cuda_text(cuda.min_driver_version)
    lines = [
        f"- An NVIDIA driver for CUDA {minimum} or newer, and `{cuda.runtime_library}`: model.so's {cuda.device_arch} "
        f"device code was compiled by {cuda.device_compiler} (CUDA {major}.{minor}) as SASS for {cuda.device_arch}, "
        "so the driver loads it without JIT-compiling PTX, and TVM's CUDA runtime module "
        f"(`lib/libtvm_runtime_cuda.so`) links `{cuda.runtime_library}`, which the board's CUDA installation provides "
        "(it is not shipped).",
        f"- On a Jetson that means {cuda.jetpack}. An older JetPack cannot load this bundle; "
        "`edgecc_model_open` checks the driver's CUDA version (cuDriverGetVersion, through dlopen of "
        "libcuda.so.1) and says so in one line instead of failing in the loader.",
    ]
    if runtime_build:
        oldest = runtime_build.get("oldest_cudart", {})
        checked = (
            f"each of the {oldest['functions']} CUDA runtime functions it calls was checked to exist in CUDA "
            f"{oldest['release']}'s libcudart.so.12"
            if oldest.get("checked") and not oldest.get("missing")
            else "its CUDA runtime functions were not checked against an older libcudart"
        )
        lines.append(
            f"- `lib/libtvm_runtime_cuda.so` was built by edgecc for CUDA 12 (no TVM wheel ships one): TVM "
            f"{runtime_build.get('tvm_version')}'s CUDA runtime sources from `{runtime_build.get('tvm_source')}` "
            f"(commit {runtime_build.get('tvm_source_commit', 'unknown')[:12]}; the wheel was built from "
            f"{runtime_build.get('wheel_commit')}) with the wheel's runtime headers laid over them, against CUDA "
            f"{runtime_build.get('cuda_release')} headers, linked with no undefined symbols against the shipped "
            f"libtvm_runtime.so and libtvm_ffi.so; {checked}."
        )
    return lines


def _not_verified(cuda, runtime_build: dict | None) -> list[str]:
    emulated = (
        "under QEMU user-mode with a stand-in driver and NVIDIA's aarch64 libcudart.so.12, edgecc's tests open a "
        "bundle like this one up to the first call into the driver (the CUDA runtime module loads and registers "
        "with the shipped TVM runtime, model.so and its CUDA module load)"
        if runtime_build
        else "under emulation the aarch64 binaries load up to the CUDA driver check"
    )
    return [
        f"**Not verified on a device:** edgecc has no Jetson and no GPU. Checked: the aarch64 binaries link; "
        f"{emulated}; the device code's SM architecture and CUDA ELF ABI; the CUDA sonames and versions stated "
        "above. Not checked: that the kernels run and give the right answers on the GPU, and that "
        f"{cuda.jetpack}'s driver accepts this device code and runtime (NVIDIA's compatibility rules say it "
        "does; no driver was here to ask).",
        "",
    ]


def _files_table(result) -> list[str]:
    rows = ["| file | size |", "|---|---:|"]
    for path, size in result.files.items():
        if not path.startswith(("src/third_party/", "licenses/")):
            rows.append(f"| `{path}` | {_size(size)} |")
    third = sum(s for p, s in result.files.items() if p.startswith("src/third_party/"))
    if third:
        rows.append(f"| `src/third_party/tvm-ffi/include/` (headers, to rebuild the C API) | {_size(third)} |")
    return rows


def _c_api_section(result) -> list[str]:
    rpath = "@loader_path/../lib" if result.requirements["os"] == "macos" else "$ORIGIN/../lib"
    return [
        "## Your own program: the C API",
        "",
        "`include/edgecc_model.h` (C and C++). Every call returns a status and leaves one line in "
        "`edgecc_last_error()`; bad inputs (count, name, shape, dtype, byte size, ids outside their valid range) "
        "are rejected before anything runs. See `src/edgecc_run.c` for a complete program.",
        "",
        "```c",
        '#include "edgecc_model.h"',
        'edgecc_model *m = edgecc_model_open("bundle", NULL);          /* NULL options: default threads */',
        'if (!m) { fprintf(stderr, "%s\\n", edgecc_last_error()); return 1; }',
        'edgecc_tensor in[] = {{"input_ids", "int64", 2, shape, ids, sizeof ids}, /* ... */};',
        'edgecc_tensor out[] = {{NULL, "float32", 3, out_shape, hidden, sizeof hidden}};',
        'if (edgecc_model_run(m, in, n_in, out, n_out) != EDGECC_OK) fprintf(stderr, "%s\\n", edgecc_last_error());',
        "edgecc_model_close(m);",
        "```",
        "",
        f"Build: `cc app.c -Ibundle/include -Lbundle/lib -ledgecc_model -Wl,-rpath,'{rpath}'`.",
        "",
    ]


def _threads_section(result) -> list[str]:
    return [
        "## Threads",
        "",
        f"The C API runs CPU kernels on {result.threads} threads (model.json `threads`: the board's cores). "
        "`TVM_NUM_THREADS=N` in the environment overrides it, and `edgecc_open_options.num_threads` (or "
        "`edgecc-run --threads N`) overrides both. TVM alone would use half the logical CPUs on x86. TVM "
        "sizes its thread pool once per process, at the first run, so set it before then.",
        "",
    ]


def _linux_steps(result, inputs, manifest, prefix="") -> list[str]:
    return [
        "## Run it on the board",
        "",
        "```",
        "# on any machine with numpy: inputs as .npy files (shapes and dtypes below)",
        "python - <<'EOF'",
        _make_inputs(inputs),
        "EOF",
        f"scp -r {result.bundle.name} *.npy user@board:",
        f"ssh user@board '{prefix}{_run_command(inputs, result.bundle.name + '/bin/edgecc-run')}'",
        "```",
        "",
        "`edgecc-run` finds its bundle from its own path (or `--bundle DIR`), needs no environment variables "
        "(lib/ is found through the rpath `$ORIGIN/../lib`), writes `out/<output name>.npy` per output, and "
        "prints one `edgecc-run: error: ...` line with exit code 2 for a bad input or 1 for a runtime "
        "failure. `--info` lists the tensors; `--repeat N` times N runs.",
        "",
        "Output file names: letters, digits, `_`, `-` and `.` of the output's name stay; every other byte "
        "(a `/`, a space, `%` itself, a leading `.`) is written `%XX` in hexadecimal, so distinct outputs "
        "never share a file: `y/1` is `y%2F1.npy`, `y_1` is `y_1.npy`. Outputs whose names differ only in "
        "letter case are refused (one file on a case-insensitive file system). Each output is written to a "
        "temporary file in the folder, synced and renamed into place only after every output was written "
        "whole: a full disk or a file-size limit leaves no partial `.npy` and earlier files as they were.",
        "",
        "Before it loads anything, the runtime checks the bundle against `model.json`: every path it names "
        "lies inside the bundle (no absolute paths, `..` or links out), and each library it loads has the "
        "size and SHA-256 recorded in its `files` table and whole ELF headers and segments. A bundle that "
        "fails is refused with one line; deploy it again.",
        "",
        "Rebuild the example (or the C API, `-DEDGECC_BUILD_C_API=ON`) on the board or with a cross compiler:",
        "",
        "```",
        f"cd {result.bundle.name} && cmake -S src -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build "
        "&& cmake --install build --prefix .",
        "```",
        "",
    ]


def _metal_steps(result, inputs, manifest) -> list[str]:
    return [
        "## What you do next, on the Mac",
        "",
        "This bundle holds the model (`model.dylib`, linked here without the macOS SDK, with the Metal shader "
        "source inside and the objects to relink it beside it), the macOS arm64 TVM runtime with its Metal "
        "module (`lib/`, from TVM's macOS wheel), the C API and the example. The C API and edgecc-run are "
        "built on the Mac, because no macOS SDK exists on Linux:",
        "",
        "```",
        "xcode-select --install        # clang and the macOS SDK, once",
        "brew install cmake            # or any CMake >= 3.18",
        f"cd {result.bundle.name}",
        "xattr -dr com.apple.quarantine .   # only if the bundle was downloaded through a browser",
        "cmake -S src -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build && cmake --install build --prefix .",
        "python3 - <<'EOF'",
        _make_inputs(inputs),
        "EOF",
        _run_command(inputs, "bin/edgecc-run"),
        "```",
        "",
        "If macOS refuses `model.dylib`, relink it there: "
        f"`{manifest.get('load', '').split('relink it on the Mac: ')[-1]}`",
        "",
        "Needs an Apple-silicon Mac with macOS 12 or newer (model.dylib's minimum; the TVM libraries need 11.0).",
        "**Not verified:** no Mac was available to edgecc; this bundle was built, never run.",
        "",
    ]


def _hexagon_steps(result, inputs, manifest) -> list[str]:
    missing = "\n".join(f"- {m}" for m in manifest.get("missing", []))
    return [
        "## What you do next, with the Hexagon SDK",
        "",
        f"This bundle holds `{manifest['library']}` (the whole model compiled by LLVM's Hexagon backend for "
        f"{manifest.get('contents', {}).get('cpu', 'Hexagon')}) and model.json. It has no `lib/`, `bin/` or C "
        "API: TVM runs Hexagon code only through its Hexagon runtime, which exists once built with Qualcomm's "
        "Hexagon SDK (not redistributable, not installable here). What is missing:",
        "",
        missing,
        "",
        "Steps with the SDK (Hexagon SDK 5.x, an Android phone with adb):",
        "",
        "1. `source $HEXAGON_SDK_ROOT/setup_sdk_env.source`.",
        "2. Build TVM 0.27's Hexagon runtime and RPC skel from TVM's source (`apps/hexagon_api` in the TVM "
        "repository, with `-DUSE_HEXAGON=ON -DUSE_HEXAGON_SDK=$HEXAGON_SDK_ROOT -DUSE_HEXAGON_ARCH=v73`).",
        "3. `adb push` the built `tvm_rpc_android`, `libtvm_runtime.so`, `libhexagon_rpc_skel.so` and "
        f"`{manifest['library']}` to the phone; start the RPC server there (unsigned PD or a signed skel).",
        f"4. From a host with TVM: `sess.load_module('{manifest['library']}')`, then "
        "`tvm.relax.VirtualMachine(lib, sess.hexagon())` and call `main` with the inputs below.",
        "",
        "**Not verified:** edgecc has no SDK and no phone; this library was built, never run.",
        "",
    ]


# What the user does next, per target kind; Linux boards (llvm, cuda) share the default.
NEXT_STEPS = {"metal": _metal_steps, "hexagon": _hexagon_steps}


def bundle_readme(result, manifest, kind, inputs, cuda, built) -> str:
    title = f"# {manifest.get('model')} for {result.target} ({kind.kind})"
    lines = [
        title,
        "",
        manifest["target"].get("description", ""),
        "",
        "Made by `edgecc deploy`: everything the board needs to run the model without Python or TVM "
        "installed. model.json describes the tensors:",
        "",
    ]
    lines += [f"- input {_shape(e)}" for e in inputs]
    lines += [f"- output {_shape(e)}" for e in manifest["outputs"]]
    lines += [
        "",
        "Integer inputs with a range index an embedding table; values outside it are rejected "
        "(TVM's gather would read out of bounds).",
        "",
    ]
    lines += NEXT_STEPS.get(kind.kind, _linux_steps)(result, inputs, manifest)
    if kind.has_c_api:
        lines += _threads_section(result) + _c_api_section(result)
    lines += ["## Board requirements", ""] + _requirements(result, cuda) + [""]
    if cuda is not None:
        lines += _not_verified(cuda, result.requirements.get("cuda", {}).get("runtime_build"))
    lines += ["## Files", ""] + _files_table(result) + [""]
    runtime = sum(result.runtime_libraries.values())
    lines += [
        f"Total {_size(result.total_bytes)}; runtime libraries in lib/ {_size(runtime)}"
        + (f" ({result.source}; no compiler libraries)" if result.source else "")
        + "."
    ]
    if built is not None:
        lines += [f"bin/ and lib/libedgecc_model were built with `{built.compiler_version}`."]
    elif kind.why_not_built:
        lines += [f"Nothing was compiled here: {kind.why_not_built}."]
    return "\n".join(lines) + "\n"
