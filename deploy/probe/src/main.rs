//! `orbit-probe URL`: exits 0 when an HTTP GET of `URL` answers 2xx within two seconds, 1
//! otherwise. The images' runtime stage has no shell, curl or wget, so the health checks of
//! `compose.yaml` and the Kubernetes probes run this instead; it uses the standard library
//! only, so it adds a few hundred kilobytes to an image and nothing to its attack surface.
//!
//! Only `http://host:port/path` is understood: every Orbit process serves its health or
//! metrics endpoint in plain HTTP on its own address.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: orbit-probe http://HOST:PORT/PATH");
        return ExitCode::from(2);
    };
    match probe(&url) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("{url}: HTTP {status}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{url}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The status code of a GET of `url`.
fn probe(url: &str) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are probed")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let address = authority
        .to_socket_addrs()
        .map_err(|err| format!("resolving {authority}: {err}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .map_err(|err| format!("connecting to {address}: {err}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|err| err.to_string())?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: orbit-probe\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("sending: {err}"))?;
    // The status line fits in the first read of any server's answer; the body is not needed.
    let mut head = [0u8; 64];
    let mut filled = 0;
    while filled < 12 {
        let read = stream
            .read(&mut head[filled..])
            .map_err(|err| format!("reading: {err}"))?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    status_of(&head[..filled]).ok_or_else(|| "no HTTP status line in the answer".to_string())
}

/// The code of an `HTTP/1.x NNN` status line.
fn status_of(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head.get(..12)?).ok()?;
    if !line.starts_with("HTTP/1.") {
        return None;
    }
    line.get(9..12)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            stream.write_all(answer.as_bytes()).unwrap();
        });
        format!("http://{address}/readyz")
    }

    #[test]
    fn a_2xx_is_healthy_and_anything_else_is_not() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(probe(&ok), Ok(200));
        let unready = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(probe(&unready), Ok(503));
        let garbage = serve_once("hello");
        assert!(probe(&garbage).is_err());
    }

    #[test]
    fn nothing_listening_and_other_schemes_are_errors() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(probe(&format!("http://127.0.0.1:{port}/")).is_err());
        assert!(probe("https://127.0.0.1:1/").is_err());
    }
}
