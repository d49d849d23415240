"""The rich display of the CLI: training progress, summary tables, the stop flag, attention heatmaps.

Progress and messages go to stderr; stdout is kept for results (samples, translations, JSON).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from charrnn.cli.streams import visible
from charrnn.core.state import clock

LN2 = math.log(2.0)


class PlainConsole(Console):
    """A rich console for user strings: no markup, no emoji codes, no highlighting, control characters visible.

    Paths, run names, sentences and config values are printed as text: `[red]x[/red]` or `[/i]` stays
    as typed (rich would otherwise style it, turn `[link=...]` into a terminal hyperlink, or fail with
    MarkupError). Styles are given as `style=` or `Text` objects, never as markup.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs = {"markup": False, "emoji": False, "highlight": False, **kwargs}
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(visible(text), **kwargs)


def loss_summary(loss: float | None, level: str) -> str:
    """A loss with the unit that suits the level: bits/char for char, perplexity otherwise."""
    if loss is None or not math.isfinite(loss):
        return "-"
    if level is None:  # a loss of its own kind (a lesson's squared error): the number alone
        return f"{loss:.4f}"
    if level == "char":
        return f"{loss:.4f} ({loss / LN2:.3f} bpc)"
    return f"{loss:.4f} (ppl {math.exp(min(loss, 50)):.1f})"


def clipped_text(share: float | None) -> str:
    """The share of steps whose gradient norm was clipped: "clipped 12% of steps" ("-" before any step)."""
    if share is None:
        return "-"
    shown = f"{100 * share:.0f}" if share == 0 or share >= 0.01 else f"{100 * share:.1g}"
    return f"clipped {shown}% of steps"


format_seconds = clock  # 2:30, 1:02:30


class RichReporter:
    """Shows training progress: a live bar on a terminal, plain lines otherwise (CI, pipes)."""

    def __init__(self, console: Console | None = None, plain_every: float = 15.0, quiet: bool = False) -> None:
        self.console = console or err_console()
        self.quiet = quiet  # --quiet: notes and warnings only, no progress
        self.plain_every = plain_every
        self.progress: Progress | None = None
        self.task = None
        self.info: dict[str, Any] = {}
        self.level = "char"
        self.last_plain = 0.0
        self.val_text = "-"
        self.last_val: float | None = None  # the last validation loss, and whether it was the best so far
        self.last_was_best = False
        self.best_val: float | None = None  # best validation loss seen by this session
        self.started = time.perf_counter()

    def start(self, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        self.info = info
        self.level = info.get("level", "char")
        self.started = time.perf_counter()
        resumed = " (resumed at step {})".format(info["start_step"]) if info.get("resumed") else ""
        data = info.get("data") or (  # what the model learns from: a kind may describe it itself
            f"vocab {info.get('vocab_size')}, {info.get('train_tokens', 0):,} train / "
            f"{info.get('val_tokens', 0):,} val tokens"
        )
        self.console.print(
            Text("charrnn", style="bold"),
            Text(
                visible(
                    f" training{resumed}: {info.get('parameters', 0):,} parameters, {data}, "
                    f"device {info.get('device')} ({info.get('precision', 'fp32')}), run {info.get('run_dir')}"
                )
            ),
            sep="",
            highlight=False,
        )
        if info.get("precision_reason") not in (None, "asked for"):
            self.console.print(f"precision {info.get('precision')} ({info['precision_reason']})", highlight=False)
        for note in info.get("notes", []):
            self.console.print(note, highlight=False, style="dim")
        if info.get("resumed"):
            said = [c for c in info.get("changes", []) if not c.startswith("max_time ")]  # the plan says it better
            said += info.get("plan", [])
            if said:
                self.console.print(f"resuming at step {info['start_step']}; " + "; ".join(said), highlight=False)
        if self.console.is_terminal:
            self.progress = Progress(
                BarColumn(bar_width=10 if self.narrow else 16),
                TextColumn("{task.fields[status]}", markup=False),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "train", total=info.get("total_steps"), completed=info.get("start_step", 0), status=""
            )

    def _eta(self, step: int, elapsed_session: float) -> str:
        done = step - self.info.get("start_step", 0)
        if done <= 0:
            return "?"
        total = self.info.get("total_steps")
        remaining = (total - step) * elapsed_session / done if total is not None else math.inf
        max_time = self.info.get("max_time")
        if max_time:  # --max-time counts the whole session, setup included
            remaining = min(remaining, max_time * 60 - elapsed_session - self.info.get("setup_seconds", 0.0))
        return format_seconds(remaining) if math.isfinite(remaining) else "?"

    @property
    def narrow(self) -> bool:
        """Whether the bar must fit under 100 columns (an 80-column terminal): a shorter status line."""
        return self.console.width < 100

    def bar_status(self, record: dict[str, Any], eta: str) -> str:
        """The text beside the bar: steps, epoch, losses, speed, time left; short enough for the terminal."""
        total = self.info.get("total_steps")
        count = f"{record['step']:,}/{total:,}" if total else f"step {record['step']:,}"
        if not self.narrow:
            return (
                f"{count}  ep {record['epoch']:.2f}  loss {record['train_loss']:.4f}  val {self.val_text}  "
                f"{record['tokens_per_second']:,.0f} tok/s  ETA {eta}"
            )
        val = "-" if self.last_val is None else f"{self.last_val:.3f}" + (" *" if self.last_was_best else "")
        speed = record["tokens_per_second"]
        speed_text = f"{speed / 1000:.1f}k" if speed >= 10_000 else f"{speed:,.0f}"
        return (
            f"{count} ep {record['epoch']:.2f} loss {record['train_loss']:.3f} val {val} "
            f"{speed_text} tok/s ETA {eta}"
        )

    def step(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        eta = self._eta(record["step"], now - self.started)
        status = (
            f"ep {record['epoch']:.2f}  loss {record['train_loss']:.4f}  val {self.val_text}  "
            f"{record['tokens_per_second']:,.0f} tok/s  ETA {eta}"
        )
        if self.progress is not None:
            self.progress.update(self.task, completed=record["step"], status=self.bar_status(record, eta))
        elif now - self.last_plain >= self.plain_every:
            self.last_plain = now
            total = self.info.get("total_steps")  # None under --max-time alone: no step count to show
            done = f"{record['step']}/{total}" if total else str(record["step"])
            self.console.print(f"step {done}  {status}", highlight=False)

    def evaluate(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        last = record["val_loss"]
        if math.isfinite(last) and (self.best_val is None or last < self.best_val):
            self.best_val = last
        self.last_val, self.last_was_best = last, bool(record.get("best"))
        if self.progress is not None:  # the bar keeps both: the lines with each value scroll away
            best = "-" if self.best_val is None else f"{self.best_val:.4f}"
            self.val_text = f"{last:.4f} (best {best})"
        else:
            self.val_text = loss_summary(last, self.level) + (" *" if record.get("best") else "")
        if self.progress is None:
            self.console.print(f"step {record['step']}  validation {self.val_text}", highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text, style="yellow")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def summary_table(rows: list[tuple[str, str]], title: str) -> Table:
    """A two-column table of results."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def err_console() -> Console:
    """A plain console on stderr (stdout is kept for results); lines are never wrapped when it is not a terminal."""
    console = PlainConsole(stderr=True)
    console.soft_wrap = not console.is_terminal
    return console


def out_console() -> Console:
    """A plain console on stdout, for result tables (user strings in them are text, never markup)."""
    return PlainConsole()


class StopFlag:
    """First SIGINT/SIGTERM asks training to stop after the current step; a second SIGINT exits at once.

    Before the training loop first asks (`__call__`), nothing would act on the flag: reading a corpus
    from stdin or a FIFO, building a token cache, setting the model up. A signal then ends the command
    at once (KeyboardInterrupt, or `Terminated` for SIGTERM), and the clean-up of what it was doing runs.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self.polled = False  # whether the training loop has started asking
        self.bar_shown: Callable[[], bool] = lambda: False  # whether a progress bar holds the terminal's last line

    def __call__(self) -> bool:
        self.polled = True
        return self.signal is not None

    def handle(self, signum: int, frame) -> None:  # noqa: ARG002
        if not self.polled:
            from charrnn.cli.streams import interrupt
            from charrnn.core.errors import Terminated

            if signum == signal.SIGTERM:
                raise Terminated()
            interrupt(signum, frame)
        self.signal = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # os.write, not print: a handler that prints while the interrupted code prints raises "reentrant call"
        with contextlib.suppress(OSError):
            # on its own line: the live progress bar leaves the cursor at the end of its line
            start = b"\n" if self.bar_shown() else b""
            os.write(2, start + b"charrnn: stopping after this step and saving (Ctrl-C again to quit at once)\n")

    def install(self) -> dict[int, object]:
        """Install the handlers; returns the previous ones for `restore`."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, self.handle)
        signal.signal(signal.SIGTERM, self.handle)
        return previous

    @staticmethod
    def restore(previous: dict[int, object]) -> None:
        """Put back the handlers `install` replaced."""
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def training_session(quiet: bool = False) -> Iterator[tuple[StopFlag, RichReporter]]:
    """Signal handling and a progress display (none with `quiet`) for the duration of a training call."""
    stop = StopFlag()
    previous = stop.install()
    reporter = RichReporter(quiet=quiet)
    stop.bar_shown = lambda: reporter.progress is not None
    try:
        yield stop, reporter
    finally:
        reporter.close()
        stop.restore(previous)


def train_from_cli(
    data: Any,
    arguments: dict[str, Any],
    options: dict[str, Any],
    *,
    kind: str | None,
    epilogue: Any = None,
) -> None:
    """What the training commands do: print the effective config, or train with progress and a summary.

    `kind`: the kind to train (None: the kind of the run given with --resume). `epilogue(result)`, when
    given, returns (lines, figures): lines printed after the summary (unless --quiet) and figures added
    to the --json output (a lesson's learning curve and verdict).
    """
    import sys

    from charrnn import api, kinds
    from charrnn.core.errors import CharRNNError
    from charrnn.core.options import to_toml

    if arguments.get("nproc") is not None:  # `charrnn.cli.run` takes --nproc off the command lines that can use it
        raise CharRNNError(
            f"--nproc is not available for `charrnn {kinds.model_kind(kind).train_command if kind else 'train'}`; "
            "it trains in one process."
        )
    api.check_resume_or_overwrite(arguments["resume"], arguments["overwrite"])
    common = {"kind": kind, "resume": arguments["resume"], "config": arguments["config"]}
    if arguments["print_config"]:
        run_config, _ = api.effective_config(data, **common, **options)
        sys.stdout.write(to_toml(run_config))
        return
    quiet = bool(arguments.get("quiet"))
    with training_session(quiet) as (stop, reporter):
        result = api.train(
            data, out=arguments["out"], overwrite=arguments["overwrite"], reporter=reporter, should_stop=stop,
            **common, **options,
        )  # fmt: skip
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 alone reports
    spec = kinds.kind_of_run(result.run_dir)
    lines, figures = epilogue(result) if epilogue is not None else ([], {})
    report_training(
        result,
        stop,
        title=spec.summary_title,
        speed_unit=spec.speed_unit,
        resume_command=f"charrnn {spec.train_command} --resume {result.run_dir}",
        next_step=spec.next_step.format(run=result.run_dir),
        quiet=quiet,
        as_json=bool(arguments.get("as_json")),
        extra=figures,
    )
    if not quiet:
        for line in lines:
            err_console().print(line, highlight=False)


def report_training(
    result: Any,
    stop: StopFlag,
    *,
    title: str,
    speed_unit: str,
    resume_command: str,
    next_step: str,
    quiet: bool = False,
    as_json: bool = False,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print the summary table; after an interruption, the resume command and exit 130 (SIGINT) or 143.

    `extra`: more figures for the --json output.
    """
    console = err_console()
    stopped_by = result.stop_reason
    if result.skipped_steps:
        stopped_by += f", {result.skipped_steps} steps skipped"
    rows = [
        ("run directory", str(result.run_dir)),
        ("steps", f"{result.steps:,} ({result.epochs:.2f} epochs)"),
        ("best validation", loss_summary(result.best_val_loss, result.level)),
        ("last validation", loss_summary(result.last_val_loss, result.level)),
        ("gradient norm", clipped_text(result.clipped_share)),
        *time_rows(result, speed_unit),
        ("stopped by", stopped_by),
    ]
    if as_json:  # the results on stdout, for scripts
        import dataclasses
        import json

        print(
            json.dumps({**dataclasses.asdict(result), "run_dir": str(result.run_dir), **(extra or {})}, indent=1)
        )
    if not quiet:
        console.print(summary_table(rows, title=title))
    if result.stop_reason == "interrupted":
        # soft_wrap: the command stays on one line, ready to copy
        console.print(
            f"Interrupted; checkpoint saved. Resume with: {resume_command}", soft_wrap=True, highlight=False
        )
        raise typer.Exit(130 if stop.signal == signal.SIGINT else 143)
    if not quiet and next_step:
        console.print(next_step, soft_wrap=True, highlight=False)


def time_rows(result: Any, speed_unit: str) -> list[tuple[str, str]]:
    """The summary's speed and time, each saying what it measures (the session's wall clock is what --max-time
    counts and what `charrnn info` adds up as time trained)."""
    seconds, steps = result.seconds, result.train_seconds
    other = max(seconds - result.setup_seconds - steps, 0.0)
    tokens = result.tokens_per_second * steps
    rows = [("speed", f"{result.tokens_per_second:,.0f} {speed_unit} in steps")]
    if steps and seconds > steps:
        rows[0] = ("speed", rows[0][1] + f" ({tokens / seconds:,.0f} over the wall clock)")
    rows.append(("time", f"{clock(seconds)} wall clock"))
    if steps:
        rows.append(
            (
                "of which",
                f"setup {clock(result.setup_seconds)}, steps {clock(steps)}, evaluating and saving {clock(other)}",
            )
        )
    return rows


def attention_table(source_tokens: list[str], target_tokens: list[str], weights: list[list[float]]) -> Table:
    """The attention matrix as a heatmap table: one row per generated token, one column per source token."""
    table = Table(
        title="attention (% of each output token's weight on each source token)",
        title_justify="left",
        show_lines=False,
        padding=(0, 1),
    )
    table.add_column("output \\ source", style="bold", no_wrap=True)
    for token in source_tokens:
        table.add_column(repr(token)[1:-1], justify="right", no_wrap=True)
    for token, row in zip(target_tokens, weights, strict=False):
        cells = []
        for w in row:
            level = int(round(255 - 200 * w))
            colour = "white" if w >= 0.5 else "black"
            cells.append(Text(f"{round(w * 100):d}", style=f"{colour} on rgb({level},{level},255)"))
        table.add_row(repr(token)[1:-1], *cells)
    return table


def load_run(run_dir: Any, device: str, threads: int | None, kind: str) -> Any:
    """The run in RUN_DIR for a command of `kind` ("lm", "seq2seq", ...), with a note about its weights on stderr."""
    from charrnn import kinds
    from charrnn.core.runtime import set_inference_threads

    set_inference_threads(threads)
    run = kinds.load(run_dir, device, expected=kind)
    if run.note:
        err_console().print(f"note: {run.note}", style="yellow")
    return run
