//! The resources kvol serves.
