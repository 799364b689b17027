//! `chaos`: a plugin that misbehaves on request, so the host's isolation is
//! tested through the same path as a real plugin (`kind = "plugin"`, a `.so`
//! loaded in the child process). Its `behaviour` setting chooses:
//!
//! * `ok`: prints to stdout (which must not corrupt the protocol), then
//!   reports `users` people in one group;
//! * `error`: fails with an authentication error;
//! * `panic`: sends a page, then panics inside the driver;
//! * `abort`: kills its process (like a segfault or `panic = "abort"`);
//! * `garbage`: answers a pull with bytes that are not JSON;
//! * `hang`: never answers a pull.
//!
//! `IDPSYNC_CHAOS_PLUGIN_ABI=<n>` makes it claim plugin ABI `n`, like a
//! plugin built for another idpsync.

#![allow(unsafe_code)] // its two exported C functions

use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverFactory,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser, parse_settings,
};
use idpsync_plugin::abi::EmitFn;
use idpsync_plugin::wire::Request;
use serde::Deserialize;
use std::ffi::c_void;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Behaviour {
    Ok,
    Error,
    Panic,
    Abort,
    Garbage,
    Hang,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChaosSettings {
    behaviour: Behaviour,
    #[serde(default = "three")]
    users: u32,
}

fn three() -> u32 {
    3
}

struct ChaosFactory;

impl DriverFactory for ChaosFactory {
    fn kind(&self) -> &'static str {
        "chaos"
    }

    fn build(
        &self,
        settings: &serde_json::Value,
        _context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(ChaosDriver(parse_settings(settings)?)))
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), DriverError> {
        parse_settings::<ChaosSettings>(settings).map(drop)
    }
}

struct ChaosDriver(ChaosSettings);

#[async_trait::async_trait]
impl Driver for ChaosDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities {
            delta: false,
            nested_groups: false,
            page_size: 100,
            summary: format!("chaos: {:?}", self.0.behaviour),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let users: Vec<SourceUser> = (1..=self.0.users)
            .map(|n| SourceUser::new(format!("u{n}"), format!("user{n}@chaos.test")))
            .collect();
        match self.0.behaviour {
            Behaviour::Ok => {
                println!("the chaos plugin writes to stdout, which is not the protocol pipe");
                sink.groups(vec![SourceGroup::new("g1", "Everyone")])
                    .await?;
                sink.memberships(
                    users
                        .iter()
                        .map(|u| MembershipEdge::user("g1", u.external_id.as_str()))
                        .collect(),
                )
                .await?;
                let declared = DeclaredTotals {
                    users: Some(users.len() as u64),
                    groups: Some(1),
                };
                sink.users(users).await?;
                Ok(PullOutcome {
                    next_cursor: None,
                    declared,
                    complete_snapshot: true,
                })
            }
            Behaviour::Error => Err(DriverError::Unauthorized(
                "the chaos plugin refuses, as asked".into(),
            )),
            Behaviour::Panic => {
                sink.users(users).await?;
                panic!("the chaos plugin panics, as asked");
            }
            Behaviour::Abort => std::process::abort(),
            Behaviour::Hang => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Behaviour::Garbage => unreachable!("answered before the driver runs"),
        }
    }
}

/// The ABI version it claims: its own, unless the environment says otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn idpsync_plugin_abi_version() -> u32 {
    std::env::var("IDPSYNC_CHAOS_PLUGIN_ABI")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(idpsync_plugin::ABI_VERSION)
}

/// The v1 entry point, by hand instead of `export_plugin!`, to be able to
/// send garbage.
///
/// # Safety
/// The ABI's contract: `request` holds `request_len` bytes and `emit` may be
/// called with `ctx` until this returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn idpsync_plugin_v1_call(
    request: *const u8,
    request_len: usize,
    emit: EmitFn,
    ctx: *mut c_void,
) -> i32 {
    // SAFETY: the host lends `request_len` bytes for the call.
    let bytes = unsafe { std::slice::from_raw_parts(request, request_len) };
    if let Ok(Request::Pull { settings, .. }) = serde_json::from_slice::<Request>(bytes)
        && settings.get("behaviour").and_then(|b| b.as_str()) == Some("garbage")
    {
        let garbage = b"\x00\x01 this is not JSON";
        // SAFETY: the host's callback, with its context, during the call.
        unsafe { emit(ctx, garbage.as_ptr(), garbage.len()) };
        return idpsync_plugin::abi::CALL_OK;
    }
    // SAFETY: forwarded unchanged.
    unsafe {
        idpsync_plugin::guest::call(
            &ChaosFactory,
            env!("CARGO_PKG_VERSION"),
            request,
            request_len,
            emit,
            ctx,
        )
    }
}
