//! The Kubernetes files in `packaging/kubernetes` are what the API server
//! accepts and what migward's Kubernetes policy needs, checked by strict
//! deserialisation into the API types (k8s-openapi, Kubernetes 1.33), never
//! by eye.
//!
//! Every YAML document there (the JupyterHub Helm values aside) is read into
//! the k8s-openapi type its `apiVersion`/`kind` names; a kind this test does
//! not know, and any field the type does not know (a typo, a field at the
//! wrong level), fails with its path. k8s-openapi itself skips unknown fields
//! silently, as the API server's non-strict decoding does, so
//! `serde_ignored` reports them. On the typed values: the RuntimeClass's
//! handler is `migward` and it schedules where the installer runs; every GPU
//! pod runs through it and asks the device plugin for a MIG instance; the
//! installer is privileged, sees the node's `/` at `/host`, installs with
//! `migward install containerd --root /host` and uninstalls when stopped;
//! its ConfigMap is a config migward's own parser accepts, with requests
//! from a pod's env and annotations turned off. The JupyterHub profiles and
//! the Airflow DAG are held to the same.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Pod, PodSpec, ServiceAccount, Volume,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use migward::config::{Config, Untrusted};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/kubernetes");
/// The containerd runtime `migward install containerd` registers.
const HANDLER: &str = "migward";
/// The node label the installer and the RuntimeClass schedule on.
const GPU_NODE_LABEL: &str = "nvidia.com/gpu.present";
/// The device plugin's resources for MIG instances (MIG strategy "mixed").
const MIG_RESOURCE_PREFIX: &str = "nvidia.com/mig-";
/// Helm values for zero-to-jupyterhub: KubeSpawner options, not a manifest.
const JUPYTERHUB_VALUES: &str = "examples/jupyterhub-values.yaml";
const AIRFLOW_DAG: &str = "examples/airflow/dag.py";
const INSTALL: &str = "migward install containerd --root /host";
const UNINSTALL: &str = "migward uninstall containerd --root /host";

/// One document of a manifest file, typed by its `apiVersion` and `kind`.
#[derive(Debug)]
enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ConfigMap(ConfigMap),
    DaemonSet(Box<DaemonSet>),
    RuntimeClass(RuntimeClass),
    Pod(Box<Pod>),
}

/// An object and where it was read: `file#index`.
#[derive(Debug)]
struct Manifest {
    origin: String,
    object: Object,
}

/// Deserializes `value` into `T`; a field `T` does not know is an error
/// naming its path (`spec.runtimeClasName`), as is any type error.
fn strict<T: DeserializeOwned>(value: Value, origin: &str) -> Result<T, String> {
    let mut unknown = Vec::new();
    // serde_ignored writes `?` for each Option on the way; the field path
    // reads better without them.
    let parsed = serde_ignored::deserialize(value, |path| {
        unknown.push(path.to_string().replace("?.", ""))
    })
    .map_err(|e| format!("{origin}: {e}"))?;
    if unknown.is_empty() {
        Ok(parsed)
    } else {
        Err(format!(
            "{origin}: unknown to the Kubernetes API (a typo, or at the wrong level): {}",
            unknown.join(", ")
        ))
    }
}

/// Reads one document into the type its `apiVersion` and `kind` name.
fn object(doc: Value, origin: &str) -> Result<Object, String> {
    let field = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_owned);
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    Ok(match (api_version.as_deref(), kind.as_deref()) {
        (Some("v1"), Some("Namespace")) => Object::Namespace(strict(doc, origin)?),
        (Some("v1"), Some("ServiceAccount")) => Object::ServiceAccount(strict(doc, origin)?),
        (Some("v1"), Some("ConfigMap")) => Object::ConfigMap(strict(doc, origin)?),
        (Some("v1"), Some("Pod")) => Object::Pod(strict(doc, origin)?),
        (Some("apps/v1"), Some("DaemonSet")) => Object::DaemonSet(strict(doc, origin)?),
        (Some("node.k8s.io/v1"), Some("RuntimeClass")) => {
            Object::RuntimeClass(strict(doc, origin)?)
        }
        (v, k) => {
            return Err(format!(
                "{origin}: apiVersion {v:?}, kind {k:?} is not a kind this test checks: add it"
            ))
        }
    })
}

/// Every `*.yaml` under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Every object of every manifest file; a document that is not one of the
/// known kinds, or has an unknown field, fails with every such problem.
fn manifests() -> Vec<Manifest> {
    let dir = Path::new(DIR);
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for file in yaml_files(dir) {
        let name = file
            .strip_prefix(dir)
            .expect("under DIR")
            .display()
            .to_string();
        if name == JUPYTERHUB_VALUES {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read manifest");
        for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let origin = format!("{name}#{i}");
            match Value::deserialize(de) {
                // An empty document (`---` twice) is skipped, as kubectl does.
                Ok(Value::Null) => {}
                Ok(doc) => match object(doc, &origin) {
                    Ok(object) => found.push(Manifest { origin, object }),
                    Err(e) => problems.push(e),
                },
                Err(e) => problems.push(format!("{origin}: not YAML: {e}")),
            }
        }
    }
    assert!(problems.is_empty(), "manifests:\n{}", problems.join("\n"));
    found
}

fn pick<'a, T>(all: &'a [Manifest], f: impl Fn(&'a Object) -> Option<&'a T>) -> Vec<&'a T> {
    all.iter().filter_map(|m| f(&m.object)).collect()
}

fn only<'a, T>(items: Vec<&'a T>, what: &str) -> &'a T {
    assert_eq!(items.len(), 1, "expected exactly one {what}");
    items[0]
}

fn installer(all: &[Manifest]) -> &DaemonSet {
    only(
        pick(all, |o| match o {
            Object::DaemonSet(d) => Some(d.as_ref()),
            _ => None,
        }),
        "DaemonSet",
    )
}

fn config_map(all: &[Manifest]) -> &ConfigMap {
    only(
        pick(all, |o| match o {
            Object::ConfigMap(c) => Some(c),
            _ => None,
        }),
        "ConfigMap",
    )
}

fn runtime_class(all: &[Manifest]) -> &RuntimeClass {
    only(
        pick(all, |o| match o {
            Object::RuntimeClass(r) => Some(r),
            _ => None,
        }),
        "RuntimeClass",
    )
}

/// Every Pod, with where it was read.
fn pods(all: &[Manifest]) -> Vec<(&str, &Pod)> {
    all.iter()
        .filter_map(|m| match &m.object {
            Object::Pod(p) => Some((m.origin.as_str(), p.as_ref())),
            _ => None,
        })
        .collect()
}

/// The installer's pod template.
fn template(ds: &DaemonSet) -> &PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("DaemonSet pod template spec")
}

fn pod_spec<'a>(pod: &'a Pod, origin: &str) -> &'a PodSpec {
    pod.spec
        .as_ref()
        .unwrap_or_else(|| panic!("{origin}: no spec"))
}

/// The names of the resources a container limits.
fn limits(c: &Container) -> Vec<&str> {
    c.resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .map(|l| l.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// A GPU pod runs through migward, and each of its NVIDIA resources is a MIG
/// instance (at least one).
fn check_gpu_pod(spec: &PodSpec, origin: &str) {
    assert_eq!(
        spec.runtime_class_name.as_deref(),
        Some(HANDLER),
        "{origin}: a GPU pod must name runtimeClassName {HANDLER}"
    );
    let nvidia: Vec<&str> = spec
        .containers
        .iter()
        .flat_map(limits)
        .filter(|r| r.starts_with("nvidia.com/"))
        .collect();
    assert!(
        !nvidia.is_empty() && nvidia.iter().all(|r| r.starts_with(MIG_RESOURCE_PREFIX)),
        "{origin}: a GPU pod limits {MIG_RESOURCE_PREFIX}… resources only, got {nvidia:?}"
    );
}

#[test]
fn every_manifest_is_a_known_kind_with_no_unknown_field() {
    let all = manifests();
    let origins: Vec<&str> = all.iter().map(|m| m.origin.as_str()).collect();
    // The walk found the files (a wrong DIR would find none and pass).
    for file in [
        "runtimeclass.yaml#0",
        "daemonset.yaml#0",
        "examples/pod.yaml#0",
        "examples/airflow/pod_template.yaml#0",
    ] {
        assert!(origins.contains(&file), "{file} not read; read {origins:?}");
    }
}

#[test]
fn runtime_class_is_the_migward_handler_on_the_installers_nodes() {
    let all = manifests();
    let rc = runtime_class(&all);
    assert_eq!(rc.metadata.name.as_deref(), Some(HANDLER));
    assert_eq!(rc.handler, HANDLER);
    // Pods that name the class land only where the installer registered it.
    let rc_nodes = rc
        .scheduling
        .as_ref()
        .and_then(|s| s.node_selector.as_ref());
    let ds_nodes = template(installer(&all)).node_selector.as_ref();
    assert_eq!(
        rc_nodes
            .and_then(|n| n.get(GPU_NODE_LABEL))
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        rc_nodes, ds_nodes,
        "RuntimeClass and installer select different nodes"
    );
}

#[test]
fn every_gpu_pod_runs_through_migward_and_asks_for_a_mig_instance() {
    let all = manifests();
    let pods = pods(&all);
    assert!(pods.len() >= 2, "the example pod and the Airflow template");
    for (origin, pod) in pods {
        check_gpu_pod(pod_spec(pod, origin), origin);
    }
}

#[test]
fn installer_is_privileged_on_the_node_root_and_undoes_its_install_when_stopped() {
    let all = manifests();
    let spec = template(installer(&all));
    assert_eq!(
        spec.host_pid,
        Some(true),
        "nsenter into PID 1 needs hostPID"
    );
    // The installer cannot run through the runtime it installs.
    assert_eq!(spec.runtime_class_name, None);
    assert!(
        spec.tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some("nvidia.com/gpu")),
        "tolerates the nvidia.com/gpu taint of GPU nodes"
    );
    assert!(
        spec.termination_grace_period_seconds.unwrap_or(30) >= 60,
        "uninstall and a containerd restart need time before SIGKILL"
    );

    let [c] = spec.containers.as_slice() else {
        panic!("one installer container, got {}", spec.containers.len())
    };
    assert_eq!(
        c.image.as_deref(),
        Some(format!("migward:{}", env!("CARGO_PKG_VERSION")).as_str()),
        "the image is this version's"
    );
    assert_eq!(
        c.security_context.as_ref().and_then(|s| s.privileged),
        Some(true)
    );
    assert!(
        !limits(c).iter().any(|r| r.starts_with("nvidia.com/")),
        "the installer asks for no GPU"
    );
    // `migward install` records a MIGWARD_CONFIG it sees as the config
    // containerd's runtime must read: the node's default path is meant.
    assert!(
        !c.env.iter().flatten().any(|e| e.name == "MIGWARD_CONFIG"),
        "MIGWARD_CONFIG must not be set"
    );

    let volume = |mount_path: &str| -> &Volume {
        let mount = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == mount_path)
            .unwrap_or_else(|| panic!("nothing mounted at {mount_path}"));
        spec.volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap_or_else(|| panic!("no volume {}", mount.name))
    };
    assert_eq!(
        volume("/host").host_path.as_ref().map(|h| h.path.as_str()),
        Some("/"),
        "the node's / at /host"
    );
    assert_eq!(
        volume("/config")
            .config_map
            .as_ref()
            .map(|c| c.name.as_str()),
        config_map(&all).metadata.name.as_deref(),
        "the ConfigMap at /config"
    );

    let script = c
        .command
        .iter()
        .chain(c.args.iter())
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.contains(INSTALL), "the script runs `{INSTALL}`");
    assert!(
        script.contains("/config/config.toml"),
        "the script installs the ConfigMap's config"
    );
    let pre_stop = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.as_ref())
        .map(|cmd| cmd.join(" "))
        .unwrap_or_default();
    let trapped = script.contains(UNINSTALL) && script.contains("trap cleanup TERM");
    assert!(
        pre_stop.contains(UNINSTALL) || trapped,
        "stopping the pod runs `{UNINSTALL}` (preStop, or a SIGTERM trap)"
    );
}

#[test]
fn configmap_config_trusts_only_what_the_kubelet_writes() {
    let all = manifests();
    let cm = config_map(&all);
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("config.toml"))
        .expect("ConfigMap key config.toml");
    let config = Config::parse(text, Path::new("configmap"))
        .unwrap_or_else(|e| panic!("migward refuses the ConfigMap's config: {e}"));
    assert!(
        !config.env_requests,
        "a pod's own env must not be a request"
    );
    assert!(
        !config.annotation_requests,
        "a pod's own annotation must not be a request"
    );
    assert_eq!(
        config.untrusted_requests,
        Untrusted::Ignore,
        "a CUDA image's NVIDIA_VISIBLE_DEVICES=all must not stop a pod"
    );
}

#[test]
fn namespaced_objects_are_in_the_declared_namespace() {
    let all = manifests();
    let namespace = only(
        pick(&all, |o| match o {
            Object::Namespace(n) => n.metadata.name.as_ref(),
            _ => None,
        }),
        "Namespace",
    );
    let ds = installer(&all);
    let service_account = only(
        pick(&all, |o| match o {
            Object::ServiceAccount(s) => Some(s),
            _ => None,
        }),
        "ServiceAccount",
    );
    for (what, ns) in [
        ("DaemonSet", &ds.metadata.namespace),
        ("ConfigMap", &config_map(&all).metadata.namespace),
        ("ServiceAccount", &service_account.metadata.namespace),
    ] {
        assert_eq!(ns.as_ref(), Some(namespace), "{what} namespace");
    }
    assert_eq!(
        template(ds).service_account_name.as_ref(),
        service_account.metadata.name.as_ref(),
        "the installer runs as the ServiceAccount declared"
    );
}

#[test]
fn jupyterhub_profiles_run_through_migward_on_a_mig_instance() {
    let path = Path::new(DIR).join(JUPYTERHUB_VALUES);
    let text = std::fs::read_to_string(&path).expect("read JupyterHub values");
    let values: Value = serde_yaml::from_str(&text).expect("JupyterHub values are YAML");
    let profiles = values["singleuser"]["profileList"]
        .as_sequence()
        .expect("singleuser.profileList");
    assert!(!profiles.is_empty(), "singleuser.profileList is empty");
    for (i, profile) in profiles.iter().enumerate() {
        let origin = format!("{JUPYTERHUB_VALUES}: profileList.{i}");
        let over = &profile["kubespawner_override"];
        let limits: BTreeMap<String, String> =
            serde_yaml::from_value(over["extra_resource_limits"].clone())
                .unwrap_or_else(|e| panic!("{origin}: extra_resource_limits: {e}"));
        assert!(
            limits.keys().any(|k| k.starts_with(MIG_RESOURCE_PREFIX)),
            "{origin}: extra_resource_limits names no {MIG_RESOURCE_PREFIX}… resource: {limits:?}"
        );
        // KubeSpawner merges extra_pod_config into the pod's spec, which
        // requires containers: an empty list stands in for KubeSpawner's.
        let mut pod_config = over["extra_pod_config"].clone();
        let map = pod_config
            .as_mapping_mut()
            .unwrap_or_else(|| panic!("{origin}: extra_pod_config is not a mapping"));
        map.entry("containers".into())
            .or_insert(Value::Sequence(Vec::new()));
        let spec: PodSpec = strict(pod_config, &format!("{origin}.extra_pod_config"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec.runtime_class_name.as_deref(),
            Some(HANDLER),
            "{origin}: extra_pod_config.runtimeClassName"
        );
    }
}

#[test]
fn airflow_dag_names_its_pod_template_and_a_mig_instance() {
    let dag = Path::new(DIR).join(AIRFLOW_DAG);
    let text = std::fs::read_to_string(&dag).expect("read the Airflow DAG");
    let quoted: Vec<&str> = text.split('"').skip(1).step_by(2).collect();
    assert!(
        text.contains("pod_template_file="),
        "the DAG passes pod_template_file"
    );
    let templates: Vec<&str> = quoted
        .iter()
        .copied()
        .filter(|s| s.ends_with(".yaml"))
        .collect();
    assert!(!templates.is_empty(), "the DAG names no pod template file");
    let dag_dir = dag.parent().expect("DAG directory");
    for name in templates {
        let template = dag_dir.join(name);
        let text = std::fs::read_to_string(&template)
            .unwrap_or_else(|e| panic!("the DAG's pod template {}: {e}", template.display()));
        let pod: Pod = strict(serde_yaml::from_str(&text).expect("YAML"), name)
            .unwrap_or_else(|e| panic!("{e}"));
        let spec = pod_spec(&pod, name);
        check_gpu_pod(spec, name);
        // KubernetesPodOperator fills in the container named `base`.
        assert!(
            spec.containers.iter().any(|c| c.name == "base"),
            "{name}: no container named base"
        );
    }
    assert!(
        text.contains("container_resources="),
        "the DAG sets container_resources"
    );
    assert!(
        quoted.iter().any(|s| s.starts_with(MIG_RESOURCE_PREFIX)),
        "the DAG asks for no {MIG_RESOURCE_PREFIX}… resource"
    );
}

#[test]
fn strict_reports_a_misspelt_field_with_its_path() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  runtimeClasName: migward\n  containers: [{name: c, image: i}]\n";
    let doc: Value = serde_yaml::from_str(pod).expect("YAML");
    // k8s-openapi alone takes it, silently without the class.
    let lax: Pod = serde_yaml::from_value(doc.clone()).expect("lax");
    assert_eq!(lax.spec.and_then(|s| s.runtime_class_name), None);
    let err = object(doc, "typo.yaml#0").expect_err("a misspelt field must fail");
    assert!(err.contains("spec.runtimeClasName"), "{err}");
}

#[test]
fn object_refuses_a_kind_it_does_not_check() {
    let doc: Value =
        serde_yaml::from_str("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n")
            .expect("YAML");
    let err = object(doc, "d.yaml#0").expect_err("an unknown kind must fail");
    assert!(err.contains("Deployment"), "{err}");
}
