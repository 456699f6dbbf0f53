"""What a run reports while it runs: the log handlers and, with stderr redirected, a progress line at
most every CSP_PROGRESS_INTERVAL seconds (default 60) instead of tqdm bars.
"""
import io
import logging
import logging.handlers
import os
import sys
import time

from tqdm import tqdm

logger = logging.getLogger(__name__)

INTERVAL_ENV = "CSP_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 60.0
LOG_FORMAT = "%(asctime)s - %(levelname)s - %(message)s"


class _ConsoleHandler(logging.Handler):
    """Log records on stderr through tqdm."""

    def emit(self, record):
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging's rule: a handler never raises
            self.handleError(record)


class _HeldLogFile(logging.handlers.MemoryHandler):
    """Log records held until `write_to(path)`, then appended to `path`; dropped if closed before."""

    def __init__(self):
        super().__init__(capacity=0, flushLevel=logging.CRITICAL + 1, flushOnClose=False)

    def shouldFlush(self, record):
        return self.target is not None

    def write_to(self, path):
        target = logging.FileHandler(path, mode="a")
        target.setFormatter(logging.Formatter(LOG_FORMAT))
        self.setTarget(target)
        self.flush()

    def close(self):
        if self.target is not None:
            self.target.close()
        super().close()


def start_logging(log_file, console, main=True):
    """Log to `log_file` (appended) and, with `console`, stderr; other ranks (`main` False) errors only.
    The file's lines are held until `keep_log`. Returns what `keep_log` and `stop_logging` take."""
    handlers = []
    if main:
        handlers = [_HeldLogFile()] + ([_ConsoleHandler()] if console else [])
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO if main else logging.ERROR)
    return handlers, level, log_file


def keep_log(started):
    """Write the held lines to the log file, and the later ones as they come."""
    handlers, _, log_file = started
    for handler in handlers:
        if isinstance(handler, _HeldLogFile):
            handler.write_to(log_file)


def stop_logging(started):
    """Close the handlers of `start_logging`; restore the root logger's level."""
    handlers, level, _ = started
    root = logging.getLogger()
    for handler in handlers:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def progress_interval():
    """CSP_PROGRESS_INTERVAL (a number >= 0) or 60; ValueError for a bad value."""
    value = os.environ.get(INTERVAL_ENV, "")
    if not value:
        return DEFAULT_INTERVAL_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"{INTERVAL_ENV}={value!r}: give the seconds between progress lines, a number >= 0 "
                         f"(unset: {DEFAULT_INTERVAL_S:g})")
    return seconds


def format_duration(seconds):
    """'40 s', '12 min', '1 h 05 min' (minutes rounded to the nearest)."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class PhaseProgress:
    """Progress of epochs `start` … `total` − 1: `update` after each batch logs a line when the
    interval has passed; `clock`: seconds."""

    def __init__(self, phase, start, total, enabled, interval=None, clock=time.monotonic):
        self.phase, self.start, self.total = phase, start, total
        self.enabled = enabled
        self.interval = progress_interval() if interval is None and enabled else (interval or 0.0)
        self.clock = clock
        self.began = self.last = clock()
        self.samples_before = 0          # samples of the epochs of this process finished before the current one
        self.epoch, self.epoch_seen = None, 0
        if enabled and total > start:
            logger.info("Progress: %s, epochs %d-%d of %d; a line every %s (stderr is not a terminal)", phase,
                        start + 1, total, total, format_duration(self.interval))

    def update(self, epoch, seen, epoch_size, batch, num_batches):
        """After a batch: `seen` of `epoch_size` samples of `epoch`, `batch` (0-based) of
        `num_batches`."""
        if epoch != self.epoch:
            if self.epoch is not None:
                self.samples_before += self.epoch_seen
            self.epoch = epoch
        self.epoch_seen = seen
        if not self.enabled:
            return
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        elapsed = max(now - self.began, 1e-9)
        done = (epoch - self.start + seen / max(epoch_size, 1)) / max(self.total - self.start, 1)
        left = elapsed * (1 - done) / done if done > 0 else float("nan")
        rate = (self.samples_before + seen) / elapsed
        logger.info("Progress: %s epoch %d/%d (batch %d/%d), %s samples/s, about %s left in this phase",
                    self.phase, epoch + 1, self.total, batch + 1, num_batches, f"{rate:,.0f}",
                    format_duration(left) if left == left else "?")


class LoggedBar(tqdm):
    """tqdm's bar on a terminal; with stderr redirected, a log line every
    CSP_PROGRESS_INTERVAL seconds at most."""

    def __init__(self, *args, **kwargs):
        self.logged = not sys.stderr.isatty() and not kwargs.get("disable")
        if self.logged:
            kwargs.update(file=io.StringIO(), mininterval=progress_interval(), miniters=1,
                          bar_format="{desc}: {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]")
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if not self.logged:
            return super().display(msg, pos)
        logger.info("Progress: %s", self.format_meter(**self.format_dict))
        return True
