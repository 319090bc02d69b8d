//! `Pack` and `Unpack` (the compile cache's transport) through the agent's request handler:
//! a build survives the round trip with its modes, times and links, under the new box's owner;
//! what could reach outside the tree, special files and oversized builds are refused.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use demoter::agent::Agent;
use demoter::protocol::{Request, Response};

fn agent(tmp: &Path) -> Agent {
    let cgroup = tmp.join("cgroup");
    fs::create_dir(&cgroup).unwrap();
    fs::write(cgroup.join("cgroup.controllers"), "").unwrap();
    fs::write(cgroup.join("cgroup.subtree_control"), "memory pids cpu").unwrap();
    Agent::new(&cgroup, vec![]).unwrap()
}

fn pack(agent: &mut Agent, src: &Path, dst: &Path, max_bytes: u64) -> Response {
    agent.handle(&Request::Pack {
        src: src.to_owned(),
        dst: dst.to_owned(),
        max_bytes,
    })
}

fn unpack(agent: &mut Agent, src: &Path, dst: &Path, uid: u32) -> Response {
    agent.handle(&Request::Unpack {
        src: src.to_owned(),
        dst: dst.to_owned(),
        uid,
        gid: uid,
    })
}

fn failed(response: Response) -> String {
    match response {
        Response::Failed { error } => error,
        other => panic!("expected failed, got {other:?}"),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A build as a compiler leaves it: a binary, a source, a folder of objects, a link inside.
fn build(dir: &Path) -> PathBuf {
    let build = dir.join("build");
    fs::create_dir_all(build.join("obj/deep")).unwrap();
    fs::write(build.join("main"), vec![0x7f; 100_000]).unwrap();
    fs::set_permissions(build.join("main"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(build.join("main.c"), "int main(){}").unwrap();
    fs::set_permissions(build.join("main.c"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(build.join("obj/deep/a.o"), "object").unwrap();
    fs::write(build.join("empty"), "").unwrap();
    symlink("deep/a.o", build.join("obj/link")).unwrap();
    let old = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789);
    fs::File::options()
        .write(true)
        .open(build.join("main.c"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    build
}

#[test]
fn a_build_survives_the_round_trip_owned_by_the_new_box() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = agent(tmp.path());
    let src = build(tmp.path());
    let packed = tmp.path().join("build.pack");
    assert_eq!(pack(&mut agent, &src, &packed, 1 << 20), Response::Ok);
    assert_eq!(
        fs::metadata(&packed).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let uid = if is_root() {
        60123
    } else {
        nix::unistd::getuid().as_raw()
    };
    let dst = tmp.path().join("box/build");
    assert_eq!(unpack(&mut agent, &packed, &dst, uid), Response::Ok);
    for rel in ["main", "main.c", "obj/deep/a.o", "empty"] {
        let (a, b) = (src.join(rel), dst.join(rel));
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "{rel}");
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{rel}");
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "{rel}"
        );
        assert_eq!((mb.uid(), mb.gid()), (uid, uid), "{rel}");
    }
    assert_eq!(
        fs::read_link(dst.join("obj/link")).unwrap(),
        Path::new("deep/a.o")
    );
    assert_eq!(fs::read_to_string(dst.join("obj/link")).unwrap(), "object");
    assert_eq!(fs::metadata(&dst).unwrap().uid(), uid);

    // Into a build directory that already holds something: refused, and what was there stays.
    let busy = tmp.path().join("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("x"), "x").unwrap();
    let error = failed(unpack(&mut agent, &packed, &busy, uid));
    assert!(error.contains("not empty"), "{error}");
    assert!(busy.join("x").exists());
}

#[test]
fn a_build_larger_than_the_cap_is_refused_and_leaves_no_pack() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = agent(tmp.path());
    let src = build(tmp.path());
    let packed = tmp.path().join("build.pack");
    let error = failed(pack(&mut agent, &src, &packed, 50_000));
    assert!(error.contains("larger than"), "{error}");
    assert!(!packed.exists());
}

#[test]
fn links_out_of_the_tree_and_special_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = agent(tmp.path());
    let packed = tmp.path().join("build.pack");

    let out = build(tmp.path());
    symlink("../../secret", out.join("obj/escape")).unwrap();
    let error = failed(pack(&mut agent, &out, &packed, 1 << 20));
    assert!(error.contains("leads out of the tree"), "{error}");
    assert!(!packed.exists());
    fs::remove_file(out.join("obj/escape")).unwrap();
    symlink("/etc/passwd", out.join("abs")).unwrap();
    let error = failed(pack(&mut agent, &out, &packed, 1 << 20));
    assert!(error.contains("leads out of the tree"), "{error}");
    fs::remove_file(out.join("abs")).unwrap();

    nix::unistd::mkfifo(&out.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let error = failed(pack(&mut agent, &out, &packed, 1 << 20));
    assert!(error.contains("a FIFO"), "{error}");
    fs::remove_file(out.join("fifo")).unwrap();

    if is_root() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        mknod(
            &out.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(1, 3),
        )
        .unwrap();
        let error = failed(pack(&mut agent, &out, &packed, 1 << 20));
        assert!(error.contains("a device"), "{error}");
        fs::remove_file(out.join("null")).unwrap();
    }

    // A pack at a link is never written through it.
    let target = tmp.path().join("target");
    fs::write(&target, "keep").unwrap();
    let link = tmp.path().join("link.pack");
    symlink(&target, &link).unwrap();
    failed(pack(&mut agent, &out, &link, 1 << 20));
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");

    // Clean again, it packs.
    assert_eq!(pack(&mut agent, &out, &packed, 1 << 20), Response::Ok);
}

#[test]
fn a_damaged_pack_is_refused_and_leaves_no_half_build() {
    let tmp = tempfile::tempdir().unwrap();
    let mut agent = agent(tmp.path());
    let src = build(tmp.path());
    let packed = tmp.path().join("build.pack");
    assert_eq!(pack(&mut agent, &src, &packed, 1 << 20), Response::Ok);
    let bytes = fs::read(&packed).unwrap();
    let uid = nix::unistd::getuid().as_raw();

    // Cut short: the files before the cut were made, and are removed again.
    let cut = tmp.path().join("cut.pack");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let dst = tmp.path().join("cut-build");
    let error = failed(unpack(&mut agent, &cut, &dst, uid));
    assert!(error.contains("ends"), "{error}");
    assert!(!dst.exists());

    // Not a pack at all.
    let junk = tmp.path().join("junk.pack");
    fs::write(&junk, b"#!/bin/sh\nrm -rf /\n").unwrap();
    let error = failed(unpack(&mut agent, &junk, &dst, uid));
    assert!(error.contains("not a build pack"), "{error}");
    assert!(!dst.exists());

    // A name that climbs out of the root (the record of "empty", renamed "../x"): refused.
    let at = bytes
        .windows(7)
        .position(|w| w == [b'f', 5, 0, b'e', b'm', b'p', b't'])
        .expect("the record of `empty`");
    let mut climbing = bytes.clone();
    climbing[at + 3..at + 8].copy_from_slice(b"../xx");
    let evil = tmp.path().join("evil.pack");
    fs::write(&evil, &climbing).unwrap();
    let error = failed(unpack(&mut agent, &evil, &dst, uid));
    assert!(error.contains("outside the directories"), "{error}");
    assert!(!dst.exists());
    assert!(!tmp.path().join("xx").exists());
}
