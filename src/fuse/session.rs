//! The FUSE session: `FuseConfig` → `fuser::Config` (mount options, access control, worker
//! threads) and `mount`, which mounts an `OssFs` and serves it from background threads.

use std::path::Path;
use std::sync::Arc;

use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};

use crate::client::ObjectClient;
use crate::config::FuseConfig;
use crate::fs::OssFs;
use crate::fuse::FuseAdapter;

/// The `fuser::Config` for `cfg`. `fsname` is shown as the mount source (`ossmount:bucket/prefix`).
pub fn fuser_config_named(cfg: &FuseConfig, fsname: &str) -> Config {
    let mut options = vec![
        MountOption::FSName(fsname.replace(',', "_")),
        MountOption::Subtype("ossmount".to_string()),
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    options.push(if cfg.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    if cfg.default_permissions {
        options.push(MountOption::DefaultPermissions);
    }
    let acl = if cfg.allow_other {
        SessionACL::All
    } else if cfg.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    // fuser refuses auto_unmount with the owner-only ACL (fusermount needs allow_other/root).
    if cfg.auto_unmount && acl != SessionACL::Owner {
        options.push(MountOption::AutoUnmount);
    }
    for extra in &cfg.extra_options {
        if !extra.is_empty() && !extra.contains(',') {
            options.push(MountOption::CUSTOM(extra.clone()));
        }
    }
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = acl;
    config.n_threads = Some(cfg.threads.max(1));
    config.clone_fd = cfg!(target_os = "linux");
    config
}

/// The `fuser::Config` for `cfg` with a generic source name.
pub fn fuser_config(cfg: &FuseConfig) -> Config {
    fuser_config_named(cfg, "ossmount")
}

/// The mount source name for a bucket and prefix: `ossmount:bucket/prefix`.
pub fn fsname(bucket: &str, prefix: &str) -> String {
    format!("ossmount:{bucket}/{prefix}")
}

/// Mount `fs` at `mountpoint` and serve it from background threads. `rt` must belong to a
/// multi-thread runtime. The mount is live when this returns; dropping (or
/// `umount_and_join`-ing) the session unmounts it, and `OssFs::shutdown` runs when it ends.
pub fn mount<C: ObjectClient>(
    fs: Arc<OssFs<C>>,
    rt: tokio::runtime::Handle,
    mountpoint: &Path,
    cfg: &FuseConfig,
    fsname: &str,
) -> std::io::Result<BackgroundSession> {
    let config = fuser_config_named(cfg, fsname);
    let adapter = FuseAdapter::new(fs, rt);
    let notifier = adapter.notifier_slot();
    let session = Session::new(adapter, mountpoint, &config)?;
    let _ = notifier.set(session.notifier());
    session.spawn()
}

/// Unmount `mountpoint` and wait for the session (and `OssFs::shutdown`) to finish. Works
/// whether or not the mount was made with `auto_unmount` (fuser's own `umount_and_join` only
/// closes the auto-unmount socket and can wait forever): a lazy `umount2(MNT_DETACH)` when we
/// may (root), else `fusermount3 -u -z`.
pub fn unmount(session: BackgroundSession, mountpoint: &Path) -> std::io::Result<()> {
    let detached = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
    if let Err(errno) = detached {
        if errno != nix::errno::Errno::EINVAL {
            // EPERM (not root) and the like: the setuid helper can do it.
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(mountpoint)
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other(format!(
                    "fusermount3 -u -z {} failed: {status}",
                    mountpoint.display()
                )));
            }
        }
        // EINVAL: not mounted (any more); the session is ending on its own.
    }
    session.join()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_config() {
        let cfg = FuseConfig {
            read_only: true,
            allow_other: true,
            auto_unmount: true,
            threads: 4,
            ..Default::default()
        };
        let c = fuser_config_named(&cfg, "ossmount:b/p/");
        assert!(c.mount_options.contains(&MountOption::RO));
        assert!(c.mount_options.contains(&MountOption::AutoUnmount));
        assert!(c.mount_options.contains(&MountOption::FSName("ossmount:b/p/".into())));
        assert_eq!(c.acl, SessionACL::All);
        assert_eq!(c.n_threads, Some(4));
        let c = fuser_config(&FuseConfig {
            allow_root: true,
            default_permissions: true,
            ..Default::default()
        });
        assert_eq!(c.acl, SessionACL::RootAndOwner);
        assert!(c.mount_options.contains(&MountOption::RW));
        assert!(c.mount_options.contains(&MountOption::DefaultPermissions));
        let c = fuser_config(&FuseConfig {
            auto_unmount: true,
            ..Default::default()
        });
        assert!(!c.mount_options.contains(&MountOption::AutoUnmount));
    }
}
