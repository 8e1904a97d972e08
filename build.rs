//! Build script: records the git commit the binary is built from, for `imageshare version`
//! and the operator's start-up log line. `IMAGESHARE_GIT_COMMIT` wins (a container build has
//! no `.git`); otherwise `git rev-parse HEAD`; otherwise "unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=IMAGESHARE_GIT_COMMIT");
    let commit = match std::env::var("IMAGESHARE_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => {
            // Rebuild when HEAD moves: HEAD itself (a checkout), the branch it points at (a
            // commit) and packed-refs (a gc). Paths as git reports them, so worktrees work.
            for path in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(p) = git(&["rev-parse", "--git-path", &branch])
            {
                println!("cargo:rerun-if-changed={p}");
            }
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=IMAGESHARE_GIT_COMMIT={commit}");
}
