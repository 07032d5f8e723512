//! The licence check of `cargo xtask test`: every crate in `Cargo.lock` must be usable inside
//! a closed appliance image and in the downloadable clients.
//!
//! Each package's SPDX expression (from `cargo metadata`) is evaluated against [`ALLOWED`]:
//! `OR` needs one allowed side, `AND` both, `WITH` names an exception that belongs to the
//! licence before it. Old-style `A/B` is read as `A OR B`. A package whose terms need more
//! than a licence check (a notice to ship, source to offer) is allowed only when it is listed
//! in [`NOTED`] with what we do about it, which the README repeats.

use crate::{Result, cargo};

/// Licences that allow shipping in a closed product (some ask for the licence text or a
/// notice in the documentation, which the README's "Licences" section covers).
const ALLOWED: &[&str] = &[
    "MIT",
    "Apache-2.0",
    "Apache-2.0 WITH LLVM-exception",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "BSL-1.0",
    "Unlicense",
    "CC0-1.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CDLA-Permissive-2.0",
];

/// Packages allowed with extra terms: (name, licence, what the project does about it).
const NOTED: &[(&str, &str, &str)] = &[(
    "serialport",
    "MPL-2.0",
    "file-level copyleft: used unmodified in the panel daemon; its source is the published crate",
)];

/// A licence expression, parsed.
#[derive(Debug, PartialEq)]
enum Expr {
    Id(String),
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
}

fn tokens(s: &str) -> Vec<String> {
    let s = s
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    s.split_whitespace().map(str::to_owned).collect()
}

/// Parses `a OR b AND (c WITH d)`; AND binds tighter than OR.
fn parse(s: &str) -> Option<Expr> {
    let toks = tokens(s);
    let mut at = 0;
    let e = parse_or(&toks, &mut at)?;
    (at == toks.len()).then_some(e)
}

fn parse_or(t: &[String], at: &mut usize) -> Option<Expr> {
    let mut left = parse_and(t, at)?;
    while t.get(*at).is_some_and(|x| x == "OR") {
        *at += 1;
        left = Expr::Or(Box::new(left), Box::new(parse_and(t, at)?));
    }
    Some(left)
}

fn parse_and(t: &[String], at: &mut usize) -> Option<Expr> {
    let mut left = parse_atom(t, at)?;
    while t.get(*at).is_some_and(|x| x == "AND") {
        *at += 1;
        left = Expr::And(Box::new(left), Box::new(parse_atom(t, at)?));
    }
    Some(left)
}

fn parse_atom(t: &[String], at: &mut usize) -> Option<Expr> {
    let tok = t.get(*at)?.clone();
    *at += 1;
    if tok == "(" {
        let e = parse_or(t, at)?;
        (t.get(*at)? == ")").then_some(())?;
        *at += 1;
        return Some(e);
    }
    if matches!(tok.as_str(), ")" | "OR" | "AND" | "WITH") {
        return None;
    }
    if t.get(*at).is_some_and(|x| x == "WITH") {
        let exception = t.get(*at + 1)?.clone();
        *at += 2;
        return Some(Expr::Id(format!("{tok} WITH {exception}")));
    }
    Some(Expr::Id(tok))
}

fn allowed(e: &Expr, ok: &dyn Fn(&str) -> bool) -> bool {
    match e {
        Expr::Id(id) => ok(id),
        Expr::Or(a, b) => allowed(a, ok) || allowed(b, ok),
        Expr::And(a, b) => allowed(a, ok) && allowed(b, ok),
    }
}

/// Checks every package of the lock file; lists each offender.
pub fn check() -> Result {
    crate::step("licences of every dependency");
    let mut c = cargo();
    c.args(["metadata", "--format-version", "1", "--locked"]);
    let out = c
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    let mut problems = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or("?");
        let version = p["version"].as_str().unwrap_or("?");
        // The workspace's own crates.
        if p["source"].is_null() {
            continue;
        }
        let Some(licence) = p["license"].as_str() else {
            problems.push(format!("{name} {version}: no licence expression"));
            continue;
        };
        let ok = |id: &str| ALLOWED.contains(&id);
        let fine = match parse(licence) {
            Some(e) => allowed(&e, &ok),
            None => false,
        };
        let noted = NOTED.iter().any(|(n, l, _)| *n == name && *l == licence);
        if !fine && !noted {
            problems.push(format!("{name} {version}: {licence}"));
        }
    }
    if problems.is_empty() {
        eprintln!(
            "{} packages, all with licences that allow a closed product ({} noted in the README)",
            packages.len(),
            NOTED.len()
        );
        Ok(())
    } else {
        Err(format!(
            "these dependencies' licences are not on the allow-list (xtask/src/licences.rs); \
             replace them, or decide and write the decision down there and in the README:\n  {}",
            problems.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: &str) -> bool {
        ALLOWED.contains(&id)
    }

    #[test]
    fn expressions() {
        for good in [
            "MIT",
            "MIT OR Apache-2.0",
            "MIT/Apache-2.0",
            "Apache-2.0 / MIT",
            "(MIT OR Apache-2.0) AND Unicode-3.0",
            "Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT",
            "MIT OR GPL-3.0-only",
            "Apache-2.0 AND ISC",
        ] {
            assert!(allowed(&parse(good).unwrap(), &ok), "{good}");
        }
        for bad in [
            "GPL-3.0-only",
            "MIT AND GPL-2.0-only",
            "LGPL-2.1-or-later",
            "MPL-2.0",
        ] {
            assert!(!allowed(&parse(bad).unwrap(), &ok), "{bad}");
        }
        for broken in ["", "MIT OR", "(MIT", "MIT )", "AND MIT"] {
            assert!(parse(broken).is_none(), "{broken:?}");
        }
    }
}
