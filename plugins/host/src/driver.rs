//! The host side: [`PluginFactory`] (`kind = "plugin"`) and the driver it
//! builds. Each call spawns the child process (see [`crate::child`]), writes
//! the request to its stdin and reads its stdout line by line: pages go to the
//! [`RecordSink`] as they arrive, the last line is the answer or the error.
//! A child that dies, hangs past the timeout or writes something unreadable
//! fails the call with an error naming the plugin file; the daemon is unharmed.

use crate::child::{ChildFault, ChildRequest, FAULT_PREFIX};
use crate::settings::PluginSettings;
use idpsync_driver::{
    Capabilities, Driver, DriverContext, DriverError, DriverFactory, PullMode, PullOutcome,
    RecordSink,
};
use idpsync_plugin::wire::{Message, Request, WireMode};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long `validate` (run by `check-config` and at start) may take.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the child's stderr quoted in an error.
const STDERR_TAIL: usize = 8;

/// Builds plugin drivers. `runner` is the program that hosts the child
/// (the `idpsync` binary itself, run as `idpsync plugin-child`).
#[derive(Debug, Clone)]
pub struct PluginFactory {
    runner: PathBuf,
    runner_args: Vec<OsString>,
}

impl PluginFactory {
    /// Children run as `<runner> plugin-child`.
    pub fn new(runner: impl Into<PathBuf>) -> Self {
        PluginFactory {
            runner: runner.into(),
            runner_args: vec!["plugin-child".into()],
        }
    }
}

impl DriverFactory for PluginFactory {
    fn kind(&self) -> &'static str {
        "plugin"
    }

    fn build(
        &self,
        settings: &serde_json::Value,
        _context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(PluginDriver {
            factory: self.clone(),
            settings: PluginSettings::parse(settings)?,
        }))
    }

    /// Loads the plugin in a child and has it validate its own table, so
    /// `check-config` reports a wrong file, ABI or kind, and the plugin's own
    /// setting errors under `settings.<key>`.
    fn validate(&self, settings: &serde_json::Value) -> Result<(), DriverError> {
        let settings = PluginSettings::parse(settings)?;
        let request = Request::Validate {
            settings: settings.settings.clone(),
        };
        match converse_blocking(self, &settings, request)? {
            Message::Valid => Ok(()),
            other => Err(unexpected_answer(&settings.path, &other)),
        }
    }
}

/// A connection's plugin.
#[derive(Debug)]
struct PluginDriver {
    factory: PluginFactory,
    settings: PluginSettings,
}

#[async_trait::async_trait]
impl Driver for PluginDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        let request = Request::Check {
            settings: self.settings.settings.clone(),
        };
        match self.converse(request, None).await? {
            Message::Capabilities(capabilities) => Ok(capabilities.into()),
            other => Err(unexpected_answer(&self.settings.path, &other)),
        }
    }

    async fn pull(
        &self,
        mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let request = Request::Pull {
            settings: self.settings.settings.clone(),
            mode: WireMode::from(&mode),
        };
        match self.converse(request, Some(sink)).await? {
            Message::Outcome(outcome) => Ok(outcome.into()),
            other => Err(unexpected_answer(&self.settings.path, &other)),
        }
    }
}

impl PluginDriver {
    async fn converse(
        &self,
        request: Request,
        mut sink: Option<&mut dyn RecordSink>,
    ) -> Result<Message, DriverError> {
        let path = &self.settings.path;
        let mut child = tokio::process::Command::new(&self.factory.runner)
            .args(&self.factory.runner_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| spawn_failed(&self.factory.runner, error))?;
        let input = child_request(&self.settings, request);
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_task = tokio::spawn(log_stderr(stderr, path.clone(), tail.clone()));
        let conversation = async {
            stdin
                .write_all(&input)
                .await
                .map_err(|e| died(path, &format!("could not be sent the request: {e}")))?;
            drop(stdin);
            let mut lines = BufReader::new(stdout).lines();
            let mut answer: Option<Result<Message, DriverError>> = None;
            while let Some(line) = lines
                .next_line()
                .await
                .map_err(|e| died(path, &format!("broke the pipe: {e}")))?
            {
                match read_line(path, &line) {
                    Line::Page(page) => {
                        if answer.is_some() {
                            return Err(DriverError::protocol(format!(
                                "{}: the plugin sent records after its final answer",
                                path.display()
                            )));
                        }
                        if let Some(sink) = sink.as_deref_mut() {
                            deliver(sink, page).await?;
                        }
                    }
                    Line::Answer(result) => {
                        answer.get_or_insert(result);
                    }
                }
            }
            Ok(answer)
        };
        let answer = match tokio::time::timeout(self.settings.timeout(), conversation).await {
            Ok(answer) => answer?,
            Err(_) => {
                let _ = child.kill().await;
                return Err(DriverError::Transient(format!(
                    "{}: the plugin did not finish within {}s and was stopped",
                    path.display(),
                    self.settings.timeout_secs
                )));
            }
        };
        let status = child.wait().await.map_err(|e| died(path, &e.to_string()))?;
        let _ = stderr_task.await;
        let tail: Vec<String> = tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        conclude(path, answer, status, &tail)
    }
}

/// Runs `request` in a child and waits for it, for the synchronous `validate`.
fn converse_blocking(
    factory: &PluginFactory,
    settings: &PluginSettings,
    request: Request,
) -> Result<Message, DriverError> {
    let path = &settings.path;
    let mut child = std::process::Command::new(&factory.runner)
        .args(&factory.runner_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| spawn_failed(&factory.runner, error))?;
    let input = child_request(settings, request);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > VALIDATE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DriverError::Transient(format!(
                    "{}: the plugin did not validate its settings within {}s",
                    path.display(),
                    VALIDATE_TIMEOUT.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(error) => return Err(died(path, &error.to_string())),
        }
    };
    let _ = writer.join();
    let text = reader.join().ok().and_then(Result::ok).unwrap_or_default();
    let stderr_text = errors.join().unwrap_or_default();
    let tail: Vec<String> = stderr_text
        .lines()
        .rev()
        .take(STDERR_TAIL)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(str::to_string)
        .collect();
    let mut answer = None;
    for line in text.lines() {
        if let Line::Answer(result) = read_line(path, line) {
            answer.get_or_insert(result);
        }
    }
    conclude(path, answer, status, &tail)
}

fn child_request(settings: &PluginSettings, request: Request) -> Vec<u8> {
    serde_json::to_vec(&ChildRequest {
        path: settings.path.clone(),
        kind: settings.kind.clone(),
        request,
    })
    .expect("a child request serializes")
}

/// One line from the child.
enum Line {
    /// Records, to hand to the sink.
    Page(Message),
    /// The final answer or the failure.
    Answer(Result<Message, DriverError>),
}

fn read_line(path: &Path, line: &str) -> Line {
    if line.starts_with(FAULT_PREFIX) {
        #[derive(serde::Deserialize)]
        struct FaultLine {
            child: ChildFault,
        }
        return Line::Answer(Err(match serde_json::from_str::<FaultLine>(line) {
            Ok(FaultLine {
                child:
                    ChildFault {
                        key: Some(key),
                        message,
                    },
            }) => DriverError::InvalidConfig { key, message },
            Ok(FaultLine { child }) => DriverError::Protocol(child.message),
            Err(error) => garbage(path, &error),
        }));
    }
    match serde_json::from_str::<Message>(line) {
        Ok(Message::Error(error)) => Line::Answer(Err(plugin_error(error.into_driver_error()))),
        Ok(
            answer @ (Message::Plugin(_)
            | Message::Valid
            | Message::Capabilities(_)
            | Message::Outcome(_)),
        ) => Line::Answer(Ok(answer)),
        Ok(page) => Line::Page(page),
        Err(error) => Line::Answer(Err(garbage(path, &error))),
    }
}

/// A plugin's own setting errors are under `settings.` in the connection.
fn plugin_error(error: DriverError) -> DriverError {
    match error {
        DriverError::InvalidConfig { key, message } => DriverError::InvalidConfig {
            key: if key.is_empty() {
                "settings".into()
            } else {
                format!("settings.{key}")
            },
            message,
        },
        other => other,
    }
}

fn garbage(path: &Path, error: &serde_json::Error) -> DriverError {
    DriverError::protocol(format!(
        "{}: the plugin sent a message idpsync cannot read: {error}",
        path.display()
    ))
}

async fn deliver(sink: &mut dyn RecordSink, page: Message) -> Result<(), DriverError> {
    match page {
        Message::Users(users) => sink.users(users).await,
        Message::UserUpdates(updates) => sink.user_updates(updates).await,
        Message::Groups(groups) => sink.groups(groups).await,
        Message::Memberships(edges) => sink.memberships(edges).await,
        Message::RemovedUsers(ids) => sink.removed_users(ids).await,
        Message::RemovedGroups(ids) => sink.removed_groups(ids).await,
        Message::RemovedMemberships(edges) => sink.removed_memberships(edges).await,
        Message::ReplacedMembers(ids) => sink.replaced_members(ids).await,
        Message::PresentUsers(ids) => sink.present_users(ids).await,
        Message::PresentGroups(ids) => sink.present_groups(ids).await,
        _ => Ok(()),
    }
}

/// The call's result from its answer and how the child ended.
fn conclude(
    path: &Path,
    answer: Option<Result<Message, DriverError>>,
    status: ExitStatus,
    stderr_tail: &[String],
) -> Result<Message, DriverError> {
    match answer {
        Some(result) => result,
        None => {
            let how = describe_exit(status);
            let mut message = format!(
                "{}: the plugin stopped before answering: {how}",
                path.display()
            );
            if !stderr_tail.is_empty() {
                message.push_str("; its last output: ");
                message.push_str(&stderr_tail.join(" | "));
            }
            Err(DriverError::Protocol(message))
        }
    }
}

fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = match signal {
            libc::SIGABRT => " (SIGABRT)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGBUS => " (SIGBUS)",
            libc::SIGILL => " (SIGILL)",
            libc::SIGKILL => " (SIGKILL)",
            libc::SIGTERM => " (SIGTERM)",
            _ => "",
        };
        format!("killed by signal {signal}{name}")
    } else {
        match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "ended".into(),
        }
    }
}

fn unexpected_answer(path: &Path, answer: &Message) -> DriverError {
    let name = serde_json::to_value(answer)
        .ok()
        .and_then(|value| match value {
            serde_json::Value::Object(map) => map.keys().next().cloned(),
            serde_json::Value::String(name) => Some(name),
            _ => None,
        })
        .unwrap_or_default();
    DriverError::protocol(format!(
        "{}: the plugin answered \"{name}\" to the wrong request",
        path.display()
    ))
}

fn spawn_failed(runner: &Path, error: std::io::Error) -> DriverError {
    DriverError::Transient(format!(
        "cannot start the plugin host {}: {error}",
        runner.display()
    ))
}

fn died(path: &Path, what: &str) -> DriverError {
    DriverError::Protocol(format!("{}: the plugin process {what}", path.display()))
}

/// Logs the child's stderr (a plugin's panic message lands here) and keeps
/// the last lines for the error of a crashed call.
async fn log_stderr(
    stderr: tokio::process::ChildStderr,
    path: PathBuf,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(plugin = %path.display(), "{line}");
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn path() -> PathBuf {
        PathBuf::from("/opt/plugins/libx.so")
    }

    #[test]
    fn the_plugins_setting_errors_are_reported_under_settings() {
        let line = r#"{"error":{"kind":"invalid_config","message":"must not be empty","key":"user_base_dn"}}"#;
        let Line::Answer(Err(error)) = read_line(&path(), line) else {
            panic!("an error line is an answer");
        };
        assert_eq!(
            error,
            DriverError::config("settings.user_base_dn", "must not be empty")
        );
    }

    #[test]
    fn a_child_fault_names_the_connection_key() {
        let line = r#"{"child":{"key":"path","message":"/x.so: built for idpsync plugin ABI 2; this idpsync speaks plugin ABI 1"}}"#;
        let Line::Answer(Err(error)) = read_line(&path(), line) else {
            panic!("a fault is an answer");
        };
        assert_eq!(
            error.to_string(),
            "path: /x.so: built for idpsync plugin ABI 2; this idpsync speaks plugin ABI 1"
        );
    }

    #[test]
    fn pages_are_pages_and_garbage_is_an_error_naming_the_file() {
        assert!(matches!(
            read_line(&path(), r#"{"users":[]}"#),
            Line::Page(Message::Users(_))
        ));
        let Line::Answer(Err(error)) = read_line(&path(), "{\"users\": 42}") else {
            panic!("a malformed page is an error");
        };
        assert!(
            error.to_string().contains("/opt/plugins/libx.so"),
            "{error}"
        );
    }

    #[test]
    fn a_crash_before_the_answer_names_the_signal_and_the_last_output() {
        let status = ExitStatus::from_raw(libc::SIGABRT);
        let error = conclude(
            &path(),
            None,
            status,
            &["thread 'main' panicked at src/lib.rs:3:5".into()],
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "unexpected response: /opt/plugins/libx.so: the plugin stopped before answering: \
             killed by signal 6 (SIGABRT); its last output: thread 'main' panicked at src/lib.rs:3:5"
        );
    }
}
