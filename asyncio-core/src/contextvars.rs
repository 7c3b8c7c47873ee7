//! Context variables (Python's `contextvars`): values that follow the
//! logical flow of a program rather than its thread.
//!
//! As in CPython, every task runs in its own copy of the context current
//! when it was created, and every callback (`call_soon`, `call_later`,
//! `call_at`, done callbacks) in a copy of the context current when it was
//! scheduled; a [`Context`] given explicitly (`call_soon_in`,
//! `create_task_in`) is used itself, so what the code sets there stays.
//!
//! ```
//! use asyncio_core::contextvars::{copy_context, ContextVar};
//!
//! static REQUEST_ID: ContextVar<u64> = ContextVar::new("request_id");
//!
//! let loop_ = asyncio_core::testing::new_test_loop();
//! loop_.run_until_complete(async {
//!     REQUEST_ID.set(1);
//!     let child = asyncio_core::create_task(async {
//!         // A copy of the creator's context: sees 1, and its own set
//!         // does not leak back.
//!         assert_eq!(REQUEST_ID.get()?, 1);
//!         REQUEST_ID.set(2);
//!         Ok(())
//!     })?;
//!     child.await?;
//!     assert_eq!(REQUEST_ID.get()?, 1);
//!     let ctx = copy_context();
//!     ctx.run(|| REQUEST_ID.set(3))?;
//!     assert_eq!(ctx.get(&REQUEST_ID), Some(3));
//!     assert_eq!(REQUEST_ID.get()?, 1);
//!     Ok(())
//! })?;
//! # Ok::<(), asyncio_core::Error>(())
//! ```

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::exceptions::{py_str_repr, Error, ErrorKind, Result};

/// The values of one context: an immutable map from variable ids, shared
/// between copies until one of them changes (then that one gets its own).
#[derive(Clone, Default)]
pub(crate) struct Vars {
    entries: Vec<(u64, Rc<dyn Any>)>,
}

/// A context's values; `None` is the empty context (the common case, which
/// costs nothing to copy or enter).
pub(crate) type Snapshot = Option<Rc<Vars>>;

impl Vars {
    fn get(&self, id: u64) -> Option<&Rc<dyn Any>> {
        self.entries.iter().find(|(i, _)| *i == id).map(|(_, v)| v)
    }

    fn with(snapshot: &Snapshot, id: u64, value: Option<Rc<dyn Any>>) -> Snapshot {
        let mut vars = snapshot.as_deref().cloned().unwrap_or_default();
        vars.entries.retain(|(i, _)| *i != id);
        if let Some(v) = value {
            vars.entries.push((id, v));
        }
        if vars.entries.is_empty() {
            None
        } else {
            Some(Rc::new(vars))
        }
    }
}

/// Variable identities, unique in the process.
static NEXT_VAR_ID: AtomicU64 = AtomicU64::new(1);

/// Set by the first `ContextVar::set` of the process. Until then every
/// context is empty, so callbacks and tasks need not switch contexts at
/// all: a program that never uses context variables pays one relaxed load
/// per callback for them.
static IN_USE: AtomicBool = AtomicBool::new(false);

#[inline]
pub(crate) fn in_use() -> bool {
    IN_USE.load(Ordering::Relaxed)
}

/// The first value was set inside a callback or task step run without a
/// context switch: take it back out of the thread's base context.
fn take_first_values() -> Snapshot {
    CURRENT.with(|c| c.borrow_mut().vars.take())
}

/// The context the code on this thread runs in. Contexts never leave their
/// thread (they hold `Rc`s), so their identities count per thread; 0 is the
/// thread's base context.
struct Current {
    vars: Snapshot,
    id: u64,
    next_id: u64,
}

thread_local! {
    static CURRENT: RefCell<Current> = const {
        RefCell::new(Current { vars: None, id: 0, next_id: 1 })
    };
}

fn current_snapshot() -> Snapshot {
    CURRENT.with(|c| c.borrow().vars.clone())
}

fn new_context_id() -> u64 {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        c.next_id += 1;
        c.next_id
    })
}

/// Replaces the current context (a fresh identity when `id` is `None`),
/// returning the one it replaces.
fn swap_current(vars: Snapshot, id: Option<u64>) -> (Snapshot, u64) {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let id = id.unwrap_or_else(|| {
            c.next_id += 1;
            c.next_id
        });
        let old = (c.vars.take(), c.id);
        c.vars = vars;
        c.id = id;
        old
    })
}

/// What a callback runs in: `None` is a copy of the empty context (the
/// common case, one null pointer in every handle); otherwise a copy of
/// some values, or a context given explicitly.
#[derive(Clone, Default)]
pub(crate) struct RunContext(Option<Rc<RunContextKind>>);

enum RunContextKind {
    /// A private copy of the values current when the callback was
    /// scheduled (CPython makes a new `Context` object with
    /// `copy_context()`); what the code sets there is dropped afterwards.
    Copy(Rc<Vars>),
    /// A context given explicitly, used itself.
    Given(Context),
}

impl RunContext {
    /// A copy of the current context.
    #[inline]
    pub(crate) fn capture() -> RunContext {
        if !in_use() {
            return RunContext(None);
        }
        RunContext(current_snapshot().map(|vars| Rc::new(RunContextKind::Copy(vars))))
    }

    /// `context` itself (`context=ctx`).
    pub(crate) fn given(context: &Context) -> RunContext {
        RunContext(Some(Rc::new(RunContextKind::Given(context.clone()))))
    }

    /// `true` when running in this context needs no switch: an empty copy
    /// while no context variable was ever set.
    #[inline]
    pub(crate) fn is_trivial(&self) -> bool {
        self.0.is_none() && !in_use()
    }

    /// After a callback ran without a switch ([`is_trivial`](Self::is_trivial)):
    /// a first value it set belonged to its copy, which ends here.
    #[inline]
    pub(crate) fn after_trivial_run() {
        if in_use() {
            drop(take_first_values());
        }
    }

    /// Runs `f` in this context. A given context already entered is
    /// CPython's `RuntimeError("cannot enter context: … is already entered")`.
    pub(crate) fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        if self.is_trivial() {
            let r = f();
            RunContext::after_trivial_run();
            return Ok(r);
        }
        let snapshot = match self.0.as_deref() {
            None => None,
            Some(RunContextKind::Copy(vars)) => Some(vars.clone()),
            Some(RunContextKind::Given(ctx)) => return ctx.run(f),
        };
        let previous = swap_current(snapshot, None);
        let _restore = Restore(Some(previous), None);
        Ok(f())
    }
}

/// Puts the previous context back (and the values set meanwhile into the
/// entered `Context`), also when `f` panics.
struct Restore<'a>(Option<(Snapshot, u64)>, Option<&'a Context>);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some((vars, id)) = self.0.take() {
            let (inside, _) = swap_current(vars, Some(id));
            if let Some(ctx) = self.1 {
                *ctx.inner.vars.borrow_mut() = inside;
                ctx.inner.entered.set(false);
            }
        }
    }
}

/// A task's context: its own copy (made when it was created), kept without
/// a `Context` object until one is asked for, or one given explicitly.
pub(crate) enum TaskContext {
    Own { vars: Snapshot, id: u64 },
    Given(Context),
}

impl TaskContext {
    /// A copy of the current context, for a new task (its identity is
    /// given when first needed: 0 is "none yet").
    pub(crate) fn capture() -> TaskContext {
        TaskContext::Own {
            vars: if in_use() { current_snapshot() } else { None },
            id: 0,
        }
    }

    /// Runs one step of the task in its context; what the step sets stays
    /// in the task's context.
    pub(crate) fn run<R>(cell: &RefCell<TaskContext>, f: impl FnOnce() -> R) -> R {
        if !in_use() && matches!(&*cell.borrow(), TaskContext::Own { vars: None, .. }) {
            let r = f();
            if in_use() {
                // The step set the process's first value: it is the task's.
                let first = take_first_values();
                if let TaskContext::Own { vars, .. } = &mut *cell.borrow_mut() {
                    *vars = first;
                }
            }
            return r;
        }
        let entered = {
            let mut context = cell.borrow_mut();
            match &mut *context {
                TaskContext::Own { vars, id } => {
                    if *id == 0 {
                        *id = new_context_id();
                    }
                    Some((vars.take(), *id))
                }
                TaskContext::Given(ctx) if !ctx.inner.entered.get() => {
                    ctx.inner.entered.set(true);
                    Some((ctx.inner.vars.borrow_mut().take(), ctx.inner.id))
                }
                // Entered further up this thread's stack: already current.
                TaskContext::Given(_) => None,
            }
        };
        let Some((vars, id)) = entered else {
            return f();
        };
        let previous = swap_current(vars, Some(id));
        struct Leave<'a>(&'a RefCell<TaskContext>, Option<(Snapshot, u64)>);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                let Some((vars, id)) = self.1.take() else {
                    return;
                };
                let (inside, _) = swap_current(vars, Some(id));
                match &mut *self.0.borrow_mut() {
                    TaskContext::Own { vars, .. } => *vars = inside,
                    TaskContext::Given(ctx) => {
                        *ctx.inner.vars.borrow_mut() = inside;
                        ctx.inner.entered.set(false);
                    }
                }
            }
        }
        let _leave = Leave(cell, Some(previous));
        f()
    }

    /// The task's context as a `Context` object (`Task.get_context()`),
    /// made on first request and the same object afterwards.
    pub(crate) fn as_context(cell: &RefCell<TaskContext>) -> Context {
        let mut context = cell.borrow_mut();
        if let TaskContext::Own { vars, id } = &mut *context {
            if *id == 0 {
                *id = new_context_id();
            }
            // Inside one of the task's own steps its values are the
            // thread's current ones: the new object starts entered.
            let running = CURRENT.with(|c| c.borrow().id == *id);
            let ctx = Context {
                inner: Rc::new(ContextInner {
                    id: *id,
                    vars: RefCell::new(vars.take()),
                    entered: Cell::new(running),
                }),
            };
            *context = TaskContext::Given(ctx);
        }
        match &*context {
            TaskContext::Given(ctx) => ctx.clone(),
            TaskContext::Own { .. } => unreachable!("converted above"),
        }
    }
}

// ===== Context =====

struct ContextInner {
    id: u64,
    /// The values while the context is not entered (while it is, they live
    /// in the thread's current context).
    vars: RefCell<Snapshot>,
    entered: Cell<bool>,
}

/// A mapping of context variables to values (Python's
/// `contextvars.Context`): made by [`copy_context`] or [`Context::new`],
/// entered with [`run`](Context::run).
#[derive(Clone)]
pub struct Context {
    inner: Rc<ContextInner>,
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

/// `contextvars.copy_context()`: a copy of the current context.
pub fn copy_context() -> Context {
    Context::from_snapshot(current_snapshot())
}

impl Context {
    /// An empty context (`contextvars.Context()`).
    pub fn new() -> Context {
        Context::from_snapshot(None)
    }

    pub(crate) fn from_snapshot(vars: Snapshot) -> Context {
        Context {
            inner: Rc::new(ContextInner {
                id: new_context_id(),
                vars: RefCell::new(vars),
                entered: Cell::new(false),
            }),
        }
    }

    /// Runs `f` in this context (`ctx.run(f)`): what `f` sets stays here;
    /// the caller's context is back afterwards.
    ///
    /// Errors: `RuntimeError("cannot enter context: <Context object at …>
    /// is already entered")`.
    pub fn run<R>(&self, f: impl FnOnce() -> R) -> Result<R> {
        if self.inner.entered.replace(true) {
            return Err(Error::runtime(format!(
                "cannot enter context: {self:?} is already entered"
            )));
        }
        let vars = self.inner.vars.borrow_mut().take();
        let previous = swap_current(vars, Some(self.inner.id));
        let _restore = Restore(Some(previous), Some(self));
        Ok(f())
    }

    /// A copy of this context (`ctx.copy()`).
    pub fn copy(&self) -> Context {
        Context::from_snapshot(self.snapshot())
    }

    /// The values, whether or not the context is entered now.
    fn snapshot(&self) -> Snapshot {
        if self.inner.entered.get() {
            CURRENT.with(|c| {
                let c = c.borrow();
                if c.id == self.inner.id {
                    c.vars.clone()
                } else {
                    self.inner.vars.borrow().clone()
                }
            })
        } else {
            self.inner.vars.borrow().clone()
        }
    }

    /// The value of `var` here (`ctx.get(var)`), `None` if unset.
    pub fn get<T: Clone + 'static>(&self, var: &ContextVar<T>) -> Option<T> {
        let snapshot = self.snapshot();
        snapshot
            .as_deref()?
            .get(var.id())?
            .downcast_ref::<T>()
            .cloned()
    }

    /// `var in ctx`.
    pub fn contains<T: 'static>(&self, var: &ContextVar<T>) -> bool {
        self.snapshot()
            .as_deref()
            .is_some_and(|v| v.get(var.id()).is_some())
    }

    /// `len(ctx)`: how many variables are set.
    pub fn len(&self) -> usize {
        self.snapshot().as_deref().map_or(0, |v| v.entries.len())
    }

    /// `true` when no variable is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` if both are the same context object (Python's `is`).
    pub fn ptr_eq(&self, other: &Context) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Context object at {:p}>", Rc::as_ptr(&self.inner))
    }
}

// ===== ContextVar =====

/// A context variable (Python's `contextvars.ContextVar`).
///
/// Declare it once — a `static` works for `Send + Sync` values — and read
/// or set it anywhere: the value is the one of the context the code runs
/// in. Values must be `Clone` (`get` returns a copy).
pub struct ContextVar<T> {
    name: &'static str,
    default: Option<T>,
    /// Given on first use, so that `new` can be `const`.
    id: AtomicU64,
    _values: PhantomData<fn() -> T>,
}

impl<T> ContextVar<T> {
    /// A variable without a default (`ContextVar('name')`).
    pub const fn new(name: &'static str) -> ContextVar<T> {
        ContextVar {
            name,
            default: None,
            id: AtomicU64::new(0),
            _values: PhantomData,
        }
    }

    /// A variable with a default (`ContextVar('name', default=…)`).
    pub const fn with_default(name: &'static str, default: T) -> ContextVar<T> {
        ContextVar {
            name,
            default: Some(default),
            id: AtomicU64::new(0),
            _values: PhantomData,
        }
    }

    /// The variable's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn id(&self) -> u64 {
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 {
            return id;
        }
        let fresh = NEXT_VAR_ID.fetch_add(1, Ordering::Relaxed);
        match self
            .id
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            Err(existing) => existing,
        }
    }
}

impl<T: Clone + 'static> ContextVar<T> {
    /// The value in the current context, if set there.
    fn lookup(&self) -> Option<T> {
        let id = self.id();
        CURRENT.with(|c| {
            c.borrow()
                .vars
                .as_deref()
                .and_then(|v| v.get(id))
                .and_then(|v| v.downcast_ref::<T>())
                .cloned()
        })
    }

    /// The value in the current context, else the default.
    ///
    /// Errors: `LookupError(<ContextVar name='…' at …>)` when neither exists.
    pub fn get(&self) -> Result<T> {
        match (self.lookup(), &self.default) {
            (Some(v), _) => Ok(v),
            (None, Some(d)) => Ok(d.clone()),
            (None, None) => Err(Error::new(ErrorKind::LookupError, self.repr())),
        }
    }

    /// `var.get(default)`: the value in the current context, else `default`
    /// (before the variable's own default).
    pub fn get_or(&self, default: T) -> T {
        self.lookup().unwrap_or(default)
    }

    /// Sets the value in the current context; the token undoes it
    /// ([`reset`](ContextVar::reset)).
    pub fn set(&self, value: T) -> Token<T> {
        IN_USE.store(true, Ordering::Relaxed);
        let id = self.id();
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            let old = c.vars.as_deref().and_then(|v| v.get(id)).cloned();
            c.vars = Vars::with(&c.vars, id, Some(Rc::new(value)));
            Token {
                var_id: id,
                var_repr: self.repr(),
                context_id: c.id,
                old,
                used: Cell::new(false),
                _values: PhantomData,
            }
        })
    }

    /// Restores the value the variable had before the `set` that made
    /// `token`.
    ///
    /// Errors: `RuntimeError("<Token used …> has already been used once")`;
    /// `ValueError("<Token …> was created by a different ContextVar")`;
    /// `ValueError("<Token …> was created in a different Context")`.
    pub fn reset(&self, token: &Token<T>) -> Result<()> {
        if token.used.get() {
            return Err(Error::runtime(format!(
                "{token:?} has already been used once"
            )));
        }
        let id = self.id();
        if token.var_id != id {
            return Err(Error::value(format!(
                "{token:?} was created by a different ContextVar"
            )));
        }
        CURRENT.with(|c| {
            let mut c = c.borrow_mut();
            if c.id != token.context_id {
                return Err(Error::value(format!(
                    "{token:?} was created in a different Context"
                )));
            }
            c.vars = Vars::with(&c.vars, id, token.old.clone());
            token.used.set(true);
            Ok(())
        })
    }

    fn repr(&self) -> String {
        // CPython shows the default's repr; here its type has no general
        // one, so only the name is shown.
        format!(
            "<ContextVar name={} at {:#x}>",
            py_str_repr(self.name),
            self.id()
        )
    }
}

impl<T: Clone + 'static> fmt::Debug for ContextVar<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr())
    }
}

/// What [`ContextVar::set`] returns: the way back to the previous value
/// (Python's `contextvars.Token`).
pub struct Token<T> {
    var_id: u64,
    var_repr: String,
    context_id: u64,
    old: Option<Rc<dyn Any>>,
    used: Cell<bool>,
    _values: PhantomData<fn() -> T>,
}

impl<T: Clone + 'static> Token<T> {
    /// The value before the `set` (`Token.old_value`); `None` for
    /// `Token.MISSING`.
    pub fn old_value(&self) -> Option<T> {
        self.old.as_ref()?.downcast_ref::<T>().cloned()
    }
}

impl<T> fmt::Debug for Token<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<Token{} var={} at {:p}>",
            if self.used.get() { " used" } else { "" },
            self.var_repr,
            self as *const Self
        )
    }
}
