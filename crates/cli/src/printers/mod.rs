//! Output formats shared by the commands: Go's tabwriter (which defines kubectl's alignment), the
//! Table printer of `get`, kubectl-style YAML, and the describers of `describe`.

pub mod describe;
pub mod table;
pub mod tabwriter;
pub mod yaml;
