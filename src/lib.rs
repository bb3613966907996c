//! ossmount: mount an Alibaba Cloud OSS bucket (or a prefix of it) as a FUSE filesystem.
//!
//! Layers, top to bottom (imports point down only): `fuse` → `fs` → `cache` → `prefetch` →
//! `client` → `auth` → `retry`/`object`. `mount` is the composition root.

pub mod auth;
pub mod cache;
pub mod cli;
pub mod client;
pub mod config;
pub mod crc64;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod mount;
pub mod object;
pub mod prefetch;
pub mod retry;
