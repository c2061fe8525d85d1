//! The VNC server's places. A viewer that completed the handshake is never turned away because
//! others sit idle: when every place is taken, the one heard from least recently is
//! disconnected to make room. Connections still in the handshake have an allowance of their
//! own, so a flood of them is refused but cannot push out a viewer that is already in.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The places of one server.
pub(crate) struct Slots {
    places: usize,
    handshakes: usize,
    /// `heard` times are nanoseconds since this.
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    handshaking: usize,
    seated: Vec<Seated>,
}

struct Seated {
    id: u64,
    peer: String,
    heard: Arc<AtomicU64>,
    /// A second handle on the client's socket, to disconnect it.
    stream: TcpStream,
}

/// A connection in its handshake; gives its allowance back when dropped.
pub(crate) struct Handshake {
    slots: Arc<Slots>,
}

/// A viewer's place; gives it back when dropped.
pub(crate) struct Seat {
    slots: Arc<Slots>,
    id: u64,
    heard: Arc<AtomicU64>,
}

impl Slots {
    /// `places` viewers at once (at least one), and `handshakes` connections in the handshake.
    pub(crate) fn new(places: usize, handshakes: usize) -> Arc<Self> {
        Arc::new(Self {
            places: places.max(1),
            handshakes,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Room for one more handshake, or `None` if the allowance is used up.
    pub(crate) fn begin_handshake(self: &Arc<Self>) -> Option<Handshake> {
        let mut table = self.table();
        if table.handshaking >= self.handshakes {
            return None;
        }
        table.handshaking += 1;
        Some(Handshake { slots: self.clone() })
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut table = self.slots.table();
        table.handshaking = table.handshaking.saturating_sub(1);
    }
}

impl Handshake {
    /// A place for the client on `stream`, which has completed the handshake. If all places
    /// are taken, the viewer heard from least recently is disconnected to make room.
    pub(crate) fn seat(self, stream: &TcpStream) -> io::Result<Seat> {
        let slots = self.slots.clone();
        let peer = peer_name(stream);
        let seated = Seated {
            id: 0,
            peer: peer.clone(),
            heard: Arc::new(AtomicU64::new(slots.now())),
            stream: stream.try_clone()?,
        };
        let mut table = slots.table();
        while table.seated.len() >= slots.places {
            let heard = |s: &Seated| s.heard.load(Ordering::Relaxed);
            let Some(idlest) = (0..table.seated.len()).min_by_key(|&i| heard(&table.seated[i])) else {
                break;
            };
            let idlest = table.seated.swap_remove(idlest);
            let silent = Duration::from_nanos(slots.now().saturating_sub(heard(&idlest)));
            log::warn!(
                "VNC: all {} places are taken; disconnecting {}, silent for {} s, to make room for {peer}",
                slots.places,
                idlest.peer,
                silent.as_secs()
            );
            // Its reader and writer see the connection end and clean up as on a hang-up.
            let _ = idlest.stream.shutdown(Shutdown::Both);
        }
        let id = table.next_id;
        table.next_id += 1;
        let heard = seated.heard.clone();
        table.seated.push(Seated { id, ..seated });
        drop(table);
        Ok(Seat { slots, id, heard })
    }
}

impl Seat {
    /// The client sent a message: it is not idle.
    pub(crate) fn heard(&self) {
        self.heard.store(self.slots.now(), Ordering::Relaxed);
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        // Absent if it was taken to make room for another.
        self.slots.table().seated.retain(|s| s.id != self.id);
    }
}

fn peer_name(s: &TcpStream) -> String {
    s.peer_addr().map_or_else(|_| "a client".to_string(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (the server's end, the client's end).
    fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (server, client)
    }

    fn closed(mut client: &TcpStream) -> bool {
        matches!(client.read(&mut [0u8; 1]), Ok(0))
    }

    #[test]
    fn the_least_recently_heard_viewer_makes_room() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(2, 4);
        let (a_server, a_client) = pair(&listener);
        let (b_server, b_client) = pair(&listener);
        let a = slots.begin_handshake().unwrap().seat(&a_server).unwrap();
        let _b = slots.begin_handshake().unwrap().seat(&b_server).unwrap();
        // `a` came first but spoke last, so `b` is the idler one.
        std::thread::sleep(Duration::from_millis(2));
        a.heard();
        let (c_server, _c_client) = pair(&listener);
        let _c = slots.begin_handshake().unwrap().seat(&c_server).unwrap();
        assert!(closed(&b_client), "the idlest viewer is disconnected");
        a_client.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        assert!(!closed(&a_client), "the other viewer stays");
        assert_eq!(slots.table().seated.len(), 2);
    }

    #[test]
    fn handshakes_have_an_allowance_and_give_it_back() {
        let slots = Slots::new(1, 2);
        let first = slots.begin_handshake().unwrap();
        let _second = slots.begin_handshake().unwrap();
        assert!(slots.begin_handshake().is_none());
        drop(first);
        assert!(slots.begin_handshake().is_some());
    }

    #[test]
    fn a_seat_is_given_back_when_its_viewer_leaves() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let slots = Slots::new(2, 2);
        let (server, _client) = pair(&listener);
        let seat = slots.begin_handshake().unwrap().seat(&server).unwrap();
        let table = slots.table();
        assert_eq!((table.seated.len(), table.handshaking), (1, 0));
        drop(table);
        drop(seat);
        assert_eq!(slots.table().seated.len(), 0);
    }
}
