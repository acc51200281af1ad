"""Single-instance lock per state dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.service import lock

REPO = Path(__file__).resolve().parent.parent

HOLD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from daemon.service import lock
    l = lock.acquire(Path(sys.argv[1]))
    print("locked", flush=True)
    time.sleep(60)
    """
)

TRY_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from daemon.service import lock
    try:
        lock.acquire(Path(sys.argv[1]))
    except lock.AlreadyRunning as e:
        print(e)
        sys.exit(3)
    print("acquired")
    """
)


def _run(script: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, str(state)],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )


def test_second_lock_in_another_process_names_the_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with lock.hold(state):
        res = _run(TRY_SCRIPT, state)
    assert res.returncode == 3, res.stderr
    assert f"pid {os.getpid()}" in res.stdout
    # Released on exit: a new process gets it now.
    res = _run(TRY_SCRIPT, state)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "acquired" in res.stdout


def test_second_lock_in_same_process_fails(tmp_path: Path) -> None:
    first = lock.acquire(tmp_path)
    try:
        with pytest.raises(lock.AlreadyRunning) as err:
            lock.acquire(tmp_path)
        assert err.value.owner is not None and err.value.owner.pid == os.getpid()
    finally:
        first.release()
    lock.acquire(tmp_path).release()


def test_lock_of_killed_process_does_not_block(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(state)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(lock.AlreadyRunning, match=f"pid {holder.pid}"):
            lock.acquire(state)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert (state / lock.LOCK_NAME).exists()  # stale file left behind...
    with lock.hold(state) as held:  # ...but it does not block
        assert lock.read_owner(held.path).pid == os.getpid()
