//! The fake method: no locking at all, for tests.

use super::{Attempt, Backend, Holder, Stale};
use crate::error::Result;
use crate::lockdir::Entry;
use crate::owner::Stamp;

/// Always acquires at once; never touches the file system.
#[derive(Debug, Default)]
pub struct FakeLock;

impl Backend for FakeLock {
    fn try_acquire(&mut self, _: &Entry, _: &Stamp) -> Result<Attempt> {
        Ok(Attempt::Acquired)
    }
    fn release(&mut self, _: &Entry, _: &str) -> Result<()> {
        Ok(())
    }
    fn check(&self, _: &Entry, _: &str) -> Result<()> {
        Ok(())
    }
    fn refresh(&mut self, _: &Entry, _: &str) -> Result<()> {
        Ok(())
    }
    fn break_stale(&mut self, _: &Entry, _: Holder, _: Stale) -> Result<bool> {
        Ok(true)
    }
    fn abandon(&mut self) {}
    fn peek(&self, _: &Entry) -> Result<Option<Holder>> {
        Ok(None)
    }
}
