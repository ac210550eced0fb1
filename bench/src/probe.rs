//! How fast this machine is at the moment, measured before every scenario: a fixed piece of
//! CPU work, and a loopback round trip between two threads.
//!
//! The benchmarks run on a shared VM whose own speed moves: on 2026-12-02 the same binaries on
//! the same fresh stack spent 175 us of CPU per batched job in one suite and 239 us in the next.
//! The round trip (two wakeups, four syscalls: what every hop of the pipeline pays) read 51-77
//! us there and moved with the batch figures; the CPU work did not. A figure is comparable with
//! another only when both were taken at similar probe values.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Rounds timed; the best counts, so a preemption in one round does not.
const ROUNDS: usize = 5;
/// Job bodies per round (about 10 ms on this project's machines).
const BODIES_PER_ROUND: usize = 2_000;

/// The reference work: parse a 64-point job body into a JSON tree and print it again, as the
/// gateway and a replica each do with every job, single-threaded. The best of five rounds.
pub fn reference_time() -> Duration {
    let body = serde_json::to_vec(&crate::jobs::job("moving_average", 64, 7)).unwrap_or_default();
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..BODIES_PER_ROUND {
            let value: serde_json::Value =
                serde_json::from_slice(black_box(&body)).unwrap_or_default();
            black_box(serde_json::to_vec(&value).unwrap_or_default());
        }
        best = best.min(started.elapsed());
    }
    best
}

/// Round trips per round of [`loopback_round_trip`].
const TRIPS_PER_ROUND: usize = 1_000;

/// The other half of what every hop costs here: a 64-byte round trip over a loopback TCP
/// connection to another thread, so two wakeups and four syscalls. Mean of a round, best of
/// five rounds.
pub fn loopback_round_trip() -> std::io::Result<Duration> {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buffer = [0u8; 64];
        while stream.read_exact(&mut buffer).is_ok() {
            stream.write_all(&buffer)?;
        }
        Ok(())
    });
    let mut stream = TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let mut buffer = [7u8; 64];
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..TRIPS_PER_ROUND {
            stream.write_all(&buffer)?;
            stream.read_exact(&mut buffer)?;
        }
        best = best.min(started.elapsed() / TRIPS_PER_ROUND as u32);
    }
    drop(stream);
    let _ = echo.join();
    Ok(best)
}
