//! Talking to the directory: connect (plain, LDAPS or StartTLS, with an
//! optional private CA), simple bind, and searches read with the paged
//! results control (RFC 2696) so a server's size limit never truncates a
//! pull. LDAP result codes become [`DriverError`]s that say what to fix.

use crate::entry::Entry;
use crate::settings::LdapSettings;
use idpsync_driver::DriverError;
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchStream};
use std::sync::Arc;

/// A bound connection.
pub struct Directory {
    ldap: Ldap,
    settings: Arc<LdapSettings>,
}

impl Directory {
    /// Connects and binds (anonymously when no bind DN is set).
    pub async fn connect(settings: Arc<LdapSettings>) -> Result<Directory, DriverError> {
        let mut options = LdapConnSettings::new()
            .set_conn_timeout(settings.timeout)
            .set_starttls(settings.starttls)
            .set_no_tls_verify(settings.danger_skip_tls_verify);
        if let Some(ca_file) = &settings.ca_file
            && !settings.danger_skip_tls_verify
        {
            options = options.set_config(tls_config(ca_file)?);
        }
        let (connection, mut ldap) = LdapConnAsync::with_settings(options, &settings.url)
            .await
            .map_err(|error| {
                DriverError::Transient(format!("cannot reach {}: {error}", settings.url))
            })?;
        ldap3::drive!(connection);
        if let (Some(dn), Some(password)) = (&settings.bind_dn, &settings.bind_password) {
            let result = ldap
                .with_timeout(settings.timeout)
                .simple_bind(dn, password.expose())
                .await
                .map_err(|error| transport(&settings, &error))?;
            if result.rc != 0 {
                return Err(match result.rc {
                    49 => DriverError::Unauthorized(format!(
                        "the directory refused the bind as {dn} (invalidCredentials)"
                    )),
                    rc => result_error(rc, &result.text, "bind", &settings),
                });
            }
        }
        Ok(Directory { ldap, settings })
    }

    /// Starts a paged subtree search under the base named by `base_key`
    /// (`user_base_dn` or `group_base_dn`, for errors).
    pub async fn search(
        &mut self,
        base_key: &'static str,
        base: &str,
        filter: &str,
        attrs: Vec<String>,
    ) -> Result<Pages, DriverError> {
        let adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.settings.page_size as i32)),
        ];
        let stream = self
            .ldap
            .with_timeout(self.settings.timeout)
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
            .await
            .map_err(|error| transport(&self.settings, &error))?;
        Ok(Pages {
            stream,
            page_size: self.settings.page_size as usize,
            finished: false,
            base_key,
            settings: self.settings.clone(),
        })
    }

    /// Reads one entry (a base-scope search), or `None` if it does not exist.
    pub async fn read(
        &mut self,
        key: &'static str,
        dn: &str,
        attrs: Vec<String>,
    ) -> Result<Option<Entry>, DriverError> {
        let result = self
            .ldap
            .with_timeout(self.settings.timeout)
            .search(dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .map_err(|error| transport(&self.settings, &error))?;
        match result.1.rc {
            0 => Ok(result
                .0
                .into_iter()
                .next()
                .map(|entry| SearchEntry::construct(entry).into())),
            32 => Ok(None),
            rc => Err(result_error(rc, &result.1.text, key, &self.settings)),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

/// A search read page by page.
pub struct Pages {
    stream: SearchStream<'static, String, Vec<String>>,
    page_size: usize,
    /// The search's result was read (and checked).
    finished: bool,
    base_key: &'static str,
    settings: Arc<LdapSettings>,
}

impl Pages {
    /// The next page of entries, `None` at the end. The end checks the
    /// search's result: a failed or truncated search is an error, never a
    /// short pull.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Entry>>, DriverError> {
        let mut page = Vec::with_capacity(self.page_size);
        while !self.finished && page.len() < self.page_size {
            match self.stream.next().await {
                Ok(Some(entry)) => page.push(SearchEntry::construct(entry).into()),
                Ok(None) => {
                    self.finished = true;
                    let result = self.stream.finish().await;
                    if result.rc != 0 {
                        return Err(result_error(
                            result.rc,
                            &result.text,
                            self.base_key,
                            &self.settings,
                        ));
                    }
                    break;
                }
                Err(error) => return Err(transport(&self.settings, &error)),
            }
        }
        Ok((!page.is_empty()).then_some(page))
    }
}

/// A TLS configuration trusting the CA certificates in `ca_file` (PEM).
fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, DriverError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bad = |message: String| DriverError::config("ca_file", message);
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .map_err(|error| bad(format!("{}: {error}", ca_file.display())))?;
    for certificate in certificates {
        let certificate =
            certificate.map_err(|error| bad(format!("{}: {error}", ca_file.display())))?;
        roots
            .add(certificate)
            .map_err(|error| bad(format!("{}: {error}", ca_file.display())))?;
    }
    if roots.is_empty() {
        return Err(bad(format!(
            "{}: no PEM certificate in the file",
            ca_file.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| DriverError::Transient(format!("TLS setup: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn transport(settings: &LdapSettings, error: &LdapError) -> DriverError {
    match error {
        LdapError::Timeout { .. } => DriverError::Transient(format!(
            "{} did not answer within {}s",
            settings.url,
            settings.timeout.as_secs()
        )),
        LdapError::FilterParsing => DriverError::protocol("a search filter could not be encoded"),
        // The connection's task ended: the server (or something between)
        // closed the connection while an operation was under way.
        LdapError::OpSend { .. }
        | LdapError::ResultRecv { .. }
        | LdapError::IdScrubSend { .. }
        | LdapError::MiscSend { .. }
        | LdapError::EndOfStream => DriverError::Transient(format!(
            "{} closed the connection in the middle of the read; nothing was applied, the next run reads again",
            settings.url
        )),
        LdapError::Io { source } => {
            DriverError::Transient(format!("{}: the connection failed: {source}", settings.url))
        }
        other => DriverError::Transient(format!("{}: {other}", settings.url)),
    }
}

/// An LDAP result code (RFC 4511, appendix A) as a driver error. `key` is
/// the setting the operation was about.
fn result_error(rc: u32, text: &str, key: &str, settings: &LdapSettings) -> DriverError {
    let detail = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    match rc {
        32 => DriverError::config(key, format!("no such object on {}{detail}", settings.url)),
        34 => DriverError::config(key, format!("not a valid DN{detail}")),
        48 | 49 => DriverError::Unauthorized(format!(
            "the directory refused the bind (result {rc}){detail}"
        )),
        50 => DriverError::Forbidden(format!(
            "the bind DN may not read {key} (insufficientAccessRights){detail}"
        )),
        3 | 51 | 52 | 53 | 80 => DriverError::Transient(format!(
            "the directory is busy or unavailable (result {rc}){detail}"
        )),
        4 => DriverError::protocol(format!(
            "the server's size limit cut the search short even with paging (result 4){detail}"
        )),
        87 => DriverError::config(key, format!("the server rejected the filter{detail}")),
        rc => DriverError::protocol(format!("LDAP result {rc} on {key}{detail}")),
    }
}
