//! Queries for the network layers: the index's query engine run on a blocking thread, its
//! matches streamed through a bounded channel (memory stays bounded however many match, and
//! dropping the receiver stops the search).

use tokio::sync::mpsc;

use super::Archive;
use crate::query::{Match, Query, QueryError};

/// Matches in flight between the search thread and the sender.
const FIND_BUFFER: usize = 64;

impl Archive {
    /// Start a search; matches arrive on the returned channel, an error ends it.
    pub fn find(&self, query: Query) -> mpsc::Receiver<Result<Match, QueryError>> {
        let (tx, rx) = mpsc::channel(FIND_BUFFER);
        let index = self.inner.index.clone();
        tokio::task::spawn_blocking(move || {
            let result = index.find(&query, |m| tx.blocking_send(Ok(m)).is_ok());
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        rx
    }
}
