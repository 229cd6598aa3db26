"""Does smoothing the int8 base's input channels (SmoothQuant) bring it closer to fp32, and which layers
need it? The bundled model's logits on receipts, fp32 against tunebridge's int8 layer (one scale per
weight row and per token) with each layer kind smoothed or not.

    .venv/bin/python benchmarks/int8_smoothing.py [--receipts 4] [--alpha 0.5]
    .venv/bin/python benchmarks/int8_smoothing.py --keep-each down_proj   # which layers' down_proj matter

Prints the CPU kind, and per variant the logits' relative error against fp32 and how often the most
likely next token agrees with fp32's, over every position of the receipts' prompts. With `--keep-each
KIND`, the served int8 base (every kind smoothed, groups shared) with one layer's KIND kept fp32 at a
time, each layer's line showing how much of the int8 error that one layer carries. The channel ranges
come from a short invoice-and-prose document (`backend/models/int8_calibration.py`), not from the receipts scored: a model's
outlier channels are its own, so any such text measures them. Run it with `ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2` for the kernels of
AVX2-only machines. Receipts: sroie_train.jsonl (benchmarks/README.md; ICDAR 2019 SROIE, Z. Huang et
al., CC BY 4.0), else the repository's example receipts.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sroie_split import SOURCE  # noqa: E402

KINDS = {
    "none": (),
    "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "all, shared": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    "q/k/v": ("q_proj", "k_proj", "v_proj"),
    "gate/up": ("gate_proj", "up_proj"),
    "o": ("o_proj",),
    "down": ("down_proj",),
}


def receipts(n: int) -> list[str]:
    path = SOURCE if SOURCE.is_file() else ROOT / "examples" / "data" / "receipts.jsonl"
    lines = path.read_text().splitlines()[-n:]  # the file's end: away from the receipts other benchmarks tune on
    return [json.loads(line)["text"] for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.5, help="share of a channel's range moved into the weight")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-each", metavar="KIND", help="keep one layer's KIND (e.g. down_proj) fp32 at a time")
    parser.add_argument(
        "--keep",
        metavar="REGEX",
        action="append",
        help="keep the layers whose name matches fp32 together (repeatable: one variant each)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from backend.models import int8
    from backend.models.hardware import cpu_kind
    from backend.models.int8_calibration import Calibration, calibrate_on_text
    from backend.models.loading import load_tokenizer, resolve_model

    path = resolve_model("smollm2-135m")
    tokenizer = load_tokenizer(path)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    def prompt(text: str) -> torch.Tensor:
        messages = [{"role": "user", "content": "Extract company, date, address, total.\n" + text}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        return torch.tensor([ids])

    prompts = [prompt(text) for text in receipts(args.receipts)]
    with torch.no_grad():
        reference = [base(input_ids=ids).logits for ids in prompts]
    calibration = calibrate_on_text(base, tokenizer)
    print(
        f"cpu: {cpu_kind()}; {len(prompts)} receipts, {sum(p.shape[1] for p in prompts)} positions, alpha {args.alpha}"
    )

    def against_fp32(model: torch.nn.Module) -> str:
        with torch.no_grad():
            logits = [model(input_ids=ids).logits for ids in prompts]
        error = sum(((got - want).norm() / want.norm()).item() for got, want in zip(logits, reference)) / len(prompts)
        agree = sum((got.argmax(-1) == want.argmax(-1)).float().mean().item() for got, want in zip(logits, reference))
        return f"logits error {error:.4f}  next token as fp32 {agree / len(prompts):.3f}"

    if args.keep_each or args.keep:
        if args.keep:
            variants = {rx: [n for n in calibration.maxima if re.search(rx, n)] for rx in args.keep}
        else:
            variants = {n: [n] for n in calibration.maxima if n.rsplit(".", 1)[-1] == args.keep_each}
        if not variants or not all(variants.values()):
            raise SystemExit(f"no layer matches (kinds: {', '.join(KINDS['all'])}; names: model.layers.N.mlp.KIND)")
        for label, kept in {"none": [], **variants}.items():
            model = copy.deepcopy(base)
            int8.quantize_frozen(model, calibration=calibration, alpha=args.alpha, keep=kept)
            print(f"fp32 kept: {label:<28} ({len(kept)} layers) {against_fp32(model)}", flush=True)
        return
    for name, kinds in KINDS.items():
        model = copy.deepcopy(base)
        chosen = {k: v for k, v in calibration.maxima.items() if k.rsplit(".", 1)[-1] in kinds}
        shared = calibration.groups if name == "all, shared" else []
        int8.quantize_frozen(model, calibration=Calibration(chosen, shared), alpha=args.alpha)
        print(f"smoothed: {name:<11} {against_fp32(model)}")
    for kind in ("q_proj", "o_proj", "gate_proj", "down_proj"):
        spread = sorted((v.max() / v.median()).item() for k, v in calibration.maxima.items() if k.endswith(kind))
        print(
            f"{kind}: largest channel range over the median channel's, per layer: "
            f"min {spread[0]:.1f}, median {spread[len(spread) // 2]:.1f}, max {spread[-1]:.1f}"
        )


if __name__ == "__main__":
    main()
