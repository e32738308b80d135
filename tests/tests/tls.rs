//! TLS on the real binary with the local CA of `ops/local-ca.sh`: `muster serve` answers over
//! https with the script's certificate, a SIGHUP after the script ran again puts the new
//! certificate on new connections, and a broken key file keeps the one in use with an error
//! in the log; `muster serve` and `muster gateway` refuse a plaintext listener on every
//! interface unless a TLS-terminating proxy is in front.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

const TOKEN: &str = "tls-e2e-operator-token-0123456789";
const DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `ops/local-ca.sh` into `dir`.
fn local_ca(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/local-ca.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(dir)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "ops/local-ca.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn certificate(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// Lines a child writes on stdout and stderr, as they come.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Self {
        let (tx, rx) = mpsc::channel();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`, at most [`DEADLINE`].
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} before the deadline; seen:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The certificate a new connection gets.
async fn peer_certificate(base: &str, ca: &Path) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .tls_info(true)
        .build()
        .unwrap();
    let r = client
        .get(format!("{base}/api/units"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("an answer over TLS")
        .to_vec()
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("muster.toml");
    std::fs::write(
        &path,
        format!(
            "gateway_bind = \"off\"\ncity = \"grid\"\n{extra}\n[[users]]\nname = \"op\"\nrole = \"operator\"\ntoken = \"{TOKEN}\"\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn serve_speaks_tls_with_the_local_ca_and_reloads_its_certificate_on_sighup() {
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    local_ca(&pki);
    let first = certificate(&pki.join("server.pem"));
    let config = write_config(
        work.path(),
        &format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            pki.join("server.pem"),
            pki.join("server-key.pem")
        ),
    );
    let port = free_port();
    let mut child = Command::new(muster_e2e::muster_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "muster_mobile=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut child);
    let listening = lines.wait_for("muster listening on");
    let base = format!("https://127.0.0.1:{port}");
    assert!(listening.ends_with(&base), "{listening}");
    let ca = pki.join("ca.pem");
    assert_eq!(peer_certificate(&base, &ca).await, first);

    // A new certificate from the same CA, then SIGHUP: new connections get it.
    local_ca(&pki);
    let second = certificate(&pki.join("server.pem"));
    assert_ne!(first, second);
    signal(&child, "HUP");
    lines.wait_for("reloaded the TLS certificate");
    assert_eq!(peer_certificate(&base, &ca).await, second);

    // A broken key: an error in the log, the certificate in use stays, the server serves on.
    std::fs::write(pki.join("server-key.pem"), "not a key\n").unwrap();
    signal(&child, "HUP");
    let refused = lines.wait_for("was not reloaded");
    assert!(
        refused.contains("ERROR") && refused.contains("server-key.pem"),
        "{refused}"
    );
    assert_eq!(peer_certificate(&base, &ca).await, second);

    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn plaintext_on_every_interface_is_refused_unless_a_proxy_is_in_front() {
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), "");
    let serve = |proxy: Option<&str>| {
        let mut command = Command::new(muster_e2e::muster_bin());
        command
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(work.path().join("data"))
            .args(["--bind", "0.0.0.0:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = proxy {
            command.env("MUSTER_TLS_PROXY", p);
        }
        command
    };
    let out = serve(None).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bind 0.0.0.0:") && stderr.contains("tls_proxy"),
        "{stderr}"
    );

    let mut child = serve(Some("true")).spawn().unwrap();
    let mut lines = Lines::of(&mut child);
    lines.wait_for("muster listening on http://0.0.0.0:");
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());

    let out = Command::new(muster_e2e::muster_bin())
        .args(["gateway", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(work.path().join("gateway"))
        .env(
            "MUSTER_TOKEN_SECRET",
            "a-test-secret-of-more-than-thirty-two-bytes",
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--listen 0.0.0.0:0") && stderr.contains("--tls-proxy"),
        "{stderr}"
    );
}
