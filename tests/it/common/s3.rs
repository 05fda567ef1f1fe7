//! A real S3-compatible server per test: `moto_server` (PyPI `moto[server]`, installed by
//! `scripts/setup-deps.sh test`) on an ephemeral loopback port, killed by PID on drop.
//!
//! With `auth`, moto enforces IAM: the harness creates a user, its access key and an `s3:*`
//! policy in moto's first unauthenticated calls (`INITIAL_NO_AUTH_ACTION_COUNT`), so a wrong
//! secret gets S3's real `SignatureDoesNotMatch`. The test's own checks of the bucket go
//! through boto3 (another client than the server's rust-s3), so a bug in our client cannot
//! hide itself.

use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::server::ServerOpts;
use super::{kill_and_reap, output_with_deadline, poll_until, require_binary, send_signal, temp_dir};

pub const BUCKET: &str = "binlogs";

pub struct S3Server {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    pub access_key: String,
    pub secret_key: String,
}

/// The boto3 client the harness scripts use (endpoint and keys from the environment).
const BOTO_PRELUDE: &str = r#"
import os, sys, json, boto3
from botocore.config import Config
def client(svc):
    return boto3.client(svc, endpoint_url=os.environ["S3_ENDPOINT"], region_name="us-east-1",
        aws_access_key_id=os.environ["S3_AK"], aws_secret_access_key=os.environ["S3_SK"],
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
s3 = client("s3")
B = os.environ["S3_BUCKET"]
"#;

impl S3Server {
    /// Starts moto with one bucket (`BUCKET`); with `auth`, IAM is enforced.
    pub fn start(auth: bool) -> S3Server {
        require_binary("moto_server");
        let dir = temp_dir("binlog-it-s3-");
        for _ in 0..5 {
            let port = super::free_port();
            let log = std::fs::File::create(dir.path().join("moto.log")).expect("create moto.log");
            let mut cmd = Command::new("moto_server");
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log);
            if auth {
                cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "4");
            }
            let mut child = cmd.spawn().expect("spawn moto_server");
            let up = poll_until(Duration::from_secs(30), "moto_server to listen", || {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok().map(|_| true)
            });
            if !up {
                continue; // the port was taken; try another
            }
            let mut s3 = S3Server {
                child: Some(child),
                port,
                dir,
                access_key: "testing-key".into(),
                secret_key: "testing-secret".into(),
            };
            if auth {
                let out = s3.python(
                    r#"
iam = client("iam")
iam.create_user(UserName="binlog-server")
k = iam.create_access_key(UserName="binlog-server")["AccessKey"]
iam.put_user_policy(UserName="binlog-server", PolicyName="binlogs", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
print(k["AccessKeyId"], k["SecretAccessKey"])
"#,
                    &[],
                );
                let mut it = out.split_whitespace();
                s3.access_key = it.next().expect("access key id").to_string();
                s3.secret_key = it.next().expect("secret key").to_string();
            }
            s3.python("s3.create_bucket(Bucket=B)", &[]);
            return s3;
        }
        panic!("moto_server did not start on a free port (log in {})", dir.path().display());
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds the `BINLOG_SERVER_UPLOAD_*` settings for this bucket, with `secret_key`.
    pub fn upload_env_with_secret(&self, opts: ServerOpts, secret_key: &str) -> ServerOpts {
        opts.env("BINLOG_SERVER_UPLOAD_ENABLED", "true")
            .env("BINLOG_SERVER_UPLOAD_ENDPOINT", self.endpoint())
            .env("BINLOG_SERVER_UPLOAD_BUCKET", BUCKET)
            .env("BINLOG_SERVER_UPLOAD_ACCESS_KEY", &self.access_key)
            .env("BINLOG_SERVER_UPLOAD_SECRET_KEY", secret_key)
            .env("BINLOG_SERVER_UPLOAD_PREFIX", "it")
    }

    /// Adds the `BINLOG_SERVER_UPLOAD_*` settings for this bucket.
    pub fn upload_env(&self, opts: ServerOpts) -> ServerOpts {
        let secret = self.secret_key.clone();
        self.upload_env_with_secret(opts, &secret)
    }

    /// Runs a boto3 script (after `BOTO_PRELUDE`) and returns its stdout; panics on failure.
    pub fn python(&self, script: &str, args: &[&str]) -> String {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(format!("{BOTO_PRELUDE}\n{script}"))
            .args(args)
            .env("S3_ENDPOINT", self.endpoint())
            .env("S3_AK", &self.access_key)
            .env("S3_SK", &self.secret_key)
            .env("S3_BUCKET", BUCKET);
        let out = output_with_deadline(&mut cmd, Duration::from_secs(120), "a boto3 script");
        assert!(
            out.status.success(),
            "boto3 script failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every object key in the bucket.
    pub fn keys(&self) -> Vec<String> {
        let out = self.python(
            r#"
p = s3.get_paginator("list_objects_v2")
for page in p.paginate(Bucket=B):
    for o in page.get("Contents", []):
        print(o["Key"])
"#,
            &[],
        );
        out.lines().map(str::to_string).collect()
    }

    /// Downloads every object under `prefix` into `dir` (at `dir/<key>`) in one boto3 run;
    /// returns the keys.
    pub fn download_prefix(&self, prefix: &str, dir: &std::path::Path) -> Vec<String> {
        let out = self.python(
            r#"
p = s3.get_paginator("list_objects_v2")
for page in p.paginate(Bucket=B, Prefix=sys.argv[1]):
    for o in page.get("Contents", []):
        dest = os.path.join(sys.argv[2], o["Key"])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        s3.download_file(B, o["Key"], dest)
        print(o["Key"])
"#,
            &[prefix, dir.to_str().expect("utf-8 path")],
        );
        out.lines().map(str::to_string).collect()
    }

    /// An object's bytes, downloaded by boto3.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let path: PathBuf = self.dir.path().join("download");
        self.python("s3.download_file(B, sys.argv[1], sys.argv[2])", &[key, path.to_str().expect("utf-8 path")]);
        std::fs::read(&path).expect("read the downloaded object")
    }

    /// `(PartsCount, sha256 metadata)` of an object (PartsCount 0 for a single PUT).
    pub fn head(&self, key: &str) -> (u64, String) {
        let out = self.python(
            r#"
h = s3.head_object(Bucket=B, Key=sys.argv[1])
p = s3.head_object(Bucket=B, Key=sys.argv[1], PartNumber=1)
print(p.get("PartsCount", 0), h.get("Metadata", {}).get("sha256", ""))
"#,
            &[key],
        );
        let mut it = out.split_whitespace();
        (it.next().and_then(|n| n.parse().ok()).unwrap_or(0), it.next().unwrap_or("").to_string())
    }

    /// Unfinished multipart uploads in the bucket.
    pub fn multipart_uploads(&self) -> usize {
        let out = self.python("print(len(s3.list_multipart_uploads(Bucket=B).get('Uploads', [])))", &[]);
        out.trim().parse().expect("a count")
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never answered,
    /// as with a hung endpoint. `resume` undoes it; state is kept.
    pub fn pause(&self) {
        send_signal(self.pid(), "STOP");
    }

    pub fn resume(&self) {
        send_signal(self.pid(), "CONT");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("moto is running").id()
    }

    pub fn log_tail(&self) -> String {
        super::file_tail(&self.dir.path().join("moto.log"), 30)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_and_reap(&mut c);
        }
    }
}
