//! Issue 18: the habits people bring from docker, kubectl and pueue, each driven through the
//! real binary against a real daemon.

mod addresses;
mod handles;
mod help;
mod many;
mod openapi;
mod proxy;
mod restart;
mod time;
mod top;
