//! Filled by its own issue.
#![forbid(unsafe_code)]
