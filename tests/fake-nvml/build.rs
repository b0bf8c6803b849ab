//! The fake carries the SONAME of NVIDIA's library, so the dynamic loader
//! and `ldconfig` treat `libnvidia-ml.so.<version>` as the real one.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnvidia-ml.so.1");
}
