"""One run at a time in a --model_dir: a second run there would overwrite the first's files."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from csp.run_lock import LOCK_NAME, OWNER_NAME, RunLock

MAIN = Path(__file__).resolve().parents[1] / "main"


def test_a_second_lock_on_the_folder_names_the_folder_and_the_first_process(tmp_path):
    with RunLock(tmp_path / "m"):
        with pytest.raises(ValueError, match=rf"--model_dir {tmp_path / 'm'} is in use by another run \(process "
                                             rf"{os.getpid()} on "):
            RunLock(tmp_path / "m").acquire()
    with RunLock(tmp_path / "m"):  # released: the next run takes it
        pass


def test_a_lock_held_by_another_process_stops_this_one_and_is_freed_when_it_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(MAIN)!r})
        import as_package
        from csp.run_lock import RunLock
        lock = RunLock({str(tmp_path)!r}).acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"in use by another run \(process {holder.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire().release()  # the operating system freed the killed holder's lock


def test_the_lock_files_exist_only_while_the_lock_is_held_and_a_folder_it_made_goes_if_empty(tmp_path):
    """Finished runs left .csp-run.lock behind, and a run that stopped at start made the folder and the lock."""
    kept = tmp_path / "kept"
    kept.mkdir()
    for folder in (kept, tmp_path / "made" / "here"):
        lock = RunLock(folder).acquire()
        assert {path.name for path in folder.iterdir()} == {LOCK_NAME, OWNER_NAME}
        lock.release()
        assert not (folder / LOCK_NAME).exists() and not (folder / OWNER_NAME).exists()
    assert kept.is_dir() and not (tmp_path / "made").exists()
    with RunLock(tmp_path / "written") as lock:
        (lock.folder / "results.json").write_text("{}")
    assert [path.name for path in (tmp_path / "written").iterdir()] == ["results.json"]
    lock.release()  # a second release changes nothing
    RunLock(kept).acquire().release()
