//! Device nodes an engine already put into a spec (CDI, `--device`, device
//! plugin device specs), mapped back to the devices they open, without NVML
//! (DESIGN.md, "Every way a GPU reaches a container"): a cap node's minor is
//! looked up in `mig-minors`, `/dev/nvidia<N>` is GPU minor N. A GI cap
//! together with one of its CI caps is one MIG device; anything less (a GI
//! cap alone, a CI cap without its GI cap, the `config` or `monitor` cap, a
//! minor the table does not know) is refused naming the node, because
//! leasing half a device would let a second tenant hold the other half.

use crate::inventory::procfs::{CapName, HostError, HostFiles};
use crate::request::SpecNode;

/// What the nodes of a spec ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeWant {
    /// `/dev/nvidia<minor>` without any cap of that GPU: the whole GPU.
    Gpu { minor: u32, path: String },
    /// A GI cap and its CI cap: one MIG device. `path` is the CI cap node.
    Mig {
        gpu_minor: u32,
        gi: u32,
        ci: u32,
        path: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("device nodes in the spec: {node} has a minor that {table} does not list: it opens no MIG instance of this driver; remove it from the container")]
    UnknownCap { node: String, table: String },
    #[error("device nodes in the spec: {node} is the MIG {what} capability, which is no GPU instance and is never leased: remove it, or name an instance with NVIDIA_VISIBLE_DEVICES=MIG-<uuid>")]
    NotAnInstance { node: String, what: &'static str },
    #[error("device nodes in the spec: {node} is the cap of GPU instance {gi} on GPU minor {gpu}, but no cap of a compute instance in it is there: pass the whole MIG device (both caps), or name it with NVIDIA_VISIBLE_DEVICES=MIG-<uuid>")]
    GiWithoutCi { node: String, gpu: u32, gi: u32 },
    #[error("device nodes in the spec: {node} is the cap of compute instance {ci} of GPU instance {gi} on GPU minor {gpu}, but the cap of that GPU instance is not there: pass the whole MIG device (both caps), or name it with NVIDIA_VISIBLE_DEVICES=MIG-<uuid>")]
    CiWithoutGi {
        node: String,
        gpu: u32,
        gi: u32,
        ci: u32,
    },
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Maps the GPU and cap nodes of a spec (from
/// [`crate::request::gpu_nodes`]) to the devices they form.
pub fn wants(nodes: &[SpecNode], host: &HostFiles) -> Result<Vec<NodeWant>, NodeError> {
    let majors = host.majors()?;
    let mut gpus: Vec<&SpecNode> = Vec::new();
    let mut gi_caps: Vec<(u32, u32, &SpecNode)> = Vec::new();
    let mut ci_caps: Vec<(u32, u32, u32, &SpecNode)> = Vec::new();
    let mut minors = None;
    for node in nodes {
        if node.major == majors.nvidia {
            gpus.push(node);
            continue;
        }
        let table = match &minors {
            Some(t) => t,
            None => minors.insert(host.mig_minors()?),
        };
        match table.name_of(node.minor) {
            Some(CapName::Gi { gpu, gi }) => gi_caps.push((gpu, gi, node)),
            Some(CapName::Ci { gpu, gi, ci }) => ci_caps.push((gpu, gi, ci, node)),
            Some(CapName::Config) => {
                return Err(NodeError::NotAnInstance {
                    node: node.to_string(),
                    what: "config",
                })
            }
            Some(CapName::Monitor) => {
                return Err(NodeError::NotAnInstance {
                    node: node.to_string(),
                    what: "monitor",
                })
            }
            None => {
                return Err(NodeError::UnknownCap {
                    node: node.to_string(),
                    table: host
                        .path("/proc/driver/nvidia-caps/mig-minors")
                        .display()
                        .to_string(),
                })
            }
        }
    }
    for &(gpu, gi, node) in &gi_caps {
        if !ci_caps.iter().any(|&(g, i, _, _)| (g, i) == (gpu, gi)) {
            return Err(NodeError::GiWithoutCi {
                node: node.to_string(),
                gpu,
                gi,
            });
        }
    }
    let mut out = Vec::new();
    for &(gpu, gi, ci, node) in &ci_caps {
        if !gi_caps.iter().any(|&(g, i, _)| (g, i) == (gpu, gi)) {
            return Err(NodeError::CiWithoutGi {
                node: node.to_string(),
                gpu,
                gi,
                ci,
            });
        }
        out.push(NodeWant::Mig {
            gpu_minor: gpu,
            gi,
            ci,
            path: node.path.clone(),
        });
    }
    // A GPU node is the parent of the MIG devices on it; alone, it asks for
    // the whole GPU.
    for node in gpus {
        let parent = ci_caps.iter().any(|&(g, _, _, _)| g == node.minor);
        if !parent {
            out.push(NodeWant::Gpu {
                minor: node.minor,
                path: node.path.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::{write_host_tree, CAPS_MAJOR};
    use crate::topology::Topology;

    fn node(path: &str, major: u32, minor: u32) -> SpecNode {
        SpecNode {
            path: path.into(),
            major,
            minor,
        }
    }

    fn cap(minor: u32) -> SpecNode {
        node(
            &format!("/dev/nvidia-caps/nvidia-cap{minor}"),
            CAPS_MAJOR,
            minor,
        )
    }

    #[test]
    fn whole_devices_map_back_and_halves_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write_host_tree(&Topology::load("a100x4-mixed").unwrap(), dir.path()).unwrap();
        let host = HostFiles::new(dir.path());
        let gpu0 = node("/dev/nvidia0", 195, 0);
        let gpu2 = node("/dev/nvidia2", 195, 2);
        let mig = |gpu_minor, gi, ci, path: &str| NodeWant::Mig {
            gpu_minor,
            gi,
            ci,
            path: path.into(),
        };
        let ok = [
            (
                vec![gpu0.clone(), cap(12), cap(13)],
                vec![mig(0, 1, 0, "/dev/nvidia-caps/nvidia-cap13")],
            ),
            (
                vec![cap(13), cap(12)],
                vec![mig(0, 1, 0, "/dev/nvidia-caps/nvidia-cap13")],
            ),
            (
                vec![gpu0.clone(), cap(12), cap(13), gpu2.clone()],
                vec![
                    mig(0, 1, 0, "/dev/nvidia-caps/nvidia-cap13"),
                    NodeWant::Gpu {
                        minor: 2,
                        path: "/dev/nvidia2".into(),
                    },
                ],
            ),
            (
                vec![gpu2],
                vec![NodeWant::Gpu {
                    minor: 2,
                    path: "/dev/nvidia2".into(),
                }],
            ),
        ];
        for (nodes, want) in ok {
            assert_eq!(wants(&nodes, &host).unwrap(), want, "{nodes:?}");
        }
        let bad = [
            (vec![gpu0.clone(), cap(12)], "nvidia-cap12 (c 508:12) is the cap of GPU instance 1 on GPU minor 0, but no cap of a compute instance"),
            (vec![gpu0.clone(), cap(13)], "nvidia-cap13 (c 508:13) is the cap of compute instance 0 of GPU instance 1 on GPU minor 0, but the cap of that GPU instance is not there"),
            (vec![cap(2)], "nvidia-cap2 (c 508:2) is the MIG monitor capability"),
            (vec![cap(1)], "is the MIG config capability"),
            (vec![cap(99999)], "nvidia-cap99999 (c 508:99999) has a minor that"),
        ];
        for (nodes, want) in bad {
            let err = wants(&nodes, &host).unwrap_err().to_string();
            assert!(err.contains(want), "{nodes:?}: {err}");
            assert!(err.starts_with("device nodes in the spec: "), "{err}");
        }
    }
}
