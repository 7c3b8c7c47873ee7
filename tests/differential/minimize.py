#!/usr/bin/env python3
"""Shrinks a mismatching differential case to a small program that still differs.

    CARGO_TARGET_DIR=/work/target-diff cargo test --test differential --no-run
    PYENV_VERSION=3.13.0 python3 tests/differential/minimize.py CASE.json [CASE.json ...]

For each case it greedily applies the smallest-program-first reductions
(drop a statement, splice a block, simplify an awaitable, drop eagerness …)
while CPython's trace (computed here) and the Rust trace (from the test
binary, `DIFFTEST_CASE=…`) still differ, then prints the minimal program and
both traces. `--triage` prints a first-guess `NNNN reason` line for each mismatching
case (for tests/differential/known_failures.txt; check the reasons by
minimizing). `--out DIR` writes the minimal cases as JSON files; `--strip op,op`
first drops every statement with those ops (to look past a known
divergence) and says so when the mismatch goes away with them. `--bin`
names the test binary (default: the newest `differential-*` under
$CARGO_TARGET_DIR or ./target).
"""

import argparse
import copy
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

BLOCK_KEYS = ("body", "acts")


def size(x):
    if isinstance(x, dict):
        return 1 + sum(size(v) for v in x.values())
    if isinstance(x, list):
        return sum(size(v) for v in x)
    return 0


def blocks(node, path=()):
    """Yields (path, list) for every statement list inside `node`."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, list) and k in ("main", "outside", "body", "acts", "items"):
                yield path + (k,), v
            if isinstance(v, (dict, list)):
                yield from blocks(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from blocks(v, path + (i,))


def get(node, path):
    for p in path:
        node = node[p]
    return node


def candidates(prog):
    """Programs one reduction smaller than `prog`."""
    out = []
    if prog["eager"]:
        p = copy.deepcopy(prog)
        p["eager"] = False
        out.append(p)
    for path, lst in list(blocks(prog)):
        for i, item in enumerate(lst):
            p = copy.deepcopy(prog)
            del get(p, path)[i]
            out.append(p)
            if isinstance(item, dict):
                # splice a compound statement's body in its place
                if item.get("op") in ("try", "timeout", "taskgroup") and path[-1] != "items":
                    p = copy.deepcopy(prog)
                    body = [s for s in item["body"] if s.get("op") != "tg_spawn"]
                    get(p, path)[i : i + 1] = body
                    out.append(p)
                # inline a task's or a coroutine's body
                inline = None
                if item.get("op") == "spawn":
                    inline = item["body"]
                elif item.get("op") == "await" and item["aw"].get("kind") == "coro":
                    inline = item["aw"]["body"]
                elif item.get("op") == "gather" and len(item["items"]) == 1 and item["items"][0].get("kind") == "coro":
                    inline = item["items"][0]["body"]
                if inline is not None and path[-1] != "items":
                    p = copy.deepcopy(prog)
                    get(p, path)[i : i + 1] = copy.deepcopy(inline)
                    out.append(p)
    for path, node in list(dicts(prog)):
        kind = node.get("kind")
        if kind in ("shield", "wait_for"):
            p = copy.deepcopy(prog)
            set_at(p, path, copy.deepcopy(node["inner"]))
            out.append(p)
        if kind in ("coro", "shield", "wait_for", "task"):
            p = copy.deepcopy(prog)
            set_at(p, path, {"kind": "sleep", "value": 1})
            out.append(p)
        if node.get("op") == "cancel" and node.get("msg") is not None:
            p = copy.deepcopy(prog)
            get(p, path)["msg"] = None
            out.append(p)
        for flag in ("reraise", "uncancel", "return_exceptions"):
            if node.get(flag):
                p = copy.deepcopy(prog)
                get(p, path)[flag] = False
                out.append(p)
        if node.get("op") in ("spawn", "tg_spawn") and node.get("name") is not None:
            p = copy.deepcopy(prog)
            get(p, path)["name"] = None
            out.append(p)
    out.sort(key=size)
    return out


def dicts(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from dicts(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from dicts(v, path + (i,))


def set_at(node, path, value):
    get(node, path[:-1])[path[-1]] = value


def strip(node, ops):
    """`node` without the statements whose op is in `ops`."""
    if isinstance(node, list):
        return [strip(x, ops) for x in node if not (isinstance(x, dict) and x.get("op") in ops)]
    if isinstance(node, dict):
        return {k: strip(v, ops) for k, v in node.items()}
    return node


def find_bin():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    bins = [
        b
        for b in glob.glob(os.path.join(target, "debug", "deps", "differential-*"))
        if os.access(b, os.X_OK) and not b.endswith(".d")
    ]
    if not bins:
        sys.exit("no test binary: cargo test --test differential --no-run")
    return max(bins, key=os.path.getmtime)


def rust_traces(binary, progs, tmp):
    paths = []
    for i, prog in enumerate(progs):
        path = os.path.join(tmp, f"c{i}.json")
        with open(path, "w") as f:
            json.dump({"program": prog, "expected_trace": []}, f)
        paths.append(path)
    out = subprocess.run(
        [binary, "--exact", "differential", "--nocapture"],
        env={**os.environ, "DIFFTEST_CASE": ",".join(paths), "DIFFTEST_QUIET": "1"},
        capture_output=True,
        text=True,
    ).stdout
    traces = [json.loads(l.split(" ", 2)[2]) for l in out.splitlines() if l.startswith("DIFFTEST TRACE ")]
    assert len(traces) == len(progs), out[-2000:]
    return traces


def python_trace(prog):
    try:
        return gen.run_program(prog)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - an invalid reduction (BadProgram, maybe in a group)
        return None


def differs(prog, binary, tmp):
    py = python_trace(prog)
    return py is not None and rust_traces(binary, [prog], tmp)[0] != py


def minimize(prog, binary, tmp):
    while True:
        cands = [c for c in candidates(prog)]
        pys = [python_trace(c) for c in cands]
        keep = [(c, p) for c, p in zip(cands, pys) if p is not None]
        rs = rust_traces(binary, [c for c, _ in keep], tmp) if keep else []
        for (c, p), r in zip(keep, rs):
            if p != r and gen.run_program(c) == p:
                prog = c
                break
        else:
            return prog


def first_diff(a, b):
    for i in range(max(len(a), len(b))):
        if i >= len(a) or i >= len(b) or a[i] != b[i]:
            return i
    return None


def show(prog, binary, tmp):
    py = gen.run_program(prog)
    rs = rust_traces(binary, [prog], tmp)[0]
    d = first_diff(py, rs)
    print("program:", json.dumps(prog))
    for name, t in (("CPython 3.13", py), ("asyncio-rs", rs)):
        print(f"--- {name}")
        for i, l in enumerate(t):
            print(f"{'>>' if i == d else '  '}{i:3} {l}")


def ops_of(prog):
    found = set()
    for _, node in dicts(prog):
        for key in ("op", "kind"):
            if key in node:
                found.add(node[key])
    return found


REASONS = {
    "threadsafe-fifo": "call_soon_threadsafe from the loop thread runs after callbacks scheduled later with call_soon",
    "task-n": "Task-N numbering: a task created with a name uses up a number",
    "as-completed-cancel": "as_completed loses a cancellation of the task waiting in it",
    "eager-shield": "eager shield shortcut: shield(coro) whose eager task is done at once returns the task",
    "gather-cancel-exc": "a cancelled gather raises the CancelledError of its last child in argument order",
    "cancelled-exc-once": "a cancelled task hands out its original CancelledError once; later result()s "
    "and awaits raise a new CancelledError() (CPython's _make_cancelled_error)",
    "stale-resumed-from": "await of an already-done future right after cancel() of the running task raises "
    "(the task looks resumed from it: same future as the last await, or a new one at a reused address)",
    "gather-refuse-wakes-early": "a gather whose children are all done refuses cancel(); the task wakes early",
    "gather-eager-callbacks": "gather adds its done callback to each child before starting the next (eager) one",
    "gather-twice": "a task passed to gather twice is cancelled once per occurrence",
    "loop-stopped-wakeup": "a task woken while the loop is stopped runs after callbacks scheduled later",
    "eager-cancel-parent": "a task cancelled by the eager task it is creating raises at its next await "
    "without suspending first",
}


def reason(category):
    return f"{REASONS[category]} [{category}]"


def guess_reason(small, py, rs):
    """A first guess at why `small` differs (a human checks it)."""
    ops = ops_of(small)
    d = first_diff(py, rs)
    exp = py[d] if d is not None and d < len(py) else ""
    act = rs[d] if d is not None and d < len(rs) else ""
    text = json.dumps(small)
    cancels_self = '"target": "main"' in text or '"target": "self"' in text
    raises_cancel = '"kind": "CancelledError"' in text
    as_completed_line = re.search(r": a\d+#\d+ ->", exp + act) is not None
    reordered = d is not None and sorted(py[d:]) == sorted(rs[d:])
    if small["outside"] and reordered and "-- main done" in py[:d]:
        return reason("loop-stopped-wakeup")
    if small["eager"] and cancels_self and exp.startswith("done ") and "exc CancelledError" in act:
        return reason("eager-cancel-parent")
    lost = "exc CancelledError" not in act or (
        "exc CancelledError('" in exp and act.endswith("exc CancelledError()")
    )
    if "as_completed" in ops and as_completed_line and "CancelledError" in exp and lost:
        return reason("as-completed-cancel")
    if "shield" in ops and small["eager"]:
        return reason("eager-shield")
    gather_tags = [n["tag"] for _, n in dicts(small) if n.get("op") == "gather"]
    gather_line = any(f": {tag} -> " in exp for tag in gather_tags)
    if exp.endswith("exc CancelledError()") and "exc CancelledError('" in act:
        if gather_line and "result" not in ops and not raises_cancel:
            return reason("gather-cancel-exc")
        return reason("cancelled-exc-once")
    if gather_line and "exc CancelledError('" in exp and act.endswith("exc CancelledError()"):
        return reason("gather-cancel-exc")
    if " -> ok" in exp and act.endswith("exc CancelledError()") and cancels_self:
        return reason("stale-resumed-from")
    if "gather" in ops and "cancelling=" in exp + act:
        return reason("gather-twice")
    if "gather" in ops and "cancel" in ops:
        return reason("gather-refuse-wakes-early")
    if "gather" in ops and small["eager"]:
        return reason("gather-eager-callbacks")
    return f"UNCLASSIFIED: expected {exp!r}, got {act!r}"


def triage(path, prog, binary, tmp):
    """`NNNN reason` for a mismatching case, or None if it matches."""
    if not differs(prog, binary, tmp):
        return None
    case = os.path.splitext(os.path.basename(path))[0]
    if not differs(strip(prog, {"call_soon_threadsafe"}), binary, tmp):
        return f"{case} {reason('threadsafe-fifo')}"
    if not differs(strip(prog, {"name"}), binary, tmp):
        return f"{case} {reason('task-n')}"
    stripped = strip(prog, {"call_soon_threadsafe", "name"})
    if not differs(stripped, binary, tmp):
        return f"{case} call_soon_threadsafe FIFO and Task-N numbering [threadsafe-fifo, task-n]"
    small = minimize(stripped, binary, tmp)
    py = gen.run_program(small)
    rs = rust_traces(binary, [small], tmp)[0]
    return f"{case} {guess_reason(small, py, rs)}"


def main():
    gen.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--bin")
    ap.add_argument("--out")
    ap.add_argument("--strip", help="first drop every statement with these ops (op1,op2)")
    ap.add_argument("--triage", action="store_true", help="print a known_failures.txt line per mismatching case")
    args = ap.parse_args()
    binary = args.bin or find_bin()
    with tempfile.TemporaryDirectory() as tmp:
        if args.triage:
            for path in args.cases:
                with open(path) as f:
                    line = triage(path, json.load(f)["program"], binary, tmp)
                if line:
                    print(line)
                    sys.stdout.flush()
            return
        for path in args.cases:
            with open(path) as f:
                prog = json.load(f)["program"]
            if not differs(prog, binary, tmp):
                print(f"=== {path}: no mismatch")
                continue
            if args.strip:
                stripped = strip(prog, set(args.strip.split(",")))
                if not differs(stripped, binary, tmp):
                    print(f"=== {path}: only with {args.strip}")
                    continue
                prog = stripped
            small = minimize(prog, binary, tmp)
            print(f"=== {path} (size {size(prog)} -> {size(small)})")
            show(small, binary, tmp)
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                name = os.path.join(args.out, os.path.basename(path))
                with open(name, "w") as f:
                    json.dump({"program": small, "expected_trace": gen.run_program(small)}, f, indent=1)
                    f.write("\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
