//! A process's memory, for tests that bound it (Linux only: `/proc/<pid>/status`).

/// Resident and peak resident memory, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub resident_mib: u64,
    /// `VmHWM`: the most ever resident.
    pub peak_mib: u64,
    /// `VmSize`: address space reserved, touched or not.
    pub virtual_mib: u64,
}

impl Memory {
    /// This process's memory now.
    pub fn now() -> Memory {
        Self::read("/proc/self/status")
    }

    /// The memory of process `pid` (a broker child, say) now.
    pub fn of(pid: u32) -> Memory {
        Self::read(&format!("/proc/{pid}/status"))
    }

    fn read(path: &str) -> Memory {
        let status = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{field} in {path}"))
        };
        Memory {
            resident_mib: kib("VmRSS:") / 1024,
            peak_mib: kib("VmHWM:") / 1024,
            virtual_mib: kib("VmSize:") / 1024,
        }
    }
}
