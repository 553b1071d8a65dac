"""--precision mixed over {INT8, BF16, FP32} (edgecc/passes/choose_mixed_precisions.py) on a small
hand-built model, with this machine's instructions, timings and the host-built simulation."""

from dataclasses import asdict

import pytest

from edgecc.options import CompileOptions
from edgecc.passes.precision import precision_passes
from edgecc.passes.precision.dense_weights import fold_weight_transposes
from edgecc.passes.precision.mixed_sensitivity import PrecisionSimulator
from edgecc.schedules.matmul_dot import dot_instruction
from edgecc.targets import load_target

from fixtures_precision import build_for_host as _build
from fixtures_precision import cosine as _cosine
from fixtures_precision import dense_module, reference_dense

HOST = load_target("host")

pytestmark = pytest.mark.skipif(
    dot_instruction(HOST, "int8") is None and dot_instruction(HOST, "bf16") is None,
    reason="this CPU has neither an INT8 nor a BF16 dot-product instruction",
)


def test_simulation_matches_what_each_precision_costs(rng):
    mod, weights = dense_module(rng, tokens=16, hidden=64, out=128)
    mod = fold_weight_transposes(mod)
    samples = [{"ids": rng.integers(0, 200, (1, 16)).astype("int64")} for _ in range(3)]
    simulator = PrecisionSimulator(mod, samples, log=lambda *_: None)
    assert [simulator.kinds[k] for k in simulator.keys] == ["embedding", "dense", "dense"]
    assert simulator.drop({}) == pytest.approx(0.0, abs=1e-7)
    for key in simulator.keys:  # BF16 keeps 8 mantissa bits, INT8 about 7 of range: BF16 costs less
        assert 0 < simulator.drop({key: "bf16"}) < simulator.drop({key: "int8"}) < 1e-3
    everything = simulator.drop({k: "int8" for k in simulator.keys})
    assert everything > max(simulator.drop({k: "int8"}) for k in simulator.keys)


@pytest.mark.parametrize("budget", [1e-6, 0.5])
def test_search_meets_the_budget_and_reports_layers_and_front(rng, budget):
    mod, weights = dense_module(rng, tokens=16, hidden=64, out=128)
    (step,) = precision_passes(CompileOptions(precision="mixed", max_accuracy_drop=budget), HOST)
    after = step(mod)
    stats = asdict(step.stats)
    layers = {layer["layer"]: layer for layer in stats["layers"]}
    assert set(layers) == {"embedding_0", "dense_1", "dense_2"}
    for layer in stats["layers"]:
        assert layer["precision"] in ("int8", "bf16", "fp32") and layer["sensitivity"]["fp32"] == 0.0
    for name in ("dense_1", "dense_2"):
        assert layers[name]["latency_us"]["fp32"] > 0 and len(layers[name]["latency_us"]) >= 2
    (chosen,) = [p for p in stats["pareto_front"] if p["chosen"]]
    assert chosen["accuracy_drop"] <= stats["search_budget"] or chosen["counts"]["fp32"] == 3
    front = stats["pareto_front"]
    for p in front:  # no point on the front is beaten on both latency and drop by another
        assert not any(q["latency_us"] < p["latency_us"] and q["accuracy_drop"] < p["accuracy_drop"] for q in front)
    if budget == 0.5:  # a loose budget takes each dense layer's fastest precision as timed here
        for name in ("dense_1", "dense_2"):
            times = layers[name]["latency_us"]
            assert layers[name]["precision"] == min(times, key=times.get)
        assert layers["embedding_0"]["precision"] == "int8"
    else:
        assert layers["embedding_0"]["precision"] == "fp32"
    ids = rng.integers(0, 200, (1, 16)).astype("int64")
    _, run = _build(after)
    assert _cosine(run(ids), reference_dense(ids, weights)) > (0.99999 if budget < 1e-3 else 0.999)
