//! The child process that hosts one plugin call (`idpsync plugin-child`).
//!
//! It reads a [`ChildRequest`] from stdin, keeps the original stdout as the
//! protocol pipe and points fd 1 at stderr (so a plugin's `println!` cannot
//! corrupt the protocol), loads and checks the library, asks the plugin who
//! it is, then forwards every message of the call as one line of JSON.
//! Problems found by the child itself are written as one
//! `{"child": {"key", "message"}}` line.

#![allow(unsafe_code)] // dup/dup2 of the standard descriptors

use crate::loader::LoadedPlugin;
use idpsync_plugin::wire::{Message, Request};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

/// What the host sends on the child's stdin.
#[derive(Serialize, Deserialize)]
pub struct ChildRequest {
    pub path: PathBuf,
    /// The kind the plugin must declare.
    pub kind: String,
    pub request: Request,
}

/// A problem the child found (not the plugin's own error). `key` names the
/// connection setting at fault, when one is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildFault {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub message: String,
}

/// The line prefix of a [`ChildFault`].
pub const FAULT_PREFIX: &str = "{\"child\":";

#[derive(Serialize)]
struct FaultLine<'a> {
    child: &'a ChildFault,
}

/// The child's main: exit code 0 when the conversation was written, even if
/// it reports a failure; 2 when the host's request could not be read.
pub fn child_main() -> ExitCode {
    let protocol = match take_stdout() {
        Ok(file) => file,
        Err(error) => {
            eprintln!("idpsync plugin-child: cannot set up the protocol pipe: {error}");
            return ExitCode::from(2);
        }
    };
    let mut out = BufWriter::new(protocol);
    let mut input = Vec::new();
    let request: ChildRequest = match std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()))
    {
        Ok(request) => request,
        Err(error) => {
            eprintln!("idpsync plugin-child: unreadable request: {error}");
            return ExitCode::from(2);
        }
    };
    if let Err(fault) = converse(&request, &mut out) {
        write_fault(&mut out, &fault);
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn converse(request: &ChildRequest, out: &mut BufWriter<File>) -> Result<(), ChildFault> {
    let path = request.path.display();
    let plugin = LoadedPlugin::open(&request.path).map_err(|error| ChildFault {
        key: Some("path".into()),
        message: error.to_string(),
    })?;

    // Who is it? Refuse a plugin of another kind before giving it settings.
    let describe = serde_json::to_vec(&Request::Describe).expect("a request serializes");
    let mut answer = None;
    plugin.call(&describe, &mut |bytes| {
        if answer.is_none() {
            answer = Some(serde_json::from_slice::<Message>(bytes));
        }
    });
    let info = match answer {
        Some(Ok(Message::Plugin(info))) => info,
        Some(Ok(Message::Error(error))) => {
            return Err(ChildFault {
                key: None,
                message: format!("{path}: describe failed: {}", error.message),
            });
        }
        _ => {
            return Err(ChildFault {
                key: None,
                message: format!("{path}: the plugin did not describe itself"),
            });
        }
    };
    if info.kind != request.kind {
        return Err(ChildFault {
            key: Some("kind".into()),
            message: format!(
                "{path} is a \"{}\" plugin (version {}), not \"{}\"",
                info.kind, info.version, request.kind
            ),
        });
    }
    if matches!(request.request, Request::Describe) {
        write_line(
            out,
            &serde_json::to_vec(&Message::Plugin(info)).expect("serializes"),
        );
        return Ok(());
    }

    let bytes = serde_json::to_vec(&request.request).expect("a request serializes");
    let mut garbage: Option<String> = None;
    plugin.call(&bytes, &mut |message| {
        if garbage.is_some() {
            return;
        }
        match compact_json(message) {
            Ok(line) => write_line(out, &line),
            Err(reason) => garbage = Some(reason),
        }
    });
    match garbage {
        Some(reason) => Err(ChildFault {
            key: None,
            message: format!("{path}: the plugin sent a message that is not JSON ({reason})"),
        }),
        None => Ok(()),
    }
}

/// The message as one line of JSON, or why it is not JSON.
fn compact_json(message: &[u8]) -> Result<Vec<u8>, String> {
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(message) {
        let preview: String = String::from_utf8_lossy(&message[..message.len().min(24)])
            .escape_debug()
            .collect();
        return Err(format!(
            "{} bytes starting \"{preview}\": {error}",
            message.len()
        ));
    }
    if message.contains(&b'\n') {
        let value: serde_json::Value =
            serde_json::from_slice(message).map_err(|error| error.to_string())?;
        return serde_json::to_vec(&value).map_err(|error| error.to_string());
    }
    Ok(message.to_vec())
}

fn write_line(out: &mut BufWriter<File>, line: &[u8]) {
    // A host that went away ends the child at its next write; nothing to do here.
    let _ = out.write_all(line).and_then(|_| out.write_all(b"\n"));
}

fn write_fault(out: &mut BufWriter<File>, fault: &ChildFault) {
    let line = serde_json::to_vec(&FaultLine { child: fault }).expect("a fault serializes");
    write_line(out, &line);
}

/// Duplicates stdout for the protocol and points fd 1 at stderr.
fn take_stdout() -> std::io::Result<File> {
    // SAFETY: plain descriptor calls on the process's own fds 1 and 2; the
    // duplicate is owned by the returned File from here on.
    unsafe {
        let protocol = libc::dup(1);
        if protocol < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(protocol))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_line_starts_with_the_prefix_the_host_looks_for() {
        let line = serde_json::to_string(&FaultLine {
            child: &ChildFault {
                key: Some("path".into()),
                message: "x".into(),
            },
        })
        .unwrap();
        assert!(line.starts_with(FAULT_PREFIX), "{line}");
    }

    #[test]
    fn messages_are_forwarded_as_single_lines_and_garbage_is_described() {
        assert_eq!(compact_json(b"{\"users\":[]}").unwrap(), b"{\"users\":[]}");
        assert_eq!(
            compact_json(b"{\n \"users\": []\n}").unwrap(),
            b"{\"users\":[]}"
        );
        let reason = compact_json(b"\x00not json at all").unwrap_err();
        assert!(
            reason.starts_with("16 bytes starting \"\\0not json"),
            "{reason}"
        );
    }
}
