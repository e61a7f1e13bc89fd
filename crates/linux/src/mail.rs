//! Email alerts (`smtp_alert`): keepalived's notification mails to the
//! `notification_email` addresses through `smtp_server`, in plain SMTP (as keepalived:
//! no TLS, no authentication). One background thread sends them in order; callers only
//! queue, so a slow or dead mail server never delays a transition, a check or a reload.
//! A mail that cannot be sent is logged and dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vipd_config::model::GlobalDefs;

/// Mails waiting to go out; past this, new ones are dropped (and counted).
const QUEUE: usize = 256;

/// Where and how mails go (`global_defs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    /// `smtp_helo_name` (default: the host name).
    pub helo: String,
    /// `notification_email_from` (default: `vipd@` the host name).
    pub from: String,
    pub to: Vec<String>,
    /// `smtp_connect_timeout` (default 30 s): connecting, and each reply.
    pub timeout: Duration,
    /// `router_id` (default: the host name), in every subject.
    pub router_id: String,
    /// `no_email_faults`.
    pub no_email_faults: bool,
    /// `smtp_alert_checker`, else `smtp_alert`: the default of `virtual_server` and
    /// `real_server` `smtp_alert` (resolved when mailing, so a reload that changes it
    /// applies at once).
    pub checker_default: Option<bool>,
}

impl MailSettings {
    /// `None` when the file names no `smtp_server` or no `notification_email` (then
    /// nothing is mailed, as in keepalived); an error for an `smtp_server` that does
    /// not parse.
    pub fn from_config(g: &GlobalDefs) -> Result<Option<MailSettings>, String> {
        let Some(server) = &g.smtp_server else {
            return Ok(None);
        };
        if g.notification_email.is_empty() {
            return Ok(None);
        }
        let (host, port) = vipd_config::parse_smtp_server(server)?;
        let hostname = hostname();
        Ok(Some(MailSettings {
            host,
            port,
            helo: g.smtp_helo_name.clone().unwrap_or_else(|| hostname.clone()),
            from: g
                .notification_email_from
                .clone()
                .unwrap_or_else(|| format!("vipd@{hostname}")),
            to: g.notification_email.clone(),
            timeout: Duration::from_secs(g.smtp_connect_timeout.unwrap_or(30).max(1) as u64),
            router_id: g.router_id.clone().unwrap_or(hostname),
            no_email_faults: g.no_email_faults,
            checker_default: g.smtp_alert_checker.or(g.smtp_alert),
        }))
    }
}

/// One mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
}

/// A mail and the settings in force when it was queued.
type Queued = (Arc<MailSettings>, Mail);

/// Queues mails for the sending thread. Cloning shares the queue.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Mutex<Option<Arc<MailSettings>>>,
    tx: Mutex<Option<SyncSender<Queued>>>,
    dropped: AtomicU64,
}

impl Default for Mailer {
    fn default() -> Self {
        Mailer::new()
    }
}

impl Mailer {
    /// A mailer with no settings: it sends nothing until [`Mailer::configure`].
    pub fn new() -> Mailer {
        Mailer {
            inner: Arc::new(Inner {
                settings: Mutex::new(None),
                tx: Mutex::new(None),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Sets (start, reload) or clears where mails go.
    pub fn configure(&self, settings: Option<MailSettings>) {
        if let Ok(mut s) = self.inner.settings.lock() {
            *s = settings.map(Arc::new);
        }
    }

    fn settings(&self) -> Option<Arc<MailSettings>> {
        self.inner.settings.lock().ok().and_then(|s| s.clone())
    }

    /// A VRRP transition: `kind` is `Instance` or `Group`, `state` MASTER, BACKUP or
    /// FAULT (others are not mailed, nor FAULT with `no_email_faults`).
    pub fn vrrp(&self, kind: &str, name: &str, state: &str, detail: &str) {
        let Some(s) = self.settings() else { return };
        if !matches!(state, "MASTER" | "BACKUP" | "FAULT")
            || (state == "FAULT" && s.no_email_faults)
        {
            return;
        }
        self.queue(
            s.clone(),
            vrrp_mail(&s.router_id, kind, name, state, detail),
        );
    }

    /// A real server left (`up == false`) or rejoined its virtual server. `own`: the
    /// real server's `smtp_alert`; unset, `smtp_alert_checker`/`smtp_alert` decide, and
    /// without those it mails (keepalived's default for real servers).
    pub fn real_server(
        &self,
        own: Option<bool>,
        real_server: &str,
        virtual_server: &str,
        up: bool,
        reason: &str,
    ) {
        let Some(s) = self.settings() else { return };
        if !own.or(s.checker_default).unwrap_or(true) {
            return;
        }
        let word = if up { "UP" } else { "DOWN" };
        let mail = Mail {
            subject: format!(
                "[{}] Realserver {real_server} of {virtual_server} - {word}",
                s.router_id
            ),
            body: format!(
                "Real server {real_server} of {virtual_server} is {} the pool.\nLast check: {reason}\n",
                if up { "back in" } else { "out of" }
            ),
        };
        self.queue(s, mail);
    }

    /// A virtual server lost (`up == false`) or regained its quorum. `own`: the virtual
    /// server's `smtp_alert`; unset, `smtp_alert_checker`/`smtp_alert` decide, and
    /// without those it does not mail.
    pub fn quorum(&self, own: Option<bool>, virtual_server: &str, up: bool) {
        let Some(s) = self.settings() else { return };
        if !own.or(s.checker_default).unwrap_or(false) {
            return;
        }
        let word = if up { "regained" } else { "lost" };
        let mail = Mail {
            subject: format!("[{}] {virtual_server} - quorum {word}", s.router_id),
            body: format!("{virtual_server} has {word} its quorum of live real servers.\n"),
        };
        self.queue(s, mail);
    }

    fn queue(&self, settings: Arc<MailSettings>, mail: Mail) {
        let Ok(mut tx) = self.inner.tx.lock() else {
            return;
        };
        let tx = tx.get_or_insert_with(spawn_sender);
        match tx.try_send((settings, mail)) {
            Ok(()) => {}
            Err(TrySendError::Full((_, mail))) => {
                let n = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    "mail queue full ({QUEUE}): dropped `{}` ({n} dropped so far)",
                    mail.subject
                );
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!("the mail thread has gone: no more email alerts");
            }
        }
    }
}

fn spawn_sender() -> SyncSender<Queued> {
    let (tx, rx) = mpsc::sync_channel::<Queued>(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("vipd-mail".into())
        .spawn(move || {
            for (settings, mail) in rx {
                match deliver(&settings, &mail, SystemTime::now()) {
                    Ok(()) => {
                        tracing::info!("mailed `{}` to {}", mail.subject, settings.to.join(", "))
                    }
                    Err(e) => tracing::warn!(
                        "mail `{}` via {}:{} not sent: {e}",
                        mail.subject,
                        settings.host,
                        settings.port
                    ),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("no mail thread ({e}): email alerts are off");
    }
    tx
}

fn vrrp_mail(router_id: &str, kind: &str, name: &str, state: &str, detail: &str) -> Mail {
    let what = match state {
        "MASTER" => "now holds its virtual addresses",
        "BACKUP" => "no longer holds its virtual addresses",
        _ => "is in FAULT state and holds no virtual addresses",
    };
    Mail {
        subject: format!("[{router_id}] VRRP {kind} {name} - Entering {state} state"),
        body: if detail.is_empty() {
            format!("VRRP {kind} {name} {what}.\n")
        } else {
            format!("VRRP {kind} {name} {what}.\n{detail}\n")
        },
    }
}

/// The host name (`/proc/sys/kernel/hostname`), `localhost` if unreadable.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The message as sent after DATA: headers, body with CRLF line ends and leading dots
/// doubled, and the terminating line.
pub fn message(s: &MailSettings, mail: &Mail, now: SystemTime) -> String {
    let mut out = String::new();
    let mut line = |l: &str| {
        if l.starts_with('.') {
            out.push('.');
        }
        out.push_str(l);
        out.push_str("\r\n");
    };
    line(&format!("From: {}", s.from));
    line(&format!("To: {}", s.to.join(", ")));
    line(&format!("Subject: {}", mail.subject));
    line(&format!("Date: {}", rfc5322_date(now)));
    line("X-Mailer: vipd");
    line("MIME-Version: 1.0");
    line("Content-Type: text/plain; charset=utf-8");
    line("");
    for l in mail.body.lines() {
        line(l);
    }
    out.push_str(".\r\n");
    out
}

/// `(year, month 1-12, day 1-31, seconds into the day)` of seconds since the Unix epoch,
/// in UTC.
pub fn civil_from_unix(secs: i64) -> (i64, i64, i64, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem)
}

/// `Wed, 25 Nov 2026 10:17:10 +0000`.
pub fn rfc5322_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let (year, month, day, rem) = civil_from_unix(secs);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One SMTP session: greeting, HELO, MAIL, RCPT per address, DATA, QUIT.
fn deliver(s: &MailSettings, mail: &Mail, now: SystemTime) -> Result<(), String> {
    let addr = (s.host.as_str(), s.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", s.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", s.host))?;
    let stream =
        TcpStream::connect_timeout(&addr, s.timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(s.timeout))
        .and_then(|()| stream.set_write_timeout(Some(s.timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| format!("socket: {e}"))?);
    let mut writer = stream;
    let mut step = |send: Option<&str>, want: &[u16], what: &str| -> Result<(), String> {
        if let Some(cmd) = send {
            writer
                .write_all(cmd.as_bytes())
                .map_err(|e| format!("sending {what}: {e}"))?;
        }
        let (code, text) = reply(&mut reader).map_err(|e| format!("after {what}: {e}"))?;
        if want.contains(&code) {
            Ok(())
        } else {
            Err(format!("after {what}: {code} {text}"))
        }
    };
    step(None, &[220], "connecting")?;
    step(Some(&format!("HELO {}\r\n", s.helo)), &[250], "HELO")?;
    step(
        Some(&format!("MAIL FROM:<{}>\r\n", s.from)),
        &[250],
        "MAIL FROM",
    )?;
    for to in &s.to {
        step(Some(&format!("RCPT TO:<{to}>\r\n")), &[250, 251], "RCPT TO")?;
    }
    step(Some("DATA\r\n"), &[354], "DATA")?;
    step(Some(&message(s, mail, now)), &[250], "the message")?;
    // The mail is accepted; a failing QUIT changes nothing.
    let _ = step(Some("QUIT\r\n"), &[221], "QUIT");
    Ok(())
}

/// One (possibly multi-line) reply: its code and last line's text.
fn reply(r: &mut impl BufRead) -> Result<(u16, String), String> {
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Err("connection closed".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
        let line = line.trim_end();
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: `{line}`"))?;
        // `250-...` continues, `250 ...` (or a bare `250`) ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, line.get(4..).unwrap_or_default().to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals(text: &str) -> GlobalDefs {
        let opts = vipd_config::LoadOptions {
            config_id: None,
            check_interfaces: false,
            ..Default::default()
        };
        vipd_config::load_str(
            &format!("global_defs {{\n{text}\n}}\n"),
            std::path::Path::new("/etc/keepalived/keepalived.conf"),
            &opts,
        )
        .unwrap_or_else(|d| panic!("{d:#?}"))
        .config
        .global
    }

    #[test]
    fn settings_from_global_defs() {
        assert_eq!(MailSettings::from_config(&globals("")), Ok(None));
        // No recipients: nothing to send.
        assert_eq!(
            MailSettings::from_config(&globals("smtp_server 192.0.2.25")),
            Ok(None)
        );
        let s = MailSettings::from_config(&globals(
            "notification_email {\n a@example.com\n b@example.com\n}\nnotification_email_from lb@example.com\nsmtp_server 192.0.2.25 2525\nsmtp_connect_timeout 5\nsmtp_helo_name lb1\nrouter_id LB1\nno_email_faults",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.helo.as_str(), s.from.as_str()),
            ("192.0.2.25", 2525, "lb1", "lb@example.com")
        );
        assert_eq!(s.to, ["a@example.com", "b@example.com"]);
        assert_eq!(
            (s.timeout, s.router_id.as_str(), s.no_email_faults),
            (Duration::from_secs(5), "LB1", true)
        );
        let s = MailSettings::from_config(&globals(
            "notification_email {\n a@example.com\n}\nsmtp_server mail.example.com",
        ))
        .unwrap()
        .unwrap();
        assert_eq!((s.port, s.timeout), (25, Duration::from_secs(30)));
        assert!(s.from.starts_with("vipd@"));
        // The loader refuses this line already (at its place); the model can still hold it.
        let mut g = globals("notification_email {\n a@example.com\n}");
        g.smtp_server = Some("192.0.2.25 smtp".into());
        let e = MailSettings::from_config(&g);
        assert_eq!(e, Err("smtp_server: `smtp` is not a port".into()));
    }

    #[test]
    fn which_objects_mail_by_default() {
        // Whether a mail is queued (to a queue the test holds: no thread, no traffic).
        let queued = |extra: &str, call: &dyn Fn(&Mailer)| {
            let g = globals(&format!(
                "notification_email {{\n a@example.com\n}}\nsmtp_server 192.0.2.25\n{extra}"
            ));
            let m = Mailer::new();
            m.configure(MailSettings::from_config(&g).unwrap());
            let (tx, rx) = mpsc::sync_channel(4);
            *m.inner.tx.lock().unwrap() = Some(tx);
            call(&m);
            rx.try_recv().is_ok()
        };
        let rs = |own| {
            move |m: &Mailer| m.real_server(own, "192.0.2.1:80", "192.0.2.100:80", false, "x")
        };
        let quorum = |own| move |m: &Mailer| m.quorum(own, "192.0.2.100:80", false);
        // Real servers mail unless told otherwise, as in keepalived; quorum does not.
        assert!(queued("", &rs(None)));
        assert!(!queued("", &rs(Some(false))));
        assert!(!queued("", &quorum(None)));
        assert!(queued("", &quorum(Some(true))));
        assert!(!queued(
            "smtp_alert
smtp_alert_checker false",
            &rs(None)
        ));
        assert!(queued("smtp_alert_checker false", &rs(Some(true))));
        assert!(queued("smtp_alert", &quorum(None)));
        // FAULT, except with no_email_faults; never STOP.
        let fault = |m: &Mailer| m.vrrp("Instance", "VI_1", "FAULT", "");
        assert!(queued("", &fault));
        assert!(!queued("no_email_faults", &fault));
        assert!(!queued("", &|m: &Mailer| m.vrrp("Instance", "VI_1", "STOP", "")));
    }

    #[test]
    fn message_layout() {
        let s = MailSettings {
            host: "192.0.2.25".into(),
            port: 25,
            helo: "lb1".into(),
            from: "lb@example.com".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
            timeout: Duration::from_secs(1),
            router_id: "LB1".into(),
            no_email_faults: false,
            checker_default: None,
        };
        let mail = vrrp_mail(
            "LB1",
            "Instance",
            "VI_1",
            "MASTER",
            ".hidden\nVIPs: 192.0.2.100/24",
        );
        assert_eq!(
            mail.subject,
            "[LB1] VRRP Instance VI_1 - Entering MASTER state"
        );
        let t = UNIX_EPOCH + Duration::from_secs(1_795_601_830); // 2026-11-25 10:17:10 UTC
        assert_eq!(
            message(&s, &mail, t),
            "From: lb@example.com\r\nTo: a@example.com, b@example.com\r\n\
             Subject: [LB1] VRRP Instance VI_1 - Entering MASTER state\r\n\
             Date: Wed, 25 Nov 2026 10:17:10 +0000\r\nX-Mailer: vipd\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n\
             VRRP Instance VI_1 now holds its virtual addresses.\r\n..hidden\r\n\
             VIPs: 192.0.2.100/24\r\n.\r\n"
        );
    }

    #[test]
    fn dates() {
        let at = |s: u64| rfc5322_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 +0000");
        // 2100 is not a leap year.
        assert_eq!(at(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 +0000");
    }

    #[test]
    fn multi_line_replies() {
        let mut r = std::io::Cursor::new(
            b"250-mail.example\r\n250-SIZE 1000\r\n250 OK\r\n220\r\n".to_vec(),
        );
        assert_eq!(reply(&mut r), Ok((250, "OK".into())));
        assert_eq!(reply(&mut r), Ok((220, String::new())));
        assert_eq!(reply(&mut r), Err("connection closed".into()));
        let mut bad = std::io::Cursor::new(b"hello\r\n".to_vec());
        assert!(reply(&mut bad)
            .unwrap_err()
            .starts_with("not an SMTP reply"));
    }
}
