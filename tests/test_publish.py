"""`BacktestResult.write` publishes `--out` as a whole: crash-safe, one writer at a time.

The crash test runs the real write in a child process that dies (`os._exit`) just before its
k-th filesystem step (mkdir, fsync, rename, exchange, unlink, rmdir, rmtree), for k = 1, 2, ...
until a child completes. After every kill `out` must hold the whole old or the whole new result
(every file compared with a reference copy), a failing write must leave that state, and the next
normal write must succeed and leave nothing beside `out`.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ml4t_pipeline.engine import BacktestResult, run_backtest
from ml4t_pipeline.engine.results import publish
from ml4t_pipeline.engine.results.publish import OutputError, publish_dir
from tests.engine.conftest import Order, Scripted, config, flat, panel

ROOT = Path(__file__).resolve().parents[1]
KILLED = 77
#: The child: load a pickled result, count filesystem steps, die before step `kill_at`
#: (0: never), optionally without RENAME_EXCHANGE, then write. Hand-offs between two writers:
#: wait for the file `go` before writing; before step `pause_at` touch `paused` and wait (2 s
#: at most) for the file `resume`; touch `done` after writing.
CHILD = textwrap.dedent(
    """
    import json, os, pickle, shutil, sys, time
    from pathlib import Path
    from ml4t_pipeline.engine.results import publish

    result_file, out, kill_at, log, mode, hand_offs = sys.argv[1:]
    hand = json.loads(hand_offs)
    result = pickle.loads(Path(result_file).read_bytes())
    steps = 0

    def wait_for(path, limit_s):
        deadline = time.monotonic() + limit_s
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)

    def hooked(name, real):
        def call(*args, **kwargs):
            global steps
            steps += 1
            with open(log, "a") as handle:
                handle.write(name + "\\n")
            if steps == int(kill_at):
                os._exit(77)
            if steps == hand.get("pause_at"):
                open(hand["paused"], "w").close()
                wait_for(hand["resume"], 2.0)
            return real(*args, **kwargs)
        return call

    for name in ("mkdir", "fsync", "rename", "replace", "unlink", "rmdir", "symlink"):
        setattr(os, name, hooked(name, getattr(os, name)))
    shutil.rmtree = hooked("rmtree", shutil.rmtree)
    publish._exchange = hooked(
        "exchange", (lambda a, b: False) if mode == "two_renames" else publish._exchange
    )
    if "go" in hand:
        wait_for(hand["go"], 60.0)
    result.write(out)
    if "done" in hand:
        open(hand["done"], "w").close()
    """
)


def _result(tmp_path: Path, qty: int) -> BacktestResult:
    prices = panel(A=[flat(100.0), flat(101.0), flat(103.0)], B=[flat(50.0)] * 3)
    strategy = Scripted({0: [Order(asset="A", qty=qty)], 1: [Order(asset="B", qty=qty // 2)]})
    return run_backtest(config(tmp_path), strategy=strategy, prices=prices)


Snapshot = dict[str, bytes]


def _snapshot(folder: Path) -> Snapshot:
    """Every entry of a result folder with its bytes (a sub-folder fails the comparison)."""
    return {p.name: p.read_bytes() if p.is_file() else b"<not a file>" for p in folder.iterdir()}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Snapshot]]:
    """Two different real results: their pickle (for the child) and their files as written."""
    base = tmp_path_factory.mktemp("publish-results")
    made: dict[str, tuple[Path, Snapshot]] = {}
    for name, qty in (("old", 10), ("new", 40)):
        result = _result(base, qty)
        pickled = base / f"{name}.pickle"
        pickled.write_bytes(pickle.dumps(result))
        result.write(base / name)
        made[name] = (pickled, _snapshot(base / name))
    assert made["old"][1] != made["new"][1]
    assert sorted(made["new"][1]) == sorted(
        [
            f"{t}.parquet"
            for t in ("equity", "fills", "orders", "trades", "rejections", "actions", "attribution")
        ]
        + ["state.json", "summary.json"]
    )
    return made


def _load(pickled: Path) -> BacktestResult:
    result = pickle.loads(pickled.read_bytes())
    assert isinstance(result, BacktestResult)
    return result


def _child(
    pickled: Path,
    out: Path,
    *,
    kill_at: int = 0,
    mode: str = "exchange",
    log: Path | None = None,
    **hand_offs: str | int,
) -> subprocess.Popen[str]:
    log = log or out.parent / f"steps-{out.name}-{kill_at}.log"
    argv = [CHILD, str(pickled), str(out), str(kill_at), str(log), mode, json.dumps(hand_offs)]
    return subprocess.Popen(
        [sys.executable, "-c", *argv],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _failing(path: Path) -> None:
    msg = "disk full"
    raise OSError(msg)


def _first_step(mode: str, tmp_path: Path, old_pickle: Path, new_pickle: Path) -> int:
    """1 with RENAME_EXCHANGE; without it, the swap: the steps before it are the same code."""
    if mode == "exchange":
        return 1
    out = tmp_path / "dry" / "res"
    _load(old_pickle).write(out)
    log = tmp_path / "dry.log"
    dry = _child(new_pickle, out, mode=mode, log=log)
    _, err = dry.communicate(timeout=120)
    assert dry.returncode == 0, err
    return log.read_text().split().index("exchange") + 1


@pytest.mark.parametrize("mode", ["exchange", "two_renames"])
def test_a_kill_at_any_step_leaves_one_whole_result(
    tmp_path: Path, results: dict[str, tuple[Path, Snapshot]], mode: str
) -> None:
    (old_pickle, old), (new_pickle, new) = results["old"], results["new"]
    for kill_at in range(_first_step(mode, tmp_path, old_pickle, new_pickle), 200):
        work = tmp_path / f"k{kill_at}"
        work.mkdir()
        out = work / "res"
        _load(old_pickle).write(out)
        done = _child(new_pickle, out, kill_at=kill_at, mode=mode)
        _, err = done.communicate(timeout=120)
        log = work / f"steps-res-{kill_at}.log"
        steps = log.read_text().split()
        log.unlink()
        if done.returncode == 0:
            assert _snapshot(out) == new
            assert sorted(p.name for p in work.iterdir()) == ["res"]
            break
        assert done.returncode == KILLED, err
        swapped = "exchange" in steps[:-1] if mode == "exchange" else steps[:-1].count("rename")
        if mode == "two_renames" and swapped == 1:
            # killed between the two renames: `res` is missing, the old set is put aside whole
            assert not out.exists()
            (aside,) = [p for p in work.iterdir() if p.name.startswith(".res.old-")]
            assert _snapshot(aside) == old
        else:
            assert _snapshot(out) == (new if swapped else old), (kill_at, steps)
        # a failing write puts an old set back, then leaves whatever `res` held
        expected = _snapshot(out) if out.exists() else old
        with pytest.raises(OSError, match="disk full"):
            publish_dir(out, dict.fromkeys(new, _failing))
        assert _snapshot(out) == expected
        assert sorted(p.name for p in work.iterdir()) == ["res"]
        # the next write succeeds and leaves no debris
        _load(new_pickle).write(out)
        assert _snapshot(out) == new
        assert sorted(p.name for p in work.iterdir()) == ["res"]
    else:
        pytest.fail("the write never completed")
    # with RENAME_EXCHANGE: every file's fsync, the swap and the removal of the old set were hit
    assert kill_at > (20 if mode == "exchange" else 12)


def test_concurrent_writers_leave_one_whole_result(
    tmp_path: Path, results: dict[str, tuple[Path, Snapshot]]
) -> None:
    """The first writer pauses before its 4th step (inside the write) until the second writer
    has finished (or 2 s passed): a writer that renamed file by file would end with a mix."""
    work = tmp_path / "work"
    work.mkdir()
    out = work / "res"
    first = _child(
        results["old"][0],
        out,
        log=tmp_path / "first.log",
        pause_at=4,
        paused=str(tmp_path / "paused"),
        resume=str(tmp_path / "done"),
    )
    second = _child(
        results["new"][0],
        out,
        log=tmp_path / "second.log",
        go=str(tmp_path / "paused"),
        done=str(tmp_path / "done"),
    )
    for writer in (first, second):
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    assert _snapshot(out) in (results["old"][1], results["new"][1])
    assert sorted(p.name for p in work.iterdir()) == ["res"]


def test_a_writer_gives_up_when_another_holds_the_lock(
    tmp_path: Path, results: dict[str, tuple[Path, Snapshot]]
) -> None:
    out = tmp_path / "res"
    _load(results["old"][0]).write(out)
    with (
        publish._locked(out, 0.0),
        pytest.raises(OutputError, match=r"another run is writing it \(it holds .*\.res\.lock\)"),
    ):
        _load(results["new"][0]).write(out, lock_timeout_s=0.0)
    assert _snapshot(out) == results["old"][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o007, 0o660, 0o770)]
)
def test_files_and_folders_honour_the_umask(
    tmp_path: Path,
    results: dict[str, tuple[Path, Snapshot]],
    umask: int,
    file_mode: int,
    dir_mode: int,
) -> None:
    previous = os.umask(umask)
    try:
        _load(results["new"][0]).write(tmp_path / "a" / "res")
    finally:
        os.umask(previous)
    out = tmp_path / "a" / "res"
    assert stat.S_IMODE(out.stat().st_mode) == dir_mode
    assert stat.S_IMODE(out.parent.stat().st_mode) == dir_mode
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == dict.fromkeys(
        results["new"][1], file_mode
    )


@pytest.mark.parametrize("foreign", ["notes.txt", "prices.parquet", ".hidden", "sub/"])
def test_a_folder_with_foreign_content_is_refused_and_untouched(
    tmp_path: Path, results: dict[str, tuple[Path, Snapshot]], foreign: str
) -> None:
    out = tmp_path / "res"
    _load(results["old"][0]).write(out)
    if foreign.endswith("/"):
        (out / foreign).mkdir()
    else:
        (out / foreign).write_text("the user's")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputError, match=r"--out .*res is a non-empty directory that is not"):
        _load(results["new"][0]).write(out)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (out / "summary.json").read_bytes() == results["old"][1]["summary.json"]


def test_a_file_at_out_is_refused(
    tmp_path: Path, results: dict[str, tuple[Path, Snapshot]]
) -> None:
    (tmp_path / "res").write_text("the user's")
    with pytest.raises(OutputError, match="exists and is not a directory"):
        _load(results["new"][0]).write(tmp_path / "res")
    assert (tmp_path / "res").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_an_empty_folder_and_the_old_writers_debris_are_replaced(
    tmp_path: Path, results: dict[str, tuple[Path, Snapshot]]
) -> None:
    new_pickle, new = results["new"]
    (tmp_path / "empty").mkdir()
    _load(new_pickle).write(tmp_path / "empty")
    assert _snapshot(tmp_path / "empty") == new
    # the earlier writer renamed file by file from `.tmp-*` folders inside `out`, left on a crash
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for name, data in results["old"][1].items():
        (legacy / name).write_bytes(data)
    (legacy / ".tmp-k2j4").mkdir()
    (legacy / ".tmp-k2j4" / "trades.parquet").write_bytes(new["trades.parquet"])
    _load(new_pickle).write(legacy)
    assert _snapshot(legacy) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "legacy"]


def test_foreign_folders_named_like_debris_are_left_alone(
    tmp_path: Path, results: dict[str, tuple[Path, Snapshot]]
) -> None:
    lookalike = tmp_path / ".res.pub-0123456789abcdef"
    lookalike.mkdir()
    (lookalike / "notes.txt").write_text("the user's")
    _load(results["new"][0]).write(tmp_path / "res")
    assert (lookalike / "notes.txt").read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".res.pub-0123456789abcdef", "res"]
