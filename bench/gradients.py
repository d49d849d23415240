"""Vanishing gradients measured: rnn, gru and lstm at the same parameter count, on text and on long-range tasks.

    python bench/gradients.py                 # 3 min per language model, at most 5 min per lesson (~85 min at most)
    python bench/gradients.py --quick         # seconds per model, tiny settings: a smoke run

(a) Memory horizon on Tiny Shakespeare: one char-level language model per cell (`charrnn gradients
    --cells`: embed 64, 1 layer, LSTM hidden 128, the GRU and tanh RNN sized to the LSTM's parameter
    count) trained for --lm-minutes each; then ‖∂L_t/∂h_{t−k}‖ for k = 0 … 200 on the start of the
    validation text, averaged over 32 positions, trained and freshly initialised, and the memory
    horizon (first k where it falls below 1% of its value at k = 0). The three curves are drawn to
    bench/results/gradients.png.
(b) The adding problem at T = 50, 100, 200 and the copy task at T = 50, 100 (`charrnn lesson`: LSTM
    hidden 128, the other cells sized to its parameter count), at most --lesson-minutes each (a run
    stops at the first evaluation that solves 95% of 1,000 held-out sequences): solved or not, and the
    steps and seconds to solve.

Each run is an ordinary run directory under --work (default bench/results/gradients-work/), so
`charrnn info`, `charrnn plot --grad-norm` and `charrnn gradients` work on it afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, RESULTS, TINY_SHAKESPEARE, console, print_table, write_json  # noqa: E402

CELLS = ("rnn", "gru", "lstm")
ADDING_LENGTHS, COPY_LENGTHS = (50, 100, 200), (50, 100)
LESSON_HIDDEN = 128  # the LSTM's; the GRU and RNN get the hidden size of the same parameter count

FULL = {"lm_minutes": 3.0, "lesson_minutes": 5.0, "horizon": 200, "positions": 32, "lm": {}, "lesson": {}}
QUICK = {
    "lm_minutes": 0.03,
    "lesson_minutes": 0.03,
    "horizon": 24,
    "positions": 4,
    "lm": {"batch_size": 8, "bptt": 32, "eval_every": 20, "log_every": 5},
    "lesson": {"batch_size": 16, "eval_sequences": 100, "eval_every": 20, "log_every": 5},
    "adding": (10,),
    "copy": (5,),
}


def memory_horizons(work: Path, settings: dict[str, Any], threads: int | None, corpus: Path) -> list[dict]:
    """(a): train one language model per cell, measure its gradient flow trained and untrained; draw the curves."""
    from charrnn.cli.plot import INSTALL_HINT, plot_gradient_flows
    from charrnn.core.errors import CharRNNError
    from charrnn.core.rundir import run_summary
    from charrnn.core.runinfo import parameter_count
    from charrnn.lesson_runs import run_gradient_flow, train_cells

    started = time.perf_counter()
    runs = train_cells(
        corpus, CELLS, settings["lm_minutes"], work / "lm", overwrite=True, threads=threads, **settings["lm"]
    )
    console.print(f"trained {len(runs)} language models in {time.perf_counter() - started:.0f} s")
    measure = {"horizon": settings["horizon"], "positions": settings["positions"]}
    rows, flows = [], []
    for cell, run_dir in runs.items():
        trained = run_gradient_flow(run_dir, **measure)
        untrained = run_gradient_flow(run_dir, untrained=True, **measure)
        trained.label = cell
        flows.append(trained)
        summary = run_summary(run_dir)
        rows.append(
            {
                "cell": cell,
                "run": _shown(run_dir),
                "parameters": parameter_count(run_dir),
                "steps": summary["steps"],
                "best_val_loss": summary["best_val_loss"],
                "clipped_share": summary["clipped_share"],
                "memory_horizon": trained.memory_horizons[-1],
                "memory_horizon_untrained": untrained.memory_horizons[-1],
                "trained": trained.to_dict(),
                "untrained": untrained.to_dict(),
            }
        )
    try:
        plot_gradient_flows(flows, RESULTS / f"{settings['name']}.png")
    except CharRNNError:
        console.print(f"[yellow]{INSTALL_HINT}: skipping the PNG[/]")
    return rows


def lesson_hidden(task: str, cell: str) -> int:
    """The hidden size of `cell` whose lesson model has the parameter count of the LSTM with LESSON_HIDDEN units."""
    from charrnn.lessons.cells import matched_hidden, parameter_count
    from charrnn.lessons.config import LessonModelConfig
    from charrnn.lessons.model import LessonModel

    def build(cell: str, hidden: int) -> LessonModel:
        return LessonModel(LessonModelConfig(cell=cell, hidden=hidden), task)

    target = parameter_count(lambda: build("lstm", LESSON_HIDDEN))
    return matched_hidden(lambda h: build(cell, h), target)


def long_range_tasks(work: Path, settings: dict[str, Any], threads: int | None) -> list[dict]:
    """(b): each cell on the adding problem and the copy task at each length; solved or not, steps to solve."""
    import charrnn
    from charrnn.core.runinfo import parameter_count
    from charrnn.lessons.run import lesson_report

    rows = []
    tasks = [("adding", t) for t in settings.get("adding", ADDING_LENGTHS)]
    tasks += [("copy", t) for t in settings.get("copy", COPY_LENGTHS)]
    for task, length in tasks:
        for cell in CELLS:
            run_dir = work / "lessons" / f"{task}-T{length}-{cell}"
            result = charrnn.train(task, kind="lesson", out=run_dir, overwrite=True, cell=cell,
                                   hidden=lesson_hidden(task, cell), length=length,
                                   max_time=settings["lesson_minutes"], threads=threads,
                                   **settings["lesson"])  # fmt: skip
            report = lesson_report(run_dir)
            best = min((e.loss for e in report.curve), default=None)
            rows.append(
                {
                    "task": task,
                    "length": length,
                    "cell": cell,
                    "run": _shown(run_dir),
                    "parameters": parameter_count(run_dir),
                    "steps": result.steps,
                    "seconds": result.seconds,
                    "baseline": report.baseline,
                    "best_loss_over_baseline": None if best is None else best / report.baseline,
                    "last_solved": report.curve[-1].solved if report.curve else None,
                    "verdict": report.verdict,
                    "steps_to_solve": report.solved_at,
                    "clipped_share": result.clipped_share,
                }
            )
            console.print(f"{task} T={length} {cell}: {report.verdict}, steps to solve {report.solved_at}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds per model, tiny settings: a smoke run")
    parser.add_argument("--lm-minutes", type=float, default=None, help="(a) training minutes per cell (default 3)")
    parser.add_argument(
        "--lesson-minutes", type=float, default=None, help="(b) minutes per lesson run (default 5)"
    )
    parser.add_argument("--parts", default="a,b", help="which parts to run: a, b or a,b")
    parser.add_argument(
        "--work", type=Path, default=None, help="run directories (default bench/results/gradients-work)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the free cores, at most 8)"
    )
    args = parser.parse_args()
    settings = {**(QUICK if args.quick else FULL), "name": "gradients_quick" if args.quick else "gradients"}
    for name in ("lm_minutes", "lesson_minutes"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    parts = {p.strip() for p in args.parts.split(",")}
    temporary = args.work is None and args.quick
    work = (
        Path(tempfile.mkdtemp(prefix="charrnn-gradients-"))
        if temporary
        else (args.work or RESULTS / "gradients-work")
    )
    corpus = TINY_SHAKESPEARE
    if args.quick:  # a slice of it, so that the token cache and the validation text are small
        corpus = work / "tinyshakespeare-head.txt"
        work.mkdir(parents=True, exist_ok=True)
        corpus.write_text(TINY_SHAKESPEARE.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    payload: dict[str, Any] = {"settings": {k: v for k, v in settings.items()}, "cells": CELLS}
    if "a" in parts:
        rows = memory_horizons(work, settings, args.threads, corpus)
        payload["memory_horizon"] = rows
        print_table(
            f"(a) memory horizon on Tiny Shakespeare after {settings['lm_minutes']:g} min per cell "
            f"(‖∂L_t/∂h_(t-k)‖ < 1% of k = 0; k ≤ {settings['horizon']})",
            ["cell", "params", "steps", "best val", "clipped", "horizon trained", "horizon untrained"],
            [
                (r["cell"], f"{r['parameters']:,}", r["steps"], r["best_val_loss"], r["clipped_share"],
                 _horizon(r["memory_horizon"], settings), _horizon(r["memory_horizon_untrained"], settings))
                for r in rows
            ],
        )  # fmt: skip
    if "b" in parts:
        rows = long_range_tasks(work, settings, args.threads)
        payload["long_range"] = rows
        print_table(
            f"(b) long-range tasks, at most {settings['lesson_minutes']:g} min per run (solved: 95% of held-out sequences)",
            ["task", "T", "cell", "params", "steps", "seconds", "best loss / baseline", "solved share", "verdict", "steps to solve"],
            [
                (r["task"], r["length"], r["cell"], f"{r['parameters']:,}", r["steps"], f"{r['seconds']:.0f}",
                 r["best_loss_over_baseline"],
                 r["last_solved"], r["verdict"], r["steps_to_solve"])
                for r in rows
            ],
        )  # fmt: skip
    write_json(settings["name"], payload)
    if temporary:
        shutil.rmtree(work, ignore_errors=True)


def _shown(path: Path) -> str:
    """`path` relative to the repository when it lies inside it (the JSON names no machine's folders)."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def _horizon(value: int | None, settings: dict[str, Any]) -> str:
    return f"> {settings['horizon']}" if value is None else str(value)


if __name__ == "__main__":
    main()
