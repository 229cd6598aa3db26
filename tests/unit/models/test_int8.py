"""The int8 path (backend/models/int8.py) against fp32: per layer, with outlier tokens, on fbgemm's AVX2
kernels (where 8-bit activations would saturate), and through the serving pool with LoRA adapters."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from backend.models import int8
from backend.models.int8 import Int8Linear
from backend.models.int8_calibration import Calibration, calibrate, smoothing

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(not int8.supported(), reason="int8 kernels (fbgemm/oneDNN) are x86-only")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_an_int8_layer_matches_fp32_within_three_percent():
    torch.manual_seed(0)
    linear = nn.Linear(576, 1536)
    x = torch.randn(2, 40, 576)
    assert _rel(Int8Linear(linear)(x), linear(x)) < 0.03


def test_a_token_with_huge_activations_does_not_blur_the_others():
    """Scales are per token: one token 500× larger (LLMs have such tokens) leaves the rest as exact
    as without it. With one scale per call the other tokens would round to a handful of levels."""
    torch.manual_seed(0)
    linear = nn.Linear(576, 576, bias=False)
    layer = Int8Linear(linear)
    x = torch.randn(16, 576)
    alone = _rel(layer(x[1:]), linear(x[1:]))
    x[0] *= 500
    beside = _rel(layer(x)[1:], linear(x)[1:])
    assert beside < 0.03 and abs(beside - alone) < 1e-6


class _Reads(nn.Module):
    """A model whose `input_ids` are already its layer's inputs."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.linear(input_ids)


def test_smoothing_gives_outlier_channels_range_back_to_the_other_channels():
    """A few input channels 60× wider than the rest (as in LLMs' down_proj inputs): per-token scales
    alone spend the 7 bits on them; smoothed by the measured ranges, the error at least halves, forward
    and for the input's gradient, and the layer still stands for the same weight."""
    torch.manual_seed(0)
    linear = nn.Linear(1536, 576, bias=False)
    x = torch.randn(64, 1536)
    x[:, [5, 700, 1200]] *= 60
    plain = Int8Linear(linear)
    maxima = calibrate(_Reads(linear), [x]).maxima
    smoothed = Int8Linear(linear, smoothing(linear.weight, maxima["linear"]))
    assert _rel(smoothed(x), linear(x)) < 0.5 * _rel(plain(x), linear(x))
    assert _rel(smoothed(x), linear(x)) < 0.03
    assert _rel(smoothed.effective(), linear.weight.detach()) < 0.05  # the weight took on part of the range
    upstream = torch.randn(64, 576)
    grads = []
    for layer in (linear, smoothed):
        leaf = x.clone().requires_grad_(True)
        (layer(leaf) * upstream).sum().backward()
        grads.append(leaf.grad)
    assert _rel(grads[1], grads[0]) < 0.03


def test_a_model_smoothed_by_its_measured_ranges_answers_like_fp32(tiny_model):
    """Calibrated, the layers that read one input (q/k/v, gate/up) share one smoothing and one matmul:
    each gets the rows it would compute alone with that smoothing."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    ids = torch.randint(0, base.config.vocab_size, (2, 24))
    calibration = calibrate(base, [ids[:1]])
    qkv = [f"model.layers.0.self_attn.{n}_proj" for n in "qkv"]
    assert qkv in calibration.groups and ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"] in (
        calibration.groups
    )
    assert len(calibration.groups) == 2 * base.config.num_hidden_layers
    smoothed = copy.deepcopy(base)
    assert int8.quantize_frozen(smoothed, calibration=calibration) == 7 * base.config.num_hidden_layers
    layers = [m for m in smoothed.modules() if isinstance(m, Int8Linear)]
    assert all(m.inv_smooth is not None for m in layers)
    assert sum(m._rows is not None for m in layers) == 5 * base.config.num_hidden_layers
    with torch.no_grad():
        assert _rel(smoothed(ids).logits, base(ids).logits) < 0.1
        x = torch.randn(3, 7, base.config.hidden_size)
        originals = [base.get_submodule(name) for name in qkv]
        s = smoothing(torch.cat([m.weight for m in originals]), calibration.maxima[qkv[0]])
        for name, original in zip(qkv, originals):
            torch.testing.assert_close(smoothed.get_submodule(name)(x), Int8Linear(original, s)(x))


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the process's memory maps (Linux)")
def test_the_replaced_fp32_weights_leave_memory_with_their_checkpoint_map(tiny_model):
    """The checkpoint is memory-mapped and the map lives while any tensor reads from it: quantized, the
    model keeps no tensor there, so the fp32 pages of the replaced layers are not held beside int8."""
    from transformers import AutoModelForCausalLM

    def mapped() -> int:
        return sum(".safetensors" in line and tiny_model in line for line in Path("/proc/self/maps").open())

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    ids = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(ids).logits
    assert mapped() > 0  # as loaded, the weights read from the file's map
    int8.quantize_frozen(model)
    assert mapped() == 0
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight  # still tied
    with torch.no_grad():
        assert _rel(model(ids).logits, before) < 0.1


def test_a_shared_matmul_never_hands_out_another_inputs_rows():
    """The stacked output is kept for the other readers of the same input tensor only: a new tensor
    (or the same one changed in place) is computed afresh, with and without autograd."""
    torch.manual_seed(0)
    q, k = nn.Linear(64, 32), nn.Linear(64, 16)
    model = nn.ModuleDict({"q": q, "k": k})
    reference = copy.deepcopy(model)
    int8.quantize_frozen(model, calibration=Calibration(groups=[["q", "k"]]))
    first, second = torch.randn(5, 64), torch.randn(5, 64)
    assert _rel(model["q"](first), reference["q"](first)) < 0.03
    assert _rel(model["k"](second), reference["k"](second)) < 0.03  # not first's rows
    assert _rel(model["q"](second), reference["q"](second)) < 0.03
    second.mul_(2)  # changed in place before its other reader came
    assert _rel(model["k"](second), reference["k"](second)) < 0.03
    copied = copy.deepcopy(model)  # a copy shares nothing kept
    assert torch.equal(copied["q"](first), model["q"](first))
    leaf = first.clone().requires_grad_(True)
    q_out, k_out = model["q"](leaf), model["k"](leaf)
    matmuls = [out.grad_fn.next_functions[0][0] for out in (q_out, k_out)]  # under the bias's add
    assert matmuls[0] is matmuls[1]  # one backward for both: their gradients meet in one int8 matmul
    (q_out.sum() + k_out.sum()).backward()
    want = q.weight.detach().sum(0) + k.weight.detach().sum(0)
    assert leaf.grad is not None and _rel(leaf.grad[0], want) < 0.03


def test_kept_layers_stay_fp32_and_their_groups_others_go_alone():
    torch.manual_seed(0)
    model = nn.ModuleDict({"q": nn.Linear(64, 32), "k": nn.Linear(64, 16), "v": nn.Linear(64, 16)})
    assert int8.quantize_frozen(model, calibration=Calibration(groups=[["q", "k", "v"]]), keep=["v"]) == 2
    assert type(model["v"]) is nn.Linear
    assert all(isinstance(model[n], Int8Linear) and model[n]._rows is None for n in "qk")  # no shared matmul


def test_the_weight_seen_by_libraries_is_the_int8_weight():
    linear = nn.Linear(64, 32)
    layer = Int8Linear(linear)
    assert isinstance(layer, nn.Linear) and layer.weight.dtype == torch.int8
    assert layer.weight.shape == linear.weight.shape
    assert _rel(layer.dequantized(), linear.weight.detach()) < 0.01


AVX2_CHECK = """
import torch
from backend.models.int8 import Int8Linear
from backend.models.int8_calibration import Calibration, calibrate, smoothing
torch.manual_seed(0)
linear = torch.nn.Linear(1536, 576, bias=False)
x = torch.randn(64, 1536)
x[:, ::7] *= 6  # wide activations: full 8-bit ones would saturate 16-bit pair sums on AVX2
err = ((Int8Linear(linear)(x) - linear(x)).norm() / linear(x).norm()).item()
print(err)
"""


def test_the_layer_is_as_exact_on_fbgemms_avx2_kernels_as_natively():
    """Without VNNI, fbgemm adds pairs of u8×s8 products in int16 (vpmaddubsw); 7-bit activations keep
    those sums in range, so the error is the same whichever kernels run."""
    errors = []
    for extra in (
        {},
        {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    ):
        env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
        out = subprocess.run([sys.executable, "-c", AVX2_CHECK], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        errors.append(float(out.stdout.strip().splitlines()[-1]))
    assert max(errors) < 0.05
    assert abs(errors[0] - errors[1]) < 0.002, errors


def test_a_peft_model_keeps_its_adapter_in_fp32_and_switches_adapters(tiny_model, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(base), config).save_pretrained(tmp_path / "adapter")

    quantized = copy.deepcopy(base)
    replaced = int8.quantize_frozen(quantized)
    assert replaced == 7 * base.config.num_hidden_layers  # q k v o gate up down; the output layer stays fp32
    assert type(quantized.lm_head) is nn.Linear
    model = PeftModel.from_pretrained(quantized, tmp_path / "adapter").eval()
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, Int8Linear)
    assert type(q_proj.lora_A["default"]) is nn.Linear and q_proj.lora_A["default"].weight.dtype == torch.float32

    ids = torch.randint(0, base.config.vocab_size, (2, 24))
    reference = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter").eval()
    with torch.no_grad():
        want, got = reference(ids).logits, model(ids).logits
        assert _rel(got, want) < 0.1  # a random tiny model with wide weights: the real model's error is in benchmarks
        model.load_adapter(tmp_path / "adapter", adapter_name="again")  # a second adapter attaches as well
        model.set_adapter("again")
        assert torch.equal(model(ids).logits, got)
        with model.disable_adapter():
            assert _rel(model(ids).logits, base(ids).logits) < 0.1


def test_the_pool_serves_int8_and_refuses_it_where_it_cannot_run(tiny_model):
    from backend.inference.bundle import AdapterBundle
    from backend.inference.pool import GenRequest, ModelPool, inference_dtype

    pool = ModelPool(device="cpu", dtype="int8")
    assert pool.weights == "int8" and pool.dtype == torch.float32
    target = AdapterBundle(tiny_model)
    out = pool.generate(target, [GenRequest((("user", "TOTAL RM 42.50"),), max_new_tokens=6)])[0]
    assert out.completion_tokens > 0
    layers = pool._base(tiny_model).model.model.layers[0]
    assert isinstance(layers.mlp.down_proj, Int8Linear) and layers.mlp.down_proj.inv_smooth is not None
    assert layers.self_attn.q_proj._rows is not None  # smoothed and stacked with k and v: one matmul for three
    with pytest.raises(ValueError, match="x86 CPUs only"):
        inference_dtype("cuda", "int8")
    with pytest.raises(ValueError, match="expected auto, float32, bfloat16 or int8"):
        inference_dtype("cpu", "int4")
    assert inference_dtype("cpu", "auto") in ("float32", "bfloat16")  # int8 is never chosen for the user


def test_an_int8_layer_passes_the_inputs_gradient_within_three_percent():
    torch.manual_seed(0)
    linear = nn.Linear(576, 1536, bias=False)
    layer = Int8Linear(linear)
    x = torch.randn(4, 50, 576, requires_grad=True)
    x_int8 = x.detach().clone().requires_grad_(True)
    upstream = torch.randn(4, 50, 1536)
    (linear(x) * upstream).sum().backward()
    (layer(x_int8) * upstream).sum().backward()
    assert x.grad is not None and x_int8.grad is not None
    assert _rel(x_int8.grad, x.grad) < 0.03
    assert not any(p.requires_grad for p in layer.parameters())  # frozen: nothing of its own to train


def test_lora_trains_on_an_int8_base_and_learns_like_on_fp32(tiny_config, secret_data):
    """quantize: int8 in training: the adapter learns the memorised answer on the int8 base as it does
    on fp32; the run says which path ran."""
    from backend.training.trainer import train

    kwargs = dict(
        data=[secret_data], max_steps=40, batch_size=1, learning_rate=2e-2, warmup_ratio=0.0, lr_scheduler="constant"
    )
    fp32 = train(tiny_config(run_name="fp32", **kwargs), progress_bar=False)
    quantized = train(tiny_config(run_name="int8", quantize="int8", **kwargs), progress_bar=False)
    assert "int8 frozen base" in quantized.summary["runtime"]

    def last_loss(run) -> float:
        lines = (run.run_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["loss"] for line in lines if '"loss"' in line][-1]

    first = json.loads((quantized.run_dir / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert last_loss(quantized) < 0.2 * first  # it learned
    assert last_loss(quantized) < last_loss(fp32) + 0.1  # about as well as on fp32


def test_int8_training_is_refused_where_it_cannot_run(tiny_config, monkeypatch):
    from backend.errors import InvalidRequest
    from backend.training.runtime import Runtime

    assert "int8" in Runtime.from_config(tiny_config(quantize="int8")).describe()
    monkeypatch.setattr(int8, "supported", lambda: False)  # as on an ARM machine
    with pytest.raises(InvalidRequest, match="int8 runs on x86 CPUs only"):
        Runtime.from_config(tiny_config(quantize="int8"))


def test_auto_trains_on_an_int8_base_where_compute_is_fp32(tiny_config, monkeypatch):
    from backend.models.hardware import CpuKind
    from backend.training import runtime

    monkeypatch.setattr(runtime, "cpu_kind", lambda: CpuKind("AVX2", False, False, "x86_64"))
    chosen = runtime.Runtime.from_config(tiny_config(quantize="auto"))
    assert (chosen.quantize, chosen.compute_dtype) == ("int8", torch.float32)
    assert "auto: x86_64 AVX2 (no bf16 units)" in chosen.describe()
    asked = runtime.Runtime.from_config(tiny_config(quantize="none"))
    assert asked.quantize == "none" and "fp32 base + fp32 compute" in asked.describe()
    assert "(as asked; auto would be int8: x86_64 AVX2 (no bf16 units)" in asked.describe()
    replicas = tiny_config(quantize="auto", launcher="torchrun", nproc=2, batch_size=4)
    assert runtime.Runtime.from_config(replicas).quantize == "none"
    monkeypatch.setattr(runtime, "cpu_kind", lambda: CpuKind("AVX512", True, True, "x86_64"))
    assert runtime.Runtime.from_config(tiny_config(quantize="auto")).quantize == "none"  # bf16 compute on AMX
