//! Containers for the identity tests: rootful podman running the base image `cargo xtask setup`
//! imports from the trixie chroot (no registry here), removed on drop.
use std::path::Path;
use std::process::{Command, Stdio};

use crate::env::gate;

/// Made by `cargo xtask setup` (xtask/src/podman.rs).
pub const BASE_IMAGE: &str = "localhost/pytracer-test-base";
/// The base image with uWSGI built against its CPython (tests/apps/uwsgi.Containerfile), made by
/// `cargo xtask setup` too.
pub const UWSGI_IMAGE: &str = "localhost/pytracer-test-uwsgi";

fn image_exists(image: &str) -> bool {
    Command::new("podman")
        .args(["image", "exists", image])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// [`crate::env::require_privileged`] plus podman and the base image.
pub fn require_podman() -> bool {
    require_images(&[BASE_IMAGE])
}

/// [`require_podman`] plus the uWSGI image.
pub fn require_podman_uwsgi() -> bool {
    require_images(&[BASE_IMAGE, UWSGI_IMAGE])
}

fn require_images(images: &[&str]) -> bool {
    let missing: Vec<String> = images
        .iter()
        .filter(|i| !image_exists(i))
        .map(|i| format!("podman or its image {i} missing (run `cargo xtask setup`)"))
        .collect();
    gate(&missing) && crate::env::require_privileged()
}

/// A detached container; `podman rm -f` on drop.
pub struct Container {
    pub id: String,
}

impl Container {
    /// `podman run -d --network host ARGS BASE_IMAGE COMMAND`; panics with podman's stderr.
    pub fn run(args: &[&str], command: &[&str]) -> Container {
        Self::run_image(BASE_IMAGE, args, command)
    }

    /// [`Container::run`] of another image.
    pub fn run_image(image: &str, args: &[&str], command: &[&str]) -> Container {
        let out = Command::new("podman")
            .args(["run", "-d", "--network", "host"])
            .args(args)
            .arg(image)
            .args(command)
            .stdin(Stdio::null())
            .output()
            .expect("running podman");
        assert!(out.status.success(), "podman run failed: {}", String::from_utf8_lossy(&out.stderr));
        Container { id: String::from_utf8_lossy(&out.stdout).trim().to_string() }
    }

    /// The host pid of the container's first process.
    pub fn pid(&self) -> u32 {
        let out = Command::new("podman")
            .args(["inspect", "--format", "{{.State.Pid}}", &self.id])
            .output()
            .expect("running podman inspect");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("no pid for {}", self.id))
    }

    pub fn logs(&self) -> String {
        Command::new("podman")
            .args(["logs", &self.id])
            .output()
            .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", "-t", "0", &self.id]).stdout(Stdio::null()).status();
    }
}

/// `--volume HOST:INSIDE:ro`.
pub fn volume(host: &Path, inside: &str) -> String {
    format!("{}:{inside}:ro", host.display())
}

/// The test app (tests/apps/testapp.py) served with one worker in a container under a
/// kubepods-shaped cgroup parent (`/kubepods/burstable/pod<uid>/libpod-<id>`, the cgroupfs
/// driver's layout), on the host's network; ready once its worker has imported it.
pub struct App {
    pub container: Container,
    pub port: u16,
    /// The worker's pid inside the container: its ready marker's name (testready.py).
    pub worker_vpid: u32,
    _ready: crate::tmp::TempDir,
}

impl App {
    /// `podman run --cgroup-parent /kubepods/burstable/pod<uid>/ EXTRA ... gunicorn --workers 1
    /// --bind 127.0.0.1:<free port> --chdir /app testapp:app`, waiting for its worker.
    pub fn gunicorn(pod_uid: &str, extra: &[&str]) -> App {
        Self::start(BASE_IMAGE, pod_uid, extra, |bind| {
            ["/opt/venv/bin/gunicorn", "--workers", "1", "--bind", bind, "--chdir", "/app", "testapp:app"]
                .map(String::from)
                .to_vec()
        })
    }

    /// The same app under uWSGI (workers speaking HTTP, `--http-socket`): a master and one
    /// worker that imports the app itself (`--lazy-apps`, so its marker names the worker).
    pub fn uwsgi(pod_uid: &str, extra: &[&str]) -> App {
        Self::start(UWSGI_IMAGE, pod_uid, extra, |bind| {
            [
                "/opt/venv/bin/uwsgi",
                "--master",
                "--processes",
                "1",
                "--lazy-apps",
                "--http-socket",
                bind,
                "--chdir",
                "/app",
                "--module",
                "testapp:app",
                "--need-app",
            ]
            .map(String::from)
            .to_vec()
        })
    }

    fn start(image: &str, pod_uid: &str, extra: &[&str], command: impl Fn(&str) -> Vec<String>) -> App {
        let ready = crate::tmp::TempDir::new("container-ready").unwrap();
        let port = crate::prom::free_port();
        let parent = format!("/kubepods/burstable/pod{pod_uid}/");
        let apps = volume(&crate::env::apps_dir(), "/app");
        let ready_mount = format!("{}:/ready", ready.path().display());
        let mut args = vec![
            "--cgroup-parent",
            &parent,
            "-v",
            &apps,
            "-v",
            &ready_mount,
            "-e",
            "PYTRACER_TESTAPP_READY_DIR=/ready",
        ];
        args.extend(extra);
        let command = command(&format!("127.0.0.1:{port}"));
        let container = Container::run_image(image, &args, &command.iter().map(String::as_str).collect::<Vec<_>>());
        let worker_vpid = crate::wait::wait_for(std::time::Duration::from_secs(30), || {
            std::fs::read_dir(ready.path()).ok()?.find_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        })
        .unwrap_or_else(|| panic!("the app in {} did not get ready:\n{}", container.id, container.logs()));
        App { container, port, worker_vpid, _ready: ready }
    }
}
