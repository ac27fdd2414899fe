//! The device allow-list every container gets (Docker's defaults), written
//! as cgroup v1 `devices.allow` rules or compiled into the eBPF program that
//! cgroup v2 uses instead (`BPF_PROG_TYPE_CGROUP_DEVICE`).

use std::fs::File;
use std::io;
use std::path::Path;

use crate::sys::bpf::{self, Insn};

/// One allow rule: device type, major, minor (`None` = any) and access.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `'c'` or `'b'`.
    pub kind: char,
    /// Major number, or any.
    pub major: Option<u32>,
    /// Minor number, or any.
    pub minor: Option<u32>,
    /// Subset of `"rwm"`.
    pub access: &'static str,
}

const fn rule(kind: char, major: Option<u32>, minor: Option<u32>, access: &'static str) -> Rule {
    Rule {
        kind,
        major,
        minor,
        access,
    }
}

/// The nodes of the container's `/dev`, pseudo-terminals, and `mknod` of
/// anything (creating a node is harmless when it cannot be opened).
pub const ALLOWED: [Rule; 11] = [
    rule('c', None, None, "m"),
    rule('b', None, None, "m"),
    rule('c', Some(1), Some(3), "rwm"),
    rule('c', Some(1), Some(5), "rwm"),
    rule('c', Some(1), Some(7), "rwm"),
    rule('c', Some(1), Some(8), "rwm"),
    rule('c', Some(1), Some(9), "rwm"),
    rule('c', Some(5), Some(0), "rwm"),
    rule('c', Some(5), Some(1), "rwm"),
    rule('c', Some(5), Some(2), "rwm"),
    rule('c', Some(136), None, "rwm"),
];

impl Rule {
    /// The rule in cgroup v1 `devices.allow` syntax (`c 1:3 rwm`).
    pub fn v1(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_owned(), |n| n.to_string());
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }

    fn access_bits(&self) -> i32 {
        self.access.chars().fold(0, |bits, c| {
            bits | match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            }
        })
    }
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_MEM_W: u8 = 0x61;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

/// The device program: 1 (allow) if a rule matches, else 0.
fn program(rules: &[Rule]) -> Vec<Insn> {
    // r2 = device type, r3 = access bits, r4 = major, r5 = minor
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for r in rules {
        // Each check jumps past the end of this rule's block when it fails.
        let mut block: Vec<(Insn, bool)> = Vec::new();
        let kind = if r.kind == 'b' { 1 } else { 2 };
        block.push((insn(JMP_JNE_K, 2, 0, 0, kind), true));
        block.push((insn(ALU64_MOV_X, 1, 3, 0, 0), false));
        block.push((insn(ALU64_AND_K, 1, 0, 0, !r.access_bits() & 0b111), false));
        block.push((insn(JMP_JNE_K, 1, 0, 0, 0), true));
        if let Some(major) = r.major {
            block.push((insn(JMP_JNE_K, 4, 0, 0, major as i32), true));
        }
        if let Some(minor) = r.minor {
            block.push((insn(JMP_JNE_K, 5, 0, 0, minor as i32), true));
        }
        block.push((insn(ALU64_MOV_K, 0, 0, 0, 1), false));
        block.push((insn(JMP_EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
    }
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

/// Loads the device program for `rules` and attaches it to the cgroup v2
/// directory `dir`. The cgroup keeps it until the cgroup is removed.
pub fn attach_filter(dir: &Path, rules: &[Rule]) -> io::Result<()> {
    let prog = bpf::load_cgroup_device(&program(rules), c"Apache-2.0")?;
    let cgroup = File::open(dir)?;
    bpf::attach_cgroup_device(&prog, &cgroup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn v1_syntax() {
        assert_eq!(ALLOWED[0].v1(), "c *:* m");
        assert_eq!(ALLOWED[2].v1(), "c 1:3 rwm");
        assert_eq!(ALLOWED[10].v1(), "c 136:* rwm");
    }

    /// Runs on any host with a cgroup2 mount (unified, or hybrid's
    /// `/sys/fs/cgroup/unified`), as root.
    #[test]
    fn bpf_filter_denies_devices_outside_the_list() {
        let mount = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|m| m.join("cgroup.procs").exists() && m.join("cgroup.threads").exists())
            .expect("a cgroup2 mount");
        let dir = mount.join(format!("strata-devtest-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        struct Remove<'a>(&'a Path);
        impl Drop for Remove<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(self.0);
            }
        }
        let _cleanup = Remove(&dir);
        attach_filter(&dir, &ALLOWED).unwrap();
        // A shell joins the cgroup, then opens an allowed and a denied device
        // (reading /dev/kmsg is harmless; the filter refuses it).
        let script = format!(
            "echo $$ > {}/cgroup.procs; exec 3</dev/null && echo null-ok; exec 4</dev/kmsg && echo kmsg-ok; true",
            dir.display()
        );
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "null-ok\n");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
