#!/usr/bin/env python3
"""Differential-test fixtures: random asyncio programs run under CPython 3.13.

Generate the fixtures (NOT part of `cargo test`; CI may lack CPython 3.13):

    PYENV_VERSION=3.13.0 python3 tests/differential/gen.py generate \
        --seed 1 --count 300 --out tests/differential/cases

It also writes cases/m-NAME.json for the hand-written programs of
minimal.json (the smallest program known for each divergence found).

Other commands:

    gen.py minimal              # only the cases/m-*.json
    gen.py run CASE.json        # run one program (a case file or a bare program)
                                # under CPython and print its trace
    gen.py refresh              # recompute expected_trace of every case file
                                # (after changing this interpreter)

Each case file `cases/NNNN.json` holds `{"seed", "program", "expected_trace"}`.
`tests/differential.rs` interprets the same program with the Rust library and
compares traces; `tests/differential/known_failures.txt` lists the cases that
currently differ. The program language is described in
`tests/differential/README.md`; in short, a program is a `main` block of
statements run by the main task (`loop.run_until_complete(main())`), some of
which spawn tasks with their own blocks, await tasks/futures/coroutines through
gather, wait, as_completed, shield, wait_for, timeout and TaskGroup, schedule
callbacks, set and cancel futures and tasks. Every observable step appends a
line to the trace.

Determinism: CPython keeps the tasks of a TaskGroup and of as_completed() in
sets, iterated in address order; this script makes them iterate in insertion
order (see use_ordered_sets) -- one of the orders CPython shows, the one a
deterministic implementation gives. Programs use no real time. Delays are only 0 (sleep(0),
call_later(0), timeout(0), wait_for(..., 0)), None or 1000 s (never reached),
so traces depend only on the loop's scheduling order. A program terminates:
a task only awaits tasks whose generation finished before its own (so the
wait-for graph is acyclic), and a "backstop" callback chain started first
resolves every pending future after BACKSTOP loop iterations.
"""

import argparse
import asyncio
import glob
import json
import logging
import os
import random
import sys

BACKSTOP = 40  # loop iterations before the backstop resolves every future
SETTLE = 300  # at most this many sleep(0)s after main for the others to finish

# ---------------------------------------------------------------------------
# The interpreter (CPython side). tests/differential.rs mirrors it.
# ---------------------------------------------------------------------------


class OrderedSet:
    """The set operations asyncio uses on its sets of tasks, iterating in
    insertion order."""

    def __init__(self, items=()):
        self._d = dict.fromkeys(items)

    def add(self, x):
        self._d[x] = None

    def discard(self, x):
        self._d.pop(x, None)

    def remove(self, x):
        del self._d[x]

    def clear(self):
        self._d.clear()

    def __iter__(self):
        return iter(list(self._d))

    def __len__(self):
        return len(self._d)

    def __contains__(self, x):
        return x in self._d


def ordered_as_completed_init(self, aws, timeout):
    """CPython 3.13's `_AsCompletedIterator.__init__`, with the awaitables
    wrapped and watched in argument order instead of set order."""
    self._done = asyncio.Queue()
    self._timeout_handle = None
    loop = asyncio.get_event_loop()
    todo = OrderedSet(asyncio.ensure_future(aw, loop=loop) for aw in OrderedSet(aws))
    for f in todo:
        f.add_done_callback(self._handle_completion)
    if todo and timeout is not None:
        self._timeout_handle = loop.call_later(timeout, self._handle_timeout)
    self._todo = todo
    self._todo_left = len(todo)


_taskgroup_init = asyncio.TaskGroup.__init__


def ordered_taskgroup_init(self):
    _taskgroup_init(self)
    self._tasks = OrderedSet()


def setup():
    """What every run of the interpreter needs (see use_ordered_sets), and
    silence: tasks left pending are collected after their loop is closed,
    and what their coroutines raise or log then is no part of a trace."""
    import warnings

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    sys.unraisablehook = lambda unraisable: None
    warnings.simplefilter("ignore", RuntimeWarning)
    use_ordered_sets()


def use_ordered_sets():
    """CPython keeps the tasks of a TaskGroup and of as_completed() in sets,
    iterated in address order (which tasks a failing TaskGroup cancels
    first, which done future as_completed() yields first): that makes some
    programs' traces vary from run to run. Insertion order is one of those
    runs, the one a deterministic implementation gives, so the expected
    traces are recorded with it."""
    asyncio.tasks._AsCompletedIterator.__init__ = ordered_as_completed_init
    asyncio.TaskGroup.__init__ = ordered_taskgroup_init


class Unbound(Exception):
    """An awaitable names a task that does not exist (yet)."""


class BadProgram(BaseException):
    """A program names a future, group or timeout it does not have (only a
    hand-edited or minimized program can); never caught by the program."""


BAD = []  # BadPrograms raised in this run, wherever they were caught


def lookup(table, key):
    try:
        return table[key]
    except KeyError:
        BAD.append(key)
        raise BadProgram(key) from None


class Ctx:
    def __init__(self, loop):
        self.loop = loop
        self.trace = []
        self.tasks = {}  # name -> Task
        self.futs = {}  # name -> Future
        self.groups = {}  # tag -> TaskGroup
        self.gathers = {}  # tag -> the future gather() returned, when bound
        self.cms = {}  # tag -> Timeout
        self.order = []  # task names in creation order
        self.main = None
        self.main_num = 0
        self.closed = False  # after the final report: what is left is no part of the trace

    def log(self, line):
        if not self.closed:
            self.trace.append(line)

    def norm_name(self, name):
        if name.startswith("Task-") and name[5:].isdigit():
            return f"Task-{int(name[5:]) - self.main_num}"
        return name

    def target(self, name):
        if name == "main":
            return self.main
        if name == "self":
            return asyncio.current_task()
        if name.startswith("f"):
            return lookup(self.futs, name)
        if name.startswith("a"):
            return self.gathers.get(name)
        return self.tasks.get(name)


def outcome(fut):
    """`ok <repr>` or `exc <repr>` of a done future."""
    try:
        return f"ok {fut.result()!r}"
    except BaseException as e:  # noqa: BLE001 - CancelledError included
        return f"exc {e!r}"


def final_state(fut):
    if not fut.done():
        return "pending"
    if fut.cancelled():
        return "cancelled"
    return outcome(fut)


def cancelling(task):
    n = task.cancelling()
    return f" cancelling={n}" if n else ""


def py_bool(b):
    return "True" if b else "False"


ACTS = (
    "log",
    "set_result",
    "set_exception",
    "cancel",
    "call_soon",
    "call_later",
    "call_soon_threadsafe",
    "add_done_callback",
    "result",
    "exception",
    "status",
    "name",
)


def do_act(ctx, label, act):
    """A statement that never suspends (the only kind callbacks run)."""
    op = act["op"]
    if op == "log":
        ctx.log(f"{label}: {act['msg']}")
    elif op == "set_result":
        try:
            lookup(ctx.futs, act["fut"]).set_result(act["value"])
            ctx.log(f"{label}: set_result {act['fut']} -> ok")
        except Exception as e:  # noqa: BLE001
            ctx.log(f"{label}: set_result {act['fut']} -> exc {e!r}")
    elif op == "set_exception":
        try:
            lookup(ctx.futs, act["fut"]).set_exception(ValueError(act["msg"]))
            ctx.log(f"{label}: set_exception {act['fut']} -> ok")
        except Exception as e:  # noqa: BLE001
            ctx.log(f"{label}: set_exception {act['fut']} -> exc {e!r}")
    elif op == "cancel":
        t = ctx.target(act["target"])
        if t is None:
            ctx.log(f"{label}: cancel {act['target']} -> unbound")
        else:
            r = t.cancel() if act["msg"] is None else t.cancel(act["msg"])
            ctx.log(f"{label}: cancel {act['target']} -> {py_bool(r)}")
    elif op == "call_soon":
        ctx.loop.call_soon(callback(ctx, act["cb"]))
    elif op == "call_later":
        ctx.loop.call_later(0, callback(ctx, act["cb"]))
    elif op == "call_soon_threadsafe":
        ctx.loop.call_soon_threadsafe(callback(ctx, act["cb"]))
    elif op == "add_done_callback":
        t = ctx.target(act["target"])
        if t is None:
            ctx.log(f"{label}: add_done_callback {act['target']} unbound")
        else:
            run = callback(ctx, act["cb"])
            t.add_done_callback(lambda _: run())
    elif op == "result":
        # result() of a cancelled task uses up its original CancelledError.
        t = ctx.target(act["target"])
        if t is None:
            ctx.log(f"{label}: result {act['target']} unbound")
        else:
            try:
                ctx.log(f"{label}: result {act['target']} -> ok {t.result()!r}")
            except (asyncio.CancelledError, Exception) as e:
                ctx.log(f"{label}: result {act['target']} -> exc {e!r}")
    elif op == "exception":
        t = ctx.target(act["target"])
        if t is None:
            ctx.log(f"{label}: exception {act['target']} unbound")
        else:
            try:
                ctx.log(f"{label}: exception {act['target']} -> ok {t.exception()!r}")
            except (asyncio.CancelledError, Exception) as e:
                ctx.log(f"{label}: exception {act['target']} -> exc {e!r}")
    elif op == "name":
        t = ctx.tasks.get(act["task"])
        n = "unbound" if t is None else ctx.norm_name(t.get_name())
        ctx.log(f"{label}: name {act['task']} = {n}")
    elif op == "status":
        t = ctx.target(act["target"])
        if t is None:
            ctx.log(f"{label}: status {act['target']} unbound")
        elif isinstance(t, asyncio.Task):
            ctx.log(
                f"{label}: status {act['target']} done={py_bool(t.done())} "
                f"cancelled={py_bool(t.cancelled())} cancelling={t.cancelling()}"
            )
        else:
            ctx.log(
                f"{label}: status {act['target']} done={py_bool(t.done())} "
                f"cancelled={py_bool(t.cancelled())}"
            )
    else:
        raise AssertionError(op)


def callback(ctx, cb):
    def run():
        ctx.log(f"cb {cb['label']}")
        for act in cb["acts"]:
            try:
                do_act(ctx, f"cb {cb['label']}", act)
            except Exception as e:  # noqa: BLE001
                ctx.log(f"cb {cb['label']}: raised {e!r}")

    return run


def make_aw(ctx, aw):
    kind = aw["kind"]
    if kind == "task":
        t = ctx.tasks.get(aw["name"])
        if t is None:
            raise Unbound()
        return t
    if kind == "fut":
        return lookup(ctx.futs, aw["name"])
    if kind == "coro":
        return run_coro(ctx, aw["label"], aw["body"], aw["ret"])
    if kind == "sleep":
        return asyncio.sleep(0, aw["value"])
    if kind == "shield":
        return asyncio.shield(make_aw(ctx, aw["inner"]))
    if kind == "wait_for":
        return asyncio.wait_for(make_aw(ctx, aw["inner"]), aw["timeout"])
    raise AssertionError(kind)


def make_items(ctx, label, tag, items):
    out = []
    for i, aw in enumerate(items):
        try:
            out.append(make_aw(ctx, aw))
        except Unbound:
            ctx.log(f"{label}: {tag}[{i}] unbound")
    return out


async def run_coro(ctx, label, body, ret):
    r = await run_block(ctx, label, body)
    return ret if r is None else r


def spawn(ctx, st, group=None):
    name = st["task"]
    coro = run_coro(ctx, name, st["body"], st["ret"])
    if group is not None:
        t = group.create_task(coro, name=st["name"])
    else:
        t = asyncio.create_task(coro, name=st["name"])
    ctx.tasks[name] = t
    ctx.order.append(name)
    # (final_state: a cancelled task's result() would use up its original
    # CancelledError, and the awaiters would see a fresh one.)
    t.add_done_callback(lambda t: ctx.log(f"done {name}: {final_state(t)}{cancelling(t)}"))


def is_caught(kind, e):
    if kind == "any":
        return True
    if kind == "Exception":
        return not isinstance(e, asyncio.CancelledError)
    return type(e).__name__ == kind


async def run_block(ctx, label, block):
    """Runs the statements; returns the value of a `return`, else None."""
    for st in block:
        r = await run_stmt(ctx, label, st)
        if r is not None:
            return r
    return None


async def run_stmt(ctx, label, st):
    op = st["op"]
    if op in ACTS:
        do_act(ctx, label, st)
    elif op == "sleep":
        await asyncio.sleep(0)
    elif op == "spawn":
        spawn(ctx, st)
    elif op == "tg_spawn":
        spawn(ctx, st, lookup(ctx.groups, st["group"]))
    elif op == "await":
        tag = st["tag"]
        try:
            aw = make_aw(ctx, st["aw"])
        except Unbound:
            ctx.log(f"{label}: {tag} unbound")
            return None
        try:
            v = await aw
        except (asyncio.CancelledError, Exception) as e:
            ctx.log(f"{label}: {tag} -> exc {e!r}")
            if st["reraise"]:
                raise
            return None
        ctx.log(f"{label}: {tag} -> ok {v!r}")
    elif op == "gather":
        tag = st["tag"]
        items = make_items(ctx, label, tag, st["items"])
        g = asyncio.gather(*items, return_exceptions=st["return_exceptions"])
        if st.get("bind"):
            ctx.gathers[tag] = g  # others may cancel it by its tag
        try:
            v = await g
        except (asyncio.CancelledError, Exception) as e:
            ctx.log(f"{label}: {tag} -> exc {e!r}")
            if st["reraise"]:
                raise
            return None
        ctx.log(f"{label}: {tag} -> ok {v!r}")
    elif op == "wait":
        tag = st["tag"]
        names = []
        for n in st["items"]:
            if ctx.target(n) is None:
                ctx.log(f"{label}: {tag} {n} unbound")
            elif n not in names:
                names.append(n)
        futs = [ctx.target(n) for n in names]
        try:
            done, _pending = await asyncio.wait(
                futs, timeout=st["timeout"], return_when=getattr(asyncio, st["return_when"])
            )
        except (asyncio.CancelledError, Exception) as e:
            ctx.log(f"{label}: {tag} -> exc {e!r}")
            if st["reraise"]:
                raise
            return None
        d = [n for n in names if ctx.target(n) in done]
        p = [n for n in names if ctx.target(n) not in done]
        ctx.log(f"{label}: {tag} -> done={d} pending={p}")
    elif op == "as_completed":
        tag = st["tag"]
        items = make_items(ctx, label, tag, st["items"])
        it = asyncio.as_completed(items, timeout=st["timeout"])
        for i, f in enumerate(it):
            try:
                v = await f
            except (asyncio.CancelledError, Exception) as e:
                ctx.log(f"{label}: {tag}#{i} -> exc {e!r}")
                if st["reraise"]:
                    raise
                continue
            ctx.log(f"{label}: {tag}#{i} -> ok {v!r}")
    elif op == "uncancel":
        ctx.log(f"{label}: uncancel -> {asyncio.current_task().uncancel()}")
    elif op == "cancelling":
        ctx.log(f"{label}: cancelling -> {asyncio.current_task().cancelling()}")
    elif op == "try":
        tag = st["tag"]
        try:
            return await run_block(ctx, label, st["body"])
        except (asyncio.CancelledError, Exception) as e:
            if not is_caught(st["catch"], e):
                raise
            n = asyncio.current_task().cancelling()
            ctx.log(f"{label}: {tag} caught {e!r} cancelling={n}")
            if st["uncancel"]:
                ctx.log(f"{label}: {tag} uncancel -> {asyncio.current_task().uncancel()}")
            if st["reraise"]:
                raise
    elif op == "raise":
        if st["kind"] == "CancelledError":
            raise asyncio.CancelledError(st["msg"])
        raise ValueError(st["msg"])
    elif op == "timeout":
        tag = st["tag"]
        async with asyncio.timeout(st["delay"]) as cm:
            ctx.cms[tag] = cm
            r = await run_block(ctx, label, st["body"])
        ctx.log(f"{label}: {tag} exit expired={py_bool(cm.expired())}")
        return r
    elif op == "reschedule":
        cm = lookup(ctx.cms, st["cm"])
        when = None if st["when"] is None else ctx.loop.time()
        cm.reschedule(when)
        ctx.log(f"{label}: reschedule {st['cm']} {st['when']}")
    elif op == "taskgroup":
        tag = st["tag"]
        async with asyncio.TaskGroup() as tg:
            ctx.groups[tag] = tg
            r = await run_block(ctx, label, st["body"])
        ctx.log(f"{label}: {tag} exit")
        return r
    elif op == "return":
        return st["value"]
    else:
        raise AssertionError(op)
    return None


def run_program(prog):
    """Runs `prog` on a fresh loop and returns its trace (a list of lines)."""
    BAD.clear()
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda loop, context: None)
    if prog["eager"]:
        loop.set_task_factory(asyncio.eager_task_factory)
    ctx = Ctx(loop)
    for i in range(prog["futures"]):
        ctx.futs[f"f{i}"] = loop.create_future()

    def backstop(n):
        if n > 0:
            loop.call_soon(backstop, n - 1)
            return
        for name, f in ctx.futs.items():
            if not f.done():
                f.set_result(-1)
                ctx.log(f"backstop {name}")

    async def main():
        ctx.main = asyncio.current_task()
        # (CPython 3.13.0's eager_task_factory names unnamed tasks 'None',
        # so the generator asks for no names in eager programs.)
        name = ctx.main.get_name()
        ctx.main_num = int(name[5:]) if name.startswith("Task-") else 0
        loop.call_soon(backstop, BACKSTOP)
        try:
            r = await run_block(ctx, "main", prog["main"])
            ctx.log(f"main: return {r!r}")
        except (asyncio.CancelledError, Exception) as e:
            ctx.log(f"main: exc {e!r}")

    async def settle():
        for _ in range(SETTLE):
            if all(t.done() for t in ctx.tasks.values()):
                break
            await asyncio.sleep(0)

    try:
        try:
            loop.run_until_complete(main())
        except (asyncio.CancelledError, Exception) as e:
            ctx.log(f"-- main failed: {e!r}")
        ctx.log("-- main done")
        for act in prog["outside"]:
            try:
                do_act(ctx, "outside", act)
            except Exception as e:  # noqa: BLE001
                ctx.log(f"outside: raised {e!r}")
        try:
            loop.run_until_complete(settle())
        except (asyncio.CancelledError, Exception) as e:
            ctx.log(f"-- settle failed: {e!r}")
        ctx.log("-- settled")
        # (Not outcome(): a second result() of a cancelled task gives a
        # fresh CancelledError in CPython, and the program saw the first.)
        for name, f in [(n, ctx.tasks[n]) for n in ctx.order] + list(ctx.futs.items()):
            ctx.log(f"final {name}: {final_state(f)}")
    finally:
        ctx.closed = True
        loop.close()
    if BAD:
        raise BadProgram(BAD[0])
    return ctx.trace


# ---------------------------------------------------------------------------
# The generator.
# ---------------------------------------------------------------------------

MSGS = [None, "m1", "m2"]


class Gen:
    """Random programs; see the module docstring for the termination rule."""

    def __init__(self, rng):
        self.r = rng
        self.ntasks = 0
        self.ncoros = 0
        self.ntags = 0
        self.nlabels = 0
        self.nlogs = 0
        self.nfuts = rng.randint(1, 3)
        self.complete = []  # tasks whose body generation is finished
        self.bound = []  # tags of gathers others may cancel
        self.budget = rng.randint(12, 45)  # statements left in the program
        self.eager = rng.random() < 0.3

    def tag(self, prefix):
        self.ntags += 1
        return f"{prefix}{self.ntags}"

    def fut(self):
        return f"f{self.r.randrange(self.nfuts)}"

    def cancel_target(self, in_task):
        choices = ["main", self.fut(), self.fut()] + self.complete[-4:] * 2 + self.bound[-2:]
        if in_task:
            choices.append("self")
        return self.r.choice(choices)

    def act(self, in_task, nested=False):
        """A statement that never suspends; `nested` ones (in callbacks)
        schedule no further callbacks."""
        r = self.r.random()
        if r < 0.25:
            return {"op": "set_result", "fut": self.fut(), "value": self.r.randint(1, 99)}
        if r < 0.32:
            self.nlogs += 1
            return {"op": "set_exception", "fut": self.fut(), "msg": f"e{self.nlogs}"}
        if r < 0.62:
            return {"op": "cancel", "target": self.cancel_target(in_task), "msg": self.r.choice(MSGS)}
        if r < 0.70 and not nested:
            return {"op": self.r.choice(["call_soon", "call_soon", "call_later"]), "cb": self.cb()}
        if r < 0.77 and not nested:
            target = self.r.choice(["main", self.fut()] + self.complete[-3:] + self.bound[-1:])
            return {"op": "add_done_callback", "target": target, "cb": self.cb()}
        if r < 0.83:
            op = self.r.choice(["result", "exception"])
            return {"op": op, "target": self.r.choice([self.fut()] + self.complete[-3:])}
        if r < 0.88 and self.complete and not self.eager:
            return {"op": "name", "task": self.r.choice(self.complete[-4:])}
        if r < 0.94:
            return {"op": "status", "target": self.cancel_target(in_task)}
        self.nlogs += 1
        return {"op": "log", "msg": f"p{self.nlogs}"}

    def cb(self, with_acts=True):
        self.nlabels += 1
        acts = [self.act(False, nested=True) for _ in range(self.r.choice([0, 1, 1, 2]))] if with_acts else []
        return {"label": f"k{self.nlabels}", "acts": acts}

    def aw(self, depth, simple=False):
        """An awaitable whose tasks all finished generation (or a future)."""
        r = self.r.random()
        if r < 0.3 and self.complete:
            return {"kind": "task", "name": self.r.choice(self.complete[-5:])}
        if r < 0.5:
            return {"kind": "fut", "name": self.fut()}
        if r < 0.6:
            return {"kind": "sleep", "value": self.r.randint(1, 99)}
        if simple or depth >= 3 or r < 0.8:
            self.ncoros += 1
            label = f"c{self.ncoros}"
            body = self.block(depth + 1, self.r.randint(0, 3), in_task=True, coro=True)
            return {"kind": "coro", "label": label, "body": body, "ret": self.r.randint(100, 199)}
        if r < 0.9:
            return {"kind": "shield", "inner": self.aw(depth + 1)}
        return {
            "kind": "wait_for",
            "inner": self.aw(depth + 1),
            "timeout": self.r.choice([None, 0, 1000]),
        }

    def spawn(self, depth, op="spawn", group=None):
        self.ntasks += 1
        name = f"t{self.ntasks}"
        st = {
            "op": op,
            "task": name,
            "name": self.r.choice([None, None, None, f"w{self.ntasks}"]),
            "body": self.block(depth + 1, self.r.randint(0, 6), in_task=True),
            "ret": self.ntasks * 10,
        }
        if group is not None:
            st["group"] = group
        self.complete.append(name)
        return st

    def stmt(self, depth, in_task, cms, groups):
        r = self.r.random()
        self.budget -= 1
        deep = depth >= 3 or self.budget <= 0
        if r < 0.14:
            return {"op": "sleep"}
        if r < 0.19:
            self.nlogs += 1
            return {"op": "log", "msg": f"p{self.nlogs}"}
        if r < 0.25:
            return {"op": self.r.choice(["call_soon", "call_soon", "call_later"]), "cb": self.cb()}
        if r < 0.26:  # rare: it is slow to look past a known divergence
            return {"op": "call_soon_threadsafe", "cb": self.cb(with_acts=False)}
        if r < 0.36:
            return self.act(in_task)
        if r < 0.46 and not deep and self.ntasks < 9:
            if groups and self.r.random() < 0.4:
                return self.spawn(depth, "tg_spawn", self.r.choice(groups))
            return self.spawn(depth)
        if r < 0.58:
            return {
                "op": "await",
                "tag": self.tag("a"),
                "aw": self.aw(depth),
                "reraise": self.r.random() < 0.4,
            }
        if r < 0.65:
            items = [self.aw(depth, simple=True) for _ in range(self.r.choice([0, 1, 2, 2, 3, 3, 4]))]
            if items and self.r.random() < 0.25:
                items.append(self.r.choice(items))  # the same awaitable twice
            st = {
                "op": "gather",
                "tag": self.tag("a"),
                "items": items,
                "return_exceptions": self.r.random() < 0.4,
                "reraise": self.r.random() < 0.4,
            }
            if self.r.random() < 0.3:
                st["bind"] = True  # cancel and status may name it
                self.bound.append(st["tag"])
            return st
        if r < 0.68:
            pool = [self.fut() for _ in range(2)] + self.complete[-4:]
            return {
                "op": "wait",
                "tag": self.tag("a"),
                "items": self.r.sample(pool, self.r.randint(1, min(3, len(pool)))),
                "return_when": self.r.choice(["FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"]),
                "timeout": self.r.choice([None, None, 0, 1000]),
                "reraise": self.r.random() < 0.4,
            }
        if r < 0.71:
            return {
                "op": "as_completed",
                "tag": self.tag("a"),
                "items": [self.aw(depth, simple=True) for _ in range(self.r.randint(1, 3))],
                "timeout": self.r.choice([None, None, 0, 1000]),
                "reraise": self.r.random() < 0.4,
            }
        if r < 0.74 and in_task:
            return {"op": self.r.choice(["uncancel", "cancelling"])}
        if r < 0.82 and not deep:
            return {
                "op": "try",
                "tag": self.tag("y"),
                "catch": self.r.choice(["CancelledError", "CancelledError", "ValueError", "TimeoutError", "Exception", "any"]),
                "body": self.block(depth + 1, self.r.randint(1, 4), in_task, cms=cms, groups=groups),
                "uncancel": self.r.random() < 0.3,
                "reraise": self.r.random() < 0.3,
            }
        if r < 0.84:
            self.nlogs += 1
            return {"op": "raise", "kind": self.r.choice(["ValueError", "ValueError", "CancelledError"]), "msg": f"e{self.nlogs}"}
        if r < 0.88 and not deep:
            tag = self.tag("m")
            st = {
                "op": "timeout",
                "tag": tag,
                "delay": self.r.choice([None, 0, 1000]),
                "body": self.block(depth + 1, self.r.randint(1, 4), in_task, cms=cms + [tag], groups=groups),
            }
            cms.append(tag)  # later statements of the block may reschedule it after it ended
            return st
        if r < 0.9 and cms:
            return {"op": "reschedule", "cm": self.r.choice(cms), "when": self.r.choice([None, "now"])}
        if r < 0.94 and not deep:
            tag = self.tag("g")
            body = self.block(depth + 1, self.r.randint(1, 4), in_task, cms=cms, groups=groups + [tag])
            body.insert(self.r.randint(0, 1), self.spawn(depth + 1, "tg_spawn", tag))
            groups.append(tag)  # later statements of the block may use it after it ended
            return {"op": "taskgroup", "tag": tag, "body": body}
        if r < 0.97 and self.complete and not self.eager:
            return {"op": "name", "task": self.r.choice(self.complete[-4:])}
        if self.complete or r < 0.985:
            return {"op": "status", "target": self.cancel_target(in_task)}
        return {"op": "return", "value": self.r.randint(200, 299)}

    def block(self, depth, n, in_task, coro=False, cms=(), groups=()):
        cms, groups = list(cms), list(groups)
        out = []
        if not coro or self.r.random() < 0.5:
            self.nlogs += 1
            out.append({"op": "log", "msg": f"p{self.nlogs}"})
        for _ in range(n):
            if self.budget <= -10:
                break
            out.append(self.stmt(depth, in_task, cms, groups))
        return out

    def program(self):
        main = self.block(0, 60, in_task=True)
        outside = [self.act(False) for _ in range(self.r.choice([0, 0, 1, 2]))]
        return {
            "eager": self.eager,
            "futures": self.nfuts,
            "main": main,
            "outside": outside,
        }


def generate(seed):
    return Gen(random.Random(seed)).program()


# ---------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------


def perturbed_traces(progs, salt):
    """Traces of `progs` from a fresh CPython process whose heap layout is
    shifted before each program (set iteration order follows addresses)."""
    import subprocess

    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "_traces", "--salt", str(salt)],
        input=json.dumps(progs),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def cmd_traces(args):
    rng = random.Random(args.salt)
    traces = []
    for prog in json.load(sys.stdin):
        junk = [object() for _ in range(rng.randint(0, 200))]  # noqa: F841
        traces.append(run_program(prog))
    json.dump(traces, sys.stdout)


def cmd_generate(args):
    os.makedirs(args.out, exist_ok=True)
    seeds = [args.seed * 1_000_000 + i for i in range(1, args.count * 2)]
    progs = [generate(s) for s in seeds]
    traces = [run_program(p) for p in progs]
    # Keep only programs whose trace is the same in every run (a safety net:
    # use_ordered_sets() removes the nondeterminism known so far).
    others = [perturbed_traces(progs, salt) for salt in range(3)]
    written = 0
    for seed, prog, trace, *again in zip(seeds, progs, traces, *others):
        if any(t != trace for t in again):
            print(f"seed {seed}: nondeterministic under CPython, skipped", file=sys.stderr)
            continue
        path = os.path.join(args.out, f"{written:04d}.json")
        write_case(path, {"seed": seed, "program": prog, "expected_trace": trace})
        written += 1
        if written == args.count:
            break
    print(f"wrote {written} cases to {args.out}")
    cmd_minimal(args)


def write_case(path, case):
    """A case file: the program on one line, one trace line per line."""
    lines = ",\n".join("  " + json.dumps(line) for line in case["expected_trace"])
    head = "".join(f' "{k}": {json.dumps(v)},\n' for k, v in case.items() if k != "expected_trace")
    with open(path, "w") as f:
        f.write("{\n" + head + ' "expected_trace": [\n' + lines + "\n ]\n}\n")


def cmd_minimal(args):
    """cases/m-NAME.json for each hand-written program of minimal.json: the
    smallest known program of each divergence found so far."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "minimal.json")) as f:
        progs = json.load(f)
    for name, prog in progs.items():
        trace = run_program(prog)
        if any(perturbed_traces([prog], salt)[0] != trace for salt in range(2)):
            sys.exit(f"minimal program {name} is nondeterministic under CPython")
        write_case(os.path.join(args.out, f"m-{name}.json"), {"program": prog, "expected_trace": trace})
    print(f"wrote {len(progs)} minimal cases to {args.out}")


def cmd_run(args):
    with open(args.case) as f:
        data = json.load(f)
    prog = data.get("program", data)
    for line in run_program(prog):
        print(line)


def cmd_refresh(args):
    for path in sorted(glob.glob(os.path.join(args.dir, "*.json"))):
        with open(path) as f:
            data = json.load(f)
        data["expected_trace"] = run_program(data["program"])
        write_case(path, data)
    print("refreshed")


def main():
    if sys.version_info[:2] != (3, 13):
        sys.exit("run with CPython 3.13: PYENV_VERSION=3.13.0 python3 gen.py ...")
    setup()
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--count", type=int, default=300)
    g.add_argument("--out", default=os.path.join(here, "cases"))
    m = sub.add_parser("minimal")
    m.add_argument("--out", default=os.path.join(here, "cases"))
    r = sub.add_parser("run")
    r.add_argument("case")
    t = sub.add_parser("_traces")  # internal: traces of programs on stdin
    t.add_argument("--salt", type=int, default=0)
    f = sub.add_parser("refresh")
    f.add_argument("--dir", default=os.path.join(here, "cases"))
    args = p.parse_args()
    {
        "generate": cmd_generate,
        "minimal": cmd_minimal,
        "run": cmd_run,
        "refresh": cmd_refresh,
        "_traces": cmd_traces,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
