//! One module per subcommand.

pub mod accounts;
pub mod agent;
pub mod agents;
pub mod assets;
pub mod audit;
pub mod change;
pub mod client;
pub mod cvss;
pub mod defer;
pub mod demo;
pub mod findings;
pub mod freeze;
pub mod job;
pub mod rollout;
pub mod scan;
pub mod server;
pub mod window;
