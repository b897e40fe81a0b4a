pub mod access;
pub mod cluster;
pub mod dev;
pub mod policy;
pub mod server;
pub mod token;
