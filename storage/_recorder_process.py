"""Recorders and their process: the live ones, a forked child, SIGTERM and SIGINT.

:data:`live` holds every recorder not closed yet (weakly). A child made by
``os.fork`` restarts each of them clean (its own pid and thread, no
inherited events). A recorder made with ``flush_on_signal`` puts
:func:`_flush_then_hand_over` in front of SIGTERM's and SIGINT's handlers:
it flushes, then does what was there before (for SIGTERM's default: the
process still ends, killed by that very signal).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._recorder import Recorder

log = logging.getLogger("seawall.storage")

live: weakref.WeakSet[Recorder] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for recorder in list(live):
        if not recorder.closed:
            recorder._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_signal_lock = threading.Lock()
_previous: dict[int, Any] = {}  # the handler each signal had before ours


def _flush_then_hand_over(signum: int, frame: Any) -> None:
    """The signal handler: flush every recorder that asked for it, then do what was there before."""
    for recorder in list(live):
        if recorder.flush_on_signal and not recorder.closed:
            try:
                recorder._flush_within(recorder.close_timeout)
            except Exception:  # a handler must reach the hand-over whatever happens
                log.exception("seawall.storage: flushing metrics on signal %d failed", signum)
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # the default action (for SIGTERM: the process ends, killed by this very signal),
        # as if this handler had never been installed
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    # SIG_IGN: ignored, as before


def install_signal_flush() -> bool:
    """Put the flushing handler in front of SIGTERM's and SIGINT's; only from the main thread.

    A signal that is ignored, or whose handler was not installed from Python,
    is left alone. Returns False when nothing could be installed.
    """
    if threading.current_thread() is not threading.main_thread():
        log.warning("seawall.storage: persist_metrics(flush_on_signal=True) was called off "
                    "the main thread, where signal handlers cannot be installed; metrics are "
                    "flushed at exit, not on SIGTERM")
        return False
    installed = False
    with _signal_lock:
        for signum in _SIGNALS:
            current = signal.getsignal(signum)
            if current is _flush_then_hand_over:
                installed = True
                continue
            if current is None or current == signal.SIG_IGN:
                continue
            try:
                signal.signal(signum, _flush_then_hand_over)
            except ValueError:  # not the main interpreter
                return installed
            _previous[signum] = current
            installed = True
    return installed


def restore_signal_handlers() -> None:
    """Give the signals back their earlier handlers once no recorder wants the flush."""
    if threading.current_thread() is not threading.main_thread():
        return  # the handler stays; with no recorder left it only hands over
    if any(r.flush_on_signal and not r.closed for r in list(live)):
        return
    with _signal_lock:
        for signum in _SIGNALS:
            if signum in _previous and signal.getsignal(signum) is _flush_then_hand_over:
                signal.signal(signum, _previous.pop(signum))
