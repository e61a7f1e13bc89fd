//! `vipd gen` (hidden): man pages and shell completions from the clap definition, for
//! packaging (`packaging/build-deb.sh`). Generated from [`crate::Cli`], so they never
//! drift from `vipd --help`.

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Subcommand};
use clap_complete::Shell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct GenArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand, Debug)]
enum What {
    /// Write vipd.1 and one page per subcommand (vipd-run.1, …) into DIR.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
    /// Write the completion script for SHELL into DIR (vipd.bash, _vipd, vipd.fish, …).
    Completions {
        shell: Shell,
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

pub fn run(args: GenArgs) -> Result<ExitCode> {
    match args.what {
        What::Man { dir } => {
            for page in man_pages(&dir)? {
                println!("{}", page.display());
            }
        }
        What::Completions { shell, dir } => {
            create_dir(&dir)?;
            let mut cmd = crate::Cli::command();
            let path = clap_complete::generate_to(shell, &mut cmd, "vipd", &dir)
                .with_context(|| format!("writing {shell} completions to {}", dir.display()))?;
            println!("{}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Extra sections of vipd.1, in roff. Keep to what the daemon does today.
const VIPD_1_EXTRA: &str = r#".SH "KEEPALIVED COMPATIBILITY"
vipd reads keepalived.conf(5) as keepalived 2.2.7 does and speaks VRRP (RFC 3768 v2, RFC 5798/9568 v3) with keepalived on the wire.
Unknown keywords are errors rather than warnings; keepalived features vipd does not act on yet are reported by \fBvipd check\-config\fR.
\fBvipd \-t \-f\fR \fIFILE\fR is the keepalived spelling of \fBvipd check\-config \-f\fR \fIFILE\fR.
The intentional differences are listed in /usr/share/doc/vipd/keepalived\-differences.md.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Leave: a master sends a priority\-0 advertisement, keeps its addresses for one more advertisement interval (make\-before\-break) so the best backup takes over, then removes them; the daemon exits 0.
.TP
\fBSIGHUP\fR
Reload the configuration, as \fBvipd reload\fR does: the whole file is read and validated first, and an invalid file changes nothing.
.SH FILES
.TP
\fI/etc/keepalived/keepalived.conf\fR
Default configuration file (\fB\-f\fR).
.TP
\fI/run/vipd/vipd.sock\fR
Control socket (mode 0600) read by \fBvipd status\fR (\fB\-\-control\-socket\fR).
.TP
\fI/run/vipd/vipd.pid\fR
Pid file; refuses a second daemon on the same path (\fB\-\-pid\-file\fR).
.TP
\fI/lib/systemd/system/vipd.service\fR
systemd unit.
.TP
\fI/usr/share/doc/vipd/\fR
User guide, keepalived differences and example configurations.
.SH ENVIRONMENT
.TP
\fBVIPD_LOG\fR
Log filter in tracing\-subscriber EnvFilter syntax (default \fBinfo\fR; e.g. \fBdebug\fR).
.SH "EXIT STATUS"
0 on success (for \fBcheck\-config\fR: the configuration is valid, warnings allowed), 1 on errors, 2 on a usage error.
.SH "SEE ALSO"
keepalived.conf(5), keepalived(8), systemd.service(5)
"#;

/// Writes vipd.1 (with the extra sections above) and a page per visible subcommand,
/// recursively (vipd-run.1, vipd-bench-failover.1, …). Returns the paths written.
pub fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    let mut cmd = crate::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let version = env!("CARGO_PKG_VERSION");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_subcommand_pages(sub.clone(), version, dir, &mut written)?;
    }

    let man = clap_mangen::Man::new(cmd).source(format!("vipd {version}"));
    // Each render_* call writes roff's apostrophe preamble; keep only the first.
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    type Section = fn(&clap_mangen::Man, &mut dyn Write) -> std::io::Result<()>;
    let sections: [Section; 5] = [
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
        clap_mangen::Man::render_subcommands_section,
    ];
    for section in sections {
        append_without_preamble(&mut page, |w| section(&man, w))?;
    }
    page.write_all(VIPD_1_EXTRA.as_bytes())?;
    append_without_preamble(&mut page, |w| man.render_version_section(w))?;
    let path = dir.join(man.get_filename());
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(written)
}

fn append_without_preamble(
    page: &mut Vec<u8>,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut part = Vec::new();
    render(&mut part)?;
    let text = String::from_utf8_lossy(&part);
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with(".ie \\n(.g .ds Aq") && !l.starts_with(".el .ds Aq"))
        .flat_map(|l| [l, "\n"])
        .collect();
    page.write_all(body.as_bytes())
}

fn write_subcommand_pages(
    cmd: clap::Command,
    version: &'static str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_subcommand_pages(sub.clone(), version, dir, written)?;
    }
    let cmd = cmd.version(version);
    let man = clap_mangen::Man::new(cmd).source(format!("vipd {version}"));
    let mut page = Vec::new();
    man.render(&mut page)?;
    page.write_all(b".SH \"SEE ALSO\"\nvipd(1)\n")?;
    let path = dir.join(man.get_filename());
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(())
}
