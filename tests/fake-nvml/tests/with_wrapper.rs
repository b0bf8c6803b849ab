//! The fake library as migward sees it: loaded by nvml-wrapper from the
//! built `libnvidia_ml_fake.so`, serving a topology file.
//!
//! The library's state and the environment are process-wide, so everything
//! that sets `MIGWARD_FAKE_NVML_TOPOLOGY` or initialises NVML in this process
//! lives in one test; refusals are checked in child processes (this same
//! binary, re-run on one test), where stderr can be read.

use migward::topology::Topology;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings::{self as sys, NvmlLib};
use std::ffi::{c_char, c_uint, CStr};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOPOLOGY_ENV: &str = "MIGWARD_FAKE_NVML_TOPOLOGY";
/// Set in a child process: the library path whose init must fail.
const CHILD_ENV: &str = "FAKE_NVML_TEST_CHILD_LIB";

const GPU0: &str = "GPU-11111111-2222-4333-8444-555555555555";
const MIG_A: &str = "MIG-aaaaaaaa-0000-4000-8000-000000000001";
const MIG_B: &str = "MIG-aaaaaaaa-0000-4000-8000-000000000002";

/// An A100-80GB with three GPU instances (one split into two compute
/// instances), an A100-40GB whose MIG mode waits for a reset, an H100 with
/// MIG off.
const TOPOLOGY: &str = r#"
[[gpu]]
model = "A100-80GB"
uuid = "GPU-11111111-2222-4333-8444-555555555555"
minor = 3
instances = [
  { profile = "3g.40gb", start = 4, gi = 2, ci_slices = [1, 2], uuids = [
      "MIG-aaaaaaaa-0000-4000-8000-000000000001",
      "MIG-AAAAAAAA-0000-4000-8000-000000000002" ] },
  { profile = "2g.20gb", start = 0, gi = 5 },
  "1g.10gb",
]

[[gpu]]
model = "A100-40GB"
mig = "pending"

[[gpu]]
model = "H100-80GB"
mig = "disabled"
"#;

const OVERLAPPING: &str = r#"
[[gpu]]
model = "A100-80GB"
instances = [
  { profile = "3g.40gb", start = 0 },
  { profile = "3g.40gb", start = 0 },
]
"#;

/// The cdylib cargo built for this package. The test binary runs from
/// `<target>/<profile>/deps/`, where `cargo test` puts the library it builds
/// first (the rlib crate-type makes it do so); `cargo build` also copies it
/// up to `<target>/<profile>/`. This follows `CARGO_TARGET_DIR` and
/// `--release` without being told.
fn fake_library() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let deps = exe.parent().expect("test binary in a directory");
    let candidates = [deps.to_path_buf(), deps.join("..")];
    candidates
        .iter()
        .map(|dir| dir.join("libnvidia_ml_fake.so"))
        .find(|lib| lib.is_file())
        .unwrap_or_else(|| {
            panic!(
                "libnvidia_ml_fake.so is in neither {} nor its parent: run `cargo build -p fake-nvml`",
                deps.display()
            )
        })
}

fn init(lib: &Path) -> Result<Nvml, NvmlError> {
    Nvml::builder().lib_path(lib.as_os_str()).init()
}

/// The fields of a GPU-instance profile, by profile id, found the way a
/// real driver demands: enumerate profile *indices* until INVALID_ARGUMENT.
fn profile_by_id(lib: &NvmlLib, gpu: sys::nvmlDevice_t, id: u32) -> (String, u32, u32, u32, u64) {
    for index in 0.. {
        // SAFETY: a zeroed plain C struct with the version word set.
        let mut info: sys::nvmlGpuInstanceProfileInfo_v2_t = unsafe { std::mem::zeroed() };
        info.version = std::mem::size_of_val(&info) as c_uint | (2 << 24);
        // SAFETY: a live handle and a valid out-pointer.
        let rc = unsafe { lib.nvmlDeviceGetGpuInstanceProfileInfoV(gpu, index, &mut info) };
        match rc {
            0 if info.id == id => {
                // SAFETY: the library NUL-terminates the name.
                let name = unsafe { CStr::from_ptr(info.name.as_ptr()) };
                return (
                    name.to_str().unwrap().to_string(),
                    info.sliceCount,
                    info.instanceCount,
                    info.multiprocessorCount,
                    info.memorySizeMB,
                );
            }
            0 | 3 => continue,
            2 => break,
            other => panic!("profile index {index}: unexpected return {other}"),
        }
    }
    panic!("no profile index has id {id}");
}

#[test]
fn serves_the_topology_through_nvml_wrapper() {
    let expected = Topology::parse(TOPOLOGY, "test").expect("test topology is valid");
    let dir = tempfile::tempdir().unwrap();
    let topology_path = dir.path().join("topology.toml");
    std::fs::write(&topology_path, TOPOLOGY).unwrap();
    std::env::set_var(TOPOLOGY_ENV, &topology_path);
    let lib_path = fake_library();

    // SAFETY: the fake runs no initialisers that matter when loaded.
    let raw = unsafe { NvmlLib::new(&lib_path) }.expect("dlopen the fake");
    check_init_is_counted(&raw);

    let nvml = init(&lib_path).expect("init with a valid topology");
    assert_eq!(nvml.sys_driver_version().unwrap(), "550.54.15");
    check_gpus(&nvml, &expected);
    check_mig_devices(&nvml, &expected);
    check_gpu_instances(&nvml);
    drop(nvml);
    let mut count: c_uint = 0;
    // SAFETY: a plain out-pointer.
    let rc = unsafe { raw.nvmlDeviceGetCount_v2(&mut count) };
    assert_eq!(rc, 1, "Nvml's drop shut the library down");

    check_topology_beside_library(dir.path(), &lib_path);

    // A built-in name works in the variable too.
    std::env::set_var(TOPOLOGY_ENV, "h100-7x1g");
    let builtin = init(&lib_path).expect("init from a built-in name");
    let h100 = builtin.device_by_index(0).unwrap();
    assert!(h100.mig_device_by_index(6).is_ok());
    assert!(matches!(
        h100.mig_device_by_index(7),
        Err(NvmlError::NotFound)
    ));
    drop(builtin);
    std::env::remove_var(TOPOLOGY_ENV);
}

/// UNINITIALIZED before the first init and after the last shutdown; inits
/// and shutdowns pair up as in real NVML.
fn check_init_is_counted(raw: &NvmlLib) {
    let mut count: c_uint = 0;
    // SAFETY: plain out-pointers.
    unsafe {
        assert_eq!(raw.nvmlDeviceGetCount_v2(&mut count), 1, "before init");
        assert_eq!(raw.nvmlShutdown(), 1, "shutdown before init");
        assert_eq!(raw.nvmlInit_v2(), 0);
        assert_eq!(raw.nvmlInitWithFlags(0), 0);
        assert_eq!(raw.nvmlShutdown(), 0);
        assert_eq!(raw.nvmlDeviceGetCount_v2(&mut count), 0, "one init left");
        assert_eq!(count, 3);
        assert_eq!(raw.nvmlShutdown(), 0);
        let rc = raw.nvmlDeviceGetCount_v2(&mut count);
        assert_eq!(rc, 1, "after the last shutdown");
        let text = CStr::from_ptr(raw.nvmlErrorString(7)).to_str().unwrap();
        assert_eq!(text, "Insufficient Size");
    }
}

/// Physical GPUs: identity, minor, PCI bus id, MIG mode.
fn check_gpus(nvml: &Nvml, expected: &Topology) {
    assert_eq!(nvml.device_count().unwrap(), 3);
    let a100_40 = &expected.gpus[1].uuid[..];
    let h100 = &expected.gpus[2].uuid[..];
    let cases = [
        (GPU0, "NVIDIA A100-SXM4-80GB", 3, (1, 1), "00000000:07:00.0"),
        (
            a100_40,
            "NVIDIA A100-SXM4-40GB",
            1,
            (0, 1),
            "00000000:0F:00.0",
        ),
        (h100, "NVIDIA H100 80GB HBM3", 2, (0, 0), "00000000:17:00.0"),
    ];
    for (index, (uuid, name, minor, mode, bus_id)) in cases.into_iter().enumerate() {
        let gpu = nvml.device_by_index(index as u32).unwrap();
        assert_eq!(gpu.uuid().unwrap(), uuid, "gpu {index}");
        assert_eq!(gpu.name().unwrap(), name, "gpu {index}");
        assert_eq!(gpu.minor_number().unwrap(), minor, "gpu {index}");
        assert_eq!(gpu.index().unwrap(), index as u32);
        let got = gpu.mig_mode().unwrap();
        assert_eq!((got.current, got.pending), mode, "gpu {index}");
        assert_eq!(gpu.pci_info().unwrap().bus_id, bus_id, "gpu {index}");
        assert_eq!(gpu.mig_device_count().unwrap(), 7);
        assert!(!gpu.mig_is_mig_device_handle().unwrap());
        assert!(matches!(gpu.attributes(), Err(NvmlError::NotSupported)));
    }
    assert!(matches!(
        nvml.device_by_index(3),
        Err(NvmlError::InvalidArg)
    ));
    let by_uuid = nvml.device_by_uuid(GPU0.to_ascii_uppercase()).unwrap();
    assert_eq!(by_uuid.minor_number().unwrap(), 3);
    assert!(matches!(
        nvml.device_by_uuid("GPU-00000000-0000-4000-8000-000000000000"),
        Err(NvmlError::NotFound)
    ));
    let pending = nvml.device_by_index(1).unwrap();
    assert!(
        matches!(pending.mig_device_by_index(0), Err(NvmlError::NotSupported)),
        "a pending MIG mode is not active"
    );
}

/// MIG devices of GPU 0 (GPU instances in file order, then compute
/// instances), with the GI and CI ids migward reads through `nvml.lib()`.
fn check_mig_devices(nvml: &Nvml, expected: &Topology) {
    let lib = nvml.lib();
    let gpu0 = nvml.device_by_index(0).unwrap();
    let derived = |gi: usize| &expected.gpus[0].instances[gi].compute_instances[0].uuid[..];
    let want = [
        (MIG_A, "NVIDIA A100-SXM4-80GB MIG 1c.3g.40gb", 2, 0, 14),
        (MIG_B, "NVIDIA A100-SXM4-80GB MIG 2c.3g.40gb", 2, 1, 28),
        (derived(1), "NVIDIA A100-SXM4-80GB MIG 2g.20gb", 5, 0, 28),
        (derived(2), "NVIDIA A100-SXM4-80GB MIG 1g.10gb", 1, 0, 14),
    ];
    for (n, (uuid, name, gi, ci, sms)) in want.into_iter().enumerate() {
        let mig = gpu0.mig_device_by_index(n as u32).unwrap();
        assert_eq!(mig.uuid().unwrap(), uuid, "mig {n}");
        assert_eq!(mig.name().unwrap(), name, "mig {n}");
        assert!(mig.mig_is_mig_device_handle().unwrap());
        assert_eq!(mig.mig_parent_device().unwrap().uuid().unwrap(), GPU0);
        assert!(matches!(mig.minor_number(), Err(NvmlError::NotSupported)));
        let (mut gi_id, mut ci_id) = (99, 99);
        // SAFETY: a live MIG handle and plain out-pointers.
        let rcs = unsafe {
            (
                lib.nvmlDeviceGetGpuInstanceId(mig.handle(), &mut gi_id),
                lib.nvmlDeviceGetComputeInstanceId(mig.handle(), &mut ci_id),
            )
        };
        assert_eq!(rcs, (0, 0), "mig {n}");
        assert_eq!((gi_id, ci_id), (gi, ci), "mig {n}");
        let attrs = mig.attributes().unwrap();
        assert_eq!(attrs.multiprocessor_count, sms, "mig {n}");
    }
    assert!(matches!(
        gpu0.mig_device_by_index(4),
        Err(NvmlError::NotFound)
    ));
    let split = gpu0.mig_device_by_index(1).unwrap().attributes().unwrap();
    let slices = (
        split.gpu_instance_slice_count,
        split.compute_instance_slice_count,
        split.memory_size_mb,
    );
    assert_eq!(slices, (3, 2, 40192));

    // MIG UUIDs resolve in any case, and in the legacy form.
    let by_uuid = nvml.device_by_uuid(MIG_B.to_ascii_uppercase()).unwrap();
    assert_eq!(by_uuid.name().unwrap(), want[1].1);
    let legacy = nvml.device_by_uuid(format!("MIG-{GPU0}/5/0")).unwrap();
    assert_eq!(legacy.uuid().unwrap(), want[2].0);
}

/// GPU instances: placement and profile, as `nvidia-smi mig -lgi` shows
/// them; the return codes of the raw calls.
fn check_gpu_instances(nvml: &Nvml) {
    let lib = nvml.lib();
    // SAFETY: the handles are only passed back to the library.
    let (gpu0, gpu1) = unsafe {
        (
            nvml.device_by_index(0).unwrap().handle(),
            nvml.device_by_index(1).unwrap().handle(),
        )
    };
    // SAFETY: live handles, plain out-pointers.
    unsafe {
        let mut gi: sys::nvmlGpuInstance_t = std::ptr::null_mut();
        let rc = lib.nvmlDeviceGetGpuInstanceById(gpu0, 7, &mut gi);
        assert_eq!(rc, 6, "there is no GI 7");
        let rc = lib.nvmlDeviceGetGpuInstanceById(gpu1, 1, &mut gi);
        assert_eq!(rc, 3, "MIG is not active on GPU 1");
        for (id, profile_id, start, size) in [(2, 9, 4, 4), (5, 14, 0, 2), (1, 19, 2, 1)] {
            assert_eq!(lib.nvmlDeviceGetGpuInstanceById(gpu0, id, &mut gi), 0);
            let mut info: sys::nvmlGpuInstanceInfo_t = std::mem::zeroed();
            assert_eq!(lib.nvmlGpuInstanceGetInfo(gi, &mut info), 0);
            assert_eq!(info.device, gpu0);
            let got = (
                info.id,
                info.profileId,
                info.placement.start,
                info.placement.size,
            );
            assert_eq!(got, (id, profile_id, start, size), "gi {id}");
        }

        // The profile-info calls take an index; a wrong version word is refused.
        let three = profile_by_id(lib, gpu0, 9);
        assert_eq!(three, ("3g.40gb".into(), 3, 2, 42, 40192));
        let one = profile_by_id(lib, gpu0, 15);
        assert_eq!(one, ("1g.20gb".into(), 1, 4, 14, 19968));
        let mut info: sys::nvmlGpuInstanceProfileInfo_v2_t = std::mem::zeroed();
        let rc = lib.nvmlDeviceGetGpuInstanceProfileInfoV(gpu0, 2, &mut info);
        assert_eq!(rc, 2, "version word 0");
        let mut v1: sys::nvmlGpuInstanceProfileInfo_t = std::mem::zeroed();
        assert_eq!(lib.nvmlDeviceGetGpuInstanceProfileInfo(gpu0, 2, &mut v1), 0);
        assert_eq!((v1.id, v1.sliceCount), (9, 3));

        // Strings that do not fit are refused, not truncated; a stray handle
        // is an invalid argument.
        let mut short = [0 as c_char; 10];
        assert_eq!(lib.nvmlDeviceGetUUID(gpu0, short.as_mut_ptr(), 10), 7);
        let stray = std::ptr::without_provenance_mut(0x1234);
        assert_eq!(lib.nvmlDeviceGetUUID(stray, short.as_mut_ptr(), 10), 2);
    }
}

/// Without the variable, the topology comes from `topology.toml` beside the
/// library, as `migward simulate` lays it out, and the fake behaves like a
/// driver: it shows only the GPUs and MIG devices whose nodes this process
/// may open, under `dev-root` beside it (else `/dev`, as in a container).
fn check_topology_beside_library(dir: &Path, lib_path: &Path) {
    std::env::remove_var(TOPOLOGY_ENV);
    let copy_in = |name: &str, topology: &str, dev_root: Option<&Path>| {
        let nvml_dir = dir.join(name);
        std::fs::create_dir(&nvml_dir).unwrap();
        let copy = nvml_dir.join("libnvidia-ml.so.1");
        std::fs::copy(lib_path, &copy).unwrap();
        std::fs::write(nvml_dir.join("topology.toml"), topology).unwrap();
        if let Some(root) = dev_root {
            std::fs::write(nvml_dir.join("dev-root"), root.display().to_string()).unwrap();
        }
        copy
    };
    let one_h100 = "[[gpu]]\nmodel = \"H100-80GB\"\n";
    let host = dir.join("host");
    let topology = migward::topology::Topology::parse(one_h100, "test").unwrap();
    migward::simulate::write_host_tree(&topology, &host).unwrap();
    let copy = copy_in("nvml", one_h100, Some(&host.join("dev")));
    let nvml = init(&copy).expect("init from topology.toml beside the library");
    assert_eq!(nvml.device_count().unwrap(), 1);
    let name = nvml.device_by_index(0).unwrap().name().unwrap();
    assert_eq!(name, "NVIDIA H100 80GB HBM3");
    drop(nvml);

    // No node to open: no GPU, as in a container that was given none.
    let empty = dir.join("empty-dev");
    std::fs::create_dir(&empty).unwrap();
    let nvml = init(&copy_in("bare", one_h100, Some(&empty))).unwrap();
    assert_eq!(nvml.device_count().unwrap(), 0);
    drop(nvml);

    // Seven 1g instances; without the CI cap of the third, six MIG devices,
    // numbered from 0 without a gap.
    let seven = migward::topology::source_text("h100-7x1g").unwrap();
    let topology = migward::topology::Topology::parse(&seven, "h100-7x1g").unwrap();
    let host = dir.join("host7");
    migward::simulate::write_host_tree(&topology, &host).unwrap();
    let third = &topology.gpus[0].instances[2];
    let ci_cap = migward::simulate::gi_cap_minor(0, third.gi) + 1 + third.compute_instances[0].ci;
    std::fs::remove_file(host.join(format!("dev/nvidia-caps/nvidia-cap{ci_cap}"))).unwrap();
    let nvml = init(&copy_in("six", &seven, Some(&host.join("dev")))).unwrap();
    let gpu = nvml.device_by_index(0).unwrap();
    let uuids: Vec<String> = (0..7)
        .filter_map(|j| gpu.mig_device_by_index(j).ok())
        .map(|m| m.uuid().unwrap())
        .collect();
    assert_eq!(uuids.len(), 6, "{uuids:?}");
    assert!(!uuids.contains(&third.compute_instances[0].uuid));
}

/// A layout no GPU could have, or no topology at all: init fails with
/// NVML_ERROR_UNKNOWN and one line on stderr that names the problem.
#[test]
fn refuses_a_bad_topology_with_one_line() {
    if let Some(lib) = std::env::var_os(CHILD_ENV) {
        match init(Path::new(&lib)) {
            Err(NvmlError::Unknown) => return,
            Err(other) => panic!("init failed with {other:?}, not Unknown"),
            Ok(_) => panic!("init succeeded"),
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let overlapping = dir.path().join("overlap.toml");
    std::fs::write(&overlapping, OVERLAPPING).unwrap();
    let lonely = dir.path().join("libnvidia-ml.so.1");
    std::fs::copy(fake_library(), &lonely).unwrap();

    let cases = [
        (
            fake_library(),
            Some(&overlapping),
            format!(
                "fake nvml: topology {}: gpu 0: instance 1: 3g.40gb at 0:4 overlaps another instance's placement",
                overlapping.display()
            ),
        ),
        (
            lonely.clone(),
            None,
            format!(
                "fake nvml: cannot read topology file {}/topology.toml:",
                dir.path().canonicalize().unwrap().display()
            ),
        ),
    ];
    for (lib, topology, line) in cases {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args([
                "--exact",
                "refuses_a_bad_topology_with_one_line",
                "--nocapture",
            ])
            .env(CHILD_ENV, &lib);
        match topology {
            Some(path) => child.env(TOPOLOGY_ENV, path),
            None => child.env_remove(TOPOLOGY_ENV),
        };
        let output = child.output().expect("run the test binary as a child");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "child for {}: {}\n{stderr}",
            lib.display(),
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
        assert!(
            stderr.starts_with(&line),
            "stderr {stderr:?} does not start with {line:?}"
        );
    }
}
