pub mod failure;
pub mod format;
pub mod gate;
pub mod io;
pub mod log;
pub mod manifest;
pub mod records;
pub mod recovery;
