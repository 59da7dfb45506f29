"""Peak memory and step time of one training step against sequence length, before and after long-context work.

The tiny Qwen3-VL widened to the real vocabulary (151,936 entries), full fine-tune with gradient checkpointing
(as the long presets), one packed row of L tokens made of 4,096-token samples whose last 5% are the answer.
Each (mode, length) runs in its own process; memory is that process's peak RSS less its RSS once the model
is built (CPU), or the CUDA peak allocation (GPU).

- ``before``: what s2-long did: SDPA with the packed row's dense L x L mask, logits at every position.
- ``mask``: SDPA's dense mask, logits only at labelled positions (the logits term alone removed).
- ``after``: ``sdpa_varlen`` (CPU) or the chosen ``--attn`` (GPU), logits only at labelled positions.

    python benchmarks/long_context.py --lengths 2048,4096,8192,16384,32768,65536 --max-gib 12
    python benchmarks/long_context.py --attn flash_attention_2 --precision bf16   # on a GPU with flash-attn
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VOCAB = 151_936
SAMPLE = 4096
ANSWER = 0.05


def estimate_gib(mode: str, length: int) -> float:
    """Rough peak of the terms that grow with L, to skip runs the machine cannot hold."""
    logits = length * VOCAB * 4 * 4 / 2 ** 30 if mode == "before" else length * ANSWER * VOCAB * 16 / 2 ** 30
    mask = length * length * 5 / 2 ** 30 if mode in ("before", "mask") else 0.0
    return logits + mask + length * 64 * 4 * 40 / 2 ** 30


def build(attn: str, dtype):
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from finetune.attention import model_kwarg
    from model.tiny import QWEN_SPECIAL_TOKENS, tiny_config_kwargs

    specials = {t: VOCAB - len(QWEN_SPECIAL_TOKENS) + i for i, t in enumerate(QWEN_SPECIAL_TOKENS)}
    kwargs = tiny_config_kwargs(VOCAB, specials)
    kwargs["text_config"]["max_position_embeddings"] = 1 << 17
    config = Qwen3VLConfig(**kwargs)
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype, **model_kwarg(attn))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def batch(length: int, device):
    import torch

    from finetune.data import IGNORE

    g = torch.Generator().manual_seed(length)
    ids = torch.randint(100, 100_000, (1, length), generator=g)
    lens = [SAMPLE] * (length // SAMPLE) + ([length % SAMPLE] if length % SAMPLE else [])
    labels = torch.full_like(ids, IGNORE)
    text, a = [], 0
    for n in lens:
        k = max(1, int(n * ANSWER))
        labels[0, a + n - k : a + n] = ids[0, a + n - k : a + n]
        text.append(torch.arange(n))
        a += n
    text = torch.cat(text)[None]
    position_ids = text[None].expand(4, 1, length).clone()  # text row + 3 MRoPE rows (text-only: equal)
    return dict(input_ids=ids.to(device), labels=labels.to(device), position_ids=position_ids.to(device))


def one(mode: str, length: int, attn: str, precision: str, steps: int) -> dict:
    """One (mode, length) in this process: peak memory above the built model and mean step time."""
    import torch

    from finetune.train import labelled_loss

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    impl = "sdpa" if mode in ("before", "mask") else attn
    model = build(impl, dtype).to(device).train()
    inputs = batch(length, device)
    n = int((inputs["labels"][:, 1:] != -100).sum())
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_now()
    times, loss = [], None
    for _ in range(steps):
        t0 = time.perf_counter()
        if mode == "before":
            loss = model(**inputs, num_items_in_batch=n, use_cache=False).loss
        else:
            loss = labelled_loss(model, inputs, n)
        loss.backward()
        model.zero_grad(set_to_none=False)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return dict(mode=mode, attn=impl, length=length, loss=round(loss.item(), 6), labels=n,
                peak_gib=round((peak - base) / 2 ** 30, 3), step_s=round(min(times), 3),
                device=torch.cuda.get_device_name(0) if cuda else "cpu", precision=precision)


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="2048,4096,8192,16384,32768,65536")
    ap.add_argument("--modes", default="before,mask,after")
    ap.add_argument("--attn", default="sdpa_varlen", help="the 'after' attention (flash_attention_2 on a GPU)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--steps", type=int, default=2, help="steps per run; the fastest is reported")
    ap.add_argument("--max-gib", type=float, default=12.0, help="skip runs estimated above this")
    ap.add_argument("--one", nargs=2, metavar=("MODE", "LENGTH"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help="also write the results as JSON here")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.attn, args.precision, args.steps)))
        return
    results = []
    for mode in args.modes.split(","):
        for length in (int(x) for x in args.lengths.split(",")):
            if estimate_gib(mode, length) > args.max_gib:
                print(f"{mode:6s} {length:6d}  skipped (about {estimate_gib(mode, length):.0f} GiB > --max-gib)")
                results.append(dict(mode=mode, length=length, skipped=True))
                continue
            run = subprocess.run([sys.executable, __file__, "--one", mode, str(length), "--attn", args.attn,
                                  "--precision", args.precision, "--steps", str(args.steps)],
                                 capture_output=True, text=True)
            if run.returncode:
                print(f"{mode:6s} {length:6d}  failed: {run.stderr.strip().splitlines()[-1:]}")
                results.append(dict(mode=mode, length=length, failed=True))
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            results.append(r)
            print(f"{mode:6s} {length:6d}  {r['attn']:18s} peak {r['peak_gib']:7.3f} GiB  step {r['step_s']:7.3f} s"
                  f"  loss {r['loss']:.6f}")
    done = {(r["mode"], r["length"]): r for r in results if "peak_gib" in r}
    for mode in args.modes.split(","):
        pairs = [(a, b) for a, b in zip(sorted({l for m, l in done if m == mode}),
                                        sorted({l for m, l in done if m == mode})[1:])]
        for a, b in pairs:
            ra, rb = done[(mode, a)], done[(mode, b)]
            print(f"{mode:6s} {a:6d} -> {b:6d}: memory x{rb['peak_gib'] / max(ra['peak_gib'], 1e-9):.2f}, "
                  f"time x{rb['step_s'] / max(ra['step_s'], 1e-9):.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
