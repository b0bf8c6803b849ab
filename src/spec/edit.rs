//! Spec edits on `serde_json::Value`: each idempotent, touching only the
//! fields named, so every other field (known to oci-spec or not) survives.

use crate::plan::Plan;
use serde_json::{json, Map, Value};

/// Prefix of every NVIDIA device node path.
const NVIDIA_DEV_PREFIX: &str = "/dev/nvidia";

fn object_at<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let obj = v
        .as_object_mut()
        .expect("spec is an object: checked on load");
    let entry = obj.entry(key).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("just made an object")
}

fn array_at<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let entry = obj.entry(key).or_insert_with(|| json!([]));
    if !entry.is_array() {
        *entry = json!([]);
    }
    entry.as_array_mut().expect("just made an array")
}

/// A device major or minor of a spec as runc uses it: runc converts the
/// spec's 64-bit numbers to 32 bits, so `4294967491` makes a 195 node.
/// Everything that recognises NVIDIA devices in a spec reads them this way.
pub fn device_number(v: &Value) -> Option<u32> {
    v.as_u64()
        .map(|n| n as u32)
        .or_else(|| v.as_i64().map(|n| n as u32))
}

/// True if the container can open any device: CAP_SYS_ADMIN in its bounding
/// set, or a rule allowing read or write on every device (`a`, or `c` with
/// no major). Rules for one major with any minor (`c 136:* rwm`, the ptys)
/// and mknod-only rules (`c *:* m`, which engines add by default) are not.
///
/// A rule of type `a` (or none, which the OCI spec reads as `a`) counts
/// whatever its major: runc's cgroup v1 device emulator, like the kernel,
/// takes any `a` rule as "every device". [`strip_nvidia`] reads the same
/// rule with an NVIDIA major as a GPU rule and removes it; each reading
/// grants less than the other would.
pub fn is_privileged(spec: &Value) -> bool {
    // Names as the caps crate spells them (`CAP_SYS_ADMIN`); engines write
    // them that way, but accept any case.
    let sys_admin = spec
        .pointer("/process/capabilities/bounding")
        .and_then(Value::as_array)
        .is_some_and(|caps| {
            caps.iter().filter_map(Value::as_str).any(|c| {
                c.to_ascii_uppercase().parse::<caps::Capability>().ok()
                    == Some(caps::Capability::CAP_SYS_ADMIN)
            })
        });
    let all_devices = spec
        .pointer("/linux/resources/devices")
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules.iter().any(|r| {
                let allow = r.get("allow").and_then(Value::as_bool).unwrap_or(false);
                let kind = r.get("type").and_then(Value::as_str).unwrap_or("a");
                let any_major = r.get("major").is_none_or(Value::is_null);
                let access = r.get("access").and_then(Value::as_str).unwrap_or("rwm");
                let opens = access.contains('r') || access.contains('w');
                allow && opens && (kind == "a" || (kind == "c" && any_major))
            })
        });
    sys_admin || all_devices
}

/// Removes every NVIDIA node an engine put into the spec, so a container
/// gets exactly the planned nodes or none: device entries at a
/// `/dev/nvidia*` path or of an NVIDIA major (`majors`: 195 and the uvm and
/// caps majors), allow rules for those majors (any minor, wildcards
/// included: `--device-cgroup-rule 'c 508:* rwm'`), and bind mounts onto
/// `/dev/nvidia*`. Returns whether anything changed.
pub fn strip_nvidia(spec: &mut Value, majors: &[u64]) -> bool {
    let mut changed = false;
    let gpu_major = |v: &Value| {
        v.get("major")
            .and_then(device_number)
            .is_some_and(|m| majors.contains(&u64::from(m)))
    };
    if let Some(devs) = spec
        .pointer_mut("/linux/devices")
        .and_then(Value::as_array_mut)
    {
        let before = devs.len();
        devs.retain(|d| {
            let at_nvidia_path = d
                .get("path")
                .and_then(Value::as_str)
                .is_some_and(|p| p.starts_with(NVIDIA_DEV_PREFIX));
            let char_dev = d.get("type").and_then(Value::as_str) != Some("b");
            !(at_nvidia_path || (char_dev && gpu_major(d)))
        });
        changed |= devs.len() != before;
    }
    if let Some(rules) = spec
        .pointer_mut("/linux/resources/devices")
        .and_then(Value::as_array_mut)
    {
        let before = rules.len();
        rules.retain(|r| {
            let allow = r.get("allow").and_then(Value::as_bool).unwrap_or(false);
            let char_rule = r.get("type").and_then(Value::as_str) != Some("b");
            !(allow && char_rule && gpu_major(r))
        });
        changed |= rules.len() != before;
    }
    if let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) {
        let before = mounts.len();
        mounts.retain(|m| {
            !m.get("destination")
                .and_then(Value::as_str)
                .is_some_and(|d| d.starts_with(NVIDIA_DEV_PREFIX))
        });
        changed |= mounts.len() != before;
    }
    changed
}

/// For a container without a GPU request: `NVIDIA_VISIBLE_DEVICES` becomes
/// `void`, so that a runtime below migward (nvidia-container-runtime) adds
/// no GPU either; an image's `NVIDIA_VISIBLE_DEVICES=all` would otherwise
/// hand it every GPU, unleased. Returns whether anything changed.
pub fn void_visible_devices(spec: &mut Value) -> bool {
    let Some(env) = spec
        .pointer_mut("/process/env")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let mut changed = false;
    for e in env.iter_mut() {
        let Some(value) = e
            .as_str()
            .and_then(|s| s.strip_prefix("NVIDIA_VISIBLE_DEVICES="))
        else {
            continue;
        };
        let v = value.trim();
        if !(v.is_empty() || v.eq_ignore_ascii_case("void") || v.eq_ignore_ascii_case("none")) {
            *e = json!("NVIDIA_VISIBLE_DEVICES=void");
            changed = true;
        }
    }
    changed
}

/// Adds the plan's nodes, allow rules and env. Idempotent: a node path or
/// rule already present is not added twice, env entries are replaced.
pub fn apply_plan(spec: &mut Value, plan: &Plan) {
    for d in &plan.devices {
        add_device(
            spec,
            json!({
                "path": d.path, "type": d.kind, "major": d.major, "minor": d.minor,
                "fileMode": d.mode, "uid": 0, "gid": 0,
            }),
        );
    }
    for r in &plan.rules {
        add_rule(
            spec,
            json!({"allow": true, "type": r.kind, "major": r.major, "minor": r.minor, "access": r.access}),
        );
    }
    for (k, v) in &plan.env {
        set_env(spec, k, v);
    }
}

/// Sets `key=value` in `process.env`, last, and removes every other entry
/// of that key, so the key appears once.
pub fn set_env(spec: &mut Value, key: &str, value: &str) {
    let env = array_at(object_at(spec, "process"), "env");
    let prefix = format!("{key}=");
    env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
    env.push(json!(format!("{key}={value}")));
}

/// Puts `value` where the first entry matching `same` is and drops the
/// other matches, or appends it: the entry ends up in the list once.
fn put_once(list: &mut Vec<Value>, value: Value, same: impl Fn(&Value) -> bool) {
    let mut placed = false;
    list.retain_mut(|e| {
        if !same(e) {
            return true;
        }
        if placed {
            return false;
        }
        placed = true;
        *e = value.clone();
        true
    });
    if !placed {
        list.push(value);
    }
}

/// Adds an OCI mount; one already at the same destination is replaced
/// (the driver's file wins over whatever was there), so adding twice
/// leaves one.
pub fn add_mount(spec: &mut Value, mount: Value) {
    let obj = spec
        .as_object_mut()
        .expect("spec is an object: checked on load");
    let dest = mount.get("destination").cloned();
    put_once(array_at(obj, "mounts"), mount, |m| {
        m.get("destination") == dest.as_ref()
    });
}

/// Adds `hook` to `hooks.<stage>`, replacing any hook there with the same
/// path and args (an engine may have added it from the same CDI spec,
/// without the env migward gives it).
pub fn replace_hook(spec: &mut Value, stage: &str, hook: Value) {
    let list = array_at(object_at(spec, "hooks"), stage);
    let (path, args) = (hook.get("path").cloned(), hook.get("args").cloned());
    put_once(list, hook, |h| {
        h.get("path") == path.as_ref() && h.get("args") == args.as_ref()
    });
}

/// Adds a device node to `linux.devices`, last, replacing one at the same
/// path.
pub fn add_device(spec: &mut Value, device: Value) {
    let devices = array_at(object_at(spec, "linux"), "devices");
    devices.retain(|d| d.get("path") != device.get("path"));
    devices.push(device);
}

/// Adds a device-cgroup rule to `linux.resources.devices` unless present.
pub fn add_rule(spec: &mut Value, rule: Value) {
    let linux = object_at(spec, "linux");
    let resources = linux.entry("resources").or_insert_with(|| json!({}));
    if !resources.is_object() {
        *resources = json!({});
    }
    let rules = array_at(resources.as_object_mut().expect("object"), "devices");
    if !rules.contains(&rule) {
        rules.push(rule);
    }
}

/// Sets annotation `key` to `value`, keeping every other annotation.
pub fn set_annotation(spec: &mut Value, key: &str, value: &str) {
    object_at(spec, "annotations").insert(key.to_string(), json!(value));
}

/// Adds `hook` to `hooks.<stage>` unless an identical one is there; keeps
/// every existing hook (docker adds its own prestart hook).
pub fn add_hook(spec: &mut Value, stage: &str, hook: Value) {
    let hooks = object_at(spec, "hooks");
    let list = array_at(hooks, stage);
    if !list.contains(&hook) {
        list.push(hook);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{AllowRule, DeviceNode};

    fn plan() -> Plan {
        Plan {
            devices: vec![DeviceNode {
                path: "/dev/nvidia-caps/nvidia-cap12".into(),
                kind: "c",
                major: 508,
                minor: 12,
                mode: 0o444,
            }],
            rules: vec![AllowRule {
                kind: "c",
                major: 508,
                minor: 12,
                access: "rwm",
            }],
            env: vec![("NVIDIA_VISIBLE_DEVICES".into(), "MIG-x".into())],
            grants: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn apply_plan_table() {
        let cases = vec![
            (
                json!({"ociVersion": "1.0.2"}),
                json!({"ociVersion": "1.0.2",
                    "linux": {"devices": [{"path": "/dev/nvidia-caps/nvidia-cap12", "type": "c", "major": 508, "minor": 12, "fileMode": 292, "uid": 0, "gid": 0}],
                              "resources": {"devices": [{"allow": true, "type": "c", "major": 508, "minor": 12, "access": "rwm"}]}},
                    "process": {"env": ["NVIDIA_VISIBLE_DEVICES=MIG-x"]}}),
            ),
            (
                json!({"ociVersion": "1.0.2", "x-keep": 1,
                    "process": {"env": ["A=1", "NVIDIA_VISIBLE_DEVICES=all"], "x-inner": [1]},
                    "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}], "memory": {"limit": 5}}, "namespaces": []}}),
                json!({"ociVersion": "1.0.2", "x-keep": 1,
                    "process": {"env": ["A=1", "NVIDIA_VISIBLE_DEVICES=MIG-x"], "x-inner": [1]},
                    "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 508, "minor": 12, "access": "rwm"}], "memory": {"limit": 5}}, "namespaces": [],
                              "devices": [{"path": "/dev/nvidia-caps/nvidia-cap12", "type": "c", "major": 508, "minor": 12, "fileMode": 292, "uid": 0, "gid": 0}]}}),
            ),
        ];
        for (mut input, want) in cases {
            apply_plan(&mut input, &plan());
            assert_eq!(input, want);
            apply_plan(&mut input, &plan());
            assert_eq!(input, want, "not idempotent");
        }
    }

    #[test]
    fn strip_removes_engine_nvidia_nodes_only() {
        let mut spec = json!({
            "mounts": [{"destination": "/dev/nvidia0", "source": "/dev/nvidia0"}, {"destination": "/proc"}],
            "linux": {"devices": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0}, {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229},
                                  {"path": "/dev/x", "type": "c", "major": 508, "minor": 30}],
                      "resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 195, "minor": 0, "access": "rw"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                                                {"allow": true, "type": "c", "major": 508, "access": "rwm"}, {"allow": true, "type": "c", "major": 511, "minor": 1, "access": "rwm"}]}}
        });
        assert!(strip_nvidia(&mut spec, &[195, 508, 511]));
        assert_eq!(
            spec,
            json!({
                "mounts": [{"destination": "/proc"}],
                "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
                          "resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}]}}
            })
        );
        assert!(!strip_nvidia(&mut spec, &[195, 508, 511]));
    }

    /// Fuzzing finding 4: a rule with an NVIDIA major and type `a` (or
    /// none) is "every device" to `is_privileged` (a GPU request beside it is
    /// refused unless `allow_privileged`) and a GPU rule to `strip_nvidia`
    /// (removed); both are the reading that grants less.
    #[test]
    fn a_typeless_rule_with_a_gpu_major_is_privileged_and_stripped() {
        for rule in [
            json!({"allow": true, "major": 195}),
            json!({"allow": true, "type": "a", "major": 195, "access": "rw"}),
        ] {
            let mut spec = json!({"linux": {"resources": {"devices": [rule]}}});
            assert!(is_privileged(&spec), "{spec}");
            assert!(strip_nvidia(&mut spec, &[195, 508, 511]));
            assert_eq!(spec, json!({"linux": {"resources": {"devices": []}}}));
            assert!(!is_privileged(&spec));
        }
        // Another major with type `a` is every device too, and not NVIDIA's.
        let mut spec = json!({"linux": {"resources": {"devices": [{"allow": true, "type": "a", "major": 10}]}}});
        assert!(is_privileged(&spec));
        assert!(!strip_nvidia(&mut spec, &[195, 508, 511]));
    }

    #[test]
    fn visible_devices_become_void_without_a_request() {
        let cases = [
            (
                json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=all", "A=1"]}}),
                true,
                json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=void", "A=1"]}}),
            ),
            (
                json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]}}),
                false,
                json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES=void"]}}),
            ),
            (
                json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES="]}}),
                false,
                json!({"process": {"env": ["NVIDIA_VISIBLE_DEVICES="]}}),
            ),
            (
                json!({"process": {"env": ["A=1"]}}),
                false,
                json!({"process": {"env": ["A=1"]}}),
            ),
            (json!({}), false, json!({})),
        ];
        for (mut spec, changed, want) in cases {
            assert_eq!(void_visible_devices(&mut spec), changed, "{spec}");
            assert_eq!(spec, want);
        }
    }

    #[test]
    fn privileged_detection() {
        let cases = [
            (json!({}), false),
            (
                json!({"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}}}),
                false,
            ),
            (
                json!({"process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"]}}}),
                true,
            ),
            (
                json!({"process": {"capabilities": {"bounding": ["cap_sys_admin"]}}}),
                true,
            ),
            (
                json!({"linux": {"resources": {"devices": [{"allow": true, "access": "rwm"}]}}}),
                true,
            ),
            (
                json!({"linux": {"resources": {"devices": [{"allow": true, "type": "c", "access": "rwm"}]}}}),
                true,
            ),
            (
                json!({"linux": {"resources": {"devices": [{"allow": true, "type": "c", "major": 136, "access": "rwm"}]}}}),
                false,
            ),
            (
                json!({"linux": {"resources": {"devices": [{"allow": true, "type": "c", "access": "m"}, {"allow": true, "type": "b", "access": "m"}]}}}),
                false,
            ),
            (
                json!({"linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}}}),
                false,
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(is_privileged(&spec), want, "{spec}");
        }
    }

    #[test]
    fn hooks_are_kept_and_not_duplicated() {
        let mut spec = json!({"hooks": {"prestart": [{"path": "/usr/bin/docker-proxy"}]}});
        let hook = json!({"path": "/usr/bin/migward", "args": ["migward", "hook", "poststop"]});
        add_hook(&mut spec, "poststop", hook.clone());
        add_hook(&mut spec, "poststop", hook.clone());
        assert_eq!(
            spec,
            json!({"hooks": {"prestart": [{"path": "/usr/bin/docker-proxy"}], "poststop": [hook]}})
        );
    }
}
