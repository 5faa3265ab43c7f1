//! drover-daemon
