#!/usr/bin/env python3
"""GPU checks of NeuronXA Explorer (issue 5), in one script: parity (GPU against our CPU path,
which tests/parity.rs holds to transformers) and speed (against PyTorch).

Run on a GPU machine that has PyTorch and transformers but no Rust (see ../shared/GPU.md), with
the CUDA binary built here by scripts/build-cuda.sh:

    python3 scripts/gpu_check.py --bin BIN --tokenizer TOKENIZER_JSON --out OUT

1. Parity. Every tiny random-weight fixture model (tests/fixtures/tiny) and a random model with
   the real shapes of Qwen2.5-0.5B run through the binary on the CPU in f32, on the GPU in f32 and
   on the GPU in bf16. Reported: the largest absolute difference of every pooled state between
   GPU f32 and CPU f32 (goal ≤ 1e-4); how often the bf16 NAS decisions (last-token pooling, so
   each entry is one neuron's on/off decision for one sentence) equal the f32 ones (goal ≥ 99.5%);
   the largest difference of the NeuronXA (NAS, NAV) scores between bf16 and f32 (goal ≤ 0.02).
2. Speed. Random-weight models with the shapes of Qwen2.5-0.5B, Qwen2.5-1.5B and Llama-3.1-8B
   (transformers `from_config`, bf16, saved as safetensors) extract 1000 sentences of 20–60
   tokens: the binary (`neuronxa bench`, batch size auto) against PyTorch + transformers with a
   forward hook on every `mlp.act_fn` doing the same position-weighted NAS/NAV pooling on the GPU
   (batched, 64 sentences, sorted by length) and PyTorch one sentence at a time (as the MEXA
   scripts run). Sentences/s, tokens/s, peak GPU memory and load time of each.
3. Memory pressure (GPU only). With PyTorch holding most of the GPU's memory, the binary must
   refuse the largest model before loading (less free than its weights) and finish with a
   smaller automatic batch when a few GiB are left; neither may panic.
4. Host memory: how fast the machine writes into fresh and into touched memory (one thread, all
   threads), the ceiling for handing pooled states on; the speed step reports how long the
   binary's host waited for the device and how long it spent handing states on.

Everything lands in OUT/gpu_check.json (and a log). The exit status is 1 when a step failed or a
goal under "pass" was missed, with a summary of which at the end of the log.
The tokenizer is the demo model's (SmolLM2, 49 152 tokens), exported from its GGUF with transformers, here, once:
`python3 scripts/gpu_check.py --export-tokenizer GGUF .device/tokenizer.json`;
its ids are valid for every model above. Sentences come from data/*.txt, kept where they have
20–60 tokens. Without a GPU (`--gpu-device cpu --shapes small`) the script runs end to end on
the CPU with tiny shapes, to try it before spending device time.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANGS = "en,zh,fr,de,it,es,ru,ar,hi,ja"
STARTED = time.time()

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Real shapes (the models' published config.json), random weights.
SHAPES = {
    "qwen2.5-0.5b": dict(
        model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b": dict(
        model_type="qwen2", hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    "llama-3.1-8b": dict(
        model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
        max_position_embeddings=131072, rope_theta=5e5, rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=8192),
    ),
    # Not a released shape: Qwen3.5's layer pattern (three Gated DeltaNet layers in four) at
    # about 2B, with the Qwen2.5 vocabulary of the other shapes' tokenizer. Only run when named
    # in --models: transformers runs the delta rule with its torch fallback unless fla is
    # installed, so the PyTorch side is not what a tuned setup would be.
    "qwen3.5-like-2b": dict(
        model_type="qwen3_5_text", hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
        num_attention_heads=8, num_key_value_heads=2, head_dim=256, vocab_size=151936,
        linear_num_key_heads=16, linear_num_value_heads=16, linear_key_head_dim=128,
        linear_value_head_dim=128, linear_conv_kernel_dim=4,
        max_position_embeddings=32768, rope_theta=1e7, rms_norm_eps=1e-6,
        tie_word_embeddings=True, partial_rotary_factor=0.25,
    ),
}
DEFAULT_MODELS = ["qwen2.5-0.5b", "qwen2.5-1.5b", "llama-3.1-8b"]
# Same architectures, toy sizes: for trying the script on a CPU.
SMALL = {
    name: {**shape, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152,
           **({"head_dim": 16, "num_hidden_layers": 4, "linear_num_key_heads": 2,
               "linear_num_value_heads": 4, "linear_key_head_dim": 8, "linear_value_head_dim": 12}
              if shape["model_type"] == "qwen3_5_text" else {})}
    for name, shape in SHAPES.items()
}


def log(message: str) -> None:
    print(f"[{time.time() - STARTED:6.1f}s] {message}", flush=True)


def run_bin(args, binary: Path, extra_env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(extra_env or {})}
    cmd = [str(binary), *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


# ------------------------------------------------------------------------------------------
# Parity
# ------------------------------------------------------------------------------------------

def neuronxa_run(binary, model, out, device, dtype, sentences, pooling="weighted", corpus=None,
                 experts="all"):
    args = ["run", "--model", model, "--langs", LANGS, "--sentences", sentences, "--no-cache",
            "--device", device, "--dtype", dtype, "--pooling", pooling, "--out", out,
            "--methods", "nas,nav,mexa,mexa_last", "--experts", experts]
    if corpus:
        args += ["--corpus", corpus]
    started = time.time()
    run_bin(args, binary)
    return time.time() - started


def load_states(folder: Path):
    from safetensors.numpy import load_file
    return {p.stem: load_file(str(p)) for p in sorted((folder / "states").glob("*.safetensors"))}


def pivot_scores(folder: Path):
    run = json.loads((folder / "run.json").read_text())
    return {
        (lang, method): scores["per_layer"]
        for lang, by_method in run["pivot_scores"].items()
        for method, scores in by_method.items()
    }


def compare_states(reference, other):
    import numpy as np
    worst = {}
    for lang, tensors in reference.items():
        for name, ref in tensors.items():
            diff = float(np.max(np.abs(ref.astype(np.float64) - other[lang][name])))
            worst[name] = max(worst.get(name, 0.0), diff)
    return worst


def differing_fraction(reference, other, name, tolerance=1e-4):
    import numpy as np
    differ = total = 0
    for lang, tensors in reference.items():
        d = np.abs(tensors[name] - other[lang][name]) > tolerance
        differ += int(np.sum(d))
        total += d.size
    return differ / max(total, 1)


def nas_agreement(reference, other):
    import numpy as np
    same = total = 0
    for lang, tensors in reference.items():
        a, b = tensors["nas"] > 0.5, other[lang]["nas"] > 0.5
        same += int(np.sum(a == b))
        total += a.size
    return same / max(total, 1)


def score_difference(reference, other, methods=("Nas", "Nav")):
    worst = 0.0
    for key, ref in reference.items():
        if key[1] in methods:
            worst = max(worst, max(abs(x - y) for x, y in zip(ref, other[key])))
    return worst


def is_mixture(model):
    """Whether the model folder holds a mixture of experts (OLMoE, Qwen3-MoE, Mixtral; the
    language model of a multimodal wrapper such as Qwen3.5-MoE's)."""
    config = Path(model) / "config.json"
    if not config.is_file():
        return False
    keys = json.loads(config.read_text())
    keys = {**keys, **keys.get("text_config", {})}
    return bool(keys.get("num_experts") or keys.get("num_local_experts"))


# Tiny fixtures whose bf16 decisions are held to 99.0% rather than the 99.5%, as in
# tests/parity.rs: transformers' own bf16 run agrees with its f32 run on fewer than 99.5% of
# them (scripts/transformers_bf16_agreement.py, the bundled corpus: olmo_hybrid 99.28%,
# qwen3_5 99.31%, gemma4 99.37%), or, for smollm3, ours misses by as little on the CPU while
# its f32 parity with transformers holds. The JSON names the threshold each was held to.
BF16_HELD_TO_99 = {"smollm3", "glm", "olmo_hybrid", "qwen3_5", "gemma4"}


def bf16_decision_goal(model, label):
    if is_mixture(model):
        return "nas_decisions_bf16_98.5%_mixture", 0.985
    if label in BF16_HELD_TO_99:
        return "nas_decisions_bf16_99.0%_like_transformers_bf16", 0.990
    return "nas_decisions_bf16_99.5%", 0.995


def parity_model(binary, model, work, gpu, cpu_sentences, gpu_sentences, label):
    """CPU f32 vs GPU f32 (states), and GPU bf16 vs GPU f32 (decisions, scores)."""
    result = {"model": label}
    w = work / label
    t_cpu = neuronxa_run(binary, model, w / "cpu_f32", "cpu", "f32", cpu_sentences)
    t_gpu = neuronxa_run(binary, model, w / "gpu_f32_small", gpu, "f32", cpu_sentences)
    result["seconds"] = {"cpu_f32": round(t_cpu, 2), "gpu_f32": round(t_gpu, 2)}
    result["max_abs_diff_gpu_f32_vs_cpu_f32"] = compare_states(
        load_states(w / "cpu_f32"), load_states(w / "gpu_f32_small"))
    # Scores need many sentences to be meaningful; the GPU in f32 stands for the CPU (checked above).
    neuronxa_run(binary, model, w / "gpu_f32", gpu, "f32", gpu_sentences)
    neuronxa_run(binary, model, w / "gpu_bf16", gpu, "bf16", gpu_sentences)
    result["max_score_diff_bf16_vs_f32"] = score_difference(
        pivot_scores(w / "gpu_f32"), pivot_scores(w / "gpu_bf16"))
    result["max_score_diff_mexa_bf16_vs_f32"] = score_difference(
        pivot_scores(w / "gpu_f32"), pivot_scores(w / "gpu_bf16"), ("MexaPooled", "MexaLast"))
    neuronxa_run(binary, model, w / "last_f32", gpu, "f32", gpu_sentences, pooling="last")
    neuronxa_run(binary, model, w / "last_bf16", gpu, "bf16", gpu_sentences, pooling="last")
    result["nas_decision_agreement_bf16_vs_f32"] = nas_agreement(
        load_states(w / "last_f32"), load_states(w / "last_bf16"))
    if is_mixture(model):
        # The mixtures' other reading (each expert pooled over its routed tokens): the GPU's
        # generic ops renormalize the weights as the CPU kernels do.
        neuronxa_run(binary, model, w / "routed_cpu_f32", "cpu", "f32", cpu_sentences, experts="routed")
        neuronxa_run(binary, model, w / "routed_gpu_f32", gpu, "f32", cpu_sentences, experts="routed")
        result["max_abs_diff_routed_gpu_f32_vs_cpu_f32"] = compare_states(
            load_states(w / "routed_cpu_f32"), load_states(w / "routed_gpu_f32"))
    diffs = dict(result["max_abs_diff_gpu_f32_vs_cpu_f32"])
    # NAS flips where a gate is within rounding of zero (the CPU fixtures exempt those too);
    # how many entries differ at all says whether that is all it is.
    result["nas_entries_differing_gpu_f32_vs_cpu_f32"] = differing_fraction(
        load_states(w / "cpu_f32"), load_states(w / "gpu_f32_small"), "nas")
    diffs.pop("nas")
    decision_goal, decision_threshold = bf16_decision_goal(model, label)
    result["pass"] = {
        "states_f32_within_1e-4": max(diffs.values()) <= 1e-4,
        # Flips at gates within rounding of zero are rare (0.006% on the 0.5B shape); a wrong
        # threshold on the GPU would flip far more.
        "nas_f32_entries_differing_below_0.1%":
            result["nas_entries_differing_gpu_f32_vs_cpu_f32"] <= 1e-3,
        # A mixture of experts decides in blocks: a token routed to another expert in bf16 turns
        # that expert's neurons off and another's on at once (tests/parity.rs holds the tiny
        # mixtures to 98.5% for the same reason); see BF16_HELD_TO_99 for the others.
        decision_goal: result["nas_decision_agreement_bf16_vs_f32"] >= decision_threshold,
        # One sentence's match is 1/n of a score; 1e-9 absorbs float noise at exactly 0.02.
        "scores_bf16_within_0.02": result["max_score_diff_bf16_vs_f32"] <= 0.02 + 1e-9,
    }
    if "max_abs_diff_routed_gpu_f32_vs_cpu_f32" in result:
        routed = dict(result["max_abs_diff_routed_gpu_f32_vs_cpu_f32"])
        routed.pop("nas")
        result["pass"]["routed_states_f32_within_1e-4"] = max(routed.values()) <= 1e-4
    log(f"parity {label}: {json.dumps(result)}")
    return result


# ------------------------------------------------------------------------------------------
# Real-shape models
# ------------------------------------------------------------------------------------------

def make_model(name, shape, tokenizer, folder: Path, device):
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM
    shape = dict(shape)
    model_type = shape.pop("model_type")
    rope_theta = shape.pop("rope_theta")
    rope_scaling = shape.pop("rope_scaling", None)
    rope = {"rope_type": "default", "rope_theta": rope_theta}
    if "partial_rotary_factor" in shape:
        rope["partial_rotary_factor"] = shape.pop("partial_rotary_factor")
    if rope_scaling:
        rope = {**rope_scaling, "rope_theta": rope_theta}
    config = AutoConfig.for_model(model_type, **shape, bos_token_id=1, eos_token_id=2,
                                  pad_token_id=2)
    # transformers ≥ 5 keeps rotary settings in rope_parameters; older in rope_theta/rope_scaling.
    if hasattr(config, "rope_parameters"):
        config.rope_parameters = rope
    else:
        config.rope_theta = rope_theta
        config.rope_scaling = rope_scaling
    torch.manual_seed(0)
    started = time.time()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes(Path(tokenizer).read_bytes())
    params = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    if is_gpu(device):
        torch.cuda.empty_cache()
    log(f"made {name}: {params / 1e9:.2f}B parameters in {time.time() - started:.1f} s "
        f"(transformers {transformers.__version__})")
    return params


def speed_sentences(tokenizer, path: Path, count=1000, low=20, high=60):
    """`count` sentences of low..high tokens from data/*.txt, languages interleaved."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tokenizer))
    pools = []
    for file in sorted((ROOT / "data").glob("*.txt")):
        lines = [l.strip() for l in file.read_text(encoding="utf-8").splitlines() if l.strip()]
        pools.append([l for l in lines if low <= len(tok.encode(l).ids) <= high])
    chosen = []
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    lengths = [len(tok.encode(s).ids) for s in chosen]
    return chosen, [tok.encode(s).ids for s in chosen], lengths


class GpuMemoryPeak:
    """Samples nvidia-smi's used memory in the background (works for any process)."""

    def __init__(self, enabled):
        self.enabled, self.peak, self.stop = enabled, 0, threading.Event()

    def __enter__(self):
        if self.enabled:
            self.base = self.read()
            self.thread = threading.Thread(target=self.loop, daemon=True)
            self.thread.start()
        return self

    def read(self):
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True).stdout
        return int(out.split()[0]) if out.strip() else 0

    def loop(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.read())
            time.sleep(0.05)

    def __exit__(self, *exc):
        if self.enabled:
            self.stop.set()
            self.thread.join()

    def mib(self):
        return self.peak - self.base if self.enabled else None


def bench_neuronxa(binary, folder, sentences_file, out_json, gpu, stages=False):
    with GpuMemoryPeak(is_gpu(gpu)) as memory:
        started = time.time()
        done = run_bin(["bench", "--model", folder, "--sentences-file", sentences_file,
                        "--device", gpu, "--dtype", "bf16" if is_gpu(gpu) else "f32",
                        "--batch-size", "auto", "--json", out_json]
                       + (["--stages"] if stages else []), binary)
        wall = time.time() - started
    report = json.loads(Path(out_json).read_text())
    report["process_seconds"] = round(wall, 2)
    report["peak_gpu_mib_nvidia_smi"] = memory.mib()
    report["sentences_per_second"] = report["sentences"] / report["seconds"]
    report["tokens_per_second"] = report["tokens"] / report["seconds"]
    report["log_tail"] = done.stderr[-1500:]
    return report


def scoring_bench(binary, folder, out_json, thread_counts=()):
    """`bench --scoring`: the scoring of 10 languages × 100 sentences of made-up states of the
    model's shape, on the host's cores (a run's `scoring` stage, without the model); then again
    with each of `thread_counts` rayon threads, to see how the scoring scales with cores, and
    with each similarity product on one thread inside the layers' parallel tasks instead of gemm
    sharing every core from within them (does the nesting cost on many cores?), and with the
    normalised rows kept in memory (NEURONXA_SCORING_KEEP_MB)."""
    done = run_bin(["bench", "--scoring", "--model", folder, "--json", out_json], binary)
    report = json.loads(Path(out_json).read_text())
    report["log_tail"] = done.stderr[-1500:]

    def variant(name, env):
        out = Path(out_json).with_suffix(f".{name}.json")
        try:
            run_bin(["bench", "--scoring", "--model", folder, "--json", out], binary, env)
            one = json.loads(out.read_text())
        except Exception:  # noqa: BLE001
            return {"error": traceback.format_exc()[-1500:]}
        figures = {k: one.get(k) for k in ("threads", "seconds", "peak_rss_mb", "score_sums",
                                            "kept_languages")}
        figures["same_score_sums"] = one.get("score_sums") == report.get("score_sums")
        return figures

    if thread_counts:
        report["by_threads"] = {t: variant(f"threads{t}", {"RAYON_NUM_THREADS": str(t)})
                                for t in thread_counts}
    report["single_threaded_products"] = variant("single_gemm", {"NEURONXA_SCORING_GEMM": "single"})
    # Normalised rows kept in memory instead of read and normalised again for each later
    # language (no gain on 2 cores; the memory traffic it saves may matter on many).
    report["kept_rows"] = variant("kept_rows", {"NEURONXA_SCORING_KEEP_MB": "16384"})
    return report


def bench_variant(binary, folder, sentences_file, out_json, gpu, variable, value):
    """`bench_neuronxa` with one environment variable set; the figures an A/B compares."""
    os.environ[variable] = value
    try:
        report = bench_neuronxa(binary, folder, sentences_file, out_json, gpu)
    finally:
        del os.environ[variable]
    return {k: report.get(k) for k in ("capture", "delta_rule", "fused_kernels", "seconds",
                                         "forward_seconds",
                                         "forward_plain_seconds", "sentences_per_second",
                                         "host_waiting_seconds", "host_handing_on_seconds")}


def host_memory(gib=1.2, repeats=3):
    """How fast this machine writes into memory the process has never touched (each 4 KiB page
    faulted in on first write) and into memory it has, with one thread and with all: the ceiling
    for handing a batch's pooled states on (a batch of the 8B shape is 1.2 GB). PyTorch's CPU
    copy stands in for any program's."""
    import torch
    n = int(gib * 2**30 / 4)
    source = torch.ones(n)
    threads = torch.get_num_threads()
    report = {"gib": gib}
    for label, count in (("one_thread", 1), ("all_threads", threads)):
        torch.set_num_threads(count)
        fresh, touched = [], []
        for _ in range(repeats):
            target = torch.empty(n)
            started = time.time()
            target.copy_(source)
            fresh.append(time.time() - started)
            started = time.time()
            target.copy_(source)
            touched.append(time.time() - started)
            del target
        rate = lambda seconds: round(n * 4 / 1e9 / seconds, 2)
        report[label] = {"threads": count, "fresh_gb_per_s": [rate(x) for x in fresh],
                         "touched_gb_per_s": [rate(x) for x in touched]}
    torch.set_num_threads(threads)
    log(f"host memory: {json.dumps(report)}")
    return report


def memory_pressure(binary, folder, sentences_file, work, gpu):
    """Bad input on the GPU path: another process (this one, through PyTorch) holds most of the
    GPU's memory. Leaving less than the weights need, the binary must refuse before loading, in
    words and with the numbers; leaving the weights plus a few GiB, `--batch-size auto` must pick
    a smaller batch and finish. Neither may panic."""
    import torch
    weights = sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))
    report = {"weights_gib": round(weights / 2**30, 2)}
    for label, leave in (("weights_do_not_fit", int(weights * 0.6)),
                         ("tight_memory", weights + 6 * 2**30)):
        gc.collect()
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info()
        hog = torch.empty(max(free - leave, 0), dtype=torch.uint8, device=gpu)
        free_left, _ = torch.cuda.mem_get_info()
        out_json = work / f"pressure_{label}.json"
        out_json.unlink(missing_ok=True)
        started = time.time()
        done = subprocess.run([str(binary), "bench", "--model", str(folder), "--sentences-file",
                               str(sentences_file), "--device", gpu, "--dtype", "bf16",
                               "--batch-size", "auto", "--json", str(out_json)],
                              capture_output=True, text=True)
        entry = {"free_gib_left": round(free_left / 2**30, 2), "exit_code": done.returncode,
                 "seconds": round(time.time() - started, 2), "stderr_tail": done.stderr[-1500:]}
        del hog
        panicked = "panicked" in done.stderr
        if label == "weights_do_not_fit":
            entry["pass"] = {"refused": done.returncode != 0, "no_panic": not panicked,
                             "says_memory": "memory" in done.stderr.lower()}
        else:
            bench = json.loads(out_json.read_text()) if out_json.exists() else {}
            entry["batch_size"] = bench.get("batch_size")
            entry["bench_seconds"] = bench.get("seconds")
            entry["pass"] = {"finished": done.returncode == 0, "no_panic": not panicked}
        log(f"memory pressure {label}: {json.dumps({k: v for k, v in entry.items() if k != 'stderr_tail'})}")
        report[label] = entry
    gc.collect()
    torch.cuda.empty_cache()
    return report


def time_run(binary, folder, work, gpu, out_name="run_last_model", extra_env=None):
    """The user's path rather than the benchmark's: `neuronxa run` over the bundled corpus (100
    sentences in each of 10 languages), states streamed to files, NeuronXA and MEXA scored. The
    process's wall time (load, tokenising, scoring included) and the run's own log."""
    out = work / out_name
    started = time.time()
    done = run_bin(["run", "--model", folder, "--langs", LANGS, "--sentences", "100", "--no-cache",
                    "--device", gpu, "--dtype", "bf16" if is_gpu(gpu) else "f32", "--out", out],
                   binary, extra_env)
    return {"process_seconds": round(time.time() - started, 2), "log_tail": done.stderr[-1200:]}


def time_run_serial_scoring(binary, folder, work, gpu):
    """`time_run` again with each language scored before the next is extracted (the order before
    the scorer ran alongside), and whether both wrote the same scores and matrices."""
    result = time_run(binary, folder, work, gpu, "run_last_model_serial_scoring",
                      {"NEURONXA_SCORING": "serial"})
    same = {}
    for csv_file in sorted((work / "run_last_model").glob("*.csv")):
        other = work / "run_last_model_serial_scoring" / csv_file.name
        same[csv_file.name] = other.is_file() and csv_file.read_bytes() == other.read_bytes()
    result["csv_identical_to_alongside"] = same
    return result


def pooled_hooks(model, state):
    """Forward hooks on every mlp.act_fn that pool NAS and NAV with the batch's weights, on the GPU."""
    import torch
    handles = []
    for layer in model.model.layers:
        def hook(_module, _inputs, output):
            w = state["weights"]  # [b, 1, t] f32
            state["nas"].append(torch.bmm(w, (output > 0).to(torch.float32)))
            state["nav"].append(torch.bmm(w, output.abs().to(torch.float32)))
        handles.append(layer.mlp.act_fn.register_forward_hook(hook))
    return handles


def pytorch_extract(model, batches, device, state):
    """Runs batches of token ids with the hooks; pooled NAS/NAV/hidden states come back to the
    host in f32 (as the app needs them), everything else stays on the GPU."""
    import torch
    outputs = []
    for ids_list in batches:
        lengths = torch.tensor([len(ids) for ids in ids_list])
        t = int(lengths.max())
        ids = torch.tensor([seq + [2] * (t - len(seq)) for seq in ids_list], device=device)
        lengths = lengths.to(device)
        positions = torch.arange(1, t + 1, device=device, dtype=torch.float32)
        mask = positions[None, :] <= lengths[:, None]
        weights = positions[None, :] * mask / (lengths * (lengths + 1) / 2)[:, None]
        state["weights"] = weights[:, None, :]
        state["nas"], state["nav"] = [], []
        with torch.inference_mode():
            out = model.model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
            rows = torch.arange(len(ids_list), device=device)
            hidden_pooled = torch.cat(
                [torch.bmm(state["weights"], h.to(torch.float32)) for h in out.hidden_states], 1)
            hidden_last = torch.stack([h[rows, lengths - 1].to(torch.float32)
                                       for h in out.hidden_states], 1)
            outputs.append((torch.cat(state["nas"], 1).cpu(), torch.cat(state["nav"], 1).cpu(),
                            hidden_pooled.cpu(), hidden_last.cpu()))
    return outputs


def pytorch_forward_only(model, batches, device):
    """The same padded batches through the decoder with no hooks, hidden states or copies:
    PyTorch's own forward cost, beside our `forward_plain_seconds`."""
    import torch
    for ids_list in batches:
        t = max(len(ids) for ids in ids_list)
        ids = torch.tensor([seq + [2] * (t - len(seq)) for seq in ids_list], device=device)
        mask = torch.tensor([[1] * len(seq) + [0] * (t - len(seq)) for seq in ids_list],
                            device=device)
        with torch.inference_mode():
            model.model(input_ids=ids, attention_mask=mask)


def kernel_kind(name: str) -> str:
    """What a kernel does, from its name: the matrix products, attention, or the rest."""
    lower = name.lower()
    if any(k in lower for k in ("flash", "fmha", "attention", "efficient_attn")):
        return "attention"
    if any(k in lower for k in ("gemm", "cutlass", "nvjet", "xmma", "cublas", "matmul",
                                "aten::mm", "addmm", "bmm")):
        return "matrix products"
    return "other (elementwise, norms, softmax, copies, reductions)"


def pytorch_kernel_profile(model, batches, device, state):
    """Device time per kernel over one pass of the batched extraction (torch.profiler), summed
    by kind, beside our `bench --stages`: where PyTorch spends the forward that we take longer
    over. On the CPU, the operators' own CPU time instead."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    gpu = is_gpu(device)
    activity = ProfilerActivity.CUDA if gpu else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        pytorch_extract(model, batches, device, state)
        if gpu:
            torch.cuda.synchronize()
    totals = {}
    for event in prof.events():
        if gpu:
            if event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            micros = getattr(event, "device_time", None)
            if micros is None:
                micros = getattr(event, "cuda_time", 0)
        else:
            micros = event.self_cpu_time_total
        seconds, calls = totals.get(event.name, (0.0, 0))
        totals[event.name] = (seconds + micros / 1e6, calls + 1)
    by_kind = {}
    for name, (seconds, _) in totals.items():
        by_kind[kernel_kind(name)] = by_kind.get(kernel_kind(name), 0.0) + seconds
    top = sorted(totals.items(), key=lambda item: -item[1][0])[:25]
    return {"timed": "device time of each kernel" if gpu else "CPU time of each operator",
            "seconds_by_kind": {k: round(v, 4) for k, v in by_kind.items()},
            "seconds_in_all": round(sum(by_kind.values()), 4),
            "top": [{"name": name[:160], "kind": kernel_kind(name), "seconds": round(seconds, 4),
                     "calls": calls} for name, (seconds, calls) in top]}


def bench_pytorch(folder, token_ids, device, one_at_a_time, kernel_profile=False):
    import torch
    from transformers import AutoModelForCausalLM
    if is_gpu(device):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.time()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, device_map=device,
                                                 attn_implementation="sdpa").eval()
    if is_gpu(device):
        torch.cuda.synchronize()
    load = time.time() - started
    state = {}
    handles = pooled_hooks(model, state)
    order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
    sync = torch.cuda.synchronize if is_gpu(device) else (lambda: None)
    n_tokens = sum(map(len, token_ids))
    by_batch = {}
    for size in (64, 256):
        batched = [[token_ids[i] for i in order[k:k + size]] for k in range(0, len(order), size)]
        pytorch_extract(model, batched[:1], device, state)  # warm-up
        sync()
        started = time.time()
        pytorch_extract(model, batched, device, state)
        sync()
        seconds = time.time() - started
        by_batch[size] = {"seconds": seconds, "sentences_per_second": len(token_ids) / seconds,
                          "tokens_per_second": n_tokens / seconds}
    profile = None
    if kernel_profile:
        batched = [[token_ids[i] for i in order[k:k + 256]] for k in range(0, len(order), 256)]
        try:
            profile = pytorch_kernel_profile(model, batched, device, state)
        except Exception:  # noqa: BLE001 - a profiler failure must not cost the speed figures
            profile = {"error": traceback.format_exc()[-3000:]}
    single = token_ids[:one_at_a_time]
    started = time.time()
    pytorch_extract(model, [[ids] for ids in single], device, state)
    sync()
    single_seconds = time.time() - started
    for handle in handles:
        handle.remove()
    batched = [[token_ids[i] for i in order[k:k + 256]] for k in range(0, len(order), 256)]
    sync()
    started = time.time()
    pytorch_forward_only(model, batched, device)
    sync()
    forward_only = time.time() - started
    peak = torch.cuda.max_memory_allocated() / 2**20 if is_gpu(device) else None
    del model
    gc.collect()
    if is_gpu(device):
        torch.cuda.empty_cache()
    return {
        "load_seconds": round(load, 2),
        "batched_64": by_batch[64],
        "batched_256": by_batch[256],
        "batched_best": max(by_batch.values(), key=lambda r: r["sentences_per_second"]),
        "batched_256_forward_only_seconds": forward_only,
        "one_at_a_time": {"sentences": len(single), "seconds": single_seconds,
                          "sentences_per_second": len(single) / single_seconds},
        "peak_gpu_mib_torch_allocated": peak,
        **({"kernel_profile_batched_256": profile} if profile else {}),
    }


# ------------------------------------------------------------------------------------------

def env_info(gpu):
    info = {"python": sys.version.split()[0]}
    try:
        import torch
        import transformers
        info["torch"] = torch.__version__
        info["transformers"] = transformers.__version__
        if is_gpu(gpu):
            info["gpu"] = torch.cuda.get_device_name(0)
            info["capability"] = torch.cuda.get_device_capability(0)
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                  "--format=csv,noheader"], capture_output=True, text=True)
            info["nvidia_smi"] = smi.stdout.strip()
    except Exception as error:  # noqa: BLE001 - report, don't stop
        info["error"] = repr(error)
    return info


def is_gpu(device: str) -> bool:
    """`cuda` or `cuda:N`."""
    return device.startswith("cuda")


def failures(results) -> list[str]:
    """The steps that raised and the goals (`pass` entries) that were missed, by name."""
    missed = []

    def walk(path, value):
        if isinstance(value, dict):
            if "error" in value and isinstance(value["error"], str):
                missed.append(f"{path}: error")
            for key, child in value.items():
                if key == "pass" and isinstance(child, dict):
                    missed.extend(f"{path}: {goal}" for goal, ok in child.items() if ok is False)
                else:
                    walk(f"{path}.{key}" if path else key, child)
        elif isinstance(value, list):
            for index, child in enumerate(value):
                walk(f"{path}[{index}]", child)

    walk("", results)
    return missed


def step(results, name, fn):
    try:
        results[name] = fn()
    except Exception:  # noqa: BLE001 - one failing step must not hide the others
        results[name] = {"error": traceback.format_exc()[-4000:]}
        log(f"{name} FAILED:\n{results[name]['error']}")
    write(results)


def write(results):
    path = ARGS.out / "gpu_check.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(path)


def export_tokenizer(gguf: Path, out: Path) -> None:
    """Writes the tokenizer.json that transformers builds from a GGUF file's metadata."""
    import tempfile
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes((Path(folder) / "tokenizer.json").read_bytes())
    print(f"wrote {out}")


def main():
    global ARGS
    if len(sys.argv) == 4 and sys.argv[1] == "--export-tokenizer":
        export_tokenizer(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bin", type=Path, required=True)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpucheck"))
    parser.add_argument("--gpu-device", default="cuda")
    parser.add_argument("--shapes", choices=["real", "small"], default="real")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--skip", default="", help="comma list: parity,speed,pressure,host")
    parser.add_argument("--one-at-a-time", type=int, default=100)
    parser.add_argument("--tiny-models", default="", help="comma list (default: all)")
    parser.add_argument("--pool-ab", action="store_true",
                        help="also bench the first model with the driver's default memory pool")
    parser.add_argument("--no-capture-ab", action="store_true",
                        help="skip benching the first model again with the generic capture ops")
    parser.add_argument("--real-parity-sentences", type=int, default=50,
                        help="per language, GPU bf16 against f32 on the first model (0: skip)")
    parser.add_argument("--no-hand-on-ab", action="store_true",
                        help="skip benching the last model again with the serial hand-on")
    parser.add_argument("--no-scoring-ab", action="store_true",
                        help="skip `neuronxa run` on the last model again with the scoring "
                             "after each language instead of alongside the next one")
    parser.add_argument("--fused-ab", action="store_true",
                        help="also bench every speed model with candle's ops instead of the "
                             "fused activation and softmax kernels (NEURONXA_CUDA_FUSED=generic)")
    parser.add_argument("--stages", action="store_true",
                        help="time our forward stage by stage and profile PyTorch's kernels, "
                             "for every speed model")
    parser.add_argument("--scoring-threads", default="1,4",
                        help="with --scoring-bench, also time the scoring with these rayon thread "
                             "counts (comma list; empty: none)")
    parser.add_argument("--scoring-bench", action="store_true",
                        help="also time the scoring of 10 languages for the last model's shape "
                             "(`bench --scoring`, on the host's cores)")
    parser.add_argument("--tiny-budget", type=float, default=150,
                        help="seconds after which the remaining tiny parity models are skipped")
    ARGS = parser.parse_args()
    ARGS.out.mkdir(parents=True, exist_ok=True)
    ARGS.work.mkdir(parents=True, exist_ok=True)
    gpu, work, binary = ARGS.gpu_device, ARGS.work, ARGS.bin.resolve()
    skip = set(filter(None, ARGS.skip.split(",")))
    shapes = SHAPES if ARGS.shapes == "real" else SMALL
    torch_device = gpu if is_gpu(gpu) else "cpu"

    results = {"env": env_info(gpu), "argv": sys.argv[1:]}
    write(results)
    log(f"env {results['env']}")

    if "parity" not in skip:
        wanted = set(filter(None, ARGS.tiny_models.split(",")))
        for fixture in sorted((ROOT / "tests/fixtures/tiny").iterdir()):
            if wanted and fixture.name not in wanted:
                continue
            ggufs = sorted(fixture.glob("*.gguf"))
            model = ggufs[0] if ggufs else fixture
            if time.time() - STARTED > ARGS.tiny_budget:
                results[f"parity_tiny_{fixture.name}"] = {"skipped": "time budget"}
                continue
            step(results, f"parity_tiny_{fixture.name}",
                 lambda m=model, n=fixture.name: parity_model(binary, m, work, gpu, 10, 100, n))

    models = {}
    for name in filter(None, ARGS.models.split(",")):
        folder = work / "models" / name
        def make(name=name, folder=folder):
            return {"parameters": make_model(name, shapes[name], ARGS.tokenizer, folder,
                                             torch_device)}
        step(results, f"make_{name}", make)
        if "error" not in results[f"make_{name}"]:
            models[name] = folder

    first = next(iter(models), None)
    if "parity" not in skip and first and ARGS.real_parity_sentences > 0:
        step(results, f"parity_real_{first}",
             lambda: parity_model(binary, models[first], work, gpu, 2, ARGS.real_parity_sentences,
                                  f"real_{first}"))

    if "speed" not in skip and models:
        sentences_file = work / "speed_sentences.txt"
        _, token_ids, lengths = speed_sentences(ARGS.tokenizer, sentences_file)
        results["speed_corpus"] = {"sentences": len(lengths), "tokens": sum(lengths),
                                   "min": min(lengths), "max": max(lengths),
                                   "mean": sum(lengths) / len(lengths)}
        last = list(models)[-1]
        for name, folder in models.items():
            def speed(name=name, folder=folder):
                ours = bench_neuronxa(binary, folder, sentences_file,
                                      work / f"bench_{name}.json", gpu, stages=ARGS.stages)
                if name == last:
                    # Its own failure must not cost the speed figures of this model.
                    try:
                        ours["run_bundled_corpus"] = time_run(binary, folder, work, gpu)
                        log(f"neuronxa run {name}: "
                            f"{ours['run_bundled_corpus']['process_seconds']} s")
                    except Exception:  # noqa: BLE001
                        ours["run_bundled_corpus"] = {"error": traceback.format_exc()[-3000:]}
                        log(f"neuronxa run {name} FAILED:\n{ours['run_bundled_corpus']['error']}")
                    if not ARGS.no_scoring_ab:
                        try:
                            serial = time_run_serial_scoring(binary, folder, work, gpu)
                            ours["run_bundled_corpus_serial_scoring"] = serial
                            log(f"neuronxa run {name}, scoring after each language: "
                                f"{serial['process_seconds']} s, same CSVs: "
                                f"{all(serial['csv_identical_to_alongside'].values())}")
                        except Exception:  # noqa: BLE001
                            ours["run_bundled_corpus_serial_scoring"] = {
                                "error": traceback.format_exc()[-3000:]}
                if name == last and is_gpu(gpu) and not ARGS.no_hand_on_ab:
                    # The sentence-by-sentence hand-on of the streaming path, for the model
                    # whose states are largest.
                    ours["with_serial_hand_on"] = bench_variant(
                        binary, folder, sentences_file, work / f"bench_{name}_serial.json", gpu,
                        "NEURONXA_HAND_ON", "serial")
                if name == first and is_gpu(gpu):
                    # A/B runs of the first model, one environment variable changed each:
                    # the driver's default of handing freed memory back at every sync, and
                    # the generic capture ops instead of the CUDA capture kernel.
                    variants = []
                    if ARGS.pool_ab:
                        variants.append(("with_driver_default_pool",
                                         "NEURONXA_CUDA_RELEASE_MEMORY", "1"))
                    if not ARGS.no_capture_ab:
                        variants.append(("with_generic_capture", "NEURONXA_CUDA_CAPTURE", "generic"))
                    for key, variable, value in variants:
                        ours[key] = bench_variant(binary, folder, sentences_file,
                                                  work / f"bench_{name}_{key}.json", gpu,
                                                  variable, value)
                if is_gpu(gpu) and ARGS.fused_ab:
                    ours["with_generic_activation_and_softmax"] = bench_variant(
                        binary, folder, sentences_file, work / f"bench_{name}_unfused.json", gpu,
                        "NEURONXA_CUDA_FUSED", "generic")
                    log(f"neuronxa {name} with candle's activation and softmax: "
                        f"{json.dumps(ours['with_generic_activation_and_softmax'])}")
                if is_gpu(gpu) and SHAPES[name]["model_type"] == "qwen3_5_text":
                    # The delta rule token by token with tensor ops instead of its kernel.
                    ours["with_generic_delta_rule"] = bench_variant(
                        binary, folder, sentences_file, work / f"bench_{name}_generic_delta.json",
                        gpu, "NEURONXA_CUDA_DELTA_RULE", "generic")
                log(f"neuronxa {name}: {ours['seconds']:.2f} s, "
                    f"{ours['sentences_per_second']:.0f} sentences/s, batch {ours['batch_size']}, "
                    f"forward alone {ours.get('forward_seconds')} s, host waiting "
                    f"{ours.get('host_waiting_seconds')} s, handing on "
                    f"{ours.get('host_handing_on_seconds')} s")
                torch_result = bench_pytorch(folder, token_ids, torch_device, ARGS.one_at_a_time,
                                             kernel_profile=ARGS.stages)
                log(f"pytorch {name}: {json.dumps(torch_result)}")
                ratio = ours["sentences_per_second"] / torch_result["batched_best"]["sentences_per_second"]
                single = ours["sentences_per_second"] / torch_result["one_at_a_time"]["sentences_per_second"]
                goals = {"at_least_batched_pytorch": ratio >= 1.0,
                         "20x_one_at_a_time": single >= 20.0}
                if is_gpu(gpu):
                    # The kernel falls back to the generic ops if it disagrees with them at load.
                    goals["cuda_capture_kernel_used"] = ours.get("capture") == "CUDA capture kernel"
                    # Each falls back to candle's ops if it disagrees with them at load.
                    goals["cuda_fused_kernels_used"] = ours.get("fused_kernels") is True
                    if ours.get("delta_rule") is not None:
                        goals["cuda_delta_rule_kernel_used"] = (
                            ours["delta_rule"] == "CUDA delta rule kernel")
                return {"neuronxa": ours, "pytorch": torch_result,
                        "speedup_vs_pytorch_batched": ratio,
                        "speedup_vs_one_at_a_time": single,
                        "pass": goals}
            step(results, f"speed_{name}", speed)
        if ARGS.scoring_bench:
            last = list(models)[-1]
            threads = [int(t) for t in ARGS.scoring_threads.split(",") if t.strip()]
            step(results, f"scoring_{last}",
                 lambda: scoring_bench(binary, models[last], work / f"scoring_{last}.json",
                                       threads))
        if "host" not in skip:
            step(results, "host_memory", host_memory)
        if is_gpu(gpu) and "pressure" not in skip:
            last = list(models)[-1]
            step(results, f"memory_pressure_{last}",
                 lambda: memory_pressure(binary, models[last], sentences_file, work, gpu))
    results["total_seconds"] = round(time.time() - STARTED, 1)
    missed = failures(results)
    results["failures"] = missed
    write(results)
    if missed:
        log("FAILED: " + "; ".join(missed))
        sys.exit(1)
    log("done: every step ran and every goal under \"pass\" was met")


if __name__ == "__main__":
    main()
