"""Ctrl+C or SIGTERM during a search: Tune stops after its current step and saves its state; the search is left
resumable.

Tune's own SIGINT handling stops gracefully but then logs `Tuner.restore(path=..., trainable=...)`, an API the
user never called, and returns normally, so the caller cannot tell an interrupted search from a finished one
(it went on to register and mark the search run FINISHED). Here our handler owns SIGINT: it records the
interruption and forwards it as SIGUSR1, which Tune always treats as its stop signal; `fit()` then returns and
`interrupted` is True. A second Ctrl+C raises KeyboardInterrupt at once, as with Tune's own handler. SIGTERM (what
`ray job stop`, Kubernetes and systemd send; it used to kill the driver by SIGABRT with Ray's C++ stack dump) takes
the same path, and the CLI exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
import threading


class Interrupted(Exception):
    """A search (or suite) was interrupted and saved; `--resume resume_id` finishes it."""

    def __init__(self, resume_id: str, signum: int = signal.SIGINT) -> None:
        super().__init__(f"{resume_id} interrupted; its state is saved")
        self.resume_id = resume_id
        self.signum = int(signum)
        """The signal that stopped it: the process exits 128 + signum, as a shell reports a signalled command."""


class _DropRestoreHint(logging.Filter):
    """Drops Tune's 'Resume experiment with: Tuner.restore(...)' warning: the CLI prints its own command."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


class Interruptible:
    """Context manager around `Tuner.fit()`: `interrupted` says whether Ctrl+C (SIGINT) or SIGTERM stopped it,
    `signum` which."""

    def __init__(self) -> None:
        self.interrupted = False
        self.signum = signal.SIGINT
        self._active = threading.current_thread() is threading.main_thread()  # signals only on the main thread
        self._filter = _DropRestoreHint()

    def _on_sigint(self, signum, frame) -> None:
        # Tune's SIGUSR1 handler puts back the SIGINT handler it found (this one): the second Ctrl+C lands here too
        if self.interrupted or signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, self._usr1):
            self.interrupted = True  # again, or before Tune's loop installed its stop handler: abort now
            raise KeyboardInterrupt
        self.interrupted, self.signum = True, signum
        what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        print(f"[promptfarm] {what}: stopping after the current step and saving the search (Ctrl+C again to "
              "abort now)", flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)

    def __enter__(self) -> Interruptible:
        if self._active:
            self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Tune leaves SIGINT to us, keeps SIGUSR1
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
            self._old_term = signal.signal(signal.SIGTERM, self._on_sigint)
            self._usr1 = signal.getsignal(signal.SIGUSR1)
            logging.getLogger("ray.tune.tune").addFilter(self._filter)
        return self

    def __exit__(self, *exc) -> None:
        if not self._active:
            return
        signal.signal(signal.SIGINT, self._old)
        signal.signal(signal.SIGTERM, self._old_term)
        signal.signal(signal.SIGUSR1, self._usr1)  # Tune leaves its handler installed after fit()
        logging.getLogger("ray.tune.tune").removeFilter(self._filter)
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env
