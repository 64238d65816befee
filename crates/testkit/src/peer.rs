//! Peer programs killed on drop.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Fails the test with an actionable message when a peer program is missing.
pub fn require(bin: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(
        found,
        "`{bin}` not found on PATH: install Debian's srt-tools and ffmpeg (scripts/test does)"
    );
}

/// A child process killed on drop, run in a fresh temporary directory (its working
/// directory, removed on drop) with its stderr captured in a file there.
pub struct Peer {
    child: Child,
    bin: String,
    stderr: PathBuf,
    dir: tempfile::TempDir,
}

impl Peer {
    /// Starts `bin` with `args`; panics (failing the test) if it cannot start.
    pub fn spawn<I>(bin: &str, args: I) -> Peer
    where
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        require(bin);
        let dir = tempfile::tempdir().expect("temporary directory for a peer");
        let stderr = dir.path().join("stderr");
        let child = Command::new(bin)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("peer stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        Peer {
            child,
            bin: bin.to_owned(),
            stderr,
            dir,
        }
    }

    /// What the program printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The process's working directory (a fresh temporary one).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit on its own, blocking the thread.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Peer::wait`] for async tests: polls without blocking the runtime's thread.
    pub async fn exited(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("bin", &self.bin)
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_runs_in_its_own_directory_and_its_stderr_is_kept() {
        let mut peer = Peer::spawn("sh", ["-c", "pwd >&2; exit 3"]);
        let status = peer.wait(Duration::from_secs(5)).expect("sh exits");
        assert_eq!(status.code(), Some(3));
        let dir = peer.dir().canonicalize().unwrap();
        assert_eq!(Path::new(peer.stderr().trim()), dir);
    }

    #[test]
    fn dropping_a_peer_kills_it() {
        let peer = Peer::spawn("sleep", ["30"]);
        let proc = PathBuf::from(format!("/proc/{}", peer.pid()));
        assert!(proc.exists());
        drop(peer);
        assert!(!proc.exists(), "the child was killed and reaped");
    }

    #[tokio::test]
    async fn exited_gives_up_after_its_limit() {
        let mut peer = Peer::spawn("sleep", ["30"]);
        assert!(peer.exited(Duration::from_millis(100)).await.is_none());
    }
}
