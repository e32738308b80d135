//! TLS for Muster's listeners (the mobile gateway here, the operator API in the server) and
//! for its clients, with rustls on the ring provider.
//!
//! - Servers: [`CertificateFiles`] names a PEM certificate chain and its PEM private key;
//!   [`ReloadableCert`] answers every handshake with the pair loaded from them, and
//!   [`ReloadableCert::reload`] reads the files again (on SIGHUP: [`reload_on_hangup`]),
//!   keeping the pair it has when the new files are bad. Connections already open keep the
//!   certificate they were made with. [`server_config`] is the rustls configuration of a
//!   listener.
//! - Clients: [`client_config`] trusts the system's root certificates plus, optionally, the
//!   CAs in a PEM file the user names (`--ca-cert`, `MUSTER_CA_CERT`). Verification is never
//!   skipped.
//! - A listener without TLS on an address other machines reach would carry tokens and
//!   callers' details in the clear: [`check_plaintext_bind`] refuses it unless a
//!   TLS-terminating proxy is in front.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

/// The environment variable naming a PEM file of CA certificates that clients trust besides
/// the system's roots.
pub const CA_CERT_ENV: &str = "MUSTER_CA_CERT";

/// What went wrong with a certificate, a key or a CA file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("{} is not valid PEM: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A certificate file holds no certificate.
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error(
        "{} holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA PRIVATE KEY or EC PRIVATE KEY)",
        path.display()
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate that cannot be used.
    #[error("the certificate in {} cannot be used: {source}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// A private key that cannot be used.
    #[error("the private key in {} cannot be used: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The key is not the certificate's.
    #[error(
        "the private key in {} does not belong to the certificate in {} (the first certificate of the chain must be the server's own)",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// No root certificate to trust at all.
    #[error(
        "no trusted CA certificates: the system has none (install the ca-certificates package) and no CA file was named (--ca-cert, {CA_CERT_ENV})"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The crypto provider of every TLS configuration Muster makes: *ring*. rustls marks it
/// deprecated because it has no post-quantum key exchange; the provider that has one,
/// aws-lc-rs, needs cmake and a long native build. The key exchanges *ring* offers (X25519,
/// P-256, P-384) are the ones browsers and phones speak today.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The certificates in a PEM file, in order; an error when there is none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// A listener's certificate chain and private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The certificate chain: the server's own certificate first, then the intermediates.
    pub cert: PathBuf,
    /// The private key of the first certificate (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
}

impl CertificateFiles {
    /// Reads and checks both files: the chain parses, the key parses and belongs to the
    /// chain's first certificate.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let chain = read_certificates(&self.cert)?;
        let key_bytes = read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                path: self.key.clone(),
            },
            e => pem_error(&self.key, e),
        })?;
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .map_err(|source| TlsError::BadKey {
                path: self.key.clone(),
                source,
            })?;
        let certified = CertifiedKey::new(chain, signing);
        match certified.keys_match() {
            Ok(()) => Ok(Arc::new(certified)),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(TlsError::KeyMismatch {
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                })
            }
            // The ring provider always knows its keys' public half; this is kept for others.
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(Arc::new(certified))
            }
            Err(source) => Err(TlsError::BadCertificate {
                path: self.cert.clone(),
                source,
            }),
        }
    }
}

/// The certificate a listener presents, loaded from [`CertificateFiles`] and swapped whole
/// by [`ReloadableCert::reload`]. Handshakes take the pair current when they start.
#[derive(Debug)]
pub struct ReloadableCert {
    files: CertificateFiles,
    current: RwLock<Arc<CertifiedKey>>,
    reloads: watch::Sender<Reloads>,
}

/// The reloads a [`ReloadableCert`] carried out and refused since it was loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reloads {
    /// Reloads whose new pair is in use.
    pub loaded: u64,
    /// Reloads refused for bad files (the pair before stayed).
    pub refused: u64,
}

impl ReloadableCert {
    /// Loads the files; an error names the file and what is wrong with it.
    pub fn load(files: CertificateFiles) -> Result<Self, TlsError> {
        let current = RwLock::new(files.load()?);
        Ok(Self {
            files,
            current,
            reloads: watch::Sender::new(Reloads::default()),
        })
    }

    /// The files it loads from.
    pub fn files(&self) -> &CertificateFiles {
        &self.files
    }

    /// The certificate chain and key presented now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again and presents the new pair from the next handshake on. When
    /// they are bad, the current pair stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        match self.files.load() {
            Ok(fresh) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                self.reloads.send_modify(|r| r.loaded += 1);
                Ok(())
            }
            Err(e) => {
                self.reloads.send_modify(|r| r.refused += 1);
                Err(e)
            }
        }
    }

    /// The reloads so far, changed after each reload (to wait for one).
    pub fn reloads(&self) -> watch::Receiver<Reloads> {
        self.reloads.subscribe()
    }

    /// [`ReloadableCert::reload`], logged: `info` when the new pair is in use, `error` when
    /// the files are bad and the current pair stays.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                cert = %self.files.cert.display(),
                "reloaded the TLS certificate; new connections get the new one"
            ),
            Err(e) => {
                tracing::error!("the TLS certificate was not reloaded, the current one stays: {e}")
            }
        }
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls configuration of a listener presenting `cert` (TLS 1.2 and 1.3, no client
/// certificates).
pub fn server_config(cert: Arc<ReloadableCert>) -> Result<rustls::ServerConfig, TlsError> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(cert))
}

/// Reloads `cert` on every SIGHUP until `stop` resolves. The handler is in place when this
/// returns, so a SIGHUP sent after it never ends the process. Not on Windows (no SIGHUP).
pub fn reload_on_hangup(
    cert: Arc<ReloadableCert>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    got = hangups.recv() => match got {
                        Some(()) => cert.reload_and_log(),
                        None => break,
                    },
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop((cert, stop));
    Ok(())
}

/// The rustls configuration of a client: the system's root certificates, plus the CA
/// certificates in `ca_file` when given. The server's certificate is always verified.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("a system root certificate was not loaded: {e}");
    }
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_certificates(path)? {
            roots.add(cert).map_err(|source| TlsError::BadCertificate {
                path: path.to_owned(),
                source,
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether `bind` (`host:port`) listens on the loopback interface only: `127.0.0.0/8`,
/// `::1` or `localhost`. Anything else (a wildcard, an interface's address, another host
/// name) is reachable from other machines.
pub fn is_loopback_bind(bind: &str) -> bool {
    let host = bind.rsplit_once(':').map_or(bind, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A listener that would speak plaintext to other machines.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} {bind} is reachable from other machines and no TLS is configured: tokens and callers' \
     details would cross the network in the clear. {remedy}"
)]
pub struct PlaintextRefused {
    /// Which listener (`bind`, `gateway_bind`, `--listen`).
    pub what: String,
    /// Its address.
    pub bind: String,
    /// How to set TLS up, in the words of the command's own settings.
    pub remedy: String,
}

/// Refuses a plaintext listener on `bind` unless it is loopback
/// ([`is_loopback_bind`]) or a TLS-terminating proxy is in front (`behind_proxy`).
pub fn check_plaintext_bind(
    what: &str,
    bind: &str,
    behind_proxy: bool,
    remedy: &str,
) -> Result<(), PlaintextRefused> {
    if behind_proxy || is_loopback_bind(bind) {
        return Ok(());
    }
    Err(PlaintextRefused {
        what: what.to_owned(),
        bind: bind.to_owned(),
        remedy: remedy.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, and two server certificates it signed, with their keys, in a directory.
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
            let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap())
                .unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            for name in ["one", "two"] {
                let key = rcgen::KeyPair::generate().unwrap();
                let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                    .unwrap()
                    .signed_by(&key, &ca)
                    .unwrap();
                std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
                std::fs::write(
                    dir.path().join(format!("{name}-key.pem")),
                    key.serialize_pem(),
                )
                .unwrap();
            }
            Self { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            std::fs::write(self.path(name), text).unwrap();
            self.path(name)
        }

        fn files(&self, cert: &str, key: &str) -> CertificateFiles {
            CertificateFiles {
                cert: self.path(cert),
                key: self.path(key),
            }
        }
    }

    #[test]
    fn a_matching_chain_and_key_load() {
        let pki = Pki::new();
        let pair = pki.files("one.pem", "one-key.pem").load().unwrap();
        assert_eq!(pair.cert.len(), 1);
    }

    #[test]
    fn bad_certificate_and_key_files_are_refused_naming_the_file_and_the_fault() {
        let pki = Pki::new();
        let half = std::fs::read_to_string(pki.path("one.pem")).unwrap();
        let half = &half[..half.len() / 2];
        pki.write("half.pem", half);
        pki.write("prose.pem", "this is not a certificate\n");
        pki.write(
            "garbled.pem",
            "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
        );
        pki.write(
            "not-der.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        );
        pki.write(
            "bad-key.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        for (cert, key, file, says, why) in [
            (
                "missing.pem",
                "one-key.pem",
                "missing.pem",
                "cannot read",
                "no certificate file",
            ),
            (
                "one.pem",
                "missing-key.pem",
                "missing-key.pem",
                "cannot read",
                "no key file",
            ),
            (
                "prose.pem",
                "one-key.pem",
                "prose.pem",
                "no PEM certificate",
                "no PEM at all",
            ),
            (
                "half.pem",
                "one-key.pem",
                "half.pem",
                "not valid PEM",
                "a truncated certificate",
            ),
            (
                "garbled.pem",
                "one-key.pem",
                "garbled.pem",
                "not valid PEM",
                "base64 that is not",
            ),
            (
                "not-der.pem",
                "one-key.pem",
                "not-der.pem",
                "cannot be used",
                "PEM around no certificate",
            ),
            (
                "one.pem",
                "one.pem",
                "one.pem",
                "no PEM private key",
                "a certificate as the key",
            ),
            (
                "one.pem",
                "bad-key.pem",
                "bad-key.pem",
                "cannot be used",
                "a key that does not parse",
            ),
            (
                "one.pem",
                "two-key.pem",
                "two-key.pem",
                "does not belong",
                "another certificate's key",
            ),
        ] {
            let e = pki
                .files(cert, key)
                .load()
                .map(|_| ())
                .expect_err(why)
                .to_string();
            assert!(e.contains(says), "{why}: {e}");
            assert!(e.contains(file), "{why}: the message names no file: {e}");
        }
    }

    #[test]
    fn a_bad_reload_keeps_the_pair_in_use_and_a_good_one_replaces_it() {
        let pki = Pki::new();
        let files = pki.files("live.pem", "live-key.pem");
        std::fs::copy(pki.path("one.pem"), &files.cert).unwrap();
        std::fs::copy(pki.path("one-key.pem"), &files.key).unwrap();
        let cert = ReloadableCert::load(files.clone()).unwrap();
        let first = cert.current().cert[0].clone();
        // A new certificate beside the old key: refused, the first pair stays.
        std::fs::copy(pki.path("two.pem"), &files.cert).unwrap();
        assert!(matches!(cert.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(cert.current().cert[0], first);
        assert_eq!(
            *cert.reloads().borrow(),
            Reloads {
                loaded: 0,
                refused: 1
            }
        );
        std::fs::copy(pki.path("two-key.pem"), &files.key).unwrap();
        cert.reload().unwrap();
        assert_ne!(cert.current().cert[0], first);
        assert_eq!(
            *cert.reloads().borrow(),
            Reloads {
                loaded: 1,
                refused: 1
            }
        );
    }

    #[test]
    fn a_client_trusts_a_named_ca_file_and_refuses_a_bad_one() {
        let pki = Pki::new();
        client_config(Some(&pki.path("ca.pem"))).unwrap();
        let e = client_config(Some(&pki.path("nowhere.pem")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nowhere.pem") && e.contains("cannot read"),
            "{e}"
        );
        let e = client_config(Some(&pki.write("empty.pem", "")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("empty.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
    }

    #[test]
    fn loopback_binds_are_told_from_reachable_ones() {
        for (bind, loopback) in [
            ("127.0.0.1:8080", true),
            ("127.0.0.2:0", true),
            ("[::1]:7450", true),
            ("localhost:0", true),
            ("0.0.0.0:8080", false),
            ("[::]:8080", false),
            ("192.0.2.10:8080", false),
            ("dispatch.example.org:443", false),
            ("localhost.example.org:443", false),
        ] {
            assert_eq!(is_loopback_bind(bind), loopback, "{bind}");
            assert_eq!(
                check_plaintext_bind("bind", bind, false, "").is_ok(),
                loopback,
                "{bind}"
            );
            assert!(
                check_plaintext_bind("bind", bind, true, "").is_ok(),
                "{bind}"
            );
        }
    }
}
