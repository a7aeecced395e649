//! A tiny HTTP/1.1 server that stands in for a machine-learning model image in
//! the integration tests.
//!
//! Real model images are large and would have to be pulled from a registry,
//! which the test machines cannot reach. Instead the tests build this file
//! into a fully static binary and wrap it in a `FROM scratch` image
//! (`examples/static-http-server/Dockerfile`, built by
//! `scripts/build-test-image.sh`). Every request, whatever its method or path,
//! gets `200 OK` with the same body, so the tests can check that a served
//! "model" is reachable without caring what it computes.
//!
//! It uses only the standard library so it compiles with plain `rustc` in a
//! second or two, without cargo or any crate.
//!
//! Configuration (environment variables):
//!
//! * `PORT`: TCP port to listen on, on all IPv4 addresses (default `80`).
//! * `RESPONSE_BODY`: the body of every response (default `{"status":"ok"}`).
//! * `RESPONSE_CONTENT_TYPE`: its `Content-Type` (default `application/json`).
//!
//! Every response carries `Connection: close`, so clients never reuse a
//! connection the server might be about to drop.
//!
//! Signals: as PID 1 in a container, a process ignores every signal it has no
//! handler for, so without handlers `docker stop` / `docker service rm` would
//! wait out their 10 s grace period and then SIGKILL it. SIGTERM and SIGINT
//! therefore get a handler that exits at once with status 0.
//!
//! `server --probe` is a health check for images with no shell or curl: it
//! sends `GET /` to `127.0.0.1:$PORT` and exits 0 on a `200` answer, 1
//! otherwise, e.g. `healthcheck: test: ["CMD", "/server", "--probe"]`.

use std::ffi::c_int;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const DEFAULT_PORT: u16 = 80;
const DEFAULT_BODY: &str = r#"{"status":"ok"}"#;
const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// Largest request head (request line plus headers) we accept.
const MAX_HEAD_BYTES: u64 = 64 * 1024;
/// Largest request body we read and discard before answering.
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// How long a client may stay silent before we drop its connection.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect and read timeout of `--probe`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Signal numbers; identical on every Linux architecture.
const SIGINT: c_int = 2;
const SIGTERM: c_int = 15;
/// `signal()` returns `SIG_ERR`, `(sighandler_t) -1`, on failure.
const SIG_ERR: usize = usize::MAX;

unsafe extern "C" {
    /// `sighandler_t signal(int signum, sighandler_t handler)`.
    fn signal(signum: c_int, handler: extern "C" fn(c_int)) -> usize;
    /// Ends the process at once; async-signal-safe, unlike `exit`.
    safe fn _exit(status: c_int) -> !;
}

extern "C" fn exit_on_signal(_signum: c_int) {
    _exit(0);
}

fn install_signal_handlers() -> io::Result<()> {
    for signum in [SIGTERM, SIGINT] {
        // SAFETY: the handler only calls `_exit`, which is async-signal-safe.
        if unsafe { signal(signum, exit_on_signal) } == SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The response every request gets, rendered once at startup.
struct Response {
    /// Status line and headers, ending with the blank line.
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Response {
    fn from_env() -> Self {
        let body = std::env::var("RESPONSE_BODY").unwrap_or_else(|_| DEFAULT_BODY.to_owned());
        let content_type = std::env::var("RESPONSE_CONTENT_TYPE")
            .unwrap_or_else(|_| DEFAULT_CONTENT_TYPE.to_owned());
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        Self {
            head: head.into_bytes(),
            body: body.into_bytes(),
        }
    }
}

fn port_from_env() -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|err| format!("invalid PORT {value:?}: {err}")),
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_PORT),
        Err(err) => Err(format!("invalid PORT: {err}")),
    }
}

/// What we need to know about a request to answer it.
struct RequestHead {
    is_head: bool,
    content_length: u64,
}

/// Reads the request line and headers. `Ok(None)` means the client closed
/// the connection before sending a complete request head.
fn read_request_head(reader: &mut impl BufRead) -> io::Result<Option<RequestHead>> {
    let mut limited = reader.take(MAX_HEAD_BYTES);
    let mut line = String::new();
    let mut request = RequestHead {
        is_head: false,
        content_length: 0,
    };
    let mut first = true;
    loop {
        line.clear();
        if limited.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if first {
            if trimmed.is_empty() {
                // Blank lines before the request line are allowed (RFC 9112 2.2).
                continue;
            }
            first = false;
            request.is_head = trimmed.split(' ').next() == Some("HEAD");
        } else if trimmed.is_empty() {
            return Ok(Some(request));
        } else if let Some((name, value)) = trimmed.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            request.content_length = value.trim().parse().unwrap_or(0);
        }
    }
}

fn handle_connection(stream: &TcpStream, response: &Response) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request_head(&mut reader)? else {
        return Ok(());
    };
    // Read the body before answering: closing a socket with unread data makes
    // the kernel send a reset, which can destroy the response in flight.
    let body_len = request.content_length.min(MAX_BODY_BYTES);
    io::copy(&mut reader.take(body_len), &mut io::sink())?;

    let mut writer = stream;
    writer.write_all(&response.head)?;
    if !request.is_head {
        writer.write_all(&response.body)?;
    }
    writer.flush()?;
    stream.shutdown(Shutdown::Write)
}

fn serve(port: u16) -> io::Result<()> {
    let response = Arc::new(Response::from_env());
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))?;
    let local_addr = listener.local_addr()?;
    eprintln!("static-http-server: listening on {local_addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let response = Arc::clone(&response);
                let spawned = thread::Builder::new().spawn(move || {
                    // A client going away mid-request is not our problem.
                    let _ = handle_connection(&stream, &response);
                });
                if let Err(err) = spawned {
                    eprintln!("static-http-server: cannot start a thread: {err}");
                }
            }
            Err(err) => {
                eprintln!("static-http-server: accept failed: {err}");
                // Avoid a busy loop when out of file descriptors.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(())
}

/// `--probe`: is the server on this machine answering `200`?
fn probe(port: u16) -> io::Result<bool> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut status_line = String::new();
    BufReader::new(&stream)
        .take(1024)
        .read_line(&mut status_line)?;
    let mut parts = status_line.split_whitespace();
    let version_ok = parts.next().is_some_and(|v| v.starts_with("HTTP/1."));
    Ok(version_ok && parts.next() == Some("200"))
}

fn main() -> ExitCode {
    let port = match port_from_env() {
        Ok(port) => port,
        Err(msg) => {
            eprintln!("static-http-server: {msg}");
            return ExitCode::from(2);
        }
    };
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => {}
        (Some("--probe"), None) => {
            return match probe(port) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("static-http-server: probe: answer was not 200 OK");
                    ExitCode::FAILURE
                }
                Err(err) => {
                    eprintln!("static-http-server: probe: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {
            eprintln!("usage: static-http-server [--probe]");
            eprintln!("environment: PORT, RESPONSE_BODY, RESPONSE_CONTENT_TYPE");
            return ExitCode::from(2);
        }
    }

    if let Err(err) = install_signal_handlers() {
        eprintln!("static-http-server: cannot install signal handlers: {err}");
        return ExitCode::FAILURE;
    }
    match serve(port) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("static-http-server: {err}");
            ExitCode::FAILURE
        }
    }
}
