//! Integration-style tests of the archive format (filled in below).
