//! iproute2's name files (`rt_tables`, `rt_scopes`, `group`), read as keepalived 2.4.3 reads them,
//! so `table web` or `scope myscope` in a route, rule or address means what `ip` means by
//! it.
//!
//! Where: `iproute_etc_dir` (default /etc/iproute2) and `iproute_usr_dir` (default
//! /usr/share/iproute2) from `global_defs`, wherever `global_defs` stands in the file; a
//! relative path is relative to the directory of the file it is written in.
//! For a name file FILE:
//! - `ETC/FILE` when it is a regular file, else `USR/FILE`;
//! - then `USR/FILE.d/*.conf`, except those with a same-named entry in `ETC/FILE.d/`;
//! - then `ETC/FILE.d/*.conf` (in name order; keepalived reads directory order).
//!
//! Each line is `NUMBER NAME` (space or tab separated, exactly two words); `#` starts a
//! comment anywhere; NUMBER is decimal, `0x` hexadecimal or `0` octal (C's `strtoul`
//! base 0) and at most the kind's maximum; other lines are skipped, as iproute2 and
//! keepalived skip them. The first entry with a name wins. keepalived's built-in names
//! (`main`, `local`, `default`; `global`, `site`, `link`, `host`, `nowhere`) come last and
//! only for numbers the files do not name.
//!
//! The files of a kind are read at most once per configuration load, and only when a
//! value is not a number: a config without names reads nothing.

use std::cell::OnceCell;
use std::fs;
use std::path::{Path, PathBuf};

use crate::tree::Node;

/// keepalived's `iproute_etc_dir` default.
pub(crate) const DEFAULT_ETC_DIR: &str = "/etc/iproute2";
/// keepalived's `iproute_usr_dir` default when its build could not find iproute2's
/// (iproute2 ≥ 6.7, Debian ≥ 13, RHEL, openSUSE).
pub(crate) const DEFAULT_USR_DIR: &str = "/usr/share/iproute2";

/// One kind of name: its file, largest number and built-in names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tables,
    Scopes,
    /// Link groups (`use_vmac ... group NAME`).
    Groups,
}

impl Kind {
    pub(crate) fn file(self) -> &'static str {
        match self {
            Kind::Tables => "rt_tables",
            Kind::Scopes => "rt_scopes",
            Kind::Groups => "group",
        }
    }

    fn max(self) -> u32 {
        match self {
            Kind::Tables => u32::MAX,
            Kind::Scopes => 255,
            Kind::Groups => i32::MAX as u32,
        }
    }

    fn defaults(self) -> &'static [(u32, &'static str)] {
        match self {
            Kind::Tables => &[(253, "default"), (254, "main"), (255, "local")],
            Kind::Scopes => &[
                (0, "global"),
                (255, "nowhere"),
                (254, "host"),
                (253, "link"),
                (200, "site"),
            ],
            Kind::Groups => &[(0, "default")],
        }
    }
}

/// A number as C's `strtoul(s, _, 0)` reads a whole word: decimal, `0x`/`0X` hexadecimal or
/// `0`-prefixed octal (`010` is 8), no sign. `None` for anything else (then it is a name).
pub(crate) fn parse_c_uint(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// The entries of one name file, in file order; unreadable files count as empty.
fn read_file(path: &Path, max: u32, out: &mut Vec<(String, u32)>) {
    let Ok(bytes) = fs::read(path) else {
        return;
    };
    for line in String::from_utf8_lossy(&bytes).lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
        let (Some(number), Some(name), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        let number = number.strip_prefix('+').unwrap_or(number);
        match parse_c_uint(number) {
            Some(n) if n <= u64::from(max) => out.push((name.to_string(), n as u32)),
            _ => {}
        }
    }
}

fn is_file(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file())
}

/// The `*.conf` regular files (not hidden) of `dir`, in name order.
fn conf_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(String, PathBuf)> = rd
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let wanted = !name.starts_with('.') && name.len() > 5 && name.ends_with(".conf");
            (wanted && is_file(&e.path())).then(|| (name, e.path()))
        })
        .collect();
    files.sort();
    files
}

/// Where the names of one kind come from, and what they are.
#[derive(Debug)]
struct Names {
    entries: Vec<(String, u32)>,
    /// The files and patterns searched, for error messages.
    searched: Vec<String>,
}

/// The iproute2 name files of one configuration load.
#[derive(Debug)]
pub(crate) struct IprouteNames {
    etc: PathBuf,
    usr: PathBuf,
    tables: OnceCell<Names>,
    scopes: OnceCell<Names>,
    groups: OnceCell<Names>,
}

/// The last `iproute_etc_dir` / `iproute_usr_dir` of the `global_defs` among `nodes`,
/// else `etc` and `usr`.
fn dirs(nodes: &[Node], mut etc: PathBuf, mut usr: PathBuf) -> (PathBuf, PathBuf) {
    for g in nodes.iter().filter(|n| n.name() == "global_defs") {
        for c in g.children.iter().flatten() {
            let dir = match &c.args[..] {
                // keepalived reads a file from its directory (it changes into it),
                // so a relative path is relative to the file that says it.
                [a] => match a.span.file.parent() {
                    Some(base) => base.join(&a.text),
                    None => PathBuf::from(&a.text),
                },
                _ => continue,
            };
            match c.name() {
                "iproute_etc_dir" => etc = dir,
                "iproute_usr_dir" => usr = dir,
                _ => {}
            }
        }
    }
    (etc, usr)
}

impl IprouteNames {
    pub(crate) fn new(etc: PathBuf, usr: PathBuf) -> Self {
        IprouteNames {
            etc,
            usr,
            tables: OnceCell::new(),
            scopes: OnceCell::new(),
            groups: OnceCell::new(),
        }
    }

    /// The directories `global_defs` names (its last `iproute_etc_dir` / `iproute_usr_dir`,
    /// in any `global_defs` block, before or after the routes), else the defaults.
    pub(crate) fn from_tree(nodes: &[Node]) -> Self {
        let (etc, usr) = dirs(
            nodes,
            PathBuf::from(DEFAULT_ETC_DIR),
            PathBuf::from(DEFAULT_USR_DIR),
        );
        IprouteNames::new(etc, usr)
    }

    /// Takes the directories a `global_defs` block names, for the blocks after it.
    /// False if that changes them after names were looked up: the blocks before read
    /// other files, so the caller must map the whole file again with [`from_tree`]
    /// (which applies the last directories to every block).
    pub(crate) fn global_defs(&mut self, g: &Node) -> bool {
        let (etc, usr) = dirs(std::slice::from_ref(g), self.etc.clone(), self.usr.clone());
        if etc == self.etc && usr == self.usr {
            return true;
        }
        let used = [&self.tables, &self.scopes, &self.groups]
            .iter()
            .any(|c| c.get().is_some());
        *self = IprouteNames::new(etc, usr);
        !used
    }

    fn names(&self, kind: Kind) -> &Names {
        let cell = match kind {
            Kind::Tables => &self.tables,
            Kind::Scopes => &self.scopes,
            Kind::Groups => &self.groups,
        };
        cell.get_or_init(|| self.load(kind))
    }

    fn load(&self, kind: Kind) -> Names {
        let file = kind.file();
        let max = kind.max();
        let mut entries = Vec::new();
        let mut searched = Vec::new();
        let etc_file = self.etc.join(file);
        let main = if is_file(&etc_file) {
            etc_file
        } else {
            self.usr.join(file)
        };
        read_file(&main, max, &mut entries);
        searched.push(main.display().to_string());
        let etc_d = self.etc.join(format!("{file}.d"));
        let usr_d = self.usr.join(format!("{file}.d"));
        for (name, path) in conf_files(&usr_d) {
            if fs::symlink_metadata(etc_d.join(&name)).is_err() {
                read_file(&path, max, &mut entries);
            }
        }
        searched.push(format!("{}/*.conf", usr_d.display()));
        for (_, path) in conf_files(&etc_d) {
            read_file(&path, max, &mut entries);
        }
        searched.push(format!("{}/*.conf", etc_d.display()));
        for &(id, name) in kind.defaults() {
            if !entries.iter().any(|(_, n)| *n == id) {
                entries.push((name.to_string(), id));
            }
        }
        Names { entries, searched }
    }

    /// The number `name` stands for (a name only: numbers are the caller's).
    pub(crate) fn lookup(&self, kind: Kind, name: &str) -> Option<u32> {
        self.names(kind)
            .entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }

    /// The files searched for `kind`'s names, for a help line.
    pub(crate) fn searched(&self, kind: Kind) -> String {
        self.names(kind).searched.join(", ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A work directory (vipd-netns', removed on drop) with files written by path.
    pub(crate) struct Tmp(vipd_netns::WorkDir);

    impl Tmp {
        pub(crate) fn new() -> Self {
            Tmp(vipd_netns::WorkDir::new("iproute").unwrap())
        }

        pub(crate) fn path(&self) -> &Path {
            self.0.path()
        }

        pub(crate) fn write(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
    }

    fn names(t: &Tmp) -> IprouteNames {
        IprouteNames::new(t.path().join("etc"), t.path().join("usr"))
    }

    #[test]
    fn c_numbers() {
        assert_eq!(parse_c_uint("100"), Some(100));
        assert_eq!(parse_c_uint("0"), Some(0));
        assert_eq!(parse_c_uint("0x65"), Some(101));
        assert_eq!(parse_c_uint("0XfF"), Some(255));
        assert_eq!(parse_c_uint("010"), Some(8));
        for bad in ["", "0x", "08", "-1", "1a", "web", "0x1g", " 1"] {
            assert_eq!(parse_c_uint(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lines_as_iproute2_reads_them() {
        let t = Tmp::new();
        t.write(
            "etc/rt_tables",
            "# comment\n100 web\n0x65 hexy # trailing comment\n  102\tspaced\n\
             bad line here\n-3 neg\n010 octal\n4294967296 toolarge\n103\n\
             +104 plus\nnope word\n105 web\n0xffffffff top\n",
        );
        let n = names(&t);
        let table = |s| n.lookup(Kind::Tables, s);
        assert_eq!(table("web"), Some(100), "the first entry of a name wins");
        assert_eq!(table("hexy"), Some(0x65));
        assert_eq!(table("spaced"), Some(102));
        assert_eq!(table("octal"), Some(8));
        assert_eq!(table("plus"), Some(104));
        assert_eq!(table("top"), Some(u32::MAX));
        for skipped in ["bad", "line", "neg", "toolarge", "word", "here"] {
            assert_eq!(table(skipped), None, "{skipped}");
        }
        // Built-in names stay for the numbers the file does not name.
        assert_eq!(table("main"), Some(254));
        assert_eq!(table("local"), Some(255));
        assert_eq!(table("default"), Some(253));
    }

    #[test]
    fn scopes_are_at_most_255() {
        let t = Tmp::new();
        t.write("etc/rt_scopes", "100 myscope\n256 toobig\n0x20 hexscope\n");
        let n = names(&t);
        assert_eq!(n.lookup(Kind::Scopes, "myscope"), Some(100));
        assert_eq!(n.lookup(Kind::Scopes, "hexscope"), Some(32));
        assert_eq!(n.lookup(Kind::Scopes, "toobig"), None);
        assert_eq!(n.lookup(Kind::Scopes, "link"), Some(253));
        assert_eq!(n.lookup(Kind::Tables, "myscope"), None, "kinds are apart");
    }

    #[test]
    fn a_file_naming_a_builtin_number_replaces_its_builtin_name() {
        let t = Tmp::new();
        t.write("etc/rt_tables", "254 mymain\n7 main\n");
        let n = names(&t);
        assert_eq!(n.lookup(Kind::Tables, "mymain"), Some(254));
        assert_eq!(n.lookup(Kind::Tables, "main"), Some(7));
        assert_eq!(n.lookup(Kind::Tables, "local"), Some(255));
    }

    #[test]
    fn etc_overrides_usr_and_d_directories_add() {
        let t = Tmp::new();
        t.write("usr/rt_tables", "200 usrmain\n");
        t.write("etc/rt_tables", "201 etcmain\n");
        t.write("usr/rt_tables.d/a.conf", "202 usrd\n");
        t.write("usr/rt_tables.d/b.conf", "203 shadowed\n");
        t.write("etc/rt_tables.d/b.conf", "204 etcd\n");
        t.write("etc/rt_tables.d/c.txt", "205 notconf\n");
        t.write("etc/rt_tables.d/.hidden.conf", "206 hidden\n");
        t.write("etc/rt_tables.d/.conf", "207 bare\n");
        t.write("etc/rt_tables.d/z.conf", "208 etcd\n");
        let n = names(&t);
        let table = |s| n.lookup(Kind::Tables, s);
        assert_eq!(table("etcmain"), Some(201));
        assert_eq!(
            table("usrmain"),
            None,
            "ETC/rt_tables replaces USR/rt_tables"
        );
        assert_eq!(table("usrd"), Some(202));
        assert_eq!(
            table("shadowed"),
            None,
            "USR/rt_tables.d/b.conf is replaced by ETC's"
        );
        assert_eq!(table("etcd"), Some(204), "files are read in name order");
        for skipped in ["notconf", "hidden", "bare"] {
            assert_eq!(table(skipped), None, "{skipped}");
        }
        let etc = t.path().join("etc").display().to_string();
        let usr = t.path().join("usr").display().to_string();
        assert_eq!(
            n.searched(Kind::Tables),
            format!("{etc}/rt_tables, {usr}/rt_tables.d/*.conf, {etc}/rt_tables.d/*.conf")
        );
    }

    #[test]
    fn usr_file_when_etc_has_none() {
        let t = Tmp::new();
        t.write("usr/rt_tables", "200 usrmain\n");
        t.write("etc/rt_tables.d/x.conf", "201 extra\n");
        let n = names(&t);
        assert_eq!(n.lookup(Kind::Tables, "usrmain"), Some(200));
        assert_eq!(n.lookup(Kind::Tables, "extra"), Some(201));
        assert!(n
            .searched(Kind::Tables)
            .starts_with(&t.path().join("usr/rt_tables").display().to_string()));
    }

    #[test]
    fn no_directories_leave_the_builtin_names() {
        let t = Tmp::new();
        let n = names(&t);
        assert_eq!(n.lookup(Kind::Tables, "main"), Some(254));
        assert_eq!(n.lookup(Kind::Scopes, "host"), Some(254));
        assert_eq!(n.lookup(Kind::Tables, "web"), None);
    }
}
