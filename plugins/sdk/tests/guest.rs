//! The guest side of the ABI, called the way the host calls it (a request's
//! bytes in, messages out through a C callback), with a small driver: it
//! describes itself, validates, streams a pull page by page and ends with
//! the outcome; an error, a panic and an unreadable request each end the
//! call with one `error` message and `CALL_FAILED`.

#![allow(unsafe_code)] // calling the exported C entry point, as the host does

use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverFactory, PullMode,
    PullOutcome, RecordSink, SourceUser, parse_settings,
};
use idpsync_plugin::abi::{CALL_FAILED, CALL_OK};
use idpsync_plugin::wire::{Message, Request, WireMode};
use serde::Deserialize;
use std::ffi::c_void;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    users: u32,
    #[serde(default)]
    fail: Option<String>,
}

struct Factory;

impl DriverFactory for Factory {
    fn kind(&self) -> &'static str {
        "sample"
    }

    fn build(
        &self,
        settings: &serde_json::Value,
        _context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(Sample(parse_settings(settings)?)))
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), DriverError> {
        parse_settings::<Settings>(settings).map(drop)
    }
}

struct Sample(Settings);

#[async_trait::async_trait]
impl Driver for Sample {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities {
            delta: false,
            nested_groups: false,
            page_size: 2,
            summary: "sample".into(),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let users: Vec<SourceUser> = (0..self.0.users)
            .map(|n| SourceUser::new(format!("u{n}"), format!("user{n}")))
            .collect();
        for page in users.chunks(2) {
            sink.users(page.to_vec()).await?;
        }
        match self.0.fail.as_deref() {
            Some("error") => Err(DriverError::Forbidden("no read access".into())),
            Some("panic") => panic!("sample driver panics"),
            _ => Ok(PullOutcome {
                next_cursor: None,
                declared: DeclaredTotals {
                    users: Some(users.len() as u64),
                    groups: None,
                },
                complete_snapshot: true,
            }),
        }
    }
}

idpsync_plugin::export_plugin!(Factory, version = "9.9.9");

unsafe extern "C" fn collect(ctx: *mut c_void, message: *const u8, len: usize) {
    // SAFETY: `ctx` is the Vec passed by `call` below; the bytes are lent for this call.
    let messages = unsafe { &mut *ctx.cast::<Vec<Vec<u8>>>() };
    messages.push(unsafe { std::slice::from_raw_parts(message, len) }.to_vec());
}

/// Calls the exported entry point with raw bytes; returns the status and messages.
fn call_raw(request: &[u8]) -> (i32, Vec<Message>) {
    assert_eq!(idpsync_plugin_abi_version(), idpsync_plugin::ABI_VERSION);
    let mut raw: Vec<Vec<u8>> = Vec::new();
    // SAFETY: the request outlives the call, and `collect` matches the context.
    let status = unsafe {
        idpsync_plugin_v1_call(
            request.as_ptr(),
            request.len(),
            collect,
            (&mut raw as *mut Vec<Vec<u8>>).cast(),
        )
    };
    let messages = raw
        .iter()
        .map(|bytes| serde_json::from_slice(bytes).expect("every message is JSON"))
        .collect();
    (status, messages)
}

fn call(request: &Request) -> (i32, Vec<Message>) {
    call_raw(&serde_json::to_vec(request).unwrap())
}

fn pull(settings: serde_json::Value) -> (i32, Vec<Message>) {
    call(&Request::Pull {
        settings,
        mode: WireMode::Full,
    })
}

#[test]
fn describe_names_the_kind_the_version_and_the_abi() {
    let (status, messages) = call(&Request::Describe);
    assert_eq!(status, CALL_OK);
    let [Message::Plugin(info)] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    assert_eq!(
        (info.kind.as_str(), info.version.as_str(), info.abi),
        ("sample", "9.9.9", 1)
    );
}

#[test]
fn validate_answers_valid_or_names_the_key() {
    let (status, messages) = call(&Request::Validate {
        settings: serde_json::json!({"users": 3}),
    });
    assert_eq!(
        (status, messages.as_slice()),
        (CALL_OK, [Message::Valid].as_slice())
    );
    let (status, messages) = call(&Request::Validate {
        settings: serde_json::json!({"users": "three"}),
    });
    assert_eq!(status, CALL_FAILED);
    let [Message::Error(error)] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    assert_eq!(
        (error.kind.as_str(), error.key.as_deref()),
        ("invalid_config", Some("users"))
    );
}

#[test]
fn a_pull_streams_each_page_then_the_outcome() {
    let (status, messages) = pull(serde_json::json!({"users": 5}));
    assert_eq!(status, CALL_OK);
    let pages: Vec<usize> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Users(users) => Some(users.len()),
            _ => None,
        })
        .collect();
    assert_eq!(pages, [2, 2, 1]);
    let Some(Message::Outcome(outcome)) = messages.last() else {
        panic!("{messages:?}")
    };
    assert_eq!(outcome.declared_users, Some(5));
    assert!(outcome.complete_snapshot);
}

#[test]
fn an_error_or_a_panic_ends_the_call_with_one_error_message() {
    let (status, messages) = pull(serde_json::json!({"users": 1, "fail": "error"}));
    assert_eq!(status, CALL_FAILED);
    let Some(Message::Error(error)) = messages.last() else {
        panic!("{messages:?}")
    };
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("forbidden", "no read access")
    );

    let (status, messages) = pull(serde_json::json!({"users": 1, "fail": "panic"}));
    assert_eq!(status, CALL_FAILED);
    let Some(Message::Error(error)) = messages.last() else {
        panic!("{messages:?}")
    };
    assert_eq!(
        (error.kind.as_str(), error.message.as_str()),
        ("panic", "sample driver panics")
    );
}

#[test]
fn a_request_that_is_not_json_is_a_protocol_error() {
    let (status, messages) = call_raw(b"{not json");
    assert_eq!(status, CALL_FAILED);
    let [Message::Error(error)] = messages.as_slice() else {
        panic!("{messages:?}")
    };
    assert_eq!(error.kind, "protocol");
    assert!(error.message.contains("cannot read"), "{}", error.message);
}
