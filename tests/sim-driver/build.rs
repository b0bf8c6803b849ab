//! The libcuda stand-in carries the SONAME of NVIDIA's library.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcuda.so.1");
}
