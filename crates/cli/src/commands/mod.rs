pub mod access;
pub mod adapter;
pub mod cluster;
pub mod dev;
pub mod policy;
pub mod sentinel;
pub mod server;
pub mod token;
