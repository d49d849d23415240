"""Sampling and scoring speed: one at a time against batched, with time to first token and peak RSS.

    python bench/generate.py            # default char model, 2,000-token samples, 10,000 sentences
    python bench/generate.py --quick    # short samples, 500 sentences
    python bench/generate.py --run checkpoints/tinyshakespeare-char   # a trained model (scoring error)

Scoring is timed in fp32 and under `--precision bf16` (bf16 autocast), and the bf16 run reports its
error against fp32: |log P(bf16) - log P(fp32)| per sentence (mean and max, nats) on the corpus's
lines. Give `--run` for a trained model: the error of random weights says little. On a CPU whose
PyTorch has no bf16 kernel for the model's cell, the bf16 measurement is skipped with the reason.

Every measurement runs in its own fresh process (so its peak RSS is its own), and the kinds are
interleaved round by round so they see the same machine load. The model is charrnn's default
char model with random weights (speed does not depend on the weights: samples have a fixed length).
The reference is the one-token-at-a-time loop of pytorch/examples' generate.py on the same shapes.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from bench.common import RESULTS, TINY_SHAKESPEARE, console, median, print_table, write_json  # noqa: E402

KINDS = ("reference_sample_1", "sample_1", "sample_64", "score_one_by_one", "score_batched", "score_batched_bf16")


def _setup(threads: int | None, run: str | None = None):
    import torch

    from charrnn.core.config import TokenizerConfig
    from charrnn.core.runtime import set_threads
    from charrnn.core.text import read_corpus
    from charrnn.core.tokenizers import build_tokenizer
    from charrnn.lm.config import ModelConfig
    from charrnn.lm.model import LanguageModel

    set_threads(threads)
    text = read_corpus(TINY_SHAKESPEARE)
    tokenizer = build_tokenizer(text, TokenizerConfig(level="char"))
    if run is not None:
        import charrnn

        loaded = charrnn.load(run)
        return torch, text, loaded.tokenizer, loaded.model
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=tokenizer.vocab_size)).eval()
    return torch, text, tokenizer, model


def measure(
    kind: str, length: int, sentences: int, threads: int | None, queue: Any, run: str | None = None
) -> None:
    """Run one measurement in this (child) process and put its figures on `queue`."""
    from bench.common import peak_rss_mib

    torch, text, tokenizer, model = _setup(threads, run)
    out: dict[str, Any] = {"kind": kind}
    if kind == "reference_sample_1":
        from bench.reference import RNNModel

        cfg = model.config
        ref = RNNModel(cfg.cell, cfg.vocab_size, cfg.embed, cfg.hidden, cfg.layers, cfg.dropout).eval()
        start = time.perf_counter()
        first = None
        with torch.no_grad():  # the example's loop, token by token
            hidden = ref.init_hidden(1)
            inp = torch.tensor([[2]], dtype=torch.long)
            for _ in range(length):
                output, hidden = ref(inp, hidden)
                weights = output.squeeze().div(1.0).exp().cpu()
                idx = torch.multinomial(weights, 1)[0]
                inp.fill_(idx)
                first = first or time.perf_counter()
        seconds = time.perf_counter() - start
        out |= {"tokens": length, "seconds": seconds, "ttft": first - start}
    elif kind.startswith("sample"):
        from charrnn.core.sampling import SampleSettings
        from charrnn.lm.sampling import generate_steps

        num = int(kind.split("_")[1])
        first: list[float] = []
        settings = SampleSettings(length=length, num=num, seed=0)
        start = time.perf_counter()
        # `generate`'s own loop (generate is generate_steps plus this collection): generate no longer
        # takes an on_step hook, so the first token is timed here, after the first step's tokens were
        # collected, where that hook fired.
        outputs: list[list[int]] = [[] for _ in range(num)]
        for tokens, active in generate_steps(model, tokenizer, "ROMEO:", settings):
            for row, (token, keep) in enumerate(zip(tokens, active, strict=True)):
                if keep:
                    outputs[row].append(token)
            if not first:
                first.append(time.perf_counter())
        seconds = time.perf_counter() - start
        out |= {"tokens": length * num, "seconds": seconds, "ttft": first[0] - start}
    else:
        from charrnn.core.scoring import encode_sentence
        from charrnn.lm.scoring import score_token_ids

        lines = [line for line in text.split("\n") if line.strip()]
        lines = (lines * (sentences // len(lines) + 1))[:sentences]
        seqs = [encode_sentence(tokenizer, line) for line in lines]
        if kind == "score_batched_bf16":
            exact = [sum(x) for x in score_token_ids(model, seqs)]  # untimed: the fp32 answer
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                approx = [sum(x) for x in score_token_ids(model, seqs)]
            seconds = time.perf_counter() - start
            errors = [abs(a - b) for a, b in zip(approx, exact, strict=True)]
            out |= {"mean_abs_error": sum(errors) / len(errors), "max_abs_error": max(errors)}
            out |= {"mean_abs_logprob": sum(map(abs, exact)) / len(exact)}
        else:
            start = time.perf_counter()
            if kind == "score_batched":
                score_token_ids(model, seqs)
            else:
                for seq in seqs:
                    score_token_ids(model, [seq])
            seconds = time.perf_counter() - start
        out |= {"sentences": len(seqs), "tokens": sum(map(len, seqs)), "seconds": seconds}
    out["peak_rss_mib"] = peak_rss_mib()
    queue.put(out)


def _run_cell(run: str) -> str:
    import charrnn

    return charrnn.load(run).config.model.cell


def run_in_child(kind: str, length: int, sentences: int, threads: int | None, run: str | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=measure, args=(kind, length, sentences, threads, queue, run))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short samples, few sentences, one round")
    parser.add_argument("--length", type=int, default=None, help="tokens per sample (default 2000; quick 200)")
    parser.add_argument("--sentences", type=int, default=None, help="sentences to score (default 10000)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2; quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores, at most 8)")
    parser.add_argument("--run", default=None, help="a trained char run directory (default: random weights)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="directory for the JSON")
    args = parser.parse_args()
    length = args.length or (200 if args.quick else 2000)
    sentences = args.sentences or (500 if args.quick else 10_000)
    rounds = args.rounds or (1 if args.quick else 2)
    from charrnn.core.precision import bf16_kernel_runs

    cell = "lstm" if args.run is None else _run_cell(args.run)
    skipped = {}
    if not bf16_kernel_runs(cell, torch.device("cpu")):
        skipped["score_batched_bf16"] = (
            f"this CPU's PyTorch has no bf16 {cell.upper()} kernel (needs avx512_bf16 or AMX)"
        )
        console.print(f"[yellow]bf16 scoring skipped: {skipped['score_batched_bf16']}[/]")
    kinds = [k for k in KINDS if k not in skipped]
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for r in range(rounds):
        for kind in kinds:
            result = run_in_child(kind, length, sentences, args.threads, args.run)
            runs[kind].append(result)
            console.print(f"round {r + 1}/{rounds} {kind}: {result['seconds']:.2f}s")

    def rate(kind: str, key: str = "tokens") -> float:
        return median([x[key] / x["seconds"] for x in runs[kind]])

    def ttft(kind: str) -> float | None:
        values = [x["ttft"] for x in runs[kind] if "ttft" in x]
        return 1000 * median(values) if values else None

    def rss(kind: str) -> float:
        return max(x["peak_rss_mib"] for x in runs[kind])

    summary = {
        "sample_1_tokens_per_second": rate("sample_1"),
        "sample_64_tokens_per_second": rate("sample_64"),
        "reference_sample_1_tokens_per_second": rate("reference_sample_1"),
        "batched_sampling_speedup": rate("sample_64") / rate("sample_1"),
        "score_one_by_one_sentences_per_second": rate("score_one_by_one", "sentences"),
        "score_batched_sentences_per_second": rate("score_batched", "sentences"),
        "batched_scoring_speedup": rate("score_batched", "sentences") / rate("score_one_by_one", "sentences"),
    }
    if "score_batched_bf16" in runs:
        last = runs["score_batched_bf16"][-1]
        summary |= {
            "score_batched_bf16_sentences_per_second": rate("score_batched_bf16", "sentences"),
            "bf16_scoring_speedup": rate("score_batched_bf16", "sentences") / rate("score_batched", "sentences"),
            "bf16_mean_abs_error": last["mean_abs_error"],
            "bf16_max_abs_error": last["max_abs_error"],
            "fp32_mean_abs_logprob": last["mean_abs_logprob"],
        }
    base = rate("sample_1")
    print_table(
        f"sampling ({length} tokens per sample), {rounds} interleaved round(s)",
        ["kind", "tokens/s", "x one at a time", "first token (ms)", "peak RSS (MiB)"],
        [
            (
                "reference loop, 1 sample",
                rate("reference_sample_1"),
                rate("reference_sample_1") / base,
                ttft("reference_sample_1"),
                rss("reference_sample_1"),
            ),
            ("charrnn, 1 sample", base, 1.0, ttft("sample_1"), rss("sample_1")),
            (
                "charrnn, --num 64",
                rate("sample_64"),
                rate("sample_64") / base,
                ttft("sample_64"),
                rss("sample_64"),
            ),
        ],
    )
    one = rate("score_one_by_one", "sentences")
    print_table(
        f"scoring {sentences:,} sentences",
        ["kind", "sentences/s", "tokens/s", "x one by one", "peak RSS (MiB)"],
        [
            ("one by one", one, rate("score_one_by_one"), 1.0, rss("score_one_by_one")),
            (
                "batched",
                rate("score_batched", "sentences"),
                rate("score_batched"),
                rate("score_batched", "sentences") / one,
                rss("score_batched"),
            ),
        ]
        + (
            [
                (
                    "batched, bf16",
                    rate("score_batched_bf16", "sentences"),
                    rate("score_batched_bf16"),
                    rate("score_batched_bf16", "sentences") / one,
                    rss("score_batched_bf16"),
                )
            ]
            if "score_batched_bf16" in runs
            else []
        ),
    )
    if "score_batched_bf16" in runs:
        console.print(
            f"bf16 scoring error against fp32: mean {summary['bf16_mean_abs_error']:.4f}, max "
            f"{summary['bf16_max_abs_error']:.4f} nats per sentence (mean |log P| {summary['fp32_mean_abs_logprob']:.2f})"
        )
    for kind, reason in skipped.items():
        console.print(f"{kind}: skipped ({reason})")
    console.print(
        f"batched sampling: {summary['batched_sampling_speedup']:.1f}x (target >= 20x); "
        f"batched scoring: {summary['batched_scoring_speedup']:.1f}x (target >= 10x)"
    )
    write_json(
        "generate_quick" if args.quick else "generate",
        {
            "length": length, "sentences": sentences, "rounds": rounds, "run": args.run,
            "summary": summary, "runs": runs, "skipped": skipped,
        },
        args.results,
    )  # fmt: skip


if __name__ == "__main__":
    main()
