//! drover-supervisor
