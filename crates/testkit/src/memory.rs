//! This process's memory, for tests that bound it (Linux only: `/proc/self/status`).

/// Resident and peak resident memory, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub resident_mib: u64,
    /// `VmHWM`: the most ever resident.
    pub peak_mib: u64,
}

impl Memory {
    pub fn now() -> Memory {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
        };
        Memory {
            resident_mib: kib("VmRSS:") / 1024,
            peak_mib: kib("VmHWM:") / 1024,
        }
    }
}
