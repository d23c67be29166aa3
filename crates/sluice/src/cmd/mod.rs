//! One module per subcommand.

pub mod accounts;
pub mod assets;
pub mod audit;
pub mod client;
pub mod cvss;
pub mod findings;
pub mod scan;
pub mod server;
pub mod window;
