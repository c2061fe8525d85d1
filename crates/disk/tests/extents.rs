//! A hand-written VMDK descriptor with several extents: requests that cross extent boundaries.

use disk::OpenOptions;

#[test]
fn requests_cross_flat_and_zero_extents() {
    let dir = std::env::temp_dir().join(format!("chr-vmm-extents-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    // Extent 1: 4 sectors of file a at sector offset 2; extent 2: 4 zero sectors; extent 3: 8
    // sectors of file b.
    let a: Vec<u8> = (0..6 * 512).map(|i| (i % 7) as u8 + 1).collect();
    let b: Vec<u8> = (0..8 * 512).map(|i| (i % 11) as u8 + 100).collect();
    std::fs::write(dir.join("a.bin"), &a).expect("a");
    std::fs::write(dir.join("b b.bin"), &b).expect("b");
    let desc = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
                createType=\"monolithicFlat\"\n\nRW 4 FLAT \"a.bin\" 2\nRDONLY 4 ZERO\nRW 8 FLAT \"b b.bin\" 0\n";
    let path = dir.join("disk.vmdk");
    std::fs::write(&path, desc).expect("descriptor");
    let d = disk::open(&path, OpenOptions::default()).expect("open");
    assert_eq!((d.format(), d.size()), ("vmdk", 16 * 512));
    let mut all = vec![0u8; 16 * 512];
    d.read_at(&mut all, 0).expect("read");
    let mut want = a[1024..].to_vec();
    want.extend(vec![0u8; 4 * 512]);
    want.extend(&b);
    assert!(all == want);
    // A write into the read-only zero extent fails; one into two flat pieces lands in both files.
    assert!(d.write_at(&[7u8; 1024], 3 * 512).is_err());
    let mut sector = [0u8; 512];
    d.read_at(&mut sector, 3 * 512).expect("read");
    assert!(sector[..] == a[5 * 512..], "a refused write changed data");
    d.write_at(&[9u8; 512], 3 * 512).expect("write in extent 1");
    d.write_at(&[8u8; 1024], 12 * 512).expect("write in extent 3");
    d.flush().expect("flush");
    drop(d);
    let a2 = std::fs::read(dir.join("a.bin")).expect("a");
    assert_eq!(&a2[5 * 512..6 * 512], &[9u8; 512][..]);
    let b2 = std::fs::read(dir.join("b b.bin")).expect("b");
    assert_eq!(&b2[4 * 512..6 * 512], &[8u8; 1024][..]);
    let _ = std::fs::remove_dir_all(&dir);
}
