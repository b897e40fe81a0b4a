pub mod access;
pub mod dev;
pub mod policy;
pub mod server;
