//! config → one validated plan. `vipd check-config`, `vipd run` and a reload build the
//! desired state of every owner (VRRP runtime and tracker, health checkers and load
//! balancer, mailer, process settings) with [`build`], by pure code: the host is read
//! (interfaces, users, files the configuration names) but nothing is created or
//! changed. So every refusal `run` or a reload would meet, `check-config` reports
//! first, at its `file:line:col`, and a reload whose plan fails changes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vipd_config::{Config, Diagnostic, Severity};
use vipd_linux::mail::MailSettings;

/// What the owners are started or reloaded with.
#[derive(Debug)]
pub struct DaemonPlan {
    /// The VRRP runtime's and the tracker's part.
    pub vrrp: vipd_linux::plan::Plan,
    /// Where alert mails go (`None`: nowhere).
    pub mail: Option<MailSettings>,
    /// `umask`, parsed.
    pub umask: Option<u32>,
}

/// Every owner's plan for `config` (loaded from `file`), or every reason it cannot run.
/// The load balancer's table and the checkers are validated here as the balancer
/// builds them; it builds them again when it starts, with its backend's default
/// scheduler.
pub fn build(file: &Path, config: &Config) -> Result<DaemonPlan, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let whole_file = |message: String| Diagnostic::file_error(message, file.to_path_buf());
    let vrrp = vipd_linux::plan::build(config)
        .map_err(|e| {
            let message = format!("{:#}", e.error);
            errors.push(match e.span {
                Some(span) => Diagnostic::new(Severity::Error, message, span, 1),
                None => whole_file(message),
            })
        })
        .ok();
    let mail = MailSettings::from_config(&config.global)
        .map_err(|e| errors.push(whole_file(e)))
        .ok()
        .flatten();
    let umask = match &config.global.umask {
        Some(text) => vipd_exec::tuning::parse_umask(text)
            .map_err(|e| errors.push(whole_file(e)))
            .ok(),
        None => None,
    };
    errors.extend(checker_errors(config));
    if let Err(errs) = vipd_lb::desired::Lb::new(
        &config.virtual_servers,
        &config.virtual_server_groups,
        vipd_lb::Sched::Wlc,
        |_, _| true,
    ) {
        errors.extend(
            errs.into_iter()
                .map(|e| Diagnostic::new(Severity::Error, e.message, e.span, 1)),
        );
    }
    attach_snippets(&mut errors);
    match vrrp {
        Some(vrrp) if errors.is_empty() => Ok(DaemonPlan { vrrp, mail, umask }),
        _ => Err(errors),
    }
}

/// What the checkers would refuse (a checker option they cannot honour, an unreadable
/// `SSL` file, ...), at their lines.
fn checker_errors(config: &Config) -> Vec<Diagnostic> {
    let globals = vipd_check::Globals::from_config(config);
    let Err(errors) = vipd_check::spec::build(&config.virtual_servers, &globals) else {
        return Vec::new();
    };
    errors
        .0
        .into_iter()
        .map(|e| {
            Diagnostic::new(
                Severity::Error,
                format!("`{}`: {}", e.keyword, e.message),
                e.span,
                1,
            )
        })
        .collect()
}

/// Fills in the source line of findings made after loading, for the caret display.
pub fn attach_snippets(diags: &mut [Diagnostic]) {
    let mut cache: HashMap<PathBuf, Vec<String>> = HashMap::new();
    for d in diags {
        if d.span.line == 0 || d.snippet.is_some() {
            continue;
        }
        let lines = cache.entry(d.span.file.clone()).or_insert_with(|| {
            std::fs::read_to_string(&d.span.file)
                .map(|t| t.lines().map(str::to_owned).collect())
                .unwrap_or_default()
        });
        d.snippet = lines.get(d.span.line as usize - 1).cloned();
    }
}
