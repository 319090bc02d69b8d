//! The demoter: runs one untrusted program under cgroup limits as an unprivileged user and
//! measures what it used. The `protocol` module is shared with the executioner.

pub mod protocol;
