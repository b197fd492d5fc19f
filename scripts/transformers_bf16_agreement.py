#!/usr/bin/env python3
"""How often transformers' own bf16 run makes the same NAS decisions as its f32 run, on a tiny
fixture model: the yardstick for our bf16 agreement (`scripts/gpu_check.py`'s
`nas_decision_agreement_bf16_vs_f32`, the same 100 sentences per language of data/*.txt, the
last token's neurons, an expert's neurons off where the router did not send the token).

    python3 scripts/transformers_bf16_agreement.py granitemoe olmoe llama

Prints the agreement and the flipped decisions per layer. Needs what make_fixtures.py needs.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures  # noqa: E402  (its capture of every neuron, mixtures included)
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def decisions(model, tokenizer, sentences):
    """[sentences, layers, neurons]: is each neuron's activation > 0 at the last token."""
    rows = []
    with torch.no_grad():
        for sentence in sentences:
            capture = make_fixtures.run_capture(model, tokenizer(sentence)["input_ids"])
            rows.append(capture["a"][:, -1, :] > 0)
    return torch.stack(rows)


def main():
    sentences = []
    for path in sorted((ROOT / "data").glob("*.txt")):
        sentences += [line.strip() for line in path.read_text().splitlines() if line.strip()][:100]
    for name in sys.argv[1:]:
        folder = ROOT / "tests/fixtures/tiny" / name
        tokenizer = AutoTokenizer.from_pretrained(folder)
        runs = {}
        for dtype in (torch.float32, torch.bfloat16):
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype,
                                                         attn_implementation="eager").eval()
            runs[dtype] = decisions(model, tokenizer, sentences)
        differ = runs[torch.float32] != runs[torch.bfloat16]
        print(f"{name}: {100 * (1 - differ.double().mean().item()):.2f}% of {differ.numel()} "
              f"decisions equal; flipped per layer {differ.sum(dim=(0, 2)).tolist()}", flush=True)


if __name__ == "__main__":
    main()
