//! The container image, built and run (issue 31, item 5). Built from the production build with
//! Debian's buildah (chroot isolation, `FROM scratch`: nothing pulled), exactly as
//! `scripts/build-image` builds it for everyone; then run the way a runtime runs it: its
//! configuration (user, environment, entrypoint, health check) read from the image, its root
//! file system mounted read-only, the configuration mounted read-only at /etc/cloakroom. It
//! must start as the non-root user, pass its own health check, sign a user in against the real
//! provider and forward an API call with the token, and stop cleanly on SIGTERM.
//!
//! Needs root (mounts) and the release build: `scripts/test` runs it after
//! `scripts/build-release`, with `cargo test --test image -- --ignored`.

use cloakroom_test_support::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TAG: &str = "localhost/cloakroom:suite";

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Stops the server, unmounts and removes what the test mounted and made, whatever happened.
struct Cleanup {
    server: Option<std::process::Child>,
    mounts: Vec<PathBuf>,
    container: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        for mount in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-R").arg(mount).status();
        }
        if let Some(container) = &self.container {
            let _ = Command::new("buildah").args(["umount", container]).stdout(Stdio::null()).status();
            let _ = Command::new("buildah").args(["rm", container]).stdout(Stdio::null()).status();
        }
    }
}

#[tokio::test]
#[ignore = "builds and runs the image (root, buildah, the release build): scripts/test runs it after scripts/build-release"]
async fn the_image_builds_from_scratch_runs_as_non_root_on_a_read_only_root_passes_its_health_check_and_signs_in() {
    let root = env!("CARGO_MANIFEST_DIR");
    // Built as scripts/build-image builds it (the release binary is already there).
    run(
        &format!("{root}/scripts/image-rootfs"),
        &[&format!("{root}/target/release/cloakroom"), &format!("{root}/target/image/rootfs")],
    );
    run("buildah", &["bud", "--isolation", "chroot", "--format", "docker", "--layers=false", "-q", "-t", TAG, root]);
    let inspected: Value = serde_json::from_str(&run("buildah", &["inspect", "--type", "image", TAG])).unwrap();
    let config = &inspected["Docker"]["config"];
    assert_eq!(config["User"], "65532:65532", "the image runs as the non-root user");
    let health: Vec<String> = serde_json::from_value(config["Healthcheck"]["Test"].clone()).unwrap();
    assert_eq!(health[0], "CMD");
    let entrypoint: Vec<String> = serde_json::from_value(config["Entrypoint"].clone()).unwrap();
    let cmd: Vec<String> = serde_json::from_value(config["Cmd"].clone()).unwrap();
    let image_env: Vec<String> = serde_json::from_value(config["Env"].clone()).unwrap();
    let size = run("buildah", &["images", "--format", "{{.Size}}", TAG]);
    println!("image {TAG}: {size}");

    // The image's file system, read-only, with the configuration mounted read-only.
    let container = run("buildah", &["from", "--pull-never", TAG]);
    let mut cleanup = Cleanup { server: None, mounts: Vec::new(), container: Some(container.clone()) };
    let image_root = PathBuf::from(run("buildah", &["mount", &container]));
    let work = std::env::temp_dir().join(format!("cloakroom-image-{}", std::process::id()));
    let (config_dir, read_only) = (work.join("config"), work.join("root"));
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::create_dir_all(&read_only).unwrap();
    run("mount", &["--rbind", image_root.to_str().unwrap(), read_only.to_str().unwrap()]);
    cleanup.mounts.push(read_only.clone());
    run("mount", &["-o", "remount,bind,ro", read_only.to_str().unwrap()]);
    let etc = read_only.join("etc/cloakroom");
    run("mount", &["--bind", config_dir.to_str().unwrap(), etc.to_str().unwrap()]);
    cleanup.mounts.push(etc.clone());
    run("mount", &["-o", "remount,bind,ro", etc.to_str().unwrap()]);
    assert_eq!(
        std::fs::write(read_only.join("usr/local/bin/written"), b"x").map_err(|e| e.raw_os_error()),
        Err(Some(30)),
        "the root file system must be read-only (EROFS)"
    );

    // Configured as an operator would: the provider, a client, an API route.
    cloakroom::install_crypto_provider();
    let (port, admin) = (free_port(), free_port());
    let origin = format!("http://127.0.0.1:{port}");
    let issuer = provider().issuer.clone();
    let client = register_client(&issuer, &origin, "client_secret_basic", true).await;
    let upstream = Upstream::start().await;
    std::fs::write(
        config_dir.join("config.toml"),
        format!(
            "[server]\npublic_url = \"{origin}\"\nshutdown_delay = \"0s\"\n[oidc]\nissuer = \"{issuer}\"\n\
             client_id = \"{}\"\nclient_secret = \"{}\"\n[session]\nkeys = [\"{}\"]\n\
             [[routes]]\nprefix = \"/api/\"\nupstream = \"http://{}/api/\"\ntoken = \"user\"\n",
            client.client_id,
            client.client_secret,
            test_key(),
            upstream.addr
        ),
    )
    .unwrap();

    // Run as a runtime does: the image's user, environment and command; the listeners moved
    // to free loopback ports as `-e` would.
    let env = |command: &mut Command| {
        command.env_clear();
        for pair in &image_env {
            let (name, value) = pair.split_once('=').unwrap();
            command.env(name, value);
        }
        command
            .env("CLOAKROOM_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("CLOAKROOM_SERVER__ADMIN_LISTEN", format!("127.0.0.1:{admin}"));
    };
    let in_image = |args: &[String]| {
        let mut command = Command::new("chroot");
        command.arg("--userspec=65532:65532").arg(&read_only).args(args);
        env(&mut command);
        command
    };
    let log = std::fs::File::create(work.join("cloakroom.log")).unwrap();
    let server = in_image(&[entrypoint.clone(), cmd.clone()].concat())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("chroot runs");
    let pid = server.id();
    cleanup.server = Some(server);

    // Its own health check (liveness) passes.
    let mut healthy = false;
    for _ in 0..100 {
        if in_image(&health[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success() {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = || std::fs::read_to_string(work.join("cloakroom.log")).unwrap_or_default();
    assert!(healthy, "the health check never passed: {}", logged());
    // The serving process (chroot has exec'd it by now): the image's non-root user, every id.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap().to_string();
    assert!(uid.split_whitespace().skip(1).all(|id| id == "65532"), "not the non-root user: {uid}");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("usr/local/bin/cloakroom"), "{exe:?}");

    // Ready (provider metadata loaded), as an orchestrator's readiness probe waits for.
    let mut ready = false;
    for _ in 0..300 {
        if http_call(http::Method::GET, &format!("http://127.0.0.1:{admin}/readyz"), None, &[]).await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "never ready: {}", logged());

    // A sign-in through it, and an API call carrying the token.
    let mut browser = Browser::new();
    let callback = authorize_at(&mut browser, &origin, &issuer, "alice", "/bff/login?returnUrl=%2F").await;
    assert_eq!(browser.get(&callback, &[]).await.status, 200);
    let user = browser.get(&format!("{origin}/bff/user"), &[CSRF]).await;
    assert_eq!((user.status, user.json()["sub"].as_str()), (200, Some("alice")), "{}", user.text());
    assert_eq!(browser.get(&format!("{origin}/api/items"), &[CSRF]).await.status, 200);
    let seen = upstream.requests().pop().expect("the call reached the API");
    assert!(seen.headers["authorization"].to_str().unwrap().starts_with("Bearer "));

    // SIGTERM: a clean stop.
    run("kill", &["-TERM", &pid.to_string()]);
    let server = cleanup.server.as_mut().unwrap();
    let mut stopped = None;
    for _ in 0..100 {
        if let Some(status) = server.try_wait().unwrap() {
            stopped = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped.is_some_and(|s| s.success()), "no clean stop: {stopped:?}: {}", logged());
    drop(cleanup);
    let _ = Path::new(&work).exists() && std::fs::remove_dir_all(&work).is_ok();
}
