"""One writer per run directory: the OS lock held while training, and `--overwrite` as a transaction.

The lock
  `hold(run_dir)` takes an exclusive `flock` on run_dir/.charrnn.lock (created if needed) for the
  whole of a training call: train, --resume and --overwrite. A second writer is refused at once with
  one line naming the process that holds it. The OS drops the lock when its process dies, so a
  killed run never blocks the next one. Readers (sample, score, translate, info) take no lock.

The --overwrite transaction
  The new run's first files are written into a fresh staging directory beside the target
  (".NAME.charrnn-new-XXXX", locked by this process too). Only when they are all written is the
  old run renamed aside (".NAME.charrnn-old-XXXX"), the staging directory renamed into its place
  and the old run deleted. Any failure before the renames leaves the old run as it was. A kill
  between the two renames (microseconds) leaves the old run whole in the ".charrnn-old" folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from charrnn.core import rundir, safeio
from charrnn.core.errors import CharRNNError
from charrnn.core.rundir import LOCK_FILE

try:  # POSIX
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_lock(directory: Path) -> int:
    """Open (creating) the lock file of `directory` without following a symlink."""
    path = directory / LOCK_FILE
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644)
    except OSError as exc:
        raise CharRNNError(
            f"Cannot open the lock file {path} ({exc.strerror}); check that the run directory is writable "
            "and that the lock file is a plain file."
        ) from None


def _holder(fd: int) -> str:
    """Who holds the lock, as written into the lock file by the holder ("process PID since TIME")."""
    for _attempt in range(20):  # the holder writes it just after taking the lock
        try:
            text = os.pread(fd, 200, 0).decode("utf-8", errors="replace").split()
        except OSError:
            text = []
        if len(text) >= 2 and text[0].isdigit():
            return f"process {text[0]} since {' '.join(text[1:])}"
        time.sleep(0.01)
    return "another process"


class Lease:
    """The lock on one directory, held by this process until `release`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for _attempt in range(3):
            fd = _open_lock(directory)
            if not _try_lock(fd):
                holder = _holder(fd)
                os.close(fd)
                raise CharRNNError(
                    f"run {directory} is being trained by {holder}; wait for it or use another --out."
                )
            # The lock file may have been swapped out by an --overwrite between open and lock: retry.
            try:
                same = os.stat(directory / LOCK_FILE, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if same:
                self.fd = fd
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()} {stamp}\n".encode(), 0)
                return
            os.close(fd)
        raise CharRNNError(
            f"run {directory} is being replaced by another process; wait for it or use another --out."
        )

    def release(self) -> None:
        """Let go of the lock (the lock file stays: deleting it would race with the next writer)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


class RunWriter:
    """This process's right to write one run directory; see `hold`."""

    def __init__(self, run_dir: Path, lease: Lease) -> None:
        self.run_dir = run_dir
        self.lease = lease

    @contextlib.contextmanager
    def new_run(self, replacing: bool) -> Iterator[Path]:
        """The directory to write a new run's first files into; on success they become `run_dir`.

        Without `replacing` (the directory holds no run) that is `run_dir` itself. With it, a fresh
        staging directory beside it, swapped in only when the block finishes without an error.
        """
        if not replacing:
            yield self.run_dir
            return
        target = Path(os.path.realpath(self.run_dir))
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.charrnn-new-", dir=target.parent))
        except OSError as exc:
            raise CharRNNError(
                f"Cannot create a staging directory beside {self.run_dir} ({exc.strerror}); "
                "--overwrite needs to write the new run next to the old one. The old run is untouched."
            ) from None
        staging_lease: Lease | None = None
        try:
            staging_lease = Lease(staging)
            yield staging
            safeio.fsync_directory(staging)
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.charrnn-old-", dir=target.parent))
            try:
                os.rename(target, aside / "run")
                try:
                    os.rename(staging, target)
                except BaseException:
                    os.rename(aside / "run", target)  # put the old run back
                    raise
            except BaseException:
                with contextlib.suppress(OSError):
                    os.rmdir(aside)  # empty again when the old run is back in place; kept otherwise
                raise
            safeio.fsync_directory(target.parent)
        except BaseException as exc:
            if staging_lease is not None:
                staging_lease.release()
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):
                raise CharRNNError(
                    f"Cannot replace the run in {self.run_dir} ({exc.strerror}); the old run is untouched."
                ) from None
            raise
        self.lease.release()  # the old run's lock; we now hold the new run's
        self.lease = staging_lease
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def hold(run_dir: str | Path, create: bool) -> Iterator[RunWriter]:
    """Hold the one-writer lock on `run_dir` for the block (creating the directory when `create`).

    A directory this call created is removed again if the block fails while it still holds nothing
    but the lock file, so a run that could not start leaves no --out behind.
    """
    run_dir = Path(run_dir)
    if not create:
        rundir.run_kind(run_dir)  # one-line errors for a missing folder, a file, a folder that is no run
    elif run_dir.exists() and not run_dir.is_dir():
        raise CharRNNError(f"--out {run_dir} is a file; choose a directory.")
    elif (
        run_dir.is_dir()
        and any(p.name != LOCK_FILE for p in run_dir.iterdir())
        and not rundir.is_run_config(run_dir / rundir.CONFIG_FILE)  # never put a lock file in a user's folder
    ):
        if (run_dir / LOCK_FILE).is_file():  # a writer that has not written config.json yet: name it
            Lease(run_dir).release()
        raise CharRNNError(f"--out {run_dir} exists and is not a charrnn run directory; choose another --out.")
    created = False
    if create and not run_dir.exists():
        try:
            run_dir.mkdir(parents=True)
            created = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise CharRNNError(f"Cannot create --out {run_dir}: {exc.strerror}.") from None
    writer = RunWriter(run_dir, Lease(run_dir))
    if not create:  # --resume writes into the run: no file of it may be a link or a FIFO
        try:
            for name in (*rundir.RUN_FILES, *rundir.RUN_FOLDERS):
                safeio.check_plain(run_dir / name)
        except BaseException:
            writer.lease.release()
            raise
    try:
        yield writer
    except BaseException:
        if created and [p.name for p in run_dir.iterdir()] == [LOCK_FILE]:
            with contextlib.suppress(OSError):
                (run_dir / LOCK_FILE).unlink()
                run_dir.rmdir()
        raise
    finally:
        writer.lease.release()
