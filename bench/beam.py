"""Beam search speed: one sentence at a time (the reference) against sentences x beams in one batch.

    python bench/beam.py --run checkpoints/bench-seq2seq/luong-general    # a model from bench/seq2seq.py
    python bench/beam.py                  # no run given: first trains a small model for --train-minutes
    python bench/beam.py --quick          # a smoke run: 100 sentences, a 1-minute model

Decodes the Multi30k test set (test_2016_flickr.de, 1,000 sentences) at `--beam` both ways, in
alternating rounds so both see the same machine load, at each thread count of `--threads`
(default 1 and 2), checks that both find the same best translation for every sentence, and reports
sentences/s, the speed-up and the share of the time spent inside the model's decoder step (the
arithmetic; the rest is the search's own bookkeeping). Without `--run`, the
model is trained on the test pairs themselves (speed depends on how long the translations are,
so the model must have learned where sentences end; its quality does not matter here).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import charrnn  # noqa: E402
from bench.common import REPO, machine_info, median, print_table  # noqa: E402
from charrnn.core.runtime import set_threads  # noqa: E402
from charrnn.seq2seq.decoding import TranslateSettings, batched_beam_search  # noqa: E402
from charrnn.seq2seq.pairs import encode_source  # noqa: E402
from tests.beam_oracle import beam_search  # noqa: E402  (the one-sentence reference search)

MULTI30K = REPO.parent / "shared" / "corpora" / "multi30k"


def train_small_model(data: Path, run_dir: Path, minutes: float) -> None:
    """A 1-layer GRU with Luong attention, word level, trained on the test pairs for `minutes`."""
    charrnn.train(
        kind="seq2seq",
        out=run_dir,
        overwrite=True,
        source_file=str(data / "test_2016_flickr.de"),
        target_file=str(data / "test_2016_flickr.en"),
        source_level="word",
        target_level="word",
        attention="luong-general",
        max_time=minutes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="a trained seq2seq run directory")
    parser.add_argument("--data", type=Path, default=MULTI30K)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch (batched search)")
    parser.add_argument("--sentences", type=int, default=None, help="decode only the first N test sentences")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of each way")
    parser.add_argument("--train-minutes", type=float, default=5.0, help="training budget when no --run")
    parser.add_argument(
        "--threads", default="1,2", help="comma-separated thread counts; every way runs at each (default 1,2)"
    )
    parser.add_argument("--quick", action="store_true", help="100 sentences, a 1-minute model, one round")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "beam.json")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.rounds = args.sentences or 100, 1
        args.train_minutes = min(args.train_minutes, 1.0)
        if args.out == REPO / "bench" / "results" / "beam.json":
            args.out = args.out.with_name("beam_quick.json")
    if not (args.data / "test_2016_flickr.de").is_file():
        sys.exit(f"Multi30k not found in {args.data} (expects test_2016_flickr.de/.en); pass --data.")

    thread_counts = [int(t) for t in str(args.threads).split(",") if t.strip()]
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run
        if run_dir is None:
            run_dir = Path(scratch) / "beam-model"
            print(f"training a small model for {args.train_minutes:g} min (no --run given)", flush=True)
            train_small_model(args.data, run_dir, args.train_minutes)
        run = charrnn.load(run_dir)
    lines = (args.data / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()[: args.sentences]
    sources = [encode_source(run.source_tokenizer, line.strip()) for line in lines if line.strip()]
    settings = TranslateSettings(beam=args.beam, batch_size=args.batch_size)
    decoder = DecoderClock(run.model)

    cases = [(way, threads) for threads in thread_counts for way in ("one_by_one", "batched")]
    seconds: dict[str, list[float]] = {f"{way}@{t}": [] for way, t in cases}
    decoder_seconds: dict[str, list[float]] = {key: [] for key in seconds}
    found: dict[str, list] = {}
    for _ in range(args.rounds):
        for way, threads in cases:
            key = f"{way}@{threads}"
            set_threads(threads)
            decoder.seconds = 0.0
            started = time.perf_counter()
            if way == "one_by_one":
                hyps = [beam_search(run.model, source, settings)[0] for source in sources]
            else:
                hyps = [h[0] for h in batched_beam_search(run.model, sources, settings)]
            seconds[key].append(time.perf_counter() - started)
            decoder_seconds[key].append(decoder.seconds)
            found[way] = hyps
            print(f"{way}, {threads} thread(s): {len(sources) / seconds[key][-1]:,.1f} sentences/s", flush=True)

    same = sum(
        a.ids == b.ids and abs(a.logprob - b.logprob) < 1e-4
        for a, b in zip(found["one_by_one"], found["batched"], strict=True)
    )
    rate = {key: len(sources) / median(times) for key, times in seconds.items()}
    base = f"one_by_one@{thread_counts[0]}"
    rows = []
    for way, threads in cases:
        key = f"{way}@{threads}"
        share = median(decoder_seconds[key]) / median(seconds[key])
        name = "one sentence at a time" if way == "one_by_one" else f"batched ({args.batch_size} sentences)"
        rows.append([name, threads, median(seconds[key]), rate[key], rate[key] / rate[base], f"{share:.0%}"])
    print_table(
        f"beam {args.beam}, {len(sources)} sentences; same best hypothesis: {same}/{len(sources)}; "
        f"speed-up against one at a time on {thread_counts[0]} thread(s)",
        ["search", "threads", "seconds (median)", "sentences/s", "speed-up", "in the decoder step"],
        rows,
    )
    payload = {
        "machine": machine_info(),
        "benchmark": "beam search, one sentence at a time vs batched, Multi30k test_2016_flickr de->en",
        "run": str(args.run) if args.run else f"small model trained {args.train_minutes:g} min on the test pairs",
        "beam": args.beam,
        "batch_size": args.batch_size,
        "sentences": len(sources),
        "threads": thread_counts,
        "seconds": seconds,
        "decoder_step_seconds": decoder_seconds,
        "sentences_per_second": rate,
        "speedup_vs": base,
        "speedup": {key: value / rate[base] for key, value in rate.items()},
        "same_best_hypothesis": same,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


class DecoderClock:
    """Wraps a model's `decode_step` to add up the seconds spent in it (the model's own arithmetic)."""

    def __init__(self, model) -> None:
        self.seconds, self.step = 0.0, model.decode_step
        model.decode_step = self

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.step(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


if __name__ == "__main__":
    main()
