"""Benchmark: de→en on Multi30k under a fixed wall-clock training budget per attention type.

For each `--attention` value, trains an encoder–decoder on the full Multi30k training set
(29,000 pairs) for `--minutes` of wall-clock time (validation passes included), then evaluates
the best checkpoint (by validation loss on val, 1,014 pairs) on test_2016_flickr (1,000 pairs):
corpus BLEU with sacrebleu on detokenised, cased output, exact match, mean log P(reference | source),
and training speed in target tokens per second, and how peaked the attention is: the mean entropy of
its rows (nats; 0 is one-hot) and the mean largest weight, over the first 200 test sentences (greedy).
Writes JSON and prints a table. `--unscaled-scores` trains the Luong attentions with the unscaled
scores of runs before charrnn 0.3, to compare with the 1/sqrt(d) scaling now the default.

    python bench/seq2seq.py --minutes 30                      # the full benchmark (3 x 30 min)
    python bench/seq2seq.py --minutes 6 --attention none,luong-general
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from charrnn.core.config import TokenizerConfig  # noqa: E402
from charrnn.seq2seq.config import Seq2SeqConfig, Seq2SeqRunConfig, Seq2SeqTrainConfig  # noqa: E402
from charrnn.seq2seq.pairs import read_parallel_files  # noqa: E402
from charrnn.seq2seq.run import TranslationRun  # noqa: E402
from charrnn.seq2seq.training import train_seq2seq  # noqa: E402


class PrintReporter:
    """Plain progress lines (one every `every` seconds) for a log file."""

    def __init__(self, name: str, every: float = 60.0) -> None:
        self.name, self.every, self.last = name, every, 0.0

    def start(self, info: dict[str, Any]) -> None:
        print(
            f"[{self.name}] {info['parameters']:,} parameters, vocab {info['vocab_size']}, "
            f"{info['train_tokens']:,} target tokens per epoch, {info['chunks_per_epoch']} batches per epoch",
            flush=True,
        )

    def step(self, record: dict[str, Any]) -> None:
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            print(
                f"[{self.name}] step {record['step']} epoch {record['epoch']:.2f} loss {record['train_loss']:.3f} "
                f"{record['tokens_per_second']:,.0f} tok/s {record['elapsed'] / 60:.1f} min",
                flush=True,
            )

    def evaluate(self, record: dict[str, Any]) -> None:
        print(f"[{self.name}] step {record['step']} val loss {record['val_loss']:.4f}", flush=True)

    def message(self, text: str) -> None:
        print(f"[{self.name}] {text}", flush=True)


def run_config(args: argparse.Namespace, attention: str, data: Path) -> Seq2SeqRunConfig:
    def side(level: str, vocab: int | None) -> TokenizerConfig:
        return TokenizerConfig(level=level, vocab_size=vocab, min_count=args.min_count if level == "word" else 1)

    return Seq2SeqRunConfig(
        source_tokenizer=side(args.source_level, args.source_vocab),
        target_tokenizer=side(args.target_level, args.target_vocab),
        model=Seq2SeqConfig(
            cell=args.cell,
            embed=args.embed,
            hidden=args.hidden,
            layers=args.layers,
            dropout=args.dropout,
            bidirectional=True,
            attention=attention,
            context="input" if attention == "none" else "init",
            scaled_scores=not args.unscaled_scores,
        ),
        training=Seq2SeqTrainConfig(
            batch_size=args.batch_size,
            lr=args.lr,
            epochs=1000,
            max_time=args.minutes,
            eval_every=args.eval_every,
            save_every=args.eval_every,
            schedule="plateau",
            plateau_patience=1,
            label_smoothing=args.label_smoothing,
            max_length=args.max_length,
            seed=args.seed,
            device="cpu",
            threads=args.threads,
        ),
        source_file=str(data / "train.de"),
        target_file=str(data / "train.en"),
        val_source_file=str(data / "val.de"),
        val_target_file=str(data / "val.en"),
    )


def attention_sharpness(run: TranslationRun, sources: list[str]) -> tuple[float | None, float | None]:
    """(mean entropy in nats, mean largest weight) of the attention rows of greedy translations of `sources`;
    (None, None) without attention. One-hot rows have entropy 0 and largest weight 1."""
    import math

    rows = [
        row for translation in run.translate(sources, with_attention=True) for row in (translation.attention or [])
    ]
    if not rows:
        return None, None
    entropy = sum(-sum(w * math.log(w) for w in row if w > 0) for row in rows) / len(rows)
    return entropy, sum(max(row) for row in rows) / len(rows)


HYPOTHESES = "test_2016_flickr.hyp.en"  # the test set's translations, left in each run directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock training budget per configuration")
    parser.add_argument(
        "--attention", default="none,bahdanau,luong-general", help="comma-separated attention types"
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "corpora" / "multi30k")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "seq2seq.json")
    parser.add_argument("--runs", type=Path, default=REPO / "checkpoints" / "bench-seq2seq")
    parser.add_argument("--source-level", default="word")
    parser.add_argument("--target-level", default="word")
    parser.add_argument("--source-vocab", type=int, default=None)
    parser.add_argument("--target-vocab", type=int, default=None)
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--embed", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--unscaled-scores", action="store_true", help="Luong scores without 1/sqrt(d)")
    args = parser.parse_args()

    if not (args.data / "train.de").is_file():
        sys.exit(f"Multi30k not found in {args.data} (expects train/val/test_2016_flickr .de/.en); pass --data.")
    test = read_parallel_files(args.data / "test_2016_flickr.de", args.data / "test_2016_flickr.en")
    results = []
    for attention in [a.strip() for a in args.attention.split(",") if a.strip()]:
        run_dir = args.runs / (attention + ("-unscaled" if args.unscaled_scores else ""))
        (run_dir / HYPOTHESES).unlink(missing_ok=True)  # this script's own file: --overwrite refuses others
        config = run_config(args, attention, args.data)
        train = train_seq2seq(config, run_dir, overwrite=True, reporter=PrintReporter(attention))
        run = TranslationRun.load(run_dir)
        if run.note:  # the old loader required the best checkpoint; so does this benchmark
            sys.exit(run.note)
        model = run.model
        started = time.perf_counter()
        scores = run.evaluate(test.sources, test.targets, beam=args.beam)  # TranslateSettings' other defaults
        decode_seconds = time.perf_counter() - started
        entropy, peak = attention_sharpness(run, test.sources[:200])
        (run_dir / HYPOTHESES).write_text("\n".join(scores.translations) + "\n", encoding="utf-8")
        results.append(
            {
                "attention": attention,
                "bleu": round(scores.bleu, 2),
                "exact_match": scores.exact_match,
                "mean_logprob": scores.mean_logprob,
                "logprob_per_token": scores.logprob_per_token,
                "train_tokens_per_second": train.tokens_per_second,
                "train_minutes": train.seconds / 60,
                "steps": train.steps,
                "epochs": train.epochs,
                "best_val_loss": train.best_val_loss,
                "parameters": sum(p.numel() for p in model.parameters()),
                "decode_seconds": decode_seconds,
                "attention_entropy": entropy,
                "attention_max_weight": peak,
                "scaled_scores": run.config.model.scaled_scores,
                "bleu_signature": scores.bleu_signature,
                "examples": [
                    {"source": s, "reference": r, "translation": h}
                    for s, r, h in list(zip(test.sources, test.targets, scores.translations, strict=True))[:3]
                ],
            }
        )
        print(f"[{attention}] test BLEU {scores.bleu:.2f}, exact match {scores.exact_match:.1%}", flush=True)

    payload = {
        "benchmark": "seq2seq de->en, Multi30k train -> test_2016_flickr",
        "command": "python bench/seq2seq.py " + shlex.join(sys.argv[1:]),
        "minutes_per_config": args.minutes,
        # paths relative to the repository, so the results name no machine's directories
        "settings": {
            k: (os.path.relpath(v.resolve(), REPO) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "machine": {
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "search": "greedy" if args.beam == 1 else f"beam {args.beam}",
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nde->en Multi30k test_2016_flickr, {args.minutes:g} min per configuration ({payload['search']})")
    print(
        f"{'attention':<15}{'BLEU':>7}{'exact':>8}{'tok/s':>9}{'steps':>8}{'epochs':>8}{'val loss':>10}"
        f"{'attn H':>8}{'max w':>7}"
    )
    for r in results:
        entropy = "-" if r["attention_entropy"] is None else f"{r['attention_entropy']:.3f}"
        peak = "-" if r["attention_max_weight"] is None else f"{r['attention_max_weight']:.3f}"
        print(
            f"{r['attention']:<15}{r['bleu']:>7.2f}{r['exact_match']:>8.1%}{r['train_tokens_per_second']:>9,.0f}"
            f"{r['steps']:>8}{r['epochs']:>8.2f}{r['best_val_loss']:>10.3f}{entropy:>8}{peak:>7}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
