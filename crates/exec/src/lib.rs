//! Running external programs and tuning vipd's own process and threads: what the
//! VRRP side (`vipd-linux`) and the health checkers (`vipd-check`) both need, with no
//! knowledge of either.
//!
//! * [`scripts`]: script lines into words, `enable_script_security`, whom a script runs
//!   as (`script_user` / `user`), running with a timeout in a process group of its own,
//!   long-running helpers (`notify_fifo_script`).
//! * [`tuning`]: nice / SCHED_RR per thread, memory locking, the umask.

pub mod scripts;
pub mod tuning;
