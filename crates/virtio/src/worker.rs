//! A device's worker thread: it sleeps on the queues' eventfds and runs the device's handler
//! for each queue the driver notified, so that the vCPU thread only ever signals an eventfd.

use std::io;
use std::os::unix::io::AsRawFd;
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// A running worker thread; dropping it (or [`Worker::stop`]) stops it and waits for it.
pub struct Worker {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts a thread named `name` that calls `handler(i)` each time `events[i]` is signalled
    /// (after consuming the eventfd's counter), until the worker is stopped.
    pub fn spawn<F>(name: &str, events: Vec<EventFd>, mut handler: F) -> io::Result<Self>
    where
        F: FnMut(usize) + Send + 'static,
    {
        let stop = EventFd::new(EFD_NONBLOCK)?;
        let epoll = Epoll::new()?;
        let stop_token = events.len() as u64;
        epoll.ctl(ControlOperation::Add, stop.as_raw_fd(), EpollEvent::new(EventSet::IN, stop_token))?;
        for (i, event) in events.iter().enumerate() {
            epoll.ctl(ControlOperation::Add, event.as_raw_fd(), EpollEvent::new(EventSet::IN, i as u64))?;
        }
        let thread_stop = stop.try_clone()?;
        let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let _stop = thread_stop;
            let mut ready = vec![EpollEvent::default(); events.len() + 1];
            loop {
                let n = match epoll.wait(-1, &mut ready) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::error!("virtio worker: epoll failed: {e}; the device stops");
                        return;
                    }
                };
                for ev in &ready[..n] {
                    let token = ev.data();
                    if token == stop_token {
                        return;
                    }
                    let Some(event) = usize::try_from(token).ok().and_then(|i| events.get(i)) else {
                        continue;
                    };
                    // A failed read only means another wake-up already took the count.
                    let _ = event.read();
                    handler(token as usize);
                }
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops the thread and waits until it has returned.
    pub fn stop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if let Err(e) = self.stop.write(1) {
                log::error!("virtio worker: cannot signal stop: {e}");
            }
            if thread.join().is_err() {
                log::error!("virtio worker: the thread panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn handler_runs_for_each_signalled_queue_and_stops() {
        let a = EventFd::new(EFD_NONBLOCK).unwrap();
        let b = EventFd::new(EFD_NONBLOCK).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut w =
            Worker::spawn("test-worker", vec![a.try_clone().unwrap(), b.try_clone().unwrap()], move |i| {
                tx.send(i).unwrap()
            })
            .unwrap();
        b.write(1).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        a.write(3).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
        w.stop();
        a.write(1).unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    }
}
