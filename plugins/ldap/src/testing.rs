//! A real OpenLDAP server for tests (feature `testing`): Debian's `slapd`,
//! started on free loopback ports with a temporary mdb database seeded by
//! `slapadd`, optionally with LDAPS and StartTLS (a throwaway CA made with
//! the `openssl` command) and a server size limit that only paged searches
//! get past. The server stops when the [`Slapd`] is dropped.

use ldap3::{Ldap, LdapConnAsync, Mod};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const PEOPLE: &str = "ou=people,dc=example,dc=com";
pub const GROUPS: &str = "ou=groups,dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const ADMIN_PASSWORD: &str = "admin-secret";
/// The account the driver binds as; unlike the rootdn it is subject to the
/// server's size limit.
pub const SERVICE_DN: &str = "cn=idpsync,dc=example,dc=com";
pub const SERVICE_PASSWORD: &str = "svc-secret";

/// A person under `ou=people`.
#[derive(Debug, Clone)]
pub struct Person {
    pub uid: String,
    pub given_name: String,
    pub family_name: String,
    /// `employeeType`, e.g. `disabled`.
    pub employee_type: Option<String>,
}

impl Person {
    pub fn new(uid: &str, given_name: &str, family_name: &str) -> Self {
        Person {
            uid: uid.into(),
            given_name: given_name.into(),
            family_name: family_name.into(),
            employee_type: None,
        }
    }

    pub fn dn(&self) -> String {
        person_dn(&self.uid)
    }
}

pub fn person_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},{GROUPS}")
}

/// A `groupOfNames` under `ou=groups`; `members` are DNs (people or groups).
#[derive(Debug, Clone)]
pub struct Group {
    pub cn: String,
    pub members: Vec<String>,
}

/// What the directory starts with.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    pub people: Vec<Person>,
    pub groups: Vec<Group>,
    /// Raw LDIF appended as is (e.g. Active Directory shaped entries).
    pub extra_ldif: String,
}

impl Seed {
    pub fn to_ldif(&self) -> String {
        let mut ldif = format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
             cn: idpsync\nuserPassword: {SERVICE_PASSWORD}\n\n"
        );
        for p in &self.people {
            let _ = write!(
                ldif,
                "dn: {}\nobjectClass: inetOrgPerson\nuid: {}\ncn: {} {}\ngivenName: {}\nsn: {}\nmail: {}@example.com\n",
                p.dn(),
                p.uid,
                p.given_name,
                p.family_name,
                p.given_name,
                p.family_name,
                p.uid
            );
            if let Some(kind) = &p.employee_type {
                let _ = writeln!(ldif, "employeeType: {kind}");
            }
            ldif.push('\n');
        }
        for g in &self.groups {
            let _ = writeln!(
                ldif,
                "dn: {}\nobjectClass: groupOfNames\ncn: {}",
                group_dn(&g.cn),
                g.cn
            );
            for member in &g.members {
                let _ = writeln!(ldif, "member: {member}");
            }
            ldif.push('\n');
        }
        ldif.push_str(&self.extra_ldif);
        ldif
    }
}

/// Server options.
#[derive(Debug, Clone, Default)]
pub struct SlapdOptions {
    /// `sizelimit` for ordinary searches (paged searches are unlimited).
    pub size_limit: Option<u32>,
    /// Also listen on LDAPS and offer StartTLS, with a throwaway CA.
    pub tls: bool,
}

/// A running slapd.
pub struct Slapd {
    /// `ldap://127.0.0.1:<port>`
    pub url: String,
    /// `ldaps://127.0.0.1:<port>` when started with TLS.
    pub ldaps_url: Option<String>,
    /// The CA that signed the server's certificate, when started with TLS.
    pub ca_file: Option<PathBuf>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

impl Slapd {
    /// Starts a server seeded with `seed`. Panics with what to install when
    /// slapd is missing: these tests need the real server.
    pub fn start(seed: &Seed, options: &SlapdOptions) -> Slapd {
        assert!(
            Path::new(SLAPD).exists() && Path::new(SLAPADD).exists(),
            "these tests need OpenLDAP's server: apt-get install slapd ldap-utils"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = dir.path().join("db");
        std::fs::create_dir_all(&db).expect("database folder");
        let mut config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             include /etc/ldap/schema/msuser.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {}/slapd.pid\n",
            dir.path().display()
        );
        if let Some(limit) = options.size_limit {
            let _ = writeln!(
                config,
                "sizelimit size.soft={limit} size.hard={limit} size.prtotal=unlimited"
            );
        }
        let ca_file = options.tls.then(|| {
            let (ca, cert, key) = throwaway_certificates(dir.path());
            let _ = write!(
                config,
                "TLSCACertificateFile {}\nTLSCertificateFile {}\nTLSCertificateKeyFile {}\n",
                ca.display(),
                cert.display(),
                key.display()
            );
            ca
        });
        let _ = write!(
            config,
            "database mdb\nmaxsize 268435456\nsuffix \"{SUFFIX}\"\nrootdn \"{ADMIN_DN}\"\n\
             rootpw {ADMIN_PASSWORD}\ndirectory {}\nindex objectClass eq\n",
            db.display()
        );
        let config_path = dir.path().join("slapd.conf");
        std::fs::write(&config_path, config).expect("write slapd.conf");
        let ldif_path = dir.path().join("seed.ldif");
        std::fs::write(&ldif_path, seed.to_ldif()).expect("write seed.ldif");
        let added = Command::new(SLAPADD)
            .arg("-f")
            .arg(&config_path)
            .arg("-l")
            .arg(&ldif_path)
            .output()
            .expect("run slapadd");
        assert!(
            added.status.success(),
            "slapadd refused the seed: {}",
            String::from_utf8_lossy(&added.stderr)
        );

        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let mut listen = format!("{url}/");
        let ldaps_port = options.tls.then(free_port);
        if let Some(p) = ldaps_port {
            let _ = write!(listen, " ldaps://127.0.0.1:{p}/");
        }
        let log = std::fs::File::create(dir.path().join("slapd.log")).expect("log file");
        let mut child = Command::new(SLAPD)
            .arg("-f")
            .arg(&config_path)
            .arg("-h")
            .arg(&listen)
            // Any debug level keeps slapd in the foreground, so it is our child.
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.path().join("slapd.log")).unwrap_or_default();
                panic!("slapd exited ({status}): {log}");
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Slapd {
            url,
            ldaps_url: ldaps_port.map(|p| format!("ldaps://127.0.0.1:{p}")),
            ca_file,
            child,
            _dir: dir,
        }
    }

    /// A connection bound as the directory's administrator.
    pub async fn admin(&self) -> Ldap {
        let (connection, mut ldap) = LdapConnAsync::new(&self.url)
            .await
            .expect("connect to slapd");
        ldap3::drive!(connection);
        ldap.simple_bind(ADMIN_DN, ADMIN_PASSWORD)
            .await
            .and_then(|r| r.success())
            .expect("bind as admin");
        ldap
    }

    /// Deletes an entry.
    pub async fn delete(&self, dn: &str) {
        let mut ldap = self.admin().await;
        ldap.delete(dn)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("delete {dn}: {e}"));
        let _ = ldap.unbind().await;
    }

    /// Applies modifications to an entry.
    pub async fn modify(&self, dn: &str, mods: Vec<Mod<String>>) {
        let mut ldap = self.admin().await;
        ldap.modify(dn, mods)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("modify {dn}: {e}"));
        let _ = ldap.unbind().await;
    }

    /// Replaces all values of `attr`.
    pub async fn replace(&self, dn: &str, attr: &str, values: &[&str]) {
        let values: HashSet<String> = values.iter().map(|v| v.to_string()).collect();
        self.modify(dn, vec![Mod::Replace(attr.to_string(), values)])
            .await;
    }

    /// Adds a person entry.
    pub async fn add_person(&self, person: &Person) {
        let mut ldap = self.admin().await;
        let set = |v: &str| HashSet::from([v.to_string()]);
        let attrs = vec![
            ("objectClass".to_string(), set("inetOrgPerson")),
            ("uid".to_string(), set(&person.uid)),
            (
                "cn".to_string(),
                set(&format!("{} {}", person.given_name, person.family_name)),
            ),
            ("givenName".to_string(), set(&person.given_name)),
            ("sn".to_string(), set(&person.family_name)),
            (
                "mail".to_string(),
                set(&format!("{}@example.com", person.uid)),
            ),
        ];
        ldap.add(&person.dn(), attrs)
            .await
            .and_then(|r| r.success())
            .unwrap_or_else(|e| panic!("add {}: {e}", person.dn()));
        let _ = ldap.unbind().await;
    }
}

/// A CA and a server certificate for 127.0.0.1, made with `openssl`.
fn throwaway_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = dir.join("ca.key");
    let ca = dir.join("ca.pem");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let path = |p: &Path| p.display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=idpsync test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &path(&ca_key),
        "-out",
        &path(&ca),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &path(&key),
        "-out",
        &path(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path(&csr),
        "-CA",
        &path(&ca),
        "-CAkey",
        &path(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path(&ext),
        "-out",
        &path(&cert),
    ]);
    (ca, cert, key)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
