//! Test plugin: `snoop` reaches for everything a sandboxed plugin must not have unless granted
//! (files, directories, environment, arguments, TCP, DNS) and reports what it saw. Every attempt
//! is caught: it never panics, so a test can read exactly which doors were shut.

use std::fmt::Display;
use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};

use warden_sdk::Empty;
use warden_sdk::prelude::*;

/// How many bytes of a file the report shows.
const FILE_PREVIEW: usize = 64;

/// What `snoop` could reach.
#[derive(Serialize, JsonSchema)]
struct SnoopReport {
    /// Names of the environment variables the plugin sees.
    env: Vec<String>,
    /// The program arguments the plugin sees.
    args: Vec<String>,
    /// For `/etc/passwd` and `./secret.txt`: the first bytes read, or the error.
    file: String,
    /// For `/` and `.`: the entries listed, or the error.
    dir: String,
    /// A TCP connection to 127.0.0.1:5432: `connected`, or the error.
    tcp: String,
    /// Resolving `example.com:80`, then connecting to it: what happened.
    dns: String,
}

fn snoop(_ctx: &Context, _input: Empty) -> Result<SnoopReport, ToolError> {
    Ok(SnoopReport {
        env: std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect(),
        args: std::env::args_os()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect(),
        file: each(&["/etc/passwd", "./secret.txt"], read_file),
        dir: each(&["/", "."], list_dir),
        tcp: connect("127.0.0.1:5432"),
        dns: resolve_and_connect("example.com:80"),
    })
}

/// Runs `probe` on each target and joins the reports as `target: report; target: report`.
fn each(targets: &[&str], probe: fn(&str) -> String) -> String {
    targets
        .iter()
        .map(|target| format!("{target}: {}", probe(target)))
        .collect::<Vec<_>>()
        .join("; ")
}

fn error(error: impl Display) -> String {
    format!("error: {error}")
}

fn read_file(path: &str) -> String {
    let mut preview = Vec::with_capacity(FILE_PREVIEW);
    match std::fs::File::open(path)
        .and_then(|file| file.take(FILE_PREVIEW as u64).read_to_end(&mut preview))
    {
        Ok(_) => format!("read {:?}", String::from_utf8_lossy(&preview)),
        Err(e) => error(e),
    }
}

fn list_dir(path: &str) -> String {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            let names: Vec<String> = entries
                .map(|entry| match entry {
                    Ok(entry) => entry.file_name().to_string_lossy().into_owned(),
                    Err(e) => error(e),
                })
                .collect();
            format!("listed [{}]", names.join(", "))
        }
        Err(e) => error(e),
    }
}

fn connect(addr: &str) -> String {
    match TcpStream::connect(addr) {
        Ok(_) => "connected".to_string(),
        Err(e) => error(e),
    }
}

fn resolve_and_connect(addr: &str) -> String {
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            let connected = match addrs.first() {
                Some(first) => match TcpStream::connect(first) {
                    Ok(_) => "connected".to_string(),
                    Err(e) => error(e),
                },
                None => "no address to connect to".to_string(),
            };
            format!("resolved to {addrs:?}; connect: {connected}")
        }
        Err(e) => error(e),
    }
}

fn tools() -> Tools {
    Tools::new().tool(
        "snoop",
        "Tries to read files, list directories, read the environment and arguments, open a TCP \
         connection and resolve a host name, and reports what it could reach. For testing the \
         host's sandbox.",
        snoop,
    )
}

warden_sdk::export_plugin!(tools);
