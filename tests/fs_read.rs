//! Read paths of `OssFs` over `MockClient`, without FUSE: what a read hands back for the
//! kernel's page cache (the bytes around a random read) and when it must hand back nothing.

mod fs_support;

use fs_support::*;
use ossmount::cache::BLOCK_SIZE_BYTES;
use ossmount::client::mock::{MockObject, MockOp, ramp_bytes};

const MIB: u64 = 1024 * 1024;

fn fill_map(fill: &ossmount::fs::PageFill) -> Vec<(u64, u64)> {
    fill.ranges.iter().map(|(o, b)| (*o, b.len() as u64)).collect()
}

#[tokio::test]
async fn a_random_read_offers_the_rest_of_its_block_for_the_page_cache() {
    let m = mock();
    let data = ramp_bytes(3, (4 * MIB) as usize);
    m.add_object("big", MockObject::from_bytes(data.clone()));
    let fs = new_fs(m.clone(), "");
    let ino = lookup_ino(&fs, ROOT, "big").await.unwrap();
    let o = fs.open(ino, libc::O_RDONLY).await.unwrap();

    // A 4 KiB read in the middle of block 2: the answer is exactly the 4 KiB, and the rest of
    // block 2 (before and after) is offered, byte-identical to the object.
    let at = 2 * MIB + 12_288;
    let r = fs.read_for_kernel(ino, o.fh, at, 4096).await.unwrap();
    assert_eq!(&r.data[..], &data[at as usize..at as usize + 4096]);
    let fill = r.page_fill.expect("random read offers its block");
    assert_eq!(fill.ino, ino);
    assert_eq!(fill_map(&fill), [(2 * MIB, 12_288), (at + 4096, 3 * MIB - at - 4096)]);
    for (off, bytes) in &fill.ranges {
        assert_eq!(&bytes[..], &data[*off as usize..*off as usize + bytes.len()]);
    }
    assert_eq!(fill.len() + 4096, BLOCK_SIZE_BYTES);
    // One GET of one block, nothing more.
    assert_eq!(m.op_count(MockOp::GetObject), 1);

    // The fill is pushed while the file is unchanged and nobody writes it.
    let mut pushed = false;
    assert!(fs.fill_page_cache(&fill, || pushed = true));
    assert!(pushed);
    fs.release(ino, o.fh).await.unwrap();
}

#[tokio::test]
async fn sequential_and_large_reads_offer_nothing() {
    let m = mock();
    m.add_object("big", MockObject::from_bytes(ramp_bytes(1, (4 * MIB) as usize)));
    let fs = new_fs(m.clone(), "");
    let ino = lookup_ino(&fs, ROOT, "big").await.unwrap();
    let o = fs.open(ino, libc::O_RDONLY).await.unwrap();
    // The kernel's read-ahead: large requests in order.
    let mut off = 0;
    while off < 4 * MIB {
        let r = fs.read_for_kernel(ino, o.fh, off, 128 * 1024).await.unwrap();
        if off == 0 {
            // A first read is not known to be sequential yet: its block is offered.
            assert!(r.page_fill.is_some());
        } else {
            assert!(r.page_fill.is_none(), "sequential read at {off} offered page fill");
        }
        off += 128 * 1024;
    }
    // A large read at a random place is kernel read-ahead too: nothing offered.
    let r = fs.read_for_kernel(ino, o.fh, MIB + 4096, 512 * 1024).await.unwrap();
    assert!(r.page_fill.is_none());
    fs.release(ino, o.fh).await.unwrap();
}

#[tokio::test]
async fn files_written_in_this_mount_never_get_page_fill() {
    let m = mock();
    m.add_object("f", MockObject::from_bytes(ramp_bytes(5, (3 * MIB) as usize)));
    let fs = new_fs(m.clone(), "");
    let ino = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let reader = fs.open(ino, libc::O_RDONLY).await.unwrap();
    let r = fs.read_for_kernel(ino, reader.fh, MIB + 8192, 4096).await.unwrap();
    let stale = r.page_fill.expect("offered before any write");

    // A writer comes: the fill taken before must not be pushed any more (the kernel may hold
    // the writer's newer bytes), and reads while it writes offer nothing.
    let w = fs.open(ino, libc::O_WRONLY).await.unwrap();
    assert!(!fs.fill_page_cache(&stale, || panic!("pushed over a writer")));
    fs.write(ino, w.fh, MIB + 8192, b"new bytes").await.unwrap();
    let r = fs.read_for_kernel(ino, reader.fh, 2 * MIB + 4096, 4096).await.unwrap();
    assert!(r.page_fill.is_none());
    fs.release(ino, w.fh).await.unwrap();

    // After the upload the file is still excluded for the rest of the mount (mmap'ed pages of a
    // closed writer may be newer than any object).
    let r = fs.read_for_kernel(ino, reader.fh, 4096, 4096).await.unwrap();
    if let Some(fill) = r.page_fill {
        assert!(!fs.fill_page_cache(&fill, || panic!("pushed for a written file")));
    }
    fs.release(ino, reader.fh).await.unwrap();
}

#[tokio::test]
async fn a_fill_for_a_replaced_version_is_not_pushed() {
    let m = mock();
    m.add_object("f", MockObject::from_bytes(ramp_bytes(7, (2 * MIB) as usize)));
    // Attributes are revalidated at every open.
    let mut cfg = config("");
    cfg.metadata_ttl = Some(std::time::Duration::ZERO);
    let fs = ossmount::fs::OssFs::new(m.clone(), cfg).unwrap();
    let ino = lookup_ino(&fs, ROOT, "f").await.unwrap();
    let o = fs.open(ino, libc::O_RDONLY).await.unwrap();
    let fill = fs
        .read_for_kernel(ino, o.fh, MIB + 4096, 4096)
        .await
        .unwrap()
        .page_fill
        .expect("offered");
    fs.release(ino, o.fh).await.unwrap();
    // Someone else replaces the object; the next open sees the new ETag.
    m.add_object("f", MockObject::from_bytes(ramp_bytes(8, (2 * MIB) as usize)));
    let o = fs.open(ino, libc::O_RDONLY).await.unwrap();
    assert!(!fs.fill_page_cache(&fill, || panic!("pushed bytes of the old version")));
    fs.release(ino, o.fh).await.unwrap();
}
