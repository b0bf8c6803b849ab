//! `migward simulate <topology> <dir>`.

use crate::simulate::{find_fake_nvml, simulate};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A built-in topology (a100x4-mixed, h100-7x1g, a100-40gb-pending) or a topology file.
    pub topology: String,
    /// Directory to write the simulated host into.
    pub dir: PathBuf,
    /// The fake NVML library to install [default: $MIGWARD_FAKE_NVML, else next to this binary].
    #[arg(long)]
    pub nvml_lib: Option<PathBuf>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let lib = match &args.nvml_lib {
        Some(p) => p.clone(),
        None => find_fake_nvml()?,
    };
    let sim = simulate(&args.topology, &args.dir, &lib)?;
    let devices: usize = sim
        .topology
        .gpus
        .iter()
        .flat_map(|g| &g.instances)
        .map(|gi| gi.compute_instances.len())
        .sum();
    println!(
        "simulated host {:?}: {} GPU(s), {devices} MIG device(s)",
        args.topology,
        sim.topology.gpus.len()
    );
    println!("  host tree:    {}", sim.host_root.display());
    println!("  NVML library: {}", sim.nvml_library.display());
    println!("  lease state:  {}", sim.state_dir.display());
    println!("  driver (CDI): {}", sim.cdi_spec.display());
    println!(
        "use it with:  export MIGWARD_CONFIG={}",
        sim.config.display()
    );
    Ok(ExitCode::SUCCESS)
}
