"""SimOptimizer on a study shared by several sessions (processes or objects), and killed at
random points: issue 18, items 4 and 10 and the kill-and-resume evidence.

Real SQLite files in tmp_path; the processes are forked by one helper process (started once,
so that simgap and optuna are imported once), which the test drives through its stdin.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import simgap

pytest.importorskip("optuna")

SPACE = {"shift": (-2.0, 2.0), "kind": ["a", "b"]}


def _real():
    return np.random.default_rng(0).normal(0.7, 1.0, size=(60, 2))


def _render(c):
    return np.random.default_rng(int(abs(c["shift"]) * 1e6)).normal(c["shift"], 1.0, size=(40, 2))


def _key(c):
    return json.dumps(c, sort_keys=True)


# The helper: reads "<db> <log> <workers> <rounds> <batch> <strategy> <extra>" lines; for each,
# forks <workers> children that each open the study (SPACE and <extra> more parameters p0, p1,
# ...) and run <rounds> rounds of ask / tell (logging each ask
# begun, every configuration handed out and every tell that returned), prints the children's pids, waits
# for them and prints their exit statuses.  It computes nothing itself before forking.
_HELPER = textwrap.dedent('''
    import json, os, sys, traceback
    import numpy as np
    import simgap

    SPACE = {"shift": (-2.0, 2.0), "kind": ["a", "b"]}
    real = np.random.default_rng(0).normal(0.7, 1.0, size=(60, 2))

    def render(c):
        return np.random.default_rng(int(abs(c["shift"]) * 1e6)).normal(c["shift"], 1.0, size=(40, 2))

    def work(db, log, rounds, batch, strategy, extra):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        space = {**SPACE, **{f"p{i}": (0.0, 1.0) for i in range(extra)}}
        opt = simgap.SimOptimizer(space, real, storage=db, batch_size=batch, seed=0, strategy=strategy)
        for _ in range(rounds):
            os.write(fd, (json.dumps({"pid": os.getpid(), "asking": True}) + "\\n").encode())
            configs = opt.ask()
            os.write(fd, (json.dumps({"pid": os.getpid(), "asked": configs}) + "\\n").encode())
            opt.tell(configs, [render(c) for c in configs])
            os.write(fd, (json.dumps({"pid": os.getpid(), "told": configs}) + "\\n").encode())
        opt.close()

    print("ready", flush=True)
    for line in sys.stdin:
        db, log, workers, rounds, batch, strategy, extra = line.split()
        pids = []
        for _ in range(int(workers)):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    work(db, log, int(rounds), int(batch), strategy, int(extra))
                except BaseException:
                    traceback.print_exc()
                    code = 1
                sys.stderr.flush()
                os._exit(code)
            pids.append(pid)
        print(" ".join(map(str, pids)), flush=True)
        print(json.dumps([os.waitpid(p, 0)[1] for p in pids]), flush=True)
''')


@pytest.fixture
def helper(tmp_path):
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    script = tmp_path / "helper.py"
    script.write_text(_HELPER)
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, bufsize=1)
    assert proc.stdout.readline().strip() == "ready"

    def run(db, log, workers, rounds, batch, strategy="tpe", extra=0, kill=None):
        """kill=(n, delay): SIGKILL the children ``delay`` s after the log has ``n`` more lines
        (event-driven, so that the kills fall into ask / tell rounds however loaded the machine)."""
        lines = _lines(log)
        proc.stdin.write(f"{db} {log} {workers} {rounds} {batch} {strategy} {extra}\n")
        proc.stdin.flush()
        pids = [int(p) for p in proc.stdout.readline().split()]
        if kill is not None:
            deadline = time.monotonic() + 60
            while _lines(log) < lines + kill[0] and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(kill[1])
            for pid in pids:
                os.kill(pid, signal.SIGKILL)  # (the helper reaps them: never a stale pid)
        return json.loads(proc.stdout.readline())

    try:
        yield run
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()


def _lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _log(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _trials(db):
    import optuna

    return optuna.load_study(study_name="simgap", storage=f"sqlite:///{db}").get_trials(deepcopy=False)


def test_two_processes_share_one_sqlite_study(tmp_path, helper):
    """Item 10: two processes asking and telling on one SQLite study.  One died with optuna's
    UpdateFinishedTrialError: both drew the same seed (a count of the trials taken before
    either created its own), so they asked the same configurations, and each told the
    other's trial.  Now every process gets its own trials and every tell lands."""
    db, log = tmp_path / "c.db", tmp_path / "c.log"
    simgap.SimOptimizer(SPACE, _real(), storage=db, seed=0).close()
    for _ in range(2):  # two runs of two workers: the second resumes the study of the first
        assert helper(db, log, workers=2, rounds=3, batch=2) == [0, 0]
    events = _log(log)
    told = [_key(c) for e in events for c in e.get("told", [])]
    assert len(told) == 2 * 2 * 3 * 2 == len(set(told))  # distinct configurations, every tell returned
    trials = _trials(db)
    assert len(trials) == 24 and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(_key(t.params) for t in trials) == sorted(told)
    assert len({e["pid"] for e in events}) == 4
    with simgap.SimOptimizer(SPACE, _real(), storage=db, seed=0) as opt:
        assert opt.n_evaluated == 24 and opt.pending == []
        assert sorted(opt.history["order"]) == list(range(24))  # the tell counter: no lost update
        assert sorted(opt.history["round"]) == sorted(list(range(12)) * 2)  # nor the round counter


def test_a_second_session_leaves_the_first_ones_configurations_alone(tmp_path):
    """Item 10, in one process (deterministic): a session opened while another one has
    configurations pending handed them out again and told them; the first one's tells were
    then recorded twice.  Now each session hands out and tells only its own, and takes
    over the configurations of a session once it has ended."""
    real = _real()
    db = tmp_path / "s.db"
    a = simgap.SimOptimizer(SPACE, real, storage=db, batch_size=2, seed=0)
    ca = a.ask()
    b = simgap.SimOptimizer(SPACE, real, storage=db, batch_size=2, seed=0)
    cb = b.ask()
    assert not {_key(c) for c in ca} & {_key(c) for c in cb}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "already told"
        b.tell(cb, [_render(c) for c in cb])
        a.tell(ca, [_render(c) for c in ca])
    assert b.n_evaluated == 4 and len(b.history) == 4
    assert sorted(b.history["order"]) == [0, 1, 2, 3]
    a2 = simgap.SimOptimizer(SPACE, real, storage=db, batch_size=2, seed=0)
    ca2 = a2.ask()
    assert [_key(c) for c in b.ask(1)] not in ([_key(c)] for c in ca2)  # a2 is alive
    a2.close()  # ... and now it has ended: b takes its pending configurations first
    got = b.ask(3)
    assert got[:2] == ca2 and _key(got[2]) not in {_key(c) for c in ca2}
    b.close()
    a.close()
    assert not [f for f in os.listdir(tmp_path / "s.db.simgap") if f.startswith("session-")]


def test_sessions_on_a_shared_storage_object_in_one_process():
    """Without a lock folder (a storage object, a server database) the sessions open in this
    process are known to be alive too."""
    import optuna

    storage = optuna.storages.InMemoryStorage()
    real = _real()
    a = simgap.SimOptimizer(SPACE, real, storage=storage, batch_size=2, seed=0)
    ca = a.ask()
    b = simgap.SimOptimizer(SPACE, real, storage=storage, batch_size=2, seed=0)
    assert not {_key(c) for c in b.ask()} & {_key(c) for c in ca}
    a.close()
    assert b.ask(2) == ca  # a ended: its configurations are pending for b


@pytest.mark.slow  # about 10 s (ten processes started, killed and resumed; SQLite commits)
def test_kill_and_resume_at_random_points(tmp_path, helper):
    """Evidence (issue 18): a process running ask / tell rounds is SIGKILLed at a random
    point, 10 times; after each kill the study is resumed, by this test or by the next
    process.  No resume hands out an empty configuration or one already told, a
    configuration is handed out again only when the process it was handed to died before
    telling it, and every tell that returned is in the study, once."""
    rng = random.Random(18)
    db, log = tmp_path / "k.db", tmp_path / "k.log"
    real = _real()
    space = {**SPACE, **{f"p{i}": (0.0, 1.0) for i in range(4)}}
    simgap.SimOptimizer(space, real, storage=db, seed=0).close()
    handed: list[tuple[object, str]] = []  # (session, configuration) in the order handed out
    for cycle in range(10):
        # The log has 3 lines a round ("asking", "asked", "told"): a kill after line 1 or 4
        # falls inside ask(), mostly while it writes the parameters of a new trial, one by one
        # (each a SQLite commit: hence the 4 extra parameters).
        status = helper(db, log, workers=1, rounds=1000, batch=2, strategy="random", extra=4,
                        kill=(rng.randint(1, 4), rng.uniform(0, 0.2)))
        assert os.WIFSIGNALED(status[0]) and os.WTERMSIG(status[0]) == signal.SIGKILL, status
        if cycle % 2:  # every other kill, this test resumes (else the next process does)
            with simgap.SimOptimizer(space, real, storage=db, batch_size=2, seed=0, strategy="random") as opt:
                orphans = {_key(c) for c in opt.pending}
                configs = opt.ask(len(orphans) + 1)
                assert {_key(c) for c in configs[:len(orphans)]} == orphans
                handed += [(f"test{cycle}", _key(c)) for c in configs]
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    opt.tell(configs, [_render(c) for c in configs])
    events = _log(log)
    handed = [(e["pid"], _key(c)) for e in events for c in e.get("asked", [])] + handed
    told = [_key(c) for e in events for c in e.get("told", [])]
    assert all(set(json.loads(c)) == set(space) for _, c in handed)  # never {} nor partial
    trials = _trials(db)
    states = {}
    for t in trials:
        assert set(t.params) == set(space) or t.state.name == "RUNNING"
        states.setdefault(_key(t.params), []).append(t.state.name)
    complete = [k for k, s in states.items() if "COMPLETE" in s]
    assert all(s.count("COMPLETE") == 1 and "FAIL" not in s for s in states.values())  # told once
    assert set(told) <= set(complete)  # every tell that returned landed
    for session in {s for s, _ in handed}:  # no session was handed a configuration twice
        mine = [c for s, c in handed if s == session]
        assert len(mine) == len(set(mine))
    # a configuration handed out again was never told by the process that held it before
    seen: dict[str, object] = {}
    told_by = {(e["pid"], _key(c)) for e in events for c in e.get("told", [])}
    for session, c in handed:
        if c in seen:
            assert (seen[c], c) not in told_by
        seen[c] = session
    assert len(events) > 10  # the processes got some work done between kills


def test_asking_after_close_starts_a_new_session(tmp_path):
    """close() ends the session; a later ask / tell starts a new one, which takes back the
    configurations the old one left pending (as any later session would)."""
    real = _real()
    db = tmp_path / "s.db"
    opt = simgap.SimOptimizer(SPACE, real, storage=db, batch_size=2, seed=0)
    asked = opt.ask()
    opt.close()
    assert opt.ask() == asked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.tell(asked, [_render(c) for c in asked])
    assert opt.n_evaluated == 2 and opt.pending == []
    opt.close()
