//! Sequential detection and read-ahead (filled in by the prefetcher work).
