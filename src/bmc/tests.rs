//! Client against simulator tests.
