pub mod access;
pub mod policy;
pub mod server;
