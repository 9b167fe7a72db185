"""Local mode's progress display: a live bar on a terminal (rich), plain lines anywhere else.

On a terminal, messages (events, the summary) are printed above the bar, which stays on the last line; the
bar is redrawn by the driver's passes (at most ten times a second), not by a thread of rich's. When the
output is a file or a pipe (CI logs, ``| tee``), a plain progress line is written at most every
``PLAIN_SECONDS`` and whenever the count of finished shards changes by a tenth, so logs stay short.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

REDRAW_SECONDS = 0.1
PLAIN_SECONDS = 5.0


@dataclass(frozen=True)
class Figures:
    done: int  # shards finished (committed or failed for good)
    total: int
    records_per_second: float
    eta_seconds: float | None  # None before the first shard finishes
    workers: int  # running now
    wanted: int  # spec.workers
    restarts: int

    def text(self) -> str:
        return (
            f"{self.done}/{self.total} shards  {self.records_per_second:,.0f} rec/s  ETA {self.eta()}  "
            f"workers {self.workers}/{self.wanted}  restarts {self.restarts}"
        )

    def eta(self) -> str:
        return "--:--" if self.eta_seconds is None else clock(self.eta_seconds)


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class ProgressDisplay:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.console = Console(file=out, force_terminal=self.live, highlight=False, soft_wrap=True)
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.drawn = 0.0
        self.last: Figures | None = None
        self.printed: Figures | None = None  # the last plain line
        self.plain_at = 0.0  # when it was written

    def update(self, figures: Figures) -> None:
        now = time.monotonic()
        final = figures.done == figures.total
        if figures == self.last or (now - self.drawn < REDRAW_SECONDS and not final):
            return
        self.drawn, self.last = now, figures
        if self.live:
            self._draw(figures)
        elif self._worth_a_line(figures, now):
            self.printed = figures
            self.out.write(f"progress: {figures.text()}\n")
            self.out.flush()

    def _worth_a_line(self, figures: Figures, now: float) -> bool:
        if self.printed is None:
            if not self.plain_at:
                self.plain_at = now
            # The first line once a shard is done, or after PLAIN_SECONDS however long the first shard is.
            return figures.done > 0 or now - self.plain_at >= PLAIN_SECONDS
        step = max(1, figures.total // 10)
        if figures.done // step != self.printed.done // step or now - self.plain_at >= PLAIN_SECONDS:
            self.plain_at = now
            return figures.done != self.printed.done or figures.restarts != self.printed.restarts
        return False

    def _draw(self, figures: Figures) -> None:
        if self.progress is None:
            self.progress = Progress(
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TextColumn("shards  {task.fields[rate]:,.0f} rec/s  ETA {task.fields[eta]}"),
                TextColumn("workers {task.fields[workers]}  restarts {task.fields[restarts]}"),
                console=self.console,
                auto_refresh=False,  # the driver's passes redraw it; no thread of ours
                redirect_stdout=False,  # a program calling run_local keeps its own stdout and stderr
                redirect_stderr=False,
                transient=True,  # the summary replaces it
            )
            self.progress.start()
            self.task = self.progress.add_task(
                "shards", total=figures.total, rate=0.0, eta="--:--", workers="", restarts=0
            )
        assert self.task is not None
        self.progress.update(
            self.task,
            completed=figures.done,
            total=figures.total,
            rate=figures.records_per_second,
            eta=figures.eta(),
            workers=f"{figures.workers}/{figures.wanted}",
            restarts=figures.restarts,
        )
        self.progress.refresh()

    def line(self, text: str) -> None:
        """A message above the bar (or a plain line)."""
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
            self.progress.refresh()
        else:
            self.out.write(text + "\n")
            self.out.flush()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
