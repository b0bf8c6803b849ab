//! Opaque `nvmlDevice_t` and `nvmlGpuInstance_t` handles.
//!
//! A handle is never dereferenced, by NVML's callers or by the fake, so it
//! need not point anywhere: it encodes what it names (a tag, the GPU index
//! and a slot) in a non-NULL address. The same topology gives the same
//! handles after a re-init, and a handle from a different topology, a NULL or
//! a stray pointer decodes to nothing and is refused with
//! `NVML_ERROR_INVALID_ARGUMENT`, as real NVML refuses a bad handle.

use crate::{ret, sys, Ret};
use migward::topology::{ComputeInstance, Gpu, GpuInstance, Topology};

const TAG_MASK: usize = 0xff00_0000;
const DEVICE_TAG: usize = 0x4e00_0000;
const GPU_INSTANCE_TAG: usize = 0x4700_0000;
const COMPUTE_INSTANCE_TAG: usize = 0x4300_0000;

/// What a device handle names: a physical GPU or one MIG device of it.
#[derive(Clone, Copy)]
pub enum Dev<'t> {
    Gpu(&'t Gpu),
    Mig(Mig<'t>),
}

/// A MIG device: one compute instance of one GPU instance.
#[derive(Clone, Copy)]
pub struct Mig<'t> {
    pub gpu: &'t Gpu,
    pub gi: &'t GpuInstance,
    pub ci: &'t ComputeInstance,
}

/// The MIG devices of a GPU, in the order `nvmlDeviceGetMigDeviceHandleByIndex`
/// numbers them: GPU instances in topology order, then compute instances.
pub fn mig_devices(gpu: &Gpu) -> impl Iterator<Item = Mig<'_>> {
    gpu.instances.iter().flat_map(move |gi| {
        gi.compute_instances
            .iter()
            .map(move |ci| Mig { gpu, gi, ci })
    })
}

fn encode(tag: usize, gpu: u32, slot: usize) -> usize {
    tag | ((gpu as usize & 0xff) << 16) | (slot & 0xffff)
}

fn decode(handle: usize, tag: usize) -> Option<(usize, usize)> {
    (handle & !0xffff_ffff == 0 && handle & TAG_MASK == tag)
        .then_some(((handle >> 16) & 0xff, handle & 0xffff))
}

/// The handle of a physical GPU.
pub fn gpu_handle(gpu: &Gpu) -> sys::nvmlDevice_t {
    std::ptr::without_provenance_mut(encode(DEVICE_TAG, gpu.index, 0))
}

/// The handle of the `n`-th MIG device (0-based) of `gpu`.
pub fn mig_handle(gpu: &Gpu, n: usize) -> sys::nvmlDevice_t {
    std::ptr::without_provenance_mut(encode(DEVICE_TAG, gpu.index, n + 1))
}

/// The handle of a GPU instance, named by its GI id.
pub fn gpu_instance_handle(gpu: &Gpu, gi: &GpuInstance) -> sys::nvmlGpuInstance_t {
    std::ptr::without_provenance_mut(encode(GPU_INSTANCE_TAG, gpu.index, gi.gi as usize))
}

/// The handle of a compute instance, named by its GI and CI ids.
pub fn compute_instance_handle(
    gpu: &Gpu,
    gi: &GpuInstance,
    ci: &ComputeInstance,
) -> sys::nvmlComputeInstance_t {
    let slot = (gi.gi as usize) << 8 | ci.ci as usize;
    std::ptr::without_provenance_mut(encode(COMPUTE_INSTANCE_TAG, gpu.index, slot))
}

/// Decodes a compute-instance handle.
pub fn compute_instance(
    topology: &Topology,
    handle: sys::nvmlComputeInstance_t,
) -> Result<Mig<'_>, Ret> {
    let (index, slot) = decode(handle.addr(), COMPUTE_INSTANCE_TAG).ok_or(ret::INVALID_ARGUMENT)?;
    let gpu = topology.gpus.get(index).ok_or(ret::INVALID_ARGUMENT)?;
    mig_devices(gpu)
        .find(|m| m.gi.gi as usize == slot >> 8 && m.ci.ci as usize == slot & 0xff)
        .ok_or(ret::INVALID_ARGUMENT)
}

/// Decodes a device handle against the served topology.
pub fn device(topology: &Topology, handle: sys::nvmlDevice_t) -> Result<Dev<'_>, Ret> {
    let (index, slot) = decode(handle.addr(), DEVICE_TAG).ok_or(ret::INVALID_ARGUMENT)?;
    let gpu = topology.gpus.get(index).ok_or(ret::INVALID_ARGUMENT)?;
    match slot {
        0 => Ok(Dev::Gpu(gpu)),
        n => mig_devices(gpu)
            .nth(n - 1)
            .map(Dev::Mig)
            .ok_or(ret::INVALID_ARGUMENT),
    }
}

/// Decodes a device handle that must name a physical GPU.
pub fn physical(topology: &Topology, handle: sys::nvmlDevice_t) -> Result<&Gpu, Ret> {
    match device(topology, handle)? {
        Dev::Gpu(gpu) => Ok(gpu),
        Dev::Mig(_) => Err(ret::INVALID_ARGUMENT),
    }
}

/// Decodes a GPU-instance handle.
pub fn gpu_instance(
    topology: &Topology,
    handle: sys::nvmlGpuInstance_t,
) -> Result<(&Gpu, &GpuInstance), Ret> {
    let (index, id) = decode(handle.addr(), GPU_INSTANCE_TAG).ok_or(ret::INVALID_ARGUMENT)?;
    let gpu = topology.gpus.get(index).ok_or(ret::INVALID_ARGUMENT)?;
    let gi = gpu
        .instances
        .iter()
        .find(|gi| gi.gi as usize == id)
        .ok_or(ret::INVALID_ARGUMENT)?;
    Ok((gpu, gi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stray_addresses_decode_to_nothing() {
        for addr in [
            0,
            0x1234,
            0x0007_ff0d_ead0,
            0x4e00_0000_0000_0000_usize,
            0x4700_0000,
        ] {
            assert_eq!(decode(addr, DEVICE_TAG), None, "{addr:#x}");
        }
        assert_eq!(decode(encode(DEVICE_TAG, 3, 5), DEVICE_TAG), Some((3, 5)));
        assert_eq!(decode(encode(GPU_INSTANCE_TAG, 3, 5), DEVICE_TAG), None);
    }
}
