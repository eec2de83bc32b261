//! `--timeout` (uWSGI's harakiri): a request running longer is logged with the Python stack
//! of every thread, answered 504 (if nothing was sent yet) and its worker process replaced.
//! A thread of its own checks the clock, so it works while the stuck thread holds the GIL.

use crate::wsgi;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What the watchdog calls on a stuck request before replacing the worker: answer 504 if
/// nothing was sent yet, end the request either way (the gateway knows how).
pub type OnTimeout = Arc<dyn Fn() + Send + Sync>;

/// Requests in progress in this process, by request thread: since when, which id, what to
/// call if it runs too long.
type BusyMap = Mutex<HashMap<std::thread::ThreadId, (Instant, u16, OnTimeout)>>;

fn busy() -> &'static BusyMap {
    static BUSY: OnceLock<BusyMap> = OnceLock::new();
    BUSY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The exit status of a worker replaced by the watchdog (its zygote forks another at once).
pub const EXIT_TIMED_OUT: i32 = 0;

/// Marks the current thread busy with a request until dropped.
pub struct Busy(bool);

impl Busy {
    /// `on_timeout` is only made when the watchdog is enabled.
    pub fn enter(enabled: bool, id: u16, on_timeout: impl FnOnce() -> OnTimeout) -> Busy {
        if enabled {
            busy().lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(std::thread::current().id(), (Instant::now(), id, on_timeout()));
        }
        Busy(enabled)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0 {
            busy().lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&std::thread::current().id());
        }
    }
}

/// The signal faulthandler dumps every Python thread's stack on (set up in `arm`).
const DUMP_SIGNAL: i32 = libc::SIGUSR2;

/// Start the watchdog thread of this worker process, after registering faulthandler on
/// `DUMP_SIGNAL` (its C handler prints stacks without needing the GIL).
pub fn arm(timeout: Duration) {
    if let Err(e) = wsgi::process::register_stack_dump(DUMP_SIGNAL) {
        log::warn!("--timeout: cannot register faulthandler, stuck requests will be logged without a stack: {e}");
    }
    let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250).min(timeout / 4).max(Duration::from_millis(10)));
        let stuck = {
            let map = busy().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.values().find(|(since, _, _)| since.elapsed() > timeout).map(|(since, id, on_timeout)| (since.elapsed(), *id, on_timeout.clone()))
        };
        if let Some((elapsed, id, on_timeout)) = stuck {
            log::error!(
                "request {id} has run for {:.1} s, over --timeout {} s: the Python stacks follow; replacing this worker",
                elapsed.as_secs_f64(),
                timeout.as_secs()
            );
            // Delivered to this thread; faulthandler's handler is async-signal-safe.
            crate::sys::raise(DUMP_SIGNAL);
            on_timeout();
            // Ends this worker at once; its zygote forks a replacement.
            crate::sys::exit_now(EXIT_TIMED_OUT);
        }
    });
    if let Err(e) = spawned {
        log::error!("--timeout: cannot start the watchdog: {e}");
    }
}
