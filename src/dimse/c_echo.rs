//! C-ECHO SCP (PS3.4 Annex A): always success, answered with the echo's own Message ID.

use super::message::{Command, Response};
use super::status::Status;

pub fn handle(command: &Command) -> Response {
    Response::for_request(command, Status::SUCCESS)
}
