//! Well-known names.
