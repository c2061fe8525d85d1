//! Termination signals, turned into events for the main loop by a dedicated thread.

use std::sync::mpsc::Sender;

use crate::events::Event;

const HANDLED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the termination signals in this thread (and every thread spawned after it), and
/// starts a thread that receives them with sigwait and forwards them as [`Event::Signal`].
pub fn start(events: Sender<Event>) -> std::io::Result<()> {
    let set = handled_set();
    // SAFETY: changes only this thread's signal mask, with a valid set.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new().name("signals".into()).spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait with a valid set and an out pointer to a local.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 && events.send(Event::Signal(sig)).is_err() {
            return;
        }
    })?;
    Ok(())
}
