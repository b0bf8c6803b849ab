//! The MIG GPU-instance profile table of the GPUs migward simulates, as
//! `nvidia-smi mig -lgip` prints it (DESIGN.md, "Profiles").
//!
//! Placements are `{starts}:size` in memory slices; `compute_slices` is the
//! number of the GPU's seven compute slices an instance of the profile takes.

/// A GPU model the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    A100_40GB,
    A100_80GB,
    H100_80GB,
    /// A GPU without MIG support (like an A40 or V100): handed out whole only.
    A40,
}

impl Model {
    pub const ALL: [Model; 4] = [
        Model::A100_40GB,
        Model::A100_80GB,
        Model::H100_80GB,
        Model::A40,
    ];

    /// The short name used in topology files.
    pub fn key(self) -> &'static str {
        match self {
            Model::A100_40GB => "A100-40GB",
            Model::A100_80GB => "A100-80GB",
            Model::H100_80GB => "H100-80GB",
            Model::A40 => "A40",
        }
    }

    /// The name NVML reports for the board.
    pub fn product_name(self) -> &'static str {
        match self {
            Model::A100_40GB => "NVIDIA A100-SXM4-40GB",
            Model::A100_80GB => "NVIDIA A100-SXM4-80GB",
            Model::H100_80GB => "NVIDIA H100 80GB HBM3",
            Model::A40 => "NVIDIA A40",
        }
    }

    pub fn from_key(key: &str) -> Option<Model> {
        Model::ALL
            .into_iter()
            .find(|m| m.key().eq_ignore_ascii_case(key.trim()))
    }

    pub fn memory_mb(self) -> u64 {
        match self {
            Model::A100_40GB => 40960,
            Model::A100_80GB | Model::H100_80GB => 81920,
            Model::A40 => 46068,
        }
    }

    /// Whether the board has MIG at all (NVML answers NotSupported otherwise).
    pub fn supports_mig(self) -> bool {
        !self.profiles().is_empty()
    }

    /// Every GPU-instance profile of this model.
    pub fn profiles(self) -> &'static [Profile] {
        match self {
            Model::A100_40GB => &A100_40GB,
            Model::A100_80GB => &A100_80GB,
            Model::H100_80GB => &H100_80GB,
            Model::A40 => &[],
        }
    }

    /// A profile by name (`3g.40gb`) or id (`9`).
    pub fn profile(self, name_or_id: &str) -> Option<&'static Profile> {
        let wanted = name_or_id.trim();
        self.profiles().iter().find(|p| {
            p.name.eq_ignore_ascii_case(wanted) || wanted.parse::<u32>().ok() == Some(p.id)
        })
    }

    pub fn profile_by_id(self, id: u32) -> Option<&'static Profile> {
        self.profiles().iter().find(|p| p.id == id)
    }
}

/// One GPU-instance profile.
#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    pub id: u32,
    pub name: &'static str,
    pub compute_slices: u32,
    pub max_count: u32,
    pub starts: &'static [u32],
    pub memory_slices: u32,
    pub multiprocessors: u32,
    pub memory_mb: u64,
}

// One row of `nvidia-smi mig -lgip`: a table constructor, positional on purpose.
#[allow(clippy::too_many_arguments)]
const fn p(
    id: u32,
    name: &'static str,
    compute_slices: u32,
    max_count: u32,
    starts: &'static [u32],
    memory_slices: u32,
    multiprocessors: u32,
    memory_mb: u64,
) -> Profile {
    Profile {
        id,
        name,
        compute_slices,
        max_count,
        starts,
        memory_slices,
        multiprocessors,
        memory_mb,
    }
}

const ANY: &[u32] = &[0, 1, 2, 3, 4, 5, 6];
const EVEN4: &[u32] = &[0, 2, 4, 6];
const EVEN3: &[u32] = &[0, 2, 4];
const HALVES: &[u32] = &[0, 4];
const FIRST: &[u32] = &[0];

static A100_40GB: [Profile; 7] = [
    p(19, "1g.5gb", 1, 7, ANY, 1, 14, 4864),
    p(20, "1g.5gb+me", 1, 1, ANY, 1, 14, 4864),
    p(15, "1g.10gb", 1, 4, EVEN4, 2, 14, 9856),
    p(14, "2g.10gb", 2, 3, EVEN3, 2, 28, 9856),
    p(9, "3g.20gb", 3, 2, HALVES, 4, 42, 19968),
    p(5, "4g.20gb", 4, 1, FIRST, 4, 56, 19968),
    p(0, "7g.40gb", 7, 1, FIRST, 8, 98, 40192),
];

static A100_80GB: [Profile; 7] = [
    p(19, "1g.10gb", 1, 7, ANY, 1, 14, 9728),
    p(20, "1g.10gb+me", 1, 1, ANY, 1, 14, 9728),
    p(15, "1g.20gb", 1, 4, EVEN4, 2, 14, 19968),
    p(14, "2g.20gb", 2, 3, EVEN3, 2, 28, 19968),
    p(9, "3g.40gb", 3, 2, HALVES, 4, 42, 40192),
    p(5, "4g.40gb", 4, 1, FIRST, 4, 56, 40192),
    p(0, "7g.80gb", 7, 1, FIRST, 8, 98, 80896),
];

static H100_80GB: [Profile; 7] = [
    p(19, "1g.10gb", 1, 7, ANY, 1, 16, 9984),
    p(20, "1g.10gb+me", 1, 1, ANY, 1, 16, 9984),
    p(15, "1g.20gb", 1, 4, EVEN4, 2, 26, 20096),
    p(14, "2g.20gb", 2, 3, EVEN3, 2, 32, 20096),
    p(9, "3g.40gb", 3, 2, HALVES, 4, 60, 40320),
    p(5, "4g.40gb", 4, 1, FIRST, 4, 64, 40320),
    p(0, "7g.80gb", 7, 1, FIRST, 8, 132, 80896),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_match_the_design_table() {
        let cases = [
            (Model::A100_40GB, "3g.20gb", 9, 42),
            (Model::A100_80GB, "3g.40gb", 9, 42),
            (Model::H100_80GB, "3g.40gb", 9, 60),
            (Model::A100_80GB, "1g.10gb", 19, 14),
            (Model::H100_80GB, "1g.20gb", 15, 26),
            (Model::H100_80GB, "7g.80gb", 0, 132),
            (Model::A100_40GB, "1g.5gb+me", 20, 14),
        ];
        for (model, name, id, sms) in cases {
            let prof = model.profile(name).expect(name);
            assert_eq!((prof.id, prof.multiprocessors), (id, sms), "{name}");
            assert_eq!(model.profile(&id.to_string()), Some(prof));
        }
    }

    #[test]
    fn model_keys_are_case_insensitive() {
        assert_eq!(Model::from_key("a100-80gb"), Some(Model::A100_80GB));
        assert_eq!(Model::from_key("V100"), None);
    }
}
