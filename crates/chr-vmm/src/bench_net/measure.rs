//! The host side of each measurement, with plain sockets: bulk TCP both ways, round trips on
//! one connection, and small HTTP requests each on a new connection. Every socket has a
//! timeout, so a guest that stops answering ends the measurement with an error, not a hang.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::BenchNetError;

/// The size of each write and read of a bulk transfer.
const CHUNK: usize = 64 * 1024;
/// The longest a socket may sit without progress.
const STALL: Duration = Duration::from_secs(30);
/// The size of one echo round trip's message.
pub const ECHO_BYTES: usize = 64;

fn sock_err(what: &str, addr: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> BenchNetError {
    let what = format!("{what} {addr}");
    move |source| BenchNetError::Socket { what, source }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, BenchNetError> {
    let s = TcpStream::connect_timeout(&addr, STALL).map_err(sock_err("connect to", addr))?;
    s.set_read_timeout(Some(STALL)).map_err(sock_err("set a timeout on", addr))?;
    s.set_write_timeout(Some(STALL)).map_err(sock_err("set a timeout on", addr))?;
    Ok(s)
}

/// Reads `s` to its end and returns how many bytes came.
fn drain(s: &mut TcpStream, what: &str) -> Result<u64, BenchNetError> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(source) => return Err(BenchNetError::Socket { what: what.to_string(), source }),
        }
    }
}

/// The guest's sink reads with `dd bs=SINK_BLOCK iflag=fullblock` and answers with dd's counts.
pub const SINK_BLOCK: u64 = 64 * 1024;

/// Sends `bytes` to the sink in the guest at `addr`, closes the sending side and waits for the
/// sink's answer: dd's `F+P records in` once it has read everything, then the close. A
/// half-close by the guest is not enough (libslirp passes it on at once), so the answer is the
/// proof that all bytes arrived. Returns the time from connect to the guest's close.
pub fn send_to_guest(addr: SocketAddr, bytes: u64) -> Result<Duration, BenchNetError> {
    let start = Instant::now();
    let mut s = connect(addr)?;
    let chunk = vec![0x5au8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        s.write_all(&chunk[..n]).map_err(sock_err("send to the guest's sink at", addr))?;
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write).map_err(sock_err("close the sending side to", addr))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(sock_err("wait for the answer of the guest's sink at", addr))?;
    let elapsed = start.elapsed();
    let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
    let expected = (bytes / SINK_BLOCK, u64::from(!bytes.is_multiple_of(SINK_BLOCK)));
    match records_in(&text) {
        Some(got) if got == expected => Ok(elapsed),
        _ => Err(BenchNetError::Protocol {
            what: format!(
                "the guest's sink at {addr} answered {text:?}, not \"{}+{} records in\": it did not get all {bytes} bytes",
                expected.0, expected.1
            ),
        }),
    }
}

/// The full and partial block counts of dd's `F+P records in` line.
pub(crate) fn records_in(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find_map(|l| l.trim().strip_suffix(" records in"))?;
    let (full, partial) = line.split_once('+')?;
    Some((full.parse().ok()?, partial.parse().ok()?))
}

/// Accepts one connection on `listener` (before `deadline`) and reads it to its end; the guest
/// sends `expected` bytes. Returns the time from accept to the end of the data.
pub fn receive_from_guest(
    listener: &TcpListener,
    expected: u64,
    deadline: Instant,
) -> Result<Duration, BenchNetError> {
    let local = listener.local_addr().map_err(sock_err("read the address of", "the listener"))?;
    listener.set_nonblocking(true).map_err(sock_err("configure the listener on", local))?;
    let (mut s, peer) = loop {
        match listener.accept() {
            Ok(conn) => break conn,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    return Err(BenchNetError::NoConnection { port: local.port() });
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(source) => return Err(BenchNetError::Socket { what: format!("accept on {local}"), source }),
        }
    };
    let start = Instant::now();
    s.set_nonblocking(false).map_err(sock_err("configure the connection from", peer))?;
    s.set_read_timeout(Some(STALL)).map_err(sock_err("set a timeout on", peer))?;
    let got = drain(&mut s, &format!("receive from the guest at {peer}"))?;
    let elapsed = start.elapsed();
    if got != expected {
        return Err(BenchNetError::Protocol {
            what: format!("the guest sent {got} bytes instead of {expected}"),
        });
    }
    Ok(elapsed)
}

/// Times `count` round trips of a small message through an echo server in the guest, all on
/// one connection (Nagle off on our side).
pub fn echo_round_trips(addr: SocketAddr, count: usize) -> Result<Vec<Duration>, BenchNetError> {
    let mut s = connect(addr)?;
    s.set_nodelay(true).map_err(sock_err("configure the connection to", addr))?;
    let mut times = Vec::with_capacity(count);
    let mut reply = [0u8; ECHO_BYTES];
    // One untimed exchange first: the first packets also pay for ARP and slow start.
    for i in 0..=count {
        let msg = [b'a' + (i % 26) as u8; ECHO_BYTES];
        let start = Instant::now();
        s.write_all(&msg).map_err(sock_err("send to the guest's echo server at", addr))?;
        s.read_exact(&mut reply).map_err(sock_err("read the echo from", addr))?;
        if reply != msg {
            return Err(BenchNetError::Protocol {
                what: format!("the echo server at {addr} answered other bytes"),
            });
        }
        if i > 0 {
            times.push(start.elapsed());
        }
    }
    Ok(times)
}

/// Times `count` HTTP/1.0 GETs of `/` from the guest's httpd, each on a new connection:
/// connect, request, whole response, close.
pub fn http_requests(addr: SocketAddr, count: usize) -> Result<Vec<Duration>, BenchNetError> {
    let mut times = Vec::with_capacity(count);
    let mut body = Vec::new();
    for _ in 0..count {
        let start = Instant::now();
        let mut s = connect(addr)?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(sock_err("send a request to", addr))?;
        body.clear();
        s.read_to_end(&mut body).map_err(sock_err("read the response from", addr))?;
        times.push(start.elapsed());
        if !is_http_ok(&body) {
            let head = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            return Err(BenchNetError::Protocol {
                what: format!("the guest's httpd at {addr} answered {head:?} instead of 200 OK"),
            });
        }
    }
    Ok(times)
}

/// GETs `path` (a file of `bytes` bytes) from an httpd at `addr`; returns the time from
/// connect to the end of the response.
pub fn download(addr: SocketAddr, path: &str, bytes: u64) -> Result<Duration, BenchNetError> {
    let start = Instant::now();
    let mut s = connect(addr)?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .map_err(sock_err("send a request to", addr))?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut body = 0u64;
    let mut header_done = false;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(BenchNetError::Socket { what: format!("download from {addr}"), source })
            }
        };
        if !header_done {
            head.extend_from_slice(&buf[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                header_done = true;
                body = (head.len() - end - 4) as u64;
                head.truncate(end);
            }
            if !header_done && head.len() > 4096 || header_done && !is_http_ok(&head) {
                break;
            }
        } else {
            body += n as u64;
        }
    }
    let elapsed = start.elapsed();
    if !header_done || !is_http_ok(&head) || body != bytes {
        let status = String::from_utf8_lossy(&head[..head.len().min(80)]).into_owned();
        return Err(BenchNetError::Protocol {
            what: format!("GET {path} from the guest's httpd at {addr} gave {status:?} and {body} bytes, not 200 OK and {bytes}"),
        });
    }
    Ok(elapsed)
}

/// Whether a response starts with an HTTP status line saying 200.
pub(crate) fn is_http_ok(response: &[u8]) -> bool {
    let line = response.split(|&b| b == b'\n').next().unwrap_or_default();
    line.starts_with(b"HTTP/1.") && line.windows(5).any(|w| w == b" 200 ")
}

/// Nearest-rank percentile `p` (0 < p <= 100) of `samples`; `None` if there are none.
pub fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// MiB per second for `bytes` moved in `elapsed`.
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64().max(1e-9)
}

/// The middle value of `values` (the lower one of the two middles for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len().checked_sub(1)? / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = ms(&[5, 1, 4, 2, 3]);
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(3)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(5)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(5)));
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&ms(&hundred), 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&ms(&hundred), 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn medians_and_rates() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[]), None);
        assert!((mib_per_s(64 << 20, Duration::from_secs(2)) - 32.0).abs() < 1e-9);
    }

    #[test]
    fn dd_record_counts() {
        assert_eq!(records_in("512+0 records in\n512+0 records out\n"), Some((512, 0)));
        assert_eq!(records_in("\r\n0+1 records in\r\n"), Some((0, 1)));
        assert_eq!(records_in("dd: can't open\n"), None);
        assert_eq!(records_in("x+1 records in\n"), None);
    }

    #[test]
    fn http_status_line() {
        assert!(is_http_ok(b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nhi"));
        assert!(!is_http_ok(b"HTTP/1.0 404 Not Found\r\n\r\n200 "));
        assert!(!is_http_ok(b""));
        assert!(!is_http_ok(b"\xff\xfe 200 "));
    }

    #[test]
    fn bulk_transfers_against_local_peers() {
        // A sink that reads everything and answers like the guest's dd, right or wrong.
        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = sink.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            for answer in ["3+1 records in\n3+1 records out\n", "3+0 records in\n"] {
                let (mut c, _) = sink.accept().unwrap();
                let n = std::io::copy(&mut c, &mut std::io::sink()).unwrap();
                assert_eq!(n, 3 * SINK_BLOCK + 5);
                c.write_all(answer.as_bytes()).unwrap();
            }
        });
        send_to_guest(addr, 3 * SINK_BLOCK + 5).unwrap();
        let err = send_to_guest(addr, 3 * SINK_BLOCK + 5).unwrap_err();
        assert!(err.to_string().contains("did not get all"), "{err}");
        t.join().unwrap();

        // A sender like the guest's `dd | nc HOST PORT`, and a short one that must be reported.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        for (sent, expected) in [(100_000usize, 100_000u64), (10, 11)] {
            let t = std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(&vec![0u8; sent]).unwrap();
            });
            let got = receive_from_guest(&listener, expected, Instant::now() + Duration::from_secs(10));
            t.join().unwrap();
            assert_eq!(got.is_ok(), sent as u64 == expected, "{got:?}");
        }
        // Nobody connects: a clear error once the deadline passes.
        let err = receive_from_guest(&listener, 1, Instant::now()).unwrap_err();
        assert!(matches!(err, BenchNetError::NoConnection { .. }), "{err}");
    }

    #[test]
    fn round_trips_and_requests_against_local_servers() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = echo.accept().unwrap();
            let mut r = c.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut c);
        });
        assert_eq!(echo_round_trips(addr, 20).unwrap().len(), 20);

        let httpd = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = httpd.local_addr().unwrap();
        std::thread::spawn(move || {
            for (i, c) in httpd.incoming().enumerate() {
                let mut c = c.unwrap();
                let mut req = [0u8; 64];
                let _ = c.read(&mut req);
                let answer: &[u8] =
                    if i < 3 { b"HTTP/1.0 200 OK\r\n\r\nok" } else { b"HTTP/1.0 500 Oops\r\n\r\n" };
                let _ = c.write_all(answer);
            }
        });
        assert_eq!(http_requests(addr, 3).unwrap().len(), 3);
        let err = http_requests(addr, 1).unwrap_err();
        assert!(err.to_string().contains("500 Oops"), "{err}");

        // Downloads: the body is counted past the header, split anywhere.
        let httpd = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = httpd.local_addr().unwrap();
        std::thread::spawn(move || {
            for (i, c) in httpd.incoming().enumerate() {
                let mut c = c.unwrap();
                let mut req = [0u8; 64];
                let _ = c.read(&mut req);
                let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r");
                let _ = c.write_all(b"\n\r\n");
                let _ = c.write_all(&vec![0u8; if i == 0 { 100_000 } else { 99_999 }]);
            }
        });
        download(addr, "/file", 100_000).unwrap();
        let err = download(addr, "/file", 100_000).unwrap_err();
        assert!(err.to_string().contains("99999 bytes"), "{err}");
    }
}
