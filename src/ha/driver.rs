//! The VM driver: how the monitor powers a namenode VM off and starts it on another host.
//! Command templates (`[ha.driver]`), run with `/bin/sh -c` and a timeout: libvirt (`virsh`),
//! OpenNebula (`onevm`) or the operator's own (the tests' driver commands our MiniDFSCluster
//! launcher through `tests/integration/launcher_ctl.py`). Substituted values are shell-quoted,
//! so a VM or host name can never become shell syntax.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::failover::Outcome;
use crate::config::ha::DriverTemplates;

/// What one driver command is about (the template variables).
#[derive(Debug, Clone)]
pub struct VmTarget<'a> {
    pub site: &'a str,
    pub vm: &'a str,
    /// Where the VM is believed to run.
    pub host: &'a str,
    /// Restart target (empty for a power-off).
    pub on_host: &'a str,
}

#[derive(Debug, Clone)]
pub struct VmDriver {
    templates: DriverTemplates,
}

impl VmDriver {
    pub fn new(templates: DriverTemplates) -> VmDriver {
        VmDriver { templates }
    }

    /// Powers the VM off; `Ok` only when the command says it is off (exit 0).
    pub async fn power_off(&self, target: &VmTarget<'_>, timeout: Duration) -> Outcome {
        run(&expand(&self.templates.power_off, target), timeout).await
    }

    /// Stops the VM if it still runs and starts it on `target.on_host`.
    pub async fn restart(&self, target: &VmTarget<'_>, timeout: Duration) -> Outcome {
        run(&expand(&self.templates.restart, target), timeout).await
    }
}

/// The template with `{vm}`, `{host}`, `{on_host}`, `{site}` replaced by shell-quoted values.
pub fn expand(template: &str, t: &VmTarget<'_>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let v = match &after[..close] {
                "vm" => t.vm,
                "host" => t.host,
                "on_host" => t.on_host,
                "site" => t.site,
                _ => return None,
            };
            Some((v, close))
        });
        match value {
            Some((v, close)) => {
                out.push_str(&shell_quote(v));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

async fn run(command: &str, timeout: Duration) -> Outcome {
    let child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Failed {
                error: format!("cannot run /bin/sh: {e}"),
            };
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Outcome::TimedOut,
        Ok(Err(e)) => Outcome::Failed {
            error: format!("driver command: {e}"),
        },
        Ok(Ok(out)) if out.status.success() => Outcome::Ok,
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let said = stderr
                .lines()
                .chain(stdout.lines())
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .chars()
                .take(300)
                .collect::<String>();
            Outcome::Failed {
                error: format!("driver command exited with {}: {said}", out.status),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> VmTarget<'static> {
        VmTarget {
            site: "east",
            vm: "nn0",
            host: "host a",
            on_host: "hostC",
        }
    }

    #[test]
    fn templates_are_expanded_with_quoted_values() {
        assert_eq!(
            expand(
                "virsh -c qemu+ssh://{host}/system start {vm} {x} {",
                &target()
            ),
            "virsh -c qemu+ssh://'host a'/system start nn0 {x} {"
        );
        let evil = VmTarget {
            vm: "a'; rm -rf /; '",
            ..target()
        };
        assert_eq!(
            expand("echo {vm}", &evil),
            r#"echo 'a'\''; rm -rf /; '\'''"#
        );
    }

    #[tokio::test]
    async fn outcomes_of_commands() {
        let t = Duration::from_secs(5);
        assert_eq!(run("exit 0", t).await, Outcome::Ok);
        match run("echo nope >&2; exit 3", t).await {
            Outcome::Failed { error } => assert!(error.ends_with(": nope"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run("sleep 5", Duration::from_millis(100)).await,
            Outcome::TimedOut
        );
    }
}
