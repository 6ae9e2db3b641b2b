//! Step 08's tables: what a guest OS sets up for itself before long mode, here done
//! for it by the host (a GDT and identity-mapped page tables), with readable dumps.

/// Page-table entry bits (the same in every level of x86-64 paging).
pub mod pte {
    /// The entry is valid: without it the CPU raises a page fault.
    pub const PRESENT: u64 = 1 << 0;
    /// Writes are allowed.
    pub const WRITABLE: u64 = 1 << 1;
    /// In a page directory: the entry maps a 2 MiB page itself, no page table below.
    pub const HUGE: u64 = 1 << 7;
}

/// Two MiB: what one page-directory entry with [`pte::HUGE`] maps.
pub const MIB2: u64 = 2 << 20;

// ANCHOR: page_tables
/// Page tables that identity-map the first GiB (guest virtual address X is guest
/// physical address X) with 2 MiB pages, for a PML4 at `base`: three 4 KiB tables,
/// PML4 at `base`, PDPT at `base + 0x1000`, PD at `base + 0x2000`. Returns their
/// bytes, to be copied to `base` in guest memory; CR3 = `base`.
pub fn identity_page_tables(base: u64) -> Vec<u8> {
    let (pdpt, pd) = (base + 0x1000, base + 0x2000);
    let mut entries = vec![0u64; 3 * 512];
    entries[0] = pdpt | pte::PRESENT | pte::WRITABLE; // PML4[0]: the first 512 GiB
    entries[512] = pd | pte::PRESENT | pte::WRITABLE; // PDPT[0]: the first GiB
    let huge_page = pte::PRESENT | pte::WRITABLE | pte::HUGE;
    for i in 0..512 {
        // PD[i]: the 2 MiB page at i * 2 MiB
        entries[1024 + i] = (i as u64 * MIB2) | huge_page;
    }
    entries.iter().flat_map(|e| e.to_le_bytes()).collect()
}
// ANCHOR_END: page_tables

/// A readable dump of page tables built by [`identity_page_tables`]: every entry
/// that is not zero, its address and value, and what it says. A long run of PD
/// entries that each map the next 2 MiB is shortened.
pub fn describe_page_tables(base: u64, bytes: &[u8]) -> String {
    let names = ["PML4", "PDPT", "PD"];
    let mut out = String::new();
    for (t, table) in bytes.chunks(4096).enumerate() {
        let at = base + t as u64 * 0x1000;
        out += &format!("{} at {at:#x}\n", names.get(t).unwrap_or(&"table"));
        let entries: Vec<u64> = table
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        let mut skipped = 0;
        for (i, &e) in entries.iter().enumerate() {
            if e == 0 {
                continue;
            }
            let in_run = i > 1
                && i + 1 < entries.len()
                && e.wrapping_sub(entries[i - 1]) == MIB2
                && entries[i + 1].wrapping_sub(e) == MIB2;
            if in_run && e & pte::HUGE != 0 {
                skipped += 1;
                continue;
            }
            if skipped > 0 {
                out += &format!(
                    "  ... [{}] to [{}]: the same, each 2 MiB further\n",
                    i - skipped,
                    i - 1
                );
                skipped = 0;
            }
            let addr = e & 0x000f_ffff_ffff_f000;
            let mut flags = vec![];
            for (bit, name) in [
                (pte::PRESENT, "present"),
                (pte::WRITABLE, "writable"),
                (pte::HUGE, "huge"),
            ] {
                if e & bit != 0 {
                    flags.push(name);
                }
            }
            let what = if e & pte::HUGE != 0 {
                format!("the 2 MiB page at {addr:#x}")
            } else {
                format!("the table at {addr:#x}")
            };
            out += &format!(
                "  {:#06x} [{i:>3}] {e:#018x}  {what} ({})\n",
                at + i as u64 * 8,
                flags.join(", ")
            );
        }
    }
    out
}

// ANCHOR: gdt
/// The GDT's selectors: a selector is the entry's byte offset in the table.
pub const CODE_SELECTOR: u16 = 0x08;
pub const DATA_SELECTOR: u16 = 0x10;

/// A flat 64-bit GDT: the null descriptor, a code segment, a data segment. In long
/// mode base and limit are ignored; what matters are the flag bits.
pub const GDT: [u64; 3] = [
    0,
    // code: type 0xb (execute/read, accessed), S=1, DPL=0, P=1, L=1 (64-bit),
    // D=0, G=1
    0x00af_9b00_0000_ffff,
    // data: type 0x3 (read/write, accessed), S=1, DPL=0, P=1, D/B=1, G=1
    0x00cf_9300_0000_ffff,
];
// ANCHOR_END: gdt

/// The GDT's bytes, to copy into guest memory.
pub fn gdt_bytes() -> Vec<u8> {
    GDT.iter().flat_map(|d| d.to_le_bytes()).collect()
}

/// A readable dump of a GDT: each descriptor's address, value and fields, in the
/// names `kvm_segment` uses for them.
pub fn describe_gdt(base: u64, bytes: &[u8]) -> String {
    let mut out = format!("GDT at {base:#x}, limit {:#x}\n", bytes.len() - 1);
    for (i, raw) in bytes.chunks_exact(8).enumerate() {
        let d = u64::from_le_bytes(raw.try_into().unwrap_or_default());
        let at = base + i as u64 * 8;
        if d == 0 {
            out += &format!("  {at:#06x} sel {:#04x} {d:#018x}  null\n", i * 8);
            continue;
        }
        let limit = (d & 0xffff) | ((d >> 48) & 0xf) << 16;
        let seg_base = ((d >> 16) & 0xff_ffff) | ((d >> 56) & 0xff) << 24;
        let bit = |n: u32| (d >> n) & 1;
        let type_ = (d >> 40) & 0xf;
        let kind = if type_ & 0x8 != 0 { "code" } else { "data" };
        out += &format!(
            "  {at:#06x} sel {:#04x} {d:#018x}  {kind}: base {seg_base:#x} limit {limit:#x} type {type_:#x} s {} dpl {} present {} l {} db {} g {}\n",
            i * 8,
            bit(44),
            (d >> 45) & 3,
            bit(47),
            bit(53),
            bit(54),
            bit(55),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tables() {
        let bytes = identity_page_tables(0x2000);
        assert_eq!(bytes.len(), 3 * 4096);
        // The dump below shortens the page directory: check every entry here.
        let entry = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        for i in 0..512 {
            assert_eq!(entry(1024 + i), (i as u64 * MIB2) | 0x83, "PD[{i}]");
        }
        insta::assert_snapshot!("page_tables", describe_page_tables(0x2000, &bytes));
    }

    #[test]
    fn gdt() {
        insta::assert_snapshot!("gdt", describe_gdt(0x1000, &gdt_bytes()));
    }
}
