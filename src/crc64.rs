//! CRC-64/XZ (`x-oss-hash-crc64ecma`): streaming digest and the combination of two CRCs
//! (needed to verify a completed multipart upload or an append from the parts' CRCs).

use crc::{CRC_64_XZ, Crc};

/// The CRC-64/XZ algorithm OSS uses.
pub const CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);

/// CRC-64 of one buffer.
pub fn checksum(data: &[u8]) -> u64 {
    CRC64.checksum(data)
}
