"""``dtq worker --record process``: the recorder and the notifier in one child process.

Run as threads, the recorder took about half of the worker's GIL time and capped how
fast the handlers could drain. The child is ``dtq record`` of the same interpreter and
environment; this module holds both sides of that arrangement:

- :class:`RecorderChild` (worker side) starts it, restarts it if it dies while the worker
  runs, and stops it (SIGTERM, then SIGKILL after a bound) when the worker exits.
  Nothing is lost while no child runs: the recorder acknowledges (and deletes) a stream
  entry only after its batch is committed (``chalicelib.service.recorder``), so entries written
  meanwhile, or read by a child killed mid-batch, wait in the Redis streams for the next
  recorder.
- :func:`exit_with_parent` (child side) ends the child when the worker dies without
  stopping it (SIGKILL, or the second signal's ``os._exit``).

The worker claims first and starts its child right after its first claim
(:meth:`RecorderChild.launch`), without waiting for it: until 2026-12-06 it waited for
the child to be ready, and the child's start-up (its imports: ≈ 0.2 s of CPU) made a new
worker ≈ 0.3 s slower to start the tasks waiting for it (bench/HISTORY.md). Nothing is
lost meanwhile: the transitions of the first tasks wait in the streams for the child.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time

log = logging.getLogger("dtq.worker")

#: How long a stopped child may take to finish its batch before it is killed.
STOP_TIMEOUT_S = 10.0
#: How often the supervisor looks at its child (also the delay before it notices a crash).
POLL_S = 0.1
#: Restart delays after a crash: doubling from the first to the last; a child that ran
#: longer than STABLE_S starts the sequence over.
BACKOFF_S = (0.5, 30.0)
STABLE_S = 60.0
#: How often the child checks that its parent is still the worker (where PDEATHSIG is not
#: available).
PARENT_POLL_S = 1.0
#: How long :meth:`RecorderChild.start` and the supervisor wait for a child to be ready.
READY_TIMEOUT_S = 10.0

#: ``python -m`` this for the ``dtq`` command: workers.cli, under whatever name this
#: package has (a wheel's is dtq._impl.workers: setup.py).
CLI_MODULE = __name__.removesuffix("recorder_child") + "cli"

_PR_SET_PDEATHSIG = 1


class RecorderChild:
    """Keeps one ``dtq record`` child running for as long as the worker runs.

    One thread starts, watches and stops the child: Linux sends PDEATHSIG when the
    *thread* that forked the child ends, so that thread must outlive the child."""

    def __init__(self, consumer: str) -> None:
        # A fixed consumer name across restarts: a new child first re-reads the entries
        # its killed predecessor had read but not acknowledged, instead of waiting for
        # another recorder to claim them as abandoned (CLAIM_IDLE_MS).
        self.argv = [
            sys.executable,
            "-m",
            CLI_MODULE,
            "record",
            "--parent-pid",
            str(os.getpid()),
            "--consumer",
            consumer,
        ]
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._supervise, name="dtq-recorder-child", daemon=True
        )

    def launch(self) -> None:
        """Start the child and return at once (the worker: right after its first claim)."""
        self._thread.start()

    def start(self) -> None:
        """Start the child; return once it is ready to record, has died, or
        ``READY_TIMEOUT_S`` passed (never waits on it for good)."""
        self.launch()
        self._ready.wait(READY_TIMEOUT_S)

    def close(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # launched
            self._thread.join(STOP_TIMEOUT_S + 5.0)

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        ready_r, ready_w = os.pipe()
        try:
            # Its own session: a Ctrl-C on the terminal reaches the worker alone, and the
            # child keeps recording through the worker's grace period until stopped.
            proc = subprocess.Popen(
                [*self.argv, "--ready-fd", str(ready_w)],
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=(ready_w,),
            )
        except OSError as exc:
            log.warning("recorder process could not be started: %s", exc)
            os.close(ready_r)
            return None
        finally:
            os.close(ready_w)
        log.info("recorder process %d started", proc.pid)
        try:
            # A byte once it is ready; end of file if it died first.
            if select.select([ready_r], [], [], READY_TIMEOUT_S)[0]:
                os.read(ready_r, 1)
        finally:
            os.close(ready_r)
        return proc

    def _supervise(self) -> None:
        delay = BACKOFF_S[0]
        proc = None
        while not self._stop.is_set():
            started = time.monotonic()
            proc = self._spawn()  # returns once the child is ready, dead or late
            self._ready.set()
            while proc is not None and proc.poll() is None and not self._stop.wait(POLL_S):
                pass
            if self._stop.is_set():
                break
            if time.monotonic() - started > STABLE_S:
                delay = BACKOFF_S[0]
            if proc is not None:
                from workers.children import describe_exit

                log.warning(
                    "recorder process %d exited unexpectedly (%s); restarting it in %.1f s",
                    proc.pid,
                    describe_exit(proc.returncode),
                    delay,
                )
            proc = None
            self._stop.wait(delay)
            delay = min(delay * 2, BACKOFF_S[1])
        if proc is not None:
            self._terminate(proc)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        # Imported when needed: workers.children is dtq dev's, and a worker starts faster
        # without it.
        from workers.children import describe_exit

        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it finishes its batch, then exits 0
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning(
                    "recorder process %d did not stop within %.0f s: killing it",
                    proc.pid,
                    STOP_TIMEOUT_S,
                )
                proc.kill()
                proc.wait()
        log.info("recorder process %d stopped (%s)", proc.pid, describe_exit(proc.returncode))


def exit_with_parent(parent_pid: int, stop: threading.Event) -> None:
    """Set ``stop`` (a graceful exit: the batch in hand is finished) once ``parent_pid``
    is no longer this process's parent. Call it first thing in the child."""
    if sys.platform.startswith("linux"):
        import ctypes  # here, not at the top: the worker imports this module too

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            # The kernel sends SIGTERM the moment the parent dies, however it dies.
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError) as exc:
            log.warning("PR_SET_PDEATHSIG unavailable (%s): polling the parent", exc)

    def parent_gone() -> bool:
        # An orphan is adopted by init or a subreaper, so the parent pid changes.
        if os.getppid() == parent_pid:
            return False
        log.warning("the worker (pid %d) is gone: stopping", parent_pid)
        stop.set()
        return True

    # Checked once at once: the parent may have died before the prctl above took effect.
    if parent_gone():
        return

    def watch() -> None:
        while not stop.wait(PARENT_POLL_S) and not parent_gone():
            pass

    threading.Thread(target=watch, name="dtq-parent-watch", daemon=True).start()
