//! CPU architectures as Kubernetes names them (`linux/arm64`,
//! `linux/amd64`), with the names other tools use for the same thing:
//! `uname -m` on a server and the ELF header's `e_machine` of a binary.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
    Arm,
    Ppc64le,
    S390x,
    Riscv64,
}

impl Arch {
    pub const ALL: &'static [Arch] = &[Arch::Amd64, Arch::Arm64, Arch::Arm, Arch::Ppc64le, Arch::S390x, Arch::Riscv64];

    /// Go's and Kubernetes' name (`GOARCH`).
    pub fn goarch(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::Arm => "arm",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
        }
    }

    /// `linux/arm64`, as `/version`'s `platform` and the release archives say it.
    pub fn platform(self) -> String {
        format!("linux/{}", self.goarch())
    }

    /// From `uname -m` (or a GOARCH name).
    pub fn from_uname(m: &str) -> Option<Arch> {
        Some(match m {
            "x86_64" | "amd64" => Arch::Amd64,
            "aarch64" | "arm64" => Arch::Arm64,
            "armv7l" | "armv6l" | "armv8l" | "arm" => Arch::Arm,
            "ppc64le" => Arch::Ppc64le,
            "s390x" => Arch::S390x,
            "riscv64" => Arch::Riscv64,
            _ => return None,
        })
    }

    /// The ELF header's `e_machine` for binaries of this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => 62,
            Arch::Arm64 => 183,
            Arch::Arm => 40,
            Arch::Ppc64le => 21,
            Arch::S390x => 22,
            Arch::Riscv64 => 243,
        }
    }

    pub fn from_elf_machine(m: u16) -> Option<Arch> {
        Arch::ALL.iter().copied().find(|a| a.elf_machine() == m)
    }

    /// The architecture this program was built for.
    pub fn this_machine() -> Option<Arch> {
        Arch::from_uname(std::env::consts::ARCH)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.platform())
    }
}

/// What an ELF header says a binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elf {
    /// An executable (or position-independent executable) for this architecture.
    Executable(Arch),
    /// An executable for a machine this tool does not name (its `e_machine`).
    OtherMachine(u16),
    /// An ELF file that is not an executable (a library, an object).
    NotExecutable,
    /// Not ELF at all.
    NotElf,
}

impl Elf {
    /// Reads the first bytes of a file (20 are enough).
    pub fn of(head: &[u8]) -> Elf {
        if head.len() < 20 || &head[..4] != b"\x7fELF" {
            return Elf::NotElf;
        }
        let le = head[5] == 1;
        let u16at = |o: usize| if le { u16::from_le_bytes([head[o], head[o + 1]]) } else { u16::from_be_bytes([head[o], head[o + 1]]) };
        let (etype, machine) = (u16at(16), u16at(18));
        if etype != 2 && etype != 3 {
            return Elf::NotExecutable;
        }
        Arch::from_elf_machine(machine).map(Elf::Executable).unwrap_or(Elf::OtherMachine(machine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_across_uname_elf_and_kubernetes() {
        for a in Arch::ALL {
            assert_eq!(Arch::from_uname(a.goarch()), Some(*a));
            assert_eq!(Arch::from_elf_machine(a.elf_machine()), Some(*a));
        }
        assert_eq!(Arch::from_uname("aarch64").map(Arch::platform).as_deref(), Some("linux/arm64"));
        assert_eq!(Arch::from_uname("x86_64").map(|a| a.to_string()).as_deref(), Some("linux/amd64"));
        assert_eq!(Arch::from_uname("mips"), None);
        // The first 20 bytes of an arm64 and an amd64 kube-scheduler.
        let arm64 = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00";
        let amd64 = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00";
        assert_eq!((Elf::of(arm64), Elf::of(amd64)), (Elf::Executable(Arch::Arm64), Elf::Executable(Arch::Amd64)));
        assert_eq!(Elf::of(b"#!/bin/sh\n"), Elf::NotElf);
        assert_eq!(Elf::of(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\xb7\x00"), Elf::NotExecutable);
        assert_eq!(Elf::of(b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00"), Elf::OtherMachine(8));
    }
}
