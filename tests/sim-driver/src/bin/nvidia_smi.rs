//! The simulated host's `nvidia-smi`, and the probe the end-to-end tests run
//! inside containers: it loads `libnvidia-ml.so.1` (and `libcuda.so.1`)
//! through the dynamic loader, as CUDA programs do, and lists what NVML
//! shows this process, in `nvidia-smi -L`'s format:
//!
//! ```text
//! GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-…)
//!   MIG 1g.5gb      Device  0: (UUID: MIG-…)
//! ```
//!
//! Without `-L` a header line comes first: `Driver Version: <v> CUDA
//! Version: <v or N/A>`. Exit codes as NVIDIA's: 12 when the library cannot
//! be loaded, 9 when NVML cannot initialise, 6 when no device is found.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::process::ExitCode;

type Ret = c_int;
type Device = *mut c_void;

struct Lib(*mut c_void);

impl Lib {
    fn open(name: &str) -> Result<Lib, String> {
        let c = CString::new(name).expect("no NUL");
        // SAFETY: dlopen with a valid C string.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
        if handle.is_null() {
            // SAFETY: dlerror returns NULL or a C string valid until the next call.
            let why = unsafe { libc::dlerror() };
            let why = if why.is_null() {
                "unknown error".to_string()
            } else {
                unsafe { CStr::from_ptr(why) }
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(why);
        }
        Ok(Lib(handle))
    }

    /// A symbol as a function pointer of type `F`, or `None`.
    fn sym<F: Copy>(&self, name: &str) -> Option<F> {
        let c = CString::new(name).expect("no NUL");
        // SAFETY: dlsym on a handle dlopen returned.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        // SAFETY: the caller names the symbol's C signature as `F`, a fn pointer.
        (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
    }

    /// As [`Lib::sym`], with a line naming a missing symbol.
    fn need<F: Copy>(&self, name: &str) -> Result<F, String> {
        self.sym(name)
            .ok_or_else(|| format!("libnvidia-ml.so.1 has no {name}"))
    }
}

type Init = unsafe extern "C" fn() -> Ret;
type Count = unsafe extern "C" fn(*mut c_uint) -> Ret;
type ByIndex = unsafe extern "C" fn(c_uint, *mut Device) -> Ret;
type Text = unsafe extern "C" fn(Device, *mut c_char, c_uint) -> Ret;
type SysText = unsafe extern "C" fn(*mut c_char, c_uint) -> Ret;
type MigByIndex = unsafe extern "C" fn(Device, c_uint, *mut Device) -> Ret;
type MaxMig = unsafe extern "C" fn(Device, *mut c_uint) -> Ret;
type ErrorString = unsafe extern "C" fn(Ret) -> *const c_char;
type CuVersion = unsafe extern "C" fn(*mut c_int) -> c_int;

fn text(f: impl FnOnce(*mut c_char, c_uint) -> Ret) -> Option<String> {
    let mut buf = [0 as c_char; 96];
    (f(buf.as_mut_ptr(), buf.len() as c_uint) == 0)
        // SAFETY: NVML wrote a NUL-terminated string into `buf`.
        .then(|| {
            unsafe { CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        })
}

fn main() -> ExitCode {
    let list_only = std::env::args()
        .skip(1)
        .any(|a| a == "-L" || a == "--list-gpus");
    let nvml = match Lib::open("libnvidia-ml.so.1") {
        Ok(l) => l,
        Err(why) => {
            eprintln!("NVIDIA-SMI couldn't find libnvidia-ml.so library in your system: {why}");
            return ExitCode::from(12);
        }
    };
    let required = || -> Result<(Init, Count, ByIndex, Text, Text), String> {
        Ok((
            nvml.need("nvmlInit_v2")?,
            nvml.need("nvmlDeviceGetCount_v2")?,
            nvml.need("nvmlDeviceGetHandleByIndex_v2")?,
            nvml.need("nvmlDeviceGetName")?,
            nvml.need("nvmlDeviceGetUUID")?,
        ))
    };
    let (init, count, by_index, name, uuid) = match required() {
        Ok(syms) => syms,
        Err(e) => {
            eprintln!("NVIDIA-SMI: {e}");
            return ExitCode::from(12);
        }
    };
    // SAFETY: NVML's C API, called per nvml.h.
    let rc = unsafe { init() };
    if rc != 0 {
        let why = nvml
            .sym::<ErrorString>("nvmlErrorString")
            // SAFETY: nvmlErrorString returns a static C string.
            .map(|f| {
                unsafe { CStr::from_ptr(f(rc)) }
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| format!("error {rc}"));
        eprintln!("Failed to initialize NVML: {why}");
        return ExitCode::from(9);
    }
    if !list_only {
        let driver = nvml
            .sym::<SysText>("nvmlSystemGetDriverVersion")
            .and_then(|f| text(|b, n| unsafe { f(b, n) }))
            .unwrap_or_else(|| "N/A".into());
        let cuda = Lib::open("libcuda.so.1")
            .ok()
            .and_then(|l| l.sym::<CuVersion>("cuDriverGetVersion"))
            .and_then(|f| {
                let mut v = 0;
                // SAFETY: CUDA's C API.
                (unsafe { f(&mut v) } == 0).then(|| format!("{}.{}", v / 1000, v % 1000 / 10))
            })
            .unwrap_or_else(|| "N/A".into());
        println!("Driver Version: {driver}    CUDA Version: {cuda}");
    }
    let mig_by_index = nvml.sym::<MigByIndex>("nvmlDeviceGetMigDeviceHandleByIndex");
    let max_mig = nvml.sym::<MaxMig>("nvmlDeviceGetMaxMigDeviceCount");
    let mut n = 0;
    // SAFETY (all calls below): NVML's C API with valid outputs.
    if unsafe { count(&mut n) } != 0 || n == 0 {
        println!("No devices were found");
        return ExitCode::from(6);
    }
    for i in 0..n {
        let mut dev: Device = std::ptr::null_mut();
        if unsafe { by_index(i, &mut dev) } != 0 {
            continue;
        }
        let board = text(|b, l| unsafe { name(dev, b, l) }).unwrap_or_default();
        let id = text(|b, l| unsafe { uuid(dev, b, l) }).unwrap_or_default();
        println!("GPU {i}: {board} (UUID: {id})");
        let (Some(mig_by_index), Some(max_mig)) = (mig_by_index, max_mig) else {
            continue;
        };
        let mut max = 0;
        if unsafe { max_mig(dev, &mut max) } != 0 {
            continue;
        }
        for j in 0..max {
            let mut mig: Device = std::ptr::null_mut();
            if unsafe { mig_by_index(dev, j, &mut mig) } != 0 {
                continue;
            }
            let full = text(|b, l| unsafe { name(mig, b, l) }).unwrap_or_default();
            let profile = full.split_once(" MIG ").map(|(_, p)| p).unwrap_or(&full);
            let id = text(|b, l| unsafe { uuid(mig, b, l) }).unwrap_or_default();
            println!("  MIG {profile:<11} Device {j:>2}: (UUID: {id})");
        }
    }
    ExitCode::SUCCESS
}
