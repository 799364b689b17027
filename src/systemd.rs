//! The systemd notification protocol (`Type=notify`), without a library:
//! datagrams to the socket named in `$NOTIFY_SOCKET` (a path, or an
//! abstract name starting with `@`). `READY=1` once the daemon serves;
//! `WATCHDOG=1` every half of `$WATCHDOG_USEC` while its runtime runs;
//! `STOPPING=1` when it shuts down. Outside systemd (no `$NOTIFY_SOCKET`)
//! every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` to systemd; `false` when not under systemd or unsent.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sender) = UnixDatagram::unbound() else {
        return false;
    };
    let socket = socket.to_string_lossy().into_owned();
    let sent = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|address| sender.send_to_addr(state.as_bytes(), &address))
        }
        None => sender.send_to(state.as_bytes(), &socket),
    };
    if let Err(error) = &sent {
        tracing::warn!(%error, "cannot notify systemd");
    }
    sent.is_ok()
}

/// The watchdog interval systemd asks for, if it asks this process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}

/// Tells systemd the daemon is ready and, if it keeps a watchdog, pets it
/// from a task of the runtime (a runtime that stops running stops the
/// pets, and systemd restarts the service).
pub fn ready() {
    if !notify("READY=1") {
        return;
    }
    if let Some(interval) = watchdog_interval() {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                notify("WATCHDOG=1");
            }
        });
    }
}
