#[allow(dead_code)]
mod auth;
#[allow(dead_code)]
mod error;
#[allow(dead_code)]
mod policy;
#[allow(dead_code)]
mod sts;
#[allow(dead_code)]
mod token;

fn main() {}
