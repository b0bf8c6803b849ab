//! A Kubernetes node without a kubelet: a private containerd 1.6 (Debian's)
//! with its CRI plugin on, configured by `migward install containerd`, and a
//! CRI client (the `k8s-cri` crate over tonic) that sends what the kubelet
//! sends: RunPodSandbox with a runtime handler, CreateContainer with the
//! device plugin's env, `/dev/null` mounts and annotations, StartContainer,
//! then stop and remove.
//!
//! Everything containerd keeps is under the node's directory, except what
//! containerd 1.6 puts at fixed paths (runc's root `/run/containerd/runc/
//! k8s.io`, shim sockets under `/run/containerd/s`); CRI's random 64-hex ids
//! keep parallel tests apart there. Dropping a [`Node`] stops and removes
//! every pod it ran (stopping containerd alone would leave shims and pause
//! processes behind), then stops exactly the containerd it started.
//!
//! Include with `mod cri;` next to `mod common;`.

use crate::common::engines::{self, busybox_oci_tar_cmd, require, write};
use crate::common::sim::{shim_link, Sim, MIGWARD};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

/// CRI normalises image names: `local/pause:1` is looked up as this.
pub const PAUSE_IMAGE: &str = "docker.io/local/pause:1";
pub const BUSYBOX_IMAGE: &str = "docker.io/local/busybox:1";
/// Where the device plugin's `volume-mounts` strategy mounts `/dev/null`.
pub const PLUGIN_MOUNT_DIR: &str = "/var/run/nvidia-container-devices";

/// One private containerd with its CRI client.
pub struct Node {
    pub dir: PathBuf,
    child: Child,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

/// A pod as the kubelet describes it in RunPodSandbox.
#[derive(Clone)]
pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
}

/// What a container asks for, in the forms the kubelet passes on.
#[derive(Default, Clone)]
pub struct Ctr<'a> {
    pub name: &'a str,
    pub command: &'a [&'a str],
    pub env: Vec<(String, String)>,
    /// Host paths (`/dev/null` for the device plugin) and container paths.
    pub mounts: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

/// The containerd config of a private node: `containerd config default`
/// with its paths under `dir` and what CRI needs offline (a local pause
/// image, no CNI, `restrict_oom_score_adj`, without which runc cannot write
/// `oom_score_adj` on these VMs).
fn private_config(dir: &Path, state: &Path) -> String {
    let out = engines::output(Command::new(require("containerd")).args(["config", "default"]));
    let text = engines::expect_success(&out, "containerd config default");
    let mut doc: toml_edit::DocumentMut = text.parse().expect("containerd's default config");
    let p = |s: &str| toml_edit::value(dir.join(s).display().to_string());
    doc["root"] = p("root");
    doc["state"] = toml_edit::value(state.display().to_string());
    doc["grpc"]["address"] = p("c.sock");
    doc["ttrpc"]["address"] = p("c.sock.ttrpc");
    doc["plugins"]["io.containerd.internal.v1.opt"]["path"] = p("opt");
    let snapshotters =
        ["aufs", "btrfs", "zfs", "devmapper"].map(|s| format!("io.containerd.snapshotter.v1.{s}"));
    doc["disabled_plugins"] = toml_edit::value(toml_edit::Array::from_iter(snapshotters));
    let cri = &mut doc["plugins"]["io.containerd.grpc.v1.cri"];
    cri["sandbox_image"] = toml_edit::value(PAUSE_IMAGE);
    cri["restrict_oom_score_adj"] = toml_edit::value(true);
    cri["cni"]["conf_dir"] = p("cni-conf");
    cri["cni"]["bin_dir"] = p("cni-bin");
    doc.to_string()
}

impl Node {
    /// Writes the node's containerd config, runs `migward install containerd
    /// --root` on it (with `install_args` added, e.g. `--default`), starts
    /// containerd with `MIGWARD_CONFIG` = `config` (containerd passes its
    /// environment to the shim and runc: the way README tells a node to
    /// name a config that is not the default), and imports a pause and a
    /// busybox image.
    pub fn start(sim: &Sim, config: &Path, install_args: &[&str]) -> Node {
        Node::start_with_state(sim, config, install_args, &sim.path("cri/state"))
    }

    /// [`Node::start`] with containerd's state (bundles, shim sockets'
    /// records) in `state`: a tmpfs, as `/run/containerd` is on a node.
    pub fn start_with_state(sim: &Sim, config: &Path, install_args: &[&str], state: &Path) -> Node {
        engines::require_root();
        require("containerd-shim-runc-v2");
        let dir = sim.path("cri");
        for d in [
            "root", "state", "opt", "cni-conf", "cni-bin", "logs", "node",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let node_root = dir.join("node");
        let cfg = node_root.join("etc/containerd/config.toml");
        write(&cfg, private_config(&dir, state));
        let link = shim_link(&dir);
        let out = engines::output(
            Command::new(MIGWARD)
                .arg("--config")
                .arg(config)
                .args(["install", "containerd", "--root"])
                .arg(&node_root)
                .arg("--runtime-path")
                .arg(&link)
                .arg("--migward-path")
                .arg(MIGWARD)
                .args(install_args),
        );
        engines::expect_success(&out, "migward install containerd");

        let log = dir.join("containerd.log");
        let mut child = engines::spawn_daemon(
            Command::new(require("containerd"))
                .arg("--config")
                .arg(&cfg)
                .env("MIGWARD_CONFIG", config),
            &log,
        )
        .expect("start containerd");
        let sock = dir.join("c.sock");
        let ready = engines::wait_ready(
            &mut child,
            "containerd",
            &log,
            engines::DAEMON_START,
            || std::os::unix::net::UnixStream::connect(&sock).is_ok(),
        );
        if let Err(e) = ready {
            engines::stop_child(&mut child, Duration::from_secs(5));
            panic!("{e}");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt.block_on(async {
            let sock = sock.clone();
            Endpoint::try_from("http://[::]:50051")
                .unwrap()
                .timeout(engines::CMD_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let sock = sock.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(
                            tokio::net::UnixStream::connect(sock).await?,
                        ))
                    }
                }))
                .await
        });
        let channel = match channel {
            Ok(c) => c,
            Err(e) => {
                engines::stop_child(&mut child, Duration::from_secs(5));
                panic!("CRI connect: {e}");
            }
        };
        let mut images = ImageServiceClient::new(channel.clone());
        let node = Node {
            dir,
            child,
            rt,
            client: RuntimeServiceClient::new(channel),
        };
        for (name, cmd) in [
            (PAUSE_IMAGE, &["sleep", "2147483647"][..]),
            (BUSYBOX_IMAGE, &["sh"][..]),
        ] {
            let at = node.dir.join(name.rsplit('/').next().unwrap());
            let tar = busybox_oci_tar_cmd(&at, name, cmd);
            let out = engines::output(
                Command::new(require("ctr"))
                    .arg("--address")
                    .arg(&sock)
                    .args(["-n", "k8s.io", "images", "import"])
                    .arg(&tar),
            );
            engines::expect_success(&out, "ctr images import");
            // CRI's own image list learns of an import from containerd's
            // ImageCreate event, later: a pod run before it would try to
            // pull the image (offline here).
            engines::wait_for(&format!("CRI to list the imported {name}"), || {
                let request = ImageStatusRequest {
                    image: Some(ImageSpec {
                        image: name.into(),
                        ..Default::default()
                    }),
                    verbose: false,
                };
                node.rt
                    .block_on(images.image_status(request))
                    .is_ok_and(|r| r.into_inner().image.is_some())
            });
        }
        node
    }

    /// RunPodSandbox with host networking (no CNI), as the kubelet sends it
    /// for a pod `name` in `namespace` with `annotations` in its metadata.
    pub fn run_pod(
        &mut self,
        name: &str,
        namespace: &str,
        handler: &str,
        annotations: &[(&str, &str)],
    ) -> Result<Pod, tonic::Status> {
        let uid = format!("{name}-{}", unique());
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            log_directory: self.dir.join("logs").join(&uid).display().to_string(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let client = &mut self.client;
        let id = self
            .rt
            .block_on(client.run_pod_sandbox(request))?
            .into_inner()
            .pod_sandbox_id;
        Ok(Pod { id, config })
    }

    /// CreateContainer then StartContainer (where the runtime's `create`
    /// runs, and so where migward's refusal surfaces); the container id is
    /// returned with the error when only the start failed.
    pub fn run_container(
        &mut self,
        pod: &Pod,
        c: &Ctr,
    ) -> Result<String, (Option<String>, tonic::Status)> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: c.name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: BUSYBOX_IMAGE.into(),
                ..Default::default()
            }),
            command: c.command.iter().map(|s| s.to_string()).collect(),
            envs: c
                .env
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            mounts: c
                .mounts
                .iter()
                .map(|(host, ctr)| Mount {
                    host_path: host.clone(),
                    container_path: ctr.clone(),
                    readonly: true,
                    ..Default::default()
                })
                .collect(),
            annotations: c.annotations.iter().cloned().collect::<HashMap<_, _>>(),
            log_path: format!("{}/0.log", c.name),
            linux: Some(LinuxContainerConfig {
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(host_network()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let client = &mut self.client;
        let id = self
            .rt
            .block_on(client.create_container(request))
            .map_err(|e| (None, e))?
            .into_inner()
            .container_id;
        let start = StartContainerRequest {
            container_id: id.clone(),
        };
        match self.rt.block_on(client.start_container(start)) {
            Ok(_) => Ok(id),
            Err(e) => Err((Some(id), e)),
        }
    }

    fn status(&mut self, id: &str) -> ContainerStatus {
        let request = ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        let client = &mut self.client;
        self.rt
            .block_on(client.container_status(request))
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("a status")
    }

    /// The container's stdout so far, from its CRI log file
    /// (`<time> stdout F <line>`).
    pub fn stdout(&mut self, id: &str) -> String {
        let path = self.status(id).log_path;
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut out = String::new();
        for line in text.lines() {
            let mut parts = line.splitn(4, ' ');
            let (_, stream, _) = (parts.next(), parts.next(), parts.next());
            if stream == Some("stdout") {
                out.push_str(parts.next().unwrap_or(""));
                out.push('\n');
            }
        }
        out
    }

    /// Waits (up to [`engines::CMD_TIMEOUT`]) until the container's stdout
    /// has a line `want`, and returns the stdout.
    pub fn wait_for_line(&mut self, id: &str, want: &str) -> String {
        let deadline = Instant::now() + engines::CMD_TIMEOUT;
        loop {
            let out = self.stdout(id);
            if out.lines().any(|l| l == want) {
                return out;
            }
            let st = self.status(id);
            if st.state == ContainerState::ContainerExited as i32 {
                let out = self.stdout(id);
                assert!(
                    out.lines().any(|l| l == want),
                    "container {id} exited ({}) without printing {want:?}: {out}",
                    st.exit_code
                );
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} did not print {want:?}: {out}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of a running container's process.
    pub fn pid(&mut self, id: &str) -> i32 {
        let request = ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let client = &mut self.client;
        let info = self
            .rt
            .block_on(client.container_status(request))
            .expect("ContainerStatus")
            .into_inner()
            .info;
        let v: serde_json::Value = serde_json::from_str(&info["info"]).expect("verbose info");
        v["pid"].as_i64().expect("pid in the verbose status") as i32
    }

    /// Waits until the container has exited.
    pub fn wait_exited(&mut self, id: &str) {
        let deadline = Instant::now() + engines::CMD_TIMEOUT;
        while self.status(id).state != ContainerState::ContainerExited as i32 {
            assert!(Instant::now() < deadline, "container {id} did not exit");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last lines of containerd's log, for a failure's message (the
    /// node's directory goes with the test).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "containerd log (last {} lines):\n{}",
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// StopPodSandbox then RemovePodSandbox, as the kubelet does when a pod
    /// is deleted: its containers are stopped and removed with it.
    pub fn remove_pod(&mut self, pod: &Pod) {
        let stop = StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        };
        if let Err(e) = self.rt.block_on(self.client.stop_pod_sandbox(stop)) {
            panic!("StopPodSandbox: {e:?}\n{}", self.log_tail());
        }
        let remove = RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        };
        if let Err(e) = self.rt.block_on(self.client.remove_pod_sandbox(remove)) {
            panic!("RemovePodSandbox: {e:?}\n{}", self.log_tail());
        }
    }

    /// Stops and removes every container and pod (best effort).
    fn clean_up(&mut self) {
        let client = &mut self.client;
        let rt = &self.rt;
        if let Ok(list) =
            rt.block_on(client.list_containers(ListContainersRequest { filter: None }))
        {
            for c in list.into_inner().containers {
                let _ = rt.block_on(client.stop_container(StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: 5,
                }));
                let _ = rt.block_on(
                    client.remove_container(RemoveContainerRequest { container_id: c.id }),
                );
            }
        }
        if let Ok(list) =
            rt.block_on(client.list_pod_sandbox(ListPodSandboxRequest { filter: None }))
        {
            for p in list.into_inner().items {
                let _ = rt.block_on(client.stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                }));
                let _ = rt.block_on(client.remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: p.id,
                }));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.clean_up();
        engines::stop_child(&mut self.child, Duration::from_secs(15));
    }
}

fn host_network() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// A short name unique within this test run.
fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
