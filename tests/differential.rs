//! Differential test: random asyncio programs, CPython 3.13 against this library.
//!
//! `tests/differential/gen.py` generates small programs in a JSON language
//! (tasks, futures, callbacks, `gather`, `wait`, `as_completed`, `shield`,
//! `wait_for`, `timeout`, `TaskGroup`, cancellation …), runs each under
//! CPython 3.13 and stores `{program, expected_trace}` in
//! `tests/differential/cases/NNNN.json`. This test interprets the same
//! programs with the library's public API — statement for statement as
//! `gen.py`'s interpreter does in Python — and compares the traces.
//!
//! * A mismatching case fails the test unless its id is listed in
//!   `tests/differential/known_failures.txt` (`NNNN reason`, one per line);
//!   a listed case that now matches is reported so its line can be deleted.
//! * `DIFFTEST_CASE=path[,path…]` runs only those case files and prints
//!   both traces; `DIFFTEST_DIR=dir` runs the cases of another directory
//!   (e.g. fresh seeds) with no known failures; `DIFFTEST_VERBOSE=1` prints
//!   the full report of every mismatch, known ones included.
//!
//! Programs use no real time (only zero, `None` and 1000 s delays), so the
//! traces depend on scheduling order alone; see `gen.py` for the language
//! and why every program terminates.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use asyncio::{
    AnyTask, Awaitable, Error, EventLoop, ExceptionContext, Future, GatheringFuture,
    GatheringFutureAll, Result, ReturnWhen, Task, TaskGroup, Timeout,
};
use serde::Deserialize;

/// Loop iterations before the backstop resolves every pending future.
const BACKSTOP: u32 = 40;
/// At most this many `sleep(0)`s after `main` for the other tasks to finish.
const SETTLE: u32 = 300;
/// A case that takes longer than this is reported as hanging.
const CASE_TIMEOUT: Duration = Duration::from_secs(5);

// ===== the program language (see gen.py) =====

#[derive(Deserialize, Clone, Debug)]
struct Case {
    program: Program,
    expected_trace: Vec<String>,
}

#[derive(Deserialize, Clone, Debug)]
struct Program {
    eager: bool,
    futures: usize,
    main: Vec<Stmt>,
    outside: Vec<Stmt>,
}

/// A callback: logs `cb <label>`, then runs its acts (statements that never
/// suspend: `log`, `set_result`, `set_exception`, `cancel`).
#[derive(Deserialize, Clone, Debug)]
struct Cb {
    label: String,
    acts: Vec<Stmt>,
}

#[derive(Deserialize, Clone, Debug)]
struct SpawnSt {
    task: String,
    name: Option<String>,
    body: Vec<Stmt>,
    ret: i64,
    #[serde(default)]
    group: Option<String>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Stmt {
    Log {
        msg: String,
    },
    SetResult {
        fut: String,
        value: i64,
    },
    SetException {
        fut: String,
        msg: String,
    },
    Cancel {
        target: String,
        msg: Option<String>,
    },
    AddDoneCallback {
        target: String,
        cb: Cb,
    },
    Result {
        target: String,
    },
    Exception {
        target: String,
    },
    Sleep,
    CallSoon {
        cb: Cb,
    },
    CallLater {
        cb: Cb,
    },
    CallSoonThreadsafe {
        cb: Cb,
    },
    Spawn(SpawnSt),
    TgSpawn(SpawnSt),
    Await {
        tag: String,
        aw: AwSpec,
        reraise: bool,
    },
    Gather {
        tag: String,
        items: Vec<AwSpec>,
        return_exceptions: bool,
        reraise: bool,
        /// Kept under `tag` for `cancel` and `status`.
        #[serde(default)]
        bind: bool,
    },
    Wait {
        tag: String,
        items: Vec<String>,
        return_when: String,
        timeout: Option<f64>,
        reraise: bool,
    },
    AsCompleted {
        tag: String,
        items: Vec<AwSpec>,
        timeout: Option<f64>,
        reraise: bool,
    },
    Uncancel,
    Cancelling,
    Try {
        tag: String,
        catch: String,
        body: Vec<Stmt>,
        uncancel: bool,
        reraise: bool,
    },
    Raise {
        kind: String,
        msg: String,
    },
    Timeout {
        tag: String,
        delay: Option<f64>,
        body: Vec<Stmt>,
    },
    Reschedule {
        cm: String,
        when: Option<String>,
    },
    Taskgroup {
        tag: String,
        body: Vec<Stmt>,
    },
    Name {
        task: String,
    },
    Status {
        target: String,
    },
    Return {
        value: i64,
    },
}

#[derive(Deserialize, Clone, Debug)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum AwSpec {
    Task {
        name: String,
    },
    Fut {
        name: String,
    },
    Coro {
        label: String,
        body: Vec<Stmt>,
        ret: i64,
    },
    Sleep {
        value: i64,
    },
    Shield {
        inner: Box<AwSpec>,
    },
    WaitFor {
        inner: Box<AwSpec>,
        timeout: Option<f64>,
    },
}

// ===== the interpreter =====

type Coro<T> = Pin<Box<dyn std::future::Future<Output = Result<T>>>>;

/// What Python's `make_aw` returns: a future/task, or a coroutine (which
/// `gather`, `shield`, `wait_for` … wrap in a task, and `await` runs inline).
enum Aw {
    Fut(Future<i64>),
    Coro(Coro<i64>),
}

impl Awaitable<i64> for Aw {
    fn into_asyncio_future(self, loop_: Option<&EventLoop>) -> Result<(Future<i64>, bool)> {
        match self {
            Aw::Fut(f) => f.into_asyncio_future(loop_),
            Aw::Coro(c) => c.into_asyncio_future(loop_),
        }
    }

    fn extract(future: &Future<i64>, _owned: bool) -> Result<i64> {
        future.result()
    }
}

impl IntoFuture for Aw {
    type Output = Result<i64>;
    type IntoFuture = Coro<i64>;

    fn into_future(self) -> Coro<i64> {
        match self {
            Aw::Fut(f) => Box::pin(f.into_future()),
            Aw::Coro(c) => c,
        }
    }
}

/// A name resolved by `cancel` and `status`.
enum Target {
    Task(Task<i64>),
    Any(AnyTask),
    Fut(Future<i64>),
    Gather(Gathering),
}

/// The future a bound `gather` returned, kept so that others can cancel it.
#[derive(Clone)]
enum Gathering {
    Values(GatheringFuture<i64>),
    Outcomes(GatheringFutureAll<i64>),
}

type Trace = Arc<Mutex<Vec<String>>>;

struct Ctx {
    loop_: EventLoop,
    trace: Trace,
    tasks: RefCell<HashMap<String, Task<i64>>>,
    futs: Vec<(String, Future<i64>)>,
    groups: RefCell<HashMap<String, TaskGroup>>,
    gathers: RefCell<HashMap<String, Gathering>>,
    cms: RefCell<HashMap<String, Timeout>>,
    order: RefCell<Vec<String>>,
    main: RefCell<Option<AnyTask>>,
    main_num: Cell<i64>,
}

type C = Rc<Ctx>;

impl Ctx {
    fn log(&self, line: impl Into<String>) {
        self.trace.lock().unwrap().push(line.into());
    }

    fn fut(&self, name: &str) -> Future<i64> {
        self.futs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .unwrap_or_else(|| panic!("no future {name}"))
    }

    fn target(&self, name: &str) -> Option<Target> {
        match name {
            "main" => self.main.borrow().clone().map(Target::Any),
            "self" => Some(Target::Any(
                asyncio::current_task()
                    .ok()
                    .flatten()
                    .expect("'self' used outside a task"),
            )),
            n if n.starts_with('f') => Some(Target::Fut(self.fut(n))),
            n if n.starts_with('a') => self.gathers.borrow().get(n).cloned().map(Target::Gather),
            n => self.tasks.borrow().get(n).cloned().map(Target::Task),
        }
    }

    fn norm_name(&self, name: &str) -> String {
        match name
            .strip_prefix("Task-")
            .and_then(|n| n.parse::<i64>().ok())
        {
            Some(n) => format!("Task-{}", n - self.main_num.get()),
            None => name.to_owned(),
        }
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn py_opt(v: Option<i64>) -> String {
    v.map_or_else(|| "None".to_owned(), |v| v.to_string())
}

fn py_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `ok <repr>` or `exc <repr>`, as gen.py's `outcome`.
fn outcome(r: &Result<i64>) -> String {
    match r {
        Ok(v) => format!("ok {v}"),
        Err(e) => format!("exc {e:?}"),
    }
}

fn current_task() -> AnyTask {
    asyncio::current_task()
        .ok()
        .flatten()
        .expect("statement runs inside a task")
}

/// A statement that never suspends (the only kind callbacks run); `None`
/// if `st` is not one.
fn do_act(c: &C, label: &str, act: &Stmt) -> Option<Result<()>> {
    match act {
        Stmt::Log { msg } => c.log(format!("{label}: {msg}")),
        Stmt::SetResult { fut, value } => {
            let r = c.fut(fut).set_result(*value);
            c.log(format!("{label}: set_result {fut} -> {}", ok_or_exc(&r)));
        }
        Stmt::SetException { fut, msg } => {
            let r = c.fut(fut).set_exception(Error::value(msg.clone()));
            c.log(format!("{label}: set_exception {fut} -> {}", ok_or_exc(&r)));
        }
        Stmt::Cancel { target, msg } => {
            let r = match c.target(target) {
                None => "unbound",
                Some(t) => py_bool(match (t, msg) {
                    (Target::Task(t), None) => t.cancel(),
                    (Target::Task(t), Some(m)) => t.cancel_with_message(m),
                    (Target::Any(t), None) => t.cancel(),
                    (Target::Any(t), Some(m)) => t.cancel_with_message(m),
                    (Target::Fut(f), None) => f.cancel(),
                    (Target::Fut(f), Some(m)) => f.cancel_with_message(m),
                    (Target::Gather(Gathering::Values(g)), None) => g.cancel(),
                    (Target::Gather(Gathering::Values(g)), Some(m)) => g.cancel_with_message(m),
                    (Target::Gather(Gathering::Outcomes(g)), None) => g.cancel(),
                    (Target::Gather(Gathering::Outcomes(g)), Some(m)) => g.cancel_with_message(m),
                }),
            };
            c.log(format!("{label}: cancel {target} -> {r}"));
        }
        Stmt::CallSoon { cb } => {
            if let Err(e) = c.loop_.call_soon(callback(c, cb)) {
                return Some(Err(e));
            }
        }
        Stmt::CallLater { cb } => {
            if let Err(e) = c.loop_.call_later(0, callback(c, cb)) {
                return Some(Err(e));
            }
        }
        Stmt::CallSoonThreadsafe { cb } => {
            let trace = c.trace.clone();
            let line = format!("cb {}", cb.label);
            assert!(cb.acts.is_empty(), "threadsafe callbacks only log");
            let r = c
                .loop_
                .call_soon_threadsafe(move || trace.lock().unwrap().push(line));
            if let Err(e) = r {
                return Some(Err(e));
            }
        }
        Stmt::AddDoneCallback { target, cb } => {
            let run = callback(c, cb);
            match c.target(target) {
                None => c.log(format!("{label}: add_done_callback {target} unbound")),
                Some(Target::Task(t)) => {
                    t.add_done_callback(move |_: &Future<i64>| run());
                }
                Some(Target::Any(t)) => {
                    t.add_done_callback(run);
                }
                Some(Target::Fut(f)) => {
                    f.add_done_callback(move |_: &Future<i64>| run());
                }
                Some(Target::Gather(Gathering::Values(g))) => {
                    g.add_done_callback(move |_| run());
                }
                Some(Target::Gather(Gathering::Outcomes(g))) => {
                    g.add_done_callback(move |_| run());
                }
            }
        }
        Stmt::Result { target } => {
            let r = match c.target(target) {
                None => "unbound".to_owned(),
                Some(Target::Task(t)) => format!("-> {}", outcome(&t.result())),
                Some(Target::Fut(f)) => format!("-> {}", outcome(&f.result())),
                Some(Target::Any(_) | Target::Gather(_)) => {
                    panic!("result() of {target}: not a Task<i64>")
                }
            };
            c.log(format!("{label}: result {target} {r}"));
        }
        Stmt::Exception { target } => {
            let r = match c.target(target) {
                None => "unbound".to_owned(),
                Some(Target::Task(t)) => format!("-> {}", exception_repr(t.exception())),
                Some(Target::Fut(f)) => format!("-> {}", exception_repr(f.exception())),
                Some(Target::Any(_) | Target::Gather(_)) => {
                    panic!("exception() of {target}: not a Task<i64>")
                }
            };
            c.log(format!("{label}: exception {target} {r}"));
        }
        Stmt::Name { task } => {
            let name = match c.tasks.borrow().get(task) {
                Some(t) => c.norm_name(&t.get_name()),
                None => "unbound".to_owned(),
            };
            c.log(format!("{label}: name {task} = {name}"));
        }
        Stmt::Status { target } => {
            let line = match c.target(target) {
                None => format!("{label}: status {target} unbound"),
                Some(Target::Fut(f)) => format!(
                    "{label}: status {target} done={} cancelled={}",
                    py_bool(f.done()),
                    py_bool(f.cancelled())
                ),
                Some(Target::Gather(g)) => {
                    let (done, cancelled) = match g {
                        Gathering::Values(g) => (g.done(), g.cancelled()),
                        Gathering::Outcomes(g) => (g.done(), g.cancelled()),
                    };
                    format!(
                        "{label}: status {target} done={} cancelled={}",
                        py_bool(done),
                        py_bool(cancelled)
                    )
                }
                Some(Target::Task(t)) => format!(
                    "{label}: status {target} done={} cancelled={} cancelling={}",
                    py_bool(t.done()),
                    py_bool(t.cancelled()),
                    t.cancelling()
                ),
                Some(Target::Any(t)) => format!(
                    "{label}: status {target} done={} cancelled={} cancelling={}",
                    py_bool(t.done()),
                    py_bool(t.cancelled()),
                    t.cancelling()
                ),
            };
            c.log(line);
        }
        _ => return None,
    }
    Some(Ok(()))
}

/// Python's `ok None` / `ok ValueError('e')` / `exc CancelledError()` of
/// calling `exception()`.
fn exception_repr(r: Result<Option<Error>>) -> String {
    match r {
        Ok(None) => "ok None".to_owned(),
        Ok(Some(e)) => format!("ok {e:?}"),
        Err(e) => format!("exc {e:?}"),
    }
}

/// ` cancelling=N` when a task has pending cancellation requests.
fn cancelling_suffix(n: u32) -> String {
    if n > 0 {
        format!(" cancelling={n}")
    } else {
        String::new()
    }
}

fn final_state(f: &Future<i64>) -> String {
    if !f.done() {
        "pending".to_owned()
    } else if f.cancelled() {
        "cancelled".to_owned()
    } else {
        outcome(&f.result())
    }
}

fn ok_or_exc(r: &Result<()>) -> String {
    match r {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("exc {e:?}"),
    }
}

fn callback(c: &C, cb: &Cb) -> impl FnOnce() + 'static {
    let c = c.clone();
    let cb = cb.clone();
    move || {
        let label = format!("cb {}", cb.label);
        c.log(label.clone());
        for act in &cb.acts {
            if let Some(Err(e)) = do_act(&c, &label, act) {
                c.log(format!("{label}: raised {e:?}"));
            }
        }
    }
}

/// Python's `make_aw`; `Ok(None)` when it names a task not created yet.
fn make_aw(c: &C, aw: &AwSpec) -> Result<Option<Aw>> {
    Ok(Some(match aw {
        AwSpec::Task { name } => match c.tasks.borrow().get(name) {
            Some(t) => Aw::Fut(t.clone().into()),
            None => return Ok(None),
        },
        AwSpec::Fut { name } => Aw::Fut(c.fut(name)),
        AwSpec::Coro { label, body, ret } => Aw::Coro(run_coro(c, label, body, *ret)),
        AwSpec::Sleep { value } => Aw::Coro(Box::pin(asyncio::sleep_with(0, *value))),
        AwSpec::Shield { inner } => match make_aw(c, inner)? {
            Some(inner) => Aw::Fut(asyncio::shield(inner)?),
            None => return Ok(None),
        },
        AwSpec::WaitFor { inner, timeout } => match make_aw(c, inner)? {
            Some(inner) => Aw::Coro(Box::pin(asyncio::wait_for(inner, *timeout))),
            None => return Ok(None),
        },
    }))
}

fn make_items(c: &C, label: &str, tag: &str, items: &[AwSpec]) -> Result<Vec<Aw>> {
    let mut out = Vec::new();
    for (i, aw) in items.iter().enumerate() {
        match make_aw(c, aw)? {
            Some(a) => out.push(a),
            None => c.log(format!("{label}: {tag}[{i}] unbound")),
        }
    }
    Ok(out)
}

fn run_coro(c: &C, label: &str, body: &[Stmt], ret: i64) -> Coro<i64> {
    let block = run_block(c.clone(), Rc::from(label), body.to_vec());
    Box::pin(async move { Ok(block.await?.unwrap_or(ret)) })
}

fn spawn(c: &C, st: &SpawnSt, group: Option<TaskGroup>) -> Result<()> {
    let coro = run_coro(c, &st.task, &st.body, st.ret);
    let task = match (group, &st.name) {
        (Some(g), Some(n)) => g.create_task_named(coro, n.clone())?,
        (Some(g), None) => g.create_task(coro)?,
        (None, Some(n)) => asyncio::create_task_named(coro, n.clone())?,
        (None, None) => asyncio::create_task(coro)?,
    };
    c.tasks.borrow_mut().insert(st.task.clone(), task.clone());
    c.order.borrow_mut().push(st.task.clone());
    let (c2, name) = (c.clone(), st.task.clone());
    let me = task.clone();
    task.add_done_callback(move |t: &Future<i64>| {
        let n = cancelling_suffix(me.cancelling());
        c2.log(format!("done {name}: {}{n}", final_state(t)));
    });
    Ok(())
}

fn is_caught(kind: &str, e: &Error) -> bool {
    match kind {
        "any" => true,
        "Exception" => !e.is_cancelled(),
        k => e.python_name() == k,
    }
}

/// Runs the statements; `Some(v)` if one of them was `return v`.
fn run_block(c: C, label: Rc<str>, block: Vec<Stmt>) -> Coro<Option<i64>> {
    Box::pin(async move {
        for st in &block {
            if let Some(v) = run_stmt(&c, &label, st).await? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    })
}

/// Logs `<what> -> <ok(value)>` or `<what> -> exc <repr>`; `Err` if the
/// error must propagate.
fn report<T>(
    c: &Ctx,
    what: String,
    r: Result<T>,
    ok: impl FnOnce(T) -> String,
    reraise: bool,
) -> Result<()> {
    match r {
        Ok(v) => {
            c.log(format!("{what} -> {}", ok(v)));
            Ok(())
        }
        Err(e) => {
            c.log(format!("{what} -> exc {e:?}"));
            if reraise {
                Err(e)
            } else {
                Ok(())
            }
        }
    }
}

async fn run_stmt(c: &C, label: &str, st: &Stmt) -> Result<Option<i64>> {
    if let Some(r) = do_act(c, label, st) {
        r?;
        return Ok(None);
    }
    match st {
        Stmt::Sleep => asyncio::sleep(0).await?,
        Stmt::Spawn(s) => spawn(c, s, None)?,
        Stmt::TgSpawn(s) => {
            let group = s.group.as_ref().expect("tg_spawn names its group");
            let tg = c
                .groups
                .borrow()
                .get(group)
                .cloned()
                .expect("group entered");
            spawn(c, s, Some(tg))?;
        }
        Stmt::Await { tag, aw, reraise } => match make_aw(c, aw)? {
            None => c.log(format!("{label}: {tag} unbound")),
            Some(aw) => report(
                c,
                format!("{label}: {tag}"),
                aw.await,
                |v| format!("ok {v}"),
                *reraise,
            )?,
        },
        Stmt::Gather {
            tag,
            items,
            return_exceptions,
            reraise,
            bind,
        } => {
            let items = make_items(c, label, tag, items)?;
            let what = format!("{label}: {tag}");
            let g = asyncio::gather(items);
            if *return_exceptions {
                let g = g.return_exceptions();
                if *bind {
                    let kept = Gathering::Outcomes(g.clone());
                    c.gathers.borrow_mut().insert(tag.clone(), kept);
                }
                let outcomes = |v: Vec<Result<i64>>| {
                    let reprs: Vec<String> = v
                        .iter()
                        .map(|r| match r {
                            Ok(v) => v.to_string(),
                            Err(e) => format!("{e:?}"),
                        })
                        .collect();
                    format!("ok [{}]", reprs.join(", "))
                };
                report(c, what, g.await, outcomes, *reraise)?;
            } else {
                if *bind {
                    let kept = Gathering::Values(g.clone());
                    c.gathers.borrow_mut().insert(tag.clone(), kept);
                }
                report(c, what, g.await, |v| format!("ok {v:?}"), *reraise)?;
            }
        }
        Stmt::Wait {
            tag,
            items,
            return_when,
            timeout,
            reraise,
        } => {
            let mut names: Vec<&str> = Vec::new();
            let mut futs: Vec<Future<i64>> = Vec::new();
            for n in items {
                match c.target(n) {
                    None => c.log(format!("{label}: {tag} {n} unbound")),
                    Some(_) if names.contains(&n.as_str()) => {}
                    Some(Target::Task(t)) => {
                        names.push(n);
                        futs.push(t.into());
                    }
                    Some(Target::Fut(f)) => {
                        names.push(n);
                        futs.push(f);
                    }
                    Some(Target::Any(_) | Target::Gather(_)) => {
                        panic!("wait takes tasks and futures: {n}")
                    }
                }
            }
            let return_when = match return_when.as_str() {
                "FIRST_COMPLETED" => ReturnWhen::FirstCompleted,
                "FIRST_EXCEPTION" => ReturnWhen::FirstException,
                "ALL_COMPLETED" => ReturnWhen::AllCompleted,
                other => panic!("return_when {other}"),
            };
            let mut w = asyncio::wait(futs.clone()).return_when(return_when);
            if let Some(t) = timeout {
                w = w.timeout(*t);
            }
            let done_pending = |_| {
                let mut done = Vec::new();
                let mut pending = Vec::new();
                for (n, f) in names.iter().zip(&futs) {
                    if f.done() {
                        done.push(*n);
                    } else {
                        pending.push(*n);
                    }
                }
                format!("done={} pending={}", py_list(&done), py_list(&pending))
            };
            report(
                c,
                format!("{label}: {tag}"),
                w.await,
                done_pending,
                *reraise,
            )?;
        }
        Stmt::AsCompleted {
            tag,
            items,
            timeout,
            reraise,
        } => {
            let mut it = asyncio::as_completed(make_items(c, label, tag, items)?);
            if let Some(t) = timeout {
                it = it.timeout(*t);
            }
            for (i, next) in it.enumerate() {
                report(
                    c,
                    format!("{label}: {tag}#{i}"),
                    next.await,
                    |v| format!("ok {v}"),
                    *reraise,
                )?;
            }
        }
        Stmt::Uncancel => c.log(format!(
            "{label}: uncancel -> {}",
            current_task().uncancel()
        )),
        Stmt::Cancelling => c.log(format!(
            "{label}: cancelling -> {}",
            current_task().cancelling()
        )),
        Stmt::Try {
            tag,
            catch,
            body,
            uncancel,
            reraise,
        } => match run_block(c.clone(), Rc::from(label), body.clone()).await {
            Ok(r) => return Ok(r),
            Err(e) if !is_caught(catch, &e) => return Err(e),
            Err(e) => {
                let n = current_task().cancelling();
                c.log(format!("{label}: {tag} caught {e:?} cancelling={n}"));
                if *uncancel {
                    c.log(format!(
                        "{label}: {tag} uncancel -> {}",
                        current_task().uncancel()
                    ));
                }
                if *reraise {
                    return Err(e);
                }
            }
        },
        Stmt::Raise { kind, msg } => {
            return Err(match kind.as_str() {
                "CancelledError" => Error::cancelled(Some(msg)),
                _ => Error::value(msg.clone()),
            })
        }
        Stmt::Timeout { tag, delay, body } => {
            let cm = asyncio::timeout(*delay);
            c.cms.borrow_mut().insert(tag.clone(), cm.clone());
            let r = cm
                .run(run_block(c.clone(), Rc::from(label), body.clone()))
                .await?;
            c.log(format!(
                "{label}: {tag} exit expired={}",
                py_bool(cm.expired())
            ));
            return Ok(r);
        }
        Stmt::Reschedule { cm, when } => {
            let timeout = c.cms.borrow().get(cm).cloned().expect("timeout entered");
            timeout.reschedule(when.as_ref().map(|_| c.loop_.time()))?;
            let when = when.as_deref().unwrap_or("None");
            c.log(format!("{label}: reschedule {cm} {when}"));
        }
        Stmt::Taskgroup { tag, body } => {
            let tg = TaskGroup::new();
            c.groups.borrow_mut().insert(tag.clone(), tg.clone());
            let r = tg
                .run(run_block(c.clone(), Rc::from(label), body.clone()))
                .await?;
            c.log(format!("{label}: {tag} exit"));
            return Ok(r);
        }
        Stmt::Return { value } => return Ok(Some(*value)),
        _ => unreachable!("acts are run by do_act"),
    }
    Ok(None)
}

fn backstop(c: C, n: u32) {
    if n > 0 {
        let c2 = c.clone();
        c.loop_
            .call_soon(move || backstop(c2, n - 1))
            .expect("loop open");
        return;
    }
    for (name, f) in &c.futs {
        if !f.done() {
            f.set_result(-1).expect("pending future");
            c.log(format!("backstop {name}"));
        }
    }
}

/// Runs `prog` on a fresh loop and returns its trace, as gen.py's `run_program`.
fn run_program(prog: &Program) -> Vec<String> {
    let loop_ = asyncio::new_event_loop().expect("new_event_loop");
    loop_.set_exception_handler(Some(|_: &EventLoop, _: &ExceptionContext| {}));
    if prog.eager {
        loop_.set_task_factory(Some(asyncio::eager_task_factory()));
    }
    let c: C = Rc::new(Ctx {
        loop_: loop_.clone(),
        trace: Trace::default(),
        tasks: RefCell::default(),
        futs: (0..prog.futures)
            .map(|i| (format!("f{i}"), loop_.create_future()))
            .collect(),
        groups: RefCell::default(),
        gathers: RefCell::default(),
        cms: RefCell::default(),
        order: RefCell::default(),
        main: RefCell::default(),
        main_num: Cell::new(0),
    });

    let main = {
        let (c, block) = (c.clone(), prog.main.clone());
        async move {
            let me = current_task();
            let name = me.get_name();
            c.main_num.set(
                name.strip_prefix("Task-")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            );
            *c.main.borrow_mut() = Some(me);
            let c2 = c.clone();
            c.loop_.call_soon(move || backstop(c2, BACKSTOP))?;
            match run_block(c.clone(), Rc::from("main"), block).await {
                Ok(r) => c.log(format!("main: return {}", py_opt(r))),
                Err(e) => c.log(format!("main: exc {e:?}")),
            }
            Ok(())
        }
    };
    if let Err(e) = loop_.run_until_complete(main) {
        c.log(format!("-- main failed: {e:?}"));
    }
    c.log("-- main done");
    for act in &prog.outside {
        if let Some(Err(e)) = do_act(&c, "outside", act) {
            c.log(format!("outside: raised {e:?}"));
        }
    }
    let settle = {
        let c = c.clone();
        async move {
            for _ in 0..SETTLE {
                if c.tasks.borrow().values().all(|t| t.done()) {
                    break;
                }
                asyncio::sleep(0).await?;
            }
            Ok(())
        }
    };
    if let Err(e) = loop_.run_until_complete(settle) {
        c.log(format!("-- settle failed: {e:?}"));
    }
    c.log("-- settled");
    // (Not `outcome`: see gen.py's `final_state`.)
    let tasks: Vec<(String, Future<i64>)> = c
        .order
        .borrow()
        .iter()
        .map(|n| (n.clone(), c.tasks.borrow()[n].clone().into()))
        .collect();
    for (name, f) in tasks.iter().chain(&c.futs) {
        c.log(format!("final {name}: {}", final_state(f)));
    }
    let trace = c.trace.lock().unwrap().clone();
    // Break the cycles between the context and the tasks it names.
    c.tasks.borrow_mut().clear();
    c.groups.borrow_mut().clear();
    c.gathers.borrow_mut().clear();
    c.cms.borrow_mut().clear();
    c.main.borrow_mut().take();
    let _ = loop_.close();
    trace
}

// ===== the test driver =====

/// Runs `prog` on a thread of its own, so that a hang or a panic is reported
/// as this case's failure instead of stopping the run.
fn run_isolated(prog: &Program) -> std::result::Result<Vec<String>, String> {
    let (tx, rx) = mpsc::channel();
    let prog = prog.clone();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_program(&prog)));
        let _ = tx.send(r.map_err(|p| {
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        }));
    });
    match rx.recv_timeout(CASE_TIMEOUT) {
        Ok(Ok(trace)) => Ok(trace),
        Ok(Err(msg)) => Err(format!("panicked: {msg}")),
        Err(_) => Err(format!("hung (no result within {CASE_TIMEOUT:?})")),
    }
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential")
}

fn load_case(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn known_failures() -> BTreeMap<String, String> {
    let path = cases_dir().join("known_failures.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((id, reason)) => (id.to_owned(), reason.trim().to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

/// The `[category]` at the end of a known failure's reason (else the reason).
fn category(reason: &str) -> &str {
    reason
        .rsplit_once('[')
        .and_then(|(_, c)| c.strip_suffix(']'))
        .unwrap_or(reason)
}

/// The index of the first differing line, if the traces differ.
fn first_difference(expected: &[String], actual: &[String]) -> Option<usize> {
    let n = expected.len().max(actual.len());
    (0..n).find(|&i| expected.get(i) != actual.get(i))
}

fn describe(path: &Path, case: &Case, actual: &std::result::Result<Vec<String>, String>) -> String {
    let mut out = format!("=== {} ===\n", path.display());
    out += &format!(
        "program: {}\n",
        serde_json::to_string(
            &serde_json::from_str::<serde_json::Value>(
                &std::fs::read_to_string(path).unwrap_or_default()
            )
            .map(|v| v["program"].clone())
            .unwrap_or_default()
        )
        .unwrap_or_default()
    );
    let actual = match actual {
        Ok(t) => t,
        Err(why) => {
            out += &format!("Rust run {why}\n");
            return out;
        }
    };
    let diff = first_difference(&case.expected_trace, actual).unwrap_or(usize::MAX);
    let side = |name: &str, trace: &[String]| {
        let mut s = format!("--- {name} ({} lines)\n", trace.len());
        for (i, l) in trace.iter().enumerate() {
            let mark = if i == diff { ">>" } else { "  " };
            s += &format!("{mark}{i:4} {l}\n");
        }
        s
    };
    out += &side("CPython 3.13 (expected)", &case.expected_trace);
    out += &side("asyncio-rs (actual)", actual);
    out += &format!(
        "first difference at line {diff}:\n  expected: {:?}\n  actual:   {:?}\n",
        case.expected_trace.get(diff),
        actual.get(diff)
    );
    out
}

#[test]
fn differential() {
    if let Ok(paths) = std::env::var("DIFFTEST_CASE") {
        // For minimize.py: one `DIFFTEST TRACE <json>` line per case.
        let quiet = std::env::var_os("DIFFTEST_QUIET").is_some();
        for p in paths.split(',') {
            let path = PathBuf::from(p);
            let case = load_case(&path);
            let actual = run_isolated(&case.program);
            let same = matches!(&actual, Ok(t) if *t == case.expected_trace);
            if !quiet {
                println!("{}", describe(&path, &case, &actual));
                println!(
                    "{}: {}",
                    path.display(),
                    if same { "match" } else { "MISMATCH" }
                );
            }
            let json = match &actual {
                Ok(t) => serde_json::to_string(t),
                Err(why) => serde_json::to_string(&[format!("RUST {why}")]),
            };
            println!("DIFFTEST TRACE {}", json.expect("json"));
        }
        return;
    }

    let verbose = std::env::var_os("DIFFTEST_VERBOSE").is_some();
    // Another directory of cases (fresh seeds): no known failures there, and
    // one line per mismatch unless verbose.
    let other_dir = std::env::var_os("DIFFTEST_DIR").map(PathBuf::from);
    let known = match other_dir {
        Some(_) => BTreeMap::new(),
        None => known_failures(),
    };
    let dir = other_dir
        .clone()
        .unwrap_or_else(|| cases_dir().join("cases"));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no cases: run tests/differential/gen.py");

    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    // category -> ids of the known failures still failing
    let mut still_known: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &paths {
        let id = path.file_stem().unwrap().to_string_lossy().into_owned();
        let case = load_case(path);
        let actual = run_isolated(&case.program);
        let same = matches!(&actual, Ok(t) if *t == case.expected_trace);
        match (same, known.get(&id)) {
            (true, None) => {}
            (true, Some(reason)) => now_passing.push(format!("{id} {reason}")),
            (false, Some(reason)) => {
                if verbose {
                    println!("{}", describe(path, &case, &actual));
                }
                still_known
                    .entry(category(reason).to_owned())
                    .or_default()
                    .push(id);
            }
            (false, None) if other_dir.is_some() && !verbose => {
                let at = match &actual {
                    Ok(t) => format!("line {:?}", first_difference(&case.expected_trace, t)),
                    Err(why) => why.clone(),
                };
                unexpected.push(format!("MISMATCH {} at {at}", path.display()));
            }
            (false, None) => unexpected.push(describe(path, &case, &actual)),
        }
    }
    let n_known: usize = still_known.values().map(Vec::len).sum();
    // Written past libtest's capture, so that a passing run shows it too.
    let mut report = format!(
        "differential: {} cases, {} match CPython 3.13, {} known failures, {} unexpected mismatches\n",
        paths.len(),
        paths.len() - n_known - unexpected.len(),
        n_known,
        unexpected.len()
    );
    for (cat, ids) in &still_known {
        report += &format!("  known [{cat}] {}: {}\n", ids.len(), ids.join(" "));
    }
    for line in &now_passing {
        report += &format!("  NOW PASSING, delete its line from known_failures.txt: {line}\n");
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr(), report.as_bytes());
    for u in &unexpected {
        println!("{u}");
    }
    assert!(
        unexpected.is_empty(),
        "{} cases differ from CPython and are not in known_failures.txt",
        unexpected.len()
    );
}
