//! `mifas stgcmt status`: the open Storage Commitment transactions, one `key: value` line
//! each, a blank line between transactions. Asked of the running server over its admin socket,
//! else read from the index directly.

use std::process::ExitCode;

use super::{CliError, init_logging};
use crate::archive::Archive;
use crate::config::Config;
use crate::index::{CommitmentRecord, ItemOutcome};

pub async fn status(config: Config) -> Result<ExitCode, CliError> {
    init_logging(&config);
    let socket = crate::web::admin_socket::socket_path(&config.storage.data_dir);
    match crate::web::admin_socket::request(
        &socket,
        &crate::web::admin_socket::AdminRequest::StgcmtStatus,
    )
    .await
    {
        Ok(Some(reply)) if reply.ok => {
            print!("{}", text(&reply.commitments));
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Some(reply)) => return Err(CliError::Other(reply.message)),
        Ok(None) => {}
        Err(e) => {
            return Err(CliError::Other(format!(
                "the server at {} does not answer: {e}",
                socket.display()
            )));
        }
    }
    let (archive, _report) = Archive::open(&config).await?;
    let open = archive
        .open_commitments()
        .map_err(|e| CliError::Other(format!("cannot read the index: {e}")))?;
    archive
        .close()
        .await
        .map_err(|e| CliError::Other(format!("index flush failed: {e}")))?;
    print!("{}", text(&open));
    Ok(ExitCode::SUCCESS)
}

/// The status text of `open` transactions now.
fn text(open: &[CommitmentRecord]) -> String {
    render(open, crate::archive::now_ms())
}

/// The status text of `open` transactions at time `now` (ms since the epoch).
pub fn render(open: &[CommitmentRecord], now: u64) -> String {
    let mut out = format!("open: {}\n", open.len());
    for r in open {
        let count = |f: fn(&ItemOutcome) -> bool| r.items.iter().filter(|i| f(&i.outcome)).count();
        let state = if !r.decided {
            "waiting for copies"
        } else if r.attempts == 0 {
            "report due"
        } else {
            "report retrying"
        };
        out.push_str(&format!(
            "\ntransaction: {}\nrequester: {}\nstate: {state}\ninstances: {}\ncommitted: {}\nfailed: {}\nwaiting: {}\nreceived_secs_ago: {}\ndeadline_in_secs: {}\nattempts: {}\n",
            r.transaction_uid,
            r.requester_aet,
            r.items.len(),
            count(|o| *o == ItemOutcome::Committed),
            count(|o| matches!(o, ItemOutcome::Failed(_))),
            count(|o| *o == ItemOutcome::Waiting),
            now.saturating_sub(r.received_at_ms) / 1000,
            r.deadline_ms.saturating_sub(now) / 1000,
            r.attempts,
        ));
        if r.attempts > 0 {
            out.push_str(&format!(
                "next_attempt_in_secs: {}\nlast_error: {}\n",
                r.next_attempt_ms.saturating_sub(now) / 1000,
                r.last_error
            ));
        }
    }
    out
}
